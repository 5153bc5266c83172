//! Shared test helpers: real servers, addresses from env with local defaults, one namespace per test.
//! A service that cannot be reached fails the test loudly; nothing is skipped.
#![allow(dead_code)]

pub mod cache;
pub mod chaos;
pub mod fleet;
pub mod host;
pub mod proxy;
pub mod replay;
pub mod scale;
pub mod servers;
pub mod uploads;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// RabbitMQ URL.
pub fn amqp_url() -> String {
    std::env::var("MEDIAFLEET_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// moto_server endpoint (S3 and SQS).
pub fn s3_endpoint() -> String {
    std::env::var("MEDIAFLEET_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5055".into())
}

/// Postgres server URL without a database.
pub fn pg_server() -> String {
    std::env::var("MEDIAFLEET_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A unique lower-case name for queues, buckets and databases.
pub fn unique(tag: &str) -> String {
    format!(
        "t{}{}",
        tag,
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Sets fake AWS credentials for moto, unless real ones are configured.
pub fn aws_env() {
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var_os(k).is_none() {
            // SAFETY-free: std::env::set_var is safe in edition 2021; tests set these before spawning threads.
            std::env::set_var(k, v);
        }
    }
}

/// Creates a fresh Postgres database and returns its URL.
pub async fn pg_database() -> String {
    use sqlx::Executor;
    let name = unique("db");
    let admin = format!("{}/postgres", pg_server());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {admin}: {e} (run scripts/services.sh)")
        });
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create database");
    format!("{}/{name}", pg_server())
}

/// Fails loudly unless something listens on `addr`.
pub fn require_tcp(addr: &str, what: &str) {
    if std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3)).is_err()
    {
        panic!("{what} is not reachable at {addr}; start it with scripts/services.sh");
    }
}

/// A free local port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fixture path.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A `seconds`-long 720p MPEG-4 Part 2 clip made by ffmpeg in `dir`: its mp4-720 rendition is a real H.264
/// encode, long enough to outlive heartbeats and cuts.
pub fn mpeg4_clip(dir: &Path, seconds: u32) -> PathBuf {
    let clip = dir.join(format!("long-{seconds}s.mp4"));
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
        ])
        .args(["-t", &seconds.to_string(), "-c:v", "mpeg4", "-q:v", "8"])
        .arg(&clip)
        .status()
        .expect("ffmpeg (scripts/ensure-deps.sh installs it)");
    assert!(made.success());
    clip
}

/// Fast timings for tests, as a TOML config file in `dir`.
pub fn fast_config(dir: &Path, extra: &str) -> PathBuf {
    fast_config_with(dir, "", extra)
}

/// [`fast_config`] with `worker` lines (`key = value`) added to, or replacing defaults of, its `[worker]` table.
pub fn fast_config_with(dir: &Path, worker: &str, extra: &str) -> PathBuf {
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_owned();
    let given: Vec<String> = worker.lines().map(key).filter(|k| !k.is_empty()).collect();
    let defaults = [
        r#"poll_wait = "200ms""#,
        r#"lease = "3s""#,
        r#"retry_base = "200ms""#,
        r#"retry_max = "1s""#,
        r#"reaper_interval = "1s""#,
        r#"pause_poll = "300ms""#,
        r#"job_timeout = "60s""#,
        r#"drain_timeout = "5s""#,
        "max_attempts = 3",
    ]
    .into_iter()
    .filter(|l| !given.contains(&key(l)))
    .collect::<Vec<_>>()
    .join("\n");
    let path = dir.join("mediafleet.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[worker]
{defaults}
{worker}

[rabbitmq]
retry_tiers = ["1s", "2s"]
{extra}
"#
        ),
    )
    .unwrap();
    path
}

/// The `mediafleet` binary under test: cargo's, unless `MEDIAFLEET_TEST_BIN` names another build (several
/// checkouts sharing one cargo build directory share its `debug/mediafleet` too).
pub fn bin() -> std::path::PathBuf {
    std::env::var_os("MEDIAFLEET_TEST_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_mediafleet").into())
}

/// A `mediafleet` child process, killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Spawns `mediafleet ARGS` with extra env.
    pub fn spawn(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::spawn_cmd(name, Command::new(bin()), args, env)
    }

    /// Spawns `mediafleet ARGS` inside network namespace `netns` (`ip netns exec`, which execs it: the child
    /// is the `mediafleet` process itself).
    pub fn spawn_in_netns(netns: &str, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(bin());
        Proc::spawn_cmd(name, cmd, args, env)
    }

    fn spawn_cmd(name: &str, mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Proc {
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        cmd.env("RUST_LOG", "info,sqlx=warn,lapin=warn,aws=warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn mediafleet");
        Proc {
            child,
            name: name.to_owned(),
        }
    }

    /// SIGTERM, then waits up to `within` for exit; returns the exit code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `mediafleet serve` on the embedded defaults with config `cfg` and its data under `dir/data`, healthy;
/// returns the process and its base URL.
pub async fn serve_embedded(dir: &Path, cfg: &Path) -> (Proc, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let data = dir.join("data");
    let proc = Proc::spawn(
        "serve",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &listen,
            "serve",
        ],
        &[],
    );
    let base = format!("http://{listen}");
    wait_healthy(&base, Duration::from_secs(30)).await;
    (proc, base)
}

/// A `mediafleet serve` on the embedded defaults started by [`serve_with`], with the environment that
/// points other `mediafleet` commands (`ops keys create`, …) at it.
pub struct Served {
    pub proc: Proc,
    pub base: String,
    pub listen: String,
    pub env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Creates an API key named `name` with `mediafleet ops keys create`; returns the key.
    pub fn create_key(&self, name: &str) -> String {
        let out = Command::new(bin())
            .args(["ops", "keys", "create", "--name", name])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(out.status.success());
        let created: Value = serde_json::from_slice(&out.stdout).unwrap();
        created["key"].as_str().unwrap().to_owned()
    }
}

/// `mediafleet serve` on the embedded defaults, with [`fast_config`] plus `extra` TOML, healthy.
pub async fn serve_with(extra: &str) -> Served {
    serve_with_env(extra, &[]).await
}

/// [`serve_with`], with `env` added (e.g. `MEDIAFLEET_DB` for another database).
pub async fn serve_with_env(extra: &str, more: &[(&str, &str)]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fast_config(dir.path(), extra);
    let listen = format!("127.0.0.1:{}", free_port());
    let mut env: Vec<(String, String)> = vec![
        ("MEDIAFLEET_CONFIG".into(), cfg.display().to_string()),
        (
            "MEDIAFLEET_DATA_DIR".into(),
            dir.path().join("data").display().to_string(),
        ),
        ("MEDIAFLEET_LISTEN".into(), listen.clone()),
    ];
    env.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let proc = Proc::spawn("serve", &["serve"], &fleet::refs(&env));
    let base = format!("http://{listen}");
    wait_healthy(&base, Duration::from_secs(30)).await;
    Served {
        proc,
        base,
        listen,
        env,
        _dir: dir,
    }
}

/// Waits until `GET base/healthz` answers.
pub async fn wait_healthy(base: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let client = reqwest::Client::new();
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{base} did not become healthy within {within:?}");
}

/// Uploads a file as multipart; returns (status, body).
pub async fn upload(base: &str, path: &Path, name: &str) -> (u16, Value) {
    let bytes = std::fs::read(path).unwrap();
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
    let form = reqwest::multipart::Form::new().part("file", part);
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/uploads"))
        .multipart(form)
        .send()
        .await
        .expect("upload request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `GET /v1/media/{id}` until the status is final (ready, failed, deleted).
pub async fn wait_final(base: &str, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    let client = reqwest::Client::new();
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/v1/media/{id}")).send().await {
            if let Ok(v) = r.json::<Value>().await {
                if matches!(v["status"].as_str(), Some("ready" | "failed" | "deleted")) {
                    return v;
                }
                last = v;
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    panic!("media {id} did not finish within {within:?}; last seen: {last}");
}

/// Finds a rendition by name in a media object.
pub fn rendition<'a>(media: &'a Value, name: &str) -> &'a Value {
    media["renditions"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no {name} rendition in {media}"))
}

/// RabbitMQ management API base (for cleanup and in-flight readings).
pub fn amqp_management_url() -> String {
    std::env::var("MEDIAFLEET_TEST_AMQP_MANAGEMENT")
        .unwrap_or_else(|_| "http://guest:guest@127.0.0.1:15672".into())
}

/// Deletes every RabbitMQ queue and exchange named `{prefix}.…` (best effort, through the management API), so
/// quorum queues from process-level tests do not pile up on the shared broker. Runs on its own thread and
/// runtime, so it can be called from `Drop`.
pub fn drop_rabbit_prefix(prefix: &str) {
    let prefix = format!("{prefix}.");
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let base = amqp_management_url();
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            for kind in ["queues", "exchanges"] {
                let Ok(r) = client
                    .get(format!("{base}/api/{kind}/%2f?columns=name"))
                    .send()
                    .await
                else {
                    return;
                };
                let names: Vec<Value> = r.json().await.unwrap_or_default();
                for n in names {
                    let Some(name) = n["name"].as_str().filter(|s| s.starts_with(&prefix)) else {
                        continue;
                    };
                    let _ = client
                        .delete(format!("{base}/api/{kind}/%2f/{name}"))
                        .send()
                        .await;
                }
            }
        });
    })
    .join();
}

/// The `--storage` URL of `bucket` on moto.
pub fn moto_storage_url(bucket: &str) -> String {
    format!(
        "s3://{bucket}?endpoint={}&region=us-east-1&path_style=true",
        s3_endpoint()
    )
}

/// A store on a `--storage` S3 URL, for tests that look at or seed objects directly.
pub async fn s3_store(storage: &str) -> mediafleet::storage::s3::S3Store {
    use mediafleet::storage::s3::{S3Config, S3Store};
    let cfg = S3Config::from_url(&url::Url::parse(storage).unwrap()).unwrap();
    S3Store::connect(cfg).await.unwrap()
}

/// A fresh bucket on moto; returns its name and its `--storage` URL. Fails loudly when moto is not up.
pub async fn moto_bucket() -> (String, String) {
    aws_env();
    let endpoint = s3_endpoint();
    require_tcp(endpoint.trim_start_matches("http://"), "moto_server (S3)");
    let bucket = unique("b");
    let storage = moto_storage_url(&bucket);
    s3_store(&storage)
        .await
        .ensure_bucket()
        .await
        .expect("create bucket in moto");
    (bucket, storage)
}

/// Whether media child `pid` (command line `cmdline`) is working on a job under `data`. A warm child waiting
/// for its job (`--await-args`) names the worker's scratch dir on its command line but opens nothing under
/// `data` until it has one; once handed a job it holds its input open.
pub fn busy_media_child(pid: u32, cmdline: &str, data: &Path) -> bool {
    if !cmdline.contains("--await-args") {
        return true;
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|target| target.starts_with(data))
        })
        .unwrap_or(false)
}

/// Uploads `path` as a raw body and returns the answer's status, also when the api answers (and closes)
/// before the whole body is sent, which an ordinary client reports as a broken connection instead.
pub async fn upload_refusable(base: &str, path: &Path, content_type: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let body = std::fs::read(path).unwrap();
    let sock = tokio::net::TcpStream::connect(host).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    let head = format!(
        "POST /v1/uploads HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_ok() {
            for chunk in body.chunks(64 * 1024) {
                if wr.write_all(chunk).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.contains(&b'\n') {
        let n = tokio::time::timeout(Duration::from_secs(60), rd.read(&mut buf))
            .await
            .expect("no answer within 60 s")
            .unwrap_or(0);
        assert!(n > 0, "connection closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    writer.abort();
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
