//! `mediafleet ops status` and `ops workers`: the fleet at a glance. Per class, what the queue holds (ready,
//! in flight, delayed, dead letters, oldest age) and what the scaler would ask for right now (one poll of the
//! same scaler `mediafleet scaler --once` runs); the workers whose heartbeats are fresh; failures of the last
//! hour by code. `ops scale` shows the scaler's decision alone, with the inputs it used.

use std::collections::BTreeMap;

use crate::config::Settings;
use crate::scale::observe::PRESENCE_FRESH;
use crate::scale::scaler::Scaler;
use crate::scale::signal::ClassSignal;
use crate::scale::status::{self, WorkerStatus};
use crate::scale::store::{self, LiveWorker};

/// `ops status` / `ops workers` flags.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Classes to show (default: every configured class).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// One JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

/// Runs `ops workers`.
pub async fn workers(s: Settings, a: StatusArgs) -> anyhow::Result<()> {
    let records = crate::connect::records(&s).await?;
    let workers = status::workers(&records).await?;
    if a.json {
        println!("{}", serde_json::json!({ "workers": workers }));
    } else {
        print_workers(&workers);
    }
    Ok(())
}

/// One poll of the scaler, as `mediafleet scaler --once` makes it: the signal of each class, the live workers
/// per class it was given, and those workers.
async fn poll_once(
    s: &Settings,
    records: &crate::db::Records,
    classes: &[String],
) -> anyhow::Result<(Vec<ClassSignal>, BTreeMap<String, u32>, Vec<LiveWorker>)> {
    let (queue, admin) = crate::connect::queue_and_admin_declared(s, 1).await?;
    let mut scaler = Scaler::new(queue, admin, records.clone(), &s.scaling, classes)?;
    let workers = store::workers(records, PRESENCE_FRESH).await?;
    // Live workers per class, from the same heartbeat rows the worker list shows.
    let mut live: BTreeMap<String, u32> = BTreeMap::new();
    for class in workers.iter().flat_map(|w| &w.classes) {
        *live.entry(class.clone()).or_default() += 1;
    }
    let signals = scaler.poll(&live).await?;
    Ok((signals, live, workers))
}

/// Runs `ops scale`: the scaler's decision per class with every input it used (depth, arrival rate, cost per
/// job, backlog seconds).
pub async fn scale(s: Settings, a: StatusArgs) -> anyhow::Result<()> {
    let records = crate::connect::records(&s).await?;
    let (signals, _, _) = poll_once(&s, &records, &a.classes).await?;
    if a.json {
        // `scaler --once`'s document, plus the cost per job the backlog was computed with.
        let mut classes = Vec::with_capacity(signals.len());
        for c in &signals {
            let mut v = serde_json::to_value(c)?;
            v["cost_seconds"] = serde_json::json!(c.cost_seconds);
            classes.push(v);
        }
        println!("{}", serde_json::json!({ "classes": classes }));
    } else {
        super::scale::print_table(&signals);
    }
    Ok(())
}

/// Runs `ops status`: the document [`status::snapshot`] builds (the `/ops` dashboard shows the same one).
pub async fn status(s: Settings, a: StatusArgs) -> anyhow::Result<()> {
    let records = crate::connect::records(&s).await?;
    let (queue, admin) = crate::connect::queue_and_admin_declared(&s, 1).await?;
    let doc = status::snapshot(queue, admin, &records, &s.scaling, &a.classes).await?;
    if a.json {
        // Through a `Value`, whose map orders keys, so the output keeps the shape (and key order) it had.
        println!("{}", serde_json::to_value(&doc)?);
        return Ok(());
    }
    let (classes, workers, failures) = (&doc.classes, &doc.workers, &doc.failures_last_hour);
    println!(
        "{:<8} {:>7} {:>9} {:>7} {:>5} {:>10} {:>9} {:>7} {:>4}  DECIDED BY",
        "CLASS",
        "READY",
        "IN FLIGHT",
        "DELAYED",
        "DLQ",
        "OLDEST (s)",
        "BACKLOG s",
        "DESIRED",
        "LIVE"
    );
    for c in classes {
        println!(
            "{:<8} {:>7} {:>9} {:>7} {:>5} {:>10} {:>9.1} {:>7} {:>4}  {}",
            c.class,
            c.ready,
            c.in_flight.map_or("?".to_owned(), |n| n.to_string()),
            c.delayed,
            c.dlq,
            c.oldest_age_seconds
                .map_or("-".to_owned(), |a| format!("{a:.1}")),
            c.backlog_seconds,
            c.desired_workers,
            c.live_workers,
            if c.paused {
                format!("{} (PAUSED)", c.decided_by)
            } else {
                c.decided_by.to_owned()
            }
        );
    }
    println!();
    print_workers(workers);
    println!();
    if failures.is_empty() {
        println!("no failures in the last hour");
    } else {
        println!("failures in the last hour:");
        for (code, n) in failures {
            println!("  {code:<22} {n}");
        }
    }
    Ok(())
}

fn print_workers(workers: &[WorkerStatus]) {
    println!(
        "{:<28} {:<24} {:<10} {:>9}  {:<24}  CLASSES",
        "WORKER", "HOST", "VERSION", "IN FLIGHT", "LAST SEEN"
    );
    for w in workers {
        println!(
            "{:<28} {:<24} {:<10} {:>9}  {:<24}  {}",
            w.id,
            w.host,
            w.version.as_deref().unwrap_or("?"),
            w.in_flight,
            w.last_seen,
            w.classes.join(",")
        );
    }
    if workers.is_empty() {
        println!("(no live workers)");
    }
}
