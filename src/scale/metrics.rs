//! Metric names (as constants, each registered with its help text), the process-wide registry, and the
//! `/metrics`, `/healthz`, `/readyz` server that worker, scaler and fleet run on `--metrics-listen`.

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::ScaleError;
use crate::db::Records;
use crate::queue::SharedQueue;

/// Ready messages per class.
pub const QUEUE_READY: &str = "mediafleet_queue_ready";
/// Delivered, not yet ended, per class.
pub const QUEUE_IN_FLIGHT: &str = "mediafleet_queue_in_flight";
/// Waiting for a retry delay, per class.
pub const QUEUE_DELAYED: &str = "mediafleet_queue_delayed";
/// In the dead-letter queue, per class.
pub const QUEUE_DLQ: &str = "mediafleet_queue_dlq";
/// Age of the oldest ready message, per class.
pub const QUEUE_OLDEST_AGE: &str = "mediafleet_queue_oldest_age_seconds";
/// Expected seconds of work queued and in flight, per class.
pub const BACKLOG_SECONDS: &str = "mediafleet_backlog_seconds";
/// Workers the policy wants, per class (the recommended KEDA trigger).
pub const DESIRED_WORKERS: &str = "mediafleet_desired_workers";
/// Workers running, per class.
pub const CURRENT_WORKERS: &str = "mediafleet_current_workers";
/// Jobs ended, by class and status (`ok`, `failed`, `retry`, `dead_letter`).
pub const JOBS_TOTAL: &str = "mediafleet_jobs_total";
/// Job attempts ended, by class, job kind, outcome and error code (registered in `observe`).
pub const JOB_ATTEMPTS: &str = "mediafleet_job_attempts_total";
/// Wall-clock seconds of one job, by class.
pub const JOB_DURATION: &str = "mediafleet_job_duration_seconds";
/// Statements the database refused (a bug to fix, not an outage to wait out).
pub const DB_REJECTED: &str = "mediafleet_db_rejected_statements_total";
/// Outbox rows parked after failing to publish for a reason of their own.
pub const OUTBOX_PARKED: &str = "mediafleet_outbox_parked_total";
/// api: HTTP requests answered, by route template, method and status code.
pub const HTTP_REQUESTS: &str = "mediafleet_http_requests_total";
/// api: seconds from a request's arrival to its response head, by route template and method.
pub const HTTP_DURATION: &str = "mediafleet_http_request_duration_seconds";
/// `fleet`: worker processes (starting, running or draining) integrated over time, per class.
pub const FLEET_WORKER_SECONDS: &str = "mediafleet_fleet_worker_seconds_total";
/// `fleet`: measured start-up of a worker (spawn to first heartbeat), EWMA per class.
pub const WORKER_STARTUP: &str = "mediafleet_worker_startup_seconds";
/// relay (api, `serve`): age of the oldest outbox row not yet published, parked rows aside; 0 when none.
pub const OUTBOX_LAG: &str = "mediafleet_outbox_lag_seconds";
/// relay (api, `serve`): outbox rows whose publish failed (each is retried with backoff, or parked).
pub const RELAY_PUBLISH_FAILURES: &str = "mediafleet_relay_publish_failures_total";
/// scaler: seconds since the newest heartbeat of any worker serving the class (set while one has a row).
pub const HEARTBEAT_AGE: &str = "mediafleet_worker_heartbeat_age_seconds";
/// api: bytes of originals accepted.
pub const UPLOAD_BYTES: &str = "mediafleet_upload_bytes_total";
/// worker: bytes of rendition objects written to the store (an object that was already there is not counted).
pub const RENDITION_BYTES: &str = "mediafleet_rendition_bytes_total";

/// Every per-class gauge the scaler publishes, in `scaler --once --json` field order.
pub const GAUGES: [&str; 8] = [
    QUEUE_READY,
    QUEUE_IN_FLIGHT,
    QUEUE_DELAYED,
    QUEUE_DLQ,
    QUEUE_OLDEST_AGE,
    BACKLOG_SECONDS,
    DESIRED_WORKERS,
    CURRENT_WORKERS,
];

/// The registered metrics of this process.
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// The scaler's gauges by name, each labelled `class`.
    pub gauges: Vec<(&'static str, GaugeVec)>,
    /// [`JOBS_TOTAL`].
    pub jobs: CounterVec,
    /// [`JOB_DURATION`].
    pub duration: HistogramVec,
    /// [`DB_REJECTED`].
    pub db_rejected: prometheus::Counter,
    /// [`OUTBOX_PARKED`].
    pub outbox_parked: prometheus::Counter,
    /// [`FLEET_WORKER_SECONDS`].
    pub fleet_worker_seconds: CounterVec,
    /// [`WORKER_STARTUP`].
    pub worker_startup: GaugeVec,
    /// [`HTTP_REQUESTS`].
    pub http_requests: CounterVec,
    /// [`HTTP_DURATION`].
    pub http_duration: HistogramVec,
    /// [`OUTBOX_LAG`].
    pub outbox_lag: prometheus::Gauge,
    /// [`RELAY_PUBLISH_FAILURES`].
    pub relay_publish_failures: prometheus::Counter,
    /// [`HEARTBEAT_AGE`].
    pub heartbeat_age: GaugeVec,
    /// [`UPLOAD_BYTES`].
    pub upload_bytes: prometheus::Counter,
    /// [`RENDITION_BYTES`].
    pub rendition_bytes: prometheus::Counter,
}

/// Registers `c` in `registry` and hands it back.
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn help(name: &str) -> &'static str {
    match name {
        QUEUE_READY => "Messages ready to be delivered",
        QUEUE_IN_FLIGHT => "Messages delivered and not yet acked",
        QUEUE_DELAYED => "Messages waiting for a retry delay",
        QUEUE_DLQ => "Messages in the dead-letter queue",
        QUEUE_OLDEST_AGE => "Age of the oldest ready message, in seconds",
        BACKLOG_SECONDS => "Expected seconds of work queued and in flight",
        DESIRED_WORKERS => "Workers the backlog-seconds policy wants",
        _ => "Workers running",
    }
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let gauges = GAUGES
        .iter()
        .map(|name| {
            let g = GaugeVec::new(Opts::new(*name, help(name)), &["class"])
                .expect("valid gauge definition");
            registry
                .register(Box::new(g.clone()))
                .expect("gauge registered once");
            (*name, g)
        })
        .collect();
    let jobs = CounterVec::new(
        Opts::new(JOBS_TOTAL, "Jobs ended, by class and status"),
        &["class", "status"],
    )
    .expect("valid counter definition");
    registry
        .register(Box::new(jobs.clone()))
        .expect("registered once");
    let duration = HistogramVec::new(
        HistogramOpts::new(JOB_DURATION, "Wall-clock seconds of one job").buckets(vec![
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
        ]),
        &["class"],
    )
    .expect("valid histogram definition");
    registry
        .register(Box::new(duration.clone()))
        .expect("registered once");
    let db_rejected = prometheus::Counter::new(
        DB_REJECTED,
        "Statements the database refused (bad SQL, type mismatch, constraint)",
    )
    .expect("valid counter definition");
    registry
        .register(Box::new(db_rejected.clone()))
        .expect("registered once");
    let outbox_parked = prometheus::Counter::new(
        OUTBOX_PARKED,
        "Outbox rows parked after failing to publish for a reason of their own",
    )
    .expect("valid counter definition");
    registry
        .register(Box::new(outbox_parked.clone()))
        .expect("registered once");
    let fleet_worker_seconds = CounterVec::new(
        Opts::new(
            FLEET_WORKER_SECONDS,
            "Seconds of worker processes (starting, running or draining) run by this fleet",
        ),
        &["class"],
    )
    .expect("valid counter definition");
    registry
        .register(Box::new(fleet_worker_seconds.clone()))
        .expect("registered once");
    let worker_startup = GaugeVec::new(
        Opts::new(
            WORKER_STARTUP,
            "Measured seconds from spawning a worker to its first heartbeat (EWMA)",
        ),
        &["class"],
    )
    .expect("valid gauge definition");
    registry
        .register(Box::new(worker_startup.clone()))
        .expect("registered once");
    let http_requests = CounterVec::new(
        Opts::new(
            HTTP_REQUESTS,
            "HTTP requests answered by the api, by route template, method and status code",
        ),
        &["route", "method", "status"],
    )
    .expect("valid counter definition");
    registry
        .register(Box::new(http_requests.clone()))
        .expect("registered once");
    let http_duration = HistogramVec::new(
        HistogramOpts::new(
            HTTP_DURATION,
            "Seconds from a request's arrival to its response head, by route template and method",
        )
        .buckets(vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
        ]),
        &["route", "method"],
    )
    .expect("valid histogram definition");
    registry
        .register(Box::new(http_duration.clone()))
        .expect("registered once");
    let outbox_lag = register(
        &registry,
        prometheus::Gauge::new(
            OUTBOX_LAG,
            "Seconds since the oldest outbox row not yet published was written (0 when none waits)",
        )
        .expect("valid gauge definition"),
    );
    let relay_publish_failures = register(
        &registry,
        prometheus::Counter::new(
            RELAY_PUBLISH_FAILURES,
            "Outbox rows whose publish to the queue failed (retried with backoff, or parked)",
        )
        .expect("valid counter definition"),
    );
    let heartbeat_age = register(
        &registry,
        GaugeVec::new(
            Opts::new(
                HEARTBEAT_AGE,
                "Seconds since the newest heartbeat of any worker serving the class",
            ),
            &["class"],
        )
        .expect("valid gauge definition"),
    );
    let upload_bytes = register(
        &registry,
        prometheus::Counter::new(UPLOAD_BYTES, "Bytes of originals accepted by the api")
            .expect("valid counter definition"),
    );
    let rendition_bytes = register(
        &registry,
        prometheus::Counter::new(
            RENDITION_BYTES,
            "Bytes of rendition objects written to the store (objects already there not counted)",
        )
        .expect("valid counter definition"),
    );
    Metrics {
        registry,
        gauges,
        outbox_lag,
        relay_publish_failures,
        heartbeat_age,
        upload_bytes,
        rendition_bytes,
        http_requests,
        http_duration,
        jobs,
        duration,
        db_rejected,
        outbox_parked,
        fleet_worker_seconds,
        worker_startup,
    }
});

/// Counts one parked outbox row.
pub fn outbox_parked() {
    METRICS.outbox_parked.inc();
}

/// Counts `bytes` of an accepted original.
pub fn upload_bytes(bytes: u64) {
    METRICS.upload_bytes.inc_by(bytes as f64);
}

/// Counts `bytes` of a rendition object written to the store.
pub fn rendition_bytes(bytes: u64) {
    METRICS.rendition_bytes.inc_by(bytes as f64);
}

impl Metrics {
    /// Sets gauge `name` for `class`.
    pub fn set(&self, name: &str, class: &str, value: f64) {
        if let Some((_, g)) = self.gauges.iter().find(|(n, _)| *n == name) {
            g.with_label_values(&[class]).set(value);
        }
    }

    /// Counts one answered request of `route` (its template, e.g. `/v1/media/{id}`).
    pub fn http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Probe {
    /// The DB.
    pub records: Records,
    /// The queue.
    pub queue: SharedQueue,
}

/// `GET /metrics`: the Prometheus text exposition of this process.
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        METRICS.render(),
    )
}

async fn readyz(State(p): State<Probe>) -> (StatusCode, Json<serde_json::Value>) {
    let (db, queue) = tokio::join!(p.records.ping(), p.queue.ping());
    let check = |r: Result<(), String>| match r {
        Ok(()) => json!({"status": "ok"}),
        Err(e) => json!({"status": "down", "error": e}),
    };
    let ok = db.is_ok() && queue.is_ok();
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": {"db": check(db.map_err(|e| e.to_string())), "queue": check(queue.map_err(|e| e.to_string()))},
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// Binds `addr` now (so a taken port fails the start) and serves until `shutdown`.
pub async fn serve(
    addr: &str,
    probe: Probe,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ScaleError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ScaleError::Io(format!("--metrics-listen {addr}: cannot bind: {e}")))?;
    tracing::info!(%addr, "metrics listening (/metrics, /healthz, /readyz)");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(probe);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    }))
}
