//! The bulk lane on real servers: a backfill (`ops reprocess`) of many large photos is queued, then a user
//! uploads a photo. The upload travels in the live lane (`image`), the backfill in the bulk lane
//! (`image-bulk`), which a worker takes only when its live queue came back empty and never into more than half
//! its slots (the default `bulk_share`). So the upload is ready within the image class's target latency
//! (10 s) while most of the backfill is still waiting; with one queue it would wait behind all of it.
//!
//! Run on RabbitMQ + Postgres, SQS (moto) + Postgres and the embedded queue + SQLite, with `api` and `worker`
//! (concurrency 2, so one bulk slot) as separate processes.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fleet::{ops_ok, sqs_url, start_fleet_opts, Fleet, FleetOpts};
use common::*;
use serde_json::Value;

/// Media in the backfill.
const BACKFILL: usize = 12;
/// The image class's target latency (the scaler's default).
const TARGET: Duration = Duration::from_secs(10);

/// A 2400×1600 JPEG with detail everywhere, so each rendition job of the backfill does real work.
fn big_photo(path: &Path) {
    let img = image::RgbImage::from_fn(2400, 1600, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 7;
        image::Rgb([
            (x / 10) as u8 ^ n as u8,
            (y / 7) as u8,
            (x + y) as u8 ^ (n >> 8) as u8,
        ])
    });
    img.save_with_format(path, image::ImageFormat::Jpeg)
        .unwrap();
}

async fn upload_id(base: &str, path: &Path, name: &str) -> String {
    let (status, v) = upload(base, path, name).await;
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

async fn status_of(base: &str, id: &str) -> Value {
    reqwest::get(format!("{base}/v1/media/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn backfill_leaves_live_uploads_alone(f: Fleet) {
    let within = Duration::from_secs(120);
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.jpg");
    big_photo(&big);
    let mut ids = Vec::with_capacity(BACKFILL);
    for i in 0..BACKFILL {
        ids.push(upload_id(&f.base, &big, &format!("big-{i}.jpg")).await);
    }
    for id in &ids {
        assert_eq!(wait_final(&f.base, id, within).await["status"], "ready");
    }

    // The backfill: every ready media again, through the bulk lane.
    let r = ops_ok(&f.env, &["reprocess", "--profile", "default", "--json"]);
    assert_eq!(
        r["replayed"].as_array().unwrap().len(),
        BACKFILL,
        "not every media was requeued: {r}"
    );
    // Let the backfill get going: its jobs are published and the worker is busy with them.
    let started = Instant::now();
    loop {
        let mut busy = 0;
        for id in &ids {
            if status_of(&f.base, id).await["status"] != "queued" {
                busy += 1;
            }
        }
        if busy > 0 {
            break;
        }
        assert!(
            started.elapsed() < within,
            "the backfill never started (nothing took image-bulk)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let uploaded = Instant::now();
    let live = upload_id(&f.base, &fixture("photo.jpg"), "photo.jpg").await;
    let v = wait_final(&f.base, &live, within).await;
    let latency = uploaded.elapsed();
    assert_eq!(v["status"], "ready", "{v}");
    let mut waiting = 0;
    for id in &ids {
        if status_of(&f.base, id).await["status"] != "ready" {
            waiting += 1;
        }
    }
    eprintln!(
        "bulk lane: the live upload was ready in {:.2} s with {waiting} of {BACKFILL} backfill media not yet done",
        latency.as_secs_f64()
    );
    assert!(
        waiting * 4 >= BACKFILL,
        "the live upload waited behind the backfill: ready in {latency:?} with only {waiting} of {BACKFILL} \
         backfill media left"
    );
    assert!(
        latency <= TARGET,
        "the live upload took {latency:?}, past the image class's target latency {TARGET:?}"
    );

    // The backfill finishes, and none of it was dead-lettered (the bulk lane has its own DLQ).
    for id in &ids {
        assert_eq!(wait_final(&f.base, id, within).await["status"], "ready");
    }
    let dlq = ops_ok(&f.env, &["dlq", "list", "--class", "image-bulk", "--json"]);
    assert_eq!(dlq["items"].as_array().unwrap().len(), 0, "{dlq}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_lane_on_rabbitmq_and_postgres() {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    backfill_leaves_live_uploads_alone(start_fleet_opts(FleetOpts::on(amqp_url())).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_lane_on_sqs_and_postgres() {
    backfill_leaves_live_uploads_alone(start_fleet_opts(FleetOpts::on(sqs_url())).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_lane_on_the_embedded_queue_and_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let f = start_fleet_opts(FleetOpts::embedded(data.path())).await;
    backfill_leaves_live_uploads_alone(f).await;
}
