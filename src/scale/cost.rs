//! Expected cost of a job: per job for classes whose jobs look alike (an EWMA of finished jobs), per second of
//! media where the probe told the duration before the job was enqueued (an EWMA of seconds of work per
//! media-second, learned per profile). The live scaler reads the EWMAs from the DB ([`super::store`]);
//! `scaler simulate` keeps them in a [`CostModel`]. Both estimate with [`estimate`].

/// Folds `sample` into an EWMA; the first sample seeds it.
pub fn ewma(current: Option<f64>, sample: f64, alpha: f64) -> f64 {
    match current {
        Some(c) => c + alpha * (sample - c),
        None => sample,
    }
}

/// Expected seconds of a job: `media_seconds × per_media_second` when the media's duration is known, else the
/// class's `per_job`.
pub fn estimate(per_job: f64, per_media_second: f64, media_seconds: Option<f64>) -> f64 {
    match media_seconds {
        Some(m) if m.is_finite() && m > 0.0 => m * per_media_second,
        _ => per_job,
    }
}

/// Seconds of work per media-second assumed before a profile has been measured (DESIGN: video 1 s of work
/// per second of media).
pub const FIRST_COST_PER_MEDIA_SECOND: f64 = 1.0;

/// Ready jobs of known size of one profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnownQueued {
    /// Jobs.
    pub jobs: u64,
    /// Their media seconds.
    pub media_seconds: f64,
    /// Seconds of work per media-second of their profile.
    pub rate: f64,
}

/// Expected seconds of `ready` jobs: the known ones at their size, the rest at `per_job`. More known jobs
/// than ready ones (a row noted just before its publish, or left by a lost job) scale down proportionally.
pub fn queued_seconds(ready: u64, per_job: f64, known: &[KnownQueued]) -> f64 {
    let jobs: u64 = known.iter().map(|k| k.jobs).sum();
    let seconds: f64 = known.iter().map(|k| k.media_seconds * k.rate).sum();
    if jobs == 0 {
        ready as f64 * per_job
    } else if jobs >= ready {
        seconds * ready as f64 / jobs as f64
    } else {
        seconds + (ready - jobs) as f64 * per_job
    }
}

/// Expected seconds left of a job expected to take `expected` that has run `ran`: an overdue job is assumed
/// half done again (its estimate was wrong, and nothing better is known).
pub fn seconds_left(expected: f64, ran: f64) -> f64 {
    let left = expected - ran;
    if left > 0.0 {
        left
    } else {
        expected / 2.0
    }
}

/// Jobs in flight that will hold their slot longer than `planned` seconds: the known-size ones by their
/// expected time left, the others (`in_flight` minus the known ones) only when the class's per-job cost
/// itself is longer.
pub fn long_in_flight(in_flight: u64, per_job: f64, known_left: &[f64], planned: f64) -> u64 {
    let known = known_left.iter().filter(|l| **l > planned).count() as u64;
    let unknown = in_flight.saturating_sub(known_left.len() as u64);
    let unknown_long = if per_job > planned { unknown } else { 0 };
    (known + unknown_long).min(in_flight)
}

/// The learned costs of one class, in memory (the simulation's stand-in for the DB rows).
#[derive(Debug, Clone)]
pub struct CostModel {
    first_per_job: f64,
    first_per_media_second: f64,
    alpha: f64,
    per_job: Option<f64>,
    /// Per profile index.
    per_media_second: Vec<Option<f64>>,
}

impl CostModel {
    /// First estimates before any job finished, the EWMA weight and the number of profiles.
    pub fn new(per_job: f64, per_media_second: f64, alpha: f64, profiles: usize) -> Self {
        CostModel {
            first_per_job: per_job,
            first_per_media_second: per_media_second,
            alpha,
            per_job: None,
            per_media_second: vec![None; profiles.max(1)],
        }
    }

    /// A job of `profile` finished after `seconds` of work.
    pub fn learn(&mut self, seconds: f64, media_seconds: Option<f64>, profile: usize) {
        self.per_job = Some(ewma(self.per_job, seconds, self.alpha));
        if let Some(m) = media_seconds.filter(|m| *m > 0.0) {
            if let Some(r) = self.per_media_second.get_mut(profile) {
                *r = Some(ewma(*r, seconds / m, self.alpha));
            }
        }
    }

    /// Seconds of one job whose size is unknown.
    pub fn per_job(&self) -> f64 {
        self.per_job.unwrap_or(self.first_per_job)
    }

    /// Seconds of work per media-second of `profile`.
    pub fn per_media_second(&self, profile: usize) -> f64 {
        self.per_media_second
            .get(profile)
            .copied()
            .flatten()
            .unwrap_or(self.first_per_media_second)
    }

    /// Expected seconds of a job.
    pub fn estimate(&self, media_seconds: Option<f64>, profile: usize) -> f64 {
        estimate(
            self.per_job(),
            self.per_media_second(profile),
            media_seconds,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_cost_follows_the_duration_and_is_learned_per_profile() {
        let mut m = CostModel::new(60.0, 1.0, 0.5, 2);
        assert_eq!(
            m.estimate(Some(3600.0), 0),
            3600.0,
            "first estimate: 1 s per media-second"
        );
        assert_eq!(m.estimate(None, 0), 60.0);
        m.learn(30.0, Some(60.0), 0);
        assert_eq!(m.estimate(Some(3600.0), 0), 1800.0);
        assert_eq!(
            m.estimate(Some(3600.0), 1),
            3600.0,
            "other profile unchanged"
        );
        m.learn(60.0, Some(60.0), 0);
        assert_eq!(m.per_media_second(0), 0.75);
        assert_eq!(m.per_job(), 45.0);
    }

    #[test]
    fn long_jobs_in_flight() {
        assert_eq!(seconds_left(3600.0, 600.0), 3000.0);
        assert_eq!(seconds_left(100.0, 150.0), 50.0, "overdue: half again");
        // Two known transcodes (one nearly done), three unknown jobs of a 60 s class; 150 s planned.
        assert_eq!(long_in_flight(5, 60.0, &[3000.0, 20.0], 150.0), 1);
        assert_eq!(long_in_flight(5, 600.0, &[3000.0, 20.0], 150.0), 4);
        assert_eq!(
            long_in_flight(1, 60.0, &[3000.0, 3000.0], 150.0),
            1,
            "never above in flight"
        );
    }

    #[test]
    fn queued_seconds_sum_known_sizes_and_average_the_rest() {
        let hour = KnownQueued {
            jobs: 1,
            media_seconds: 3600.0,
            rate: 0.5,
        };
        assert_eq!(queued_seconds(3, 60.0, &[]), 180.0);
        assert_eq!(queued_seconds(3, 60.0, &[hour]), 1800.0 + 120.0);
        assert_eq!(queued_seconds(0, 60.0, &[hour]), 0.0);
        let two = KnownQueued { jobs: 2, ..hour };
        assert_eq!(queued_seconds(1, 60.0, &[two]), 900.0);
    }
}
