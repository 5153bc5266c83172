//! A worker cut off from the broker, the database and storage in the middle of a job: `api` on RabbitMQ, moto
//! S3 and Postgres, and one worker inside a network namespace of its own (`ip netns` + a veth pair), reaching
//! the three through TCP forwarders on the host end of the veth. While it transcodes a 720p clip the veth link
//! goes down for 60 s (packets dropped, no connection reset). RabbitMQ misses its heartbeats (5 s, set on its
//! AMQP URL) and gives the message back; a worker on the host takes the job over and makes the media ready.
//! When the link comes back the cut-off worker's late writes change nothing: the media's version and its
//! rendition rows stay as the takeover left them, and no object is left that no row points at. Prints
//! `lost=… duplicated=… orphaned=…`.

mod common;

use std::time::{Duration, Instant};

use common::chaos::{busy_children, count, env_of, leftover_jobs};
use common::fleet::{refs, start_fleet_with};
use common::host::Netns;
use common::proxy::Proxy;
use common::*;

const CUT: Duration = Duration::from_secs(60);

async fn media_row(db: &str, id: &str) -> (String, Option<String>, i64, Vec<(String, String)>) {
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(db)
        .await
        .unwrap();
    let (status, stage, version): (String, Option<String>, i64) =
        sqlx::query_as("SELECT status, stage, version FROM media WHERE id = $1")
            .bind(id)
            .fetch_one(&mut pg)
            .await
            .unwrap();
    let rows = sqlx::query_as("SELECT name, key FROM renditions WHERE media_id = $1 ORDER BY name")
        .bind(id)
        .fetch_all(&mut pg)
        .await
        .unwrap();
    (status, stage, version, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_cut_off_mid_job_is_taken_over_and_its_late_writes_change_nothing() {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let clip = mpeg4_clip(dir.path(), 30);

    let ns = Netns::create();
    let host = ns.host.to_string();
    let amqp = Proxy::start_on(&host, "127.0.0.1:5672").await;
    let pg_addr = pg_server()
        .trim_start_matches("postgres://postgres@")
        .to_owned();
    let pg = Proxy::start_on(&host, &pg_addr).await;
    let s3 = Proxy::start_on(&host, s3_endpoint().trim_start_matches("http://")).await;
    let (bucket, storage) = moto_bucket().await;
    let mut f = start_fleet_with(amqp_url(), Some(storage), vec![], "").await;
    // The host's worker waits in the wings until the cut.
    f.worker.kill();
    let db = env_of(&f, "MEDIAFLEET_DB");
    let ns_data = dir.path().join("ns-data");
    let inside: Vec<(String, String)> = f
        .env
        .iter()
        .cloned()
        .map(|(k, v)| match k.as_str() {
            "MEDIAFLEET_QUEUE" => (
                k,
                format!("amqp://guest:guest@{host}:{}/%2f?heartbeat=5", amqp.port),
            ),
            "MEDIAFLEET_DB" => (
                k,
                v.replace(&pg_addr, &format!("{host}:{}", pg.port)),
            ),
            "MEDIAFLEET_STORAGE" => (
                k,
                format!(
                    "s3://{bucket}?endpoint=http://{host}:{}&region=us-east-1&path_style=true&timeout=5s&stall_timeout=5s",
                    s3.port
                ),
            ),
            "MEDIAFLEET_DATA_DIR" => (k, ns_data.display().to_string()),
            _ => (k, v),
        })
        .collect();
    let mut cut_off = Proc::spawn_in_netns(
        &ns.name,
        "worker-in-netns",
        &["worker", "--concurrency", "1"],
        &refs(&inside),
    );

    let (code, b) = upload(&f.base, &clip, "long.mp4").await;
    assert_eq!(code, 202, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    // Wait until the cut-off worker runs the transcode (a media child under its data directory).
    let needle = ns_data.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, stage, _, _) = media_row(&db, &id).await;
        if status == "processing"
            && stage.as_deref() == Some("transcode")
            && !busy_children(&needle).is_empty()
        {
            break;
        }
        assert!(
            status != "ready" && status != "failed",
            "the media ended before the cut: {status}"
        );
        assert!(
            Instant::now() < deadline,
            "the cut-off worker never ran the transcode"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let child_at_cut = !busy_children(&needle).is_empty();
    ns.link_down();
    let cut_at = Instant::now();
    eprintln!("link down at {:?}", started.elapsed());
    f.worker = Proc::spawn("worker", &["worker", "--concurrency", "2"], &refs(&f.env));
    // The takeover, within the cut.
    let mut taken_over = None;
    while cut_at.elapsed() < CUT {
        if taken_over.is_none() && media_row(&db, &id).await.0 == "ready" {
            taken_over = Some(cut_at.elapsed());
            eprintln!(
                "ready on the host's worker {:?} after the cut",
                cut_at.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let before = media_row(&db, &id).await;
    ns.link_up();
    eprintln!("link up at {:?}", started.elapsed());
    // The cut-off worker comes back: let it finish or give up what it was doing.
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline
        && (!busy_children(&needle).is_empty()
            || !leftover_jobs(&ns_data.join("scratch")).is_empty())
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled = deadline.saturating_duration_since(Instant::now()) > Duration::ZERO;
    let after = media_row(&db, &id).await;
    let c = count(
        &f,
        &bucket,
        std::slice::from_ref(&id),
        Duration::from_secs(120),
    )
    .await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db)
        .await
        .unwrap();
    let attempts: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT attempt, worker, outcome FROM job_attempts WHERE media_id = $1 ORDER BY started_at",
    )
    .bind(&id)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let alive = cut_off.child.try_wait().unwrap().is_none();
    cut_off.kill();
    println!(
        "{c} child_at_cut={child_at_cut} taken_over_after={taken_over:?} version_before={} version_after={} cut_off_settled={settled} cut_off_alive={alive} attempts={attempts:?} wall={:?}",
        before.2,
        after.2,
        started.elapsed()
    );
    assert!(
        child_at_cut,
        "the cut did not fall in the middle of the job"
    );
    assert!(taken_over.is_some(), "no takeover within the {CUT:?} cut");
    assert_eq!(
        before, after,
        "the cut-off worker's late writes changed the media"
    );
    assert!(
        settled,
        "the cut-off worker was still busy 90 s after the link came back"
    );
    c.assert_zero();
}
