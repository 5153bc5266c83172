//! Media and rendition rows.

use super::bind::BindExt;
use mediafleet_proto::{MediaKind, MediaStatus};
use sqlx::Row;

use super::outbox::{insert_outbox, OutboxJob};
use super::{bind, now_ms, DbError, Records};

/// A media row.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRow {
    /// UUID (v7, so ids sort by creation time).
    pub id: String,
    /// What the original is.
    pub kind: MediaKind,
    /// Where it is in its lifecycle (a name the DB holds that is not a status is a decode error).
    pub status: MediaStatus,
    /// Profile name.
    pub profile: String,
    /// Failure code, when failed.
    pub error_code: Option<String>,
    /// Failure message, when failed.
    pub error_message: Option<String>,
    /// Object key of the original.
    pub source_key: String,
    /// Client-side file name, if given.
    pub filename: Option<String>,
    /// Sniffed content type of the original.
    pub content_type: String,
    /// Size of the original.
    pub bytes: i64,
    /// Hex SHA-256 of the original.
    pub sha256: String,
    /// The client's own id.
    pub external_id: Option<String>,
    /// JSON object.
    pub metadata: String,
    /// BlurHash.
    pub blurhash: Option<String>,
    /// ThumbHash (base64).
    pub thumbhash: Option<String>,
    /// 0.0–1.0.
    pub progress: f64,
    /// Grows with every write.
    pub version: i64,
    /// When a `processing` media counts as stuck.
    pub processing_deadline: Option<i64>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
    /// Entity tag of a direct upload's object when it was completed (reads of the original require it).
    pub source_etag: Option<String>,
}

super::row::from_row!(MediaRow {
    id,
    kind: parsed,
    status: parsed,
    profile,
    error_code,
    error_message,
    source_key,
    filename,
    content_type,
    bytes,
    sha256,
    external_id,
    metadata,
    blurhash,
    thumbhash,
    progress,
    version,
    processing_deadline,
    created_at,
    updated_at,
    source_etag
});

/// A rendition row.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionRow {
    /// Owning media.
    pub media_id: String,
    /// Rendition name.
    pub name: String,
    /// Object key (content-derived).
    pub key: String,
    /// MIME type.
    pub content_type: String,
    /// Pixels.
    pub width: Option<i64>,
    /// Pixels.
    pub height: Option<i64>,
    /// Size.
    pub bytes: i64,
    /// Playing time.
    pub duration_seconds: Option<f64>,
    /// Hex SHA-256 (the ETag).
    pub sha256: String,
}

super::row::from_row!(RenditionRow {
    media_id,
    name,
    key,
    content_type,
    width,
    height,
    bytes,
    duration_seconds,
    sha256
});

/// What the api knows when it accepts an upload.
#[derive(Debug, Clone)]
pub struct NewMedia {
    /// New id.
    pub id: String,
    /// Sniffed kind.
    pub kind: String,
    /// Profile name.
    pub profile: String,
    /// Where the original is.
    pub source_key: String,
    /// Client file name.
    pub filename: Option<String>,
    /// Sniffed MIME type.
    pub content_type: String,
    /// Size.
    pub bytes: i64,
    /// Hex SHA-256.
    pub sha256: String,
    /// The client's id.
    pub external_id: Option<String>,
}

pub(super) const COLS: &str = "id, kind, status, profile, error_code, error_message, source_key, filename, content_type, \
    bytes, sha256, external_id, metadata, blurhash, thumbhash, progress, version, processing_deadline, \
    created_at, updated_at, source_etag";

impl Records {
    /// Inserts a `queued` media; a repeated insert of the same id is a no-op. Returns the stored row.
    pub async fn insert_media(&self, m: &NewMedia) -> Result<MediaRow, DbError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO media (id, kind, status, profile, source_key, filename, content_type, bytes, sha256, \
             external_id, metadata, progress, version, created_at, updated_at, traceparent) \
             VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9, '{}', 0, 1, $10, $10, $11) \
             ON CONFLICT (id) DO NOTHING",
        )
        .arg(&m.id)
        .arg(&m.kind)
        .arg(&m.profile)
        .arg(&m.source_key)
        .arg(&m.filename)
        .arg(&m.content_type)
        .arg(m.bytes)
        .arg(&m.sha256)
        .arg(&m.external_id)
        .arg(now)
        .arg(crate::trace::current())
        .execute(&self.write)
        .await?;
        self.media_from(&self.write, &m.id)
            .await?
            .ok_or_else(|| DbError::Invalid(format!("media {} vanished after insert", m.id)))
    }

    /// Reads a media (from the read pool).
    pub async fn media(&self, id: &str) -> Result<Option<MediaRow>, DbError> {
        self.media_from(&self.read, id).await
    }

    /// Reads a media from the primary (for workers, which must not act on a stale replica).
    pub async fn media_primary(&self, id: &str) -> Result<Option<MediaRow>, DbError> {
        self.media_from(&self.write, id).await
    }

    pub(super) async fn media_from(
        &self,
        pool: &sqlx::AnyPool,
        id: &str,
    ) -> Result<Option<MediaRow>, DbError> {
        let sql = format!("SELECT {COLS} FROM media WHERE id = $1");
        Ok(sqlx::query_as::<_, MediaRow>(&sql)
            .arg(id)
            .fetch_optional(pool)
            .await?)
    }

    /// Renditions of a media, by name.
    pub async fn renditions(&self, media_id: &str) -> Result<Vec<RenditionRow>, DbError> {
        Ok(sqlx::query_as::<_, RenditionRow>(
            "SELECT media_id, name, key, content_type, width, height, bytes, duration_seconds, sha256 \
             FROM renditions WHERE media_id = $1 ORDER BY name",
        )
        .arg(media_id)
        .fetch_all(&self.read)
        .await?)
    }

    /// `queued|processing → processing`. Returns `None` when the media is missing or already past
    /// processing (ready, failed, deleted): a redelivered job then has nothing to do.
    ///
    /// A video's `poster` stage (`poster_stage`) is not started again once it handed over to the transcode
    /// stage: a redelivered poster job then finds nothing to do.
    pub async fn start_processing(
        &self,
        id: &str,
        deadline_ms: i64,
        poster_stage: bool,
    ) -> Result<Option<MediaRow>, DbError> {
        let guard = if poster_stage {
            " AND stage IS NULL"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE media SET status = 'processing', processing_deadline = $2, progress = 0, \
             version = version + 1, updated_at = $3 \
             WHERE id = $1 AND status IN ('queued', 'processing'){guard} RETURNING {COLS}"
        );
        Ok(sqlx::query_as::<_, MediaRow>(&sql)
            .arg(id)
            .arg(deadline_ms)
            .arg(now_ms())
            .fetch_optional(&self.write)
            .await?)
    }

    /// `processing → ready`, replacing the rendition rows in the same transaction. Returns false (and writes
    /// nothing) when the media is no longer `processing`, e.g. a duplicate delivery already finished it.
    pub async fn finish_ready(
        &self,
        id: &str,
        metadata: &serde_json::Value,
        blurhash: Option<&str>,
        thumbhash: Option<&str>,
        renditions: &[RenditionRow],
    ) -> Result<bool, DbError> {
        let mut tx = self.write.begin().await?;
        let updated = sqlx::query(
            "UPDATE media SET status = 'ready', metadata = $2, blurhash = $3, thumbhash = $4, progress = 1, \
             error_code = NULL, error_message = NULL, processing_deadline = NULL, stage = NULL, version = version + 1, \
             updated_at = $5 WHERE id = $1 AND status = 'processing'",
        )
        .arg(id)
        .arg(metadata.to_string())
        .arg(blurhash)
        .arg(thumbhash)
        .arg(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM renditions WHERE media_id = $1")
            .arg(id)
            .execute(&mut *tx)
            .await?;
        upsert_renditions(&mut tx, id, renditions).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Renditions of a media, read from the primary (a worker merging its stages must not see a stale replica).
    pub async fn renditions_primary(&self, media_id: &str) -> Result<Vec<RenditionRow>, DbError> {
        Ok(sqlx::query_as::<_, RenditionRow>(
            "SELECT media_id, name, key, content_type, width, height, bytes, duration_seconds, sha256 \
             FROM renditions WHERE media_id = $1 ORDER BY name",
        )
        .arg(media_id)
        .fetch_all(&self.write)
        .await?)
    }

    /// Progress of a `processing` media (0.0–1.0). It only moves forward and does not bump the version: it is
    /// a hint for UIs, written at most every few seconds.
    pub async fn set_progress(&self, id: &str, progress: f64) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE media SET progress = $2 WHERE id = $1 AND status = 'processing' AND progress < $2",
        )
        .arg(id)
        .arg(progress)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The end of a video's short stage: its renditions (poster, thumb), metadata and placeholders are stored
    /// and visible while the media stays `processing` for its long stage. The stuck-job deadline is cleared,
    /// because the long stage may wait in the `video` queue for longer than any one job runs; it sets its own
    /// deadline when it starts. Returns false when the media is no longer `processing`.
    ///
    /// The hand-over to the transcode stage is one transaction: the poster rows, `stage = 'transcode'` and the
    /// transcode job's outbox row (`follow`). It happens once: a second poster delivery finds the stage set
    /// and writes nothing. The processing deadline is cleared, because the transcode job may wait in the
    /// `video` queue for longer than any deadline; the transcode sets its own when it starts.
    pub async fn keep_partial(
        &self,
        id: &str,
        metadata: &serde_json::Value,
        blurhash: Option<&str>,
        thumbhash: Option<&str>,
        renditions: &[RenditionRow],
        follow: &OutboxJob,
    ) -> Result<bool, DbError> {
        let mut tx = self.write.begin().await?;
        let updated = sqlx::query(
            "UPDATE media SET metadata = $2, blurhash = $3, thumbhash = $4, processing_deadline = NULL, \
             stage = 'transcode', version = version + 1, updated_at = $5 \
             WHERE id = $1 AND status = 'processing' AND stage IS NULL",
        )
        .arg(id)
        .arg(metadata.to_string())
        .arg(blurhash)
        .arg(thumbhash)
        .arg(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        upsert_renditions(&mut tx, id, renditions).await?;
        insert_outbox(&mut tx, follow).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// `uploading|queued|processing → failed`. Returns false when the media had already ended.
    pub async fn fail(&self, id: &str, code: &str, message: &str) -> Result<bool, DbError> {
        let n = sqlx::query(
            "UPDATE media SET status = 'failed', error_code = $2, error_message = $3, \
             processing_deadline = NULL, stage = NULL, version = version + 1, updated_at = $4 \
             WHERE id = $1 AND status IN ('uploading', 'queued', 'processing')",
        )
        .arg(id)
        .arg(code)
        .arg(message)
        .arg(now_ms())
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Removes a media row that never got a job (used when the publish after an upload fails).
    pub async fn forget_queued(&self, id: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM media WHERE id = $1 AND status = 'queued'")
            .arg(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Media that wait for a job nobody holds: `queued`, or a video `processing` between its stages (no
    /// deadline), untouched for `stale_after`, with no unsent outbox row. Their job was lost (a broker that
    /// lost a message, or a dead-lettering whose DB write failed during an outage), so it is written to the
    /// outbox again; the jobs' status guards make a duplicate harmless. Returns the ids re-enqueued.
    pub async fn requeue_stale(
        &self,
        stale_after: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<String>, DbError> {
        let now = now_ms();
        let cutoff = now - i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX / 4);
        let rows: Vec<(String, String, Option<String>, String, String, i64)> = sqlx::query_as(
            "SELECT id, kind, stage, source_key, profile, updated_at FROM media m \
             WHERE (m.status = 'queued' OR (m.status = 'processing' AND m.processing_deadline IS NULL)) \
             AND m.updated_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.media_id = m.id AND o.sent_at IS NULL \
                             AND o.parked_at IS NULL) \
             ORDER BY m.updated_at LIMIT $2",
        )
        .arg(cutoff)
        .arg(limit)
        .fetch_all(&self.write)
        .await?;
        let mut out = Vec::new();
        for (id, kind, stage, source_key, profile, updated_at) in rows {
            let Ok(uuid) = uuid::Uuid::parse_str(&id) else {
                continue;
            };
            let job = if stage.as_deref() == Some("transcode") {
                OutboxJob::transcode(uuid, &source_key, &profile)
            } else {
                let kind = mediafleet_proto::MediaKind::parse(&kind)
                    .unwrap_or(mediafleet_proto::MediaKind::Image);
                OutboxJob::media_process(uuid, &source_key, &profile, kind)
            };
            // Guarded on `updated_at`: a job that moved the media meanwhile wins, and two reapers write once.
            let update =
                sqlx::query("UPDATE media SET updated_at = $3 WHERE id = $1 AND updated_at = $2")
                    .arg(&id)
                    .arg(updated_at)
                    .arg(now);
            if self.update_with_job(update, Some(&job)).await? {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Moves the deadline of every media in `processing` `by` later: time in which the database could not be
    /// reached, when the jobs waiting out that outage could not finish either. Returns how many moved.
    pub async fn extend_deadlines(&self, by: std::time::Duration) -> Result<u64, DbError> {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4);
        let done = sqlx::query(
            "UPDATE media SET processing_deadline = processing_deadline + $1 \
             WHERE status = 'processing' AND processing_deadline IS NOT NULL",
        )
        .arg(by)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    /// Fails every media stuck in `processing` past its deadline; returns their ids.
    pub async fn reap_stuck(&self) -> Result<Vec<String>, DbError> {
        let now = now_ms();
        let rows = sqlx::query(
            "UPDATE media SET status = 'failed', error_code = 'timeout', \
             error_message = 'stuck in processing past its deadline (worker lost?)', \
             processing_deadline = NULL, stage = NULL, version = version + 1, updated_at = $1 \
             WHERE status = 'processing' AND processing_deadline < $1 RETURNING id",
        )
        .arg(now)
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("id").map_err(DbError::from))
            .collect()
    }
}

/// Writes rendition rows (insert or replace) inside the caller's transaction, in one statement. A name
/// given twice keeps its last row, as writing them one after another would.
async fn upsert_renditions(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    media_id: &str,
    renditions: &[RenditionRow],
) -> Result<(), DbError> {
    let mut rows: Vec<&RenditionRow> = Vec::with_capacity(renditions.len());
    for r in renditions {
        rows.retain(|earlier| earlier.name != r.name);
        rows.push(r);
    }
    if rows.is_empty() {
        return Ok(());
    }
    // $1 is the media id; each row then takes eight placeholders.
    let values: Vec<String> = (0..rows.len())
        .map(|i| {
            let p = |k: usize| 2 + i * 8 + k;
            format!(
                "($1, ${}, ${}, ${}, ${}, ${}, ${}, CAST(${} AS DOUBLE PRECISION), ${})",
                p(0),
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7)
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO renditions (media_id, name, key, content_type, width, height, bytes, \
         duration_seconds, sha256) VALUES {} \
         ON CONFLICT (media_id, name) DO UPDATE SET key = excluded.key, \
         content_type = excluded.content_type, width = excluded.width, height = excluded.height, \
         bytes = excluded.bytes, duration_seconds = excluded.duration_seconds, sha256 = excluded.sha256",
        values.join(", ")
    );
    let mut query = sqlx::query(&sql).arg(media_id);
    for r in rows {
        query = query
            .arg(&r.name)
            .arg(&r.key)
            .arg(&r.content_type)
            .arg(r.width)
            .arg(r.height)
            .arg(r.bytes)
            .arg(bind::nullable_double(r.duration_seconds))
            .arg(&r.sha256);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
