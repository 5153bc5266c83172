//! The reaper: fails media stuck in `processing` past their deadline (a worker died mid-job and its message
//! was lost or dead-lettered by the broker), and re-enqueues, through the outbox, media that wait for a job
//! nobody holds (see [`Records::requeue_stale`]).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::db::Records;

/// Runs until `shutdown`, reaping every `interval`; media untouched for `stale_after` get their job again.
pub async fn run_reaper(
    records: Records,
    interval: Duration,
    stale_after: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match records.reap_stuck().await {
            Ok(ids) if !ids.is_empty() => {
                info!(count = ids.len(), ?ids, "reaped media stuck in processing")
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "reaper could not run"),
        }
        match records.requeue_stale(stale_after, 100).await {
            Ok(ids) if !ids.is_empty() => {
                warn!(
                    count = ids.len(),
                    ?ids,
                    "re-enqueued media whose job was lost"
                )
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "stale-media sweep could not run"),
        }
    }
}
