//! `scaler`, `scaler simulate` and `fleet`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{CommonArgs, Settings};
use crate::scale::fleet::{self, FleetOptions};
use crate::scale::metrics::{self, Probe};
use crate::scale::scaler::Scaler;
use crate::scale::signal::ClassSignal;
use crate::scale::simulate::{self, Trace};
use crate::scale::{observe, store};

/// `mediafleet scaler` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ScalerArgs {
    #[command(subcommand)]
    action: Option<ScalerAction>,
    /// Read every class once, print, and exit.
    #[arg(long)]
    once: bool,
    /// Print JSON (`{"classes":[…]}`) instead of a table; one line per poll without --once.
    #[arg(long)]
    json: bool,
    /// Time between polls (default: [scaling] poll_interval, 5 s).
    #[arg(long, value_parser = humantime::parse_duration)]
    poll_interval: Option<Duration>,
    /// Classes to read (default: every configured class).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum ScalerAction {
    /// Replay arrival traces through our backlog policy, best-tuned KEDA queueLength and the 80 % CPU rule.
    Simulate(SimulateArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct SimulateArgs {
    /// Trace file, repeatable (default: the built-in bursty trace; with --compare, every built-in trace).
    /// JSON: the fleet per class, timings, and `arrivals` segments and/or `jobs` replayed from logs
    /// (`{"class","at","cost_seconds","media_seconds"?,"profile"?}`); docs/scaling.md has the full format.
    #[arg(long)]
    trace: Vec<PathBuf>,
    /// Compare on every trace: ours, KEDA with its queueLength searched per class, and the CPU rule.
    #[arg(long)]
    compare: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `mediafleet fleet` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Fewest workers per class (default: [scaling.<class>] min_workers).
    #[arg(long)]
    min: Option<u32>,
    /// Most workers per class (default: [scaling.<class>] max_workers).
    #[arg(long)]
    max: Option<u32>,
    /// Classes to run workers for (default: every configured class).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Time between polls (default: [scaling] poll_interval, 5 s).
    #[arg(long, value_parser = humantime::parse_duration)]
    poll_interval: Option<Duration>,
    /// Scale-down stabilisation window (default: [scaling] scale_down_window, 120 s).
    #[arg(long, value_parser = humantime::parse_duration)]
    scale_down_window: Option<Duration>,
    /// Drain timeout given to each worker (default: [worker] drain_timeout).
    #[arg(long, value_parser = humantime::parse_duration)]
    drain_timeout: Option<Duration>,
    /// Ports the workers serve their own /metrics on, FIRST-LAST (e.g. 9200-9263): each child takes the
    /// lowest free one, on the fleet's --metrics-listen address (else 127.0.0.1). Default: children serve none.
    #[arg(long, value_name = "FIRST-LAST")]
    worker_metrics_ports: Option<String>,
}

pub(super) fn print_table(signals: &[ClassSignal]) {
    println!(
        "{:<10} {:>7} {:>9} {:>7} {:>5} {:>10} {:>10} {:>9} {:>7} {:>7}  decided_by",
        "class",
        "ready",
        "in_flight",
        "delayed",
        "dlq",
        "oldest_s",
        "backlog_s",
        "arrival/s",
        "desired",
        "current"
    );
    for s in signals {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "{:<10} {:>7} {:>9} {:>7} {:>5} {:>10} {:>10.1} {:>9.3} {:>7} {:>7}  {}",
            s.class,
            s.ready,
            opt(s.in_flight.map(|n| n.to_string())),
            s.delayed,
            s.dlq,
            opt(s.oldest_age_seconds.map(|a| format!("{a:.1}"))),
            s.backlog_seconds,
            s.arrival_per_second,
            s.desired_workers,
            s.current_workers,
            s.decided_by
        );
    }
}

fn json_line(signals: &[ClassSignal]) -> anyhow::Result<String> {
    Ok(serde_json::to_string(
        &serde_json::json!({ "classes": signals }),
    )?)
}

fn print_policies(slo: &BTreeMap<String, f64>, policies: &[simulate::PolicyReport]) {
    println!(
        "{:<8} {:>14} {:<7} {:>10} {:>8} {:>8} {:>8} {:>6} {:>4}  setting / decided by",
        "policy", "worker_seconds", "class", "class_ws", "p50_s", "p95_s", "max_s", "slo_s", "ok"
    );
    for p in policies {
        for c in &p.classes {
            let note = if c.decided_by.is_empty() {
                p.setting.clone()
            } else {
                c.decided_by
                    .iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "{:<8} {:>14.0} {:<7} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>4}  {note}",
                p.name,
                p.worker_seconds,
                c.class,
                c.worker_seconds,
                c.p50_wait_seconds,
                c.p95_wait_seconds,
                c.max_wait_seconds,
                slo.get(&c.class).copied().unwrap_or(0.0),
                if c.within_target { "yes" } else { "NO" },
            );
        }
    }
}

/// `scaler simulate [--trace F]… [--compare] [--json]`.
fn simulate_cmd(sim: &SimulateArgs) -> anyhow::Result<()> {
    let mut traces = sim
        .trace
        .iter()
        .map(|p| Trace::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    if traces.is_empty() {
        traces = if sim.compare {
            Trace::builtins()
        } else {
            vec![Trace::builtin("bursty")?]
        };
    }
    if !sim.compare {
        let report = simulate::run(&traces[0]);
        if sim.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_policies(&report.slo_seconds, &report.policies);
        }
        return Ok(());
    }
    let report = simulate::compare(&traces);
    if sim.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    for t in &report.traces {
        println!("== trace {} ==", t.name);
        print_policies(&t.slo_seconds, &t.policies);
        let ratios: Vec<String> = t
            .worker_seconds_ratio
            .iter()
            .map(|(k, v)| format!("ours/{k} {v:.3}"))
            .collect();
        let bounds: Vec<String> = t
            .lower_bound_ratio
            .iter()
            .map(|(k, v)| format!("{k} {v:.3}"))
            .collect();
        println!(
            "worker-seconds {} (least possible ÷ {}); goal {}",
            ratios.join(", "),
            bounds.join(", "),
            if t.goal_met { "met" } else { "NOT met" }
        );
        println!();
    }
    Ok(())
}

/// The token a SIGTERM or SIGINT cancels, with the scaler's metrics served until then (when
/// `metrics_listen` is set).
async fn metrics_until_signal(
    s: &Settings,
    records: &crate::db::Records,
    queue: crate::queue::SharedQueue,
) -> anyhow::Result<CancellationToken> {
    let shutdown = super::serve::shutdown_on_signal();
    if let Some(addr) = &s.metrics_listen {
        let probe = Probe {
            records: records.clone(),
            queue,
        };
        metrics::serve(addr, probe, shutdown.clone()).await?;
    }
    Ok(shutdown)
}

/// `mediafleet scaler [--once] [--json]` and `mediafleet scaler simulate`.
pub async fn scaler(s: Settings, a: ScalerArgs) -> anyhow::Result<()> {
    if let Some(ScalerAction::Simulate(sim)) = a.action {
        return simulate_cmd(&sim);
    }
    let records = crate::connect::records(&s).await?;
    let (queue, admin) = crate::connect::queue_and_admin_declared(&s, 1).await?;
    let mut scaler = Scaler::new(
        queue.clone(),
        admin,
        records.clone(),
        &s.scaling,
        &a.classes,
    )?;
    if a.once {
        let live = store::live_workers(&records, observe::PRESENCE_FRESH).await?;
        let signals = scaler.poll(&live).await?;
        if a.json {
            println!("{}", json_line(&signals)?);
        } else {
            print_table(&signals);
        }
        return Ok(());
    }
    let shutdown = metrics_until_signal(&s, &records, queue).await?;
    let every = a.poll_interval.unwrap_or(s.scaling.poll_interval);
    scale_loop(scaler, records, every, a.json, shutdown).await;
    Ok(())
}

/// Polls every `every` until `shutdown`: reads the queues, decides, sets the gauges and reroutes; with `json`,
/// prints each decision as a line. `scaler` and `serve` run it.
pub(super) async fn scale_loop(
    mut scaler: Scaler,
    records: crate::db::Records,
    every: std::time::Duration,
    json: bool,
    shutdown: CancellationToken,
) {
    loop {
        let live = store::live_workers(&records, observe::PRESENCE_FRESH)
            .await
            .unwrap_or_default();
        match scaler.poll(&live).await {
            Ok(signals) => {
                scaler.reroute(&signals, &live).await;
                if json {
                    match json_line(&signals) {
                        Ok(line) => println!("{line}"),
                        Err(e) => tracing::warn!(error = %e, "scaler decision not printable"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "scaler poll failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The global flags a child worker needs, made absolute where they are paths.
fn child_args(s: &Settings, c: &CommonArgs) -> Vec<String> {
    let mut out = vec![
        "--data-dir".to_owned(),
        s.data_dir.display().to_string(),
        "--no-migrate".to_owned(),
    ];
    let mut add = |flag: &str, v: &Option<String>| {
        if let Some(v) = v {
            out.push(flag.to_owned());
            out.push(v.clone());
        }
    };
    add("--queue", &c.queue);
    add("--storage", &c.storage);
    add("--db", &c.db);
    add("--db-read", &c.db_read);
    add("--cache", &c.cache);
    add("--prefix", &c.prefix);
    add("--public-url", &c.public_url);
    if let Some(cfg) = &c.config {
        out.push("--config".to_owned());
        out.push(
            std::path::absolute(cfg)
                .unwrap_or_else(|_| cfg.clone())
                .display()
                .to_string(),
        );
    }
    out
}

/// `mediafleet fleet`.
pub async fn fleet(s: Settings, common: &CommonArgs, a: FleetArgs) -> anyhow::Result<()> {
    let records = crate::connect::records(&s).await?;
    let (queue, admin) = crate::connect::queue_and_admin_declared(&s, 1).await?;
    let window = a.scale_down_window.unwrap_or(s.scaling.scale_down_window);
    let poll = a.poll_interval.unwrap_or(s.scaling.poll_interval);
    let scaler = Scaler::new(
        queue.clone(),
        admin,
        records.clone(),
        &s.scaling,
        &a.classes,
    )?
    .with_bounds(a.min, a.max, window, poll);
    let concurrency: BTreeMap<String, u32> = scaler
        .classes()
        .into_iter()
        .filter_map(|c| {
            scaler
                .policy(&c)
                .map(|p| (c.clone(), p.config().concurrency))
        })
        .collect();
    let opts = FleetOptions {
        exe: std::env::current_exe().context("cannot find the mediafleet executable")?,
        child_args: child_args(&s, common),
        concurrency,
        drain_timeout: a.drain_timeout.unwrap_or(s.worker.drain_timeout),
        poll_interval: poll,
        stable_after: Duration::from_secs(30),
        restart_backoff: (Duration::from_millis(500), Duration::from_secs(30)),
        worker_metrics: a
            .worker_metrics_ports
            .as_deref()
            .map(|r| {
                let ip = s
                    .metrics_listen
                    .as_deref()
                    .and_then(|l| l.parse::<std::net::SocketAddr>().ok())
                    .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip());
                crate::scale::fleet::WorkerMetricsPorts::parse(r, ip)
            })
            .transpose()
            .map_err(|e| anyhow::anyhow!("--worker-metrics-ports {e}"))?,
    };
    let shutdown = metrics_until_signal(&s, &records, queue).await?;
    fleet::run(opts, scaler, records, shutdown).await?;
    Ok(())
}
