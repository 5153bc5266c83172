//! A running `fleet` as an operator steers and scrapes it, on the embedded backend (`api` and `fleet` share a
//! data dir):
//!
//! - fleet-spawned workers serve their own `/metrics` (`fleet --worker-metrics-ports FIRST-LAST`): each child
//!   takes the lowest free port of the range; a photo processed by the fleet's worker is counted on the
//!   worker's own page, while the fleet's page keeps the scaler's gauges;
//! - `ops scale --class image --workers 3` makes the idle fleet run 3 workers (`decided_by: "override"`),
//!   `ops scale --class image --auto` hands it back to the policy, which shrinks it to its minimum; both are
//!   in the audit log.

mod common;

use std::time::{Duration, Instant};

use common::fleet::{ops_ok, refs};
use common::scale::{metrics, start_api_and_fleet, wait_workers};
use common::*;

/// A run of `n` consecutive ports nobody listens on.
fn free_range(n: u16) -> u16 {
    for _ in 0..200 {
        let first = 20_000 + (rand::random::<u16>() % 30_000);
        let all_free =
            (first..first + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return first;
        }
    }
    panic!("no {n} consecutive free ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_workers_serve_metrics_on_their_own_ports() {
    let dir = tempfile::tempdir().unwrap();
    let config = fast_config(dir.path(), "");
    let (port, mport) = (free_port(), free_port());
    let first = free_range(3);
    let env: Vec<(String, String)> = vec![
        ("MEDIAFLEET_QUEUE".into(), "embedded".into()),
        ("MEDIAFLEET_PREFIX".into(), unique("p")),
        ("MEDIAFLEET_CONFIG".into(), config.display().to_string()),
        (
            "MEDIAFLEET_DATA_DIR".into(),
            dir.path().join("data").display().to_string(),
        ),
        ("MEDIAFLEET_LISTEN".into(), format!("127.0.0.1:{port}")),
    ];
    let base = format!("http://127.0.0.1:{port}");
    let mbase = format!("http://127.0.0.1:{mport}");
    let _api = Proc::spawn("api", &["api"], &refs(&env));
    wait_healthy(&base, Duration::from_secs(60)).await;
    let mut fleet = Proc::spawn(
        "fleet",
        &[
            "fleet",
            "--classes",
            "image",
            "--min",
            "1",
            "--max",
            "1",
            "--poll-interval",
            "1s",
            "--metrics-listen",
            &format!("127.0.0.1:{mport}"),
            "--worker-metrics-ports",
            &format!("{first}-{}", first + 2),
        ],
        &refs(&env),
    );
    wait_healthy(&mbase, Duration::from_secs(60)).await;
    wait_workers(
        &mbase,
        Duration::from_secs(30),
        "fleet starts one worker",
        |n| n == 1.0,
    )
    .await;

    // The worker takes the first port of the range.
    let wbase = format!("http://127.0.0.1:{first}");
    wait_healthy(&wbase, Duration::from_secs(60)).await;
    let (status, v) = upload(&base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(
        wait_final(&base, &id, Duration::from_secs(90)).await["status"],
        "ready"
    );
    // The job is counted on the worker's own page (its counters are its own, not the fleet's).
    let deadline = Instant::now() + Duration::from_secs(15);
    let counted = loop {
        let page = metrics(&wbase).await;
        let line = page
            .lines()
            .find(|l| {
                l.starts_with("mediafleet_jobs_total{")
                    && l.contains("class=\"image\"")
                    && l.contains("status=\"ok\"")
            })
            .map(str::to_owned);
        if let Some(l) = line {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "the worker's /metrics never counted the job:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!counted.ends_with(" 0"), "{counted}");
    // The fleet's page still has the scaler's gauges, and nothing listens on the next port of the range.
    assert!(metrics(&mbase)
        .await
        .contains("mediafleet_current_workers{class=\"image\"} 1"));
    assert!(
        reqwest::get(format!("http://127.0.0.1:{}/metrics", first + 1))
            .await
            .is_err(),
        "a second worker port is served with one worker"
    );
    assert_eq!(
        fleet.terminate(Duration::from_secs(30)),
        Some(0),
        "fleet drains its worker and exits 0"
    );
}

fn image_decision(doc: &serde_json::Value) -> serde_json::Value {
    doc["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "image")
        .cloned()
        .unwrap_or_else(|| panic!("no image class: {doc}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_scale_sets_a_running_fleet_and_hands_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = vec![
        ("MEDIAFLEET_QUEUE".into(), "embedded".into()),
        ("MEDIAFLEET_PREFIX".into(), unique("p")),
    ];
    // min 1, max 4, 1 s polls, 10 s scale-down window; waits until it runs its minimum.
    let (_api, mut fleet, _base, mbase) = start_api_and_fleet(&mut env, dir.path(), "").await;

    let doc = ops_ok(
        &env,
        &["scale", "--class", "image", "--workers", "3", "--json"],
    );
    let image = image_decision(&doc);
    assert_eq!(
        (
            image["desired_workers"].as_u64(),
            image["decided_by"].as_str()
        ),
        (Some(3), Some("override")),
        "{doc}"
    );
    let t0 = Instant::now();
    wait_workers(
        &mbase,
        Duration::from_secs(30),
        "the fleet follows the override",
        |n| n == 3.0,
    )
    .await;
    eprintln!(
        "ops scale: the fleet ran 3 workers {:?} after the override",
        t0.elapsed()
    );
    // It holds while the queue stays empty (the policy alone would want the minimum).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let page = metrics(&mbase).await;
    assert!(
        page.contains("mediafleet_current_workers{class=\"image\"} 3"),
        "the override did not hold:\n{page}"
    );

    let doc = ops_ok(&env, &["scale", "--class", "image", "--auto", "--json"]);
    assert_ne!(image_decision(&doc)["decided_by"], "override", "{doc}");
    wait_workers(
        &mbase,
        Duration::from_secs(60),
        "back to the policy's minimum",
        |n| n == 1.0,
    )
    .await;

    let audit = ops_ok(&env, &["audit", "--action", "scale", "--json"]);
    let details: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert_eq!(details, vec!["auto", "workers=3 until --auto"], "{audit}");
    let (ok, _, err) = common::fleet::ops(&env, &["scale", "--class", "image"]);
    assert!(!ok && err.contains("--workers N or --auto"), "{err}");
    assert_eq!(
        fleet.terminate(Duration::from_secs(30)),
        Some(0),
        "fleet drains its workers and exits 0"
    );
}
