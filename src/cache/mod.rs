//! The media object cache in Redis: one string key per media, `{prefix}:media:{id}`, holding the exact JSON
//! of `GET /v1/media/{id}` (documented for other languages in `proto/redis-object.md`).
//!
//! Every call has a deadline ([`CacheSettings::op_timeout`]). A failed or late call is an error the caller
//! falls back from (to the DB), and it flips the cache's health to degraded, which `/readyz` reports. The
//! connection is a lazy `ConnectionManager`, so a process starts with Redis down and reconnects by itself.

mod enqueue;
mod scripts;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tracing::{info, warn};

pub use enqueue::publish_warm;

use crate::config::{CacheSettings, CacheUrl};

/// Cache errors. All of them mean "serve from the DB instead" to a reader, and "retry later" to a warm job.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Redis did not answer in time, refused, or dropped the connection.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The URL or configuration is unusable.
    #[error("cache configuration: {0}")]
    Config(String),
}

impl CacheError {
    /// Stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            CacheError::Unavailable(_) => "cache_unavailable",
            CacheError::Config(_) => "cache_config",
        }
    }
}

impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        CacheError::Unavailable(e.to_string())
    }
}

/// What a guarded write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The object was written (or rewritten at the same version).
    Written,
    /// A newer object is stored; ours was dropped.
    KeptNewer,
}

/// Up/down, for readiness and for logging only the transitions.
#[derive(Debug, Default)]
struct Health {
    down: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// The Redis media object cache. Cheap to clone (one multiplexed connection shared by all clones).
#[derive(Clone)]
pub struct MediaCache {
    conn: ConnectionManager,
    prefix: String,
    settings: CacheSettings,
    health: Arc<Health>,
}

impl std::fmt::Debug for MediaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaCache")
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
        }
    }

    /// A cache on the Redis at `url`.
    pub fn redis(url: &str, prefix: &str, settings: CacheSettings) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)
            .map_err(|e| CacheError::Config(format!("--cache {url}: {e}")))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.op_timeout))
            .set_response_timeout(Some(settings.op_timeout))
            // Reconnects are retried by the manager in the background; callers never wait for them.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let conn = client
            .get_connection_manager_lazy(cfg)
            .map_err(|e| CacheError::Config(format!("--cache {url}: {e}")))?;
        Ok(MediaCache {
            conn,
            prefix: prefix.to_owned(),
            settings,
            health: Arc::default(),
        })
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

    /// Runs one Redis call under the deadline and records health transitions.
    async fn call<T, F>(&self, what: &'static str, fut: F) -> Result<T, CacheError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let r = match tokio::time::timeout(self.settings.op_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CacheError::from(e)),
            Err(_) => Err(CacheError::Unavailable(format!(
                "{what}: no answer within {:?}",
                self.settings.op_timeout
            ))),
        };
        match &r {
            Ok(_) => {
                if self.health.down.swap(false, Ordering::Relaxed) {
                    info!("cache is back; reads are served from Redis again");
                }
            }
            Err(e) => {
                if let Ok(mut last) = self.health.last_error.lock() {
                    *last = Some(e.to_string());
                }
                if !self.health.down.swap(true, Ordering::Relaxed) {
                    warn!(error = %e, "cache degraded: serving from the database until Redis answers");
                }
            }
        }
        r
    }

    /// The stored JSON of a media object, if any.
    pub async fn get(&self, id: &str) -> Result<Option<String>, CacheError> {
        let mut c = self.conn.clone();
        let key = self.key(id);
        self.call("GET", async move {
            redis::cmd("GET").arg(key).query_async(&mut c).await
        })
        .await
    }

    fn ttl_ms(&self, is_final: bool) -> u64 {
        let ttl = if is_final {
            self.settings.ttl
        } else {
            self.settings.pending_ttl
        };
        u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Writes an object unless a newer version is stored (atomic, in Lua).
    pub async fn put(
        &self,
        id: &str,
        json: &str,
        version: i64,
        is_final: bool,
    ) -> Result<Put, CacheError> {
        let mut c = self.conn.clone();
        let mut inv = scripts::PUT_IF_NOT_OLDER.prepare_invoke();
        inv.key(self.key(id))
            .arg(json)
            .arg(version)
            .arg(self.ttl_ms(is_final));
        let n: i64 = self
            .call("EVALSHA put", async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(if n == 1 { Put::Written } else { Put::KeptNewer })
    }

    /// Writes many objects in one pipeline, each under the version guard. Items are
    /// `(id, json, version, is_final)`.
    pub async fn put_many(
        &self,
        items: &[(&str, &str, i64, bool)],
    ) -> Result<Vec<Put>, CacheError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        // Pipelined EVALSHA does not load the script on NOSCRIPT: load it first (idempotent, cheap).
        let script = &*scripts::PUT_IF_NOT_OLDER;
        self.call("SCRIPT LOAD", script.load_async(&mut c)).await?;
        let mut pipe = redis::pipe();
        for (id, json, version, is_final) in items {
            pipe.invoke_script(
                script
                    .key(self.key(id))
                    .arg(*json)
                    .arg(*version)
                    .arg(self.ttl_ms(*is_final)),
            );
        }
        let n: Vec<i64> = self
            .call(
                "pipeline put",
                async move { pipe.query_async(&mut c).await },
            )
            .await?;
        Ok(n.into_iter()
            .map(|n| if n == 1 { Put::Written } else { Put::KeptNewer })
            .collect())
    }

    /// Takes the fill lock of a media for `lock_ttl` (`SET NX PX`). Returns our token when we got it.
    pub async fn try_lock(&self, id: &str) -> Result<Option<String>, CacheError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut c = self.conn.clone();
        let (key, tok) = (self.lock_key(id), token.clone());
        let ms = u64::try_from(self.settings.lock_ttl.as_millis()).unwrap_or(u64::MAX);
        let ok: Option<String> = self
            .call("SET NX", async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(tok)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms.max(1))
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(ok.map(|_| token))
    }

    /// Whether some reader holds the fill lock of a media.
    pub async fn is_locked(&self, id: &str) -> Result<bool, CacheError> {
        let mut c = self.conn.clone();
        let key = self.lock_key(id);
        self.call("EXISTS", async move {
            redis::cmd("EXISTS").arg(key).query_async(&mut c).await
        })
        .await
    }

    /// Releases the fill lock if `token` still holds it.
    pub async fn unlock(&self, id: &str, token: &str) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        let mut inv = scripts::UNLOCK.prepare_invoke();
        inv.key(self.lock_key(id)).arg(token);
        let _: i64 = self
            .call(
                "EVALSHA unlock",
                async move { inv.invoke_async(&mut c).await },
            )
            .await?;
        Ok(())
    }

    /// Removes a media object (e.g. when its row is gone).
    pub async fn delete(&self, id: &str) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        let key = self.key(id);
        let _: i64 = self
            .call("DEL", async move {
                redis::cmd("DEL").arg(key).query_async(&mut c).await
            })
            .await?;
        Ok(())
    }

    /// Readiness probe.
    pub async fn ping(&self) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        let _: String = self
            .call("PING", async move {
                redis::cmd("PING").query_async(&mut c).await
            })
            .await?;
        Ok(())
    }
}
