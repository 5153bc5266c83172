//! One poll of every class: read depth and cost, decide, publish the gauges, log the decision.

use std::collections::BTreeMap;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::metrics::{self, METRICS};
use super::policy::ClassPolicy;
use super::route::Fallback;
use super::signal::{self, ClassSignal};
use super::{store, ScaleError};
use crate::config::ScalingSettings;
use crate::db::Records;
use crate::queue::SharedQueue;

/// The scaler: a policy per class and the backends it reads.
pub struct Scaler {
    queue: SharedQueue,
    records: Records,
    policies: BTreeMap<String, ClassPolicy>,
    fallback: Fallback,
}

impl Scaler {
    /// A scaler over `classes` (every configured class when empty). Unknown classes get default settings.
    pub fn new(
        queue: SharedQueue,
        records: Records,
        scaling: &ScalingSettings,
        classes: &[String],
    ) -> Result<Self, ScaleError> {
        let names: Vec<String> = if classes.is_empty() {
            scaling.classes.keys().cloned().collect()
        } else {
            classes.to_vec()
        };
        let mut policies = BTreeMap::new();
        for name in names {
            crate::queue::JobClass::new(&name)?;
            let cfg = scaling.classes.get(&name).cloned().ok_or_else(|| {
                ScaleError::Config(format!(
                    "class {name:?} has no [scaling.{name}] table and is not a standard class"
                ))
            })?;
            policies.insert(name, ClassPolicy::new(cfg, scaling.scale_down_window));
        }
        Ok(Scaler {
            queue,
            records,
            policies,
            fallback: Fallback::default(),
        })
    }

    /// Overrides min and max workers of every class (`fleet --min --max`).
    pub fn with_bounds(
        mut self,
        min: Option<u32>,
        max: Option<u32>,
        window: std::time::Duration,
    ) -> Self {
        for p in self.policies.values_mut() {
            let mut cfg = p.config().clone();
            if let Some(min) = min {
                cfg.min_workers = min;
            }
            if let Some(max) = max {
                cfg.max_workers = max;
            }
            cfg.max_workers = cfg.max_workers.max(cfg.min_workers);
            *p = ClassPolicy::new(cfg, window);
        }
        self
    }

    /// The classes, in order.
    pub fn classes(&self) -> Vec<String> {
        self.policies.keys().cloned().collect()
    }

    /// The policy of `class`.
    pub fn policy(&self, class: &str) -> Option<&ClassPolicy> {
        self.policies.get(class)
    }

    /// Reads every class, decides, and sets the gauges. `current` is the running worker count per class.
    pub async fn poll(
        &mut self,
        current: &BTreeMap<String, u32>,
    ) -> Result<Vec<ClassSignal>, ScaleError> {
        let costs = store::costs(&self.records).await?;
        let from_db = self.db_readings().await;
        let now = Instant::now();
        let mut out = Vec::with_capacity(self.policies.len());
        for (class, policy) in self.policies.iter_mut() {
            let mut sig = signal::read(
                self.queue.as_ref(),
                class,
                policy.config(),
                costs.get(class),
            )
            .await?;
            fill_from_db(&mut sig, &from_db);
            let before = policy.desired();
            let d = policy.decide(now, sig.backlog_seconds, sig.has_work());
            sig.desired_workers = d.desired;
            sig.current_workers = current.get(class).copied().unwrap_or(0);
            if d.desired != before {
                info!(
                    class, ready = sig.ready, in_flight = ?sig.in_flight, delayed = sig.delayed,
                    oldest_age_seconds = ?sig.oldest_age_seconds, cost_seconds = sig.cost_seconds,
                    backlog_seconds = sig.backlog_seconds, raw = d.raw, from = before, desired = d.desired,
                    current = sig.current_workers, reason = d.reason, "scaling decision"
                );
            } else {
                debug!(
                    class,
                    backlog_seconds = sig.backlog_seconds,
                    desired = d.desired,
                    reason = d.reason,
                    "scaling decision"
                );
            }
            publish(&sig);
            out.push(sig);
        }
        Ok(out)
    }

    /// What the DB knows about queued and running jobs, for readings the broker does not give. Errors only
    /// leave those readings unknown.
    async fn db_readings(&self) -> DbReadings {
        let since = crate::db::now_ms() - 6 * 3600 * 1000;
        let mut r = DbReadings::default();
        match self.records.open_attempts_by_kind(since).await {
            Ok(rows) => {
                for (kind, n) in rows {
                    let class = class_of_kind(&kind);
                    *r.in_flight.entry(class.to_owned()).or_default() +=
                        u64::try_from(n).unwrap_or(0);
                }
            }
            Err(e) => warn!(error = %e, "could not read open job attempts"),
        }
        match self.records.oldest_queued_ms().await {
            Ok(t) => r.oldest_queued_ms = t,
            Err(e) => warn!(error = %e, "could not read the oldest queued media"),
        }
        r
    }

    /// Capability routing: moves jobs of a class nobody serves to its fallback class (see [`Fallback`]).
    pub async fn reroute(&mut self, signals: &[ClassSignal], live: &BTreeMap<String, u32>) {
        let cfgs: BTreeMap<String, crate::config::ClassScaling> = self
            .policies
            .iter()
            .map(|(k, p)| (k.clone(), p.config().clone()))
            .collect();
        if let Err(e) = self
            .fallback
            .run(self.queue.as_ref(), &cfgs, signals, live)
            .await
        {
            warn!(error = %e, "capability fallback failed; retrying next poll");
        }
    }
}

/// Sets the eight per-class gauges from one reading.
pub fn publish(s: &ClassSignal) {
    let c = s.class.as_str();
    METRICS.set(metrics::QUEUE_READY, c, s.ready as f64);
    if let Some(n) = s.in_flight {
        METRICS.set(metrics::QUEUE_IN_FLIGHT, c, n as f64);
    }
    METRICS.set(metrics::QUEUE_DELAYED, c, s.delayed as f64);
    METRICS.set(metrics::QUEUE_DLQ, c, s.dlq as f64);
    METRICS.set(
        metrics::QUEUE_OLDEST_AGE,
        c,
        s.oldest_age_seconds.unwrap_or(0.0),
    );
    METRICS.set(metrics::BACKLOG_SECONDS, c, s.backlog_seconds);
    METRICS.set(metrics::DESIRED_WORKERS, c, f64::from(s.desired_workers));
    METRICS.set(metrics::CURRENT_WORKERS, c, f64::from(s.current_workers));
}

/// The DB's view of the queues.
#[derive(Debug, Default)]
struct DbReadings {
    /// Open job attempts per class.
    in_flight: BTreeMap<String, u64>,
    /// When the longest-waiting `queued` media was queued.
    oldest_queued_ms: Option<i64>,
}

/// The class a job kind runs on (the first stage of every media job runs on `image`).
fn class_of_kind(kind: &str) -> &'static str {
    match kind {
        "cache.warm" => "cache",
        "notify.webhook" => "notify",
        k if k.starts_with("video.") => "video",
        _ => "image",
    }
}

/// Fills readings the broker left unknown from the DB: in-flight from open job attempts, and for `image`
/// (where every media job starts) the age of the longest-queued media.
fn fill_from_db(sig: &mut ClassSignal, db: &DbReadings) {
    if sig.in_flight.is_none() {
        sig.in_flight = Some(db.in_flight.get(&sig.class).copied().unwrap_or(0));
        sig.backlog_seconds = (sig.ready + sig.in_flight.unwrap_or(0)) as f64 * sig.cost_seconds;
    }
    if sig.oldest_age_seconds.is_none() && sig.class == "image" && sig.ready > 0 {
        if let Some(t) = db.oldest_queued_ms {
            sig.oldest_age_seconds = Some((crate::db::now_ms() - t).max(0) as f64 / 1000.0);
        }
    }
}
