//! Scaling on queue depth: the backlog-seconds signal, the policy, Prometheus gauges, the local `fleet`
//! supervisor, capability routing and the policy simulation. See `docs/scaling.md` for the math.
//!
//! # Layout
//! - [`store`]: the per-class cost EWMA and worker heartbeats, in the DB (migration 0003).
//! - [`signal`]: depth readings × expected cost → [`signal::ClassSignal`] per class.
//! - [`arrival`]: the arrival rate per class from successive readings (the policy's `λ`).
//! - [`cost`]: expected seconds of a job: per job, or per media-second where the probe knows the duration.
//! - [`policy`]: predictive backlog-seconds: queued work plus the arrivals a start-up makes late, cleared
//!   within the target latency; one slot per job at most; fast up, stabilised down. The simulation runs it too.
//! - [`metrics`]: gauge and counter names, the registry, and the `/metrics` server.
//! - [`observe`]: what the worker runtime reports when a job ends, and the worker's sidecars.
//! - [`route`]: `video-gpu` capability check and the fallback to `video`.
//! - [`scaler`]: one poll of every class: read, decide, publish gauges.
//! - [`status`]: the fleet at a glance as one document (`ops status --json`, the `/ops` dashboard).
//! - [`history`]: the dashboard's last hour: a sampler and its ring buffer.
//! - [`fleet`]: spawns and drains `mediafleet worker` processes on the scaler's decisions.
//! - [`simulate`]: replays arrival traces through our policy, KEDA's queueLength rule and the CPU rule.

pub mod arrival;
pub mod cost;
pub mod fleet;
pub mod history;
pub mod metrics;
pub mod observe;
pub mod policy;
pub mod route;
pub mod scaler;
pub mod signal;
pub mod simulate;
pub mod status;
pub mod store;

use crate::db::DbError;
use crate::queue::QueueError;

/// Errors of the scaling layer.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// Reading the queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Reading or writing the DB failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A process, socket or file could not be used.
    #[error("{0}")]
    Io(String),
    /// A setting or input that retrying will not fix.
    #[error("{0}")]
    Config(String),
}

impl ScaleError {
    /// Stable code for logs.
    pub fn code(&self) -> &'static str {
        match self {
            ScaleError::Queue(e) => e.code(),
            ScaleError::Db(_) => "db_unavailable",
            ScaleError::Io(_) => "io",
            ScaleError::Config(_) => "scale_config",
        }
    }
}
