//! `POST /v1/media/{id}/reprocess` on Postgres + RabbitMQ + moto S3, api and worker as separate processes:
//! a new profile replaces the renditions, the old objects are deleted only once the new ones are ready, an
//! identical rendition keeps its object, a repeated request enqueues nothing more, and media that cannot be
//! reprocessed answer 409 / 400.

mod common;

use std::collections::BTreeMap;

use common::uploads::*;
use common::*;
use mediafleet::storage::s3::S3Store;
use mediafleet::storage::{ObjectStore, StoreError};
use serde_json::{json, Value};

/// A profile whose `thumb` differs from the default one and which has no `preview`.
const SMALL: &str = r#"
[[profiles.small.image]]
name = "thumb"
max_width = 96
max_height = 96
format = "webp"
"#;

async fn post_reprocess(base: &str, id: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("{base}/v1/media/{id}/reprocess"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// name -> key, from the DB.
async fn keys(f: &UploadFleet, id: &str) -> BTreeMap<String, String> {
    let mut pg = f.pg().await;
    sqlx::query_as::<_, (String, String)>("SELECT name, key FROM renditions WHERE media_id = $1")
        .bind(id)
        .fetch_all(&mut pg)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn exists(s: &S3Store, key: &str) -> bool {
    match s.head(key).await {
        Ok(_) => true,
        Err(StoreError::NotFound(_)) => false,
        Err(e) => panic!("head {key}: {e}"),
    }
}

async fn outbox_rows(f: &UploadFleet, id: &str) -> i64 {
    let mut pg = f.pg().await;
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE media_id = $1 AND class = 'image'")
        .bind(id)
        .fetch_one(&mut pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_new_profile_replaces_the_renditions_and_deletes_the_old_objects_once_ready() {
    let f = upload_fleet(SMALL, "127.0.0.1", true).await;
    let s3 = s3_store(&moto_storage_url(&f.bucket)).await;
    let (status, body) = upload(&f.base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let first = wait_status(&f.base, &id, None, &["ready", "failed"]).await;
    assert_eq!(first["status"], "ready", "{first}");
    let old = keys(&f, &id).await;
    assert_eq!(
        old.keys().collect::<Vec<_>>(),
        ["preview", "thumb"],
        "{old:?}"
    );
    for k in old.values() {
        assert!(exists(&s3, k).await, "{k} must exist before the reprocess");
    }

    // The same profile again: byte-identical renditions keep their keys and objects.
    let (s, a) = post_reprocess(&f.base, &id, None).await;
    assert_eq!(s, 202, "{a}");
    assert_eq!(a["profile"], "default");
    let again = wait_status(&f.base, &id, None, &["ready", "failed"]).await;
    assert_eq!(again["status"], "ready", "{again}");
    assert!(again["version"].as_i64() > first["version"].as_i64());
    assert_eq!(keys(&f, &id).await, old, "identical output, identical keys");
    for k in old.values() {
        assert!(exists(&s3, k).await, "{k} was identical and must be kept");
    }

    // A new profile: a 96 px thumb and no preview.
    let (s, a) = post_reprocess(&f.base, &id, Some(json!({"profile": "small"}))).await;
    assert_eq!(s, 202, "{a}");
    assert_eq!(a["status"], "queued", "{a}");
    // Asked twice: the second is answered from the current state and enqueues nothing.
    let queued_jobs = outbox_rows(&f, &id).await;
    let (s, b) = post_reprocess(&f.base, &id, Some(json!({"profile": "small"}))).await;
    assert_eq!(s, 202, "{b}");
    assert_ne!(b["status"], "ready", "{b}");
    assert_eq!(
        outbox_rows(&f, &id).await,
        queued_jobs,
        "a repeat must not enqueue"
    );

    let done = wait_status(&f.base, &id, None, &["ready", "failed"]).await;
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["profile"], "small", "{done}");
    let names: Vec<&str> = done["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["thumb"], "{done}");
    assert!(done["renditions"][0]["width"].as_u64().unwrap() <= 96);
    let new = keys(&f, &id).await;
    assert_ne!(new["thumb"], old["thumb"]);
    assert!(exists(&s3, &new["thumb"]).await);
    for k in old.values() {
        assert!(
            !exists(&s3, k).await,
            "{k} was replaced and must be deleted"
        );
    }
    // The stable route serves the new thumb.
    let r = reqwest::get(format!("{}/v1/media/{id}/renditions/thumb", f.base))
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "{}",
        r.status()
    );
    let r = reqwest::get(format!("{}/v1/media/{id}/renditions/preview", f.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the preview is gone with the old profile");
}

#[tokio::test]
async fn media_that_cannot_be_reprocessed_say_why() {
    let f = upload_fleet(SMALL, "127.0.0.1", true).await;
    let (s, e) = post_reprocess(&f.base, &uuid::Uuid::now_v7().to_string(), None).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{e}"
    );

    let (_, body) = upload(&f.base, &fixture("photo.jpg"), "photo.jpg").await;
    let id = body["id"].as_str().unwrap().to_owned();
    wait_status(&f.base, &id, None, &["ready"]).await;
    let (s, e) = post_reprocess(&f.base, &id, Some(json!({"profile": "nope"}))).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{e}"
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("small"),
        "{e}"
    );

    let r = reqwest::Client::new()
        .delete(format!("{}/v1/media/{id}", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, e) = post_reprocess(&f.base, &id, None).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{e}"
    );

    // A failed media is replayed: it runs again (and fails again, with its code).
    let (_, body) = upload(&f.base, &fixture("truncated.jpg"), "truncated.jpg").await;
    let bad = body["id"].as_str().unwrap().to_owned();
    let failed = wait_status(&f.base, &bad, None, &["ready", "failed"]).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let (s, a) = post_reprocess(&f.base, &bad, None).await;
    assert_eq!((s, a["status"].as_str()), (202, Some("queued")), "{a}");
    let again = wait_status(&f.base, &bad, None, &["failed"]).await;
    assert!(
        again["version"].as_i64() > failed["version"].as_i64(),
        "{again}"
    );
    assert_eq!(again["error"]["code"], "corrupt_media", "{again}");
}
