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
    aws_env();
    let prefix = unique("p");
    let (_, storage) = moto_bucket().await;
    let db = pg_database().await;
    let dir = tempfile::tempdir().unwrap();
    let config = fast_config(dir.path(), "");
    let port = free_port();
    let env: Vec<(String, String)> = vec![
        ("MEDIAFLEET_QUEUE".into(), queue.clone()),
        ("MEDIAFLEET_STORAGE".into(), storage),
        ("MEDIAFLEET_DB".into(), db),
        ("MEDIAFLEET_PREFIX".into(), prefix.clone()),
        ("MEDIAFLEET_CONFIG".into(), config.display().to_string()),
        (
            "MEDIAFLEET_DATA_DIR".into(),
            dir.path().join("data").display().to_string(),
        ),
        ("MEDIAFLEET_LISTEN".into(), format!("127.0.0.1:{port}")),
    ];
    let as_refs = |extra: Option<(String, String)>| {
        let mut v: Vec<(String, String)> = env.clone();
        v.extend(extra);
        v
    };
    let api_env = as_refs(None);
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
    let worker_env = as_refs(worker_queue.map(|q| ("MEDIAFLEET_QUEUE".to_owned(), q)));
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
