//! What a worker adds for scaling: the job-end hook the runtime calls (counters, histogram, cost EWMA), and
//! the sidecars of a `worker` process (`/metrics`, heartbeats, the `video-gpu` capability check).

use std::sync::atomic::{AtomicI64, Ordering};
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

/// Jobs this process is running, reported with each heartbeat.
static IN_FLIGHT: AtomicI64 = AtomicI64::new(0);

/// Counts one running job until dropped (early returns included).
pub struct Busy(());

impl Drop for Busy {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Called when a job starts; the job counts as in flight until the guard is dropped.
pub fn busy() -> Busy {
    IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
    Busy(())
}

/// Whether a job's size was noted by its producer (a video's transcode stage: the probe knew the duration),
/// so the runtime marks it started and removes it when it ends.
pub fn sized(env: &mediafleet_proto::Envelope) -> bool {
    env.kind == mediafleet_proto::JobKind::MediaProcess.as_str()
        && env.payload.get("stage").and_then(|s| s.as_str()) == Some("transcode")
}

/// The runtime's observer in a worker process: jobs by class and outcome, job durations, jobs in flight
/// (reported with each presence heartbeat) and failed receives.
pub struct WorkerObserver;

impl crate::runtime::Observer for WorkerObserver {
    fn started(&self, _class: &JobClass) -> Box<dyn Send> {
        Box::new(busy())
    }
    fn finished(&self, class: &JobClass, label: &str, elapsed: Duration) {
        METRICS
            .jobs
            .with_label_values(&[class.as_str(), label])
            .inc();
        METRICS
            .duration
            .with_label_values(&[class.as_str()])
            .observe(elapsed.as_secs_f64());
    }
    fn receive_failed(&self, class: &JobClass, _error: &crate::queue::QueueError) {
        RECEIVE_FAILURES.with_label_values(&[class.as_str()]).inc();
    }
}

/// [`super::metrics::JOB_ATTEMPTS`]: every attempt's end by class, job kind, outcome and error code.
static JOB_ATTEMPTS: std::sync::LazyLock<prometheus::IntCounterVec> = std::sync::LazyLock::new(
    || {
        let c = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            metrics::JOB_ATTEMPTS,
            "Job attempts ended, by class, job kind, outcome and error code (`none` when it succeeded)",
        ),
        &["class", "kind", "outcome", "code"],
    )
    .expect("valid counter definition");
        let _ = METRICS.registry.register(Box::new(c.clone()));
        c
    },
);

/// Counts one attempt's end: `outcome` as recorded with the attempt (`ok`, `failed`, `retry`, `outage`,
/// `dead_letter`, `released`, `lease_lost`), `code` the error code or `None`.
pub fn attempt_ended(class: &JobClass, kind: &str, outcome: &str, code: Option<&str>) {
    JOB_ATTEMPTS
        .with_label_values(&[class.as_str(), kind, outcome, code.unwrap_or("none")])
        .inc();
}

/// `mediafleet_receive_failures_total{class}`: receives that failed or panicked (the puller pauses and goes on).
static RECEIVE_FAILURES: std::sync::LazyLock<prometheus::IntCounterVec> = std::sync::LazyLock::new(
    || {
        let c = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "mediafleet_receive_failures_total",
                "Queue receives that failed or panicked, by class; the worker pauses and receives again",
            ),
            &["class"],
        )
        .expect("valid counter definition");
        let _ = METRICS.registry.register(Box::new(c.clone()));
        c
    },
);

/// Called by the media handler when a job has ended with `status` (`ok`, `failed`, `retry`, `outage`,
/// `dead_letter`): teaches the class's cost. `sample` says whether `elapsed` is a fair measure of the class's
/// cost (completed work, not a skip). `sized_job` is the job id of a job of known size ([`sized`]): once it
/// has ended for good its row goes, and a measured one teaches the seconds-per-media-second rate of its
/// profile.
pub fn job_cost(
    records: &Records,
    class: &JobClass,
    status: &str,
    elapsed: Duration,
    sample: bool,
    sized_job: Option<&str>,
) {
    let alpha = *ALPHA.get().unwrap_or(&0.2);
    if let Some(job_id) = sized_job.filter(|_| status != "retry" && status != "outage") {
        let (records, class, job_id) = (
            records.clone(),
            class.as_str().to_owned(),
            job_id.to_owned(),
        );
        tokio::spawn(async move {
            match records.take_queued_work(&job_id).await {
                Ok(Some((profile, media_seconds))) if sample && media_seconds > 0.0 => {
                    let rate = elapsed.as_secs_f64() / media_seconds;
                    if let Err(e) = records
                        .record_media_rate(&class, &profile, rate, alpha)
                        .await
                    {
                        warn!(error = %e, class, "could not update the per-media-second rate");
                    }
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, class, "could not remove the job's known work"),
            }
        });
    }
    if !sample {
        return;
    }
    let records = records.clone();
    let class = class.as_str().to_owned();
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
                    let busy = IN_FLIGHT.load(Ordering::Relaxed);
                    if let Err(e) = store::heartbeat(&records, &id, &classes, &capabilities, busy).await {
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
