//! The Redis backend: one string per key; the version guard and the lock release are Lua scripts, so each
//! check-and-write is atomic however many workers race. The connection is a lazy `ConnectionManager`
//! (one multiplexed connection shared by all clones) that reconnects by itself.

mod scripts;

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{CacheBackend, CacheError, Put, PutItem};
use crate::config::CacheSettings;

impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        CacheError::Unavailable(e.to_string())
    }
}

/// A Redis server.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redis")
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Redis {
    /// The Redis at `url`. Does not connect.
    pub fn new(url: &str, settings: &CacheSettings) -> Result<Self, CacheError> {
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
        Ok(Redis { conn })
    }
}

#[async_trait]
impl CacheBackend for Redis {
    fn name(&self) -> &'static str {
        "Redis"
    }

    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("GET").arg(key).query_async(&mut c).await?)
    }

    async fn put(&self, item: PutItem<'_>) -> Result<Put, CacheError> {
        let mut c = self.conn.clone();
        let mut inv = scripts::PUT_IF_NOT_OLDER.prepare_invoke();
        inv.key(item.key)
            .arg(item.json)
            .arg(item.version)
            .arg(ms(item.ttl));
        let n: i64 = inv.invoke_async(&mut c).await?;
        Ok(if n == 1 { Put::Written } else { Put::KeptNewer })
    }

    async fn put_many(&self, items: &[PutItem<'_>]) -> Result<Vec<Put>, CacheError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        // Pipelined EVALSHA does not load the script on NOSCRIPT: load it first (idempotent, cheap).
        let script = &*scripts::PUT_IF_NOT_OLDER;
        script.load_async(&mut c).await?;
        let mut pipe = redis::pipe();
        for it in items {
            pipe.invoke_script(
                script
                    .key(it.key)
                    .arg(it.json)
                    .arg(it.version)
                    .arg(ms(it.ttl)),
            );
        }
        let n: Vec<i64> = pipe.query_async(&mut c).await?;
        Ok(n.into_iter()
            .map(|n| if n == 1 { Put::Written } else { Put::KeptNewer })
            .collect())
    }

    async fn add_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, CacheError> {
        let mut c = self.conn.clone();
        let ok: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ms(ttl))
            .query_async(&mut c)
            .await?;
        Ok(ok.is_some())
    }

    async fn exists(&self, key: &str) -> Result<bool, CacheError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("EXISTS").arg(key).query_async(&mut c).await?)
    }

    async fn release_lock(&self, key: &str, token: &str) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        let mut inv = scripts::UNLOCK.prepare_invoke();
        inv.key(key).arg(token);
        let _: i64 = inv.invoke_async(&mut c).await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        let _: i64 = redis::cmd("DEL").arg(key).query_async(&mut c).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }
}
