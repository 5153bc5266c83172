//! W3C trace context from the upload to the worker, across processes: `api` and `worker` apart on the
//! embedded queue, the worker logging JSON (`MEDIAFLEET_LOG_FORMAT=json`). An upload sent with a
//! `traceparent` is answered with it; the worker's log lines for that media's job carry its trace id (and the
//! job and media ids); an upload without one is given a new trace. With the `otlp` feature (on in test
//! builds), both processes export their spans to a collector stand-in, where the upload's request span is the
//! parent of its job's span.

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

/// One span as the collector stand-in received it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: std::collections::HashMap<String, String>,
}

/// An OTLP/HTTP collector stand-in: `POST /v1/traces` with an `ExportTraceServiceRequest` in protobuf, as
/// the OpenTelemetry Collector's `otlphttp` receiver takes it. Returns its base URL and what it received.
async fn collector() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Received>>>) {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;

    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/x-protobuf");
                    let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    let text =
                        |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                        {
                            Some(Any::StringValue(s)) => s.clone(),
                            Some(Any::IntValue(i)) => i.to_string(),
                            other => format!("{other:?}"),
                        };
                    let mut out = store.lock().unwrap();
                    for rs in req.resource_spans {
                        let service = rs
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .map(|a| text(&a.value))
                            .unwrap_or_default();
                        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                            out.push(Received {
                                service: service.clone(),
                                name: span.name,
                                kind: span.kind,
                                trace_id: hex::encode(&span.trace_id),
                                span_id: hex::encode(&span.span_id),
                                parent_span_id: hex::encode(&span.parent_span_id),
                                attributes: span
                                    .attributes
                                    .iter()
                                    .map(|a| (a.key.clone(), text(&a.value)))
                                    .collect(),
                            });
                        }
                    }
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_as_one_trace() {
    let (endpoint, got) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fast_config(dir.path(), "");
    let listen = format!("127.0.0.1:{}", free_port());
    let data = dir.path().join("data").display().to_string();
    let common = [
        ("MEDIAFLEET_CONFIG", cfg.to_str().unwrap()),
        ("MEDIAFLEET_DATA_DIR", data.as_str()),
        ("MEDIAFLEET_LISTEN", listen.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // Export every 100 ms instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut api_env = common.to_vec();
    api_env.push(("OTEL_SERVICE_NAME", "mediafleet-api"));
    let _api = Proc::spawn("api", &["api"], &api_env);
    let base = format!("http://{listen}");
    wait_healthy(&base, Duration::from_secs(30)).await;
    let mut worker_env = common.to_vec();
    worker_env.push(("OTEL_SERVICE_NAME", "mediafleet-worker"));
    let mut worker = Proc::spawn("worker", &["worker", "--concurrency", "1"], &worker_env);

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let sent = format!("00-{TRACE}-b7ad6b7169203331-01");
    let (id, _) = upload_traced(&base, Some(&sent)).await;
    assert_eq!(
        wait_final(&base, &id, Duration::from_secs(60)).await["status"],
        "ready"
    );

    // The request span (api) and the job span (worker) of this trace, both exported.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (request, job) = loop {
        let spans: Vec<Received> = got
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == TRACE)
            .cloned()
            .collect();
        let request = spans.iter().find(|s| s.name == "POST /v1/uploads").cloned();
        let job = spans
            .iter()
            .find(|s| s.name == "job media.process")
            .cloned();
        if let (Some(r), Some(j)) = (request.clone(), job.clone()) {
            break (r, j);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the collector has no request and job span of trace {TRACE}: {spans:#?}\nall: {:#?}",
            got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The api's span continues the caller's span; the worker's span is the api span's child.
    assert_eq!(request.service, "mediafleet-api", "{request:?}");
    assert_eq!(request.parent_span_id, "b7ad6b7169203331", "{request:?}");
    assert_eq!(request.kind, 2, "SPAN_KIND_SERVER: {request:?}");
    assert_eq!(
        request.attributes["http.route"], "/v1/uploads",
        "{request:?}"
    );
    assert_eq!(
        request.attributes["http.response.status_code"], "202",
        "{request:?}"
    );
    assert_eq!(job.service, "mediafleet-worker", "{job:?}");
    assert_eq!(
        job.parent_span_id, request.span_id,
        "{job:?} under {request:?}"
    );
    assert_eq!(job.kind, 5, "SPAN_KIND_CONSUMER: {job:?}");
    assert_eq!(job.attributes["media_id"], id, "{job:?}");
    // Health probes (polled above while the api started) are not traced.
    assert!(
        got.lock()
            .unwrap()
            .iter()
            .all(|s| !s.name.ends_with("/healthz")),
        "a probe was exported"
    );
    // With span export on, a worker still drains and exits cleanly on SIGTERM (the exporter flushes last).
    assert_eq!(worker.terminate(Duration::from_secs(30)), Some(0));
}
