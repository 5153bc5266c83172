//! The reaper fails media stuck in `processing` past their deadline (a worker died mid-job and its message
//! was lost or dead-lettered by the broker).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::db::Records;

/// Runs until `shutdown`, reaping every `interval`.
pub async fn run_reaper(records: Records, interval: Duration, shutdown: CancellationToken) {
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
    }
}
