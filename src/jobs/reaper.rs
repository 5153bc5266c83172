//! The reaper: fails media stuck in `processing` past their deadline (a worker died mid-job and its message
//! was lost or dead-lettered by the broker), and re-enqueues, through the outbox, media that wait for a job
//! nobody holds (see [`Records::requeue_stale`]).

use std::time::{Duration, Instant};

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
    // The last time the database answered, and since when it has not (a database outage).
    let mut seen = Instant::now();
    let mut blind_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(since) = blind_since {
            // Jobs waiting out the outage could not touch their media either: the time it lasted does not count
            // against their deadlines, or every media in flight would be reaped the moment the database returns.
            // Each worker's reaper moves them, so with N workers a deadline moves by up to N × the outage: a
            // media whose worker is really gone is reaped later, never one whose job is only waiting.
            match records.extend_deadlines(since.elapsed()).await {
                Ok(n) => {
                    info!(moved = n, outage = ?since.elapsed(), "database back: processing deadlines moved by the outage");
                    blind_since = None;
                }
                Err(e) => {
                    warn!(error = %e, "reaper could not run");
                    continue;
                }
            }
        }
        match records.reap_stuck().await {
            Ok(ids) if !ids.is_empty() => {
                info!(count = ids.len(), ?ids, "reaped media stuck in processing")
            }
            Ok(_) => {}
            Err(e) => {
                blind_since.get_or_insert(seen);
                warn!(error = %e, "reaper could not run");
            }
        }
        if blind_since.is_none() {
            seen = Instant::now();
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
