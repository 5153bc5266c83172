//! `media.process`: fetch the original, run the media work in the sandbox, store the renditions under
//! content-derived keys, and mark the media ready — every step safe to repeat.
//!
//! Videos run in two stages so a two-hour transcode never delays thumbnails (see [`Stage`]): the `poster`
//! stage (on the `image` class) probes, checks limits and makes `poster` + `thumb`, stores them while the media
//! stays `processing`, and enqueues the `transcode` stage on the `video` class, which makes `mp4-720` and
//! `hls` and marks the media ready with every rendition. A message without a stage does the whole job.

use std::path::Path;
use std::time::Duration;

use mediafleet_proto::envelope::MediaProcess;
use mediafleet_proto::{Envelope, ErrorCode, MediaKind, MediaStatus, Profile, Stage};
use mediafleet_proto::{HLS, MP4_720, POSTER};
use mediafleet_workers::MediaError;
use tracing::{info, warn};

use super::progress::ProgressWriter;
use super::retire::retire_replaced;
use super::upload::store_renditions;
use super::{Done, JobContext, JobError};
use crate::db::{now_ms, OutboxJob};
use crate::storage::keys;

/// Wall-clock budget of a transcode per second of media, on top of the job timeout: x264 `veryfast` with a
/// three-rung ladder runs faster than real time on one modern core, so 3× is a generous bound that still
/// catches a runaway encode.
pub const TRANSCODE_SECONDS_PER_MEDIA_SECOND: f64 = 3.0;

/// What one delivery runs, and what follows it.
struct Part {
    profile: Profile,
    /// The share of the media's progress bar this part covers: `(start, span)`.
    progress: (f64, f64),
    /// The stage to enqueue when this part is done (`None`: this part finishes the media).
    next: Option<Stage>,
    /// Whether rendition rows from an earlier stage are kept.
    merge: bool,
}

/// The renditions a video's short `poster` stage makes; the `transcode` stage merges their rows.
const PART_OF_POSTER_STAGE: [&str; 2] = [POSTER, "thumb"];

fn part(kind: MediaKind, stage: Option<Stage>, profile: &Profile) -> Part {
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let long = profile.video.mp4.is_some() || profile.video.hls.is_some();
    match (kind, stage) {
        (MediaKind::Video, Some(Stage::Poster)) if long => Part {
            profile: profile.clone().only(&names(&PART_OF_POSTER_STAGE)),
            progress: (0.0, 0.05),
            next: Some(Stage::Transcode),
            merge: false,
        },
        (MediaKind::Video, Some(Stage::Transcode)) => Part {
            profile: profile.clone().only(&names(&[MP4_720, HLS])),
            progress: (0.05, 0.94),
            next: None,
            merge: true,
        },
        _ => Part {
            profile: profile.clone(),
            progress: (0.0, 0.99),
            next: None,
            merge: false,
        },
    }
}

/// The longest wall-clock limit a `media.process` job can get: a transcode of the longest media allowed.
pub fn longest_media_job(ctx: &JobContext) -> Duration {
    ctx.job_timeout
        + Duration::from_secs_f64(
            ctx.limits.video_seconds.max(0.0) * TRANSCODE_SECONDS_PER_MEDIA_SECOND,
        )
}

/// The job's wall-clock limit: the configured one, plus [`TRANSCODE_SECONDS_PER_MEDIA_SECOND`] per second of
/// media for the stages that encode (the duration comes from the probe of an earlier stage, or the row).
fn timeout(ctx: &JobContext, kind: MediaKind, stage: Option<Stage>, metadata: &str) -> Duration {
    if kind == MediaKind::Image || stage == Some(Stage::Poster) {
        return ctx.job_timeout;
    }
    let seconds = serde_json::from_str::<serde_json::Value>(metadata)
        .ok()
        .and_then(|m| m.get("duration_seconds").and_then(|d| d.as_f64()))
        // Not probed yet (audio, or a video job without stages): allow the 4 h default's worth.
        .unwrap_or(ctx.limits.video_seconds.min(4.0 * 3600.0))
        .clamp(0.0, ctx.limits.video_seconds);
    ctx.job_timeout + Duration::from_secs_f64(seconds * TRANSCODE_SECONDS_PER_MEDIA_SECOND)
}

pub(super) async fn process(
    ctx: &JobContext,
    class: &crate::queue::JobClass,
    env: &Envelope,
    job: &MediaProcess,
    scratch: &Path,
) -> Result<Done, JobError> {
    let id = env.media_id.to_string();
    let Some(before) = ctx.records.media_primary(&id).await? else {
        info!(media_id = %id, "media is gone; nothing to do");
        return Ok(Done::Skipped);
    };
    let kind = before.kind;
    let limit = timeout(ctx, kind, job.stage, &before.metadata);
    // The deadline after which the reaper calls this media stuck: twice the job's own limit.
    let deadline = now_ms() + 2 * i64::try_from(limit.as_millis()).unwrap_or(i64::MAX / 4);
    let poster_stage = job.stage == Some(Stage::Poster);
    let Some(row) = ctx
        .records
        .start_processing(&id, deadline, poster_stage)
        .await?
    else {
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
    let part = part(kind, job.stage, profile);

    let input = scratch.join("original");
    let out_dir = scratch.join("out");
    tokio::fs::create_dir_all(&out_dir)
        .await
        .map_err(|e| JobError::transient(ErrorCode::Internal, format!("scratch: {e}")))?;
    // Room for the original and what is made from it, before a byte is written.
    let original = u64::try_from(row.bytes).unwrap_or(0);
    let mut share = ctx.scratch.share();
    share.grow(super::scratch_need(original)).map_err(|r| match r {
        crate::runtime::budget::Refusal::NeverFits => JobError::Permanent(MediaError::new(
            ErrorCode::TooLargeBytes,
            format!(
                "a {original}-byte original needs more scratch space than this worker has ({} bytes)",
                share.limit()
            ),
        )),
        crate::runtime::budget::Refusal::Full => JobError::Outage {
            code: ErrorCode::Internal,
            message: "the worker's scratch space is held by other jobs".into(),
            what: "the scratch disk",
        },
    })?;
    match (ctx.store.direct_uploads(), row.source_etag.as_deref()) {
        // A direct upload is read only while it is still the object that was completed.
        (Some(direct), Some(etag)) => direct.get_matching(&row.source_key, &input, etag).await?,
        // Where the child can only read its input, it gets the stored original itself, not a copy.
        _ if ctx.sandbox.input_is_read_only() => {
            ctx.store
                .get_to_file_read_only(&row.source_key, &input)
                .await?
        }
        _ => ctx.store.get_to_file(&row.source_key, &input).await?,
    };

    // Everything up to here overlaps the class's running children; the child itself waits for a slot.
    let slot = ctx.media_slots.acquire(class).await;
    let progress = ProgressWriter::start(ctx.records.clone(), id.clone(), part.progress);
    let report = ctx
        .sandbox
        .run_with_progress(
            &input,
            &part.profile,
            &ctx.limits,
            &out_dir,
            limit,
            progress.sender(),
        )
        .await;
    progress.stop().await;
    drop(slot);
    let report = report?;
    if !report.is_ready() {
        let err = report.error.unwrap_or_else(|| {
            MediaError::new(ErrorCode::Internal, "media work failed without saying why")
        });
        // `internal` is the child's own trouble (a full scratch disk, an encoder that would not start), not
        // the media's: retried, where every other code is the media's verdict.
        if err.code == ErrorCode::Internal {
            return Err(JobError::transient(err.code, err.message));
        }
        return Err(JobError::Permanent(err));
    }

    let mut rows = store_renditions(ctx, &id, &report.renditions, &out_dir).await?;
    // What the media serves now: a reprocess replaces these, and deletes the replaced ones once committed.
    let before_rows = ctx.records.renditions_primary(&id).await?;
    let mut metadata =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&row.metadata)
            .unwrap_or_default();
    metadata.extend(report.metadata.clone());
    let metadata = serde_json::Value::Object(metadata);
    let blurhash = report.blurhash.as_deref().or(row.blurhash.as_deref());
    let thumbhash = report.thumbhash.as_deref().or(row.thumbhash.as_deref());

    if part.next.is_some() {
        // Stored and enqueued in one transaction (the outbox): the long stage finds the poster rows to merge,
        // and a redelivered poster job cannot enqueue a second transcode.
        let follow =
            OutboxJob::transcode(env.media_id, &job.source_key, &job.profile).in_lane(env.lane);
        // Known size: the scaler counts this transcode as duration × the measured rate of its profile. Noted
        // before the job can be published, so a worker that finishes it at once finds the row to remove.
        let noted = match (
            follow.job_id(),
            metadata
                .get("duration_seconds")
                .and_then(serde_json::Value::as_f64),
        ) {
            (Some(job_id), Some(media_seconds)) => {
                match ctx
                    .records
                    .note_queued_work(&job_id, &follow.class, &job.profile, media_seconds)
                    .await
                {
                    Ok(()) => Some(job_id),
                    Err(e) => {
                        warn!(media_id = %id, error = %e, "could not note the transcode's size; the scaler will use the class average");
                        None
                    }
                }
            }
            _ => None,
        };
        if !ctx
            .records
            .keep_partial(&id, &metadata, blurhash, thumbhash, &rows, &follow)
            .await?
        {
            info!(media_id = %id, "media ended, or handed over, while its poster was made; not continuing");
            if let Some(job_id) = noted {
                let _ = ctx.records.take_queued_work(&job_id).await;
            }
            discard_unserved(ctx, &id, &rows).await;
            return Ok(Done::Skipped);
        }
        // A reprocess's new poster and thumb are served from here on; the ones they replaced can go.
        let replaced: Vec<_> = before_rows
            .iter()
            .filter(|o| rows.iter().any(|r| r.name == o.name))
            .cloned()
            .collect();
        retire_replaced(ctx, &id, &replaced, &rows).await;
        info!(media_id = %id, renditions = rows.len(), "poster ready; transcode enqueued on the video class");
        super::enqueue_warm(ctx, &id, env.lane).await;
        return Ok(Done::Completed);
    }

    if part.merge {
        // Only what the poster stage of this run made: a rendition of an earlier profile that this one no
        // longer makes (say `hls` after a reprocess with `default`) must not be carried over.
        for old in &before_rows {
            if PART_OF_POSTER_STAGE.contains(&old.name.as_str())
                && rows.iter().all(|r| r.name != old.name)
            {
                rows.push(old.clone());
            }
        }
    }
    let finished = ctx
        .records
        .finish_ready(&id, &metadata, blurhash, thumbhash, &rows)
        .await?;
    if !finished {
        info!(media_id = %id, "media was finished by another delivery, or deleted; this one's writes were no-ops");
        discard_unserved(ctx, &id, &rows).await;
        return Ok(Done::Skipped);
    }
    info!(media_id = %id, renditions = rows.len(), "media ready");
    retire_replaced(ctx, &id, &before_rows, &rows).await;
    super::enqueue_warm(ctx, &id, env.lane).await;
    Ok(Done::Completed)
}

/// Removes what this delivery stored that the media does not serve: everything, when the media was deleted
/// while the job ran (the DELETE removed the objects it knew of before these were written); otherwise the
/// objects of `rows` that no rendition row points at (a duplicate delivery whose encode differed byte for
/// byte from the one that won). Failures only leak objects, so they are logged, not returned.
async fn discard_unserved(ctx: &JobContext, id: &str, rows: &[crate::db::RenditionRow]) {
    let deleted = match ctx.records.media_primary(id).await {
        Ok(Some(m)) => m.status == MediaStatus::Deleted,
        Ok(None) => true,
        Err(e) => {
            warn!(media_id = %id, error = %e, "cannot tell whether the media was deleted; leaving its objects");
            return;
        }
    };
    if deleted {
        match ctx
            .store
            .delete_prefix(&keys::media_prefix(&ctx.prefix, id))
            .await
        {
            Ok(()) => {
                info!(media_id = %id, "media was deleted while it was processed; removed what this job stored")
            }
            Err(e) => {
                warn!(media_id = %id, error = %e, "media was deleted while it was processed; could not remove its new objects")
            }
        }
        return;
    }
    let served = match ctx.records.renditions_primary(id).await {
        Ok(r) => r,
        Err(e) => {
            warn!(media_id = %id, error = %e, "cannot read the served renditions; leaving this job's objects");
            return;
        }
    };
    let unserved: Vec<_> = rows
        .iter()
        .filter(|r| served.iter().all(|s| s.key != r.key))
        .cloned()
        .collect();
    retire_replaced(ctx, id, &unserved, &served).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn videos_split_into_a_short_and_a_long_stage() {
        let streaming = Profile::builtin().remove("streaming").unwrap();
        let p = part(MediaKind::Video, Some(Stage::Poster), &streaming);
        assert_eq!(p.next, Some(Stage::Transcode));
        assert!(p.profile.video.poster.is_some() && p.profile.video.mp4.is_none());
        assert!(p.profile.video.hls.is_none());
        assert_eq!(p.profile.image.len(), 1, "thumb only");
        let p = part(MediaKind::Video, Some(Stage::Transcode), &streaming);
        assert!(p.next.is_none() && p.merge);
        assert!(p.profile.video.poster.is_none() && p.profile.image.is_empty());
        assert!(p.profile.video.mp4.is_some() && p.profile.video.hls.is_some());
        let p = part(MediaKind::Audio, None, &streaming);
        assert!(p.next.is_none() && !p.merge);
        // Nothing long to do: the poster stage finishes the media itself.
        let mut short = streaming.clone();
        short.video.mp4 = None;
        short.video.hls = None;
        assert!(part(MediaKind::Video, Some(Stage::Poster), &short)
            .next
            .is_none());
    }
}
