//! Job attempts: one row per (job, attempt), so an operator can see every try of a media.

use super::bind::BindExt;
use super::{now_ms, DbError, Records};

/// One attempt, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// Envelope job id.
    pub job_id: String,
    /// Attempt number.
    pub attempt: i64,
    /// The media.
    pub media_id: String,
    /// Job kind.
    pub kind: String,
    /// Worker identity (host:pid).
    pub worker: String,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms.
    pub finished_at: Option<i64>,
    /// `ok`, `failed`, `retry`, `dead_letter`, `released`.
    pub outcome: Option<String>,
    /// Error code.
    pub error_code: Option<String>,
    /// Error message.
    pub error_message: Option<String>,
}

super::row::from_row!(Attempt {
    job_id,
    attempt,
    media_id,
    kind,
    worker,
    started_at,
    finished_at,
    outcome,
    error_code,
    error_message
});

impl Records {
    /// Records the start of an attempt (idempotent: a redelivery of the same attempt restarts the row).
    /// `class` is the queue the job was taken from.
    pub async fn start_attempt(
        &self,
        job_id: &str,
        attempt: u32,
        media_id: &str,
        kind: &str,
        class: &str,
        worker: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO job_attempts (job_id, attempt, media_id, kind, worker, started_at, class) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (job_id, attempt) DO UPDATE SET \
             worker = excluded.worker, started_at = excluded.started_at, finished_at = NULL, outcome = NULL, \
             class = excluded.class",
        )
        .arg(job_id)
        .arg(i64::from(attempt))
        .arg(media_id)
        .arg(kind)
        .arg(worker)
        .arg(now_ms())
        .arg(class)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records how an attempt ended.
    pub async fn finish_attempt(
        &self,
        job_id: &str,
        attempt: u32,
        outcome: &str,
        error: Option<(&str, &str)>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE job_attempts SET finished_at = $3, outcome = $4, error_code = $5, error_message = $6 \
             WHERE job_id = $1 AND attempt = $2",
        )
        .arg(job_id)
        .arg(i64::from(attempt))
        .arg(now_ms())
        .arg(outcome)
        .arg(error.map(|e| e.0))
        .arg(error.map(|e| e.1))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Job attempts started since `since_ms` that have not ended, per recorded class (`None` on rows of older
    /// workers) and job kind: the DB's view of jobs in flight, for backends whose broker does not report it
    /// (RabbitMQ without the management API).
    pub async fn open_attempts_by_class(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(Option<String>, String, i64)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT class, kind, COUNT(*) FROM job_attempts WHERE finished_at IS NULL AND started_at >= $1 \
             GROUP BY class, kind",
        )
        .arg(since_ms)
        .fetch_all(&self.read)
        .await?)
    }

    /// When the longest-waiting `queued` media was queued (unix ms): the DB's view of the oldest job, for
    /// backends whose broker cannot tell (RabbitMQ quorum queues, SQS outside CloudWatch).
    pub async fn oldest_queued_ms(&self) -> Result<Option<i64>, DbError> {
        Ok(
            sqlx::query_scalar("SELECT MIN(updated_at) FROM media WHERE status = 'queued'")
                .fetch_one(&self.read)
                .await?,
        )
    }

    /// All attempts of a media, oldest first.
    pub async fn attempts(&self, media_id: &str) -> Result<Vec<Attempt>, DbError> {
        Ok(sqlx::query_as::<_, Attempt>(
            "SELECT job_id, attempt, media_id, kind, worker, started_at, finished_at, outcome, error_code, \
             error_message FROM job_attempts WHERE media_id = $1 ORDER BY started_at, attempt",
        )
        .arg(media_id)
        .fetch_all(&self.read)
        .await?)
    }
}
