//! Publishing `cache.warm` jobs. The one caller is `jobs::enqueue_warm`, which the worker runs when a job
//! changes a media's status: `media.process` when the media or its video poster is ready, and the runtime when
//! it marks a media failed. The api (`refresh_cached`) and `ops warm` write the cache directly instead, through
//! `media_object::warm`.

use mediafleet_proto::envelope::CacheWarm;
use mediafleet_proto::{Envelope, Job};

use crate::queue::{JobClass, JobQueue, QueueError};

/// Publishes a `cache.warm` job for `media_id` at `version` on the `cache` class, in `lane` (`cache` or
/// `cache-bulk`).
pub async fn publish_warm(
    queue: &dyn JobQueue,
    media_id: &str,
    version: i64,
    lane: mediafleet_proto::Lane,
) -> Result<(), QueueError> {
    let id = uuid::Uuid::parse_str(media_id)
        .map_err(|e| QueueError::Config(format!("media id {media_id:?} is not a UUID: {e}")))?;
    let mut env = Envelope::new(id, &Job::CacheWarm(CacheWarm { version }));
    crate::trace::inherit(&mut env);
    env.lane = lane;
    let class = JobClass::new(&crate::routing::queue_for(
        mediafleet_proto::JobKind::CacheWarm,
        None,
        None,
        lane,
    ))?;
    queue.publish(&class, &env.to_bytes()).await
}
