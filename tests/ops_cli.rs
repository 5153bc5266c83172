//! `mediafleet ops failed|replay|reprocess|dlq` as an operator uses them, on RabbitMQ + Postgres, SQS (moto)
//! + Postgres and the embedded queue + SQLite, with `api` and `worker` as separate processes on moto S3:
//!
//! 1. a hostile file fails on its own (`too_many_pixels`), a photo becomes ready;
//! 2. the worker is restarted with its storage unreachable and a 2 s outage budget: two photos outlast the
//!    budget, fail `storage_unavailable` and are dead-lettered with the reason;
//! 3. `ops workers` lists the live worker with its version, `ops status` counts the dead letters and the
//!    failures by code, `ops failed list` (filters, paging) and `ops failed show` (every attempt) tell the
//!    story without SQL;
//! 4. with storage back, `ops dlq redrive ID` sends one dead letter back and its media becomes ready;
//!    `ops dlq purge` refuses without `--yes` and then empties the DLQ;
//! 5. `ops replay --failed --code storage_unavailable` brings the purged job's media back to ready;
//!    `ops replay` of the hostile file runs it again (and it fails again, with one more attempt); a dry run
//!    changes nothing; `ops reprocess --profile default` makes every ready media again.

mod common;

use std::time::{Duration, Instant};

use common::fleet::{ops, ops_ok, refs, sqs_url, start_fleet_opts, Fleet, FleetOpts};
use common::*;
use serde_json::Value;

fn ids_of(v: &Value, list: &str, field: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {v}"))
        .iter()
        .map(|i| i[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn upload_id(base: &str, file: &str) -> String {
    let (status, v) = upload(base, &fixture(file), file).await;
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

fn worker(env: &[(String, String)], storage: &str) -> Proc {
    let env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "MEDIAFLEET_STORAGE")
        .cloned()
        .chain([("MEDIAFLEET_STORAGE".to_owned(), storage.to_owned())])
        .collect();
    Proc::spawn("worker", &["worker", "--concurrency", "2"], &refs(&env))
}

/// Dead letters of the image class, polled until `want` are there.
async fn image_dlq(env: &[(String, String)], want: usize) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let v = ops_ok(env, &["dlq", "list", "--class", "image", "--json"]);
        if v["items"].as_array().map_or(0, Vec::len) >= want || Instant::now() > until {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn operate(mut f: Fleet) {
    let env = f.env.clone();
    let storage = env
        .iter()
        .find(|(k, _)| k == "MEDIAFLEET_STORAGE")
        .unwrap()
        .1
        .clone();
    let within = Duration::from_secs(90);

    // 1. A file that fails on its own, and one that works.
    let hostile = upload_id(&f.base, "huge-dimensions.png").await;
    let good = upload_id(&f.base, "photo.jpg").await;
    let v = wait_final(&f.base, &hostile, within).await;
    assert_eq!(v["status"], "failed", "{v}");
    let hostile_code = v["error"]["code"].as_str().unwrap().to_owned();
    assert_eq!(wait_final(&f.base, &good, within).await["status"], "ready");

    // 2. Storage unreachable from the worker for longer than its outage budget.
    f.worker.kill();
    let dead_end = format!(
        "s3://nowhere?endpoint=http://127.0.0.1:{}&region=us-east-1&path_style=true",
        free_port()
    );
    f.worker = worker(&env, &dead_end);
    let stranded = [
        upload_id(&f.base, "palette.png").await,
        upload_id(&f.base, "lossy.webp").await,
    ];
    for id in &stranded {
        let v = wait_final(&f.base, id, within).await;
        assert_eq!(v["status"], "failed", "{v}");
        assert_eq!(v["error"]["code"], "storage_unavailable", "{v}");
    }
    let dlq = image_dlq(&env, 2).await;
    let dead_media = ids_of(&dlq, "items", "media_id");
    for id in &stranded {
        assert!(dead_media.contains(id), "{id} not dead-lettered: {dlq}");
    }
    for item in dlq["items"].as_array().unwrap() {
        assert!(
            item["reason"].as_str().unwrap().contains("outage budget"),
            "{item}"
        );
        assert_eq!(item["kind"], "media.process");
    }

    // The fleet at a glance: the broken worker is live, the DLQ and the failures are counted.
    let until = Instant::now() + Duration::from_secs(30);
    let workers = loop {
        let w = ops_ok(&env, &["workers", "--json"]);
        let pid = f.worker.child.id().to_string();
        let mine = w["workers"].as_array().unwrap().iter().any(|x| {
            x["id"]
                .as_str()
                .is_some_and(|id| id.ends_with(&format!(":{pid}")))
        });
        if mine || Instant::now() > until {
            break w;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let me = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| {
            x["id"]
                .as_str()
                .is_some_and(|id| id.ends_with(&format!(":{}", f.worker.child.id())))
        })
        .unwrap_or_else(|| panic!("the worker is not listed: {workers}"));
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"), "{me}");
    assert!(
        me["classes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "image"),
        "{me}"
    );
    let status = ops_ok(&env, &["status", "--json"]);
    let image = image_class(&status);
    assert_eq!(image["dlq"], 2, "{status}");
    assert!(image["live_workers"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(image["paused"], false);
    assert_eq!(
        status["failures_last_hour"]["storage_unavailable"], 2,
        "{status}"
    );
    assert_eq!(
        status["failures_last_hour"][hostile_code.as_str()],
        1,
        "{status}"
    );
    let (ok, _, err) = ops(&env, &["status"]);
    assert!(ok, "{err}");
    let scale = ops_ok(&env, &["scale", "--json"]);
    let image = image_class(&scale);
    for input in [
        "ready",
        "backlog_seconds",
        "cost_seconds",
        "arrival_per_second",
        "desired_workers",
    ] {
        assert!(!image[input].is_null(), "no {input}: {scale}");
    }

    // 3. What failed, and why.
    let all = ops_ok(&env, &["failed", "list", "--json"]);
    let listed = ids_of(&all, "items", "media_id");
    assert_eq!(listed.len(), 3, "{all}");
    assert!(
        listed.contains(&hostile) && !listed.contains(&good),
        "{all}"
    );
    assert_eq!(all["next_cursor"], Value::Null, "{all}");
    let outage = ops_ok(
        &env,
        &["failed", "list", "--code", "storage_unavailable", "--json"],
    );
    let mut outage_ids = ids_of(&outage, "items", "media_id");
    outage_ids.sort();
    let mut want = stranded.to_vec();
    want.sort();
    assert_eq!(outage_ids, want, "{outage}");
    let none = ops_ok(&env, &["failed", "list", "--kind", "video", "--json"]);
    assert_eq!(none["items"].as_array().unwrap().len(), 0, "{none}");
    let recent = ops_ok(&env, &["failed", "list", "--since", "10m", "--json"]);
    assert_eq!(recent["items"].as_array().unwrap().len(), 3, "{recent}");
    // Two pages of two and one, newest first, together the whole list.
    let p1 = ops_ok(&env, &["failed", "list", "--limit", "2", "--json"]);
    let cursor = p1["next_cursor"]
        .as_str()
        .expect("a next cursor")
        .to_owned();
    let p2 = ops_ok(
        &env,
        &[
            "failed", "list", "--limit", "2", "--cursor", &cursor, "--json",
        ],
    );
    let mut paged = ids_of(&p1, "items", "media_id");
    paged.extend(ids_of(&p2, "items", "media_id"));
    assert_eq!(paged, listed, "{p1} {p2}");
    let item = &all["items"][listed.iter().position(|i| *i == hostile).unwrap()];
    assert_eq!(item["code"], hostile_code.as_str());
    assert!(item["attempts"].as_i64().unwrap() >= 1, "{item}");
    let shown = ops_ok(&env, &["failed", "show", &stranded[0], "--json"]);
    assert_eq!(shown["status"], "failed");
    assert_eq!(shown["code"], "storage_unavailable");
    let tries = shown["attempts"].as_array().unwrap();
    assert!(!tries.is_empty(), "{shown}");
    assert!(
        tries
            .iter()
            .all(|a| a["worker"].as_str().is_some_and(|w| !w.is_empty())),
        "{shown}"
    );
    assert!(
        tries
            .iter()
            .any(|a| a["code"] == "storage_unavailable" && a["outcome"] == "dead_letter"),
        "{shown}"
    );
    // The table form works too.
    let (ok, _, err) = ops(&env, &["failed", "list"]);
    assert!(ok, "{err}");

    // 4. Storage is back: redrive one dead letter, purge the other.
    f.worker.kill();
    f.worker = worker(&env, &storage);
    let first = dlq["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["media_id"] == stranded[0].as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = ops_ok(&env, &["dlq", "show", &first, "--class", "image", "--json"]);
    assert_eq!(shown["media_id"], stranded[0].as_str(), "{shown}");
    assert!(shown["body"].as_str().unwrap().contains(&stranded[0]));
    let r = ops_ok(
        &env,
        &["dlq", "redrive", &first, "--class", "image", "--json"],
    );
    assert_eq!(ids_of_str(&r["moved"]), vec![first.clone()], "{r}");
    assert_eq!(
        ids_of_str(&r["revived_media"]),
        vec![stranded[0].clone()],
        "{r}"
    );
    let v = wait_final(&f.base, &stranded[0], within).await;
    assert_eq!(v["status"], "ready", "{v}");
    // Redriving it again moves nothing.
    let again = ops_ok(
        &env,
        &["dlq", "redrive", &first, "--class", "image", "--json"],
    );
    assert_eq!(ids_of_str(&again["moved"]), Vec::<String>::new(), "{again}");
    assert_eq!(
        ids_of_str(&again["skipped"]),
        vec![first.clone()],
        "{again}"
    );
    let (ok, _, err) = ops(&env, &["dlq", "purge", "--class", "image", "--json"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    assert_eq!(
        image_dlq(&env, 1).await["items"].as_array().unwrap().len(),
        1
    );
    let purged = ops_ok(
        &env,
        &["dlq", "purge", "--class", "image", "--yes", "--json"],
    );
    assert_eq!(purged["purged"], 1, "{purged}");
    let left = ops_ok(&env, &["dlq", "list", "--class", "image", "--json"]);
    assert_eq!(left["items"].as_array().unwrap().len(), 0, "{left}");

    // 5. Replays and a reprocess.
    let dry = ops_ok(&env, &["replay", "--failed", "--dry-run", "--json"]);
    assert_eq!(ids_of_str(&dry["replayed"]).len(), 2, "{dry}");
    assert_eq!(dry["dry_run"], true);
    let still = ops_ok(&env, &["failed", "list", "--json"]);
    assert_eq!(
        still["items"].as_array().unwrap().len(),
        2,
        "a dry run changed something: {still}"
    );
    let r = ops_ok(
        &env,
        &[
            "replay",
            "--failed",
            "--code",
            "storage_unavailable",
            "--json",
        ],
    );
    assert_eq!(ids_of_str(&r["replayed"]), vec![stranded[1].clone()], "{r}");
    let v = wait_final(&f.base, &stranded[1], within).await;
    assert_eq!(v["status"], "ready", "{v}");
    let before = item["attempts"].as_i64().unwrap();
    let r = ops_ok(&env, &["replay", &hostile, &good, "not-an-id", "--json"]);
    assert_eq!(ids_of_str(&r["replayed"]), vec![hostile.clone()], "{r}");
    let skipped = ids_of(&r, "skipped", "id");
    assert_eq!(skipped, vec![good.clone(), "not-an-id".to_owned()], "{r}");
    let v = wait_final(&f.base, &hostile, within).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["code"], hostile_code.as_str());
    let shown = ops_ok(&env, &["failed", "show", &hostile, "--json"]);
    assert!(
        shown["attempts"].as_array().unwrap().len() as i64 > before,
        "the replay left no attempt: {shown}"
    );
    let r = ops_ok(&env, &["reprocess", "--profile", "default", "--json"]);
    let mut again = ids_of_str(&r["replayed"]);
    again.sort();
    let mut ready = vec![good.clone(), stranded[0].clone(), stranded[1].clone()];
    ready.sort();
    assert_eq!(again, ready, "{r}");
    for id in &ready {
        assert_eq!(wait_final(&f.base, id, within).await["status"], "ready");
    }
    let (ok, _, err) = ops(&env, &["reprocess", "--profile", "nope", "--json"]);
    assert!(!ok && err.contains("unknown profile"), "{err}");
}

/// The `image` entry of a document's `classes`.
fn image_class(doc: &Value) -> &Value {
    doc["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "image")
        .unwrap_or_else(|| panic!("no image class: {doc}"))
}

fn ids_of_str(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect()
}

const WORKER: &str = r#"outage_budget = "2s""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_on_rabbitmq_and_postgres() {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    let f = start_fleet_opts(FleetOpts {
        worker_config: WORKER.into(),
        ..FleetOpts::on(amqp_url())
    })
    .await;
    operate(f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_on_sqs_and_postgres() {
    let f = start_fleet_opts(FleetOpts {
        worker_config: WORKER.into(),
        ..FleetOpts::on(sqs_url())
    })
    .await;
    operate(f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_on_the_embedded_queue_and_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let f = start_fleet_opts(FleetOpts {
        worker_config: WORKER.into(),
        ..FleetOpts::embedded(data.path())
    })
    .await;
    operate(f).await;
}
