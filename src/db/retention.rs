//! The retention job's deletes: bookkeeping rows past their configured age go, a bounded batch at a time so
//! no statement holds locks for long. Written once for Postgres and SQLite (row values in `IN`).

use std::time::Duration;

use super::bind::BindExt;
use super::{now_ms, DbError, Records};

/// Rows removed by one retention pass, by what they were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    /// Job attempts of media that ended.
    pub attempts: u64,
    /// Idempotency keys.
    pub idempotency: u64,
    /// Deleted media rows (with their renditions and attempts).
    pub tombstones: u64,
    /// Audit log entries.
    pub audit: u64,
}

/// Rows one statement removes at most.
const BATCH: i64 = 1000;

fn cutoff(age: Duration) -> i64 {
    now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
}

impl Records {
    /// Runs `sql` (with `$1` the cutoff and `$2` the batch size) until a batch removes fewer than `BATCH` rows.
    async fn delete_batches(&self, sql: &str, before: i64) -> Result<u64, DbError> {
        let mut total = 0;
        loop {
            let n = sqlx::query(sql)
                .arg(before)
                .arg(BATCH)
                .execute(&self.write)
                .await?
                .rows_affected();
            total += n;
            if n < BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Job attempts started before `age` ago whose media has ended (ready, failed or deleted) or is gone.
    /// Attempts of media still in progress stay, however old: the reaper and `ops failed show` read them.
    pub async fn purge_attempts(&self, age: Duration) -> Result<u64, DbError> {
        self.delete_batches(
            "DELETE FROM job_attempts WHERE (job_id, attempt) IN ( \
               SELECT a.job_id, a.attempt FROM job_attempts a LEFT JOIN media m ON m.id = a.media_id \
               WHERE a.started_at < $1 AND (m.id IS NULL OR m.status IN ('ready', 'failed', 'deleted')) \
               LIMIT $2)",
            cutoff(age),
        )
        .await
    }

    /// Idempotency keys older than `age`: a retry with such a key is a new upload.
    pub async fn purge_idempotency(&self, age: Duration) -> Result<u64, DbError> {
        self.delete_batches(
            "DELETE FROM idempotency WHERE (scope, key) IN ( \
               SELECT scope, key FROM idempotency WHERE created_at < $1 LIMIT $2)",
            cutoff(age),
        )
        .await
    }

    /// Media deleted more than `age` ago, with their rendition rows and attempts. Their objects were removed
    /// by the DELETE itself; afterwards the id answers 404 like one that never existed.
    pub async fn purge_tombstones(&self, age: Duration) -> Result<u64, DbError> {
        let before = cutoff(age);
        let pick = "SELECT id FROM media WHERE status = 'deleted' AND updated_at < $1 LIMIT $2";
        let mut total = 0;
        loop {
            let ids: Vec<String> = sqlx::query_scalar(pick)
                .arg(before)
                .arg(BATCH)
                .fetch_all(&self.write)
                .await?;
            if ids.is_empty() {
                return Ok(total);
            }
            let mut tx = self.write.begin().await?;
            for id in &ids {
                for sql in [
                    "DELETE FROM renditions WHERE media_id = $1",
                    "DELETE FROM job_attempts WHERE media_id = $1",
                    "DELETE FROM media WHERE id = $1 AND status = 'deleted'",
                ] {
                    sqlx::query(sql).arg(id).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            total += ids.len() as u64;
            if (ids.len() as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    /// Audit entries older than `age`.
    pub async fn purge_audit(&self, age: Duration) -> Result<u64, DbError> {
        self.delete_batches(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 LIMIT $2)",
            cutoff(age),
        )
        .await
    }
}
