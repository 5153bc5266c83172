//! Several relays (as several api processes would run them) on one Postgres outbox: every row is published
//! exactly once, because claims skip rows another relay holds (`FOR UPDATE SKIP LOCKED`).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediafleet::config::DbUrl;
use mediafleet::db::{OutboxJob, Records};
use mediafleet::queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use mediafleet::queue::{JobClass, SharedQueue};
use mediafleet::relay::Relay;
use mediafleet::storage::local::LocalStore;
use mediafleet_proto::envelope::CacheWarm;
use mediafleet_proto::{Envelope, Job};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_relays_publish_every_outbox_row_exactly_once() {
    let db = DbUrl::parse("--db", &common::pg_database().await).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let setup = Records::connect(&db, None).await.expect("Postgres");
    setup.migrate().await.unwrap();
    const N: usize = 400;
    let mut ids = Vec::with_capacity(N);
    for _ in 0..N {
        let env = Envelope::new(
            uuid::Uuid::now_v7(),
            &Job::CacheWarm(CacheWarm { version: 1 }),
        );
        ids.push(env.job_id);
        setup
            .enqueue(&OutboxJob {
                class: "cache".into(),
                body: env.to_bytes(),
                media_id: None,
            })
            .await
            .unwrap();
    }
    let queue: SharedQueue = Arc::new(
        EmbeddedQueue::open(&dir.path().join("queue.db"), EmbeddedConfig::default())
            .await
            .unwrap(),
    );
    // Each relay has its own DB pool, as separate processes would.
    let mut relays = Vec::new();
    for _ in 0..4 {
        let records = Records::connect(&db, None).await.unwrap();
        relays.push(Relay {
            records,
            queue: queue.clone(),
            store: Arc::new(LocalStore::open(&dir.path().join("objects")).unwrap()),
            interval: Duration::from_millis(10),
            wake: Arc::default(),
            webhook_url: None,
            webhooks_enabled: false,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for relay in relays {
        tasks.push(tokio::spawn(async move {
            let mut claimed = 0;
            while Instant::now() < deadline {
                let n = relay.publish_due().await.unwrap();
                claimed += n;
                if n == 0 && relay.records.outbox_pending().await.unwrap() == 0 {
                    break;
                }
            }
            claimed
        }));
    }
    let mut per_relay = Vec::new();
    for t in tasks {
        per_relay.push(t.await.unwrap());
    }
    assert_eq!(
        per_relay.iter().sum::<usize>(),
        N,
        "every row claimed once in total: {per_relay:?}"
    );
    assert!(
        per_relay.iter().filter(|n| **n > 0).count() >= 2,
        "the relays shared the work: {per_relay:?}"
    );
    assert_eq!(setup.outbox_pending().await.unwrap(), 0);

    // The queue holds each job exactly once.
    let class = JobClass::new("cache").unwrap();
    let mut seen: HashMap<uuid::Uuid, usize> = HashMap::new();
    loop {
        let got = queue
            .receive(&class, 100, Duration::from_millis(200))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        for d in got {
            *seen
                .entry(Envelope::parse(d.body()).unwrap().job_id)
                .or_default() += 1;
            d.ack().await.unwrap();
        }
    }
    assert_eq!(seen.len(), N);
    for id in &ids {
        assert_eq!(seen.get(id), Some(&1), "job {id}");
    }
}
