//! Cache knobs: how long media objects live in the cache (Redis or memcached), and how the read path fills a
//! miss.

use std::time::Duration;

use serde::Deserialize;

/// Cache knobs, resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheSettings {
    /// Life of an object whose media has ended (`ready`, `failed`, `deleted`). Warm jobs rewrite it on every
    /// status change, so this only bounds how long an object nobody reads stays in memory.
    pub ttl: Duration,
    /// Life of an object whose media is still moving (`uploading`, `queued`, `processing`). Moves between
    /// these statuses do not enqueue warm jobs, so a short life bounds how stale such an object can be.
    pub pending_ttl: Duration,
    /// Life of the single-flight fill lock (`SET NX`): the longest other readers wait for one DB read
    /// before they read the DB themselves.
    pub lock_ttl: Duration,
    /// Longest any one cache call may take before the cache counts as down for that request.
    pub op_timeout: Duration,
    /// memcached only: the server's item size limit (`memcached -I`, default 1 MiB). An object whose item
    /// (key, value and memcached's per-item overhead) would exceed it is not sent: it is counted
    /// (`mediafleet_cache_not_cached_total{reason="too_large"}`), logged, and served from the DB.
    pub max_item_bytes: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            ttl: Duration::from_secs(7 * 24 * 3600),
            pending_ttl: Duration::from_secs(5),
            lock_ttl: Duration::from_secs(3),
            op_timeout: Duration::from_millis(500),
            max_item_bytes: 1024 * 1024,
        }
    }
}

/// `[cache_options]` in the TOML file; durations as "30s", "24h".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    /// See [`CacheSettings::ttl`].
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// See [`CacheSettings::pending_ttl`].
    #[serde(default, with = "humantime_serde")]
    pub pending_ttl: Option<Duration>,
    /// See [`CacheSettings::lock_ttl`].
    #[serde(default, with = "humantime_serde")]
    pub lock_ttl: Option<Duration>,
    /// See [`CacheSettings::op_timeout`].
    #[serde(default, with = "humantime_serde")]
    pub op_timeout: Option<Duration>,
    /// See [`CacheSettings::max_item_bytes`] (bytes, e.g. 1048576; match the servers' `-I`).
    #[serde(default)]
    pub max_item_bytes: Option<usize>,
}

impl CacheFile {
    /// Fills the gaps with defaults; `ttl_flag` (`--cache-ttl`) beats the file.
    pub fn resolve(&self, ttl_flag: Option<Duration>) -> CacheSettings {
        let d = CacheSettings::default();
        CacheSettings {
            ttl: ttl_flag.or(self.ttl).unwrap_or(d.ttl),
            pending_ttl: self.pending_ttl.unwrap_or(d.pending_ttl),
            lock_ttl: self.lock_ttl.unwrap_or(d.lock_ttl),
            op_timeout: self.op_timeout.unwrap_or(d.op_timeout),
            max_item_bytes: self.max_item_bytes.unwrap_or(d.max_item_bytes),
        }
    }
}
