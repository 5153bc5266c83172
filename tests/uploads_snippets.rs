//! The client snippets in `proto/examples/snippets/` (curl, PHP, Python) run against a real api with API
//! keys required (listening off loopback), on Postgres, RabbitMQ and moto S3. A missing interpreter fails.

mod common;

use std::path::Path;
use std::process::Command;

use common::uploads::*;
use common::*;
use serde_json::Value;

fn run(f: &UploadFleet, key: &str, program: &str, script: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/examples/snippets");
    let out = Command::new(program)
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
    assert_eq!(stdout.matches(" ready").count(), 2, "{script}: {stdout}");
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
    run(&f, &key, "sh", "upload.sh");
    run(&f, &key, "php", "upload.php");
    run(&f, &key, &python, "upload.py");
}
