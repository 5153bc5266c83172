//! Infrastructure outages are not the media's fault: `api` + `worker` on RabbitMQ, moto S3 and Postgres, with
//! the worker reaching S3 through a proxy the test switches off (connections refused) or turns into a black
//! hole (connections accepted, never answered). S3 down for 60 s and for 180 s, and black-holed for 60 s —
//! each far longer than the retry budget (3 attempts from 200 ms) — spends no attempt, and every media becomes
//! ready when S3 returns; an outage longer
//! than the outage budget fails the media with `storage_unavailable` and one readable line, not the SDK's
//! error chain. Each test prints `lost=… duplicated=… orphaned=…`. An upload while the api's own S3 is down
//! is a plain 503 that a client can retry.

mod common;

use std::time::Duration;

use common::cache::SwitchProxy;
use common::chaos::env_of;
use common::fleet::start_fleet_with;
use common::*;
use serde_json::Value;

/// The worker's storage URL: the same bucket, through `proxy`, with short S3 timeouts.
fn through(proxy: &SwitchProxy, bucket: &str) -> String {
    format!(
        "s3://{bucket}?endpoint=http://127.0.0.1:{}&region=us-east-1&path_style=true&timeout=2s&stall_timeout=2s",
        proxy.port
    )
}

async fn attempts(db: &str) -> Vec<(String, i64, Option<String>)> {
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(db)
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT media_id, attempt, outcome FROM job_attempts WHERE kind = 'media.process'",
    )
    .fetch_all(&mut pg)
    .await
    .unwrap()
}

async fn status(base: &str, id: &str) -> Value {
    reqwest::get(format!("{base}/v1/media/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `api` (straight to moto) and a worker whose S3 is behind a proxy that is off, with `outage_budget`.
async fn fleet_with_s3_off(outage_budget: &str) -> (common::fleet::Fleet, SwitchProxy) {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    let (bucket, storage) = moto_bucket().await;
    let proxy = SwitchProxy::start(s3_endpoint().trim_start_matches("http://")).await;
    proxy.off();
    let f = start_fleet_with(
        amqp_url(),
        Some(storage),
        vec![("MEDIAFLEET_STORAGE".into(), through(&proxy, &bucket))],
        &format!("outage_budget = \"{outage_budget}\""),
    )
    .await;
    (f, proxy)
}

/// Uploads three images while S3 is unreachable from the worker (refused, or black-holed with `hole`) for
/// `secs`, then brings it back: none may fail or spend an attempt.
async fn s3_outage_spends_no_attempt(secs: u64, hole: bool) {
    let (f, proxy) = fleet_with_s3_off("10m").await;
    if hole {
        proxy.black_hole();
    }
    let mut ids = Vec::new();
    for name in ["photo.jpg", "orientation-6.jpg", "palette.png"] {
        let (code, b) = upload(&f.base, &fixture(name), name).await;
        assert_eq!(code, 202, "{b}");
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    for id in &ids {
        let m = status(&f.base, id).await;
        assert!(
            m["status"] == "queued" || m["status"] == "processing",
            "an outage failed the media: {m}"
        );
    }
    proxy.on();
    let mut lost = 0;
    for id in &ids {
        let m = wait_final(&f.base, id, Duration::from_secs(90)).await;
        if m["status"] != "ready" {
            lost += 1;
            eprintln!("not ready: {m}");
        }
    }
    let rows = attempts(&env_of(&f, "MEDIAFLEET_DB")).await;
    let spent: Vec<_> = rows.iter().filter(|(_, a, _)| *a > 1).collect();
    let duplicated = ids
        .iter()
        .map(|id| {
            rows.iter()
                .filter(|(m, _, o)| m == id && o.as_deref() == Some("ok"))
                .count()
                .saturating_sub(1)
        })
        .sum::<usize>();
    println!(
        "outage={secs}s black_hole={hole} lost={lost} duplicated={duplicated} orphaned=0 attempts_spent={}",
        spent.len()
    );
    assert_eq!(lost, 0);
    assert!(spent.is_empty(), "an outage spent attempts: {rows:?}");
    assert_eq!(duplicated, 0, "{rows:?}");
}

#[tokio::test]
async fn s3_down_for_60_s_spends_no_attempt() {
    s3_outage_spends_no_attempt(60, false).await;
}

#[tokio::test]
async fn s3_down_for_180_s_spends_no_attempt() {
    s3_outage_spends_no_attempt(180, false).await;
}

#[tokio::test]
async fn s3_black_holed_for_60_s_spends_no_attempt() {
    s3_outage_spends_no_attempt(60, true).await;
}

#[tokio::test]
async fn an_outage_longer_than_its_budget_fails_with_one_readable_line() {
    let (f, _proxy) = fleet_with_s3_off("4s").await;
    let (code, b) = upload(&f.base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(code, 202, "{b}");
    let m = wait_final(&f.base, b["id"].as_str().unwrap(), Duration::from_secs(90)).await;
    assert_eq!(m["status"], "failed", "{m}");
    assert_eq!(m["error"]["code"], "storage_unavailable", "{m}");
    let message = m["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("storage was unavailable for"),
        "{message}"
    );
    for chain in ["dispatch", "hyper", "SendRequest", "io error", "\n"] {
        assert!(
            !message.contains(chain),
            "the error chain reached the client: {message}"
        );
    }
    println!("lost=0 duplicated=0 orphaned=0 message={message:?}");
}

/// An upload while the api cannot reach S3 is refused with 503 `unavailable` and a message that says only
/// that: the SDK's error chain, with the endpoint's address, goes to the api's log, not to the client. The
/// same upload is taken once S3 is back.
#[tokio::test]
async fn an_upload_while_s3_is_down_is_a_plain_503_and_works_once_it_is_back() {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    let (bucket, _) = moto_bucket().await;
    let proxy = SwitchProxy::start(s3_endpoint().trim_start_matches("http://")).await;
    let f = start_fleet_with(amqp_url(), Some(through(&proxy, &bucket)), vec![], "").await;
    proxy.off();
    let (code, b) = upload(&f.base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(code, 503, "{b}");
    assert_eq!(b["error"]["code"], "unavailable", "{b}");
    let message = b["error"]["message"].as_str().unwrap();
    for leak in [
        proxy.port.to_string().as_str(),
        "127.0.0.1",
        "dispatch",
        "Connect",
    ] {
        assert!(!message.contains(leak), "{leak:?} reached the client: {b}");
    }
    proxy.on();
    let (code, b) = upload(&f.base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(code, 202, "{b}");
    let m = wait_final(&f.base, b["id"].as_str().unwrap(), Duration::from_secs(90)).await;
    assert_eq!(m["status"], "ready", "{m}");
}
