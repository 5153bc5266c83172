//! `cache.warm`: assemble a media object into the cache; and the hook that enqueues it when a media's
//! status changes. A warm never changes a media: its failures retry from the queue and, when they run
//! out, dead-letter without touching the media (the api reads through to the DB anyway).

use mediafleet_proto::envelope::CacheWarm;
use mediafleet_proto::{Envelope, ErrorCode, JobKind};
use tracing::{debug, info, warn};

use super::{Done, JobContext, JobError};
use crate::media_object::warm::{warm_one, WarmError, Warmed};

pub(super) async fn warm(
    ctx: &JobContext,
    env: &Envelope,
    job: &CacheWarm,
) -> Result<Done, JobError> {
    let Some(cache) = &ctx.cache else {
        warn!("cache.warm received by a worker without --cache; acking it (configure --cache on cache workers)");
        return Ok(Done::Skipped);
    };
    let id = env.media_id.to_string();
    match warm_one(&ctx.records, cache, &id, ctx.public_url.as_deref()).await {
        Ok(Warmed::Written(v)) => {
            if v < job.version {
                // Rows come from the primary, so this means the job was made from a newer state than the
                // DB holds now; the object written is still the DB's truth.
                warn!(media_id = %id, cached = v, asked = job.version, "warm found an older version than asked");
            }
            info!(media_id = %id, version = v, "media object cached");
            Ok(Done::Completed)
        }
        Ok(Warmed::KeptNewer) => {
            info!(media_id = %id, version = job.version, "cache holds a newer object; kept it");
            Ok(Done::Skipped)
        }
        Ok(Warmed::NotCached) => {
            info!(media_id = %id, "media object over the cache's item size limit; readers get it from the database");
            Ok(Done::Skipped)
        }
        Ok(Warmed::Missing) => {
            info!(media_id = %id, "media is gone; removed its object");
            Ok(Done::Completed)
        }
        Err(WarmError::Db(e)) => Err(e.into()),
        Err(WarmError::Cache(e)) => Err(JobError::transient(ErrorCode::Internal, e)),
    }
}

/// Whether a job's failure may mark its media failed: only the jobs that make the media do. A `cache.warm`
/// (or a webhook) that runs out of retries must leave the media as it is.
pub fn changes_media_status(env: &Envelope) -> bool {
    matches!(
        JobKind::parse(&env.kind),
        Some(JobKind::MediaProcess | JobKind::MediaValidate)
    )
}

/// Enqueues a `cache.warm` for a media whose status just changed, when a cache is configured. Never fails:
/// a lost warm only means the next reader fills the cache from the DB. It travels in `lane`, the lane of the
/// job that changed the status, so a backfill's warms queue behind no live upload's.
pub async fn enqueue_warm(ctx: &JobContext, media_id: &str, lane: mediafleet_proto::Lane) {
    if ctx.cache.is_none() {
        return;
    }
    let version = match ctx.records.media_primary(media_id).await {
        Ok(Some(row)) => row.version,
        Ok(None) => 0,
        Err(e) => {
            warn!(media_id, error = %e, "could not read the media version; warming the current one");
            0
        }
    };
    match crate::cache::publish_warm(ctx.queue.as_ref(), media_id, version, lane).await {
        Ok(()) => debug!(media_id, version, "cache.warm enqueued"),
        Err(e) => {
            warn!(media_id, error = %e, "could not enqueue cache.warm; readers will fill the cache from the DB")
        }
    }
}
