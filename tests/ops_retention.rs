//! The retention job and the audit log, on SQLite and on Postgres (`mediafleet serve`, embedded queue):
//! a delete through the API is audited with who made it; with every `[retention]` age at 1 ms, one
//! `ops retention` pass removes the attempts of media that ended, the idempotency keys, the deleted media
//! (its id then answers 404) and the audit entries, while a media still in progress keeps its attempts.

mod common;

use std::time::Duration;

use common::fleet::ops_ok;
use common::*;
use serde_json::Value;

const AGES: &str = r#"
[retention]
interval = "1h"
attempts = "1ms"
idempotency = "1ms"
tombstones = "1ms"
dead_letters = "1ms"
audit = "1ms"
"#;

async fn upload_keyed(base: &str, file: &str, key: &str) -> String {
    let part = reqwest::multipart::Part::bytes(std::fs::read(fixture(file)).unwrap())
        .file_name(file.to_owned());
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/uploads"))
        .header("Idempotency-Key", key)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn retention_removes_what_aged(s: Served) {
    let env = s.env.clone();
    let within = Duration::from_secs(60);
    let kept = upload_keyed(&s.base, "photo.jpg", "photo-1").await;
    let gone = upload_keyed(&s.base, "palette.png", "palette-1").await;
    let failed = upload_keyed(&s.base, "huge-dimensions.png", "huge-1").await;
    for id in [&kept, &gone] {
        assert_eq!(wait_final(&s.base, id, within).await["status"], "ready");
    }
    assert_eq!(
        wait_final(&s.base, &failed, within).await["status"],
        "failed"
    );
    let before = ops_ok(&env, &["failed", "show", &failed, "--json"]);
    assert!(
        !before["attempts"].as_array().unwrap().is_empty(),
        "{before}"
    );

    let r = reqwest::Client::new()
        .delete(format!("{}/v1/media/{gone}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let audit = ops_ok(&env, &["audit", "--action", "delete", "--json"]);
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{audit}");
    assert_eq!(items[0]["target"], gone.as_str(), "{audit}");
    assert_eq!(items[0]["actor"], "anonymous", "{audit}");

    tokio::time::sleep(Duration::from_millis(50)).await;
    let pass = ops_ok(&env, &["retention", "--json"]);
    assert!(pass["attempts"].as_u64().unwrap() >= 2, "{pass}");
    assert_eq!(pass["idempotency"], 3, "{pass}");
    assert_eq!(pass["tombstones"], 1, "{pass}");
    assert_eq!(pass["audit"], 1, "{pass}");

    let r = reqwest::get(format!("{}/v1/media/{gone}", s.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a purged tombstone still answers");
    let after = ops_ok(&env, &["failed", "show", &failed, "--json"]);
    assert!(after["attempts"].as_array().unwrap().is_empty(), "{after}");
    assert_eq!(after["status"], "failed", "the media itself stays: {after}");
    let v = wait_final(&s.base, &kept, within).await;
    assert_eq!(v["status"], "ready", "{v}");
    let audit = ops_ok(&env, &["audit", "--json"]);
    assert!(audit["items"].as_array().unwrap().is_empty(), "{audit}");
    // Nothing left to remove: a second pass is a no-op.
    let again = ops_ok(&env, &["retention", "--json"]);
    assert_eq!(again["tombstones"], 0, "{again}");
    assert_eq!(again["idempotency"], 0, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_sqlite() {
    retention_removes_what_aged(serve_with(AGES).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_postgres() {
    let db = pg_database().await;
    retention_removes_what_aged(serve_with_env(AGES, &[("MEDIAFLEET_DB", &db)]).await).await;
}
