//! The fleet at a glance as one typed document: what `mediafleet ops status --json` prints, what the `/ops`
//! dashboard shows and what its sampler keeps for an hour. One function, [`snapshot`], builds it for both, so
//! the page and the command can never disagree on a number.
//!
//! Per class: what the queue holds (ready, in flight, delayed, dead letters, oldest age) and what the scaler
//! would ask for right now (one poll of a fresh scaler, as `mediafleet scaler --once` makes it: no arrival
//! history); the workers whose heartbeats are fresh; failures of the last hour by code.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::observe::PRESENCE_FRESH;
use super::scaler::Scaler;
use super::store::{self, LiveWorker};
use super::ScaleError;
use crate::config::ScalingSettings;
use crate::db::Records;
use crate::media_object::rfc3339;
use crate::queue::{SharedAdmin, SharedQueue};

/// How far back `failures_last_hour` counts.
const HOUR_MS: i64 = 3_600_000;

/// `ops status --json`: `{"classes","workers","failures_last_hour"}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StatusDoc {
    /// Every class asked for (every configured class by default), idle ones included.
    pub classes: Vec<ClassStatus>,
    /// Workers with a fresh heartbeat.
    pub workers: Vec<WorkerStatus>,
    /// Media that failed in the last hour, by error code.
    pub failures_last_hour: BTreeMap<String, i64>,
}

/// One class: its queue and the scaler's decision.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ClassStatus {
    /// The class (`image`, `video`, `cache`, `notify`, …).
    pub class: String,
    /// Messages ready to be delivered.
    pub ready: u64,
    /// Delivered, not yet ended; `null` when the backend cannot tell.
    pub in_flight: Option<u64>,
    /// Waiting for a retry delay.
    pub delayed: u64,
    /// In the dead-letter queue.
    pub dlq: u64,
    /// Age of the oldest ready message; `null` when the backend cannot tell.
    pub oldest_age_seconds: Option<f64>,
    /// Expected seconds of work queued and in flight.
    pub backlog_seconds: f64,
    /// Workers the scaler would ask for on this reading alone.
    pub desired_workers: u32,
    /// Workers with a fresh heartbeat that take this class.
    pub live_workers: u32,
    /// The policy term that set `desired_workers` (`backlog`, `arrival`, `in_flight`, `jobs`, `minimum`,
    /// `maximum`, `cool-down`).
    #[schema(value_type = String)]
    pub decided_by: &'static str,
    /// Whether operators paused it (`ops pause`): workers take none of it.
    pub paused: bool,
}

/// A live worker.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkerStatus {
    /// `host:pid`.
    pub id: String,
    /// The host part of the id.
    pub host: String,
    /// Classes it takes.
    pub classes: Vec<String>,
    /// Its build; `null` before it reported one.
    pub version: Option<String>,
    /// Jobs in flight at its last heartbeat.
    pub in_flight: i64,
    /// Its last heartbeat (RFC 3339).
    pub last_seen: String,
}

impl From<LiveWorker> for WorkerStatus {
    fn from(w: LiveWorker) -> Self {
        WorkerStatus {
            id: w.id,
            host: w.host,
            classes: w.classes,
            version: w.version,
            in_flight: w.in_flight,
            last_seen: rfc3339(w.last_seen_ms),
        }
    }
}

/// The live workers, as `ops workers` lists them.
pub async fn workers(records: &Records) -> Result<Vec<WorkerStatus>, ScaleError> {
    Ok(store::workers(records, PRESENCE_FRESH)
        .await?
        .into_iter()
        .map(WorkerStatus::from)
        .collect())
}

/// Builds the status document of `classes` (every configured class when empty) from one poll of a quiet
/// scaler over `queue` and `admin` (two sides of one backend): it sets no gauge, so calling it inside a
/// process that runs its own scaling loop (`serve`) leaves that loop's gauges alone.
pub async fn snapshot(
    queue: SharedQueue,
    admin: SharedAdmin,
    records: &Records,
    scaling: &ScalingSettings,
    classes: &[String],
) -> Result<StatusDoc, ScaleError> {
    let mut scaler = Scaler::new(queue, admin, records.clone(), scaling, classes)?.quiet();
    let workers = store::workers(records, PRESENCE_FRESH).await?;
    // Live workers per class, from the same heartbeat rows the worker list shows.
    let mut live: BTreeMap<String, u32> = BTreeMap::new();
    for class in workers.iter().flat_map(|w| &w.classes) {
        *live.entry(class.clone()).or_default() += 1;
    }
    let signals = scaler.poll(&live).await?;
    let pauses = records.pauses().await?;
    let classes = signals
        .into_iter()
        .map(|c| ClassStatus {
            paused: pauses.contains_key(&c.class),
            live_workers: live.get(&c.class).copied().unwrap_or(0),
            class: c.class,
            ready: c.ready,
            in_flight: c.in_flight,
            delayed: c.delayed,
            dlq: c.dlq,
            oldest_age_seconds: c.oldest_age_seconds,
            backlog_seconds: c.backlog_seconds,
            desired_workers: c.desired_workers,
            decided_by: c.decided_by,
        })
        .collect();
    let failures_last_hour = records
        .failures_by_code(crate::db::now_ms() - HOUR_MS)
        .await?
        .into_iter()
        .collect();
    Ok(StatusDoc {
        classes,
        workers: workers.into_iter().map(WorkerStatus::from).collect(),
        failures_last_hour,
    })
}
