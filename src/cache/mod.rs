//! The media object cache: one entry per media, `{prefix}:media:{id}`, holding the exact JSON of
//! `GET /v1/media/{id}` (documented for other languages in `proto/redis-object.md`; the same text on both
//! backends).
//!
//! [`MediaCache`] is what the rest of the crate uses. It names keys, puts a deadline on every call
//! ([`CacheSettings::op_timeout`]) and keeps the health `/readyz` reports; the server work is behind one trait,
//! [`CacheBackend`], with two implementations:
//! - [`redis`]: Lua scripts make the version guard and the lock release atomic;
//! - [`memcached`]: `gets` + `cas` with bounded retries, `add` for locks, a ketama pool compatible with PHP's
//!   `Memcached` extension (`OPT_LIBKETAMA_COMPATIBLE`).
//!
//! A failed or late call is an error the caller falls back from (to the DB), and it flips the cache's health
//! to degraded. Both backends connect lazily, so a process starts with its cache down and reconnects by itself.

mod enqueue;
pub mod memcached;
pub mod redis;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tracing::{info, warn};

pub use enqueue::publish_warm;

use crate::config::{CacheSettings, CacheUrl};

/// Cache errors. All of them mean "serve from the DB instead" to a reader, and "retry later" to a warm job.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The server did not answer in time, refused, or dropped the connection.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// A guarded write lost its compare-and-swap race more often than the retry bound allows (memcached).
    #[error("cache contended: {0}")]
    Contended(String),
    /// The URL or configuration is unusable.
    #[error("cache configuration: {0}")]
    Config(String),
}

impl CacheError {
    /// Stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            CacheError::Unavailable(_) => "cache_unavailable",
            CacheError::Contended(_) => "cache_contended",
            CacheError::Config(_) => "cache_config",
        }
    }

    /// Whether the error says the server is unhealthy (contention does not: the server answered).
    fn is_outage(&self) -> bool {
        matches!(self, CacheError::Unavailable(_))
    }
}

/// What a guarded write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The object was written (or rewritten at the same version).
    Written,
    /// A newer object is stored; ours was dropped.
    KeptNewer,
    /// The object was not sent: it does not fit the server's item size limit (memcached). Counted in
    /// `mediafleet_cache_not_cached_total` and logged; readers get it from the DB.
    NotCached,
}

/// One object of a batch write.
#[derive(Debug, Clone, Copy)]
pub struct PutItem<'a> {
    /// The full key.
    pub key: &'a str,
    /// The JSON text.
    pub json: &'a str,
    /// The media version the object shows.
    pub version: i64,
    /// How long it lives.
    pub ttl: Duration,
}

/// The server side of the media cache: raw keys, no deadlines, no health (the [`MediaCache`] around it does
/// those). Every implementation passes `tests/cache_contract.rs`.
#[async_trait]
pub trait CacheBackend: Send + Sync + std::fmt::Debug {
    /// "Redis" or "memcached", for logs.
    fn name(&self) -> &'static str;
    /// The stored text of `key`.
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError>;
    /// Writes unless a *higher* version is stored (equal versions are rewritten: a TTL refresh).
    async fn put(&self, item: PutItem<'_>) -> Result<Put, CacheError>;
    /// [`CacheBackend::put`] for many objects in as few round trips as the server allows.
    async fn put_many(&self, items: &[PutItem<'_>]) -> Result<Vec<Put>, CacheError>;
    /// Stores `token` at `key` for `ttl` unless the key exists. True when we got it.
    async fn add_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, CacheError>;
    /// Whether `key` exists.
    async fn exists(&self, key: &str) -> Result<bool, CacheError>;
    /// Deletes `key` only while it still holds `token` (atomically).
    async fn release_lock(&self, key: &str, token: &str) -> Result<(), CacheError>;
    /// Deletes `key`.
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
    /// Checks every server answers.
    async fn ping(&self) -> Result<(), CacheError>;
}

/// Up/down, for readiness and for logging only the transitions.
#[derive(Debug, Default)]
struct Health {
    down: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// `mediafleet_cache_not_cached_total{reason}`: objects the cache refused to hold (registered in the
/// process-wide registry that `--metrics-listen` serves).
pub static NOT_CACHED: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    let c = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "mediafleet_cache_not_cached_total",
            "Media objects not written to the cache, by reason (too_large: over the item size limit)",
        ),
        &["reason"],
    )
    .expect("valid counter definition");
    let _ = crate::scale::metrics::METRICS
        .registry
        .register(Box::new(c.clone()));
    c
});

/// The media object cache. Cheap to clone (connections are shared by all clones).
#[derive(Clone)]
pub struct MediaCache {
    backend: Arc<dyn CacheBackend>,
    prefix: String,
    settings: CacheSettings,
    health: Arc<Health>,
}

impl std::fmt::Debug for MediaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaCache")
            .field("backend", &self.backend)
            .field("prefix", &self.prefix)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl MediaCache {
    /// Builds the cache a URL names (`None` for `--cache none`). Does not connect: the first call does.
    pub fn from_url(
        url: &CacheUrl,
        prefix: &str,
        settings: CacheSettings,
    ) -> Result<Option<MediaCache>, CacheError> {
        match url {
            CacheUrl::None => Ok(None),
            CacheUrl::Redis(u) => Self::redis(u, prefix, settings).map(Some),
            CacheUrl::Memcached(servers) => {
                let backend = memcached::Memcached::new(servers, &settings)?;
                memcached::check_prefix(prefix)?;
                Ok(Some(Self::with_backend(
                    Arc::new(backend),
                    prefix,
                    settings,
                )))
            }
        }
    }

    /// A cache on the Redis at `url`.
    pub fn redis(url: &str, prefix: &str, settings: CacheSettings) -> Result<Self, CacheError> {
        let backend = redis::Redis::new(url, &settings)?;
        Ok(Self::with_backend(Arc::new(backend), prefix, settings))
    }

    /// A cache on any backend.
    pub fn with_backend(
        backend: Arc<dyn CacheBackend>,
        prefix: &str,
        settings: CacheSettings,
    ) -> Self {
        MediaCache {
            backend,
            prefix: prefix.to_owned(),
            settings,
            health: Arc::default(),
        }
    }

    /// "Redis" or "memcached".
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The key of a media object: `{prefix}:media:{id}`.
    pub fn key(&self, id: &str) -> String {
        format!("{}:media:{id}", self.prefix)
    }

    /// The key of a media's fill lock: `{prefix}:lock:media:{id}` (outside the `media:` space, so a scan
    /// of objects never meets a lock).
    pub fn lock_key(&self, id: &str) -> String {
        format!("{}:lock:media:{id}", self.prefix)
    }

    /// The knobs this cache runs with.
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// `None` while healthy; the last error while degraded.
    pub fn degraded(&self) -> Option<String> {
        if self.health.down.load(Ordering::Relaxed) {
            Some(
                self.health
                    .last_error
                    .lock()
                    .map(|e| e.clone().unwrap_or_default())
                    .unwrap_or_default(),
            )
        } else {
            None
        }
    }

    /// Runs one backend call under the deadline and records health transitions.
    async fn call<T, F>(&self, what: &'static str, fut: F) -> Result<T, CacheError>
    where
        F: std::future::Future<Output = Result<T, CacheError>>,
    {
        let r = match tokio::time::timeout(self.settings.op_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(CacheError::Unavailable(format!(
                "{what}: no answer within {:?}",
                self.settings.op_timeout
            ))),
        };
        match &r {
            Ok(_) => {
                if self.health.down.swap(false, Ordering::Relaxed) {
                    info!(
                        backend = self.backend.name(),
                        "cache is back; reads are served from it again"
                    );
                }
            }
            Err(e) if e.is_outage() => {
                if let Ok(mut last) = self.health.last_error.lock() {
                    *last = Some(e.to_string());
                }
                if !self.health.down.swap(true, Ordering::Relaxed) {
                    warn!(backend = self.backend.name(), error = %e, "cache degraded: serving from the database until it answers");
                }
            }
            Err(_) => {}
        }
        r
    }

    /// The stored JSON of a media object, if any.
    pub async fn get(&self, id: &str) -> Result<Option<String>, CacheError> {
        let key = self.key(id);
        self.call("get", self.backend.get(&key)).await
    }

    fn ttl(&self, is_final: bool) -> Duration {
        if is_final {
            self.settings.ttl
        } else {
            self.settings.pending_ttl
        }
    }

    /// Writes an object unless a newer version is stored.
    pub async fn put(
        &self,
        id: &str,
        json: &str,
        version: i64,
        is_final: bool,
    ) -> Result<Put, CacheError> {
        let key = self.key(id);
        let item = PutItem {
            key: &key,
            json,
            version,
            ttl: self.ttl(is_final),
        };
        self.call("guarded put", self.backend.put(item)).await
    }

    /// Writes many objects in as few round trips as the backend allows, each under the version guard.
    /// Items are `(id, json, version, is_final)`.
    pub async fn put_many(
        &self,
        items: &[(&str, &str, i64, bool)],
    ) -> Result<Vec<Put>, CacheError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = items.iter().map(|(id, ..)| self.key(id)).collect();
        let batch: Vec<PutItem<'_>> = items
            .iter()
            .zip(&keys)
            .map(|((_, json, version, is_final), key)| PutItem {
                key,
                json,
                version: *version,
                ttl: self.ttl(*is_final),
            })
            .collect();
        self.call("batched put", self.backend.put_many(&batch))
            .await
    }

    /// Takes the fill lock of a media for `lock_ttl`. Returns our token when we got it.
    pub async fn try_lock(&self, id: &str) -> Result<Option<String>, CacheError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let key = self.lock_key(id);
        let got = self
            .call(
                "lock",
                self.backend.add_lock(&key, &token, self.settings.lock_ttl),
            )
            .await?;
        Ok(got.then_some(token))
    }

    /// Whether some reader holds the fill lock of a media.
    pub async fn is_locked(&self, id: &str) -> Result<bool, CacheError> {
        let key = self.lock_key(id);
        self.call("lock check", self.backend.exists(&key)).await
    }

    /// Releases the fill lock if `token` still holds it.
    pub async fn unlock(&self, id: &str, token: &str) -> Result<(), CacheError> {
        let key = self.lock_key(id);
        self.call("unlock", self.backend.release_lock(&key, token))
            .await
    }

    /// Removes a media object (e.g. when its row is gone).
    pub async fn delete(&self, id: &str) -> Result<(), CacheError> {
        let key = self.key(id);
        self.call("delete", self.backend.delete(&key)).await
    }

    /// Readiness probe.
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.call("ping", self.backend.ping()).await
    }
}
