//! `media.process`: fetch the original, run the media work in the sandbox, store the renditions under
//! content-derived keys, and mark the media ready — every step safe to repeat.

use std::path::Path;

use mediafleet_proto::envelope::MediaProcess;
use mediafleet_proto::{Envelope, ErrorCode};
use mediafleet_workers::MediaError;
use tracing::info;

use super::{Done, JobContext, JobError};
use crate::db::{now_ms, RenditionRow};
use crate::storage::keys;

pub(super) async fn process(
    ctx: &JobContext,
    env: &Envelope,
    job: &MediaProcess,
    scratch: &Path,
) -> Result<Done, JobError> {
    let id = env.media_id.to_string();
    // The deadline after which the reaper calls this media stuck: twice the job's own limit.
    let deadline =
        now_ms() + 2 * i64::try_from(ctx.job_timeout.as_millis()).unwrap_or(i64::MAX / 4);
    let Some(row) = ctx.records.start_processing(&id, deadline).await? else {
        let status = ctx.records.media_primary(&id).await?.map(|m| m.status);
        info!(media_id = %id, ?status, "media is not waiting for processing; nothing to do");
        return Ok(Done::Skipped);
    };
    let profile_name = if row.profile.is_empty() {
        &job.profile
    } else {
        &row.profile
    };
    let profile = ctx.profiles.get(profile_name).ok_or_else(|| {
        JobError::Permanent(MediaError::new(
            ErrorCode::Internal,
            format!("profile {profile_name:?} is not configured on this worker"),
        ))
    })?;

    let input = scratch.join("original");
    let out_dir = scratch.join("out");
    tokio::fs::create_dir_all(&out_dir)
        .await
        .map_err(|e| JobError::transient(ErrorCode::Internal, format!("scratch: {e}")))?;
    ctx.store.get_to_file(&row.source_key, &input).await?;

    let report = ctx
        .sandbox
        .run(&input, profile, &ctx.limits, &out_dir, ctx.job_timeout)
        .await?;
    if !report.is_ready() {
        let err = report.error.unwrap_or_else(|| {
            MediaError::new(ErrorCode::Internal, "media work failed without saying why")
        });
        return Err(JobError::Permanent(err));
    }

    let mut rows = Vec::with_capacity(report.renditions.len());
    for r in &report.renditions {
        let key = keys::rendition(&ctx.prefix, &id, &r.name, &r.sha256, &r.file);
        ctx.store
            .put_if_absent(&key, &out_dir.join(&r.file), &r.content_type)
            .await?;
        rows.push(RenditionRow {
            media_id: id.clone(),
            name: r.name.clone(),
            key,
            content_type: r.content_type.clone(),
            width: r.width.map(i64::from),
            height: r.height.map(i64::from),
            bytes: i64::try_from(r.bytes).unwrap_or(i64::MAX),
            duration_seconds: r.duration_seconds,
            sha256: r.sha256.clone(),
        });
    }
    let metadata = serde_json::Value::Object(report.metadata.clone());
    let finished = ctx
        .records
        .finish_ready(
            &id,
            &metadata,
            report.blurhash.as_deref(),
            report.thumbhash.as_deref(),
            &rows,
        )
        .await?;
    if !finished {
        info!(media_id = %id, "media was finished by another delivery; this one's writes were no-ops");
        return Ok(Done::Skipped);
    }
    info!(media_id = %id, renditions = rows.len(), "media ready");
    super::enqueue_warm(ctx, &id).await;
    Ok(Done::Completed)
}
