//! The generic worker runtime inside the test process, on tokio's paused clock, with an in-memory queue and
//! a scripted handler: retry timing, drain (finished and handed back), lease heartbeats (kept, refused,
//! unavailable until the lease runs out), the panic boundary, time limits, and receive failures. Minutes of
//! worker time run in milliseconds, and every timing is exact.
//!
//! The media rules (exhausted attempts, outages) are tested against `MediaHandler` in `jobs_handler.rs`.

#[path = "runtime_inproc/memory.rs"]
mod memory;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mediafleet::queue::{JobClass, QueueError, SharedQueue};
use mediafleet::runtime::{
    Handler, NoObserver, Observer, Outcome, Runtime, RuntimeOptions, Stopped, Work,
};
use memory::{Event, MemoryQueue};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A handler driven by the message body: `ack`, `sleep <s>` (then ack), `panic`, `retry <n> <s>` (retry
/// after `s` seconds until the n-th call, then ack), `forever` (never returns).
#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<(Duration, String)>>,
    per_body: Mutex<HashMap<String, u32>>,
    stopped: Mutex<Vec<(String, Stopped)>>,
    panicked: AtomicUsize,
    timed_out: Mutex<Vec<(String, Duration)>>,
    /// Jobs whose future was dropped before it finished (aborted by the runtime).
    dropped: AtomicUsize,
    running: AtomicUsize,
    most_running: AtomicUsize,
    limit: Option<Duration>,
    start: Mutex<Option<Instant>>,
}

struct Running<'a>(&'a Scripted, bool);
impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Scripted {
    fn with_limit(limit: Duration) -> Self {
        Scripted {
            limit: Some(limit),
            ..Default::default()
        }
    }
    fn now(&self) -> Duration {
        self.start
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now)
            .elapsed()
    }
}

fn text(work: &Work) -> String {
    String::from_utf8_lossy(&work.body).into_owned()
}

#[async_trait]
impl Handler for Scripted {
    fn time_limit(&self, _work: &Work) -> Option<Duration> {
        self.limit
    }

    async fn handle(&self, work: &Work) -> Outcome {
        let body = text(work);
        assert!(work.scratch.is_dir(), "the job has its scratch dir");
        self.calls.lock().unwrap().push((self.now(), body.clone()));
        let n = {
            let mut m = self.per_body.lock().unwrap();
            let n = m.entry(body.clone()).or_default();
            *n += 1;
            *n
        };
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        let mut guard = Running(self, false);
        let words: Vec<&str> = body.split(' ').collect();
        let outcome = match words.as_slice() {
            ["ack"] => Outcome::Ack,
            ["sleep", s] => {
                tokio::time::sleep(Duration::from_secs(s.parse().unwrap())).await;
                Outcome::Ack
            }
            ["panic"] => panic!("a bug in a job"),
            ["forever"] => std::future::pending().await,
            ["retry", until, s] if n < until.parse::<u32>().unwrap() => Outcome::Retry {
                delay: Duration::from_secs(s.parse().unwrap()),
                body: work.body.clone(),
            },
            ["retry", ..] => Outcome::Ack,
            other => panic!("unknown script {other:?}"),
        };
        guard.1 = true;
        outcome
    }

    async fn panicked(&self, work: &Work) -> Outcome {
        self.panicked.fetch_add(1, Ordering::SeqCst);
        Outcome::DeadLetter {
            reason: format!("{} panicked", text(work)),
        }
    }

    async fn timed_out(&self, work: &Work, limit: Duration) -> Outcome {
        self.timed_out.lock().unwrap().push((text(work), limit));
        Outcome::DeadLetter {
            reason: format!("{} timed out", text(work)),
        }
    }

    async fn stopped(&self, work: &Work, why: &Stopped) {
        self.stopped.lock().unwrap().push((text(work), why.clone()));
    }
}

/// Counts what the runtime reports.
#[derive(Default)]
struct Counting {
    finished: Mutex<Vec<String>>,
    receive_failures: AtomicUsize,
    in_flight: Arc<AtomicUsize>,
}

struct InFlight(Arc<AtomicUsize>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Observer for Counting {
    fn started(&self, _class: &JobClass) -> Box<dyn Send> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Box::new(InFlight(self.in_flight.clone()))
    }
    fn finished(&self, _class: &JobClass, label: &str, _elapsed: Duration) {
        self.finished.lock().unwrap().push(label.to_owned());
    }
    fn receive_failed(&self, _class: &JobClass, _error: &QueueError) {
        self.receive_failures.fetch_add(1, Ordering::SeqCst);
    }
}

struct Harness {
    queue: MemoryQueue,
    handler: Arc<Scripted>,
    observer: Arc<Counting>,
    shutdown: CancellationToken,
    running: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

fn options(dir: &std::path::Path, concurrency: usize) -> RuntimeOptions {
    RuntimeOptions {
        classes: vec![(JobClass::new("image").unwrap(), concurrency)],
        poll_wait: Duration::from_secs(20),
        drain_timeout: Duration::from_secs(10),
        lease: Duration::from_secs(10),
        scratch_dir: dir.to_path_buf(),
        bulk_share: 0.0,
    }
}

fn start(handler: Scripted, concurrency: usize, tune: impl FnOnce(&mut RuntimeOptions)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let queue = MemoryQueue::new();
    let handler = Arc::new(handler);
    let observer = Arc::new(Counting::default());
    let mut opts = options(dir.path(), concurrency);
    tune(&mut opts);
    let shared: SharedQueue = Arc::new(queue.clone());
    let runtime = Runtime::new(shared, handler.clone(), observer.clone(), opts);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runtime.run(shutdown.clone()));
    Harness {
        queue,
        handler,
        observer,
        shutdown,
        running,
        _dir: dir,
    }
}

impl Harness {
    /// Shuts down and waits for the runtime; returns how long that took.
    async fn stop(self) -> (Duration, MemoryQueue, Arc<Scripted>, Arc<Counting>) {
        let t = Instant::now();
        self.shutdown.cancel();
        self.running.await.expect("the runtime does not panic");
        (t.elapsed(), self.queue, self.handler, self.observer)
    }
}

/// Lets the runtime run for `d` of (paused) time.
async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_in_the_queue_for_exactly_its_delay() {
    let h = start(Scripted::default(), 2, |_| {});
    let id = h.queue.push(b"retry 3 30");
    run_for(secs(100)).await;
    let (_, q, handler, observer) = h.stop().await;
    let calls: Vec<Duration> = handler.calls.lock().unwrap().iter().map(|c| c.0).collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    // The clock starts at the first call; each retry comes back exactly 30 s after the previous attempt.
    assert_eq!(calls[1] - calls[0], secs(30), "{calls:?}");
    assert_eq!(calls[2] - calls[1], secs(30), "{calls:?}");
    let log: Vec<Event> = q.log().into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        log,
        vec![
            Event::Received { id, delivery: 1 },
            Event::Retried {
                id,
                delay: secs(30)
            },
            Event::Received { id, delivery: 1 },
            Event::Retried {
                id,
                delay: secs(30)
            },
            Event::Received { id, delivery: 1 },
            Event::Acked { id },
        ]
    );
    assert_eq!(q.pending(), 0);
    assert_eq!(*observer.finished.lock().unwrap(), ["retry", "retry", "ok"]);
    assert_eq!(observer.in_flight.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_drain_lets_a_job_that_ends_in_time_finish() {
    let h = start(Scripted::default(), 1, |_| {});
    h.queue.push(b"sleep 5");
    run_for(secs(1)).await;
    let (took, q, handler, _) = h.stop().await;
    // Shutdown came at 1 s; the job needed 4 s more, inside the 10 s drain.
    assert_eq!(took, secs(4));
    assert_eq!(q.pending(), 0, "acked");
    assert!(handler.stopped.lock().unwrap().is_empty());
    assert_eq!(handler.dropped.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_drain_hands_back_a_job_that_outlasts_it() {
    let h = start(Scripted::default(), 1, |_| {});
    let id = h.queue.push(b"sleep 3600");
    run_for(secs(1)).await;
    let (took, q, handler, observer) = h.stop().await;
    assert_eq!(took, secs(10), "the drain timeout, then the job is stopped");
    assert_eq!(
        handler.dropped.load(Ordering::SeqCst),
        1,
        "the job's future was dropped"
    );
    assert_eq!(
        *handler.stopped.lock().unwrap(),
        [("sleep 3600".to_owned(), Stopped::Released)]
    );
    assert_eq!(q.log().last().unwrap().1, Event::Released { id });
    assert_eq!(q.pending(), 1, "the message is back in the queue, not lost");
    assert_eq!(*observer.finished.lock().unwrap(), ["released"]);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_long_job_its_message() {
    let h = start(Scripted::default(), 2, |_| {});
    let id = h.queue.push(b"sleep 120");
    run_for(secs(130)).await;
    let (_, q, handler, _) = h.stop().await;
    // 120 s with a 10 s lease: a heartbeat every 5 s, and the message never reappears for a second worker.
    let beats = q
        .log()
        .iter()
        .filter(|(_, e)| *e == Event::Extended { id })
        .count();
    assert!((23..=24).contains(&beats), "{beats} heartbeats");
    assert_eq!(q.heartbeats() as usize, beats, "every heartbeat was taken");
    assert_eq!(handler.calls.lock().unwrap().len(), 1, "delivered once");
    assert_eq!(handler.most_running.load(Ordering::SeqCst), 1);
    assert_eq!(q.log().last().unwrap().1, Event::Acked { id });
}

#[tokio::test(start_paused = true)]
async fn a_refused_heartbeat_stops_the_job_at_once() {
    let h = start(Scripted::default(), 1, |_| {});
    h.queue.refuse_heartbeats_after.store(2, Ordering::SeqCst);
    let id = h.queue.push(b"forever");
    run_for(secs(16)).await;
    // Beats at 5 and 10 s were taken; the one at 15 s was refused: the job is gone.
    assert_eq!(h.handler.dropped.load(Ordering::SeqCst), 1);
    let stopped = h.handler.stopped.lock().unwrap().clone();
    assert!(
        matches!(&stopped[..], [(_, Stopped::LeaseLost(why))] if why.contains("no longer valid")),
        "{stopped:?}"
    );
    let (_, q, _, observer) = h.stop().await;
    assert!(
        !q.log().iter().any(|(_, e)| matches!(
            e,
            Event::Acked { .. } | Event::Retried { .. } | Event::DeadLettered { .. }
        )),
        "a job that lost its lease settles nothing: {:?}",
        q.log()
    );
    assert_eq!(q.pending(), 1, "message {id} is left to the broker");
    assert_eq!(*observer.finished.lock().unwrap(), ["lease_lost"]);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_that_cannot_reach_the_broker_stop_the_job_when_the_lease_runs_out() {
    let h = start(Scripted::default(), 1, |_| {});
    // The first beat (5 s) is taken: the lease holds until 15 s. Later beats find the broker unreachable.
    h.queue
        .unavailable_heartbeats_after
        .store(1, Ordering::SeqCst);
    h.queue.push(b"forever");
    run_for(secs(14)).await;
    assert_eq!(
        h.handler.dropped.load(Ordering::SeqCst),
        0,
        "the lease still holds at 14 s"
    );
    run_for(secs(2)).await;
    assert_eq!(
        h.handler.dropped.load(Ordering::SeqCst),
        1,
        "stopped once it ran out"
    );
    assert!(matches!(
        h.handler.stopped.lock().unwrap()[..],
        [(_, Stopped::LeaseLost(_))]
    ));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_job_is_settled_by_its_handler_and_the_worker_goes_on() {
    let h = start(Scripted::default(), 1, |_| {});
    let bad = h.queue.push(b"panic");
    let good = h.queue.push(b"ack");
    run_for(secs(1)).await;
    let (_, q, handler, observer) = h.stop().await;
    assert_eq!(handler.panicked.load(Ordering::SeqCst), 1);
    assert_eq!(q.dead(), [(b"panic".to_vec(), "panic panicked".to_owned())]);
    let log: Vec<Event> = q.log().into_iter().map(|(_, e)| e).collect();
    assert!(log.contains(&Event::DeadLettered {
        id: bad,
        reason: "panic panicked".into()
    }));
    assert!(log.contains(&Event::Acked { id: good }));
    assert_eq!(*observer.finished.lock().unwrap(), ["dead_letter", "ok"]);
}

#[tokio::test(start_paused = true)]
async fn a_job_past_its_time_limit_is_stopped_and_settled_by_its_handler() {
    let h = start(Scripted::with_limit(secs(45)), 1, |_| {});
    h.queue.push(b"forever");
    h.queue.push(b"sleep 44");
    run_for(secs(100)).await;
    let (_, q, handler, _) = h.stop().await;
    let calls = handler.calls.lock().unwrap().clone();
    assert_eq!(calls[0].1, "forever");
    assert_eq!(
        calls[1],
        (secs(45), "sleep 44".to_owned()),
        "the next job starts when the first is stopped"
    );
    assert_eq!(
        *handler.timed_out.lock().unwrap(),
        [("forever".to_owned(), secs(45))]
    );
    assert_eq!(handler.dropped.load(Ordering::SeqCst), 1);
    assert_eq!(q.dead().len(), 1);
    assert_eq!(q.pending(), 0, "the 44 s job finished inside its limit");
}

#[tokio::test(start_paused = true)]
async fn receives_that_fail_or_panic_are_counted_and_survived() {
    let h = start(Scripted::default(), 1, |_| {});
    h.queue.panicking_receives.store(1, Ordering::SeqCst);
    h.queue.failing_receives.store(3, Ordering::SeqCst);
    h.queue.push(b"ack");
    run_for(secs(30)).await;
    let (_, q, _, observer) = h.stop().await;
    assert_eq!(observer.receive_failures.load(Ordering::SeqCst), 4);
    assert_eq!(q.pending(), 0, "taken once receives worked again");
}

#[tokio::test(start_paused = true)]
async fn concurrency_bounds_the_jobs_in_flight() {
    let h = start(Scripted::default(), 3, |_| {});
    for _ in 0..10 {
        h.queue.push(b"sleep 10");
    }
    run_for(secs(45)).await;
    let (_, q, handler, _) = h.stop().await;
    assert_eq!(handler.most_running.load(Ordering::SeqCst), 3);
    // 10 jobs of 10 s, 3 at a time: done after 4 rounds.
    assert_eq!(q.pending(), 0);
    let last = handler.calls.lock().unwrap().last().unwrap().0;
    assert_eq!(last, secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_with_nothing_in_flight_returns_at_once() {
    let h = start(Scripted::default(), 2, |o| o.poll_wait = secs(3600));
    run_for(secs(5)).await;
    let (took, ..) = h.stop().await;
    assert_eq!(took, Duration::ZERO);
}

/// The observer is optional: a runtime with `NoObserver` runs the same.
#[tokio::test(start_paused = true)]
async fn no_observer_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let queue = MemoryQueue::new();
    queue.push(b"ack");
    let shared: SharedQueue = Arc::new(queue.clone());
    let runtime = Runtime::new(
        shared,
        Arc::new(Scripted::default()),
        Arc::new(NoObserver),
        options(dir.path(), 1),
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runtime.run(shutdown.clone()));
    run_for(secs(1)).await;
    shutdown.cancel();
    running.await.unwrap();
    assert_eq!(queue.pending(), 0);
}
