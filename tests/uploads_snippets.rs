//! The client snippets in `proto/examples/snippets/` (curl, PHP, Python) run against a real api with API
//! keys required (listening off loopback), on Postgres, RabbitMQ and moto S3. A missing interpreter fails.
//! The Python one also imports an object from another bucket with boto3 into the presigned flow.

mod common;

use std::path::Path;
use std::process::Command;

use common::uploads::*;
use common::*;
use serde_json::Value;

fn run(
    f: &UploadFleet,
    key: &str,
    program: &str,
    script: &str,
    env: &[(&str, &str)],
    ready: usize,
) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/examples/snippets");
    let out = Command::new(program)
        .envs(env.iter().copied())
        .arg(dir.join(script))
        .arg(fixture("photo.jpg"))
        .env("MEDIAFLEET_URL", &f.base)
        .env("MEDIAFLEET_KEY", key)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (install it; see docs/uploads.md)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches(" ready").count(),
        ready,
        "{script}: {stdout}"
    );
}

#[tokio::test]
async fn curl_php_and_python_snippets_run() {
    let f = upload_fleet("", "0.0.0.0", true).await;
    let created: Value =
        serde_json::from_str(&f.cli(&["ops", "keys", "create", "--name", "snippets"])).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    // The venv scripts/services.sh makes for moto has `requests` (a moto dependency).
    let python = std::env::var("MEDIAFLEET_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = std::env::var("MEDIAFLEET_VENV").unwrap_or_else(|_| {
            format!(
                "{}/.cache/mediafleet/venv",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        format!("{venv}/bin/python")
    });
    run(&f, &key, "sh", "upload.sh", &[], 2);
    run(&f, &key, "php", "upload.php", &[], 2);
    // The Python snippet also imports an object the app keeps in its own bucket: boto3 reads it with the
    // app's credentials and streams it into mediafleet's presigned URLs.
    let (source, storage) = moto_bucket().await;
    let store = s3_store(&storage).await;
    mediafleet::storage::ObjectStore::put_file(
        &store,
        "legacy/photo.jpg",
        &fixture("photo.jpg"),
        "image/jpeg",
    )
    .await
    .unwrap();
    let endpoint = s3_endpoint();
    let env = [
        ("SOURCE_BUCKET", source.as_str()),
        ("SOURCE_KEY", "legacy/photo.jpg"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ];
    run(&f, &key, &python, "upload.py", &env, 3);
}
