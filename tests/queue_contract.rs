//! One queue contract, run unchanged against every backend: embedded (SQLite), RabbitMQ and SQS (moto).
//!
//! Each test body is written once against `JobQueue`/`Delivery`/`QueueAdmin` and instantiated per backend by
//! the `contract!` macro at the bottom (`embedded::…`, `rabbitmq::…`, `sqs::…`). Where a backend's meaning
//! differs, the test says so at the branch:
//! - On RabbitMQ a lease is the consumer's channel: "lease expiry" means the consumer's connection dies (a test
//!   proxy cuts it), and `extend_lease` has nothing to extend.
//! - On SQS a retry or a release is a new message (SQS cannot rewrite a body), so its receive count starts
//!   over, as it does on the other backends; a retry's delay is at most SQS's 15 min `DelaySeconds`.
//!
//! Every test has its own prefix (queues), data dir (embedded) or both; a service that cannot be reached fails
//! the test. Leases are 3 s and most retry delays 1 s, so the suite runs in seconds.

//!
//! The harness (namespaces, consumer handles, helpers) is in `queue_contract/harness.rs`; the dead-letter
//! operations of `QueueAdmin` (peek, show, redrive, purge) are tested in `queue_contract/dlq.rs`.

mod common;
#[path = "queue_contract/dlq.rs"]
mod dlq;
#[path = "queue_contract/harness.rs"]
mod harness;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediafleet_proto::Envelope;

use dlq::*;
use harness::*;

// ---------------------------------------------------------------------------------------------- the contract

async fn publish_consume_ack(b: Backend) {
    let ns = Ns::new(b).await;
    let q = ns.first.clone();
    let sent: Vec<Envelope> = (0..3).map(|_| envelope()).collect();
    for e in &sent {
        q.publish(&ns.class, &e.to_bytes()).await.expect("publish");
    }
    let got = receive_n(&*q, &ns.class, 3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "{b:?}: all published messages arrive");
    let ids: HashSet<_> = got
        .iter()
        .map(|d| Envelope::parse(d.body()).unwrap().job_id)
        .collect();
    assert_eq!(ids, sent.iter().map(|e| e.job_id).collect::<HashSet<_>>());
    for d in got {
        assert_eq!(d.delivery_count(), 1, "{b:?}: first delivery");
        d.ack().await.expect("ack");
    }
    // Acked means gone: nothing comes back after the lease.
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    let again = q
        .receive(&ns.class, 10, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(again.is_empty(), "{b:?}: acked messages were redelivered");
    ns.cleanup().await;
}

async fn nack_with_delay_redelivers_after_the_delay(b: Backend) {
    let ns = Ns::new(b).await;
    let q = ns.first.clone();
    let env = envelope();
    q.publish(&ns.class, &env.to_bytes()).await.unwrap();
    let d = receive_n(&*q, &ns.class, 1, Duration::from_secs(10))
        .await
        .pop()
        .expect("delivered");
    assert_eq!(attempt_of(&*d), 1);
    let t0 = Instant::now();
    d.retry_after(Duration::from_secs(1), env.next_attempt().to_bytes())
        .await
        .expect("retry_after");
    let early = q
        .receive(&ns.class, 1, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(early.is_empty(), "{b:?}: a delayed retry came back at once");
    let d = receive_n(&*q, &ns.class, 1, Duration::from_secs(15))
        .await
        .pop()
        .expect("redelivered after the delay");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "{b:?}: came back after {waited:?}"
    );
    // Every backend carries the bumped envelope, delivered for the first time.
    assert_eq!(attempt_of(&*d), 2, "{b:?}: the retry is attempt 2");
    assert_eq!(d.delivery_count(), 1, "{b:?}: a retry is a fresh delivery");
    assert_eq!(Envelope::parse(d.body()).unwrap().job_id, env.job_id);
    d.ack().await.unwrap();
    ns.cleanup().await;
}

async fn lease_expiry_redelivers(b: Backend) {
    let ns = Ns::new(b).await;
    let env = envelope();
    ns.first.publish(&ns.class, &env.to_bytes()).await.unwrap();
    let (consumer, proxy) = ns.doomed().await;
    let d = receive_n(&*consumer, &ns.class, 1, Duration::from_secs(10))
        .await
        .pop()
        .expect("delivered");
    ns.expire(d, consumer, proxy).await;
    let d = receive_n(&*ns.first, &ns.class, 1, Duration::from_secs(15))
        .await
        .pop()
        .unwrap_or_else(|| panic!("{b:?}: not redelivered after the lease ended"));
    assert_eq!(Envelope::parse(d.body()).unwrap().job_id, env.job_id);
    assert_eq!(
        d.delivery_count(),
        2,
        "{b:?}: the broker counts the lost delivery"
    );
    d.ack().await.unwrap();
    ns.cleanup().await;
}

async fn heartbeat_keeps_the_job_invisible(b: Backend) {
    let ns = Ns::new(b).await;
    ns.first
        .publish(&ns.class, &envelope().to_bytes())
        .await
        .unwrap();
    let d = receive_n(&*ns.first, &ns.class, 1, Duration::from_secs(10))
        .await
        .pop()
        .expect("delivered");
    let other = ns.handle().await;
    // Watch from another consumer for more than two leases while the holder heartbeats at half-lease.
    // (RabbitMQ: the channel holds the message; extend_lease is a no-op and the message stays put.)
    let until = Instant::now() + LEASE * 2 + Duration::from_secs(1);
    while Instant::now() < until {
        d.extend_lease(LEASE).await.expect("extend_lease");
        let stolen = other.receive(&ns.class, 1, LEASE / 2).await.unwrap();
        assert!(
            stolen.is_empty(),
            "{b:?}: a heartbeated job was delivered to another consumer"
        );
    }
    d.ack().await.expect("ack after a long job");
    ns.cleanup().await;
}

async fn dead_letters_after_max_attempts(b: Backend) {
    let ns = Ns::new(b).await;
    let q = ns.first.clone();
    let env = envelope();
    q.publish(&ns.class, &env.to_bytes()).await.unwrap();
    // The runtime's decision, step by step: a transient failure each time until our own limit.
    let mut attempts = Vec::new();
    loop {
        let d = receive_n(&*q, &ns.class, 1, Duration::from_secs(15))
            .await
            .pop()
            .unwrap_or_else(|| panic!("{b:?}: retry {} never came", attempts.len() + 1));
        let attempt = attempt_of(&*d);
        attempts.push(attempt);
        if attempt >= MAX_ATTEMPTS {
            d.dead_letter(&format!(
                "retries exhausted after {attempt} attempts; last error: storage_unavailable: s3 down"
            ))
            .await
            .expect("dead_letter");
            break;
        }
        let next = Envelope::parse(d.body()).unwrap().next_attempt();
        d.retry_after(Duration::from_millis(200), next.to_bytes())
            .await
            .unwrap();
    }
    assert_eq!(attempts, vec![1, 2, 3], "{b:?}: our own attempt count");
    let dead = ns.admin.dead_letters(&ns.class, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{b:?}: {dead:?}");
    assert!(
        dead[0]
            .reason
            .contains("retries exhausted after 3 attempts"),
        "{b:?}: reason kept: {:?}",
        dead[0].reason
    );
    assert!(dead[0].body.contains(&env.job_id.to_string()));
    let d = depth_until(&*ns.admin, &ns.class, Duration::from_secs(5), |d| {
        d.dlq == 1
    })
    .await;
    assert_eq!(d.dlq, 1, "{b:?}: {d:?}");
    assert!(q
        .receive(&ns.class, 1, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    ns.cleanup().await;
}

async fn poison_json_is_dead_lettered_with_its_reason(b: Backend) {
    let ns = Ns::new(b).await;
    let q = ns.first.clone();
    q.publish(&ns.class, b"{\"version\": 1, this is not json")
        .await
        .unwrap();
    let d = receive_n(&*q, &ns.class, 1, Duration::from_secs(10))
        .await
        .pop()
        .expect("delivered");
    let reason = Envelope::parse(d.body()).unwrap_err().to_string();
    d.dead_letter(&reason).await.unwrap();
    let dead = ns.admin.dead_letters(&ns.class, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{b:?}");
    assert!(
        dead[0].reason.starts_with("invalid envelope"),
        "{b:?}: {:?}",
        dead[0].reason
    );
    assert!(dead[0].body.contains("this is not json"));
    ns.cleanup().await;
}

async fn broker_dead_letters_a_crash_loop(b: Backend) {
    // Deliveries that never reach an outcome (the worker dies each time) end in the DLQ by the broker's own
    // limit: embedded max_receives, RabbitMQ x-delivery-limit, SQS redrive maxReceiveCount.
    let ns = Ns::new(b).await;
    ns.first
        .publish(&ns.class, &envelope().to_bytes())
        .await
        .unwrap();
    let mut deliveries = 0;
    for _ in 0..=MAX_RECEIVES + 1 {
        let (consumer, proxy) = ns.doomed().await;
        let Some(d) = receive_n(&*consumer, &ns.class, 1, Duration::from_secs(3))
            .await
            .pop()
        else {
            break;
        };
        deliveries += 1;
        ns.expire(d, consumer, proxy).await;
    }
    assert!(
        (1..=MAX_RECEIVES as usize + 1).contains(&deliveries),
        "{b:?}: {deliveries} deliveries"
    );
    let d = depth_until(&*ns.admin, &ns.class, Duration::from_secs(10), |d| {
        d.dlq == 1
    })
    .await;
    assert_eq!(
        d.dlq, 1,
        "{b:?}: crash-looping message not in the DLQ: {d:?}"
    );
    let dead = ns.admin.dead_letters(&ns.class, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{b:?}");
    assert!(!dead[0].reason.is_empty());
    ns.cleanup().await;
}

async fn concurrency_limit_is_respected(b: Backend) {
    let ns = Ns::new(b).await;
    const LIMIT: usize = 3;
    for _ in 0..10 {
        ns.first
            .publish(&ns.class, &envelope().to_bytes())
            .await
            .unwrap();
    }
    // A consumer with LIMIT permits asks for at most its free permits, like the runtime's puller. RabbitMQ also
    // bounds it broker-side with prefetch = LIMIT.
    let q = ns.handle_with_prefetch(LIMIT as u16).await;
    let permits = Arc::new(tokio::sync::Semaphore::new(LIMIT));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tasks = Vec::new();
    while done.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
        let first = permits.clone().acquire_owned().await.unwrap();
        let free = 1 + permits.available_permits();
        let got = q
            .receive(&ns.class, free, Duration::from_millis(500))
            .await
            .unwrap();
        assert!(
            got.len() <= free,
            "{b:?}: asked for {free}, got {}",
            got.len()
        );
        let mut first = Some(first);
        for d in got {
            let permit = first
                .take()
                .unwrap_or_else(|| permits.clone().try_acquire_owned().expect("permit"));
            let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(150)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                d.ack().await.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
                drop(permit);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 10, "{b:?}: all jobs done");
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= LIMIT, "{b:?}: {peak} jobs ran at once");
    assert!(peak >= 2, "{b:?}: jobs never overlapped (peak {peak})");
    ns.cleanup().await;
}

async fn drain_hands_leases_back(b: Backend) {
    let ns = Ns::new(b).await;
    for _ in 0..2 {
        ns.first
            .publish(&ns.class, &envelope().to_bytes())
            .await
            .unwrap();
    }
    let (worker, proxy) = ns.doomed().await;
    let held = receive_n(&*worker, &ns.class, 2, Duration::from_secs(10)).await;
    assert_eq!(held.len(), 2);
    let t0 = Instant::now();
    // The draining worker stops taking messages first, so what it hands back goes elsewhere.
    worker
        .stop_receiving(&ns.class)
        .await
        .expect("stop receiving");
    for d in held {
        d.release().await.expect("release");
    }
    // The draining worker then exits.
    ns.retire(worker, proxy).await;
    // Another worker gets them well before the lease would have run out.
    let got = receive_n(&*ns.first, &ns.class, 2, LEASE / 2).await;
    assert_eq!(
        got.len(),
        2,
        "{b:?}: released messages not redelivered at once"
    );
    assert!(t0.elapsed() < LEASE, "{b:?}");
    for d in got {
        // A hand-back during a drain is not a failed delivery: it spends nothing of the job's attempts or the
        // broker's delivery limit.
        assert_eq!(
            d.delivery_count(),
            1,
            "{b:?}: a release counted as a delivery"
        );
        assert_eq!(attempt_of(&*d), 1, "{b:?}");
        d.ack().await.unwrap();
    }
    ns.cleanup().await;
}

async fn at_least_once_under_a_consumer_race(b: Backend) {
    let ns = Ns::new(b).await;
    const N: usize = 30;
    let bodies: Vec<Vec<u8>> = (0..N).map(|_| envelope().to_bytes()).collect();
    ns.first
        .publish_batch(&ns.class, &bodies)
        .await
        .expect("publish_batch");
    let seen = Arc::new(std::sync::Mutex::new(HashMap::<uuid::Uuid, usize>::new()));
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let q = ns.handle().await;
        let (class, seen) = (ns.class.clone(), seen.clone());
        consumers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut idle = 0;
            while Instant::now() < deadline && idle < 3 {
                let got = q
                    .receive(&class, 4, Duration::from_millis(500))
                    .await
                    .unwrap();
                idle = if got.is_empty() { idle + 1 } else { 0 };
                for d in got {
                    let id = Envelope::parse(d.body()).unwrap().job_id;
                    *seen.lock().unwrap().entry(id).or_default() += 1;
                    d.ack().await.unwrap();
                }
            }
        }));
    }
    for c in consumers {
        c.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    for body in &bodies {
        let id = Envelope::parse(body).unwrap().job_id;
        assert!(seen.contains_key(&id), "{b:?}: job {id} was lost");
    }
    let d = depth_until(&*ns.admin, &ns.class, Duration::from_secs(10), |d| {
        d.ready == 0 && d.in_flight.unwrap_or(0) == 0
    })
    .await;
    assert_eq!(d.ready, 0, "{b:?}: {d:?}");
    ns.cleanup().await;
}

async fn depth_readings(b: Backend) {
    let ns = Ns::new(b).await;
    let q = ns.first.clone();
    let publish = || async { q.publish(&ns.class, &envelope().to_bytes()).await.unwrap() };
    // One message at a time, each taken by its own consumer, so RabbitMQ cannot push a later message into a
    // consumer's prefetch buffer (which would count it as in flight).
    publish().await;
    let holder = ns.handle_with_prefetch(1).await;
    let held = receive_n(&*holder, &ns.class, 1, Duration::from_secs(10))
        .await
        .pop()
        .expect("held");
    publish().await;
    let (c, proxy) = ns.doomed().await;
    let retrying = receive_n(&*c, &ns.class, 1, Duration::from_secs(10))
        .await
        .pop()
        .expect("to retry");
    let env = Envelope::parse(retrying.body()).unwrap();
    retrying
        .retry_after(Duration::from_secs(60), env.next_attempt().to_bytes())
        .await
        .unwrap();
    ns.retire(c, proxy).await;
    publish().await;
    let (c, proxy) = ns.doomed().await;
    let dead = receive_n(&*c, &ns.class, 1, Duration::from_secs(10))
        .await
        .pop()
        .expect("to dead-letter");
    dead.dead_letter("test").await.unwrap();
    ns.retire(c, proxy).await;
    publish().await;
    // One ready, one held, one waiting out a retry delay, one dead.
    let want_in_flight = 1;
    let d = depth_until(&*ns.admin, &ns.class, Duration::from_secs(20), |d| {
        d.ready == 1 && d.dlq == 1 && d.in_flight == Some(want_in_flight)
    })
    .await;
    assert_eq!(d.ready, 1, "{b:?}: {d:?}");
    assert_eq!(d.dlq, 1, "{b:?}: {d:?}");
    assert_eq!(
        d.in_flight,
        Some(want_in_flight),
        "{b:?}: in-flight (RabbitMQ: from the management API): {d:?}"
    );
    // Embedded: a retry's `visible_at` is in the future; RabbitMQ: it sits in a retry-tier queue; SQS: it is a
    // new message with `DelaySeconds`.
    assert_eq!(d.delayed, 1, "{b:?}: {d:?}");
    match b {
        // Only the embedded queue knows when its oldest message was enqueued; for RabbitMQ (quorum queues) and
        // SQS (CloudWatch only) the scaler reads the age from the DB's media records instead.
        Backend::Embedded => assert!(d.oldest_age_seconds.is_some(), "{d:?}"),
        Backend::Rabbit | Backend::Sqs => assert_eq!(d.oldest_age_seconds, None),
    }
    held.ack().await.unwrap();
    ns.cleanup().await;
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Embedded).await })*
        }
        mod rabbitmq {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Rabbit).await })*
        }
        mod sqs {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Sqs).await })*
        }
    };
}

contract!(
    publish_consume_ack,
    nack_with_delay_redelivers_after_the_delay,
    lease_expiry_redelivers,
    heartbeat_keeps_the_job_invisible,
    dead_letters_after_max_attempts,
    poison_json_is_dead_lettered_with_its_reason,
    broker_dead_letters_a_crash_loop,
    concurrency_limit_is_respected,
    drain_hands_leases_back,
    at_least_once_under_a_consumer_race,
    depth_readings,
    retry_after_delivers_the_body_it_is_given,
    dlq_peek_leaves_the_dlq_as_it_was,
    dlq_show_finds_one_by_id,
    dlq_redrive_resets_the_attempt_and_keeps_the_rest,
    dlq_redrive_twice_moves_once,
    dlq_redrive_of_an_unknown_id_is_skipped,
    dlq_purge_empties_it,
    dlq_a_body_that_is_not_an_envelope_is_listed_and_redriven_unchanged,
);
