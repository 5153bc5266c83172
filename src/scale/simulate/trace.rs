//! The trace format of `scaler simulate --trace FILE` (documented in docs/scaling.md) and the jobs it makes.
//!
//! A trace is the fleet (per class: bounds, concurrency, target latency, first cost estimates), the timings
//! every policy pays (worker start-up) or uses (our poll, the CPU rule's period, KEDA's and the HPA's
//! intervals), and the work: `arrivals` (segments at a constant or linearly changing rate, evenly spaced or
//! Poisson) and/or `jobs` (one entry per job, as replayed from real logs). Everything random is drawn from
//! a PRNG seeded by `seed`, so a trace always makes the same jobs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::scale::ScaleError;

/// The built-in traces: (name, JSON). The first is the default of `scaler simulate`.
pub const BUILTIN: [(&str, &str); 3] = [
    ("bursty", include_str!("../../../fixtures/scale-trace.json")),
    (
        "diurnal",
        include_str!("../../../fixtures/scale-trace-diurnal.json"),
    ),
    (
        "heavy-tail",
        include_str!("../../../fixtures/scale-trace-heavy-tail.json"),
    ),
];

/// An arrival trace and the fleet it runs on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// Short name for reports (default: the file stem, or the built-in name).
    #[serde(default)]
    pub name: String,
    /// What the trace models, for people.
    #[serde(default)]
    pub description: String,
    /// Length of the arrival period; the run continues until every queue is empty.
    pub duration_seconds: f64,
    /// How often our policy reads the queues.
    pub poll_seconds: f64,
    /// The CPU rule's alarm period.
    pub cpu_period_seconds: f64,
    /// Time from a scale-up decision until the new worker takes jobs (every policy).
    pub startup_seconds: f64,
    /// Our policy's scale-down stabilisation window.
    pub scale_down_window_seconds: f64,
    /// Time a retired busy worker gets to finish before it hands its jobs back to the queue, their work lost
    /// (the worker's drain timeout, and Kubernetes' default termination grace period): 30 s.
    #[serde(default = "thirty")]
    pub drain_seconds: f64,
    /// EWMA weight of the newest finished job.
    pub ewma_alpha: f64,
    /// Seed of every random draw (Poisson gaps, cost jitter).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// `even` (default): arrivals evenly spaced at the segment's rate; `poisson`: exponential gaps.
    #[serde(default)]
    pub arrival_process: ArrivalProcess,
    /// KEDA's and the HPA's timings (their stock defaults when absent).
    #[serde(default)]
    pub keda: KedaTimings,
    /// The fleet per class.
    pub classes: BTreeMap<String, TraceClass>,
    /// Arrival segments.
    #[serde(default)]
    pub arrivals: Vec<Segment>,
    /// Individual jobs (a trace replayed from logs), added to the segments' jobs.
    #[serde(default)]
    pub jobs: Vec<LoggedJob>,
}

fn thirty() -> f64 {
    30.0
}

fn default_seed() -> u64 {
    0x9E37_79B9_7F4A_7C15
}

/// How segment arrivals are spaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalProcess {
    /// Evenly spaced.
    #[default]
    Even,
    /// Exponential gaps (a Poisson process at the segment's rate).
    Poisson,
}

/// KEDA's scaler and the HPA's controller timings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KedaTimings {
    /// KEDA `pollingInterval`: how often KEDA checks activation (0 ↔ 1).
    pub polling_interval_seconds: f64,
    /// HPA `--horizontal-pod-autoscaler-sync-period`: how often replicas are recomputed from the metric.
    pub hpa_sync_seconds: f64,
    /// HPA `behavior.scaleDown.stabilizationWindowSeconds`.
    pub scale_down_stabilization_seconds: f64,
    /// KEDA `cooldownPeriod`: time without messages before 1 → 0.
    pub cooldown_seconds: f64,
    /// HPA tolerance: no change while `|metric / (target × replicas) − 1|` is within it.
    pub tolerance: f64,
}

impl Default for KedaTimings {
    fn default() -> Self {
        KedaTimings {
            polling_interval_seconds: 30.0,
            hpa_sync_seconds: 15.0,
            scale_down_stabilization_seconds: 300.0,
            cooldown_seconds: 300.0,
            tolerance: 0.1,
        }
    }
}

/// One class's fleet settings in a trace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceClass {
    /// Fewest workers (every policy).
    pub min_workers: u32,
    /// Most workers (every policy).
    pub max_workers: u32,
    /// Jobs in flight per worker.
    pub concurrency: u32,
    /// Our policy's target latency; also the SLO reported and the target of the KEDA search.
    pub target_latency_seconds: f64,
    /// First cost estimate of a job before measurements.
    pub first_cost_seconds: f64,
    /// First estimate of seconds of work per second of media, before measurements (default 1).
    #[serde(default = "one")]
    pub first_cost_per_media_second: f64,
}

fn one() -> f64 {
    1.0
}

/// Jobs of one class arriving from `from` to `to`, at `per_second` rising or falling linearly to
/// `per_second_end` (default: constant).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// The class.
    pub class: String,
    /// Start, seconds.
    pub from: f64,
    /// End, seconds.
    pub to: f64,
    /// Arrival rate at `from`.
    pub per_second: f64,
    /// Arrival rate at `to` (default: `per_second`).
    #[serde(default)]
    pub per_second_end: Option<f64>,
    /// Mean cost of one job.
    pub cost_seconds: f64,
    /// Each job's cost is the mean × a uniform factor in `[1 − jitter, 1 + jitter]` (default 0.5).
    #[serde(default = "half")]
    pub jitter: f64,
    /// The media duration the probe reports for these jobs (video); the cost then scales with it.
    #[serde(default)]
    pub media_seconds: Option<f64>,
    /// The profile of these jobs (costs per media-second are learned per profile).
    #[serde(default = "default_profile")]
    pub profile: String,
}

fn half() -> f64 {
    0.5
}

fn default_profile() -> String {
    "default".to_owned()
}

/// One job from a log: when it was enqueued and what it cost.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedJob {
    /// The class.
    pub class: String,
    /// Enqueue time, seconds from the trace's start.
    pub at: f64,
    /// Measured seconds of work.
    pub cost_seconds: f64,
    /// Media duration the probe reported, when known.
    #[serde(default)]
    pub media_seconds: Option<f64>,
    /// Profile.
    #[serde(default = "default_profile")]
    pub profile: String,
}

/// One job of a simulation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Job {
    /// Enqueue time.
    pub arrival: f64,
    /// True seconds of work.
    pub cost: f64,
    /// Media seconds the probe knows before the job is enqueued.
    pub media: Option<f64>,
    /// Index into [`Trace::profiles`].
    pub profile: usize,
}

/// splitmix64: small, seeded, the same everywhere.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Trace {
    /// Reads a trace file.
    pub fn load(path: &Path) -> Result<Trace, ScaleError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScaleError::Config(format!("--trace {}: {e}", path.display())))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Trace::parse(&stem, &text)
            .map_err(|e| ScaleError::Config(format!("--trace {}: {e}", path.display())))
    }

    /// The built-in trace `name`.
    pub fn builtin(name: &str) -> Result<Trace, ScaleError> {
        let (n, text) = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| ScaleError::Config(format!("no built-in trace {name:?}")))?;
        Trace::parse(n, text).map_err(ScaleError::Config)
    }

    /// Every built-in trace.
    pub fn builtins() -> Vec<Trace> {
        BUILTIN
            .iter()
            .map(|(n, t)| Trace::parse(n, t).expect("built-in traces parse"))
            .collect()
    }

    /// Parses and checks a trace; `name` is used when the trace has none.
    pub fn parse(name: &str, text: &str) -> Result<Trace, String> {
        let mut t: Trace = serde_json::from_str(text).map_err(|e| format!("trace: {e}"))?;
        if t.name.is_empty() {
            t.name = name.to_owned();
        }
        let classes = t
            .arrivals
            .iter()
            .map(|s| &s.class)
            .chain(t.jobs.iter().map(|j| &j.class));
        for c in classes {
            if !t.classes.contains_key(c) {
                return Err(format!(
                    "trace: a job names class {c:?} that has no entry in \"classes\""
                ));
            }
        }
        if t.poll_seconds <= 0.0 || t.cpu_period_seconds <= 0.0 || t.keda.hpa_sync_seconds <= 0.0 {
            return Err(
                "trace: poll_seconds, cpu_period_seconds and keda.hpa_sync_seconds must be positive"
                    .into(),
            );
        }
        if t.arrivals
            .iter()
            .any(|s| s.per_second < 0.0 || s.to < s.from)
        {
            return Err("trace: a segment has a negative rate or ends before it starts".into());
        }
        Ok(t)
    }

    /// Profile names, in the order [`Job::profile`] indexes them.
    pub fn profiles(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .arrivals
            .iter()
            .map(|s| s.profile.clone())
            .chain(self.jobs.iter().map(|j| j.profile.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The jobs of `class`, in arrival order.
    pub(crate) fn jobs(&self, class: &str) -> Vec<Job> {
        let profiles = self.profiles();
        let index = |p: &str| profiles.iter().position(|x| x == p).unwrap_or(0);
        let salt = class
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)));
        let mut rng = Rng::new(self.seed ^ salt);
        let mut jobs = Vec::new();
        for s in self.arrivals.iter().filter(|s| s.class == class) {
            let end_rate = s.per_second_end.unwrap_or(s.per_second);
            let rate_at = |t: f64| {
                let f = if s.to > s.from {
                    (t - s.from) / (s.to - s.from)
                } else {
                    0.0
                };
                s.per_second + (end_rate - s.per_second) * f
            };
            let peak = s.per_second.max(end_rate);
            if peak <= 0.0 {
                continue;
            }
            match self.arrival_process {
                // Even: job k arrives when the integral of the rate from `from` reaches k (a quadratic for
                // a linear ramp), so a constant rate gives `from + k / rate`.
                ArrivalProcess::Even => {
                    let d = s.to - s.from;
                    let a = if d > 0.0 {
                        (end_rate - s.per_second) / (2.0 * d)
                    } else {
                        0.0
                    };
                    let b = s.per_second;
                    let total = (b * d + a * d * d).max(0.0);
                    let n = (total + 1e-9).floor() as u64;
                    for k in 0..n {
                        let k = k as f64;
                        let x = if a.abs() < 1e-12 {
                            k / b
                        } else {
                            (-b + (b * b + 4.0 * a * k).max(0.0).sqrt()) / (2.0 * a)
                        };
                        jobs.push(self.job(s, s.from + x, &mut rng, index(&s.profile)));
                    }
                }
                // Poisson: thinning of a process at the peak rate.
                ArrivalProcess::Poisson => {
                    let mut t = s.from;
                    loop {
                        let u = rng.next_f64();
                        t += -(1.0 - u).ln() / peak;
                        if t >= s.to {
                            break;
                        }
                        if rng.next_f64() * peak <= rate_at(t) {
                            jobs.push(self.job(s, t, &mut rng, index(&s.profile)));
                        }
                    }
                }
            }
        }
        for j in self.jobs.iter().filter(|j| j.class == class) {
            jobs.push(Job {
                arrival: j.at,
                cost: j.cost_seconds.max(0.0),
                media: j.media_seconds,
                profile: index(&j.profile),
            });
        }
        jobs.sort_by(|a, b| a.arrival.total_cmp(&b.arrival));
        jobs
    }

    fn job(&self, s: &Segment, at: f64, rng: &mut Rng, profile: usize) -> Job {
        let jitter = s.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter + 2.0 * jitter * rng.next_f64();
        Job {
            arrival: at,
            cost: s.cost_seconds * factor,
            media: s.media_seconds,
            profile,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_trace_parses_and_makes_jobs_deterministically() {
        for t in Trace::builtins() {
            for class in t.classes.keys() {
                let a = t.jobs(class);
                let b = t.jobs(class);
                assert!(!a.is_empty(), "{} {class}", t.name);
                assert_eq!(a.len(), b.len());
                assert!(a
                    .iter()
                    .zip(&b)
                    .all(|(x, y)| x.arrival == y.arrival && x.cost == y.cost));
            }
        }
    }

    #[test]
    fn ramps_and_logged_jobs() {
        let t = Trace::parse(
            "t",
            r#"{"duration_seconds": 100, "poll_seconds": 5, "cpu_period_seconds": 60,
                "startup_seconds": 10, "scale_down_window_seconds": 120, "ewma_alpha": 0.2,
                "classes": {"image": {"min_workers": 0, "max_workers": 4, "concurrency": 1,
                                      "target_latency_seconds": 10, "first_cost_seconds": 0.2}},
                "arrivals": [{"class": "image", "from": 0, "to": 100, "per_second": 0,
                              "per_second_end": 2, "cost_seconds": 1, "jitter": 0}],
                "jobs": [{"class": "image", "at": 50.5, "cost_seconds": 3.0}]}"#,
        )
        .unwrap();
        let jobs = t.jobs("image");
        // ∫ 0→2 over 100 s = 100 arrivals, plus the logged one.
        assert!((95..=105).contains(&jobs.len()), "{}", jobs.len());
        assert!(jobs.iter().any(|j| j.arrival == 50.5 && j.cost == 3.0));
        let first_half = jobs.iter().filter(|j| j.arrival < 50.0).count();
        assert!(first_half < jobs.len() / 3, "a rising ramp: {first_half}");
        assert!(Trace::parse("t", r#"{"duration_seconds": 1}"#).is_err());
    }
}
