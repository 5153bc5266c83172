//! The transactional outbox: jobs written in the same transaction as the state change they announce, and
//! published later by the relay (`crate::relay`).
//!
//! A relay claims rows with a lease (`claimed_until`). On Postgres the claim skips rows another relay has
//! locked (`FOR UPDATE SKIP LOCKED`); on SQLite the single writer makes the `UPDATE … RETURNING` claim atomic
//! by itself. Either way a row is published by one relay at a time, and a relay that dies mid-publish hands its
//! rows back when the lease ends. A publish that succeeded but was not marked sent is published again: jobs are
//! idempotent, so the effect happens once.

use super::bind::BindExt;
use std::time::Duration;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

use super::{now_ms, DbError, Records};

/// A job to be written to the outbox.
#[derive(Debug, Clone)]
pub struct OutboxJob {
    /// Queue class (`image`, `notify`, …).
    pub class: String,
    /// The envelope, as published.
    pub body: Vec<u8>,
    /// The media the job is about (for operators).
    pub media_id: Option<String>,
}

/// A claimed outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Row id.
    pub id: String,
    /// Queue class.
    pub class: String,
    /// The envelope.
    pub body: String,
    /// Publish attempts so far, this one included.
    pub attempts: i64,
}

impl OutboxJob {
    /// A `media.process` job for a media of `kind`: images on `image`; videos start on `image` with their
    /// short `poster` stage (which enqueues the long `transcode` stage on `video`); audio on `video`.
    pub fn media_process(
        id: impl Into<mediafleet_proto::MediaId>,
        source_key: &str,
        profile: &str,
        kind: mediafleet_proto::MediaKind,
    ) -> Self {
        let id: mediafleet_proto::MediaId = id.into();
        use mediafleet_proto::{envelope::MediaProcess, Envelope, Job, JobKind, MediaKind, Stage};
        let stage = (kind == MediaKind::Video).then_some(Stage::Poster);
        let mut env = Envelope::new(
            id,
            &Job::MediaProcess(MediaProcess {
                source_key: source_key.to_owned(),
                profile: profile.to_owned(),
                stage,
            }),
        );
        crate::trace::inherit(&mut env);
        OutboxJob {
            class: crate::routing::class_for(JobKind::MediaProcess, stage, Some(kind)).into(),
            body: env.to_bytes(),
            media_id: Some(id.to_string()),
        }
    }

    /// The same job in `lane`: its queue becomes the class's queue in that lane (`image` → `image-bulk`) and
    /// its envelope says so, so the stages and cache warms it enqueues stay in the lane.
    pub fn in_lane(mut self, lane: mediafleet_proto::Lane) -> Self {
        if let Ok(mut env) = mediafleet_proto::Envelope::parse(&self.body) {
            env.lane = lane;
            self.body = env.to_bytes();
        }
        let (live, _) = crate::routing::lane_of(&self.class);
        self.class = crate::routing::in_lane(live, lane);
        self
    }

    /// The job id inside the body, when the body is an envelope.
    pub fn job_id(&self) -> Option<String> {
        mediafleet_proto::Envelope::parse(&self.body)
            .ok()
            .map(|e| e.job_id.to_string())
    }

    /// The long `transcode` stage of a video, on `video` (written by the poster stage when it hands over).
    pub fn transcode(
        id: impl Into<mediafleet_proto::MediaId>,
        source_key: &str,
        profile: &str,
    ) -> Self {
        let id: mediafleet_proto::MediaId = id.into();
        use mediafleet_proto::{envelope::MediaProcess, Envelope, Job, Stage};
        let mut env = Envelope::new(
            id,
            &Job::MediaProcess(MediaProcess {
                source_key: source_key.to_owned(),
                profile: profile.to_owned(),
                stage: Some(Stage::Transcode),
            }),
        );
        crate::trace::inherit(&mut env);
        OutboxJob {
            class: crate::routing::class_for(
                mediafleet_proto::JobKind::MediaProcess,
                Some(Stage::Transcode),
                Some(mediafleet_proto::MediaKind::Video),
            )
            .into(),
            body: env.to_bytes(),
            media_id: Some(id.to_string()),
        }
    }

    /// Any job, on `class`.
    pub fn new(class: &str, env: &mediafleet_proto::Envelope) -> Self {
        let mut env = env.clone();
        crate::trace::inherit(&mut env);
        OutboxJob {
            class: class.to_owned(),
            body: env.to_bytes(),
            media_id: Some(env.media_id.to_string()),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Writes `job` on `conn`, which is expected to be inside the caller's transaction.
pub async fn insert_outbox(conn: &mut AnyConnection, job: &OutboxJob) -> Result<(), DbError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO outbox (id, class, body, media_id, attempts, available_at, claimed_until, created_at) \
         VALUES ($1, $2, $3, $4, 0, $5, 0, $5)",
    )
    .arg(uuid::Uuid::now_v7().to_string())
    .arg(&job.class)
    .arg(String::from_utf8_lossy(&job.body).into_owned())
    .arg(&job.media_id)
    .arg(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Records {
    /// A guarded transition and the job it implies, in one transaction: `update` runs first; when its guard
    /// matches no row nothing is written and the answer is false, otherwise `job` (where there is one) goes
    /// to the outbox with it, so the state change and its announcement are never apart.
    pub(super) async fn update_with_job<'q>(
        &self,
        update: Query<'q, Any, AnyArguments<'q>>,
        job: Option<&OutboxJob>,
    ) -> Result<bool, DbError> {
        let mut tx = self.write.begin().await?;
        if update.execute(&mut *tx).await?.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(job) = job {
            insert_outbox(&mut tx, job).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Whether the write pool is Postgres (which has `SKIP LOCKED`).
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// Writes one outbox row in a transaction of its own.
    pub async fn enqueue(&self, job: &OutboxJob) -> Result<(), DbError> {
        let mut conn = self.write.acquire().await?;
        insert_outbox(&mut conn, job).await
    }

    /// Claims up to `limit` due rows for `lease`.
    pub async fn claim_outbox(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<OutboxRow>, DbError> {
        let now = now_ms();
        let lock = if self.postgres {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE outbox SET claimed_until = $1, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL \
                          AND available_at <= $2 AND claimed_until < $2 ORDER BY available_at LIMIT $3 {lock}) \
             AND sent_at IS NULL AND parked_at IS NULL AND claimed_until < $2 \
             RETURNING id, class, body, attempts"
        );
        let rows = sqlx::query(&sql)
            .arg(now + ms(lease))
            .arg(now)
            .arg(limit)
            .fetch_all(&self.write)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxRow {
                    id: r.try_get("id")?,
                    class: r.try_get("class")?,
                    body: r.try_get("body")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    /// The broker confirmed the row: it will not be published again.
    pub async fn mark_sent(&self, id: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE outbox SET sent_at = $2, last_error = NULL WHERE id = $1")
            .arg(id)
            .arg(now_ms())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The publish failed: try again after `delay`.
    pub async fn release_outbox(
        &self,
        id: &str,
        delay: Duration,
        error: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE outbox SET claimed_until = 0, available_at = $2, last_error = $3 WHERE id = $1",
        )
        .arg(id)
        .arg(now_ms() + ms(delay))
        .arg(error)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The row keeps failing for a reason of its own: it is no longer claimed, and keeps its last error for
    /// an operator.
    pub async fn park_outbox(&self, id: &str, error: &str) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE outbox SET claimed_until = 0, parked_at = $2, last_error = $3 WHERE id = $1",
        )
        .arg(id)
        .arg(now_ms())
        .arg(error)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Parked rows: (id, class, media id, last error), oldest first.
    pub async fn parked_outbox(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String, Option<String>, Option<String>)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT id, class, media_id, last_error FROM outbox WHERE parked_at IS NOT NULL \
             ORDER BY parked_at LIMIT $1",
        )
        .arg(limit)
        .fetch_all(&self.write)
        .await?)
    }

    /// Deletes rows sent more than `age` ago; returns how many.
    pub async fn purge_sent(&self, age: Duration) -> Result<u64, DbError> {
        Ok(
            sqlx::query("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1")
                .arg(now_ms() - ms(age))
                .execute(&self.write)
                .await?
                .rows_affected(),
        )
    }

    /// When the oldest row still waiting to be sent was written (unix ms), parked ones aside; `None` when
    /// nothing waits. One statement for both backends: `MIN` over no rows is NULL on Postgres and SQLite.
    pub async fn oldest_unsent_outbox_ms(&self) -> Result<Option<i64>, DbError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(created_at) FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL",
        )
        .fetch_one(&self.write)
        .await?)
    }

    /// Rows waiting to be sent, parked ones not counted (for status and tests).
    pub async fn outbox_pending(&self) -> Result<i64, DbError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL",
        )
        .fetch_one(&self.write)
        .await?)
    }
}
