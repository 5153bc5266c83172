//! The scaling policy of one class: predictive backlog-seconds. The live scaler and `scaler simulate` both
//! call [`ClassPolicy::decide_at`] with a [`Reading`], so the simulation runs this exact code.
//!
//! Per poll, with `k` = concurrency, `L` = target latency, `s` = learned worker start-up, `p` = poll interval,
//! `c` = expected seconds of one new job (smoothed over minutes), `λ` = arrival rate ([`ArrivalMeter`](super::arrival::ArrivalMeter)):
//!
//! ```text
//! H      = s + p                        a worker asked for now takes jobs this much later
//! L'     = L × PLANNED_LATENCY_SHARE    the wait planned for; the rest is headroom for what the model ignores
//! d      = λ·c                          slots the arriving stream keeps busy
//! Q      = queued_seconds + max(0, d − desired × k)·H     queued work when a new worker can start
//! clear  = Q / L'                       slots that start all of it within L'       (term `backlog`)
//! keep   = (Q + d·H) / (L' + H)         slots that keep the wait within L' over H  (term `arrival`)
//! slots  = long + max(min(max(clear, keep), ready + λ·H + short), short)
//! raw    = clamp(ceil(slots / k), min, max), at least 1 while any job is ready or in flight
//! ```
//!
//! `short` and `long` are the jobs in flight that end within `L'` or not: a slot held by an hour-long
//! transcode cannot serve the queue, one that frees up soon can. Work arriving faster than today's capacity
//! piles up for `H` before a new worker can take it; it counts now (it is already late). Each queued job
//! counts for at most one slot, so one hour-long video asks for one worker, not `3600 / L`; and the total is
//! capped by the jobs there are (term `jobs`). When the stream needs more than the fleet has (`d > slots`),
//! `keep` lets the queue grow toward `L'` before adding a worker, so a class with a long target (video)
//! uses its latency budget instead of a whole extra worker.
//!
//! Scale-up follows `raw` at once. Scale-down follows the highest `raw` of the stabilisation window (the HPA
//! rule, [`Term::CoolDown`] while it holds), except that once the queue has been empty at every poll for a
//! quarter of the window, only that quarter's highest `raw` holds: idle workers of a drained queue go sooner.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::arrival::ArrivalMeter;
use crate::config::ClassScaling;

/// Share of the target latency the policy plans waits for: headroom for job granularity, cost noise and the
/// poll's phase, which the fluid model ignores.
pub const PLANNED_LATENCY_SHARE: f64 = 0.5;

/// Time constant over which the per-job cost used for the arrival term is smoothed: one 100 MP panorama
/// (6 s among 0.2 s thumbnails) moves the class's EWMA a lot but the stream's demand little.
pub const COST_SMOOTHING_SECONDS: f64 = 300.0;

/// Which term of the policy decided a step, for `scaler --json` and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Term {
    /// Queued work (plus work that will arrive before new workers start) to clear within the target.
    Backlog,
    /// The arrival rate × cost: slots the steady stream needs.
    Arrival,
    /// Jobs in flight: busy workers are never drained.
    InFlight,
    /// Capped by the number of jobs: a job never uses more than one worker slot.
    Jobs,
    /// The class's `min_workers`.
    Minimum,
    /// The class's `max_workers`.
    Maximum,
    /// A lower count is wanted, but the scale-down window holds the higher one.
    #[serde(rename = "cool-down")]
    CoolDown,
}

impl Term {
    /// The name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Term::Backlog => "backlog",
            Term::Arrival => "arrival",
            Term::InFlight => "in_flight",
            Term::Jobs => "jobs",
            Term::Minimum => "minimum",
            Term::Maximum => "maximum",
            Term::CoolDown => "cool-down",
        }
    }
}

/// One poll's view of a class.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    /// Jobs ready.
    pub ready: u64,
    /// Jobs in flight.
    pub in_flight: u64,
    /// Of those, jobs expected to run longer than the planned latency from now (known-size transcodes).
    pub in_flight_long: u64,
    /// Expected seconds of work of the ready jobs (the sum of per-job estimates where the probe told the
    /// media's duration; `ready × cost_seconds` otherwise).
    pub queued_seconds: f64,
    /// Expected seconds of one job not yet seen (the class's measured EWMA, or its first estimate).
    pub cost_seconds: f64,
    /// A counter of finished jobs of the class (any origin; only its increase is used). `None` when unknown:
    /// arrivals are then the increase of ready + in flight alone.
    pub completed_total: Option<u64>,
}

impl Reading {
    /// Whether anything is ready or in flight.
    pub fn has_work(&self) -> bool {
        self.ready > 0 || self.in_flight > 0
    }
}

/// What the policy saw and chose, for logs and gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The count the reading asks for right now.
    pub raw: u32,
    /// The count to run: `raw` when growing, the window's maximum when shrinking.
    pub desired: u32,
    /// The term that set `desired`.
    pub term: Term,
    /// Why, in words.
    pub reason: &'static str,
    /// Estimated arrivals per second.
    pub arrival_per_second: f64,
    /// Worker slots asked for, before rounding and bounds.
    pub slots: f64,
}

/// The wait the policy plans for: `target_latency × PLANNED_LATENCY_SHARE`.
pub fn planned_latency(cfg: &ClassScaling) -> f64 {
    (cfg.target_latency.as_secs_f64() * PLANNED_LATENCY_SHARE).max(1e-3)
}

/// The count one reading asks for, before stabilisation: `(raw, term, slots)`. `cost_seconds` is the cost of
/// a new job (the smoothed one), `capacity_slots` the slots running or starting.
pub fn raw_desired(
    cfg: &ClassScaling,
    r: &Reading,
    arrival_per_second: f64,
    cost_seconds: f64,
    capacity_slots: f64,
    horizon_seconds: f64,
) -> (u32, Term, f64) {
    let k = f64::from(cfg.concurrency.max(1));
    let latency = planned_latency(cfg);
    let h = horizon_seconds.max(0.0);
    let lambda = arrival_per_second.max(0.0);
    let demand = lambda * cost_seconds.max(0.0);
    let in_flight = r.in_flight as f64;
    let long = (r.in_flight_long.min(r.in_flight)) as f64;
    let short = in_flight - long;
    let queued = r.queued_seconds.max(0.0) + (demand - capacity_slots).max(0.0) * h;
    let clear = queued / latency;
    let keep = (queued + demand * h) / (latency + h);
    let need = clear.max(keep);
    let usable = r.ready as f64 + lambda * h + short;
    let for_queue = need.min(usable);
    let mut slots = long + for_queue.max(short);
    let mut term = if short > 0.0 && short >= for_queue {
        Term::InFlight
    } else if need > usable {
        Term::Jobs
    } else if clear >= keep {
        Term::Backlog
    } else {
        Term::Arrival
    };
    let cap = in_flight + r.ready as f64 + (lambda * h).floor();
    if slots > cap {
        slots = cap;
        term = Term::Jobs;
    }
    // With nothing queued or running, a fraction of a worker is not kept for the stream: the next job
    // activates one at the next poll.
    let n = if r.has_work() {
        (slots / k - 1e-9).ceil().max(0.0)
    } else {
        (slots / k).floor().max(0.0)
    };
    let mut n = if n >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        n as u32
    };
    if r.has_work() && n == 0 {
        n = 1;
    }
    let max = cfg.max_workers.max(cfg.min_workers);
    // Nothing asked for: the class sits at its minimum (zero included).
    if n < cfg.min_workers || (n == cfg.min_workers && slots <= 0.0) {
        (cfg.min_workers, Term::Minimum, slots)
    } else if n > max {
        (max, Term::Maximum, slots)
    } else {
        (n, term, slots)
    }
}

/// Per-class policy state: the arrival meter and the recommendations of the last window.
#[derive(Debug, Clone)]
pub struct ClassPolicy {
    cfg: ClassScaling,
    window: Duration,
    poll: Duration,
    startup: Duration,
    /// Recommendations of the last window: (time since `epoch`, raw, term, queue empty).
    history: VecDeque<(Duration, u32, Term, bool)>,
    meter: ArrivalMeter,
    /// The cost of a new job smoothed over [`COST_SMOOTHING_SECONDS`], and when it was last updated.
    smooth_cost: Option<(f64, f64)>,
    desired: u32,
    epoch: Instant,
}

impl ClassPolicy {
    /// A fresh policy; it starts at the class's minimum. `poll` is how often it is asked, `startup` the first
    /// estimate of a worker's start-up (see [`Self::set_startup`]).
    pub fn new(cfg: ClassScaling, window: Duration, poll: Duration, startup: Duration) -> Self {
        let desired = cfg.min_workers;
        ClassPolicy {
            cfg,
            window,
            poll,
            startup,
            history: VecDeque::new(),
            meter: ArrivalMeter::default(),
            smooth_cost: None,
            desired,
            epoch: Instant::now(),
        }
    }

    /// The class's settings.
    pub fn config(&self) -> &ClassScaling {
        &self.cfg
    }

    /// The current decision.
    pub fn desired(&self) -> u32 {
        self.desired
    }

    /// The start-up time the policy plans with.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// Replaces the start-up estimate (the fleet measures it from its own workers).
    pub fn set_startup(&mut self, startup: Duration) {
        self.startup = startup;
    }

    /// Takes one reading and decides.
    pub fn decide(&mut self, now: Instant, r: &Reading) -> Decision {
        let at = now.saturating_duration_since(self.epoch);
        self.decide_at(at, r)
    }

    /// [`Self::decide`] on a clock of its own (`at` = time since any fixed start): the simulation's clock.
    pub fn decide_at(&mut self, at: Duration, r: &Reading) -> Decision {
        let now = at.as_secs_f64();
        let lambda = self
            .meter
            .observe(now, r.ready + r.in_flight, r.completed_total);
        let cost = match self.smooth_cost {
            Some((c, t)) if now > t => {
                c + (1.0 - (-(now - t) / COST_SMOOTHING_SECONDS).exp()) * (r.cost_seconds - c)
            }
            Some((c, _)) => c,
            None => r.cost_seconds,
        };
        self.smooth_cost = Some((cost, now));
        let horizon = (self.startup + self.poll).as_secs_f64();
        let capacity = f64::from(self.desired) * f64::from(self.cfg.concurrency.max(1));
        let (raw, term, slots) = raw_desired(&self.cfg, r, lambda, cost, capacity, horizon);
        let empty = r.ready == 0;
        self.history.push_back((at, raw, term, empty));
        while let Some((t, ..)) = self.history.front() {
            if at.saturating_sub(*t) > self.window {
                self.history.pop_front();
            } else {
                break;
            }
        }
        let idle_span = (self.window / 4).max(self.poll * 2);
        let recent = |h: &&(Duration, u32, Term, bool)| at.saturating_sub(h.0) <= idle_span;
        let idle = self.history.iter().filter(recent).all(|h| h.3)
            && self
                .history
                .front()
                .is_some_and(|h| at.saturating_sub(h.0) >= idle_span);
        let hold = if idle {
            self.history.iter().filter(recent).map(|h| h.1).max()
        } else {
            self.history.iter().map(|h| h.1).max()
        }
        .unwrap_or(raw);
        let (desired, term, reason) = if raw > self.desired {
            let why = if self.desired == 0 {
                "activate from zero"
            } else {
                "scale up now"
            };
            (raw, term, why)
        } else if hold < self.desired {
            let why = match (hold, idle) {
                (0, _) => "scale to zero after the window",
                (_, true) => "scale down: the queue stayed empty",
                _ => "scale down after the window",
            };
            let t = if hold == raw { term } else { Term::CoolDown };
            (hold, t, why)
        } else if raw < self.desired {
            (
                self.desired,
                Term::CoolDown,
                "hold: within the scale-down window",
            )
        } else {
            (self.desired, term, "steady")
        };
        self.desired = desired;
        Decision {
            raw,
            desired,
            term,
            reason,
            arrival_per_second: lambda,
            slots,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(min: u32, max: u32, latency: u64, conc: u32) -> ClassScaling {
        ClassScaling {
            min_workers: min,
            max_workers: max,
            target_latency: Duration::from_secs(latency),
            concurrency: conc,
            default_cost: Duration::from_millis(200),
            fallback_to: None,
            fallback_after: Duration::from_secs(60),
        }
    }

    fn queued(ready: u64, cost: f64) -> Reading {
        Reading {
            ready,
            queued_seconds: ready as f64 * cost,
            cost_seconds: cost,
            ..Reading::default()
        }
    }

    #[test]
    fn without_arrivals_the_backlog_is_cleared_within_the_planned_latency() {
        // 10 s target → 5 s planned; 1500 jobs at 0.1 s = 150 s of work → 30 slots.
        let r = queued(1500, 0.1);
        assert_eq!(
            raw_desired(&cfg(0, 100, 10, 1), &r, 0.0, 0.1, 0.0, 15.0),
            (30, Term::Backlog, 30.0)
        );
        assert_eq!(
            raw_desired(&cfg(0, 8, 10, 1), &r, 0.0, 0.1, 0.0, 15.0).1,
            Term::Maximum
        );
        let idle = Reading::default();
        assert_eq!(
            raw_desired(&cfg(2, 8, 10, 1), &idle, 0.0, 0.2, 0.0, 15.0),
            (2, Term::Minimum, 0.0)
        );
        assert_eq!(
            raw_desired(&cfg(0, 8, 10, 1), &idle, 0.0, 0.2, 0.0, 15.0).0,
            0
        );
        assert_eq!(
            raw_desired(&cfg(0, 8, 10, 4), &queued(205, 0.2), 0.0, 0.2, 0.0, 15.0).0,
            3,
            "concurrency divides: 41 s of work / 5 s = 8.2 slots = 3 workers of 4"
        );
        assert_eq!(
            raw_desired(&cfg(0, 8, 10, 1), &queued(1, 0.01), 0.0, 0.01, 0.0, 15.0).0,
            1,
            "activation"
        );
    }

    #[test]
    fn arrivals_beyond_capacity_during_startup_count_as_backlog() {
        // 20 jobs/s at 0.25 s = 5 busy slots; 2 slots running; 15 s until a new worker takes jobs: 45 s of
        // work will be late already, to start within 5 s: 9 slots.
        let c = cfg(1, 20, 10, 2);
        let r = Reading {
            in_flight: 2,
            cost_seconds: 0.25,
            ..Reading::default()
        };
        assert_eq!(
            raw_desired(&c, &r, 20.0, 0.25, 2.0, 15.0),
            (5, Term::Backlog, 9.0)
        );
        // Enough capacity already: only the stream counts, and the queue may grow toward 5 s of wait.
        let (n, term, slots) = raw_desired(&c, &r, 20.0, 0.25, 6.0, 15.0);
        assert_eq!((n, term), (2, Term::Arrival), "{slots}");
    }

    #[test]
    fn one_long_job_needs_one_worker() {
        // One hour-long video queued (3600 s of work, 300 s target): one worker, not 24.
        let c = cfg(0, 4, 300, 1);
        let hour = Reading {
            ready: 1,
            queued_seconds: 3600.0,
            cost_seconds: 60.0,
            ..Reading::default()
        };
        assert_eq!(
            raw_desired(&c, &hour, 0.0, 60.0, 0.0, 15.0),
            (1, Term::Jobs, 1.0)
        );
        // Busy workers are not drained while the queue is empty.
        let busy = Reading {
            in_flight: 3,
            cost_seconds: 60.0,
            ..Reading::default()
        };
        assert_eq!(
            raw_desired(&c, &busy, 0.0, 60.0, 3.0, 15.0),
            (3, Term::InFlight, 3.0)
        );
        // A clip queued behind three long transcodes gets a worker of its own: their slots do not free up.
        let behind = Reading {
            ready: 1,
            in_flight: 3,
            in_flight_long: 3,
            queued_seconds: 60.0,
            cost_seconds: 60.0,
            ..Reading::default()
        };
        assert_eq!(raw_desired(&c, &behind, 0.0, 60.0, 3.0, 15.0).0, 4);
        let short = Reading {
            in_flight_long: 0,
            ..behind
        };
        assert_eq!(
            raw_desired(&c, &short, 0.0, 60.0, 3.0, 15.0).0,
            3,
            "behind jobs that end soon it waits"
        );
    }

    #[test]
    fn a_long_target_uses_its_latency_budget_before_adding_a_worker() {
        // Video: a 120 s job every 90 s (1.33 busy slots), one worker busy, one job queued, 300 s target.
        let c = cfg(0, 4, 300, 1);
        let r = Reading {
            ready: 1,
            in_flight: 1,
            queued_seconds: 120.0,
            cost_seconds: 120.0,
            ..Reading::default()
        };
        assert_eq!(raw_desired(&c, &r, 1.0 / 90.0, 120.0, 1.0, 15.0).0, 1);
        // Three queued (360 s): the wait would pass 150 s, so more workers now.
        let r = Reading {
            ready: 3,
            queued_seconds: 360.0,
            ..r
        };
        assert_eq!(raw_desired(&c, &r, 1.0 / 90.0, 120.0, 1.0, 15.0).0, 3);
    }

    fn tick(p: &mut ClassPolicy, at: &mut Duration, r: &Reading) -> Decision {
        *at += Duration::from_secs(5);
        p.decide_at(*at, r)
    }

    #[test]
    fn fast_up_held_down_then_zero() {
        let window = Duration::from_secs(120);
        let mut p = ClassPolicy::new(
            cfg(0, 8, 10, 1),
            window,
            Duration::from_secs(5),
            Duration::from_secs(10),
        );
        let mut at = Duration::ZERO;
        let d = p.decide_at(at, &Reading::default());
        assert_eq!((d.desired, d.reason), (0, "steady"));
        let d = tick(&mut p, &mut at, &queued(1, 0.2));
        assert_eq!((d.desired, d.reason), (1, "activate from zero"));
        let d = tick(&mut p, &mut at, &queued(300, 0.2));
        assert_eq!(d.desired, 8, "{d:?}");
        // Drained but one job always waits (never an empty queue): the whole window holds the count.
        let peak = at;
        let mut last = d;
        for _ in 0..30 {
            last = tick(&mut p, &mut at, &queued(1, 0.2));
            if at - peak <= window {
                assert_eq!(last.desired, 8, "{last:?}");
                if last.raw < 8 {
                    assert_eq!(last.term, Term::CoolDown, "{last:?}");
                }
            }
        }
        assert!(last.desired < 8, "{last:?}");
        // Empty from now on: zero after a quarter window of empty polls at the latest.
        let mut n = 0;
        while p.desired() > 0 {
            tick(&mut p, &mut at, &Reading::default());
            n += 1;
            assert!(n <= 8, "still {} after {n} empty polls", p.desired());
        }
    }

    #[test]
    fn an_empty_queue_shortens_the_hold() {
        let mut p = ClassPolicy::new(
            cfg(1, 8, 10, 1),
            Duration::from_secs(120),
            Duration::from_secs(5),
            Duration::from_secs(10),
        );
        let mut at = Duration::ZERO;
        p.decide_at(at, &Reading::default());
        tick(&mut p, &mut at, &queued(300, 0.2));
        assert_eq!(p.desired(), 8);
        let mut polls = 0;
        while p.desired() > 1 {
            let d = tick(&mut p, &mut at, &Reading::default());
            polls += 1;
            assert!(polls <= 7, "{d:?}");
        }
        assert!(
            polls >= 6,
            "held for a quarter window first ({polls} polls)"
        );
    }
}
