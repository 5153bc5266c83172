//! KEDA's stock queue scaler through the Kubernetes HPA, as deployed with the defaults.
//!
//! - The metric is the queue's message count: RabbitMQ `mode: QueueLength` over the management API counts
//!   ready + unacked; the SQS scaler counts visible + in-flight (`scaleOnInFlight: true`). Both are
//!   "ready + in flight" here.
//! - KEDA checks activation every `pollingInterval` (30 s): 0 → 1 when the metric is above
//!   `activationValue` (0); 1 → 0 after `cooldownPeriod` (300 s) without messages, when `minReplicaCount` is 0.
//! - The HPA recomputes every sync period (15 s) from a fresh metric (KEDA's metrics adapter reads the queue
//!   on each HPA request): `desired = ceil(metric / queueLength)` (an `AverageValue` target), no change
//!   while `|metric / (queueLength × replicas) − 1| ≤ 0.1`, never below 1 (the HPA's own minimum).
//! - Scale-up: no stabilisation, at most `max(2 × replicas, replicas + 4)` per 15 s (the default
//!   `behavior.scaleUp` policies, `selectPolicy: Max`). Scale-down: the highest recommendation of the last
//!   300 s (`stabilizationWindowSeconds`), then at most 100 % per 15 s.

use std::collections::VecDeque;

use super::trace::KedaTimings;

/// The HPA and KEDA state of one ScaledObject.
pub(crate) struct Hpa {
    queue_length: f64,
    timings: KedaTimings,
    min: u32,
    max: u32,
    /// (time, recommendation) within the scale-down stabilisation window.
    recommendations: VecDeque<(f64, u32)>,
    /// Last time the metric was above zero.
    last_active: f64,
}

impl Hpa {
    pub fn new(queue_length: f64, timings: &KedaTimings, min: u32, max: u32) -> Self {
        Hpa {
            queue_length: queue_length.max(1e-9),
            timings: timings.clone(),
            min,
            max: max.max(min),
            recommendations: VecDeque::new(),
            last_active: 0.0,
        }
    }

    /// KEDA's polling: activation from zero and the cool-down to zero. Returns a new replica count.
    pub fn activation(&mut self, now: f64, metric: u64, replicas: u32) -> Option<u32> {
        if metric > 0 {
            self.last_active = now;
            if replicas == 0 {
                return Some(self.min.max(1).min(self.max.max(1)));
            }
        } else if replicas > 0
            && self.min == 0
            && now - self.last_active >= self.timings.cooldown_seconds
        {
            self.recommendations.clear();
            return Some(0);
        }
        None
    }

    /// One HPA sync. Returns a new replica count when it changes.
    pub fn sync(&mut self, now: f64, metric: u64, replicas: u32) -> Option<u32> {
        if metric > 0 {
            self.last_active = now;
        }
        if replicas == 0 {
            // Scaled to zero: the HPA is inactive until KEDA activates the deployment.
            return None;
        }
        let floor = self.min.max(1);
        let current = f64::from(replicas);
        let ratio = metric as f64 / (self.queue_length * current);
        let raw = if (ratio - 1.0).abs() <= self.timings.tolerance {
            replicas
        } else {
            let n = (metric as f64 / self.queue_length).ceil();
            if n >= f64::from(u32::MAX) {
                u32::MAX
            } else {
                n as u32
            }
        };
        let rec = raw.clamp(floor, self.max.max(floor));
        self.recommendations.push_back((now, rec));
        let window = self.timings.scale_down_stabilization_seconds;
        while let Some((t, _)) = self.recommendations.front() {
            if now - *t > window {
                self.recommendations.pop_front();
            } else {
                break;
            }
        }
        let down = self
            .recommendations
            .iter()
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(rec);
        let desired = if rec > replicas {
            rec.min((replicas * 2).max(replicas + 4))
        } else if down < replicas {
            down
        } else {
            replicas
        };
        (desired != replicas).then_some(desired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hpa_doubles_or_adds_four_and_holds_five_minutes() {
        let mut h = Hpa::new(5.0, &KedaTimings::default(), 1, 50);
        // 200 messages, target 5 per replica → 40, but one step goes only to max(2, 1 + 4) = 5.
        assert_eq!(h.sync(0.0, 200, 1), Some(5));
        assert_eq!(h.sync(15.0, 200, 5), Some(10));
        assert_eq!(h.sync(30.0, 200, 10), Some(20));
        // Within 10 % of the target: no change.
        assert_eq!(h.sync(45.0, 210, 40), None);
        // The queue empties: the 300 s window holds the highest recommendation.
        let mut t = 60.0;
        while t <= 330.0 {
            assert_eq!(h.sync(t, 0, 40), None, "at {t}");
            t += 15.0;
        }
        assert_eq!(h.sync(t + 15.0, 0, 40), Some(1));
    }

    #[test]
    fn keda_activates_from_zero_and_cools_down_to_zero() {
        let mut h = Hpa::new(5.0, &KedaTimings::default(), 0, 10);
        assert_eq!(h.activation(0.0, 0, 0), None);
        assert_eq!(h.sync(15.0, 3, 0), None, "the HPA is off at zero");
        assert_eq!(h.activation(30.0, 3, 0), Some(1));
        assert_eq!(h.activation(60.0, 0, 1), None);
        assert_eq!(h.activation(330.0, 0, 1), Some(0));
    }
}
