//! What a worker adds for scaling: the job-end hook the runtime calls (counters, histogram, cost EWMA), and
//! the sidecars of a `worker` process (`/metrics`, heartbeats, the `video-gpu` capability check).

use std::sync::OnceLock;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::metrics::{self, Probe, METRICS};
use super::{route, store, ScaleError};
use crate::config::Settings;
use crate::db::Records;
use crate::queue::{JobClass, SharedQueue};

/// How often a worker marks itself alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A worker not seen for this long is not counted.
pub const PRESENCE_FRESH: Duration = Duration::from_secs(15);

static ALPHA: OnceLock<f64> = OnceLock::new();

/// Called by the runtime when a job has ended with `status` (`ok`, `failed`, `retry`, `dead_letter`).
/// `sample` says whether `elapsed` is a fair measure of the class's cost (completed work, not a skip).
pub fn job_finished(
    records: &Records,
    class: &JobClass,
    status: &str,
    elapsed: Duration,
    sample: bool,
) {
    METRICS
        .jobs
        .with_label_values(&[class.as_str(), status])
        .inc();
    METRICS
        .duration
        .with_label_values(&[class.as_str()])
        .observe(elapsed.as_secs_f64());
    if !sample {
        return;
    }
    let records = records.clone();
    let class = class.as_str().to_owned();
    let alpha = *ALPHA.get().unwrap_or(&0.2);
    tokio::spawn(async move {
        if let Err(e) = store::record_cost(&records, &class, elapsed.as_secs_f64(), alpha).await {
            warn!(error = %e, class, "could not update the cost EWMA");
        }
    });
}

/// Starts what a `worker` process runs beside its runtime. Refuses `video-gpu` without NVENC.
pub async fn start_worker_sidecars(
    s: &Settings,
    classes: &[String],
    worker_id: &str,
    records: Records,
    queue: SharedQueue,
    shutdown: CancellationToken,
) -> Result<TaskTracker, ScaleError> {
    let _ = ALPHA.set(s.scaling.ewma_alpha);
    let mut capabilities = String::new();
    if classes.iter().any(|c| c == route::GPU_CLASS) {
        if !route::nvenc_available().await {
            return Err(ScaleError::Config(format!(
                "--classes {}: this machine has no working NVENC encoder (h264_nvenc did not open); \
                 start GPU workers only on NVENC-capable machines (MEDIAFLEET_NVENC=1 skips the probe)",
                route::GPU_CLASS
            )));
        }
        capabilities.push_str("nvenc");
    }
    let tasks = TaskTracker::new();
    if let Some(addr) = &s.metrics_listen {
        let probe = Probe {
            records: records.clone(),
            queue,
        };
        let server = metrics::serve(addr, probe, shutdown.clone()).await?;
        tasks.spawn(async move {
            let _ = server.await;
        });
    }
    let (id, classes) = (worker_id.to_owned(), classes.to_vec());
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = store::heartbeat(&records, &id, &classes, &capabilities).await {
                        warn!(error = %e, "presence heartbeat failed");
                    }
                }
            }
        }
        if let Err(e) = store::depart(&records, &id).await {
            warn!(error = %e, "could not remove presence rows; they expire");
        }
        info!("presence removed");
    });
    tasks.close();
    Ok(tasks)
}
