//! Work of known size (migration 0005): jobs whose media duration the producer knew before enqueueing them,
//! and the measured seconds of work per media-second per class and profile. The scaler sums these instead of
//! counting a two-hour transcode like a ten-second clip.

use super::bind::BindExt;
use sqlx::Row;

use super::{now_ms, DbError, Records};

/// Known queued or running work of one class and profile.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownWork {
    /// Queue class.
    pub class: String,
    /// Profile.
    pub profile: String,
    /// Jobs not yet started.
    pub ready_jobs: i64,
    /// Media seconds of the jobs not yet started.
    pub ready_media_seconds: f64,
    /// Jobs started and not ended.
    pub running_jobs: i64,
}

/// A measured rate.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRate {
    /// Queue class.
    pub class: String,
    /// Profile.
    pub profile: String,
    /// EWMA of seconds of work per media-second.
    pub seconds_per_media_second: f64,
    /// Jobs measured.
    pub samples: i64,
}

impl Records {
    /// Notes a job of known size before it is published (idempotent per job id).
    pub async fn note_queued_work(
        &self,
        job_id: &str,
        class: &str,
        profile: &str,
        media_seconds: f64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO queued_work (job_id, class, profile, media_seconds, enqueued_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id) DO NOTHING",
        )
        .arg(job_id)
        .arg(class)
        .arg(profile)
        .arg(media_seconds)
        .arg(now_ms())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Marks a noted job as started.
    pub async fn start_queued_work(&self, job_id: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE queued_work SET started_at = $2 WHERE job_id = $1")
            .arg(job_id)
            .arg(now_ms())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Removes a noted job that ended; returns its (profile, media seconds) when it was noted.
    pub async fn take_queued_work(&self, job_id: &str) -> Result<Option<(String, f64)>, DbError> {
        let row = sqlx::query(
            "DELETE FROM queued_work WHERE job_id = $1 RETURNING profile, media_seconds",
        )
        .arg(job_id)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.map(|r| (r.get::<String, _>(0), r.get::<f64, _>(1))))
    }

    /// Known work per class and profile. Rows older than `since_ms` (a producer that died between noting and
    /// publishing, a job lost with its queue) are ignored.
    pub async fn known_work(&self, since_ms: i64) -> Result<Vec<KnownWork>, DbError> {
        let rows = sqlx::query(
            "SELECT class, profile, \
               SUM(CASE WHEN started_at IS NULL THEN 1 ELSE 0 END) AS ready_jobs, \
               SUM(CASE WHEN started_at IS NULL THEN media_seconds ELSE 0.0 END) AS ready_media, \
               SUM(CASE WHEN started_at IS NULL THEN 0 ELSE 1 END) AS running_jobs \
             FROM queued_work WHERE enqueued_at >= $1 GROUP BY class, profile",
        )
        .arg(since_ms)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| KnownWork {
                class: r.get::<String, _>(0),
                profile: r.get::<String, _>(1),
                ready_jobs: r.get::<i64, _>(2),
                ready_media_seconds: r.get::<f64, _>(3),
                running_jobs: r.get::<i64, _>(4),
            })
            .collect())
    }

    /// Known work that has started and not ended: (class, profile, media seconds, started at in unix ms).
    pub async fn running_known_work(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, String, f64, i64)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT class, profile, media_seconds, started_at FROM queued_work \
             WHERE started_at IS NOT NULL AND enqueued_at >= $1",
        )
        .arg(since_ms)
        .fetch_all(&self.read)
        .await?)
    }

    /// Folds one finished job's seconds per media-second into its class and profile's EWMA.
    pub async fn record_media_rate(
        &self,
        class: &str,
        profile: &str,
        seconds_per_media_second: f64,
        alpha: f64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO media_cost_rates (class, profile, ewma_seconds, samples, updated_at) \
             VALUES ($1, $2, $3, 1, $4) ON CONFLICT (class, profile) DO UPDATE SET \
               ewma_seconds = media_cost_rates.ewma_seconds + $5 * ($3 - media_cost_rates.ewma_seconds), \
               samples = media_cost_rates.samples + 1, updated_at = $4",
        )
        .arg(class)
        .arg(profile)
        .arg(seconds_per_media_second)
        .arg(now_ms())
        .arg(alpha)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Every measured rate.
    pub async fn media_rates(&self) -> Result<Vec<MediaRate>, DbError> {
        let rows =
            sqlx::query("SELECT class, profile, ewma_seconds, samples FROM media_cost_rates")
                .fetch_all(&self.read)
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| MediaRate {
                class: r.get::<String, _>(0),
                profile: r.get::<String, _>(1),
                seconds_per_media_second: r.get::<f64, _>(2),
                samples: r.get::<i64, _>(3),
            })
            .collect())
    }
}
