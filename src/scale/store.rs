//! The scaler's rows: a cost EWMA per class, updated from finished jobs, and worker heartbeats.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Row;

use crate::db::bind::BindExt;
use crate::db::{now_ms, DbError, Records};

/// Folds one finished job's wall-clock seconds into its class's EWMA (the first sample seeds it).
///
/// One atomic upsert, so concurrent workers never lose each other's samples.
pub async fn record_cost(
    records: &Records,
    class: &str,
    seconds: f64,
    alpha: f64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO class_throughput (class, ewma_seconds, samples, updated_at) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (class) DO UPDATE SET \
           ewma_seconds = class_throughput.ewma_seconds + $4 * ($2 - class_throughput.ewma_seconds), \
           samples = class_throughput.samples + 1, updated_at = $3",
    )
    .arg(class)
    .arg(seconds)
    .arg(now_ms())
    .arg(alpha)
    .execute(records.write_pool())
    .await?;
    Ok(())
}

/// A class's measured cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// EWMA of seconds per job.
    pub seconds: f64,
    /// Jobs measured.
    pub samples: i64,
}

/// Every class's measured cost.
pub async fn costs(records: &Records) -> Result<BTreeMap<String, Cost>, DbError> {
    let rows = sqlx::query("SELECT class, ewma_seconds, samples FROM class_throughput")
        .fetch_all(records.write_pool())
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.get::<String, _>("class"),
                Cost {
                    seconds: r.get::<f64, _>("ewma_seconds"),
                    samples: r.get::<i64, _>("samples"),
                },
            )
        })
        .collect())
}

/// Marks `worker_id` alive for `classes` now, with its jobs in flight.
pub async fn heartbeat(
    records: &Records,
    worker_id: &str,
    classes: &[String],
    capabilities: &str,
    in_flight: i64,
) -> Result<(), DbError> {
    for class in classes {
        sqlx::query(
            "INSERT INTO worker_presence (worker_id, class, capabilities, seen_at, in_flight, version) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (worker_id, class) DO UPDATE SET capabilities = $3, seen_at = $4, in_flight = $5, \
             version = $6",
        )
        .arg(worker_id)
        .arg(class)
        .arg(capabilities)
        .arg(now_ms())
        .arg(in_flight)
        .arg(env!("CARGO_PKG_VERSION"))
        .execute(records.write_pool())
        .await?;
    }
    Ok(())
}

/// Removes `worker_id`'s rows (clean exit) and rows older than a day (crashed workers).
pub async fn depart(records: &Records, worker_id: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM worker_presence WHERE worker_id = $1 OR seen_at < $2")
        .arg(worker_id)
        .arg(now_ms() - 86_400_000)
        .execute(records.write_pool())
        .await?;
    Ok(())
}

/// Live workers per class: those seen within `fresh`.
pub async fn live_workers(
    records: &Records,
    fresh: Duration,
) -> Result<BTreeMap<String, u32>, DbError> {
    let since = now_ms() - i64::try_from(fresh.as_millis()).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT class, COUNT(*) AS n FROM worker_presence WHERE seen_at >= $1 GROUP BY class",
    )
    .arg(since)
    .fetch_all(records.write_pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let n: i64 = r.get("n");
            (r.get::<String, _>("class"), u32::try_from(n).unwrap_or(0))
        })
        .collect())
}

/// The newest heartbeat (unix ms) of any worker serving each class that has a presence row. A class whose
/// workers all left cleanly has none; crashed workers' rows stay (up to a day), so their age keeps growing.
pub async fn newest_heartbeats(records: &Records) -> Result<BTreeMap<String, i64>, DbError> {
    let rows =
        sqlx::query("SELECT class, MAX(seen_at) AS seen FROM worker_presence GROUP BY class")
            .fetch_all(records.write_pool())
            .await?;
    rows.into_iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("class")?,
                r.try_get::<i64, _>("seen")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// One worker's latest heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// `host:pid`.
    pub worker_id: String,
    /// Last heartbeat, unix ms.
    pub seen_at: i64,
    /// Jobs in flight at that heartbeat.
    pub in_flight: i64,
}

/// Heartbeat rows seen since `since_ms`. The fleet times a worker's start-up from its spawn to its first
/// heartbeat, and drains idle workers before busy ones.
pub async fn seen_workers(records: &Records, since_ms: i64) -> Result<Vec<Seen>, DbError> {
    let rows = sqlx::query(
        "SELECT worker_id, MAX(seen_at) AS seen, MAX(in_flight) AS busy FROM worker_presence \
         WHERE seen_at >= $1 GROUP BY worker_id",
    )
    .arg(since_ms)
    .fetch_all(records.write_pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Seen {
            worker_id: r.get::<String, _>("worker_id"),
            seen_at: r.get::<i64, _>("seen"),
            in_flight: r.get::<i64, _>("busy"),
        })
        .collect())
}

/// A live worker as `mediafleet ops workers` shows it: its heartbeat rows (one per class) folded together.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LiveWorker {
    /// `host:pid`.
    pub id: String,
    /// The host part of the id.
    pub host: String,
    /// Classes it takes.
    pub classes: Vec<String>,
    /// Its build (`None` before it reported one).
    pub version: Option<String>,
    /// Jobs in flight at its last heartbeat.
    pub in_flight: i64,
    /// Its last heartbeat, unix ms.
    pub last_seen_ms: i64,
}

/// Workers seen within `fresh`, by id.
pub async fn workers(records: &Records, fresh: Duration) -> Result<Vec<LiveWorker>, DbError> {
    let since = now_ms() - i64::try_from(fresh.as_millis()).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT worker_id, class, version, in_flight, seen_at FROM worker_presence \
         WHERE seen_at >= $1 ORDER BY worker_id, class",
    )
    .arg(since)
    .fetch_all(records.write_pool())
    .await?;
    let mut out: Vec<LiveWorker> = Vec::new();
    for r in rows {
        let id: String = r.try_get("worker_id")?;
        let class: String = r.try_get("class")?;
        let version: Option<String> = r.try_get("version")?;
        let in_flight: i64 = r.try_get("in_flight")?;
        let seen: i64 = r.try_get("seen_at")?;
        match out.last_mut() {
            Some(w) if w.id == id => {
                w.classes.push(class);
                w.in_flight = w.in_flight.max(in_flight);
                w.last_seen_ms = w.last_seen_ms.max(seen);
                w.version = w.version.take().or(version);
            }
            _ => out.push(LiveWorker {
                host: id
                    .rsplit_once(':')
                    .map_or(id.as_str(), |(h, _)| h)
                    .to_owned(),
                id,
                classes: vec![class],
                version,
                in_flight,
                last_seen_ms: seen,
            }),
        }
    }
    Ok(out)
}
