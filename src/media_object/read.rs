//! The read path of `GET /v1/media/{id}`: Redis first; on a miss one reader fills the cache from the DB's
//! read pool under a single-flight lock (`SET NX` with a short TTL) while the others wait for the key.
//! With Redis down every step falls back to the DB: a read never fails because of the cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::Assembled;
use crate::cache::{CacheError, MediaCache};
use crate::db::{DbError, Records};

/// Why a read failed. The cache never makes a read fail, so only the DB can.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The database could not answer.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Counters of the read path, for tests and metrics.
#[derive(Debug, Default)]
pub struct ReadStats {
    /// Objects served from Redis.
    pub hits: AtomicU64,
    /// Reads that found no object in Redis.
    pub misses: AtomicU64,
    /// Media objects assembled from the database (one media query + one renditions query each).
    pub db_loads: AtomicU64,
}

/// Serves media objects: from the cache when one is configured, else from the database.
#[derive(Clone, Debug)]
pub struct MediaReader {
    records: Records,
    cache: Option<MediaCache>,
    public_url: Option<String>,
    stats: Arc<ReadStats>,
}

impl MediaReader {
    /// A reader over `records`, with an optional cache in front.
    pub fn new(records: Records, cache: Option<MediaCache>, public_url: Option<String>) -> Self {
        MediaReader {
            records,
            cache,
            public_url,
            stats: Arc::default(),
        }
    }

    /// The cache, if configured (for readiness).
    pub fn cache(&self) -> Option<&MediaCache> {
        self.cache.as_ref()
    }

    /// The read path's counters.
    pub fn stats(&self) -> &ReadStats {
        &self.stats
    }

    /// The JSON of a media object, `None` when the media does not exist.
    pub async fn get(&self, id: &str) -> Result<Option<String>, ReadError> {
        let Some(cache) = &self.cache else {
            return Ok(self.load(id).await?.map(|a| a.json));
        };
        match cache.get(id).await {
            Ok(Some(json)) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(json));
            }
            Ok(None) => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
            }
            // Degraded: the cache logged the transition; serve from the DB.
            Err(_) => return Ok(self.load(id).await?.map(|a| a.json)),
        }
        self.fill(cache, id).await
    }

    /// A miss: take the fill lock and load, or wait for whoever holds it.
    async fn fill(&self, cache: &MediaCache, id: &str) -> Result<Option<String>, ReadError> {
        let deadline = tokio::time::Instant::now() + cache.settings().lock_ttl;
        let mut nap = Duration::from_millis(2);
        loop {
            match cache.try_lock(id).await {
                Ok(Some(token)) => return self.load_and_put(cache, id, &token).await,
                Ok(None) => {}
                Err(_) => return Ok(self.load(id).await?.map(|a| a.json)),
            }
            // Someone else is loading: wait for the object, not the DB.
            loop {
                tokio::time::sleep(nap).await;
                nap = (nap * 2).min(Duration::from_millis(25));
                match cache.get(id).await {
                    Ok(Some(json)) => {
                        self.stats.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(Some(json));
                    }
                    Ok(None) => {}
                    Err(_) => return Ok(self.load(id).await?.map(|a| a.json)),
                }
                if tokio::time::Instant::now() >= deadline {
                    // The loader is slow or gone: do not keep the client waiting on it.
                    debug!(media_id = %id, "fill lock held past its TTL; reading the DB directly");
                    return Ok(self.load(id).await?.map(|a| a.json));
                }
                match cache.is_locked(id).await {
                    // Released without an object (media missing, or its write lost): try to load ourselves.
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(_) => return Ok(self.load(id).await?.map(|a| a.json)),
                }
            }
        }
    }

    async fn load_and_put(
        &self,
        cache: &MediaCache,
        id: &str,
        token: &str,
    ) -> Result<Option<String>, ReadError> {
        // The previous holder may have filled the key and released the lock between our miss and our lock:
        // look again before going to the DB.
        if let Ok(Some(json)) = cache.get(id).await {
            let _ = cache.unlock(id, token).await;
            return Ok(Some(json));
        }
        let loaded = self.load(id).await;
        if let Ok(Some(obj)) = &loaded {
            // A failed write only costs the next reader a miss; the version guard keeps a newer warm.
            if let Err(e) = cache.put(id, &obj.json, obj.version, obj.is_final).await {
                debug!(media_id = %id, error = %e, "could not fill the cache");
            }
        }
        let _ = cache.unlock(id, token).await.map_err(|e: CacheError| {
            debug!(media_id = %id, error = %e, "could not release the fill lock; it expires by itself")
        });
        Ok(loaded?.map(|a| a.json))
    }

    /// Assembles the object from the read pool.
    async fn load(&self, id: &str) -> Result<Option<Assembled>, DbError> {
        self.stats.db_loads.fetch_add(1, Ordering::Relaxed);
        let Some(row) = self.records.media(id).await? else {
            return Ok(None);
        };
        let renditions = self.records.renditions(id).await?;
        Ok(Some(Assembled::new(
            &row,
            &renditions,
            self.public_url.as_deref(),
        )))
    }
}
