//! Upload writes that go with an outbox row, idempotency keys, and the sweeps the relay runs.
//!
//! Every state change that must lead to a job (an accepted upload, a completed direct upload, a validated
//! one, a media that reached `ready` or `failed`) writes the job into the outbox in the same transaction, so
//! a crash can never keep the change and lose the job.

use super::bind::BindExt;
use sqlx::Row;

use super::outbox::{insert_outbox, OutboxJob};
use super::{now_ms, DbError, MediaRow, NewMedia, Records};

/// Upload fields beyond [`NewMedia`].
#[derive(Debug, Clone, Default)]
pub struct UploadExtra {
    /// `uploading` (direct upload) or `queued` (body received).
    pub status: &'static str,
    /// Where the webhook goes.
    pub callback_url: Option<String>,
    /// S3 multipart upload id.
    pub upload_id: Option<String>,
    /// When an unfinished direct upload expires (Unix ms).
    pub upload_expires_at: Option<i64>,
}

/// An `Idempotency-Key` claim.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// Who asked (API key id, or `anonymous`).
    pub scope: String,
    /// The header value.
    pub key: String,
    /// Hash of what makes the request what it is.
    pub fingerprint: String,
}

/// What an insert did.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// A new media.
    Created(Box<MediaRow>),
    /// The idempotency key was used before: the media it made, and that request's fingerprint.
    Replay {
        /// The earlier media.
        media_id: String,
        /// The earlier request's fingerprint.
        fingerprint: String,
    },
}

use super::media::COLS;

impl Records {
    /// The earlier use of an idempotency key, if any: (media id, fingerprint).
    pub async fn idempotency(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<(String, String)>, DbError> {
        let row = sqlx::query(
            "SELECT media_id, fingerprint FROM idempotency WHERE scope = $1 AND key = $2",
        )
        .arg(scope)
        .arg(key)
        .fetch_optional(&self.write)
        .await?;
        row.map(|r| Ok((r.try_get("media_id")?, r.try_get("fingerprint")?)))
            .transpose()
            .map_err(|e: sqlx::Error| DbError::from(e))
    }

    /// Inserts a media, its idempotency key and (optionally) its first job in one transaction.
    pub async fn insert_upload(
        &self,
        m: &NewMedia,
        extra: &UploadExtra,
        idem: Option<&IdempotencyClaim>,
        job: Option<&OutboxJob>,
    ) -> Result<Inserted, DbError> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        if let Some(c) = idem {
            let n = sqlx::query(
                "INSERT INTO idempotency (scope, key, fingerprint, media_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, key) DO NOTHING",
            )
            .arg(&c.scope)
            .arg(&c.key)
            .arg(&c.fingerprint)
            .arg(&m.id)
            .arg(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                tx.rollback().await?;
                let (media_id, fingerprint) = self
                    .idempotency(&c.scope, &c.key)
                    .await?
                    .ok_or_else(|| DbError::Invalid("idempotency row vanished".into()))?;
                return Ok(Inserted::Replay {
                    media_id,
                    fingerprint,
                });
            }
        }
        sqlx::query(
            "INSERT INTO media (id, kind, status, profile, source_key, filename, content_type, bytes, sha256, \
             external_id, metadata, progress, version, created_at, updated_at, callback_url, upload_id, \
             upload_expires_at, traceparent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '{}', 0, 1, $11, $11, $12, $13, $14, $15)",
        )
        .arg(&m.id)
        .arg(&m.kind)
        .arg(extra.status)
        .arg(&m.profile)
        .arg(&m.source_key)
        .arg(&m.filename)
        .arg(&m.content_type)
        .arg(m.bytes)
        .arg(&m.sha256)
        .arg(&m.external_id)
        .arg(now)
        .arg(&extra.callback_url)
        .arg(&extra.upload_id)
        .arg(extra.upload_expires_at)
        .arg(crate::trace::current())
        .execute(&mut *tx)
        .await?;
        if let Some(job) = job {
            insert_outbox(&mut tx, job).await?;
        }
        tx.commit().await?;
        let row = self
            .media_primary(&m.id)
            .await?
            .ok_or_else(|| DbError::Invalid(format!("media {} vanished after insert", m.id)))?;
        Ok(Inserted::Created(Box::new(row)))
    }

    /// The S3 multipart upload id and completion time of a direct upload.
    pub async fn upload_state(
        &self,
        id: &str,
    ) -> Result<Option<(Option<String>, Option<i64>)>, DbError> {
        let row = sqlx::query("SELECT upload_id, upload_completed_at FROM media WHERE id = $1")
            .arg(id)
            .fetch_optional(&self.write)
            .await?;
        row.map(|r| Ok((r.try_get("upload_id")?, r.try_get("upload_completed_at")?)))
            .transpose()
            .map_err(|e: sqlx::Error| DbError::from(e))
    }

    /// Marks a direct upload complete and writes its validation job. False when it was already complete
    /// (or is no longer `uploading`): a repeated `complete` enqueues nothing.
    pub async fn complete_upload(
        &self,
        id: &str,
        etag: Option<&str>,
        job: &OutboxJob,
    ) -> Result<bool, DbError> {
        let update = sqlx::query(
            "UPDATE media SET upload_completed_at = $2, source_etag = $3, version = version + 1, \
             updated_at = $2 WHERE id = $1 AND status = 'uploading' AND upload_completed_at IS NULL",
        )
        .arg(id)
        .arg(now_ms())
        .arg(etag);
        self.update_with_job(update, Some(job)).await
    }

    /// `uploading → queued` after validation, with the sniffed kind and type, and the processing job.
    /// False when the media is no longer `uploading` (a repeated validation).
    pub async fn upload_validated(
        &self,
        id: &str,
        kind: &str,
        content_type: &str,
        bytes: i64,
        job: &OutboxJob,
    ) -> Result<bool, DbError> {
        let update = sqlx::query(
            "UPDATE media SET status = 'queued', kind = $2, content_type = $3, bytes = $4, \
             upload_expires_at = NULL, version = version + 1, updated_at = $5 \
             WHERE id = $1 AND status = 'uploading'",
        )
        .arg(id)
        .arg(kind)
        .arg(content_type)
        .arg(bytes)
        .arg(now_ms());
        self.update_with_job(update, Some(job)).await
    }

    /// Media that reached `ready` or `failed` since their last announcement: (id, status, version,
    /// callback_url), oldest first.
    pub async fn unannounced(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String, i64, Option<String>, Option<String>)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT id, status, version, callback_url, traceparent FROM media \
             WHERE notified_version < version AND status IN ('ready', 'failed') \
             ORDER BY updated_at LIMIT $1",
        )
        .arg(limit)
        .fetch_all(&self.write)
        .await?)
    }

    /// Records that `version` of a media was announced, with its webhook job when there is one. The guard on
    /// `notified_version` makes two relays announce a version once.
    pub async fn announce(
        &self,
        id: &str,
        version: i64,
        job: Option<&OutboxJob>,
    ) -> Result<bool, DbError> {
        let update = sqlx::query(
            "UPDATE media SET notified_version = $2 WHERE id = $1 AND notified_version < $2",
        )
        .arg(id)
        .arg(version);
        self.update_with_job(update, job).await
    }

    /// Records every pending announcement at once, with no webhook job: what [`Records::announce`] does for
    /// each media when no webhook is configured, in one statement instead of one a media.
    pub async fn announce_all_without_jobs(&self) -> Result<u64, DbError> {
        Ok(sqlx::query(
            "UPDATE media SET notified_version = version \
             WHERE notified_version < version AND status IN ('ready', 'failed')",
        )
        .execute(&self.write)
        .await?
        .rows_affected())
    }

    /// Direct uploads to expire: never completed and past their expiry, or already expired by an earlier sweep
    /// whose object removal has not finished (`deleted` with `upload_expires_at` still set). Returns
    /// (id, source_key, upload_id).
    pub async fn expired_uploads(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String, Option<String>)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT id, source_key, upload_id FROM media \
             WHERE upload_expires_at IS NOT NULL AND ((status = 'uploading' AND upload_completed_at IS NULL \
             AND upload_expires_at < $1) OR status = 'deleted') ORDER BY upload_expires_at LIMIT $2",
        )
        .arg(now_ms())
        .arg(limit)
        .fetch_all(&self.write)
        .await?)
    }

    /// Claims an expired direct upload: `uploading → deleted`, only while it is still uncompleted and past its
    /// expiry, so a `complete` that got in first wins and its object is never touched. `upload_expires_at`
    /// stays set until [`Records::expired_upload_removed`], so a failed object removal is retried. True when
    /// the media is (now or already) expired and its objects should go.
    pub async fn claim_expired_upload(&self, id: &str, reason: &str) -> Result<bool, DbError> {
        let n = sqlx::query(
            "UPDATE media SET status = 'deleted', error_message = $2, version = version + 1, updated_at = $3 \
             WHERE id = $1 AND status = 'uploading' AND upload_completed_at IS NULL \
             AND upload_expires_at < $3",
        )
        .arg(id)
        .arg(reason)
        .arg(now_ms())
        .execute(&self.write)
        .await?
        .rows_affected();
        if n > 0 {
            return Ok(true);
        }
        let pending: Option<(String,)> = sqlx::query_as(
            "SELECT status FROM media WHERE id = $1 AND status = 'deleted' AND upload_expires_at IS NOT NULL",
        )
        .arg(id)
        .fetch_optional(&self.write)
        .await?;
        Ok(pending.is_some())
    }

    /// The objects of an expired upload are gone: the sweep stops looking at it.
    pub async fn expired_upload_removed(&self, id: &str) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE media SET upload_expires_at = NULL WHERE id = $1 AND status = 'deleted'",
        )
        .arg(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// `any → deleted` (a deleted media stays a row until a purge). Returns the row as it was, or `None`
    /// when it was missing or already deleted.
    pub async fn mark_deleted(
        &self,
        id: &str,
        reason: Option<&str>,
    ) -> Result<Option<MediaRow>, DbError> {
        let before = self.media_primary(id).await?;
        // One transaction: the media JSON never shows `deleted` with renditions whose objects are being removed.
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE media SET status = 'deleted', error_message = COALESCE($2, error_message), \
             processing_deadline = NULL, upload_expires_at = NULL, version = version + 1, updated_at = $3 \
             WHERE id = $1 AND status <> 'deleted'",
        )
        .arg(id)
        .arg(reason)
        .arg(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            sqlx::query("DELETE FROM renditions WHERE media_id = $1")
                .arg(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(if n == 0 { None } else { before })
    }

    /// A page of media, newest first: ids are UUIDv7, so `id < cursor` pages by creation time.
    pub async fn list_media(
        &self,
        status: Option<&str>,
        external_id: Option<&str>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MediaRow>, DbError> {
        let sql = format!(
            "SELECT {COLS} FROM media WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) \
             AND (CAST($2 AS TEXT) IS NULL OR external_id = $2) AND (CAST($3 AS TEXT) IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        );
        Ok(sqlx::query_as::<_, MediaRow>(&sql)
            .arg(status)
            .arg(external_id)
            .arg(cursor)
            .arg(limit)
            .fetch_all(&self.read)
            .await?)
    }
}
