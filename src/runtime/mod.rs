//! The worker loop.
//!
//! One puller per class keeps at most `concurrency` jobs in flight (a semaphore permit per job). Each job
//! runs in its own task — the panic boundary — with a scratch directory that is removed however the job ends,
//! and a heartbeat that extends its lease. On shutdown the pullers stop at once; in-flight jobs get
//! `drain_timeout` to finish, then are cancelled and their messages handed back.

pub mod budget;
mod handle;
mod reaper;
mod scratch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use reaper::run_reaper;
pub use scratch::{Scratch, Swept};

use crate::jobs::JobContext;
use crate::queue::JobClass;

/// Runtime knobs.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Classes this process serves, with their concurrency.
    pub classes: Vec<(JobClass, usize)>,
    /// Longest wait of one receive call.
    pub poll_wait: Duration,
    /// Time in-flight jobs get after shutdown begins.
    pub drain_timeout: Duration,
    /// Attempts before the DLQ.
    pub max_attempts: u32,
    /// First retry delay.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How long a job waits out an infrastructure outage (storage, DB, broker) before its media fails;
    /// waiting spends no attempt.
    pub outage_budget: Duration,
    /// Lease per delivery; heartbeats extend it every half lease.
    pub lease: Duration,
    /// Where job scratch directories go.
    pub scratch_dir: PathBuf,
    /// Who we are, for attempt records (host:pid).
    pub worker_id: String,
}

/// The worker runtime.
pub struct Runtime {
    ctx: Arc<JobContext>,
    opts: Arc<RuntimeOptions>,
}

impl Runtime {
    /// Builds a runtime.
    pub fn new(ctx: Arc<JobContext>, opts: RuntimeOptions) -> Self {
        Runtime {
            ctx,
            opts: Arc::new(opts),
        }
    }

    /// Runs until `shutdown` is cancelled, then drains. Returns once every job has ended or been handed back.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // Our own directory under the scratch root, after sweeping what dead workers left there.
        let _scratch = match Scratch::claim(&self.opts.scratch_dir) {
            Ok((scratch, swept)) => {
                if swept.dirs > 0 {
                    info!(
                        dirs = swept.dirs,
                        bytes = swept.bytes,
                        "swept scratch left by dead workers"
                    );
                }
                let mut opts = (*self.opts).clone();
                opts.scratch_dir = scratch.path().to_path_buf();
                self.opts = Arc::new(opts);
                Some(scratch)
            }
            Err(e) => {
                warn!(error = %e, dir = %self.opts.scratch_dir.display(), "cannot claim a scratch dir");
                None
            }
        };
        // The first jobs' media children are started now, not when those jobs arrive.
        self.ctx.sandbox.prewarm(Some(&self.opts.scratch_dir));
        let jobs = TaskTracker::new();
        // Cancelled when the drain deadline passes: in-flight jobs stop and hand their messages back.
        let abort = CancellationToken::new();
        let pullers = TaskTracker::new();
        for (class, concurrency) in self.opts.classes.clone() {
            let puller = Puller {
                ctx: self.ctx.clone(),
                opts: self.opts.clone(),
                class,
                permits: Arc::new(Semaphore::new(concurrency.max(1))),
                jobs: jobs.clone(),
                abort: abort.clone(),
            };
            pullers.spawn(puller.run(shutdown.clone()));
        }
        pullers.close();
        pullers.wait().await;
        // No more pushes to this process: what the drain hands back goes to other workers.
        for (class, _) in &self.opts.classes {
            if let Err(e) = self.ctx.queue.stop_receiving(class).await {
                warn!(%class, error = %e, "could not stop receiving; the broker requeues on disconnect");
            }
        }
        jobs.close();
        info!(in_flight = jobs.len(), drain_timeout = ?self.opts.drain_timeout, "draining");
        if tokio::time::timeout(self.opts.drain_timeout, jobs.wait())
            .await
            .is_err()
        {
            warn!(
                in_flight = jobs.len(),
                "drain timeout: handing back unfinished jobs"
            );
            abort.cancel();
            jobs.wait().await;
        }
        info!("worker stopped");
    }
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
        let _ = crate::scale::metrics::METRICS
            .registry
            .register(Box::new(c.clone()));
        c
    },
);

/// Pulls one class.
struct Puller {
    ctx: Arc<JobContext>,
    opts: Arc<RuntimeOptions>,
    class: JobClass,
    permits: Arc<Semaphore>,
    jobs: TaskTracker,
    abort: CancellationToken,
}

impl Puller {
    async fn run(self, shutdown: CancellationToken) {
        use backon::BackoffBuilder;
        use futures::FutureExt;
        // Pauses after failed receives: 200 ms doubling to 5 s, with jitter, reset by a good one.
        let pauses = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times();
        let mut backoff = pauses.build();
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = self.permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            };
            // Ask for as many as are free right now (this permit plus the others available).
            let free = 1 + self.permits.available_permits();
            // A panic in a backend's receive (a row or frame it cannot decode) must not end this puller: the
            // class would stop while the process looks healthy. It is logged, counted and retried.
            let receive = std::panic::AssertUnwindSafe(self.ctx.queue.receive(
                &self.class,
                free,
                self.opts.poll_wait,
            ))
            .catch_unwind();
            let got = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = receive => r.unwrap_or_else(|_| {
                    Err(crate::queue::QueueError::Backend("receive panicked (see the log above)".into()))
                }),
            };
            let deliveries = match got {
                Ok(d) => {
                    backoff = pauses.build();
                    d
                }
                Err(e) => {
                    RECEIVE_FAILURES
                        .with_label_values(&[self.class.as_str()])
                        .inc();
                    let nap = backoff.next().unwrap_or(Duration::from_secs(5));
                    warn!(class = %self.class, error = %e, retry_in = ?nap, "receive failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(nap) => continue,
                    }
                }
            };
            let mut permit = Some(permit);
            for delivery in deliveries {
                let p = match permit.take() {
                    Some(p) => p,
                    None => match self.permits.clone().try_acquire_owned() {
                        Ok(p) => p,
                        Err(_) => {
                            // The backend gave more than we asked for; hand it back rather than overrun.
                            let _ = delivery.release().await;
                            continue;
                        }
                    },
                };
                let ctx = self.ctx.clone();
                let opts = self.opts.clone();
                let abort = self.abort.clone();
                let class = self.class.clone();
                self.jobs.spawn(async move {
                    handle::handle(ctx, opts, &class, delivery, abort).await;
                    drop(p);
                });
            }
        }
    }
}
