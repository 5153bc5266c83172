//! The RabbitMQ backend against a real broker (`MEDIAFLEET_TEST_AMQP`, default the local guest account).
//! Each test has its own prefix, so tests run in parallel and leave no shared state; an unreachable broker
//! fails every test.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use mediafleet::queue::rabbitmq::{RabbitConfig, RabbitQueue};
use mediafleet::queue::{Delivery, JobClass, JobQueue, QueueAdmin, QueueError};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

fn amqp_url() -> String {
    std::env::var("MEDIAFLEET_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn class(name: &str) -> JobClass {
    JobClass::new(name).unwrap()
}

/// A broker-side test namespace: a unique prefix, and cleanup of what it declared.
struct Ns {
    prefix: String,
    tiers: Vec<Duration>,
}

impl Ns {
    fn new() -> Ns {
        Ns {
            prefix: format!("mft-{}", uuid::Uuid::new_v4().simple()),
            tiers: vec![Duration::from_secs(1), Duration::from_secs(2)],
        }
    }

    fn config(&self, url: &str, prefetch: u16) -> RabbitConfig {
        RabbitConfig {
            url: url.to_owned(),
            prefix: self.prefix.clone(),
            prefetch,
            class_prefetch: Default::default(),
            retry_tiers: self.tiers.clone(),
            delivery_limit: 20,
            management_url: None,
        }
    }

    async fn queue(&self, prefetch: u16, classes: &[&str]) -> RabbitQueue {
        let q = RabbitQueue::connect(self.config(&amqp_url(), prefetch))
            .await
            .unwrap_or_else(|e| {
                panic!("RabbitMQ at {} is required for this test: {e}", amqp_url())
            });
        let classes: Vec<JobClass> = classes.iter().map(|c| class(c)).collect();
        q.declare(&classes).await.expect("declare");
        q
    }

    /// Deletes this namespace's queues and exchanges (best effort; quorum queues are not free).
    async fn cleanup(&self, classes: &[&str]) {
        let conn = raw_connection().await;
        let ch = conn.create_channel().await.unwrap();
        for c in classes {
            let mut names = vec![
                format!("{}.{c}", self.prefix),
                format!("{}.{c}.dlq", self.prefix),
            ];
            names.extend(
                self.tiers
                    .iter()
                    .map(|t| format!("{}.{c}.retry.{}s", self.prefix, t.as_secs())),
            );
            for n in names {
                let _ = ch
                    .queue_delete(n.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        for ex in ["work", "retry", "dlx"] {
            let name = format!("{}.{ex}", self.prefix);
            let _ = ch
                .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
}

async fn raw_connection() -> Connection {
    Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ at {} is required for this test: {e}", amqp_url()))
}

/// Receives until `n` deliveries arrived or `within` passed.
async fn receive_n(
    q: &RabbitQueue,
    c: &JobClass,
    n: usize,
    within: Duration,
) -> Vec<Box<dyn Delivery>> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        out.extend(q.receive(c, n - out.len(), left).await.expect("receive"));
    }
    out
}

/// Polls `f` until it holds or `within` passes.
async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn declare_is_idempotent_and_a_conflict_names_the_queue() {
    let ns = Ns::new();
    let q = ns.queue(1, &["image"]).await;
    q.declare(&[class("image")])
        .await
        .expect("second declare is a no-op");

    // Someone made `{p}.video` as a classic queue: our quorum declare must say which queue and what to do.
    let conn = raw_connection().await;
    let ch = conn.create_channel().await.unwrap();
    let video = format!("{}.video", ns.prefix);
    ch.queue_declare(
        video.as_str().into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    match q.declare(&[class("video")]).await {
        Err(QueueError::Conflict(msg)) => {
            assert!(msg.contains(&video), "{msg}");
            assert!(
                msg.contains("delete_queue") && msg.contains("--prefix"),
                "{msg}"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The failed declare closed only its own channel.
    q.declare(&[class("image")])
        .await
        .expect("declare after a conflict");
    q.publish(&class("image"), b"{}")
        .await
        .expect("publish after a conflict");
    ns.cleanup(&["image", "video"]).await;
}

#[tokio::test]
async fn publish_receive_ack() {
    let ns = Ns::new();
    let q = ns.queue(10, &["image"]).await;
    let c = class("image");
    for i in 0..3 {
        q.publish(&c, format!("{{\"n\":{i}}}").as_bytes())
            .await
            .expect("publish");
    }
    eventually(Duration::from_secs(5), "3 ready", || async {
        q.depth(&c).await.unwrap().ready == 3
    })
    .await;

    let got = receive_n(&q, &c, 3, Duration::from_secs(5)).await;
    let bodies: Vec<String> = got
        .iter()
        .map(|d| String::from_utf8_lossy(d.body()).into_owned())
        .collect();
    assert_eq!(bodies, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
    assert!(got.iter().all(|d| d.delivery_count() == 1));
    for d in got {
        d.extend_lease(Duration::from_secs(60))
            .await
            .expect("extend_lease is a no-op");
        d.ack().await.expect("ack");
    }
    assert!(q
        .receive(&c, 10, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    let depth = q.depth(&c).await.unwrap();
    assert_eq!(
        (depth.ready, depth.delayed, depth.dlq, depth.in_flight),
        (0, 0, 0, None)
    );
    q.ping().await.expect("ping");
    ns.cleanup(&["image"]).await;
}

#[tokio::test]
async fn publish_to_an_undeclared_class_is_refused() {
    let ns = Ns::new();
    let q = ns.queue(1, &["image"]).await;
    let err = q
        .publish(&class("notify"), b"{}")
        .await
        .expect_err("nothing is bound for notify");
    assert!(matches!(err, QueueError::Config(_)), "{err:?}");
    ns.cleanup(&["image"]).await;
}

#[tokio::test]
async fn retry_after_redelivers_the_new_body_after_the_tier() {
    let ns = Ns::new();
    let q = ns.queue(1, &["image"]).await;
    let c = class("image");
    q.publish(&c, b"attempt-1").await.unwrap();
    let d = receive_n(&q, &c, 1, Duration::from_secs(5))
        .await
        .pop()
        .expect("delivery");
    let start = Instant::now();
    d.retry_after(Duration::from_millis(800), b"attempt-2".to_vec())
        .await
        .expect("retry_after");
    let depth = q.depth(&c).await.unwrap();
    assert_eq!(
        (depth.ready, depth.delayed),
        (0, 1),
        "the retry waits in the 1 s tier"
    );

    let again = receive_n(&q, &c, 1, Duration::from_secs(10))
        .await
        .pop()
        .expect("redelivered");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "came back after {:?}",
        start.elapsed()
    );
    assert_eq!(again.body(), b"attempt-2");
    again.ack().await.unwrap();
    ns.cleanup(&["image"]).await;
}

#[tokio::test]
async fn dead_letter_keeps_the_reason_and_counts_in_depth() {
    let ns = Ns::new();
    let q = ns.queue(1, &["video"]).await;
    let c = class("video");
    q.publish(&c, b"{\"id\":\"m1\"}").await.unwrap();
    let d = receive_n(&q, &c, 1, Duration::from_secs(5))
        .await
        .pop()
        .expect("delivery");
    d.dead_letter("corrupt_media: no video stream")
        .await
        .expect("dead_letter");

    eventually(Duration::from_secs(5), "1 in the DLQ", || async {
        q.depth(&c).await.unwrap().dlq == 1
    })
    .await;
    for _ in 0..2 {
        // Reading dead letters leaves them in place.
        let dl = q.dead_letters(&c, 10).await.expect("dead_letters");
        assert_eq!(dl.len(), 1);
        assert_eq!(dl[0].body, "{\"id\":\"m1\"}");
        assert_eq!(dl[0].reason, "corrupt_media: no video stream");
    }
    let depth = q.depth(&c).await.unwrap();
    assert_eq!((depth.ready, depth.dlq), (0, 1));
    ns.cleanup(&["video"]).await;
}

#[tokio::test]
async fn the_broker_dead_letters_a_crash_loop_after_the_delivery_limit() {
    let ns = Ns::new();
    let mut cfg = ns.config(&amqp_url(), 1);
    cfg.delivery_limit = 2;
    let q = RabbitQueue::connect(cfg).await.expect("connect");
    let c = class("image");
    q.declare(std::slice::from_ref(&c)).await.unwrap();
    q.publish(&c, b"poison").await.unwrap();
    let mut counts = Vec::new();
    while let Some(d) = receive_n(&q, &c, 1, Duration::from_secs(2)).await.pop() {
        counts.push(d.delivery_count());
        // Dropped without an outcome, as by a worker that dies mid-job: requeued, and counted (a drain's
        // `release` is not counted; see `release_redelivers_at_once`).
        drop(d);
        assert!(counts.len() <= 5, "never dead-lettered: {counts:?}");
    }
    assert_eq!(counts, [1, 2, 3]);
    eventually(Duration::from_secs(5), "the poison in the DLQ", || async {
        q.depth(&c).await.unwrap().dlq == 1
    })
    .await;
    let dl = q.dead_letters(&c, 10).await.unwrap();
    assert!(dl[0].reason.starts_with("delivery_limit"), "{:?}", dl[0]);
    ns.cleanup(&["image"]).await;
}

#[tokio::test]
async fn release_redelivers_at_once() {
    let ns = Ns::new();
    let q = ns.queue(1, &["cache"]).await;
    let c = class("cache");
    q.publish(&c, b"warm").await.unwrap();
    let d = receive_n(&q, &c, 1, Duration::from_secs(5))
        .await
        .pop()
        .expect("delivery");
    d.release().await.expect("release");
    let d = receive_n(&q, &c, 1, Duration::from_secs(5))
        .await
        .pop()
        .expect("redelivery");
    assert_eq!(d.body(), b"warm");
    // Handed back by a drain, not failed: a fresh delivery that spends nothing of the delivery limit.
    assert_eq!(d.delivery_count(), 1);
    d.ack().await.unwrap();
    ns.cleanup(&["cache"]).await;
}

#[tokio::test]
async fn prefetch_bounds_unacked_deliveries() {
    let ns = Ns::new();
    let q = ns.queue(2, &["image"]).await;
    let c = class("image");
    for i in 0..5 {
        q.publish(&c, format!("{i}").as_bytes()).await.unwrap();
    }
    let held = receive_n(&q, &c, 5, Duration::from_secs(2)).await;
    assert_eq!(held.len(), 2, "prefetch 2 allows 2 unacked");
    assert!(q
        .receive(&c, 5, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(q.depth(&c).await.unwrap().ready, 3);

    let mut held = held.into_iter();
    held.next().unwrap().ack().await.unwrap();
    let more = receive_n(&q, &c, 5, Duration::from_secs(1)).await;
    assert_eq!(more.len(), 1, "one ack frees one slot");
    // A delivery dropped without an outcome is handed back, freeing its slot too.
    drop(more);
    let again = receive_n(&q, &c, 5, Duration::from_secs(2)).await;
    assert_eq!(again.len(), 1);
    ns.cleanup(&["image"]).await;
}

/// Forwards 127.0.0.1:port → the broker; `cut_all` drops every open connection.
struct Proxy {
    port: u16,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tracked = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let up = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&up).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().unwrap().push(task);
            }
        });
        Proxy {
            port,
            conns,
            accept,
        }
    }

    fn cut_all(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        let live = conns.iter().filter(|t| !t.is_finished()).count();
        conns.drain(..).for_each(|t| t.abort());
        live
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

#[tokio::test]
async fn recovers_from_a_dropped_connection_without_a_new_queue() {
    let ns = Ns::new();
    let broker = url::Url::parse(&amqp_url()).unwrap();
    let upstream = format!(
        "{}:{}",
        broker.host_str().unwrap(),
        broker.port().unwrap_or(5672)
    );
    let proxy = Proxy::start(upstream).await;
    let mut via = broker.clone();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.port)).unwrap();
    let q = RabbitQueue::connect(ns.config(via.as_str(), 1))
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ at {} is required for this test: {e}", amqp_url()));
    let c = class("image");
    q.declare(std::slice::from_ref(&c)).await.unwrap();
    q.publish(&c, b"before-1").await.unwrap();
    q.publish(&c, b"before-2").await.unwrap();
    let held = receive_n(&q, &c, 1, Duration::from_secs(5))
        .await
        .pop()
        .expect("delivery");
    assert_eq!(held.body(), b"before-1");
    assert_eq!(q.generation().await, 1);

    assert!(
        proxy.cut_all() >= 1,
        "the queue's connection went through the proxy"
    );

    q.publish(&c, b"after")
        .await
        .expect("publish reconnects by itself");
    assert_eq!(q.generation().await, 2);
    held.ack()
        .await
        .expect_err("an ack on the dead channel fails; the broker redelivers");

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let d = receive_n(&q, &c, 1, Duration::from_secs(10))
            .await
            .pop()
            .expect("all three after the drop");
        seen.push((
            String::from_utf8_lossy(d.body()).into_owned(),
            d.delivery_count(),
        ));
        d.ack().await.expect("ack on the new channel");
    }
    seen.sort();
    assert_eq!(seen[0].0, "after");
    assert_eq!(
        seen[1],
        ("before-1".to_owned(), 2),
        "the unacked message is redelivered"
    );
    assert_eq!(seen[2].0, "before-2");
    q.ping().await.expect("ping after recovery");
    ns.cleanup(&["image"]).await;
}

#[tokio::test]
async fn a_consumer_waiting_through_a_drop_resumes() {
    let ns = Ns::new();
    let broker = url::Url::parse(&amqp_url()).unwrap();
    let proxy = Proxy::start(format!(
        "{}:{}",
        broker.host_str().unwrap(),
        broker.port().unwrap_or(5672)
    ))
    .await;
    let mut via = broker.clone();
    via.set_port(Some(proxy.port)).unwrap();
    via.set_host(Some("127.0.0.1")).unwrap();
    let q = Arc::new(
        RabbitQueue::connect(ns.config(via.as_str(), 1))
            .await
            .expect("connect"),
    );
    let c = class("notify");
    q.declare(std::slice::from_ref(&c)).await.unwrap();
    // Start a consumer, so the drop happens under a waiting `receive`.
    assert!(q
        .receive(&c, 1, Duration::from_millis(100))
        .await
        .unwrap()
        .is_empty());
    let waiter = {
        let (q, c) = (q.clone(), c.clone());
        tokio::spawn(async move { receive_n(&q, &c, 1, Duration::from_secs(15)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut_all();
    // Publish on a separate, direct connection: only the consumer side went through the cut.
    let direct = RabbitQueue::connect(ns.config(&amqp_url(), 1))
        .await
        .unwrap();
    direct.publish(&c, b"hook").await.unwrap();
    let got = waiter.await.unwrap();
    assert_eq!(got.len(), 1, "the waiting receive rebuilt its consumer");
    assert_eq!(got[0].body(), b"hook");
    ns.cleanup(&["notify"]).await;
}

#[tokio::test]
async fn stop_receiving_hands_back_what_the_broker_pushed_ahead() {
    let ns = Ns::new();
    let q = ns.queue(5, &["pause"]).await;
    let c = class("pause");
    for i in 0..5 {
        q.publish(&c, format!("m{i}").as_bytes()).await.unwrap();
    }
    // One taken; the broker has pushed the other four ahead (prefetch 5) into this consumer's buffer.
    let taken = receive_n(&q, &c, 1, Duration::from_secs(5)).await;
    assert_eq!(taken.len(), 1);
    eventually(Duration::from_secs(5), "all five pushed", || async {
        q.depth(&c).await.unwrap().ready == 0
    })
    .await;
    // A pause (or a drain): the four nobody took go back at once; the one in flight stays this worker's.
    q.stop_receiving(&c).await.unwrap();
    eventually(Duration::from_secs(5), "four handed back", || async {
        q.depth(&c).await.unwrap().ready == 4
    })
    .await;
    taken.into_iter().next().unwrap().ack().await.unwrap();
    // Another consumer (after a resume) gets exactly the other four, none twice.
    let other = ns.queue(5, &["pause"]).await;
    let mut bodies: Vec<String> = receive_n(&other, &c, 5, Duration::from_secs(3))
        .await
        .iter()
        .map(|d| String::from_utf8_lossy(d.body()).into_owned())
        .collect();
    bodies.sort();
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    assert!(!bodies.contains(&"m0".to_owned()), "{bodies:?}");
    ns.cleanup(&["pause"]).await;
}
