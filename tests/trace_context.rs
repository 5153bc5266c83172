//! W3C trace context from the upload to the worker, across processes: `api` and `worker` apart on the
//! embedded queue, the worker logging JSON (`MEDIAFLEET_LOG_FORMAT=json`). An upload sent with a
//! `traceparent` is answered with it; the worker's log lines for that media's job carry its trace id (and the
//! job and media ids); an upload without one is given a new trace.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn upload_traced(base: &str, traceparent: Option<&str>) -> (String, String) {
    let part = reqwest::multipart::Part::bytes(std::fs::read(fixture("photo.jpg")).unwrap())
        .file_name("photo.jpg");
    let mut req = reqwest::Client::new()
        .post(format!("{base}/v1/uploads"))
        .multipart(reqwest::multipart::Form::new().part("file", part));
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 202);
    let answered = r
        .headers()
        .get("traceparent")
        .expect("the answer carries the trace context")
        .to_str()
        .unwrap()
        .to_owned();
    let v: Value = r.json().await.unwrap();
    (v["id"].as_str().unwrap().to_owned(), answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploads_trace_id_reaches_the_workers_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fast_config(dir.path(), "");
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [
        ("MEDIAFLEET_CONFIG", cfg.to_str().unwrap().to_owned()),
        (
            "MEDIAFLEET_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("MEDIAFLEET_LISTEN", listen.clone()),
    ];
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _api = Proc::spawn("api", &["api"], &refs);
    let base = format!("http://{listen}");
    wait_healthy(&base, Duration::from_secs(30)).await;
    let log_path = dir.path().join("worker.log");
    let mut cmd = Command::new(bin());
    cmd.args(["worker", "--concurrency", "1"])
        .envs(refs.iter().copied())
        .env("MEDIAFLEET_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,sqlx=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let mut worker = cmd.spawn().expect("spawn worker");

    let sent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let (id, answered) = upload_traced(&base, Some(&sent)).await;
    assert_eq!(answered, sent);
    let (other, started) = upload_traced(&base, None).await;
    assert!(
        started.starts_with("00-") && !started.contains(TRACE_ID),
        "{started}"
    );
    for m in [&id, &other] {
        assert_eq!(
            wait_final(&base, m, Duration::from_secs(60)).await["status"],
            "ready"
        );
    }
    let _ = worker.kill();
    let _ = worker.wait();

    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "the worker logged no JSON: {log}");
    let ours: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["trace_id"] == TRACE_ID)
        .collect();
    assert!(
        !ours.is_empty(),
        "no worker log line has the upload's trace id:\n{log}"
    );
    for l in &ours {
        assert_eq!(l["span"]["media_id"], id.as_str(), "{l}");
        assert!(l["span"]["job_id"].is_string(), "{l}");
    }
    let theirs = started.split('-').nth(1).unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["trace_id"] == theirs && l["span"]["media_id"] == other.as_str()),
        "the started trace did not reach the worker:\n{log}"
    );
}
