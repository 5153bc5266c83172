//! The scaling policy of one class.
//!
//! `raw = clamp(ceil(backlog_seconds / (target_latency × concurrency)), min, max)`, at least 1 when any job is
//! ready or in flight (activation from zero). Scale-up follows `raw` at once; scale-down follows the highest
//! `raw` seen during the stabilisation window (the HPA rule), so a brief lull does not kill warm workers and
//! a class reaches zero only after a whole window without work.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::ClassScaling;

/// What the policy saw and chose, for logs and gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The count the backlog asks for right now.
    pub raw: u32,
    /// The count to run: `raw` when growing, the window's maximum when shrinking.
    pub desired: u32,
    /// Why, in words.
    pub reason: &'static str,
}

/// The count the backlog asks for, before stabilisation.
pub fn raw_desired(cfg: &ClassScaling, backlog_seconds: f64, has_work: bool) -> u32 {
    let per_worker = cfg.target_latency.as_secs_f64() * f64::from(cfg.concurrency.max(1));
    let n = if per_worker > 0.0 {
        (backlog_seconds.max(0.0) / per_worker).ceil()
    } else {
        f64::from(cfg.max_workers)
    };
    let mut n = if n >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        n as u32
    };
    if has_work {
        n = n.max(1);
    }
    n.clamp(cfg.min_workers, cfg.max_workers.max(cfg.min_workers))
}

/// Per-class policy state: the recommendations of the last window.
#[derive(Debug, Clone)]
pub struct ClassPolicy {
    cfg: ClassScaling,
    window: Duration,
    /// Recommendations of the last window, by time since `epoch`.
    history: VecDeque<(Duration, u32)>,
    desired: u32,
    epoch: Instant,
}

impl ClassPolicy {
    /// A fresh policy; it starts at the class's minimum.
    pub fn new(cfg: ClassScaling, window: Duration) -> Self {
        let desired = cfg.min_workers;
        ClassPolicy {
            cfg,
            window,
            history: VecDeque::new(),
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

    /// Takes one reading and decides.
    pub fn decide(&mut self, now: Instant, backlog_seconds: f64, has_work: bool) -> Decision {
        let at = now.saturating_duration_since(self.epoch);
        self.decide_at(at, backlog_seconds, has_work)
    }

    /// [`Self::decide`] on a clock of its own (`at` = time since any fixed start): the simulation's clock.
    pub fn decide_at(&mut self, at: Duration, backlog_seconds: f64, has_work: bool) -> Decision {
        let raw = raw_desired(&self.cfg, backlog_seconds, has_work);
        self.history.push_back((at, raw));
        while let Some((t, _)) = self.history.front() {
            if at.saturating_sub(*t) > self.window {
                self.history.pop_front();
            } else {
                break;
            }
        }
        let window_max = self.history.iter().map(|(_, n)| *n).max().unwrap_or(raw);
        let (desired, reason) = if raw > self.desired {
            (
                raw,
                if self.desired == 0 {
                    "activate from zero"
                } else {
                    "scale up now"
                },
            )
        } else if window_max < self.desired {
            (
                window_max,
                if window_max == 0 {
                    "scale to zero after the window"
                } else {
                    "scale down after the window"
                },
            )
        } else if raw < self.desired {
            (self.desired, "hold: within the scale-down window")
        } else {
            (self.desired, "steady")
        };
        self.desired = desired;
        Decision {
            raw,
            desired,
            reason,
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

    #[test]
    fn the_backlog_rule_matches_the_aws_example() {
        // 10 s latency, 0.1 s per job: 100 jobs per worker; 1500 jobs = 150 s of work → 15 workers.
        assert_eq!(raw_desired(&cfg(0, 100, 10, 1), 150.0, true), 15);
        assert_eq!(
            raw_desired(&cfg(0, 8, 10, 1), 150.0, true),
            8,
            "clamped to max"
        );
        assert_eq!(
            raw_desired(&cfg(2, 8, 10, 1), 0.0, false),
            2,
            "clamped to min"
        );
        assert_eq!(
            raw_desired(&cfg(0, 8, 10, 4), 41.0, true),
            2,
            "concurrency divides"
        );
        assert_eq!(raw_desired(&cfg(0, 8, 10, 1), 0.01, true), 1, "activation");
        assert_eq!(raw_desired(&cfg(0, 8, 10, 1), 0.0, false), 0, "idle: zero");
    }

    #[tokio::test(start_paused = true)]
    async fn fast_up_stabilised_down_then_zero() {
        let mut p = ClassPolicy::new(cfg(0, 8, 10, 1), Duration::from_secs(120));
        let tick = Duration::from_secs(5);
        let d = p.decide(Instant::now(), 0.0, false);
        assert_eq!((d.desired, d.reason), (0, "steady"));
        // The first message activates from zero at the very next poll.
        tokio::time::advance(tick).await;
        let d = p.decide(Instant::now(), 0.2, true);
        assert_eq!((d.desired, d.reason), (1, "activate from zero"));
        // A burst scales up in one step.
        tokio::time::advance(tick).await;
        assert_eq!(p.decide(Instant::now(), 60.0, true).desired, 6);
        // The backlog drains: the count holds for the whole window.
        let drained_at = Instant::now();
        while drained_at.elapsed() < Duration::from_secs(120) {
            tokio::time::advance(tick).await;
            let d = p.decide(Instant::now(), 0.0, false);
            if drained_at.elapsed() <= Duration::from_secs(115) {
                assert_eq!(d.desired, 6, "at {:?}: {d:?}", drained_at.elapsed());
            }
        }
        tokio::time::advance(tick).await;
        let d = p.decide(Instant::now(), 0.0, false);
        assert_eq!((d.desired, d.reason), (0, "scale to zero after the window"));
    }

    #[tokio::test(start_paused = true)]
    async fn scale_down_goes_to_the_window_maximum_not_straight_to_min() {
        let mut p = ClassPolicy::new(cfg(1, 8, 10, 1), Duration::from_secs(30));
        p.decide(Instant::now(), 80.0, true);
        assert_eq!(p.desired(), 8);
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(5)).await;
            p.decide(Instant::now(), 25.0, true);
        }
        assert_eq!(p.desired(), 3);
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(5)).await;
            p.decide(Instant::now(), 0.0, false);
        }
        assert_eq!(p.desired(), 1, "never below min");
    }
}
