//! A media never waits forever for a job nobody holds: the reaper's stale sweep writes the job to the outbox
//! again (on Postgres and SQLite), once per stale period, with the class its stage needs.

mod common;

use std::time::Duration;

use mediafleet::config::DbUrl;
use mediafleet::db::{NewMedia, OutboxJob, Records};

async fn records(url: DbUrl) -> Records {
    let r = Records::connect(&url, None).await.expect("connect");
    r.migrate().await.expect("migrate");
    r
}

fn media(kind: &str) -> NewMedia {
    let id = uuid::Uuid::now_v7().to_string();
    NewMedia {
        source_key: format!("originals/{id}"),
        id,
        kind: kind.into(),
        profile: "default".into(),
        filename: None,
        content_type: "application/octet-stream".into(),
        bytes: 1,
        sha256: "00".into(),
        external_id: None,
    }
}

/// Claims every due outbox row and marks it sent, as a relay would; returns (class, media id) of each.
async fn publish_all(r: &Records) -> Vec<(String, String)> {
    let rows = r.claim_outbox(100, Duration::from_secs(30)).await.unwrap();
    let mut out = Vec::new();
    for row in rows {
        r.mark_sent(&row.id).await.unwrap();
        let env = mediafleet_proto::Envelope::parse(row.body.as_bytes()).unwrap();
        out.push((row.class, env.media_id.to_string()));
    }
    out
}

async fn stale_jobs_are_written_again(r: &Records) {
    let img = media("image");
    r.insert_media(&img).await.unwrap();
    let vid = media("video");
    r.insert_media(&vid).await.unwrap();
    // The video reached its hand-over: poster done, transcode job sent; then that message was lost.
    r.start_processing(&vid.id, i64::MAX, true)
        .await
        .unwrap()
        .unwrap();
    let follow = OutboxJob::transcode(uuid::Uuid::parse_str(&vid.id).unwrap(), "k", "default");
    assert!(r
        .keep_partial(&vid.id, &serde_json::json!({}), None, None, &[], &follow)
        .await
        .unwrap());
    assert_eq!(publish_all(r).await.len(), 1, "the transcode job went out");

    // Not stale yet under the default period.
    assert!(r
        .requeue_stale(Duration::from_secs(6 * 3600), 100)
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut again = r
        .requeue_stale(Duration::from_millis(10), 100)
        .await
        .unwrap();
    again.sort();
    let mut want = vec![img.id.clone(), vid.id.clone()];
    want.sort();
    assert_eq!(again, want);
    // An unsent row is a job somebody will publish: no second one.
    assert!(r
        .requeue_stale(Duration::ZERO, 100)
        .await
        .unwrap()
        .is_empty());
    let mut sent = publish_all(r).await;
    sent.sort();
    let mut want = vec![
        ("image".to_owned(), img.id.clone()),
        ("video".to_owned(), vid.id.clone()),
    ];
    want.sort();
    assert_eq!(
        sent, want,
        "the image from the start, the video at its transcode stage"
    );
    // Sent and still untouched after another period: written again, once.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        r.requeue_stale(Duration::from_millis(10), 100)
            .await
            .unwrap()
            .len(),
        2
    );
    // A media that ended is never touched.
    r.fail(&img.id, "corrupt_media", "x").await.unwrap();
    publish_all(r).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        r.requeue_stale(Duration::from_millis(10), 100)
            .await
            .unwrap(),
        vec![vid.id.clone()]
    );
}

#[tokio::test]
async fn postgres_stale_jobs_are_written_again() {
    let r = records(DbUrl::Postgres(common::pg_database().await)).await;
    stale_jobs_are_written_again(&r).await;
}

#[tokio::test]
async fn sqlite_stale_jobs_are_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let r = records(DbUrl::Sqlite(dir.path().join("t.db"))).await;
    stale_jobs_are_written_again(&r).await;
}
