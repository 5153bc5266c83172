//! One poll of every class: read depth and cost, decide, publish the gauges (and the age of each class's
//! newest worker heartbeat), log the decision.

use std::collections::BTreeMap;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::metrics::{self, METRICS};
use super::policy::{ClassPolicy, Reading};
use super::route::Fallback;
use super::signal::{self, ClassSignal};
use super::{cost, store, ScaleError};
use crate::config::ScalingSettings;
use crate::db::Records;
use crate::queue::{SharedAdmin, SharedQueue};

/// The scaler: a policy per class and the backends it reads.
pub struct Scaler {
    /// Moves jobs between classes (capability fallback).
    queue: SharedQueue,
    /// Reads depth.
    admin: SharedAdmin,
    records: Records,
    policies: BTreeMap<String, ClassPolicy>,
    fallback: Fallback,
    /// A one-off reading (`ops status`, the `/ops` dashboard): no gauges, no decision logged at info, so it
    /// never overwrites what the process's own scaling loop published.
    quiet: bool,
}

impl Scaler {
    /// A scaler over `classes` (every configured class when empty). Unknown classes get default settings.
    /// `queue` and `admin` are the two sides of one backend (`connect::queue_and_admin_declared`).
    pub fn new(
        queue: SharedQueue,
        admin: SharedAdmin,
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
            policies.insert(
                name,
                ClassPolicy::new(
                    cfg,
                    scaling.scale_down_window,
                    scaling.poll_interval,
                    scaling.startup,
                ),
            );
        }
        Ok(Scaler {
            queue,
            admin,
            records,
            policies,
            fallback: Fallback::default(),
            quiet: false,
        })
    }

    /// A scaler for one-off readings: [`Self::poll`] sets no gauge and logs its decisions at debug only.
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Overrides min and max workers of every class (`fleet --min --max`), the scale-down window and the
    /// poll interval.
    pub fn with_bounds(
        mut self,
        min: Option<u32>,
        max: Option<u32>,
        window: std::time::Duration,
        poll: std::time::Duration,
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
            *p = ClassPolicy::new(cfg, window, poll, p.startup());
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

    /// Sets the start-up time `class` plans with (the fleet measures it from its own workers).
    pub fn set_startup(&mut self, class: &str, startup: std::time::Duration) {
        if let Some(p) = self.policies.get_mut(class) {
            p.set_startup(startup);
        }
    }

    /// Reads every class, decides, and sets the gauges. `current` is the running worker count per class.
    pub async fn poll(
        &mut self,
        current: &BTreeMap<String, u32>,
    ) -> Result<Vec<ClassSignal>, ScaleError> {
        let costs = store::costs(&self.records).await?;
        // Operators' overrides (`ops scale --workers`). Unreadable: the policy decides alone this time.
        let overrides = match self.records.scale_overrides().await {
            Ok(o) => o,
            Err(e) => {
                warn!(error = %e, "cannot read scale overrides; the policy decides alone");
                Default::default()
            }
        };
        let from_db = self.db_readings().await;
        let known = self.known_work().await;
        let now = Instant::now();
        let mut out = Vec::with_capacity(self.policies.len());
        for (class, policy) in self.policies.iter_mut() {
            let mut sig = signal::read(
                self.admin.as_ref(),
                class,
                policy.config(),
                costs.get(class),
            )
            .await?;
            fill_from_db(&mut sig, &from_db);
            if self.admin.backend() == "rabbitmq" {
                fresher_in_flight(&mut sig, &from_db);
            }
            let k = known.get(class);
            let queued_seconds = cost::queued_seconds(
                sig.ready,
                sig.cost_seconds,
                k.map(|k| k.queued.as_slice()).unwrap_or_default(),
            );
            let planned = super::policy::planned_latency(policy.config());
            let in_flight = sig.in_flight.unwrap_or(0);
            let in_flight_long = cost::long_in_flight(
                in_flight,
                sig.cost_seconds,
                k.map(|k| k.running_left.as_slice()).unwrap_or_default(),
                planned,
            );
            sig.backlog_seconds =
                queued_seconds + sig.in_flight.unwrap_or(0) as f64 * sig.cost_seconds;
            let before = policy.desired();
            let reading = Reading {
                ready: sig.ready,
                in_flight,
                in_flight_long,
                queued_seconds,
                cost_seconds: sig.cost_seconds,
                // Every finished job that was measured bumps the class's sample count.
                completed_total: costs
                    .get(class)
                    .map(|c| u64::try_from(c.samples).unwrap_or(0)),
            };
            let d = policy.decide(now, &reading);
            sig.desired_workers = d.desired;
            sig.decided_by = d.term.as_str();
            sig.arrival_per_second = (d.arrival_per_second * 1000.0).round() / 1000.0;
            sig.current_workers = current.get(class).copied().unwrap_or(0);
            // An operator's override wins over the policy (which goes on deciding underneath, so it takes
            // over from where the load is when the override ends), within the class's max.
            if let Some(o) = overrides.get(class) {
                let max = policy.config().max_workers;
                if sig.desired_workers != o.workers.min(max) && !self.quiet {
                    info!(class, workers = o.workers, max, policy = d.desired, set_by = %o.set_by, "scale override in force");
                }
                sig.desired_workers = o.workers.min(max);
                sig.decided_by = "override";
            }
            if d.desired != before && !self.quiet {
                info!(
                    class, ready = sig.ready, in_flight = ?sig.in_flight, delayed = sig.delayed,
                    oldest_age_seconds = ?sig.oldest_age_seconds, cost_seconds = sig.cost_seconds,
                    backlog_seconds = sig.backlog_seconds, arrival_per_second = d.arrival_per_second,
                    startup_seconds = policy.startup().as_secs_f64(), slots = d.slots, raw = d.raw,
                    from = before, desired = d.desired, current = sig.current_workers,
                    decided_by = d.term.as_str(), reason = d.reason, "scaling decision"
                );
            } else {
                debug!(
                    class,
                    backlog_seconds = sig.backlog_seconds,
                    arrival_per_second = d.arrival_per_second,
                    desired = d.desired,
                    decided_by = d.term.as_str(),
                    reason = d.reason,
                    "scaling decision"
                );
            }
            if !self.quiet {
                publish(&sig);
            }
            out.push(sig);
        }
        if !self.quiet {
            self.publish_heartbeat_ages().await;
        }
        Ok(out)
    }

    /// Sets [`metrics::HEARTBEAT_AGE`] per class from the newest heartbeat of its workers. A class with no
    /// presence row (never served, or every worker left cleanly) has no series: there is no heartbeat to be
    /// late. A failed read leaves the last values.
    async fn publish_heartbeat_ages(&self) {
        let newest = match store::newest_heartbeats(&self.records).await {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "could not read worker heartbeats");
                return;
            }
        };
        let now = crate::db::now_ms();
        for class in self.policies.keys() {
            let g = &METRICS.heartbeat_age;
            match newest.get(class) {
                Some(seen) => g
                    .with_label_values(&[class.as_str()])
                    .set((now - seen).max(0) as f64 / 1000.0),
                None => {
                    let _ = g.remove_label_values(&[class.as_str()]);
                }
            }
        }
    }

    /// What the DB knows about queued and running jobs, for readings the broker does not give. Errors only
    /// leave those readings unknown.
    async fn db_readings(&self) -> DbReadings {
        let since = crate::db::now_ms() - 6 * 3600 * 1000;
        let mut r = DbReadings::default();
        match self.records.open_attempts_by_class(since).await {
            Ok(rows) => {
                r.in_flight = attribute(&rows);
                r.attempts_read = true;
            }
            Err(e) => warn!(error = %e, "could not read open job attempts"),
        }
        match self.records.oldest_queued_ms().await {
            Ok(t) => r.oldest_queued_ms = t,
            Err(e) => warn!(error = %e, "could not read the oldest queued media"),
        }
        r
    }

    /// Jobs of known size per class (video transcodes: the probe's duration × the measured rate of their
    /// profile): the ready ones, and the expected seconds left of the running ones. Errors leave every class
    /// on its per-job average.
    async fn known_work(&self) -> BTreeMap<String, Known> {
        let since = crate::db::now_ms() - 24 * 3600 * 1000;
        let (work, running, rates) = tokio::join!(
            self.records.known_work(since),
            self.records.running_known_work(since),
            self.records.media_rates()
        );
        let (work, running, rates) = match (work, running, rates) {
            (Ok(w), Ok(r), Ok(m)) => (w, r, m),
            (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
                warn!(error = %e, "could not read known job sizes; using per-job averages");
                return BTreeMap::new();
            }
        };
        let rate = |class: &str, profile: &str| {
            rates
                .iter()
                .find(|r| r.class == class && r.profile == profile && r.samples > 0)
                .map(|r| r.seconds_per_media_second)
                .unwrap_or(cost::FIRST_COST_PER_MEDIA_SECOND)
        };
        let mut out: BTreeMap<String, Known> = BTreeMap::new();
        for w in work {
            let r = rate(&w.class, &w.profile);
            out.entry(w.class)
                .or_default()
                .queued
                .push(cost::KnownQueued {
                    jobs: u64::try_from(w.ready_jobs).unwrap_or(0),
                    media_seconds: w.ready_media_seconds,
                    rate: r,
                });
        }
        let now = crate::db::now_ms();
        for (class, profile, media_seconds, started_at) in running {
            let expected = media_seconds * rate(&class, &profile);
            let ran = (now - started_at).max(0) as f64 / 1000.0;
            out.entry(class)
                .or_default()
                .running_left
                .push(cost::seconds_left(expected, ran));
        }
        out
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

/// Known-size work of one class.
#[derive(Debug, Default)]
struct Known {
    /// Ready jobs, per profile.
    queued: Vec<cost::KnownQueued>,
    /// Expected seconds left of each running job.
    running_left: Vec<f64>,
}

/// The DB's view of the queues.
#[derive(Debug, Default)]
struct DbReadings {
    /// Open job attempts per class.
    in_flight: BTreeMap<String, u64>,
    /// Whether `in_flight` was read (a class missing from it then has none open).
    attempts_read: bool,
    /// When the longest-waiting `queued` media was queued.
    oldest_queued_ms: Option<i64>,
}

/// Open attempts per class: the class the worker recorded (the queue it took the job from), else, for rows
/// of workers older than that column, the class of the kind's first stage.
fn attribute(rows: &[(Option<String>, String, i64)]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (class, kind, n) in rows {
        let class = match class {
            Some(c) if !c.is_empty() => c.clone(),
            _ => crate::routing::legacy_class_of_kind(kind).to_owned(),
        };
        *out.entry(class).or_default() += u64::try_from(*n).unwrap_or(0);
    }
    out
}

/// RabbitMQ's in-flight (unacked) count is a management-API statistic refreshed every few seconds; open
/// attempts are written when a job starts and when it ends. The smaller of the two drops both a stale count
/// after a burst and attempts left open by a crashed worker.
fn fresher_in_flight(sig: &mut ClassSignal, db: &DbReadings) {
    if let (Some(broker), true) = (sig.in_flight, db.attempts_read) {
        let open = db.in_flight.get(&sig.class).copied().unwrap_or(0);
        sig.in_flight = Some(broker.min(open));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{class_for, every_route};

    /// Every job any producer enqueues, as the runtime records its open attempt (kind + the class it was taken
    /// from), is counted in flight on the class the producer routed it to: video transcodes and audio on
    /// `video`, not `image` (a kind-only reverse mapping gets both wrong).
    #[test]
    fn open_attempts_count_on_the_class_producers_route_to() {
        for (kind, stage, media) in every_route() {
            let class = class_for(kind, stage, media);
            let rows = vec![(Some(class.to_owned()), kind.as_str().to_owned(), 3)];
            let got = attribute(&rows);
            assert_eq!(
                got,
                BTreeMap::from([(class.to_owned(), 3)]),
                "{kind:?} {stage:?} {media:?}"
            );
        }
        let db = DbReadings {
            in_flight: attribute(&[
                (Some("video".into()), "media.process".into(), 2),
                (Some("image".into()), "media.process".into(), 5),
            ]),
            oldest_queued_ms: None,
            attempts_read: true,
        };
        let mut sig = signal::from_depth(
            "video",
            &crate::queue::Depth {
                ready: 1,
                in_flight: None,
                delayed: 0,
                dlq: 0,
                oldest_age_seconds: None,
            },
            60.0,
        );
        fill_from_db(&mut sig, &db);
        assert_eq!(sig.in_flight, Some(2), "video transcodes in flight");
        assert_eq!(sig.backlog_seconds, 180.0);
        // A stale broker count (5 in flight) yields to the attempts (2); a class with none open reads 0.
        sig.in_flight = Some(5);
        fresher_in_flight(&mut sig, &db);
        assert_eq!(sig.in_flight, Some(2));
        sig.class = "cache".into();
        fresher_in_flight(&mut sig, &db);
        assert_eq!(sig.in_flight, Some(0));
    }

    #[test]
    fn rows_of_older_workers_fall_back_to_the_kind() {
        let got = attribute(&[
            (None, "cache.warm".into(), 1),
            (None, "notify.webhook".into(), 2),
            (None, "media.validate".into(), 4),
        ]);
        assert_eq!(
            got,
            BTreeMap::from([
                ("cache".to_owned(), 1),
                ("image".to_owned(), 4),
                ("notify".to_owned(), 2)
            ])
        );
    }
}
