//! Writing media objects into the cache: one media (the `cache.warm` job) or a page of them (`ops warm`).
//! Rows come from the primary; every write goes through the version guard, so an older warm never
//! overwrites a newer object, whoever runs first.

use super::Assembled;
use crate::cache::{CacheError, MediaCache, Put};
use crate::db::{DbError, MediaRow, Records, RenditionRow};

/// Why a warm failed; both are transient (retry later).
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// The database could not answer.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The cache could not answer.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// What warming one media did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmed {
    /// The object at this version is in the cache.
    Written(i64),
    /// The cache already held a newer version (this one is stale).
    KeptNewer,
    /// The media no longer exists; its key was removed.
    Missing,
    /// The object is over the cache's item size limit (memcached); counted and logged, not cached.
    NotCached,
}

/// Assembles one media from the primary and writes it under the version guard.
pub async fn warm_one(
    records: &Records,
    cache: &MediaCache,
    id: &str,
    public_url: Option<&str>,
) -> Result<Warmed, WarmError> {
    let Some((row, renditions)) = records.object_rows(id).await? else {
        cache.delete(id).await?;
        return Ok(Warmed::Missing);
    };
    let obj = Assembled::new(&row, &renditions, public_url);
    Ok(
        match cache.put(id, &obj.json, obj.version, obj.is_final).await? {
            Put::Written => Warmed::Written(obj.version),
            Put::KeptNewer => Warmed::KeptNewer,
            Put::NotCached => Warmed::NotCached,
        },
    )
}

/// Counts of a page warm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageWarmed {
    /// Objects written.
    pub written: u64,
    /// Objects skipped because the cache held a newer version.
    pub kept_newer: u64,
    /// Objects over the cache's item size limit (memcached), not cached.
    pub not_cached: u64,
}

/// Writes a page of already-read rows in one batch (a Redis pipeline; per memcached server one `gets` and
/// one pipelined write).
pub async fn warm_page(
    cache: &MediaCache,
    rows: &[(MediaRow, Vec<RenditionRow>)],
    public_url: Option<&str>,
) -> Result<PageWarmed, CacheError> {
    let objs: Vec<Assembled> = rows
        .iter()
        .map(|(r, rs)| Assembled::new(r, rs, public_url))
        .collect();
    let items: Vec<(&str, &str, i64, bool)> = objs
        .iter()
        .map(|o| (o.id.as_str(), o.json.as_str(), o.version, o.is_final))
        .collect();
    let mut out = PageWarmed::default();
    for p in cache.put_many(&items).await? {
        match p {
            Put::Written => out.written += 1,
            Put::KeptNewer => out.kept_newer += 1,
            Put::NotCached => out.not_cached += 1,
        }
    }
    Ok(out)
}
