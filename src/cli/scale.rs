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
    /// Replay an arrival trace through the backlog policy and the 80 % CPU rule.
    Simulate(SimulateArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct SimulateArgs {
    /// Trace file (default: the built-in bursty mixed trace, fixtures/scale-trace.json).
    #[arg(long)]
    trace: Option<PathBuf>,
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
}

fn print_table(signals: &[ClassSignal]) {
    println!(
        "{:<10} {:>7} {:>9} {:>7} {:>5} {:>10} {:>10} {:>7} {:>7}",
        "class",
        "ready",
        "in_flight",
        "delayed",
        "dlq",
        "oldest_s",
        "backlog_s",
        "desired",
        "current"
    );
    for s in signals {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "{:<10} {:>7} {:>9} {:>7} {:>5} {:>10} {:>10.1} {:>7} {:>7}",
            s.class,
            s.ready,
            opt(s.in_flight.map(|n| n.to_string())),
            s.delayed,
            s.dlq,
            opt(s.oldest_age_seconds.map(|a| format!("{a:.1}"))),
            s.backlog_seconds,
            s.desired_workers,
            s.current_workers
        );
    }
}

fn json_line(signals: &[ClassSignal]) -> anyhow::Result<String> {
    Ok(serde_json::to_string(
        &serde_json::json!({ "classes": signals }),
    )?)
}

/// `mediafleet scaler [--once] [--json]` and `mediafleet scaler simulate`.
pub async fn scaler(s: Settings, a: ScalerArgs) -> anyhow::Result<()> {
    if let Some(ScalerAction::Simulate(sim)) = a.action {
        let trace = Trace::load(sim.trace.as_deref())?;
        let report = simulate::run(&trace);
        if sim.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "{:<8} {:>14} {:<7} {:>8} {:>8} {:>8} {:>6}",
                "policy", "worker_seconds", "class", "p50_s", "p95_s", "max_s", "slo_s"
            );
            for p in &report.policies {
                for c in &p.classes {
                    println!(
                        "{:<8} {:>14.0} {:<7} {:>8.2} {:>8.2} {:>8.2} {:>6}",
                        p.name,
                        p.worker_seconds,
                        c.class,
                        c.p50_wait_seconds,
                        c.p95_wait_seconds,
                        c.max_wait_seconds,
                        report.slo_seconds[&c.class]
                    );
                }
            }
        }
        return Ok(());
    }
    let records = crate::connect::records(&s).await?;
    let queue = crate::connect::queue_declared(&s, 1).await?;
    let mut scaler = Scaler::new(queue.clone(), records.clone(), &s.scaling, &a.classes)?;
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
    let shutdown = super::serve::shutdown_on_signal();
    if let Some(addr) = &s.metrics_listen {
        metrics::serve(
            addr,
            Probe {
                records: records.clone(),
                queue,
            },
            shutdown.clone(),
        )
        .await?;
    }
    let every = a.poll_interval.unwrap_or(s.scaling.poll_interval);
    loop {
        let live = store::live_workers(&records, observe::PRESENCE_FRESH)
            .await
            .unwrap_or_default();
        match scaler.poll(&live).await {
            Ok(signals) => {
                scaler.reroute(&signals, &live).await;
                if a.json {
                    println!("{}", json_line(&signals)?);
                }
            }
            Err(e) => tracing::warn!(error = %e, "scaler poll failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
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
    let queue = crate::connect::queue_declared(&s, 1).await?;
    let window = a.scale_down_window.unwrap_or(s.scaling.scale_down_window);
    let scaler = Scaler::new(queue.clone(), records.clone(), &s.scaling, &a.classes)?
        .with_bounds(a.min, a.max, window);
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
        poll_interval: a.poll_interval.unwrap_or(s.scaling.poll_interval),
        stable_after: Duration::from_secs(30),
        restart_backoff: (Duration::from_millis(500), Duration::from_secs(30)),
    };
    let shutdown: CancellationToken = super::serve::shutdown_on_signal();
    if let Some(addr) = &s.metrics_listen {
        metrics::serve(
            addr,
            Probe {
                records: records.clone(),
                queue,
            },
            shutdown.clone(),
        )
        .await?;
    }
    fleet::run(opts, scaler, records, shutdown).await?;
    Ok(())
}
