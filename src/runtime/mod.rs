//! The worker loop, generic over what a job is.
//!
//! One puller per class keeps at most `concurrency` deliveries in flight (a semaphore permit each). Each one
//! runs in its own task — the panic boundary — with a scratch directory that is emptied however it ends (and
//! reused by a later job, see `jobdirs`), and a heartbeat that extends its lease. What the delivery means is
//! the [`Handler`]'s business: it returns an [`Outcome`] (ack, retry after a delay, dead-letter with a reason,
//! or fail for good) and the runtime applies it to the delivery. The runtime knows nothing about media; the media rules are in `jobs::MediaHandler`.
//!
//! A class's puller also takes its bulk lane (`image-bulk`: replays, reprocesses, backfills), but only after a
//! receive of the live queue came back short, and never into more than `bulk_share` of the class's slots, so
//! a live job finds a free slot at its next poll however long the backfill (docs/decisions.md, "Bulk lane").
//!
//! On shutdown the pullers stop at once; in-flight jobs get `drain_timeout` to finish, then are cancelled
//! and their messages handed back. A lease that cannot be kept, or a job past the handler's time limit, stops
//! the job too.

pub mod budget;
mod jobdirs;
mod scratch;
mod supervise;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use scratch::{Scratch, Swept};

use crate::queue::{JobClass, QueueError, SharedQueue};

/// Runtime knobs.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Classes this process serves, with their concurrency.
    pub classes: Vec<(JobClass, usize)>,
    /// Longest wait of one receive call.
    pub poll_wait: Duration,
    /// Time in-flight jobs get after shutdown begins.
    pub drain_timeout: Duration,
    /// Lease per delivery; heartbeats extend it every half lease.
    pub lease: Duration,
    /// Where job scratch directories go (the runtime claims a directory of its own under it).
    pub scratch_dir: PathBuf,
    /// The largest share of a class's slots its bulk lane may hold (see [`JobClass::bulk_lane`]); 0 takes
    /// no bulk work beside live work.
    pub bulk_share: f64,
}

/// How long a receive from a bulk lane waits. Short, because it holds a slot live work may want.
const BULK_WAIT: Duration = Duration::from_millis(200);

/// One delivery as a handler sees it.
#[derive(Debug)]
pub struct Work {
    /// The class it was taken from.
    pub class: JobClass,
    /// The message body as published.
    pub body: Vec<u8>,
    /// How many times the broker has delivered it (1 on first delivery): crashes and lost connections count.
    pub delivery_count: u32,
    /// A directory of its own, removed when the delivery ends.
    pub scratch: PathBuf,
}

/// What to do with a delivery once its job has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: remove the message.
    Ack,
    /// The job ended for good without its work done (the handler has recorded why): remove the message.
    Fail,
    /// A failure worth another attempt: deliver `body` again after `delay`, waiting in the broker.
    Retry {
        /// How long the message waits before it is delivered again.
        delay: Duration,
        /// The body to deliver (e.g. with its attempt count bumped).
        body: Vec<u8>,
    },
    /// The infrastructure around the job is down: deliver `body` again after `delay`, spending no attempt.
    WaitOut {
        /// How long the message waits before it is delivered again.
        delay: Duration,
        /// The body to deliver.
        body: Vec<u8>,
    },
    /// The message cannot or must not be processed: move it to the dead-letter queue with this reason.
    DeadLetter {
        /// Why, kept with the dead letter.
        reason: String,
    },
}

impl Outcome {
    /// The label metrics and logs use: `ok`, `failed`, `retry`, `outage`, `dead_letter`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ack => "ok",
            Outcome::Fail => "failed",
            Outcome::Retry { .. } => "retry",
            Outcome::WaitOut { .. } => "outage",
            Outcome::DeadLetter { .. } => "dead_letter",
        }
    }
}

/// Why the runtime stopped a job before it ended. The message is not the job's to settle any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The drain deadline passed: the message was handed back to the queue.
    Released,
    /// The lease could not be kept (the broker refused a heartbeat, or heartbeats failed until it ran
    /// out): the message is, or will be, another worker's.
    LeaseLost(String),
}

/// What the runtime runs for each delivery.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Called once before the first receive, with the runtime's own scratch directory.
    fn starting(&self, _scratch: &Path) {}
    /// The longest a delivery's job may run; past it the job is stopped and [`Handler::timed_out`] decides.
    fn time_limit(&self, _work: &Work) -> Option<Duration> {
        None
    }
    /// Runs the job of one delivery. It runs in a task of its own while the runtime heartbeats the lease;
    /// the task is aborted on drain, lease loss or time limit.
    async fn handle(&self, work: &Work) -> Outcome;
    /// The job panicked: what to do with its delivery.
    async fn panicked(&self, work: &Work) -> Outcome;
    /// The job ran past its time limit and was stopped: what to do with its delivery.
    async fn timed_out(&self, work: &Work, limit: Duration) -> Outcome;
    /// The runtime stopped the job before it ended (for bookkeeping; nothing to decide).
    async fn stopped(&self, _work: &Work, _why: &Stopped) {}
}

/// Where the runtime reports what it does, for metrics. Passed in, so tests and other embedders need no
/// globals.
pub trait Observer: Send + Sync + 'static {
    /// A delivery of `class` started; it counts as in flight until the returned guard is dropped.
    fn started(&self, _class: &JobClass) -> Box<dyn Send> {
        Box::new(())
    }
    /// A delivery of `class` ended with `label` (an [`Outcome::label`], `released` or `lease_lost`).
    fn finished(&self, _class: &JobClass, _label: &str, _elapsed: Duration) {}
    /// A receive of `class` failed or panicked; the puller pauses and receives again.
    fn receive_failed(&self, _class: &JobClass, _error: &QueueError) {}
}

/// An observer that records nothing.
pub struct NoObserver;
impl Observer for NoObserver {}

/// The classes operators have paused (`mediafleet ops pause`), as the runtime watches them.
pub type Paused = tokio::sync::watch::Receiver<BTreeSet<String>>;

/// The worker runtime.
pub struct Runtime<H: Handler> {
    queue: SharedQueue,
    handler: Arc<H>,
    observer: Arc<dyn Observer>,
    opts: Arc<RuntimeOptions>,
    paused: Option<Paused>,
}

impl<H: Handler> Runtime<H> {
    /// Builds a runtime that takes deliveries from `queue` and hands them to `handler`.
    pub fn new(
        queue: SharedQueue,
        handler: Arc<H>,
        observer: Arc<dyn Observer>,
        opts: RuntimeOptions,
    ) -> Self {
        Runtime {
            queue,
            handler,
            observer,
            opts: Arc::new(opts),
            paused: None,
        }
    }

    /// Takes no deliveries of a class while `paused` holds it: its puller stops receiving (handing back what
    /// the broker had pushed ahead), lets its jobs in flight finish, and resumes when the class leaves the set.
    pub fn with_pauses(mut self, paused: Paused) -> Self {
        self.paused = Some(paused);
        self
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
        self.handler.starting(&self.opts.scratch_dir);
        let dirs = jobdirs::JobDirs::new(&self.opts.scratch_dir);
        let jobs = TaskTracker::new();
        // Cancelled when the drain deadline passes: in-flight jobs stop and hand their messages back.
        let abort = CancellationToken::new();
        let pullers = TaskTracker::new();
        let listed: BTreeSet<JobClass> = self.opts.classes.iter().map(|(c, _)| c.clone()).collect();
        for (class, concurrency) in self.opts.classes.clone() {
            // The class's bulk lane rides on its slots, unless a puller of its own takes it.
            let bulk = class
                .bulk_lane()
                .filter(|b| !listed.contains(b))
                .and_then(|b| BulkLane::new(b, concurrency.max(1), self.opts.bulk_share));
            let puller = Puller {
                bulk,
                queue: self.queue.clone(),
                handler: self.handler.clone(),
                observer: self.observer.clone(),
                opts: self.opts.clone(),
                dirs: dirs.clone(),
                class,
                permits: Arc::new(Semaphore::new(concurrency.max(1))),
                jobs: jobs.clone(),
                abort: abort.clone(),
                paused: self.paused.clone(),
            };
            pullers.spawn(puller.run(shutdown.clone()));
        }
        pullers.close();
        pullers.wait().await;
        // No more pushes to this process: what the drain hands back goes to other workers.
        for (class, _) in &self.opts.classes {
            for class in std::iter::once(class.clone()).chain(class.bulk_lane()) {
                if let Err(e) = self.queue.stop_receiving(&class).await {
                    warn!(%class, error = %e, "could not stop receiving; the broker requeues on disconnect");
                }
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

/// A class's bulk lane as its puller takes it: at most `cap` of its jobs at once, and only when a receive of
/// the live queue came back short (nothing more was waiting there).
struct BulkLane {
    class: JobClass,
    cap: usize,
    running: Arc<AtomicUsize>,
    /// The lane came back empty: not asked again before this (one live poll wait later).
    quiet_until: Option<tokio::time::Instant>,
    /// Operators paused the lane (or its class); its pushed-ahead messages were handed back.
    paused: bool,
}

impl BulkLane {
    /// The lane of a class with `slots` slots, or `None` when `share` leaves it no slot.
    fn new(class: JobClass, slots: usize, share: f64) -> Option<Self> {
        let cap = bulk_slots(slots, share);
        (cap > 0).then(|| BulkLane {
            class,
            cap,
            running: Arc::new(AtomicUsize::new(0)),
            quiet_until: None,
            paused: false,
        })
    }

    /// Whether the lane had work when last asked (and is not paused).
    fn is_active(&self) -> bool {
        !self.paused
            && self
                .quiet_until
                .is_none_or(|t| tokio::time::Instant::now() >= t)
    }

    /// Slots the lane may take now.
    fn room(&self) -> usize {
        if self.paused
            || self
                .quiet_until
                .is_some_and(|t| tokio::time::Instant::now() < t)
        {
            return 0;
        }
        self.cap.saturating_sub(self.running.load(Ordering::SeqCst))
    }
}

/// How many of a class's `slots` its bulk lane may hold with `share`: the share rounded down, but at least
/// one slot when the share is above 0; 0 when it is 0.
pub fn bulk_slots(slots: usize, share: f64) -> usize {
    if share.is_nan() || share <= 0.0 {
        return 0;
    }
    let slots = slots.max(1);
    ((slots as f64 * share.min(1.0)).floor() as usize).clamp(1, slots)
}

/// Counts a bulk job as running until dropped.
struct BulkRunning(Arc<AtomicUsize>);
impl Drop for BulkRunning {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Pulls one class (and its bulk lane, when it has one).
struct Puller<H: Handler> {
    bulk: Option<BulkLane>,
    queue: SharedQueue,
    handler: Arc<H>,
    observer: Arc<dyn Observer>,
    opts: Arc<RuntimeOptions>,
    dirs: Arc<jobdirs::JobDirs>,
    class: JobClass,
    permits: Arc<Semaphore>,
    jobs: TaskTracker,
    abort: CancellationToken,
    paused: Option<Paused>,
}

impl<H: Handler> Puller<H> {
    /// Waits while the class is paused (after handing back what the broker pushed). Returns false on shutdown.
    async fn wait_while_paused(&mut self, shutdown: &CancellationToken) -> bool {
        let Some(rx) = self.paused.as_mut() else {
            return true;
        };
        if !rx.borrow_and_update().contains(self.class.as_str()) {
            return true;
        }
        info!(class = %self.class, "class paused: taking none of it (nor of its bulk lane) until it is resumed");
        let bulk = self.bulk.as_ref().map(|b| b.class.clone());
        for class in std::iter::once(self.class.clone()).chain(bulk) {
            if let Err(e) = self.queue.stop_receiving(&class).await {
                warn!(%class, error = %e, "could not stop receiving; the broker requeues on disconnect");
            }
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                changed = rx.changed() => {
                    // The watcher is gone (shutting down): stop waiting on it.
                    if changed.is_err() || !rx.borrow_and_update().contains(self.class.as_str()) {
                        break;
                    }
                }
            }
        }
        info!(class = %self.class, "class resumed");
        true
    }

    async fn run(mut self, shutdown: CancellationToken) {
        use backon::BackoffBuilder;
        // Pauses after failed receives: 200 ms doubling to 5 s, with jitter, reset by a good one.
        let pauses = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times();
        let mut backoff = pauses.build();
        loop {
            if !self.wait_while_paused(&shutdown).await {
                return;
            }
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = self.permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            };
            // Paused while this puller waited for a free slot: take nothing more (the loop's top waits).
            if self
                .paused
                .as_ref()
                .is_some_and(|rx| rx.borrow().contains(self.class.as_str()))
            {
                continue;
            }
            self.check_bulk_paused().await;
            // Ask for as many as are free right now (this permit plus the others available).
            let free = 1 + self.permits.available_permits();
            let bulk_room = self.bulk.as_ref().map_or(0, BulkLane::room);
            // While a bulk lane is busy, live polls are short (none at all when the lane has a free slot), so
            // the puller comes back to the bulk lane as its jobs end, and live work always goes first.
            let wait = match &self.bulk {
                Some(_) if bulk_room > 0 => Duration::ZERO,
                Some(b) if b.is_active() => self.opts.poll_wait.min(BULK_WAIT),
                _ => self.opts.poll_wait,
            };
            let class = self.class.clone();
            let deliveries = match self.receive(&class, free, wait, &shutdown).await {
                None => return,
                Some(Ok(d)) => {
                    backoff = pauses.build();
                    d
                }
                Some(Err(e)) => {
                    self.observer.receive_failed(&self.class, &e);
                    let nap = backoff.next().unwrap_or(Duration::from_secs(5));
                    warn!(class = %self.class, error = %e, retry_in = ?nap, "receive failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(nap) => continue,
                    }
                }
            };
            let short = deliveries.len() < free;
            let mut permit = Some(permit);
            self.spawn_all(deliveries, &mut permit, &class, None).await;
            if !short || bulk_room == 0 {
                continue;
            }
            // The live queue had nothing more: the bulk lane may have what is free, within its share.
            let ask =
                bulk_room.min(usize::from(permit.is_some()) + self.permits.available_permits());
            let Some(lane) = self.bulk.as_ref().map(|b| b.class.clone()) else {
                continue;
            };
            if ask == 0 {
                continue;
            }
            let got = match self.receive(&lane, ask, BULK_WAIT, &shutdown).await {
                None => return,
                Some(got) => got,
            };
            let bulk = self.bulk.as_mut().expect("checked above");
            match got {
                Ok(d) if d.is_empty() => {
                    bulk.quiet_until = Some(tokio::time::Instant::now() + self.opts.poll_wait);
                }
                Ok(d) => {
                    let running = bulk.running.clone();
                    self.spawn_all(d, &mut permit, &lane, Some(running)).await;
                }
                Err(e) => {
                    bulk.quiet_until = Some(tokio::time::Instant::now() + self.opts.poll_wait);
                    self.observer.receive_failed(&lane, &e);
                    warn!(class = %lane, error = %e, "bulk lane receive failed; live work goes on");
                }
            }
        }
    }

    /// One receive of `class`. A panic in a backend's receive (a row or frame it cannot decode) must not end
    /// this puller: the class would stop while the process looks healthy. It is logged, counted and
    /// retried. `None` on shutdown.
    async fn receive(
        &self,
        class: &JobClass,
        max: usize,
        wait: Duration,
        shutdown: &CancellationToken,
    ) -> Option<crate::queue::Received> {
        use futures::FutureExt;
        let receive =
            std::panic::AssertUnwindSafe(self.queue.receive(class, max, wait)).catch_unwind();
        tokio::select! {
            _ = shutdown.cancelled() => None,
            r = receive => Some(r.unwrap_or_else(|_| {
                Err(QueueError::Backend("receive panicked (see the log above)".into()))
            })),
        }
    }

    /// Notices a pause or resume of the bulk lane alone (a paused class stops the whole puller instead). A
    /// newly paused lane hands back what the broker pushed ahead.
    async fn check_bulk_paused(&mut self) {
        let (Some(bulk), Some(rx)) = (self.bulk.as_mut(), self.paused.as_ref()) else {
            return;
        };
        let now = rx.borrow().contains(bulk.class.as_str());
        if now == bulk.paused {
            return;
        }
        bulk.paused = now;
        if now {
            info!(class = %bulk.class, "bulk lane paused");
            if let Err(e) = self.queue.stop_receiving(&bulk.class).await {
                warn!(class = %bulk.class, error = %e, "could not stop receiving; the broker requeues on disconnect");
            }
        } else {
            info!(class = %bulk.class, "bulk lane resumed");
        }
    }

    /// Runs each delivery in a task of its own, each holding a slot (`permit` first, then free ones). Bulk
    /// jobs (`bulk` holds the lane's running count) count against the lane's share while they run.
    async fn spawn_all(
        &self,
        deliveries: Vec<Box<dyn crate::queue::Delivery>>,
        permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
        class: &JobClass,
        bulk: Option<Arc<AtomicUsize>>,
    ) {
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
            let running = bulk.as_ref().map(|r| {
                r.fetch_add(1, Ordering::SeqCst);
                BulkRunning(r.clone())
            });
            let one = supervise::One {
                handler: self.handler.clone(),
                observer: self.observer.clone(),
                opts: self.opts.clone(),
                dirs: self.dirs.clone(),
                class: class.clone(),
                abort: self.abort.clone(),
            };
            self.jobs.spawn(async move {
                one.run(delivery).await;
                drop(running);
                drop(p);
            });
        }
    }
}
