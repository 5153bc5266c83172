//! The expiry sweep and `complete` racing on a direct upload (Postgres + moto). A completed upload is never
//! expired, whatever its expiry time says; an expired one loses its object, and a removal that fails (S3 down)
//! is finished by a later sweep instead of leaving the object behind.

mod common;

use std::sync::Arc;
use std::time::Duration;

use mediafleet::config::DbUrl;
use mediafleet::db::{now_ms, NewMedia, OutboxJob, Records, UploadExtra};
use mediafleet::queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use mediafleet::queue::SharedQueue;
use mediafleet::relay::Relay;
use mediafleet::storage::SharedStore;
use mediafleet_proto::envelope::MediaValidate;
use mediafleet_proto::{Envelope, Job};

struct World {
    records: Records,
    queue: SharedQueue,
    store: SharedStore,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let db = DbUrl::parse("--db", &common::pg_database().await).unwrap();
    let records = Records::connect(&db, None).await.expect("Postgres");
    records.migrate().await.unwrap();
    let (_bucket, storage) = common::moto_bucket().await;
    let store: SharedStore = Arc::new(common::s3_store(&storage).await);
    let dir = tempfile::tempdir().unwrap();
    let queue: SharedQueue = Arc::new(
        EmbeddedQueue::open(&dir.path().join("queue.db"), EmbeddedConfig::default())
            .await
            .unwrap(),
    );
    World {
        records,
        queue,
        store,
        _dir: dir,
    }
}

fn relay(w: &World, store: SharedStore) -> Relay {
    Relay {
        records: w.records.clone(),
        queue: w.queue.clone(),
        store,
        interval: Duration::from_millis(10),
        wake: Arc::default(),
        webhook_url: None,
        webhooks_enabled: false,
    }
}

/// A direct upload whose object is in the bucket and whose expiry passed a second ago.
async fn expired_upload(w: &World) -> (String, String) {
    let id = uuid::Uuid::now_v7().to_string();
    let key = format!("originals/{id}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"uploaded bytes").unwrap();
    w.store
        .put_if_absent(&key, file.path(), "application/octet-stream")
        .await
        .unwrap();
    w.records
        .insert_upload(
            &NewMedia {
                id: id.clone(),
                kind: "image".into(),
                profile: "default".into(),
                source_key: key.clone(),
                filename: None,
                content_type: "application/octet-stream".into(),
                bytes: 14,
                sha256: String::new(),
                external_id: None,
            },
            &UploadExtra {
                status: "uploading",
                upload_expires_at: Some(now_ms() - 1000),
                ..UploadExtra::default()
            },
            None,
            None,
        )
        .await
        .unwrap();
    (id, key)
}

async fn status(w: &World, id: &str) -> String {
    w.records
        .media_primary(id)
        .await
        .unwrap()
        .unwrap()
        .status
        .to_string()
}

#[tokio::test]
async fn a_completed_upload_is_never_expired() {
    let w = world().await;
    let (id, key) = expired_upload(&w).await;
    let env = Envelope::new(
        uuid::Uuid::parse_str(&id).unwrap(),
        &Job::MediaValidate(MediaValidate {
            source_key: key.clone(),
            declared_bytes: 14,
            profile: "default".into(),
        }),
    );
    // `complete` lands after the expiry time but before the sweep, while validation is still queued.
    assert!(w
        .records
        .complete_upload(&id, None, &OutboxJob::new("image", &env))
        .await
        .unwrap());
    relay(&w, w.store.clone()).expire().await.unwrap();
    assert_eq!(
        status(&w, &id).await,
        "uploading",
        "still waiting for validation"
    );
    w.store
        .head(&key)
        .await
        .expect("the completed upload's object is kept");
    assert!(
        !w.records
            .claim_expired_upload(&id, "late sweep")
            .await
            .unwrap(),
        "a sweep that read the row before `complete` cannot claim it after"
    );
}

#[tokio::test]
async fn an_expired_upload_loses_its_object_even_when_storage_was_down() {
    let w = world().await;
    let (id, key) = expired_upload(&w).await;
    // S3 unreachable during the first sweep: the media is claimed, the object stays, and the sweep says so.
    let down = format!(
        "s3://nowhere?endpoint=http://127.0.0.1:{}&region=us-east-1&path_style=true",
        common::free_port()
    );
    let dead: SharedStore = Arc::new(common::s3_store(&down).await);
    relay(&w, dead).expire().await.unwrap();
    assert_eq!(status(&w, &id).await, "deleted");
    w.store.head(&key).await.expect("not removed yet");
    // The next sweep, with S3 back, finishes the removal, once.
    let r = relay(&w, w.store.clone());
    r.expire().await.unwrap();
    assert!(w.store.head(&key).await.is_err(), "the object is gone");
    assert!(w
        .records
        .expired_uploads(100)
        .await
        .unwrap()
        .iter()
        .all(|(i, _, _)| i != &id));
    // A `complete` after the expiry answers `deleted` and enqueues nothing.
    let env = Envelope::new(
        uuid::Uuid::parse_str(&id).unwrap(),
        &Job::MediaValidate(MediaValidate {
            source_key: key,
            declared_bytes: 14,
            profile: "default".into(),
        }),
    );
    assert!(!w
        .records
        .complete_upload(&id, None, &OutboxJob::new("image", &env))
        .await
        .unwrap());
    assert_eq!(w.records.outbox_pending().await.unwrap(), 0);
}
