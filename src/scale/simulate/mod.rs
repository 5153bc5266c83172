//! `mediafleet scaler simulate`: replays arrival traces through three policies with the same min, max,
//! concurrency and worker start-up delay, and reports queue waits per class and total worker-seconds.
//!
//! - `backlog`: ours ([`crate::scale::policy`], the code the live scaler runs), polled every `poll_seconds`,
//!   costs learned from finished jobs ([`crate::scale::cost`]).
//! - `keda`: KEDA's stock QueueLength trigger through the HPA ([`keda`]), with the `queueLength` per class
//!   searched on each trace for the cheapest value whose p95 wait meets the class's target.
//! - `cpu80`: add one worker when the mean CPU of running workers was above 80 % for two consecutive
//!   `cpu_period_seconds`, remove one when it was below 40 % for a period.
//!
//! Runs are deterministic: trace randomness is seeded ([`trace`]).
//!
//! # Layout
//! - [`trace`]: the trace format and the jobs it makes.
//! - [`engine`]: one class under one policy, step by step.
//! - [`keda`]: the HPA and KEDA model.

mod engine;
mod keda;
pub mod trace;

use std::collections::BTreeMap;

use serde::Serialize;

use engine::{Outcome, Rule};
pub use trace::Trace;

/// `scaler simulate --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// SLO (target latency) per class.
    pub slo_seconds: BTreeMap<String, f64>,
    /// One entry per policy: `backlog`, `cpu80`, then `keda` (best-tuned).
    pub policies: Vec<PolicyReport>,
}

/// `scaler simulate --compare --json`.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// One entry per trace.
    pub traces: Vec<TraceReport>,
}

/// One trace of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct TraceReport {
    /// The trace's name.
    pub name: String,
    /// SLO (target latency) per class.
    pub slo_seconds: BTreeMap<String, f64>,
    /// `backlog`, `keda`, `cpu80`.
    pub policies: Vec<PolicyReport>,
    /// Our worker-seconds ÷ each other policy's.
    pub worker_seconds_ratio: BTreeMap<String, f64>,
    /// The least worker-seconds any policy can use on this trace (per class, the larger of its work ÷
    /// concurrency and `min_workers` × the trace's duration), ÷ each other policy's: a ratio ours cannot beat.
    pub lower_bound_ratio: BTreeMap<String, f64>,
    /// Every class of ours within its target, on ≤ 0.8× the worker-seconds of `keda` and of `cpu80`.
    pub goal_met: bool,
}

/// One policy's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// `backlog`, `keda` or `cpu80`.
    pub name: String,
    /// Sum over time of provisioned workers (starting, running and draining), all classes.
    pub worker_seconds: f64,
    /// The tuned parameter (`keda`: `queueLength` per class), empty for the others.
    pub setting: String,
    /// Queue waits per class.
    pub classes: Vec<ClassWaits>,
}

/// Queue waits of one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassWaits {
    /// The class.
    pub class: String,
    /// Median wait.
    pub p50_wait_seconds: f64,
    /// 95th percentile wait.
    pub p95_wait_seconds: f64,
    /// Longest wait.
    pub max_wait_seconds: f64,
    /// This class's worker-seconds.
    pub worker_seconds: f64,
    /// Jobs in the trace.
    pub jobs: usize,
    /// Seconds of work of all its jobs (true costs, work lost to hand-backs not included).
    pub work_seconds: f64,
    /// Jobs a drained worker handed back at its drain timeout (each restarts from the beginning).
    pub handed_back_jobs: u32,
    /// Seconds of work those jobs had done, lost.
    pub lost_work_seconds: f64,
    /// Whether the p95 wait is within the class's target.
    pub within_target: bool,
    /// Our policy only: how many decisions each term made (`backlog`, `arrival`, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub decided_by: BTreeMap<String, u32>,
}

/// The `keda` setting searched for one class.
struct Tuned {
    queue_length: f64,
    outcome: Outcome,
    met: bool,
}

fn waits(trace: &Trace, class: &str, jobs: &[trace::Job], out: &Outcome) -> ClassWaits {
    let slo = trace.classes[class].target_latency_seconds;
    let p95 = percentile(&out.waits, 0.95);
    ClassWaits {
        class: class.to_owned(),
        p50_wait_seconds: round(percentile(&out.waits, 0.50)),
        p95_wait_seconds: round(p95),
        max_wait_seconds: round(percentile(&out.waits, 1.0)),
        worker_seconds: round(out.worker_seconds),
        jobs: jobs.len(),
        work_seconds: round(jobs.iter().map(|j| j.cost).sum()),
        handed_back_jobs: out.handed_back,
        lost_work_seconds: round(out.lost_work),
        within_target: p95 <= slo + 1e-9,
        decided_by: out
            .terms
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
    }
}

fn slo(trace: &Trace) -> BTreeMap<String, f64> {
    trace
        .classes
        .iter()
        .map(|(k, c)| (k.clone(), c.target_latency_seconds))
        .collect()
}

/// Runs one policy over every class of the trace.
fn run_rule(trace: &Trace, rule: Rule) -> PolicyReport {
    let profiles = trace.profiles().len();
    let mut classes = Vec::new();
    let mut total = 0.0;
    for (name, cfg) in &trace.classes {
        let jobs = trace.jobs(name);
        let out = engine::simulate(trace, cfg, &jobs, rule, profiles);
        total += out.worker_seconds;
        classes.push(waits(trace, name, &jobs, &out));
    }
    PolicyReport {
        name: rule.name().to_owned(),
        worker_seconds: round(total),
        setting: String::new(),
        classes,
    }
}

/// KEDA with the cheapest `queueLength` per class that meets the class's p95 target on this trace (or, when
/// none does, the one with the lowest p95).
fn run_keda_tuned(trace: &Trace) -> PolicyReport {
    let profiles = trace.profiles().len();
    let mut classes = Vec::new();
    let mut settings = Vec::new();
    let mut total = 0.0;
    for name in trace.classes.keys() {
        let jobs = trace.jobs(name);
        let t = tune_keda(trace, name, &jobs, profiles);
        total += t.outcome.worker_seconds;
        settings.push(format!(
            "{name}={}{}",
            t.queue_length,
            if t.met {
                ""
            } else {
                " (no value meets the target)"
            }
        ));
        classes.push(waits(trace, name, &jobs, &t.outcome));
    }
    PolicyReport {
        name: "keda".to_owned(),
        worker_seconds: round(total),
        setting: format!("queueLength {}", settings.join(", ")),
        classes,
    }
}

/// Candidate `queueLength` values: dense where small values matter, sparse above.
const CANDIDATES: [u32; 29] = [
    1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 125, 150, 200, 250, 300,
    400, 500, 700, 1000, 2000,
];

fn tune_keda(trace: &Trace, class: &str, jobs: &[trace::Job], profiles: usize) -> Tuned {
    let cfg = &trace.classes[class];
    let slo = cfg.target_latency_seconds;
    let run = |q: u32| {
        let out = engine::simulate(trace, cfg, jobs, Rule::Keda(f64::from(q)), profiles);
        let met = percentile(&out.waits, 0.95) <= slo + 1e-9;
        Tuned {
            queue_length: f64::from(q),
            outcome: out,
            met,
        }
    };
    let tried: Vec<Tuned> = CANDIDATES.iter().map(|q| run(*q)).collect();
    let cheaper = |a: &Tuned, b: &Tuned| a.outcome.worker_seconds < b.outcome.worker_seconds;
    let best_met =
        tried
            .iter()
            .enumerate()
            .filter(|(_, t)| t.met)
            .fold(None::<usize>, |best, (i, t)| match best {
                Some(b) if !cheaper(t, &tried[b]) => Some(b),
                _ => Some(i),
            });
    let Some(i) = best_met else {
        // Nothing meets the target: the setting that comes closest.
        let p95 = |t: &Tuned| percentile(&t.outcome.waits, 0.95);
        return tried
            .into_iter()
            .min_by(|a, b| p95(a).total_cmp(&p95(b)))
            .expect("candidates are not empty");
    };
    // Refine between the best candidate and the next one up: the largest value that still meets the target.
    let (mut lo, mut hi) = (
        CANDIDATES[i],
        CANDIDATES.get(i + 1).copied().unwrap_or(CANDIDATES[i]),
    );
    let mut best = tried.into_iter().nth(i).expect("index from the same list");
    while hi > lo + 1 {
        let mid = lo + (hi - lo) / 2;
        let t = run(mid);
        if t.met {
            lo = mid;
            if cheaper(&t, &best) {
                best = t;
            }
        } else {
            hi = mid;
        }
    }
    best
}

/// Runs our policy, the CPU rule and best-tuned KEDA over one trace (`scaler simulate`).
pub fn run(trace: &Trace) -> Report {
    Report {
        slo_seconds: slo(trace),
        policies: vec![
            run_rule(trace, Rule::Backlog),
            run_rule(trace, Rule::Cpu80),
            run_keda_tuned(trace),
        ],
    }
}

/// Runs `backlog`, best-tuned `keda` and `cpu80` over each trace (`scaler simulate --compare`).
pub fn compare(traces: &[Trace]) -> CompareReport {
    let traces = traces
        .iter()
        .map(|t| {
            let ours = run_rule(t, Rule::Backlog);
            let keda = run_keda_tuned(t);
            let cpu = run_rule(t, Rule::Cpu80);
            let ratio = |p: &PolicyReport| {
                if p.worker_seconds > 0.0 {
                    (ours.worker_seconds / p.worker_seconds * 1000.0).round() / 1000.0
                } else {
                    f64::INFINITY
                }
            };
            let worker_seconds_ratio: BTreeMap<String, f64> = [
                ("keda".to_owned(), ratio(&keda)),
                ("cpu80".to_owned(), ratio(&cpu)),
            ]
            .into();
            let floor: f64 = ours
                .classes
                .iter()
                .map(|c| {
                    let cfg = &t.classes[&c.class];
                    (c.work_seconds / f64::from(cfg.concurrency.max(1)))
                        .max(f64::from(cfg.min_workers) * t.duration_seconds)
                })
                .sum();
            let bound = |p: &PolicyReport| {
                if p.worker_seconds > 0.0 {
                    (floor / p.worker_seconds * 1000.0).round() / 1000.0
                } else {
                    f64::INFINITY
                }
            };
            let lower_bound_ratio: BTreeMap<String, f64> = [
                ("keda".to_owned(), bound(&keda)),
                ("cpu80".to_owned(), bound(&cpu)),
            ]
            .into();
            let goal_met = ours.classes.iter().all(|c| c.within_target)
                && worker_seconds_ratio.values().all(|r| *r <= 0.8);
            TraceReport {
                name: t.name.clone(),
                slo_seconds: slo(t),
                policies: vec![ours, keda, cpu],
                worker_seconds_ratio,
                lower_bound_ratio,
                goal_met,
            }
        })
        .collect();
    CompareReport { traces }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Nearest-rank percentile of `xs` (0 when empty).
pub fn percentile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&xs, 0.5), 50.0);
        assert_eq!(percentile(&xs, 0.95), 95.0);
        assert_eq!(percentile(&xs, 1.0), 100.0);
    }

    #[test]
    fn the_comparison_is_deterministic_and_keda_is_tuned_to_the_target() {
        let traces = Trace::builtins();
        let a = compare(&traces);
        let b = compare(&traces);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        for t in &a.traces {
            let names: Vec<&str> = t.policies.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names, ["backlog", "keda", "cpu80"]);
            let keda = &t.policies[1];
            for c in &keda.classes {
                assert!(
                    c.within_target || keda.setting.contains("no value meets"),
                    "{}: {keda:?}",
                    t.name
                );
            }
            // Ours meets every class's target on every built-in trace.
            for c in &t.policies[0].classes {
                assert!(c.within_target, "{} {}: {c:?}", t.name, c.class);
            }
        }
    }
}
