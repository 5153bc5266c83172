//! The signal per class: depth readings plus backlog in expected seconds of work.
//!
//! [`from_depth`] gives `backlog_seconds = (ready + in_flight) × cost`, where `cost` is the class's measured
//! EWMA of seconds per job (or its `default_cost` until a job has been measured); the scaler then replaces
//! the ready part with the sum of known job sizes where producers noted them ([`super::cost::queued_seconds`]).
//! Delayed messages are not counted: they cannot be worked until their retry delay ends, and then they are
//! ready and count.

use serde::Serialize;

use super::store::Cost;
use crate::config::ClassScaling;
use crate::queue::{Depth, JobClass, QueueAdmin};

/// One class's reading, in the shape of `scaler --once --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassSignal {
    /// The class.
    pub class: String,
    /// Ready messages.
    pub ready: u64,
    /// In-flight messages; `null` when the backend cannot tell (RabbitMQ without a management URL).
    pub in_flight: Option<u64>,
    /// Waiting for a retry.
    pub delayed: u64,
    /// Dead letters.
    pub dlq: u64,
    /// Age of the oldest ready message; `null` when the backend cannot tell.
    pub oldest_age_seconds: Option<f64>,
    /// Expected seconds of work queued and in flight.
    pub backlog_seconds: f64,
    /// What the policy wants.
    pub desired_workers: u32,
    /// Workers running.
    pub current_workers: u32,
    /// The policy term that set `desired_workers` (`backlog`, `arrival`, `in_flight`, `jobs`, `minimum`,
    /// `maximum`, `cool-down`).
    pub decided_by: &'static str,
    /// The arrival rate the policy estimated, jobs per second.
    pub arrival_per_second: f64,
    /// Seconds per job used for the backlog (not part of the JSON contract).
    #[serde(skip)]
    pub cost_seconds: f64,
}

impl ClassSignal {
    /// Whether anything is ready or in flight (activation from zero).
    pub fn has_work(&self) -> bool {
        self.ready > 0 || self.in_flight.unwrap_or(0) > 0
    }
}

/// Seconds per job: the measured EWMA, else the class's first estimate.
pub fn cost_seconds(cfg: &ClassScaling, measured: Option<&Cost>) -> f64 {
    match measured {
        Some(c) if c.samples > 0 && c.seconds.is_finite() && c.seconds > 0.0 => c.seconds,
        _ => cfg.default_cost.as_secs_f64(),
    }
}

/// Builds the signal from a depth reading; desired and current are filled in by the caller.
pub fn from_depth(class: &str, depth: &Depth, cost: f64) -> ClassSignal {
    let jobs = depth.ready + depth.in_flight.unwrap_or(0);
    ClassSignal {
        class: class.to_owned(),
        ready: depth.ready,
        in_flight: depth.in_flight,
        delayed: depth.delayed,
        dlq: depth.dlq,
        oldest_age_seconds: depth.oldest_age_seconds,
        backlog_seconds: jobs as f64 * cost,
        desired_workers: 0,
        current_workers: 0,
        decided_by: "minimum",
        arrival_per_second: 0.0,
        cost_seconds: cost,
    }
}

/// Reads one class.
pub async fn read(
    admin: &dyn QueueAdmin,
    class: &str,
    cfg: &ClassScaling,
    measured: Option<&Cost>,
) -> Result<ClassSignal, crate::queue::QueueError> {
    let depth = admin.depth(&JobClass::new(class)?).await?;
    Ok(from_depth(class, &depth, cost_seconds(cfg, measured)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backlog_is_jobs_times_cost() {
        let cfg = ClassScaling {
            min_workers: 0,
            max_workers: 8,
            target_latency: Duration::from_secs(10),
            concurrency: 1,
            default_cost: Duration::from_millis(200),
            fallback_to: None,
            fallback_after: Duration::from_secs(60),
        };
        let d = Depth {
            ready: 90,
            in_flight: Some(10),
            delayed: 7,
            dlq: 1,
            oldest_age_seconds: Some(3.0),
        };
        let s = from_depth("image", &d, cost_seconds(&cfg, None));
        assert!((s.backlog_seconds - 20.0).abs() < 1e-9, "{s:?}");
        let learned = Cost {
            seconds: 0.5,
            samples: 3,
        };
        let s = from_depth("image", &d, cost_seconds(&cfg, Some(&learned)));
        assert!((s.backlog_seconds - 50.0).abs() < 1e-9);
        let v = serde_json::to_value(&s).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys.len(), 11, "{keys:?}");
        assert!(keys.contains(&"decided_by") && keys.contains(&"desired_workers"));
    }
}
