//! The arrival rate of one class, estimated from successive depth readings; the policy's `λ` (see
//! [`super::policy`]).

use std::collections::VecDeque;

/// Estimates the arrival rate from successive readings: arrivals = Δ(ready + in flight) + Δcompleted.
///
/// The rate is the count of the most recent polls that hold at least [`ArrivalMeter::SAMPLE`] arrivals (or
/// all of the last [`ArrivalMeter::SPAN`]), divided by the time they cover. A busy class is measured over
/// the last poll or two, so a burst is seen at once and its end too; a sparse class (one video per minute
/// or two) is measured over minutes instead of jumping to "one per poll" whenever a job arrives. A quiet
/// stretch longer than three expected gaps ends a burst's estimate at once.
#[derive(Debug, Clone, Default)]
pub struct ArrivalMeter {
    last: Option<(f64, u64, Option<u64>)>,
    /// (poll length in seconds, arrivals in it), newest last.
    polls: VecDeque<(f64, f64)>,
    rate: f64,
}

impl ArrivalMeter {
    /// Arrivals that make an estimate trustworthy enough to stop looking further back.
    pub const SAMPLE: f64 = 20.0;
    /// The longest history looked at, in seconds.
    pub const SPAN: f64 = 600.0;

    /// Folds in a reading at `at` seconds; returns the estimated arrivals per second.
    pub fn observe(&mut self, at: f64, present: u64, completed: Option<u64>) -> f64 {
        if let Some((t0, p0, c0)) = self.last {
            let dt = at - t0;
            if dt <= 0.0 {
                return self.rate;
            }
            let done = match (c0, completed) {
                (Some(a), Some(b)) => b.saturating_sub(a),
                _ => 0,
            };
            let arrived = (present as f64 - p0 as f64 + done as f64).max(0.0);
            self.polls.push_back((dt, arrived));
            let (mut span, mut count) = (0.0, 0.0);
            for (dt, n) in self.polls.iter().rev() {
                span += dt;
                count += n;
                if count >= Self::SAMPLE || span >= Self::SPAN {
                    break;
                }
            }
            let mut kept = 0.0;
            let mut keep = 0;
            for (dt, _) in self.polls.iter().rev() {
                kept += dt;
                keep += 1;
                if kept >= Self::SPAN {
                    break;
                }
            }
            while self.polls.len() > keep {
                self.polls.pop_front();
            }
            let mut rate = if span > 0.0 { count / span } else { 0.0 };
            // A quiet stretch longer than three expected gaps (seen by chance ~5 % of the time) means the
            // stream has slowed: no more than one arrival per quiet stretch is assumed.
            let quiet: f64 = self
                .polls
                .iter()
                .rev()
                .take_while(|(_, n)| *n == 0.0)
                .map(|(dt, _)| dt)
                .sum();
            if quiet > 0.0 && quiet * rate > 3.0 {
                rate = 1.0 / quiet;
            }
            self.rate = rate;
        }
        self.last = Some((at, present, completed));
        self.rate
    }

    /// The current estimate.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_measures_busy_classes_over_one_poll_and_sparse_ones_over_minutes() {
        let mut m = ArrivalMeter::default();
        assert_eq!(m.observe(0.0, 0, Some(0)), 0.0);
        // 100 arrived in 5 s, 50 of them already finished: 20 / s, from this poll alone.
        let r = m.observe(5.0, 50, Some(50));
        assert!((r - 20.0).abs() < 1e-9, "{r}");
        // The burst ends: 10 in the next 5 s (2 / s) are too few alone, so the last two polls count.
        let r = m.observe(10.0, 10, Some(100));
        assert!((r - 11.0).abs() < 1e-9, "{r}");
        let r = m.observe(15.0, 10, Some(110));
        assert!((r - 2.0).abs() < 1e-9, "{r}");
        // One arrival per 90 s is measured over up to ten minutes, not as one per poll.
        let mut v = ArrivalMeter::default();
        let mut rate = 0.0;
        for i in 0..=240u64 {
            let t = i as f64 * 5.0;
            let arrived = (t / 90.0).floor() as u64;
            rate = v.observe(t, 0, Some(arrived));
        }
        assert!((rate - 1.0 / 90.0).abs() < 0.003, "{rate}");
    }
}
