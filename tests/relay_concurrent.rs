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

/// With no webhook configured, the relay's sweep records every pending announcement in one statement: media
/// that reached `ready` or `failed` are announced at their current version, and a media still queued is not.
async fn announcements_without_webhooks(db: DbUrl) {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::connect(&db, None).await.unwrap();
    records.migrate().await.unwrap();
    let new = |id: &str| mediafleet::db::NewMedia {
        id: id.into(),
        kind: "image".into(),
        profile: "default".into(),
        source_key: format!("originals/{id}"),
        filename: None,
        content_type: "image/jpeg".into(),
        bytes: 1,
        sha256: "00".into(),
        external_id: None,
    };
    let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for id in &ids {
        records.insert_media(&new(id)).await.unwrap();
    }
    // ids[0] ends ready, ids[1] failed, ids[2] stays queued.
    records
        .start_processing(&ids[0], i64::MAX, false)
        .await
        .unwrap()
        .unwrap();
    assert!(records
        .finish_ready(&ids[0], &serde_json::json!({}), None, None, &[])
        .await
        .unwrap());
    assert!(records.fail(&ids[1], "corrupt", "bad").await.unwrap());
    type Row = (String, String, i64, Option<String>, Option<String>);
    let pending = |r: Vec<Row>| {
        r.into_iter()
            .map(|(id, ..)| id)
            .filter(|id| ids.contains(id))
            .collect::<Vec<_>>()
    };
    let before = pending(records.unannounced(100).await.unwrap());
    assert_eq!(before.len(), 2, "ready and failed wait: {before:?}");
    let relay = Relay {
        records: records.clone(),
        queue: Arc::new(
            EmbeddedQueue::open(&dir.path().join("queue.db"), EmbeddedConfig::default())
                .await
                .unwrap(),
        ),
        store: Arc::new(LocalStore::open(&dir.path().join("objects")).unwrap()),
        interval: Duration::from_millis(10),
        wake: Arc::default(),
        webhook_url: None,
        webhooks_enabled: false,
    };
    relay.sweep().await;
    assert!(
        pending(records.unannounced(100).await.unwrap()).is_empty(),
        "both announced"
    );
    assert_eq!(records.outbox_pending().await.unwrap(), 0, "no webhook job");
    // The queued media was left alone: its announced version is still below its version.
    let version = |id: &str| {
        let records = records.clone();
        let id = id.to_owned();
        async move { records.media_primary(&id).await.unwrap().unwrap().version }
    };
    let queued_version = version(&ids[2]).await;
    assert!(records
        .announce(&ids[2], queued_version, None)
        .await
        .unwrap());
}

#[tokio::test]
async fn announcements_without_webhooks_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    announcements_without_webhooks(DbUrl::default_for(dir.path())).await;
}

#[tokio::test]
async fn announcements_without_webhooks_on_postgres() {
    announcements_without_webhooks(DbUrl::parse("--db", &common::pg_database().await).unwrap())
        .await;
}
