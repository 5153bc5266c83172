//! Watches the classes operators have paused (`mediafleet ops pause`) for the worker runtime.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::db::Records;
use crate::runtime::Paused;

/// Reads the paused classes now, then every `every` until `shutdown`. While the database cannot be read the
/// last known set stays: an outage neither pauses nor resumes anything.
pub async fn watch_pauses(
    records: Records,
    every: Duration,
    shutdown: CancellationToken,
) -> Paused {
    let first = match records.pauses().await {
        Ok(p) => p.into_keys().collect(),
        Err(e) => {
            warn!(error = %e, "cannot read paused classes; assuming none until the database answers");
            BTreeSet::new()
        }
    };
    let (tx, rx) = tokio::sync::watch::channel::<BTreeSet<String>>(first);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match records.pauses().await {
                Ok(p) => {
                    let now: BTreeSet<String> = p.into_keys().collect();
                    tx.send_if_modified(|old| {
                        let changed = *old != now;
                        *old = now;
                        changed
                    });
                }
                Err(e) => {
                    warn!(error = %e, "cannot read paused classes; keeping the last known set")
                }
            }
        }
    });
    rx
}
