//! One class under one policy, in fixed steps (1 s, or a fifth of the poll when that is shorter). Each worker
//! has `concurrency` slots; within a step a slot works through as many jobs as fit, so sub-second jobs are
//! timed exactly. A worker told to leave stops taking jobs and leaves when its slots are empty (drain); past
//! `drain_seconds` it hands its unfinished jobs back to the head of the queue, their work lost, as a worker
//! does at its drain timeout (and a Kubernetes pod at its grace period). A worker still starting leaves at
//! once. Retirement picks starting workers first, then the newest (a ReplicaSet's order); our `fleet` picks
//! idle workers before busy ones (workers report their jobs in flight with their heartbeat).
//! Worker-seconds count starting, running and draining workers. A job's wait ends when the attempt that
//! completes it starts.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::keda::Hpa;
use super::trace::{Job, Trace, TraceClass};
use crate::config::ClassScaling;
use crate::scale::cost::{self, CostModel};
use crate::scale::policy::{ClassPolicy, Reading};

/// The policies compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rule {
    /// Ours: [`crate::scale::policy`].
    Backlog,
    /// KEDA's QueueLength trigger through the HPA, with this target of messages per replica.
    Keda(f64),
    /// Mean CPU > 80 % for two periods: +1; < 40 % for one: −1.
    Cpu80,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Backlog => "backlog",
            Rule::Keda(_) => "keda",
            Rule::Cpu80 => "cpu80",
        }
    }
}

struct Worker {
    ready_at: f64,
    /// (remaining, job, started at) of the job in each slot.
    slots: Vec<Option<(f64, Job, f64)>>,
    /// When it was told to leave.
    leaving: Option<f64>,
    busy: f64,
}

impl Worker {
    fn jobs(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

/// What one class did under one policy.
pub(crate) struct Outcome {
    /// Queue wait of every job.
    pub waits: Vec<f64>,
    /// Provisioned workers integrated over time.
    pub worker_seconds: f64,
    /// Our policy's decisions by the term that decided them.
    pub terms: BTreeMap<&'static str, u32>,
    /// Jobs handed back by a worker drained past its drain timeout.
    pub handed_back: u32,
    /// Seconds of work those jobs had done, lost.
    pub lost_work: f64,
}

/// The class's settings as the live scaler resolves them.
pub(crate) fn class_scaling(cfg: &TraceClass) -> ClassScaling {
    ClassScaling {
        min_workers: cfg.min_workers,
        max_workers: cfg.max_workers,
        target_latency: Duration::from_secs_f64(cfg.target_latency_seconds),
        concurrency: cfg.concurrency.max(1),
        default_cost: Duration::from_secs_f64(cfg.first_cost_seconds),
        fallback_to: None,
        fallback_after: Duration::from_secs(60),
    }
}

/// Runs `jobs` of one class through `rule`.
pub(crate) fn simulate(
    trace: &Trace,
    cfg: &TraceClass,
    jobs: &[Job],
    rule: Rule,
    profiles: usize,
) -> Outcome {
    let conc = cfg.concurrency.max(1) as usize;
    let dt = (trace.poll_seconds / 5.0).clamp(0.01, 1.0);
    let every = |seconds: f64| (seconds / dt).round().max(1.0) as u64;
    let mut policy = ClassPolicy::new(
        class_scaling(cfg),
        Duration::from_secs_f64(trace.scale_down_window_seconds),
        Duration::from_secs_f64(trace.poll_seconds),
        Duration::from_secs_f64(trace.startup_seconds),
    );
    let mut hpa = match rule {
        Rule::Keda(q) => Some(Hpa::new(q, &trace.keda, cfg.min_workers, cfg.max_workers)),
        _ => None,
    };
    let mut costs = CostModel::new(
        cfg.first_cost_seconds,
        cfg.first_cost_per_media_second,
        trace.ewma_alpha,
        profiles,
    );
    let new_worker = |ready_at: f64| Worker {
        ready_at,
        slots: vec![None; conc],
        leaving: None,
        busy: 0.0,
    };
    let planned = crate::scale::policy::planned_latency(&class_scaling(cfg));
    // Every policy starts warm at its minimum.
    let mut workers: Vec<Worker> = (0..cfg.min_workers).map(|_| new_worker(0.0)).collect();
    let (mut next, mut queue) = (0usize, VecDeque::<Job>::new());
    let mut waits = Vec::with_capacity(jobs.len());
    let mut worker_seconds = 0.0;
    let mut completed: u64 = 0;
    let mut terms = BTreeMap::new();
    let (mut handed_back, mut lost_work) = (0u32, 0.0);
    let (mut hot_periods, mut period_busy, mut period_capacity) = (0u32, 0.0, 0.0);
    let (poll_steps, cpu_steps) = (every(trace.poll_seconds), every(trace.cpu_period_seconds));
    let (hpa_steps, keda_steps) = (
        every(trace.keda.hpa_sync_seconds),
        every(trace.keda.polling_interval_seconds),
    );
    let limit = trace.duration_seconds + 6.0 * 3600.0;
    let mut step: u64 = 0;
    loop {
        let t = step as f64 * dt;
        while next < jobs.len() && jobs[next].arrival < t + dt {
            queue.push_back(jobs[next]);
            next += 1;
        }
        let in_flight = busy_slots(&workers);
        if next >= jobs.len() && queue.is_empty() && in_flight == 0 && t >= trace.duration_seconds {
            break;
        }
        if t > limit {
            // Unfinished jobs count with the wait they have had so far.
            waits.extend(queue.iter().map(|j| t - j.arrival));
            for w in &workers {
                waits.extend(w.slots.iter().flatten().map(|(_, j, at)| at - j.arrival));
            }
            break;
        }
        // Work this step.
        for w in workers.iter_mut().filter(|w| w.ready_at <= t) {
            w.busy = 0.0;
            for slot in w.slots.iter_mut() {
                let mut left = dt;
                while left > 1e-12 {
                    match slot {
                        Some((rem, job, started)) => {
                            let used = rem.min(left);
                            *rem -= used;
                            left -= used;
                            w.busy += used;
                            if *rem <= 1e-12 {
                                // Costs are learned when a job finishes, as the runtime does.
                                costs.learn(job.cost, job.media, job.profile);
                                waits.push(*started - job.arrival);
                                completed += 1;
                                *slot = None;
                            }
                        }
                        None if w.leaving.is_none() => match queue.front() {
                            Some(j) if j.arrival <= t + dt - left => {
                                let j = queue.pop_front().expect("front exists");
                                let at = (t + dt - left).max(j.arrival);
                                *slot = Some((j.cost, j, at));
                            }
                            _ => break,
                        },
                        None => break,
                    }
                }
            }
        }
        // Past its drain timeout a leaving worker hands its unfinished jobs back (their work is lost).
        for w in workers.iter_mut() {
            if w.leaving
                .is_some_and(|at| t + dt - at >= trace.drain_seconds - 1e-9)
            {
                for (rem, j, _) in w.slots.iter_mut().filter_map(Option::take).rev() {
                    handed_back += 1;
                    lost_work += j.cost - rem;
                    queue.push_front(j);
                }
            }
        }
        worker_seconds += workers.len() as f64 * dt;
        let running: Vec<&Worker> = workers.iter().filter(|w| w.ready_at <= t).collect();
        period_busy += running.iter().map(|w| w.busy).sum::<f64>();
        period_capacity += running.len() as f64 * conc as f64 * dt;
        workers.retain(|w| !(w.leaving.is_some() && w.jobs() == 0));
        step += 1;
        let now = step as f64 * dt;
        // Decide.
        let provisioned = workers.iter().filter(|w| w.leaving.is_none()).count() as u32;
        let in_flight = busy_slots(&workers) as u64;
        let target = match rule {
            Rule::Backlog if step.is_multiple_of(poll_steps) => {
                // In flight past the planned latency: by the estimate (not the true cost) less the time run.
                let in_flight_long = workers
                    .iter()
                    .flat_map(|w| w.slots.iter().flatten())
                    .filter(|(_, j, started)| {
                        let e = costs.estimate(j.media, j.profile);
                        cost::seconds_left(e, now - started) > planned
                    })
                    .count() as u64;
                let reading = Reading {
                    ready: queue.len() as u64,
                    in_flight,
                    in_flight_long,
                    queued_seconds: queue
                        .iter()
                        .map(|j| costs.estimate(j.media, j.profile))
                        .sum(),
                    cost_seconds: costs.per_job(),
                    completed_total: Some(completed),
                };
                let d = policy.decide_at(Duration::from_secs_f64(now), &reading);
                *terms.entry(d.term.as_str()).or_insert(0) += 1;
                Some(d.desired)
            }
            Rule::Keda(_) => {
                let hpa = hpa.as_mut().expect("set for keda");
                let metric = queue.len() as u64 + in_flight;
                let mut target = None;
                if step.is_multiple_of(keda_steps) {
                    target = hpa.activation(now, metric, provisioned);
                }
                if target.is_none() && step.is_multiple_of(hpa_steps) {
                    target = hpa.sync(now, metric, provisioned);
                }
                target
            }
            Rule::Cpu80 if step.is_multiple_of(cpu_steps) => {
                let cpu = if period_capacity > 0.0 {
                    period_busy / period_capacity
                } else {
                    0.0
                };
                (period_busy, period_capacity) = (0.0, 0.0);
                hot_periods = if cpu > 0.8 { hot_periods + 1 } else { 0 };
                if provisioned == 0 && (!queue.is_empty() || in_flight > 0) {
                    // No CPU to measure at zero: one worker as soon as work waits (activation).
                    Some(1.min(cfg.max_workers))
                } else if hot_periods >= 2 {
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
                now,
                trace.startup_seconds,
                rule == Rule::Backlog,
                &new_worker,
            );
        }
    }
    Outcome {
        waits,
        worker_seconds,
        terms,
        handed_back,
        lost_work,
    }
}

fn busy_slots(workers: &[Worker]) -> usize {
    workers
        .iter()
        .map(|w| w.slots.iter().flatten().count())
        .sum()
}

/// Adds starting workers or retires some: starting ones first (they leave at once), then, when `idle_first`
/// (our fleet), idle before busy, then the newest. A retired running worker drains.
fn resize(
    workers: &mut Vec<Worker>,
    provisioned: u32,
    target: u32,
    now: f64,
    startup: f64,
    idle_first: bool,
    new_worker: &dyn Fn(f64) -> Worker,
) {
    if target > provisioned {
        workers.extend((provisioned..target).map(|_| new_worker(now + startup)));
    } else if target < provisioned {
        let mut order: Vec<usize> = (0..workers.len())
            .rev()
            .filter(|i| workers[*i].leaving.is_none())
            .collect();
        // Stable: among equals the newest stays first.
        order.sort_by_key(|i| {
            let w = &workers[*i];
            (w.ready_at <= now, if idle_first { w.jobs() } else { 0 })
        });
        for i in order.into_iter().take((provisioned - target) as usize) {
            workers[i].leaving = Some(now);
        }
        workers.retain(|w| !(w.leaving.is_some() && w.ready_at > now));
    }
}
