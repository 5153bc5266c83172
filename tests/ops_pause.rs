//! `mediafleet ops pause|resume` and `ops audit` as an operator uses them, with `api` and `worker` as
//! separate processes, on RabbitMQ + Postgres, SQS (moto) + Postgres and the embedded queue + SQLite:
//!
//! 1. a photo becomes ready (the worker is taking `image`);
//! 2. `ops pause --class image` (a second pause changes nothing); uploads made while it is paused stay
//!    `queued`, their messages wait in the queue (`ops status` counts them ready and shows the class paused);
//! 3. `ops resume` and they become ready;
//! 4. `ops audit` shows the pause and the resume with who ran them; an unknown class is refused.

mod common;

use std::time::{Duration, Instant};

use common::fleet::{ops, ops_ok, sqs_url, start_fleet_opts, Fleet, FleetOpts};
use common::*;
use serde_json::Value;

async fn upload_id(base: &str, file: &str) -> String {
    let (status, v) = upload(base, &fixture(file), file).await;
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

fn image_class(doc: &Value) -> Value {
    doc["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "image")
        .cloned()
        .unwrap_or_else(|| panic!("no image class: {doc}"))
}

async fn pause_and_resume(f: Fleet) {
    let env = f.env.clone();
    let within = Duration::from_secs(90);
    let first = upload_id(&f.base, "photo.jpg").await;
    assert_eq!(wait_final(&f.base, &first, within).await["status"], "ready");

    let p = ops_ok(
        &env,
        &[
            "pause",
            "--class",
            "image",
            "--reason",
            "codec bug",
            "--json",
        ],
    );
    assert_eq!(
        (p["paused"].as_bool(), p["changed"].as_bool()),
        (Some(true), Some(true)),
        "{p}"
    );
    assert_eq!(p["reason"], "codec bug", "{p}");
    assert!(p["paused_by"].as_str().unwrap().starts_with("cli:"), "{p}");
    let again = ops_ok(&env, &["pause", "--class", "image", "--json"]);
    assert_eq!(again["changed"], false, "{again}");
    // Workers read pauses every 300 ms (the test config) and finish the receive they are in.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let held = [
        upload_id(&f.base, "palette.png").await,
        upload_id(&f.base, "lossy.webp").await,
    ];
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        for id in &held {
            let v = status_of(&f.base, id).await;
            assert_eq!(v["status"], "queued", "a paused class was worked on: {v}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let st = ops_ok(&env, &["status", "--json"]);
    let image = image_class(&st);
    assert_eq!(image["paused"], true, "{st}");
    assert!(
        image["ready"].as_u64().unwrap() >= 2,
        "the held jobs are not waiting in the queue: {st}"
    );

    let r = ops_ok(&env, &["resume", "--class", "image", "--json"]);
    assert_eq!(
        (r["paused"].as_bool(), r["changed"].as_bool()),
        (Some(false), Some(true)),
        "{r}"
    );
    for id in &held {
        assert_eq!(wait_final(&f.base, id, within).await["status"], "ready");
    }
    let st = ops_ok(&env, &["status", "--json"]);
    assert_eq!(image_class(&st)["paused"], false, "{st}");
    let r = ops_ok(&env, &["resume", "--class", "image", "--json"]);
    assert_eq!(r["changed"], false, "{r}");

    let audit = ops_ok(&env, &["audit", "--json"]);
    let actions: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["actor"].as_str().unwrap().starts_with("cli:"), "{e}");
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("resume".to_owned(), "image".to_owned()),
            ("pause".to_owned(), "image".to_owned())
        ],
        "{audit}"
    );
    let (ok, _, err) = ops(&env, &["pause", "--class", "nope"]);
    assert!(!ok && err.contains("no such class"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_on_rabbitmq_and_postgres() {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    pause_and_resume(start_fleet_opts(FleetOpts::on(amqp_url())).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_on_sqs_and_postgres() {
    pause_and_resume(start_fleet_opts(FleetOpts::on(sqs_url())).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_on_the_embedded_queue_and_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let f = start_fleet_opts(FleetOpts::embedded(data.path())).await;
    pause_and_resume(f).await;
}
