//! The scaler's rows of migration 0005, on Postgres and SQLite: known-size work (noted, started, taken),
//! the per-media-second rates, open attempts per recorded class, and heartbeats with jobs in flight.

mod common;

use mediafleet::config::DbUrl;
use mediafleet::db::Records;
use mediafleet::scale::store;

async fn records(url: DbUrl) -> Records {
    let r = Records::connect(&url, None).await.expect("connect");
    r.migrate().await.expect("migrate");
    r
}

async fn round_trip(r: &Records) {
    let since = mediafleet::db::now_ms() - 60_000;
    r.note_queued_work("job-a", "video", "default", 600.0)
        .await
        .unwrap();
    r.note_queued_work("job-b", "video", "streaming", 3600.0)
        .await
        .unwrap();
    // Idempotent per job id.
    r.note_queued_work("job-b", "video", "streaming", 3600.0)
        .await
        .unwrap();
    let mut known = r.known_work(since).await.unwrap();
    known.sort_by(|a, b| a.profile.cmp(&b.profile));
    assert_eq!(known.len(), 2, "{known:?}");
    assert_eq!(
        (
            known[0].ready_jobs,
            known[0].ready_media_seconds,
            known[0].running_jobs
        ),
        (1, 600.0, 0)
    );
    assert_eq!(known[1].ready_media_seconds, 3600.0);

    r.start_queued_work("job-b").await.unwrap();
    let known = r.known_work(since).await.unwrap();
    let streaming = known.iter().find(|k| k.profile == "streaming").unwrap();
    assert_eq!(
        (
            streaming.ready_jobs,
            streaming.ready_media_seconds,
            streaming.running_jobs
        ),
        (0, 0.0, 1)
    );
    let running = r.running_known_work(since).await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(
        (running[0].0.as_str(), running[0].1.as_str(), running[0].2),
        ("video", "streaming", 3600.0)
    );

    assert_eq!(
        r.take_queued_work("job-b").await.unwrap(),
        Some(("streaming".to_owned(), 3600.0))
    );
    assert_eq!(r.take_queued_work("job-b").await.unwrap(), None);

    r.record_media_rate("video", "streaming", 0.8, 0.5)
        .await
        .unwrap();
    r.record_media_rate("video", "streaming", 1.0, 0.5)
        .await
        .unwrap();
    let rates = r.media_rates().await.unwrap();
    assert_eq!(rates.len(), 1);
    assert!(
        (rates[0].seconds_per_media_second - 0.9).abs() < 1e-9,
        "{rates:?}"
    );
    assert_eq!(rates[0].samples, 2);

    // Open attempts carry the class the worker took them from.
    r.start_attempt("j1", 1, "m1", "media.process", "video", "w:1")
        .await
        .unwrap();
    r.start_attempt("j2", 1, "m2", "media.process", "image", "w:1")
        .await
        .unwrap();
    let mut open = r.open_attempts_by_class(since).await.unwrap();
    open.sort();
    assert_eq!(
        open,
        vec![
            (Some("image".to_owned()), "media.process".to_owned(), 1),
            (Some("video".to_owned()), "media.process".to_owned(), 1)
        ]
    );

    // Heartbeats carry jobs in flight.
    store::heartbeat(r, "host:4242", &["image".to_owned()], "", 2)
        .await
        .unwrap();
    let seen = store::seen_workers(r, since).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].worker_id.as_str(), seen[0].in_flight),
        ("host:4242", 2)
    );
}

#[tokio::test]
async fn known_work_on_postgres() {
    let r = records(DbUrl::Postgres(common::pg_database().await)).await;
    round_trip(&r).await;
}

#[tokio::test]
async fn known_work_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let r = records(DbUrl::Sqlite(dir.path().join("m.db"))).await;
    round_trip(&r).await;
}
