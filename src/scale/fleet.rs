//! `mediafleet fleet`: a local supervisor. Every poll it asks the [`Scaler`] how many workers each class
//! wants, spawns `mediafleet worker --classes X` children to reach that count, drains surplus children with
//! SIGTERM (the worker finishes or hands back its jobs within its drain timeout, then exits 0), and restarts
//! crashed children with exponential backoff. Every action is logged with the inputs that caused it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::metrics::{self, METRICS};
use super::scaler::Scaler;
use super::signal::ClassSignal;
use super::{observe, route, store, ScaleError};
use crate::db::Records;

/// How the fleet runs its children.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The `mediafleet` executable.
    pub exe: PathBuf,
    /// Global flags passed through to every child (`--queue …`, `--config …`).
    pub child_args: Vec<String>,
    /// Jobs in flight per child, per class.
    pub concurrency: BTreeMap<String, u32>,
    /// Time a child gets after SIGTERM before it hands jobs back; the fleet waits this plus a margin.
    pub drain_timeout: Duration,
    /// Time between polls.
    pub poll_interval: Duration,
    /// A child that lives this long resets its class's crash count.
    pub stable_after: Duration,
    /// First and longest restart delay after a crash.
    pub restart_backoff: (Duration, Duration),
    /// Where children serve their own `/metrics`: each gets the lowest port of this range that no other
    /// child holds, on this address (`fleet --worker-metrics-ports`). `None`: children serve none.
    pub worker_metrics: Option<WorkerMetricsPorts>,
}

/// The ports fleet-spawned workers serve `/metrics` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerMetricsPorts {
    /// The address they listen on (the fleet's own metrics address, else 127.0.0.1).
    pub ip: std::net::IpAddr,
    /// The first port of the range.
    pub first: u16,
    /// The last port of the range (included).
    pub last: u16,
}

impl WorkerMetricsPorts {
    /// Parses `FIRST-LAST` (or one port) with the address children listen on.
    pub fn parse(range: &str, ip: std::net::IpAddr) -> Result<Self, String> {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{range:?}: expected FIRST-LAST, e.g. 9200-9263"))
        };
        let (first, last) = (port(a)?, port(b)?);
        if last < first {
            return Err(format!("{range:?}: the last port is below the first"));
        }
        Ok(WorkerMetricsPorts { ip, first, last })
    }

    /// The lowest port of the range not in `used`.
    fn free(&self, used: &std::collections::BTreeSet<u16>) -> Option<u16> {
        (self.first..=self.last).find(|p| !used.contains(p))
    }
}

struct Worker {
    proc: Child,
    pid: u32,
    started: Instant,
    /// Spawn time, unix ms (compared with heartbeat times).
    spawned_ms: i64,
    /// Whether its first heartbeat was seen (its start-up has been measured).
    seen: bool,
    /// When SIGTERM was sent.
    draining: Option<Instant>,
    /// The port it serves `/metrics` on, when the fleet gave it one.
    metrics_port: Option<u16>,
}

#[derive(Default)]
struct Pool {
    workers: Vec<Worker>,
    crashes: u32,
    not_before: Option<Instant>,
    /// EWMA of measured start-ups, seconds.
    startup: Option<f64>,
}

impl Pool {
    fn running(&self) -> u32 {
        self.workers.iter().filter(|w| w.draining.is_none()).count() as u32
    }
}

/// Runs the fleet until `shutdown`, then drains every child.
pub async fn run(
    opts: FleetOptions,
    mut scaler: Scaler,
    records: Records,
    shutdown: CancellationToken,
) -> Result<(), ScaleError> {
    let gpu_here = if scaler.classes().iter().any(|c| c == route::GPU_CLASS) {
        route::nvenc_available().await
    } else {
        false
    };
    let mut pools: BTreeMap<String, Pool> = scaler
        .classes()
        .into_iter()
        .map(|c| (c, Pool::default()))
        .collect();
    info!(classes = ?pools.keys().collect::<Vec<_>>(), poll = ?opts.poll_interval, "fleet starting");
    let mut last_tick = Instant::now();
    loop {
        let elapsed = last_tick.elapsed().as_secs_f64();
        last_tick = Instant::now();
        for (class, pool) in pools.iter_mut() {
            // Worker-seconds as the simulation counts them: every child alive, draining ones included.
            METRICS
                .fleet_worker_seconds
                .with_label_values(&[class.as_str()])
                .inc_by(elapsed * pool.workers.len() as f64);
            reap(&opts, class, pool);
        }
        let busy = observe_children(&records, &mut pools, &mut scaler).await;
        let current: BTreeMap<String, u32> = pools
            .iter()
            .map(|(c, p)| (c.clone(), p.running()))
            .collect();
        match scaler.poll(&current).await {
            Ok(signals) => {
                let live = store::live_workers(&records, observe::PRESENCE_FRESH)
                    .await
                    .unwrap_or_default();
                scaler.reroute(&signals, &live).await;
                // Metrics ports held by children still alive (draining ones included), over every class.
                let mut ports: std::collections::BTreeSet<u16> = pools
                    .values()
                    .flat_map(|p| p.workers.iter().filter_map(|w| w.metrics_port))
                    .collect();
                for s in &signals {
                    if let Some(pool) = pools.get_mut(&s.class) {
                        let gpu_blocked = s.class == route::GPU_CLASS && !gpu_here;
                        reconcile(&opts, s, pool, gpu_blocked, &busy, &mut ports);
                        METRICS.set(
                            metrics::CURRENT_WORKERS,
                            &s.class,
                            f64::from(pool.running()),
                        );
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, code = e.code(), "scaler poll failed; keeping the current workers")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(opts.poll_interval) => {}
        }
    }
    info!("fleet stopping: draining every worker");
    for (class, pool) in pools.iter_mut() {
        for w in pool.workers.iter_mut().filter(|w| w.draining.is_none()) {
            terminate(class, w, "fleet shutdown");
        }
    }
    let deadline = Instant::now() + opts.drain_timeout + Duration::from_secs(10);
    for (class, pool) in pools.iter_mut() {
        for w in pool.workers.iter_mut() {
            match tokio::time::timeout_at(deadline, w.proc.wait()).await {
                Ok(status) => info!(class, pid = w.pid, ?status, "worker drained"),
                Err(_) => {
                    warn!(
                        class,
                        pid = w.pid,
                        "worker did not drain in time: killing it"
                    );
                    let _ = w.proc.kill().await;
                }
            }
        }
    }
    info!("fleet stopped");
    Ok(())
}

/// Reads the children's heartbeats: times each new child from spawn to its first heartbeat (the class's
/// EWMA goes to the scaler), and returns each child's jobs in flight by pid, so drains pick idle ones first.
async fn observe_children(
    records: &Records,
    pools: &mut BTreeMap<String, Pool>,
    scaler: &mut Scaler,
) -> BTreeMap<u32, i64> {
    let fresh = crate::db::now_ms() - observe::PRESENCE_FRESH.as_millis() as i64;
    let since = pools
        .values()
        .flat_map(|p| p.workers.iter())
        .filter(|w| !w.seen)
        .map(|w| w.spawned_ms)
        .min()
        .map_or(fresh, |s| s.min(fresh));
    let seen = match store::seen_workers(records, since).await {
        Ok(rows) => rows,
        Err(e) => {
            warn!(error = %e, "cannot read worker heartbeats (start-up times, jobs in flight)");
            return BTreeMap::new();
        }
    };
    let pid_of = |id: &str| id.rsplit(':').next().and_then(|p| p.parse::<u32>().ok());
    let mut busy = BTreeMap::new();
    for s in &seen {
        if let Some(pid) = pid_of(&s.worker_id) {
            busy.insert(pid, s.in_flight);
        }
    }
    for (class, pool) in pools.iter_mut() {
        let mut changed = false;
        for w in pool.workers.iter_mut().filter(|w| !w.seen) {
            if let Some(s) = seen.iter().find(|s| pid_of(&s.worker_id) == Some(w.pid)) {
                w.seen = true;
                // The heartbeat row holds the latest beat; the fleet's own clock bounds it from above.
                let sample = ((s.seen_at - w.spawned_ms).max(0) as f64 / 1000.0)
                    .min(w.started.elapsed().as_secs_f64());
                pool.startup = Some(super::cost::ewma(pool.startup, sample, 0.3));
                changed = true;
                info!(
                    class = class.as_str(),
                    pid = w.pid,
                    startup_seconds = sample,
                    "worker took its first heartbeat"
                );
            }
        }
        if let (true, Some(s)) = (changed, pool.startup) {
            scaler.set_startup(class, Duration::from_secs_f64(s));
            METRICS
                .worker_startup
                .with_label_values(&[class.as_str()])
                .set(s);
        }
    }
    busy
}

/// Collects exited children: a drained one is done; any other exit is a crash and arms the restart backoff.
fn reap(opts: &FleetOptions, class: &str, pool: &mut Pool) {
    let now = Instant::now();
    let mut crashed = 0;
    pool.workers.retain_mut(|w| match w.proc.try_wait() {
        Ok(None) => {
            if let Some(since) = w.draining {
                if now.duration_since(since) > opts.drain_timeout + Duration::from_secs(10) {
                    warn!(class, pid = w.pid, "worker exceeded its drain timeout: killing it");
                    let _ = w.proc.start_kill();
                }
            }
            true
        }
        Ok(Some(status)) => {
            if w.draining.is_some() {
                info!(class, pid = w.pid, %status, "worker drained and exited");
            } else {
                crashed += 1;
                error!(class, pid = w.pid, %status, lived = ?now.duration_since(w.started), "worker crashed");
            }
            false
        }
        Err(e) => {
            warn!(class, pid = w.pid, error = %e, "cannot poll worker; forgetting it");
            false
        }
    });
    if crashed > 0 {
        pool.crashes += crashed;
        let delay = restart_delay(opts.restart_backoff, pool.crashes);
        pool.not_before = Some(now + delay);
        warn!(class, crashes = pool.crashes, restart_in = ?delay, "restart backoff armed");
    } else if pool.crashes > 0
        && pool
            .workers
            .iter()
            .any(|w| now.duration_since(w.started) >= opts.stable_after)
    {
        pool.crashes = 0;
    }
}

/// The delay before restart number `n` (1-based), from `backon`.
pub fn restart_delay((min, max): (Duration, Duration), n: u32) -> Duration {
    let n = n.max(1) as usize;
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_max_times(n)
        .build()
        .nth(n - 1)
        .unwrap_or(max)
}

/// Moves the class's running count toward its desired count. `busy` is each child's jobs in flight at its
/// last heartbeat.
fn reconcile(
    opts: &FleetOptions,
    s: &ClassSignal,
    pool: &mut Pool,
    gpu_blocked: bool,
    busy: &BTreeMap<u32, i64>,
    ports: &mut std::collections::BTreeSet<u16>,
) {
    let running = pool.running();
    let desired = if gpu_blocked { 0 } else { s.desired_workers };
    let inputs = format!(
        "ready={} in_flight={:?} delayed={} backlog_seconds={:.2} cost_seconds={:.3} arrival_per_second={:.3} \
         desired={} decided_by={} running={}",
        s.ready,
        s.in_flight,
        s.delayed,
        s.backlog_seconds,
        s.cost_seconds,
        s.arrival_per_second,
        s.desired_workers,
        s.decided_by,
        running
    );
    if gpu_blocked && s.desired_workers > 0 {
        info!(class = %s.class, %inputs, "no NVENC on this machine: no video-gpu workers here (jobs fall back)");
    }
    if desired > running {
        if let Some(t) = pool.not_before {
            if Instant::now() < t {
                info!(class = %s.class, %inputs, wait = ?(t - Instant::now()), "scale-up held by restart backoff");
                return;
            }
        }
        for _ in running..desired {
            match spawn(opts, &s.class, ports) {
                Ok(w) => {
                    info!(class = %s.class, pid = w.pid, metrics_port = ?w.metrics_port, %inputs, "worker started");
                    pool.workers.push(w);
                }
                Err(e) => {
                    error!(class = %s.class, error = %e, "cannot start a worker");
                    pool.crashes += 1;
                    pool.not_before =
                        Some(Instant::now() + restart_delay(opts.restart_backoff, pool.crashes));
                    break;
                }
            }
        }
    } else if desired < running {
        // Drain workers still starting first, then idle ones (by their last heartbeat), then the newest: a
        // busy worker drained past its drain timeout hands its job back and its work is lost.
        let mut order: Vec<usize> = (0..pool.workers.len())
            .rev()
            .filter(|i| pool.workers[*i].draining.is_none())
            .collect();
        order.sort_by_key(|i| {
            let w = &pool.workers[*i];
            (w.seen, busy.get(&w.pid).copied().unwrap_or(0))
        });
        for i in order.into_iter().take((running - desired) as usize) {
            terminate(&s.class, &mut pool.workers[i], &inputs);
        }
    }
}

fn terminate(class: &str, w: &mut Worker, why: &str) {
    info!(
        class,
        pid = w.pid,
        inputs = why,
        "worker draining (SIGTERM)"
    );
    w.draining = Some(Instant::now());
    let pid = i32::try_from(w.pid).unwrap_or(i32::MAX);
    if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
        warn!(class, pid = w.pid, error = %e, "SIGTERM failed");
    }
}

fn spawn(
    opts: &FleetOptions,
    class: &str,
    ports: &mut std::collections::BTreeSet<u16>,
) -> Result<Worker, ScaleError> {
    let conc = opts.concurrency.get(class).copied().unwrap_or(1).max(1);
    let mut cmd = Command::new(&opts.exe);
    cmd.args(&opts.child_args)
        .args(["worker", "--classes", class, "--concurrency"])
        .arg(conc.to_string())
        .arg("--drain-timeout")
        .arg(humantime::format_duration(opts.drain_timeout).to_string())
        // The fleet serves /metrics on its own address; a child binding the same one would fail to start.
        .env_remove("MEDIAFLEET_METRICS_LISTEN");
    // A port of the range of its own, or none when the range is used up (it still works, unscraped).
    let metrics_port = opts.worker_metrics.as_ref().and_then(|m| {
        let port = m.free(ports);
        match port {
            Some(p) => {
                ports.insert(p);
                cmd.env(
                    "MEDIAFLEET_METRICS_LISTEN",
                    std::net::SocketAddr::new(m.ip, p).to_string(),
                );
            }
            None => warn!(
                class,
                first = m.first,
                last = m.last,
                "every worker metrics port is taken: this worker serves no /metrics"
            ),
        }
        port
    });
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    let proc = cmd
        .spawn()
        .map_err(|e| ScaleError::Io(format!("spawning {}: {e}", opts.exe.display())))?;
    let pid = proc.id().unwrap_or(0);
    Ok(Worker {
        proc,
        pid,
        started: Instant::now(),
        spawned_ms: crate::db::now_ms(),
        seen: false,
        draining: None,
        metrics_port,
    })
}

#[cfg(test)]
mod tests {
    use super::{restart_delay, WorkerMetricsPorts};
    use std::time::Duration;

    #[test]
    fn metrics_ports_parse_and_fill_from_the_bottom() {
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let m = WorkerMetricsPorts::parse("9200-9202", ip).unwrap();
        assert_eq!((m.first, m.last), (9200, 9202));
        let mut used = std::collections::BTreeSet::from([9200]);
        assert_eq!(m.free(&used), Some(9201));
        used.extend([9201, 9202]);
        assert_eq!(m.free(&used), None);
        assert_eq!(WorkerMetricsPorts::parse("9300", ip).unwrap().last, 9300);
        assert!(WorkerMetricsPorts::parse("9300-9200", ip).is_err());
        assert!(WorkerMetricsPorts::parse("x-9200", ip).is_err());
        assert!(WorkerMetricsPorts::parse("0-9", ip).is_err());
    }

    #[test]
    fn restart_delays_double_and_cap() {
        let b = (Duration::from_millis(500), Duration::from_secs(4));
        assert_eq!(restart_delay(b, 1), Duration::from_millis(500));
        assert_eq!(restart_delay(b, 2), Duration::from_secs(1));
        assert_eq!(restart_delay(b, 10), Duration::from_secs(4));
    }
}
