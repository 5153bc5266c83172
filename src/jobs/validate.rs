//! `media.validate`: checks a directly uploaded original before it may be processed.
//!
//! The api never saw these bytes, so nothing about them is trusted: the object's size (HEAD) must equal the
//! size declared at presign time and be within the limit of the kind its content shows; its first bytes are
//! sniffed, never its name or declared type. A refused original is deleted and its media fails with a stable
//! code. An accepted one moves `uploading → queued` with its `media.process` job in the same transaction.

use mediafleet_proto::envelope::MediaValidate;
use mediafleet_proto::{Envelope, ErrorCode, MediaKind, MediaStatus};
use mediafleet_workers::sniff::{sniff, SNIFF_LEN};
use mediafleet_workers::MediaError;
use tracing::info;

use super::{Done, JobContext, JobError};
use crate::db::OutboxJob;

fn refuse(code: ErrorCode, message: String) -> JobError {
    JobError::Permanent(MediaError::new(code, message))
}

pub(super) async fn validate(
    ctx: &JobContext,
    env: &Envelope,
    job: &MediaValidate,
) -> Result<Done, JobError> {
    let id = env.media_id.to_string();
    let Some(row) = ctx.records.media_primary(&id).await? else {
        return Ok(Done::Skipped);
    };
    if row.status != MediaStatus::Uploading {
        info!(media_id = %id, status = %row.status, "already validated; nothing to do");
        return Ok(Done::Skipped);
    }
    let key = &row.source_key;
    let meta = match ctx.store.head(key).await {
        Ok(m) => m,
        Err(crate::storage::StoreError::NotFound(_)) => {
            return Err(refuse(
                ErrorCode::CorruptMedia,
                "the upload was completed but no object was stored".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let head = match ctx.store.direct_uploads() {
        Some(direct) => {
            direct
                .read_head(key, SNIFF_LEN as u64, row.source_etag.as_deref())
                .await?
        }
        None => {
            let tmp = tempfile::NamedTempFile::new()
                .map_err(|e| JobError::transient(ErrorCode::Internal, e))?;
            ctx.store.get_to_file(key, tmp.path()).await?;
            let mut bytes = tokio::fs::read(tmp.path())
                .await
                .map_err(|e| JobError::transient(ErrorCode::Internal, e))?;
            bytes.truncate(SNIFF_LEN);
            bytes
        }
    };
    let verdict = check(ctx, job.declared_bytes, meta.bytes, &head);
    let (kind, mime) = match verdict {
        Ok(k) => k,
        Err(e) => {
            // Nothing refused stays in the bucket.
            let _ = ctx.store.delete(key).await;
            return Err(e);
        }
    };
    let process = OutboxJob::media_process(env.media_id, key, &row.profile, kind);
    let bytes = i64::try_from(meta.bytes).unwrap_or(i64::MAX);
    if ctx
        .records
        .upload_validated(&id, kind.as_str(), mime, bytes, &process)
        .await?
    {
        info!(media_id = %id, kind = kind.as_str(), bytes, "direct upload validated; queued for processing");
        Ok(Done::Completed)
    } else {
        Ok(Done::Skipped)
    }
}

/// The verdict on an object of `actual` bytes whose first bytes are `head`.
fn check(
    ctx: &JobContext,
    declared: u64,
    actual: u64,
    head: &[u8],
) -> Result<(MediaKind, &'static str), JobError> {
    if actual != declared {
        return Err(refuse(
            ErrorCode::CorruptMedia,
            format!("the upload has {actual} bytes but {declared} were declared"),
        ));
    }
    let sniffed = sniff(head).ok_or_else(|| {
        refuse(
            ErrorCode::UnsupportedFormat,
            "the upload is not an image, video or audio file we recognise (checked by content, not name)"
                .into(),
        )
    })?;
    let limit = match sniffed.kind {
        MediaKind::Image => ctx.limits.image_bytes,
        _ => ctx.limits.video_bytes,
    };
    if actual > limit {
        return Err(refuse(
            ErrorCode::TooLargeBytes,
            format!("the upload has {actual} bytes; the limit for this kind is {limit}"),
        ));
    }
    Ok((sniffed.kind, sniffed.mime))
}
