//! The embedded queue: a SQLite table in WAL mode, shared by every process on one machine.
//!
//! A message is `ready` until it is dead-lettered. Leasing sets a random `lease_token` and pushes
//! `visible_at` forward by the lease; a lease that is not extended simply expires and the message becomes
//! visible again. Every delivery operation is guarded by the lease token, so a worker whose lease expired
//! cannot ack a message another worker now holds. Retry delays are a `visible_at` in the future.
//!
//! Dead letters stay in the same table with `state = 'dead'`, their reason and the time they died; the admin
//! side (`admin.rs`) reads, redrives and purges them with single statements, so nothing there can half-happen.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use tokio::sync::Notify;

mod admin;
mod delivery;

use self::delivery::EmbeddedDelivery;
use super::{Delivery, JobClass, JobQueue, QueueError, Received};

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
    /// Wakes local receivers of a class right after a local publish to it.
    published: Wakers,
}

/// One `Notify` per class: a publish wakes only the receivers of its own class. (One for all would make
/// every class's puller claim, two write statements each, for every message published to any class.)
#[derive(Debug, Default, Clone)]
pub(super) struct Wakers(Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Notify>>>>);

impl Wakers {
    fn of(&self, class: &str) -> Arc<Notify> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(class.to_owned()).or_default().clone()
    }

    /// Wakes the receivers waiting on `class`.
    pub(super) fn wake(&self, class: &str) {
        self.of(class).notify_waiters();
    }

    /// Wakes every waiting receiver (after an admin change that may touch any class).
    pub(super) fn wake_all(&self) {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for n in map.values() {
            n.notify_waiters();
        }
    }
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

/// Adds `dead_at` to a queue file made before it existed. Two processes opening one old file may both try:
/// the loser's "duplicate column" is success.
async fn add_dead_at(pool: &SqlitePool) -> Result<(), QueueError> {
    let has: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pragma_table_info('queue_messages') WHERE name = 'dead_at'",
    )
    .fetch_one(pool)
    .await
    .map_err(err)?;
    if has > 0 {
        return Ok(());
    }
    match sqlx::query("ALTER TABLE queue_messages ADD COLUMN dead_at INTEGER")
        .execute(pool)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("duplicate column") => Ok(()),
        Err(e) => Err(err(e)),
    }
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
            // As the embedded DB: in WAL mode NORMAL loses no commit when a process dies, only the last few
            // when the machine loses power. A publish lost that way leaves its media waiting, which the
            // reaper re-enqueues through the outbox; a lost ack is a redelivery. FULL would cost an fsync
            // on every publish, claim and ack (three a job).
            .synchronous(SqliteSynchronous::Normal)
            // Reads through a shared mapping rather than a pread(2) a page (see `db::Records::pool`).
            .pragma("mmap_size", crate::db::SQLITE_MMAP_BYTES.to_string())
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // No ping before each acquire: a local file's connection cannot go stale (`db::Records::pool`).
            .test_before_acquire(false)
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
                dead_reason TEXT,
                dead_at INTEGER
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
        add_dead_at(&pool).await?;
        Ok(EmbeddedQueue {
            pool,
            cfg,
            published: Wakers::default(),
        })
    }

    async fn claim(&self, class: &JobClass, max: usize) -> Received {
        let now = now_ms();
        // A read first: with nothing to claim (an idle class, or a wake-up another puller beat us to), no
        // write transaction is started at all, and the crash-loop guard below writes only when it has work.
        let worst: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(receive_count) FROM queue_messages WHERE class = $1 AND state = 'ready' \
             AND visible_at <= $2",
        )
        .bind(class.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        let Some(worst) = worst else {
            return Ok(Vec::new());
        };
        if worst >= i64::from(self.cfg.max_receives) {
            // Crash-loop guard: a message delivered too often without an outcome goes to the DLQ.
            sqlx::query(
                "UPDATE queue_messages SET state = 'dead', lease_token = NULL, dead_at = $2, \
                 dead_reason = 'delivered ' || receive_count || ' times without an outcome (worker crash loop?)' \
                 WHERE class = $1 AND state = 'ready' AND visible_at <= $2 AND receive_count >= $3",
            )
            .bind(class.as_str())
            .bind(now)
            .bind(i64::from(self.cfg.max_receives))
            .execute(&self.pool)
            .await
            .map_err(err)?;
        }
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
                    class: class.as_str().to_owned(),
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
        self.published.wake(class.as_str());
        Ok(())
    }

    async fn receive(&self, class: &JobClass, max: usize, wait: Duration) -> Received {
        let deadline = tokio::time::Instant::now() + wait;
        let wake = self.published.of(class.as_str());
        loop {
            let notified = wake.notified();
            let got = self.claim(class, max.max(1)).await?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let nap = self.cfg.poll_interval.min(deadline - now);
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver waits on its own class's wake-up: a publish to it ends the wait at once (the poll interval
    /// here is far longer than the wait), and a publish to another class hands it nothing.
    #[tokio::test]
    async fn a_publish_wakes_the_receivers_of_its_class() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig {
            poll_interval: Duration::from_secs(600),
            ..EmbeddedConfig::default()
        };
        let q = Arc::new(
            EmbeddedQueue::open(&dir.path().join("q.db"), cfg)
                .await
                .unwrap(),
        );
        let (image, video) = (
            JobClass::new("image").unwrap(),
            JobClass::new("video").unwrap(),
        );
        let waiter = {
            let (q, image) = (q.clone(), image.clone());
            tokio::spawn(async move { q.receive(&image, 1, Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        q.publish(&video, b"{\"for\":\"video\"}").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !waiter.is_finished(),
            "a publish to video woke an image receiver with work"
        );
        q.publish(&image, b"{\"for\":\"image\"}").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), waiter)
            .await
            .expect("the publish to image ended the wait")
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body(), b"{\"for\":\"image\"}");
        // An idle class claims nothing and the other message is still there for its own class.
        assert!(q.claim(&image, 1).await.unwrap().is_empty());
        assert_eq!(q.claim(&video, 1).await.unwrap().len(), 1);
    }
}
