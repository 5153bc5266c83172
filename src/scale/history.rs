//! The last hour of the fleet for the `/ops` dashboard: a sampler started with the api takes a
//! [`super::status::snapshot`] every `[scaling] status_sample` (default 15 s) and keeps, per class, the
//! figures the charts draw in a ring buffer that holds one hour. It lives in the api's memory only: a restart
//! starts a new hour, and each api replica keeps its own (they read the same queues, so they agree).
//!
//! Throughput comes from the `class_throughput` counter the scaler learns costs from (every measured
//! finished job adds one): the rise between two samples over the time between them, per minute.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::status::{snapshot, StatusDoc};
use super::store;
use crate::config::ScalingSettings;
use crate::db::Records;
use crate::queue::{SharedAdmin, SharedQueue};

/// How much history the buffer keeps.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// One class at one sample.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ClassSample {
    /// The class.
    pub class: String,
    /// Ready messages.
    pub ready: u64,
    /// In flight; `null` when the backend cannot tell.
    pub in_flight: Option<u64>,
    /// Dead letters.
    pub dlq: u64,
    /// Age of the oldest ready message; `null` when unknown.
    pub oldest_age_seconds: Option<f64>,
    /// Workers the scaler asked for.
    pub desired_workers: u32,
    /// Live workers of the class.
    pub live_workers: u32,
    /// Measured finished jobs of the class so far (the scaler's counter); `null` when it could not be read.
    pub finished_total: Option<i64>,
    /// Jobs finished per minute since the previous sample; `null` for the first sample or an unknown count.
    pub finished_per_minute: Option<f64>,
}

/// Every class at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Sample {
    /// When it was taken, Unix ms.
    pub at_ms: i64,
    /// Per class, in the snapshot's order.
    pub classes: Vec<ClassSample>,
}

/// The ring buffer: at most one hour of samples, oldest first.
#[derive(Debug)]
pub struct History {
    every: Duration,
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// An empty history sampled every `every`.
    pub fn new(every: Duration) -> Self {
        History {
            every: every.max(Duration::from_millis(10)),
            samples: Mutex::new(VecDeque::with_capacity(Self::capacity_for(every).min(4096))),
        }
    }

    /// The sampling interval.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// Samples that fit in [`WINDOW`] at interval `every`.
    fn capacity_for(every: Duration) -> usize {
        let every = every.max(Duration::from_millis(10));
        usize::try_from(WINDOW.as_millis() / every.as_millis()).unwrap_or(usize::MAX) + 1
    }

    /// Adds the sample of `doc` taken at `at_ms`, with each class's finished-job counter; drops what is older
    /// than an hour or past the capacity.
    pub fn push(&self, at_ms: i64, doc: &StatusDoc, finished: Option<&BTreeMap<String, i64>>) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let previous = samples.back();
        let classes = doc
            .classes
            .iter()
            .map(|c| {
                let total = finished.map(|f| f.get(&c.class).copied().unwrap_or(0));
                let before = previous.and_then(|p| {
                    let s = p.classes.iter().find(|s| s.class == c.class)?;
                    Some((p.at_ms, s.finished_total?))
                });
                let rate = match (total, before) {
                    (Some(now), Some((then_ms, then))) if at_ms > then_ms => {
                        let minutes = (at_ms - then_ms) as f64 / 60_000.0;
                        Some(((now - then).max(0) as f64 / minutes * 100.0).round() / 100.0)
                    }
                    _ => None,
                };
                ClassSample {
                    class: c.class.clone(),
                    ready: c.ready,
                    in_flight: c.in_flight,
                    dlq: c.dlq,
                    oldest_age_seconds: c.oldest_age_seconds,
                    desired_workers: c.desired_workers,
                    live_workers: c.live_workers,
                    finished_total: total,
                    finished_per_minute: rate,
                }
            })
            .collect();
        samples.push_back(Sample { at_ms, classes });
        let oldest = at_ms - i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX);
        let cap = Self::capacity_for(self.every);
        while samples
            .front()
            .is_some_and(|s| s.at_ms < oldest || samples.len() > cap)
        {
            samples.pop_front();
        }
    }

    /// Every sample kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.iter().cloned().collect()
    }
}

/// What the sampler reads.
pub struct Sampler {
    /// The queue's hot side (the scaler needs both sides).
    pub queue: SharedQueue,
    /// The queue's admin side (depth).
    pub admin: SharedAdmin,
    /// The database.
    pub records: Records,
    /// Scaling policy per class.
    pub scaling: ScalingSettings,
}

impl Sampler {
    /// Takes a sample into `history` every [`History::every`] until `shutdown`. A failed reading (the
    /// broker or the DB is down) is logged and leaves a gap in the charts.
    pub async fn run(self, history: std::sync::Arc<History>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(history.every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let doc = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = snapshot(self.queue.clone(), self.admin.clone(), &self.records, &self.scaling, &[]) => r,
            };
            match doc {
                Ok(doc) => {
                    let finished: Option<BTreeMap<String, i64>> =
                        match store::costs(&self.records).await {
                            Ok(c) => Some(c.into_iter().map(|(k, v)| (k, v.samples)).collect()),
                            Err(e) => {
                                tracing::debug!(error = %e, "could not read finished-job counts");
                                None
                            }
                        };
                    history.push(crate::db::now_ms(), &doc, finished.as_ref());
                }
                Err(e) => tracing::warn!(error = %e, "ops status sample failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::status::ClassStatus;

    fn doc(ready: u64) -> StatusDoc {
        StatusDoc {
            classes: vec![ClassStatus {
                class: "image".into(),
                ready,
                in_flight: Some(0),
                delayed: 0,
                dlq: 0,
                oldest_age_seconds: None,
                backlog_seconds: 0.0,
                desired_workers: 0,
                live_workers: 1,
                decided_by: "minimum",
                paused: false,
            }],
            workers: vec![],
            failures_last_hour: BTreeMap::new(),
        }
    }

    #[test]
    fn keeps_one_hour_and_derives_throughput() {
        let h = History::new(Duration::from_secs(900));
        let finished = |n| BTreeMap::from([("image".to_owned(), n)]);
        h.push(0, &doc(1), Some(&finished(10)));
        h.push(60_000, &doc(2), Some(&finished(40)));
        let s = h.samples();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].classes[0].finished_per_minute, None);
        assert_eq!(s[1].classes[0].finished_per_minute, Some(30.0));
        // Past the hour, and past the capacity (5 samples of 15 min): the oldest go.
        for i in 2..8 {
            h.push(i * 900_000, &doc(3), None);
        }
        let s = h.samples();
        assert!(s.len() <= 5, "{}", s.len());
        assert!(s.iter().all(|x| x.at_ms >= 7 * 900_000 - 3_600_000));
        assert_eq!(s.last().unwrap().classes[0].finished_per_minute, None);
    }
}
