//! Upload-flow fleets: `api` and `worker` processes on RabbitMQ, moto S3 and Postgres with a chosen
//! `[uploads]`/`[auth]`/`[webhooks]` config, an api that can be restarted (crash tests), and a webhook
//! receiver on 127.0.0.1:0.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fleet::refs;
use super::*;

pub struct UploadFleet {
    pub api: Option<Proc>,
    pub worker: Option<Proc>,
    pub base: String,
    pub listen: String,
    pub db: String,
    pub bucket: String,
    pub env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl Drop for UploadFleet {
    fn drop(&mut self) {
        // Stop the processes first, so they do not redeclare what is being deleted.
        if let Some(p) = self.api.as_mut() {
            p.kill();
        }
        if let Some(p) = self.worker.as_mut() {
            p.kill();
        }
        if let Some((_, prefix)) = self.env.iter().find(|(k, _)| k == "MEDIAFLEET_PREFIX") {
            drop_rabbit_prefix(prefix);
        }
    }
}

impl UploadFleet {
    /// Starts the api with extra env (e.g. the fault knob) and waits for it unless `wait` is false.
    pub async fn start_api(&mut self, extra: &[(&str, &str)], wait: bool) {
        let mut env = self.env.clone();
        env.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        self.api = Some(Proc::spawn("api", &["api"], &refs(&env)));
        if wait {
            wait_healthy(&self.base, Duration::from_secs(60)).await;
        }
    }

    pub fn start_worker(&mut self) {
        self.worker = Some(Proc::spawn(
            "worker",
            &["worker", "--concurrency", "2"],
            &refs(&self.env),
        ));
    }

    /// A connection to this fleet's database.
    pub async fn pg(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&self.db).await.unwrap()
    }

    /// Runs `mediafleet ARGS` against this fleet's config; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = std::process::Command::new(crate::common::bin());
        cmd.args(args).stderr(std::process::Stdio::inherit());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run mediafleet");
        assert!(out.status.success(), "mediafleet {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A fleet with `extra` appended to the fast test config; `listen_host` is where the api listens.
pub async fn upload_fleet(extra: &str, listen_host: &str, start: bool) -> UploadFleet {
    aws_env();
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    let prefix = unique("p");
    let (bucket, storage) = moto_bucket().await;
    let db = pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let config = fast_config(dir.path(), extra);
    let port = free_port();
    let listen = format!("{listen_host}:{port}");
    let env: Vec<(String, String)> = vec![
        ("MEDIAFLEET_QUEUE".into(), amqp_url()),
        ("MEDIAFLEET_STORAGE".into(), storage),
        ("MEDIAFLEET_DB".into(), db.clone()),
        ("MEDIAFLEET_PREFIX".into(), prefix),
        ("MEDIAFLEET_CONFIG".into(), config.display().to_string()),
        (
            "MEDIAFLEET_DATA_DIR".into(),
            dir.path().join("data").display().to_string(),
        ),
        ("MEDIAFLEET_LISTEN".into(), listen.clone()),
    ];
    let mut f = UploadFleet {
        api: None,
        worker: None,
        base: format!("http://127.0.0.1:{port}"),
        listen,
        db,
        bucket,
        env,
        dir,
    };
    if start {
        f.start_api(&[], true).await;
        f.start_worker();
    }
    f
}

/// Polls `GET /v1/media/{id}` (with an optional key) until the status is one of `want`.
pub async fn wait_status(base: &str, id: &str, key: Option<&str>, want: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    let client = reqwest::Client::new();
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let mut req = client.get(format!("{base}/v1/media/{id}"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Ok(r) = req.send().await {
            if let Ok(v) = r.json::<Value>().await {
                if want.iter().any(|w| v["status"] == *w) {
                    return v;
                }
                last = v;
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    panic!("media {id} never reached {want:?}; last seen: {last}");
}

/// One request a webhook receiver got.
#[derive(Debug, Clone)]
pub struct Hook {
    pub signature: String,
    /// The request's `traceparent` header (empty when it had none).
    pub traceparent: String,
    pub body: Vec<u8>,
    pub answered: u16,
}

/// A webhook receiver on 127.0.0.1:0 that answers 500 to the first `fail_first` requests, then 200.
pub async fn webhook_receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Hook>>>) {
    use axum::routing::post;
    let got: Arc<Mutex<Vec<Hook>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let mut v = seen.lock().unwrap();
                    let answered = if v.len() < fail_first { 500 } else { 200 };
                    v.push(Hook {
                        signature: headers
                            .get("mediafleet-signature")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                        traceparent: headers
                            .get("traceparent")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                        body: body.to_vec(),
                        answered,
                    });
                    axum::http::StatusCode::from_u16(answered).unwrap()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://localhost:{}/hook", addr.port()), got)
}

/// A file of `len` bytes: a real JPEG followed by padding (decoders stop at EOI), so it sniffs as media.
pub fn padded_jpeg(dir: &std::path::Path, len: usize) -> std::path::PathBuf {
    let mut bytes = std::fs::read(fixture("photo.jpg")).unwrap();
    assert!(bytes.len() < len);
    bytes.resize(len, 0);
    let path = dir.join(format!("padded-{len}.jpg"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `POST /v1/uploads/presign`; returns status and body.
pub async fn presign(base: &str, body: Value, key: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/v1/uploads/presign"))
        .json(&body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// `POST /v1/uploads/{id}/complete`; returns status and body.
pub async fn complete(base: &str, id: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/uploads/{id}/complete"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// PUTs `bytes` to a presigned single-upload answer.
pub async fn put_single(answer: &Value, bytes: Vec<u8>) {
    let up = &answer["upload"];
    assert_eq!(up["method"], "PUT", "{answer}");
    let mut req = reqwest::Client::new().put(up["url"].as_str().unwrap());
    for (k, v) in up["headers"].as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    let r = req.body(bytes).send().await.unwrap();
    assert!(r.status().is_success(), "PUT: {}", r.status());
}
