//! The embedded queue: a SQLite table in WAL mode, shared by every process on one machine.
//!
//! A message is `ready` until it is dead-lettered. Leasing sets a random `lease_token` and pushes
//! `visible_at` forward by the lease; a lease that is not extended simply expires and the message becomes
//! visible again. Every delivery operation is guarded by the lease token, so a worker whose lease expired
//! cannot ack a message another worker now holds. Retry delays are a `visible_at` in the future.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use tokio::sync::Notify;

use super::{DeadLetter, Delivery, Depth, JobClass, JobQueue, QueueError};

/// Embedded queue knobs.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Lease given to each delivery.
    pub lease: Duration,
    /// Deliveries of one message before it is dead-lettered (guards against crash loops).
    pub max_receives: u32,
    /// How often an idle `receive` looks for new messages published by other processes.
    pub poll_interval: Duration,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            lease: Duration::from_secs(120),
            max_receives: 20,
            poll_interval: Duration::from_millis(200),
        }
    }
}

/// SQLite-backed queue.
pub struct EmbeddedQueue {
    pool: SqlitePool,
    cfg: EmbeddedConfig,
    /// Wakes local receivers right after a local publish.
    published: Arc<Notify>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn err(e: sqlx::Error) -> QueueError {
    QueueError::Unavailable(format!("embedded queue: {e}"))
}

impl EmbeddedQueue {
    /// Opens (creating if needed) the queue file.
    pub async fn open(path: &Path, cfg: EmbeddedConfig) -> Result<Self, QueueError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| QueueError::Config(format!("{dir:?}: {e}")))?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| QueueError::Config(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(err)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS queue_messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                class TEXT NOT NULL,
                body BLOB NOT NULL,
                state TEXT NOT NULL DEFAULT 'ready',
                visible_at INTEGER NOT NULL,
                enqueued_at INTEGER NOT NULL,
                receive_count INTEGER NOT NULL DEFAULT 0,
                lease_token TEXT,
                delayed INTEGER NOT NULL DEFAULT 0,
                dead_reason TEXT
            )",
        )
        .execute(&pool)
        .await
        .map_err(err)?;
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS queue_messages_ready ON queue_messages (class, state, visible_at)",
        )
        .execute(&pool)
        .await
        .map_err(err)?;
        Ok(EmbeddedQueue {
            pool,
            cfg,
            published: Arc::new(Notify::new()),
        })
    }

    async fn claim(
        &self,
        class: &JobClass,
        max: usize,
    ) -> Result<Vec<Box<dyn Delivery>>, QueueError> {
        let now = now_ms();
        // Crash-loop guard: a message delivered too often without an outcome goes to the DLQ.
        sqlx::query(
            "UPDATE queue_messages SET state = 'dead', lease_token = NULL, \
             dead_reason = 'delivered ' || receive_count || ' times without an outcome (worker crash loop?)' \
             WHERE class = $1 AND state = 'ready' AND visible_at <= $2 AND receive_count >= $3",
        )
        .bind(class.as_str())
        .bind(now)
        .bind(i64::from(self.cfg.max_receives))
        .execute(&self.pool)
        .await
        .map_err(err)?;
        let token = uuid::Uuid::new_v4().to_string();
        let rows = sqlx::query(
            "UPDATE queue_messages SET lease_token = $1, visible_at = $2, receive_count = receive_count + 1, \
             delayed = 0 WHERE id IN (SELECT id FROM queue_messages WHERE class = $3 AND state = 'ready' \
             AND visible_at <= $4 ORDER BY visible_at, id LIMIT $5) RETURNING id, body, receive_count",
        )
        .bind(&token)
        .bind(now + ms(self.cfg.lease))
        .bind(class.as_str())
        .bind(now)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        // `try_get`, never `get`: a row that does not decode is an error of this receive, not a panic in the
        // puller (which would stop the class while the process looks healthy).
        rows.into_iter()
            .map(|r| {
                Ok(Box::new(EmbeddedDelivery {
                    pool: self.pool.clone(),
                    id: r.try_get("id").map_err(err)?,
                    body: r.try_get("body").map_err(err)?,
                    receive_count: r.try_get("receive_count").map_err(err)?,
                    token: token.clone(),
                    published: self.published.clone(),
                }) as Box<dyn Delivery>)
            })
            .collect()
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn declare(&self, _classes: &[JobClass]) -> Result<(), QueueError> {
        Ok(()) // one table holds every class
    }

    async fn publish(&self, class: &JobClass, body: &[u8]) -> Result<(), QueueError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO queue_messages (class, body, visible_at, enqueued_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(class.as_str())
        .bind(body)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        self.published.notify_waiters();
        Ok(())
    }

    async fn receive(
        &self,
        class: &JobClass,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Box<dyn Delivery>>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.published.notified();
            let got = self.claim(class, max.max(1)).await?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let nap = self.cfg.poll_interval.min(deadline - now);
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn depth(&self, class: &JobClass) -> Result<Depth, QueueError> {
        let now = now_ms();
        let r = sqlx::query(
            "SELECT \
               COALESCE(SUM(CASE WHEN state = 'ready' AND visible_at <= $2 THEN 1 ELSE 0 END), 0) AS ready, \
               COALESCE(SUM(CASE WHEN state = 'ready' AND visible_at > $2 AND lease_token IS NOT NULL THEN 1 ELSE 0 END), 0) AS in_flight, \
               COALESCE(SUM(CASE WHEN state = 'ready' AND visible_at > $2 AND lease_token IS NULL THEN 1 ELSE 0 END), 0) AS delayed, \
               COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) AS dlq, \
               MIN(CASE WHEN state = 'ready' AND visible_at <= $2 THEN enqueued_at END) AS oldest \
             FROM queue_messages WHERE class = $1",
        )
        .bind(class.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        let n = |c: &str| u64::try_from(r.get::<i64, _>(c)).unwrap_or(0);
        let oldest: Option<i64> = r.get("oldest");
        Ok(Depth {
            ready: n("ready"),
            in_flight: Some(n("in_flight")),
            delayed: n("delayed"),
            dlq: n("dlq"),
            oldest_age_seconds: oldest.map(|t| (now - t).max(0) as f64 / 1000.0),
        })
    }

    async fn dead_letters(
        &self,
        class: &JobClass,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let rows = sqlx::query(
            "SELECT body, dead_reason FROM queue_messages WHERE class = $1 AND state = 'dead' \
             ORDER BY id LIMIT $2",
        )
        .bind(class.as_str())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|r| DeadLetter {
                body: String::from_utf8_lossy(&r.get::<Vec<u8>, _>("body")).into_owned(),
                reason: r
                    .get::<Option<String>, _>("dead_reason")
                    .unwrap_or_default(),
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }
}

/// A leased embedded message.
struct EmbeddedDelivery {
    pool: SqlitePool,
    id: i64,
    body: Vec<u8>,
    receive_count: i64,
    token: String,
    published: Arc<Notify>,
}

impl EmbeddedDelivery {
    /// Runs a lease-guarded update; a lost lease is an error, so the caller knows its outcome did not count.
    async fn guarded<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<(), QueueError> {
        let n = q.execute(&self.pool).await.map_err(err)?.rows_affected();
        if n == 0 {
            return Err(QueueError::Backend(format!(
                "lease of message {} was lost (expired and taken by another consumer)",
                self.id
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Delivery for EmbeddedDelivery {
    fn body(&self) -> &[u8] {
        &self.body
    }

    fn delivery_count(&self) -> u32 {
        u32::try_from(self.receive_count).unwrap_or(u32::MAX)
    }

    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        let q = sqlx::query("DELETE FROM queue_messages WHERE id = $1 AND lease_token = $2")
            .bind(self.id)
            .bind(&self.token);
        self.guarded(q).await
    }

    async fn retry_after(
        self: Box<Self>,
        delay: Duration,
        body: Vec<u8>,
    ) -> Result<(), QueueError> {
        // Our own attempt count lives in the new body, so the broker-side receive count starts over.
        let q = sqlx::query(
            "UPDATE queue_messages SET body = $3, visible_at = $4, lease_token = NULL, delayed = 1, \
             receive_count = 0 WHERE id = $1 AND lease_token = $2",
        )
        .bind(self.id)
        .bind(&self.token)
        .bind(body)
        .bind(now_ms() + ms(delay));
        self.guarded(q).await
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        let q = sqlx::query(
            "UPDATE queue_messages SET state = 'dead', dead_reason = $3, lease_token = NULL \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(self.id)
        .bind(&self.token)
        .bind(reason);
        self.guarded(q).await
    }

    async fn release(self: Box<Self>) -> Result<(), QueueError> {
        let q = sqlx::query(
            // A hand-back is not a failed delivery: the receive count goes back to what it was.
            "UPDATE queue_messages SET visible_at = $3, lease_token = NULL, \
             receive_count = MAX(receive_count - 1, 0) WHERE id = $1 AND lease_token = $2",
        )
        .bind(self.id)
        .bind(&self.token)
        .bind(now_ms());
        self.guarded(q).await?;
        self.published.notify_waiters();
        Ok(())
    }

    async fn extend_lease(&self, lease: Duration) -> Result<(), QueueError> {
        let q = sqlx::query(
            "UPDATE queue_messages SET visible_at = $3 WHERE id = $1 AND lease_token = $2",
        )
        .bind(self.id)
        .bind(&self.token)
        .bind(now_ms() + ms(lease));
        self.guarded(q).await
    }
}
