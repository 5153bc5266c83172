//! One class under one policy, in fixed 1 s steps. Each worker has `concurrency` slots; within a step a slot
//! works through as many jobs as fit, so sub-second jobs are timed exactly. A worker told to leave stops
//! taking jobs and leaves when its slots are empty (drain); a worker still starting leaves at once.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Trace, TraceClass};
use crate::config::ClassScaling;
use crate::scale::policy::ClassPolicy;

/// One job of the trace.
#[derive(Debug, Clone, Copy)]
pub(super) struct Job {
    pub arrival: f64,
    pub cost: f64,
}

/// The two policies compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rule {
    /// Ours.
    Backlog,
    /// Mean CPU > 80 % for two periods: +1; < 40 % for one: −1.
    Cpu80,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Backlog => "backlog",
            Rule::Cpu80 => "cpu80",
        }
    }
}

struct Worker {
    ready_at: f64,
    /// (remaining, total) seconds of the job in each slot.
    slots: Vec<Option<(f64, f64)>>,
    leaving: bool,
    busy: f64,
}

pub(super) struct Outcome {
    pub waits: Vec<f64>,
    pub worker_seconds: f64,
}

const DT: f64 = 1.0;

pub(super) fn simulate(trace: &Trace, cfg: &TraceClass, jobs: Vec<Job>, rule: Rule) -> Outcome {
    let conc = cfg.concurrency.max(1) as usize;
    let scaling = ClassScaling {
        min_workers: cfg.min_workers,
        max_workers: cfg.max_workers,
        target_latency: Duration::from_secs_f64(cfg.target_latency_seconds),
        concurrency: cfg.concurrency.max(1),
        default_cost: Duration::from_secs_f64(cfg.first_cost_seconds),
        fallback_to: None,
        fallback_after: Duration::from_secs(60),
    };
    let mut policy = ClassPolicy::new(
        scaling,
        Duration::from_secs_f64(trace.scale_down_window_seconds),
    );
    let new_worker = |ready_at: f64| Worker {
        ready_at,
        slots: vec![None; conc],
        leaving: false,
        busy: 0.0,
    };
    // Both start warm at their minimum.
    let mut workers: Vec<Worker> = (0..cfg.min_workers).map(|_| new_worker(0.0)).collect();
    let (mut next, mut queue) = (0usize, VecDeque::<Job>::new());
    let mut waits = Vec::with_capacity(jobs.len());
    let (mut worker_seconds, mut ewma) = (0.0, cfg.first_cost_seconds);
    let (mut hot_periods, mut period_busy, mut period_capacity) = (0u32, 0.0, 0.0);
    let poll_steps = (trace.poll_seconds / DT).round().max(1.0) as u64;
    let cpu_steps = (trace.cpu_period_seconds / DT).round().max(1.0) as u64;
    let limit = trace.duration_seconds + 6.0 * 3600.0;
    let mut step: u64 = 0;
    loop {
        let t = step as f64 * DT;
        while next < jobs.len() && jobs[next].arrival < t + DT {
            queue.push_back(jobs[next]);
            next += 1;
        }
        let in_flight: usize = workers
            .iter()
            .map(|w| w.slots.iter().flatten().count())
            .sum();
        if next >= jobs.len() && queue.is_empty() && in_flight == 0 && t >= trace.duration_seconds {
            break;
        }
        if t > limit {
            // Unfinished jobs count with the wait they have had so far.
            waits.extend(queue.iter().map(|j| t - j.arrival));
            break;
        }
        // Work this step.
        for w in workers.iter_mut().filter(|w| w.ready_at <= t) {
            w.busy = 0.0;
            for slot in w.slots.iter_mut() {
                let mut left = DT;
                while left > 1e-12 {
                    match slot {
                        Some((rem, cost)) => {
                            let used = rem.min(left);
                            *rem -= used;
                            left -= used;
                            w.busy += used;
                            if *rem <= 1e-12 {
                                // The cost is learned when a job finishes, as the runtime does.
                                ewma += trace.ewma_alpha * (*cost - ewma);
                                *slot = None;
                            }
                        }
                        None if !w.leaving => match queue.front() {
                            Some(j) if j.arrival <= t + DT - left => {
                                let j = queue.pop_front().expect("front exists");
                                waits.push((t + DT - left - j.arrival).max(0.0));
                                *slot = Some((j.cost, j.cost));
                            }
                            _ => break,
                        },
                        None => break,
                    }
                }
            }
        }
        worker_seconds += workers.len() as f64 * DT;
        let running: Vec<&Worker> = workers.iter().filter(|w| w.ready_at <= t).collect();
        period_busy += running.iter().map(|w| w.busy).sum::<f64>();
        period_capacity += running.len() as f64 * conc as f64 * DT;
        workers.retain(|w| !(w.leaving && w.slots.iter().all(Option::is_none)));
        step += 1;
        // Decide.
        let provisioned = workers.iter().filter(|w| !w.leaving).count() as u32;
        let target = match rule {
            Rule::Backlog if step.is_multiple_of(poll_steps) => {
                let in_flight: usize = workers
                    .iter()
                    .map(|w| w.slots.iter().flatten().count())
                    .sum();
                let backlog = (queue.len() + in_flight) as f64 * ewma;
                let has_work = !queue.is_empty() || in_flight > 0;
                Some(
                    policy
                        .decide_at(Duration::from_secs_f64(t + DT), backlog, has_work)
                        .desired,
                )
            }
            Rule::Cpu80 if step.is_multiple_of(cpu_steps) => {
                let cpu = if period_capacity > 0.0 {
                    period_busy / period_capacity
                } else {
                    0.0
                };
                (period_busy, period_capacity) = (0.0, 0.0);
                hot_periods = if cpu > 0.8 { hot_periods + 1 } else { 0 };
                if hot_periods >= 2 {
                    hot_periods = 0;
                    Some((provisioned + 1).min(cfg.max_workers))
                } else if cpu < 0.4 {
                    Some(provisioned.saturating_sub(1).max(cfg.min_workers))
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(target) = target {
            resize(
                &mut workers,
                provisioned,
                target,
                t + DT,
                trace.startup_seconds,
                &new_worker,
            );
        }
    }
    Outcome {
        waits,
        worker_seconds,
    }
}

/// Adds starting workers or retires the newest (a starting one leaves at once, a running one drains).
fn resize(
    workers: &mut Vec<Worker>,
    provisioned: u32,
    target: u32,
    now: f64,
    startup: f64,
    new_worker: &dyn Fn(f64) -> Worker,
) {
    if target > provisioned {
        workers.extend((provisioned..target).map(|_| new_worker(now + startup)));
    } else if target < provisioned {
        let mut surplus = provisioned - target;
        for w in workers.iter_mut().rev().filter(|w| !w.leaving) {
            if surplus == 0 {
                break;
            }
            w.leaving = true;
            surplus -= 1;
        }
        workers.retain(|w| !(w.leaving && w.ready_at > now));
    }
}
