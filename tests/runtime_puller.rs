//! The worker runtime built inside the test process (embedded queue and SQLite, no child processes): a
//! receive that panics or fails does not end its class's puller. The puller logs it, pauses (backon) and
//! receives again, so a malformed message published afterwards is still taken and dead-lettered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mediafleet::config::DbUrl;
use mediafleet::db::Records;
use mediafleet::jobs::{JobContext, MediaHandler, RetryPolicy};
use mediafleet::queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use mediafleet::queue::{JobClass, JobQueue, QueueAdmin, QueueError, Received};
use mediafleet::runtime::budget::ByteBudget;
use mediafleet::runtime::{NoObserver, Runtime, RuntimeOptions};
use mediafleet::sandbox::Sandbox;
use tokio_util::sync::CancellationToken;

/// The embedded queue, but its first receive panics and its second fails.
struct Faulty {
    inner: EmbeddedQueue,
    receives: AtomicUsize,
}

#[async_trait]
impl JobQueue for Faulty {
    fn backend(&self) -> &'static str {
        "faulty"
    }
    async fn publish(&self, class: &JobClass, body: &[u8]) -> Result<(), QueueError> {
        self.inner.publish(class, body).await
    }
    async fn receive(&self, class: &JobClass, max: usize, wait: Duration) -> Received {
        match self.receives.fetch_add(1, Ordering::SeqCst) {
            0 => panic!("a backend bug: a row that does not decode"),
            1 => Err(QueueError::Backend("a broken frame".into())),
            _ => self.inner.receive(class, max, wait).await,
        }
    }
    async fn ping(&self) -> Result<(), QueueError> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn a_receive_that_panics_or_fails_does_not_stop_the_class() {
    let dir = tempfile::tempdir().unwrap();
    let db = DbUrl::parse(
        "--db",
        &format!("sqlite://{}", dir.path().join("m.db").display()),
    )
    .unwrap();
    let records = Records::connect(&db, None).await.unwrap();
    records.migrate().await.unwrap();
    let inner = EmbeddedQueue::open(&dir.path().join("q.db"), EmbeddedConfig::default())
        .await
        .unwrap();
    let queue = Arc::new(Faulty {
        inner,
        receives: AtomicUsize::new(0),
    });
    let image = JobClass::new("image").unwrap();
    queue
        .inner
        .declare(std::slice::from_ref(&image))
        .await
        .unwrap();
    let store = mediafleet::storage::local::LocalStore::open(&dir.path().join("store")).unwrap();
    let ctx = Arc::new(JobContext {
        records,
        store: Arc::new(store),
        queue: queue.clone(),
        sandbox: Sandbox::in_process(1 << 30),
        prefix: "t".into(),
        profiles: Default::default(),
        limits: Default::default(),
        job_timeout: Duration::from_secs(10),
        cache: None,
        public_url: None,
        webhooks: Default::default(),
        scratch: ByteBudget::new(u64::MAX),
        media_slots: Default::default(),
    });
    let handler = MediaHandler::new(
        ctx,
        RetryPolicy {
            max_attempts: 3,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            outage_budget: Duration::from_secs(10),
        },
        "test:1".into(),
    );
    let runtime = Runtime::new(
        queue.clone(),
        Arc::new(handler),
        Arc::new(NoObserver),
        RuntimeOptions {
            classes: vec![(image.clone(), 1)],
            poll_wait: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(2),
            lease: Duration::from_secs(5),
            scratch_dir: dir.path().join("scratch"),
            bulk_share: 0.0,
        },
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runtime.run(shutdown.clone()));

    // Published after the puller met the panic and the error: still taken, and dead-lettered as malformed.
    queue.publish(&image, b"{not an envelope").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dead = queue.inner.dead_letters(&image, 10).await.unwrap();
        if !dead.is_empty() {
            assert!(!dead[0].reason.is_empty(), "{:?}", dead[0].reason);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the puller stopped after a panicking receive ({} receives)",
            queue.receives.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(queue.receives.load(Ordering::SeqCst) >= 3);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the runtime drains")
        .unwrap();
}
