//! Reprocessing and replay: explicit actions that move an ended media back to `queued` (`ready → queued` to
//! make its renditions again, for example with another profile; `failed → queued` to replay it). The status
//! change and the job's outbox row are one transaction, like an upload's, so an accepted request is always
//! processed. The old rendition rows stay until the new ones are ready, so readers are served throughout.

use super::bind::BindExt;
use super::media::COLS;
use super::outbox::{insert_outbox, OutboxJob};
use super::{now_ms, DbError, MediaRow, Records};

impl Records {
    /// Requeues `before` (a row read just before) with `profile` and writes `job` in the same transaction.
    /// The update is guarded by the row's version and status, so of two concurrent requests only one
    /// enqueues; `None` means the media changed in between (read it again and decide).
    pub async fn requeue(
        &self,
        before: &MediaRow,
        profile: &str,
        job: &OutboxJob,
    ) -> Result<Option<MediaRow>, DbError> {
        let mut tx = self.write.begin().await?;
        let sql = format!(
            "UPDATE media SET status = 'queued', profile = $3, error_code = NULL, error_message = NULL, \
             progress = 0, processing_deadline = NULL, stage = NULL, version = version + 1, updated_at = $4 \
             WHERE id = $1 AND version = $2 AND status IN ('ready', 'failed') RETURNING {COLS}"
        );
        let row = sqlx::query_as::<_, MediaRow>(&sql)
            .arg(&before.id)
            .arg(before.version)
            .arg(profile)
            .arg(now_ms())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        insert_outbox(&mut tx, job).await?;
        tx.commit().await?;
        Ok(Some(row))
    }
}
