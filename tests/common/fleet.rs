//! A fleet on real servers: `api` and `worker` processes on RabbitMQ, moto S3 and Postgres, each with its own
//! queue prefix, bucket and database.

use std::time::Duration;

use super::*;

pub struct Fleet {
    pub api: Proc,
    pub worker: Proc,
    pub base: String,
    pub prefix: String,
    pub env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Stop the processes first, so they do not redeclare what is being deleted.
        self.api.kill();
        self.worker.kill();
        drop_rabbit_prefix(&self.prefix);
    }
}

pub async fn start_fleet(worker_queue: Option<String>) -> Fleet {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    start_fleet_on(amqp_url(), worker_queue).await
}

/// The SQS URL of the moto server.
pub fn sqs_url() -> String {
    format!("sqs://?endpoint={}&region=us-east-1", s3_endpoint())
}

/// A fleet on `queue` (amqp://… or sqs://…). On SQS the queues are made first with `mediafleet queues setup`,
/// because `api` and `worker` only verify them.
pub async fn start_fleet_on(queue: String, worker_queue: Option<String>) -> Fleet {
    let worker_env = worker_queue
        .map(|q| ("MEDIAFLEET_QUEUE".to_owned(), q))
        .into_iter()
        .collect();
    start_fleet_with(queue, None, worker_env, "").await
}

/// A fleet on `queue` and `storage` (a fresh moto bucket when `None`) whose worker gets `worker_env` on top of
/// the shared settings (another storage URL, say, through a proxy a test switches off), with `worker_config`
/// lines added to the `[worker]` table.
pub async fn start_fleet_with(
    queue: String,
    storage: Option<String>,
    worker_env: Vec<(String, String)>,
    worker_config: &str,
) -> Fleet {
    start_fleet_opts(FleetOpts {
        storage,
        worker_env,
        worker_config: worker_config.to_owned(),
        ..FleetOpts::on(queue)
    })
    .await
}

/// What [`start_fleet_opts`] starts: [`start_fleet_with`]'s settings, plus a database (a fresh one on the shared
/// Postgres when `None`), a data directory for both processes (under the fleet's own temporary directory when
/// `None`) and extra `[worker]` config lines.
pub struct FleetOpts {
    pub queue: String,
    pub storage: Option<String>,
    pub db: Option<String>,
    pub data_dir: Option<std::path::PathBuf>,
    pub worker_env: Vec<(String, String)>,
    pub worker_config: String,
}

impl FleetOpts {
    /// Defaults on `queue`.
    pub fn on(queue: String) -> FleetOpts {
        FleetOpts {
            queue,
            storage: None,
            db: None,
            data_dir: None,
            worker_env: vec![],
            worker_config: String::new(),
        }
    }

    /// The embedded queue with a SQLite DB and the data under `dir`.
    pub fn embedded(dir: &std::path::Path) -> FleetOpts {
        FleetOpts {
            db: Some(format!("sqlite://{}", dir.join("mediafleet.db").display())),
            data_dir: Some(dir.to_path_buf()),
            ..FleetOpts::on("embedded".into())
        }
    }
}

/// A fleet as [`FleetOpts`] says.
pub async fn start_fleet_opts(opts: FleetOpts) -> Fleet {
    let FleetOpts {
        queue,
        storage,
        db,
        data_dir,
        worker_env,
        worker_config,
    } = opts;
    aws_env();
    let prefix = unique("p");
    let storage = match storage {
        Some(s) => s,
        None => moto_bucket().await.1,
    };
    let db = match db {
        Some(db) => db,
        None => pg_database().await,
    };
    let dir = tempfile::tempdir().unwrap();
    let config = fast_config_with(dir.path(), &worker_config, "");
    let port = free_port();
    let env: Vec<(String, String)> = vec![
        ("MEDIAFLEET_QUEUE".into(), queue.clone()),
        ("MEDIAFLEET_STORAGE".into(), storage),
        ("MEDIAFLEET_DB".into(), db),
        ("MEDIAFLEET_PREFIX".into(), prefix.clone()),
        ("MEDIAFLEET_CONFIG".into(), config.display().to_string()),
        (
            "MEDIAFLEET_DATA_DIR".into(),
            data_dir
                .unwrap_or_else(|| dir.path().join("data"))
                .display()
                .to_string(),
        ),
        ("MEDIAFLEET_LISTEN".into(), format!("127.0.0.1:{port}")),
    ];
    let api_env = env.clone();
    if queue.starts_with("sqs:") {
        let out = std::process::Command::new(crate::common::bin())
            .args(["queues", "setup"])
            .envs(api_env.iter().map(|(a, b)| (a, b)))
            .output()
            .expect("run mediafleet queues setup");
        assert!(
            out.status.success(),
            "queues setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let api = Proc::spawn("api", &["api"], &refs(&api_env));
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, Duration::from_secs(60)).await;
    let worker_env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| worker_env.iter().all(|(w, _)| w != k))
        .chain(worker_env.iter())
        .cloned()
        .collect();
    let worker = Proc::spawn(
        "worker",
        &["worker", "--concurrency", "2"],
        &refs(&worker_env),
    );
    Fleet {
        api,
        worker,
        base,
        prefix,
        env,
        dir,
    }
}

pub fn refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

/// Runs `mediafleet ops ARGS` with the fleet's settings; returns whether it succeeded, its stdout as JSON
/// (`Null` when it is not JSON) and its stderr.
pub fn ops(env: &[(String, String)], args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = std::process::Command::new(crate::common::bin())
        .arg("ops")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mediafleet ops");
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.success(),
        serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`ops`] that must succeed; its JSON.
pub fn ops_ok(env: &[(String, String)], args: &[&str]) -> serde_json::Value {
    let (ok, v, err) = ops(env, args);
    assert!(ok, "mediafleet ops {args:?} failed: {err}");
    v
}
