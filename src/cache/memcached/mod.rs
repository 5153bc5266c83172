//! The memcached backend: a pool of servers chosen per key with libmemcached's weighted ketama (what PHP's
//! `Memcached` extension uses with `OPT_LIBKETAMA_COMPATIBLE`), one pipelined text-protocol connection per
//! server ([`conn`]), and the same guarantees as Redis without server-side scripts:
//!
//! - **version guard**: `gets` the stored object, compare its `version`, then `cas` with the unique from
//!   `gets` (or `add` when there is none). A `cas` that finds the item changed (`EXISTS`/`NOT_FOUND`) or an
//!   `add` that finds one (`NOT_STORED`) starts over, at most [`CAS_ATTEMPTS`] times with a short random
//!   pause, then gives up with [`CacheError::Contended`] (a warm job retries later). An older version can
//!   never replace a newer one: every write is conditional on the exact item whose version was compared.
//! - **batches** (`ops warm`): one `gets k1 k2 …` per server, then every `cas`/`add` of the page pipelined
//!   in one write per server; only items that lost a race take the single-item loop.
//! - **fill lock**: `add` of the lock key with a TTL; released by a compare-and-expire (`cas` of the holder's
//!   unique with a negative exptime), so a lock that expired and was taken by another reader is never
//!   released by us.
//! - **TTLs** in whole seconds (memcached's clock ticks once a second), rounded up; over 30 days they are
//!   sent as absolute Unix times, as the protocol requires.
//! - **item size**: objects whose item would exceed [`CacheSettings::max_item_bytes`] are not sent
//!   ([`Put::NotCached`], counted and logged); a server answering `SERVER_ERROR object too large` is treated
//!   the same way.

mod conn;
pub mod ketama;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use futures::future::join_all;
use tracing::warn;

use conn::{storage, Conn};
pub use conn::{Expect, Reply, Value};
pub use ketama::Ketama;

use super::{CacheBackend, CacheError, Put, PutItem, NOT_CACHED};
use crate::config::{CacheSettings, MemcachedServer};

/// Most `gets`+`cas` rounds one guarded write makes before it reports contention.
pub const CAS_ATTEMPTS: u32 = 32;
/// The first pause after a lost `cas` round (doubling, jittered, up to [`CAS_PAUSE_MAX`]).
const CAS_PAUSE_MIN: Duration = Duration::from_micros(100);
/// The longest pause between `cas` rounds.
const CAS_PAUSE_MAX: Duration = Duration::from_millis(8);
/// memcached's key length limit.
pub const MAX_KEY: usize = 250;
/// Keys per `gets` command in a batch.
const GETS_CHUNK: usize = 100;
/// memcached's per-item overhead counted against `-I` (item header, CAS, key terminator, CRLF), rounded up.
const ITEM_OVERHEAD: usize = 64;
/// Relative exptimes above this are read by memcached as absolute Unix times.
const RELATIVE_MAX: u64 = 60 * 60 * 24 * 30;
/// After a failed dial, calls to that server fail at once for this long instead of dialling again.
const REDIAL_PAUSE: Duration = Duration::from_millis(200);

/// Checks a key is one memcached's text protocol accepts (1–250 bytes, no spaces or control characters).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY && key.bytes().all(|b| b > b' ' && b != 0x7f)
}

/// Refuses a `--prefix` that would make a lock key (`{prefix}:lock:media:{uuid}`) too long or invalid.
pub fn check_prefix(prefix: &str) -> Result<(), CacheError> {
    let longest = format!("{prefix}:lock:media:{}", uuid::Uuid::nil());
    if valid_key(&longest) {
        Ok(())
    } else {
        Err(CacheError::Config(format!(
            "--prefix {prefix:?}: memcached keys must be at most {MAX_KEY} bytes without spaces or control \
             characters, and {prefix:?} makes {}-byte keys such as {longest:?}",
            longest.len()
        )))
    }
}

struct Server {
    addr: String,
    conn: tokio::sync::Mutex<(Option<Conn>, Option<Instant>)>,
}

impl Server {
    async fn conn(&self, timeout: Duration) -> Result<Conn, CacheError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = &slot.0 {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        if let Some(at) = slot.1 {
            if at.elapsed() < REDIAL_PAUSE {
                return Err(CacheError::Unavailable(format!(
                    "memcached {}: down (last dial failed {:?} ago)",
                    self.addr,
                    at.elapsed()
                )));
            }
        }
        match Conn::connect(&self.addr, timeout).await {
            Ok(c) => {
                *slot = (Some(c.clone()), None);
                Ok(c)
            }
            Err(e) => {
                *slot = (None, Some(Instant::now()));
                Err(e)
            }
        }
    }

    async fn call(
        &self,
        timeout: Duration,
        bytes: Vec<u8>,
        expect: Vec<Expect>,
    ) -> Result<Vec<Reply>, CacheError> {
        self.conn(timeout).await?.call(bytes, expect).await
    }
}

/// A memcached pool.
pub struct Memcached {
    servers: Vec<Server>,
    ring: Ketama,
    max_item_bytes: usize,
    dial_timeout: Duration,
}

impl std::fmt::Debug for Memcached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memcached")
            .field(
                "servers",
                &self.servers.iter().map(|s| &s.addr).collect::<Vec<_>>(),
            )
            .field("max_item_bytes", &self.max_item_bytes)
            .finish()
    }
}

/// memcached's exptime for a TTL: whole seconds, rounded up, absolute past 30 days.
pub fn exptime(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    let secs = secs.max(1);
    if secs <= RELATIVE_MAX {
        i64::try_from(secs).unwrap_or(i64::MAX)
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        i64::try_from(now.saturating_add(secs)).unwrap_or(i64::MAX)
    }
}

/// The `version` of a stored object; `None` when it is not a media object (then it is overwritten, as on
/// Redis).
fn stored_version(data: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct V {
        version: Option<serde_json::Value>,
    }
    let v: V = serde_json::from_slice(data).ok()?;
    match v.version? {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn unexpected(what: &str, r: &Reply) -> CacheError {
    CacheError::Unavailable(format!("memcached {what}: unexpected answer {r:?}"))
}

fn too_large(line: &str) -> bool {
    line.starts_with("SERVER_ERROR") && line.contains("too large")
}

/// How one conditional write ended.
enum Attempt {
    Done(Put),
    Lost,
}

impl Memcached {
    /// A pool of `servers` (at least one). Does not connect.
    pub fn new(servers: &[MemcachedServer], settings: &CacheSettings) -> Result<Self, CacheError> {
        if servers.is_empty() {
            return Err(CacheError::Config("--cache memcached://: no server".into()));
        }
        Ok(Memcached {
            servers: servers
                .iter()
                .map(|s| Server {
                    addr: s.addr(),
                    conn: tokio::sync::Mutex::new((None, None)),
                })
                .collect(),
            ring: Ketama::new(servers),
            max_item_bytes: settings.max_item_bytes,
            dial_timeout: settings.op_timeout,
        })
    }

    /// The index (in `--cache` order) of the server that holds `key`.
    pub fn server_index(&self, key: &str) -> usize {
        self.ring.server_for(key.as_bytes())
    }

    fn server(&self, key: &str) -> &Server {
        &self.servers[self.server_index(key)]
    }

    fn check_key(key: &str) -> Result<(), CacheError> {
        if valid_key(key) {
            Ok(())
        } else {
            // Keys are built from the checked prefix and UUIDs; anything else is a programming error.
            Err(CacheError::Config(format!(
                "not a valid memcached key: {key:?}"
            )))
        }
    }

    fn fits(&self, item: &PutItem<'_>) -> bool {
        item.key.len() + item.json.len() + ITEM_OVERHEAD <= self.max_item_bytes
    }

    fn not_cached(&self, item: &PutItem<'_>, why: &str) -> Put {
        NOT_CACHED.with_label_values(&["too_large"]).inc();
        warn!(
            key = item.key,
            bytes = item.json.len(),
            max_item_bytes = self.max_item_bytes,
            why,
            "media object too large for memcached; not cached (readers get it from the database)"
        );
        Put::NotCached
    }

    async fn gets(&self, key: &str) -> Result<Option<Value>, CacheError> {
        let replies = self
            .server(key)
            .call(
                self.dial_timeout,
                format!("gets {key}\r\n").into_bytes(),
                vec![Expect::Values],
            )
            .await?;
        match replies.into_iter().next() {
            Some(Reply::Values(mut v)) => Ok(v.pop()),
            Some(r) => Err(unexpected("gets", &r)),
            None => Err(unexpected("gets", &Reply::Line(String::new()))),
        }
    }

    /// Decides one item against what `gets` found: the command to send, or the outcome without one.
    fn plan(item: &PutItem<'_>, found: Option<&Value>) -> Result<(&'static str, Option<u64>), Put> {
        match found {
            None => Ok(("add", None)),
            Some(v) => match stored_version(&v.data) {
                Some(stored) if stored > item.version => Err(Put::KeptNewer),
                _ => Ok(("cas", v.cas)),
            },
        }
    }

    fn outcome(&self, item: &PutItem<'_>, reply: &Reply) -> Result<Attempt, CacheError> {
        match reply {
            Reply::Line(l) if l == "STORED" => Ok(Attempt::Done(Put::Written)),
            Reply::Line(l) if l == "EXISTS" || l == "NOT_FOUND" || l == "NOT_STORED" => {
                Ok(Attempt::Lost)
            }
            Reply::Line(l) if too_large(l) => Ok(Attempt::Done(self.not_cached(item, l))),
            r => Err(unexpected("store", r)),
        }
    }

    async fn guarded_once(&self, item: &PutItem<'_>) -> Result<Attempt, CacheError> {
        let found = self.gets(item.key).await?;
        let (cmd, cas) = match Self::plan(item, found.as_ref()) {
            Ok(c) => c,
            Err(done) => return Ok(Attempt::Done(done)),
        };
        let mut buf = Vec::with_capacity(item.json.len() + 96);
        storage(
            &mut buf,
            cmd,
            item.key,
            exptime(item.ttl),
            item.json.as_bytes(),
            cas,
        );
        let replies = self
            .server(item.key)
            .call(self.dial_timeout, buf, vec![Expect::Line])
            .await?;
        match replies.first() {
            Some(r) => self.outcome(item, r),
            None => Err(unexpected("store", &Reply::Line(String::new()))),
        }
    }

    /// The single-item version guard: `gets`, compare, `cas`/`add`; again on a lost race.
    async fn guarded(&self, item: &PutItem<'_>) -> Result<Put, CacheError> {
        Self::check_key(item.key)?;
        if !self.fits(item) {
            return Ok(self.not_cached(item, "over max_item_bytes"));
        }
        // A lost round means someone wrote between our gets and our cas: look again after a short
        // jittered pause (`backon`), at most CAS_ATTEMPTS rounds in all.
        let round = || async {
            match self.guarded_once(item).await? {
                Attempt::Done(p) => Ok(p),
                Attempt::Lost => Err(CacheError::Contended(format!(
                    "{}: {CAS_ATTEMPTS} gets/cas rounds lost to concurrent writers",
                    item.key
                ))),
            }
        };
        round
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(CAS_PAUSE_MIN)
                    .with_max_delay(CAS_PAUSE_MAX)
                    .with_max_times(CAS_ATTEMPTS as usize - 1)
                    .with_jitter(),
            )
            .when(|e| matches!(e, CacheError::Contended(_)))
            .await
    }

    /// One server's share of a batch: one pipelined `gets`, one pipelined write; lost races are retried
    /// one by one.
    async fn put_batch_on(
        &self,
        server: &Server,
        items: &[(usize, PutItem<'_>)],
    ) -> Result<Vec<(usize, Put)>, CacheError> {
        let mut out = Vec::with_capacity(items.len());
        let mut live: Vec<&(usize, PutItem<'_>)> = Vec::with_capacity(items.len());
        for it in items {
            if self.fits(&it.1) {
                live.push(it);
            } else {
                out.push((it.0, self.not_cached(&it.1, "over max_item_bytes")));
            }
        }
        if live.is_empty() {
            return Ok(out);
        }
        let mut buf = Vec::new();
        let mut expect = Vec::new();
        for chunk in live.chunks(GETS_CHUNK) {
            buf.extend_from_slice(b"gets");
            for (_, it) in chunk {
                buf.push(b' ');
                buf.extend_from_slice(it.key.as_bytes());
            }
            buf.extend_from_slice(b"\r\n");
            expect.push(Expect::Values);
        }
        let mut found = std::collections::HashMap::new();
        for r in server.call(self.dial_timeout, buf, expect).await? {
            match r {
                Reply::Values(vs) => found.extend(vs.into_iter().map(|v| (v.key.clone(), v))),
                r => return Err(unexpected("gets", &r)),
            }
        }
        let mut buf = Vec::new();
        let mut sent: Vec<&(usize, PutItem<'_>)> = Vec::new();
        for it in live {
            match Self::plan(&it.1, found.get(it.1.key)) {
                Err(done) => out.push((it.0, done)),
                Ok((cmd, cas)) => {
                    storage(
                        &mut buf,
                        cmd,
                        it.1.key,
                        exptime(it.1.ttl),
                        it.1.json.as_bytes(),
                        cas,
                    );
                    sent.push(it);
                }
            }
        }
        if sent.is_empty() {
            return Ok(out);
        }
        let replies = server
            .call(self.dial_timeout, buf, vec![Expect::Line; sent.len()])
            .await?;
        for (it, r) in sent.into_iter().zip(&replies) {
            match self.outcome(&it.1, r)? {
                Attempt::Done(p) => out.push((it.0, p)),
                Attempt::Lost => out.push((it.0, self.guarded(&it.1).await?)),
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl CacheBackend for Memcached {
    fn name(&self) -> &'static str {
        "memcached"
    }

    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        Self::check_key(key)?;
        let replies = self
            .server(key)
            .call(
                self.dial_timeout,
                format!("get {key}\r\n").into_bytes(),
                vec![Expect::Values],
            )
            .await?;
        match replies.into_iter().next() {
            Some(Reply::Values(mut v)) => match v.pop() {
                Some(v) => String::from_utf8(v.data).map(Some).map_err(|_| {
                    CacheError::Unavailable(format!("{key}: stored value is not UTF-8"))
                }),
                None => Ok(None),
            },
            Some(r) => Err(unexpected("get", &r)),
            None => Err(unexpected("get", &Reply::Line(String::new()))),
        }
    }

    async fn put(&self, item: PutItem<'_>) -> Result<Put, CacheError> {
        self.guarded(&item).await
    }

    async fn put_many(&self, items: &[PutItem<'_>]) -> Result<Vec<Put>, CacheError> {
        for it in items {
            Self::check_key(it.key)?;
        }
        let mut per: Vec<Vec<(usize, PutItem<'_>)>> = vec![Vec::new(); self.servers.len()];
        for (i, it) in items.iter().enumerate() {
            per[self.server_index(it.key)].push((i, *it));
        }
        let results = join_all(
            per.iter()
                .enumerate()
                .filter(|(_, v)| !v.is_empty())
                .map(|(s, v)| self.put_batch_on(&self.servers[s], v)),
        )
        .await;
        let mut out = vec![Put::NotCached; items.len()];
        for r in results {
            for (i, p) in r? {
                out[i] = p;
            }
        }
        Ok(out)
    }

    async fn add_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, CacheError> {
        Self::check_key(key)?;
        let mut buf = Vec::new();
        storage(&mut buf, "add", key, exptime(ttl), token.as_bytes(), None);
        let r = self
            .server(key)
            .call(self.dial_timeout, buf, vec![Expect::Line])
            .await?;
        match r.first() {
            Some(Reply::Line(l)) if l == "STORED" => Ok(true),
            Some(Reply::Line(l)) if l == "NOT_STORED" => Ok(false),
            Some(r) => Err(unexpected("add", r)),
            None => Err(unexpected("add", &Reply::Line(String::new()))),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        Ok(self.get(key).await?.is_some())
    }

    async fn release_lock(&self, key: &str, token: &str) -> Result<(), CacheError> {
        Self::check_key(key)?;
        let Some(v) = self.gets(key).await? else {
            return Ok(());
        };
        if v.data != token.as_bytes() {
            return Ok(()); // expired and taken by another reader: not ours to release
        }
        // Compare-and-expire: a negative exptime makes the item expire at once, only if it is still ours.
        let mut buf = Vec::new();
        storage(&mut buf, "cas", key, -1, b"", v.cas);
        let r = self
            .server(key)
            .call(self.dial_timeout, buf, vec![Expect::Line])
            .await?;
        match r.first() {
            Some(Reply::Line(l)) if l == "STORED" || l == "EXISTS" || l == "NOT_FOUND" => Ok(()),
            Some(r) => Err(unexpected("cas (unlock)", r)),
            None => Err(unexpected("cas (unlock)", &Reply::Line(String::new()))),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        Self::check_key(key)?;
        let r = self
            .server(key)
            .call(
                self.dial_timeout,
                format!("delete {key}\r\n").into_bytes(),
                vec![Expect::Line],
            )
            .await?;
        match r.first() {
            Some(Reply::Line(l)) if l == "DELETED" || l == "NOT_FOUND" => Ok(()),
            Some(r) => Err(unexpected("delete", r)),
            None => Err(unexpected("delete", &Reply::Line(String::new()))),
        }
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let all = join_all(self.servers.iter().map(|s| async move {
            let r = s
                .call(
                    self.dial_timeout,
                    b"version\r\n".to_vec(),
                    vec![Expect::Line],
                )
                .await?; // its errors already name the server
            match r.first() {
                Some(Reply::Line(l)) if l.starts_with("VERSION ") => Ok(()),
                Some(r) => Err(unexpected("version", r)),
                None => Err(unexpected("version", &Reply::Line(String::new()))),
            }
        }))
        .await;
        all.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptimes_are_whole_seconds_and_absolute_past_thirty_days() {
        assert_eq!(exptime(Duration::from_millis(300)), 1);
        assert_eq!(exptime(Duration::from_millis(1500)), 2);
        assert_eq!(exptime(Duration::from_secs(7 * 24 * 3600)), 604_800);
        let far = exptime(Duration::from_secs(60 * 24 * 3600));
        assert!(far > 1_600_000_000, "{far}");
    }

    #[test]
    fn keys_and_prefixes() {
        assert!(valid_key("mediafleet:media:0190"));
        assert!(!valid_key("a b"));
        assert!(!valid_key(&"k".repeat(251)));
        assert!(check_prefix("mediafleet").is_ok());
        assert!(check_prefix(&"p".repeat(202)).is_ok());
        assert!(check_prefix(&"p".repeat(203)).is_err());
        assert!(check_prefix("has space").is_err());
    }

    #[test]
    fn versions_are_read_from_the_object() {
        assert_eq!(stored_version(br#"{"id":"x","version":7}"#), Some(7));
        assert_eq!(stored_version(br#"{"version":"8"}"#), Some(8));
        assert_eq!(stored_version(b"not json"), None);
        assert_eq!(stored_version(br#"{"id":"x"}"#), None);
    }
}
