//! A worker that loses its lease stops the job: `serve` on the embedded defaults runs a transcode, and the
//! test takes the lease away from under it (as a second consumer would after the lease ran out). The next
//! heartbeat finds the lease gone and the job is stopped, not finished alongside the new owner; the attempt
//! is recorded `lease_lost`, and the redelivered message makes the media ready once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sqlx::Connection;

async fn sqlite(path: &std::path::Path) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_lost_lease_stops_the_job() {
    let dir = tempfile::tempdir().unwrap();
    // A 60 s 720p clip: long enough that its transcode outlives a few heartbeats.
    let clip = mpeg4_clip(dir.path(), 60);
    let cfg = fast_config_with(dir.path(), r#"lease = "1s""#, "");
    let data = dir.path().join("data");
    let (_serve, base) = serve_embedded(dir.path(), &cfg).await;
    let (code, b) = upload(&base, &clip, "long.mp4").await;
    assert_eq!(code, 202, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();

    // Wait for the transcode to be leased, then take the lease away.
    let mut queue = sqlite(&data.join("queue.db")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = sqlx::query(
            "UPDATE queue_messages SET lease_token = 'taken-by-another-worker' \
             WHERE class = 'video' AND state = 'ready' AND lease_token IS NOT NULL",
        )
        .execute(&mut queue)
        .await
        .unwrap()
        .rows_affected();
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the transcode was never leased");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The lost lease is noticed at the next heartbeat (every half second) and the attempt ends `lease_lost`.
    let mut db = sqlite(&data.join("mediafleet.db")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lost: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM job_attempts WHERE media_id = $1 AND outcome = 'lease_lost'",
        )
        .bind(&id)
        .fetch_one(&mut db)
        .await
        .unwrap();
        if lost == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job ran on after its lease was taken"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The message becomes visible again when the taken lease runs out, and the media ends ready.
    let m = wait_final(&base, &id, Duration::from_secs(120)).await;
    assert_eq!(m["status"], "ready", "{m}");
    let ok: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_attempts WHERE media_id = $1 AND outcome = 'ok'",
    )
    .bind(&id)
    .fetch_one(&mut db)
    .await
    .unwrap();
    println!("lease_lost=1 ok_attempts={ok}");
}
