//! The media object cache against real Redis and Postgres: warm jobs after ready and failed, the version
//! guard under racing writers, `ops warm` after a flush (with resume point and rate limit), one DB read
//! for 500 concurrent misses, and Redis going away mid-run. Each test has its own key prefix and database;
//! keys are removed by prefix, never with FLUSHALL (the Redis server is shared).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cache::*;
use common::*;
use mediafleet::cache::{MediaCache, Put};
use mediafleet::config::{CacheSettings, DbUrl};
use mediafleet::db::{NewMedia, Records, RenditionRow};
use mediafleet::media_object::MediaReader;
use serde_json::Value;

/// Test timings, with enough attempts that a warm job outlives a Redis outage.
fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("mediafleet.toml");
    std::fs::write(
        &path,
        r#"
[worker]
poll_wait = "200ms"
lease = "5s"
retry_base = "200ms"
retry_max = "1s"
reaper_interval = "1s"
job_timeout = "60s"
drain_timeout = "5s"
max_attempts = 200
max_receives = 1000

[cache_options]
op_timeout = "300ms"
"#,
    )
    .unwrap();
    path
}

/// `mediafleet serve` on Postgres, embedded queue, local storage and the given cache URL.
struct Served {
    _proc: Proc,
    base: String,
    prefix: String,
    db: String,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

async fn serve(cache_url: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let db = pg_database().await;
    let prefix = unique("c");
    let port = free_port();
    let env: Vec<(String, String)> = vec![
        ("MEDIAFLEET_DB".into(), db.clone()),
        ("MEDIAFLEET_CACHE".into(), cache_url.into()),
        ("MEDIAFLEET_PREFIX".into(), prefix.clone()),
        (
            "MEDIAFLEET_CONFIG".into(),
            config(dir.path()).display().to_string(),
        ),
        (
            "MEDIAFLEET_DATA_DIR".into(),
            dir.path().join("data").display().to_string(),
        ),
        ("MEDIAFLEET_LISTEN".into(), format!("127.0.0.1:{port}")),
    ];
    let refs: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let proc = Proc::spawn("serve", &["serve"], &refs);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, Duration::from_secs(60)).await;
    Served {
        _proc: proc,
        base,
        prefix,
        db,
        env,
        dir,
    }
}

/// Runs `mediafleet ops warm ARGS` to completion; returns its stdout summary.
fn ops_warm(s: &Served, args: &[&str]) -> Value {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(["ops", "warm"]).args(args);
    for (k, v) in &s.env {
        cmd.env(k, v);
    }
    cmd.env("RUST_LOG", "warn");
    let out = cmd.output().expect("run ops warm");
    assert!(
        out.status.success(),
        "ops warm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("objects/s"),
        "no progress on stderr: {stderr}"
    );
    serde_json::from_slice(&out.stdout).expect("summary JSON on stdout")
}

async fn get_text(base: &str, id: &str) -> (u16, String) {
    let r = reqwest::get(format!("{base}/v1/media/{id}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_after_ready_and_failed_then_flush_and_ops_warm_restores() {
    let s = serve(&redis_url()).await;
    let mut ids = Vec::new();
    for f in ["photo.jpg", "alpha.png", "truncated.jpg"] {
        let (status, b) = upload(&s.base, &fixture(f), f).await;
        assert_eq!(status, 202, "{b}");
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    // Warm jobs put the objects there: nothing has read them through the api yet.
    let key = |id: &str| format!("{}:media:{id}", s.prefix);
    let within = Duration::from_secs(120);
    let photo = wait_key(&key(&ids[0]), within, |v| v["status"] == "ready").await;
    assert!(
        photo["renditions"].as_array().unwrap().len() >= 2,
        "{photo}"
    );
    wait_key(&key(&ids[1]), within, |v| v["status"] == "ready").await;
    let bad = wait_key(&key(&ids[2]), within, |v| v["status"] == "failed").await;
    assert_eq!(bad["error"]["code"], "corrupt_media", "{bad}");

    // The cached text is exactly what the api answers, and matches the schema PHP readers rely on.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/schema/media-object.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut before = Vec::new();
    for id in &ids {
        let cached = get(&key(id)).await.unwrap();
        let v: Value = serde_json::from_str(&cached).unwrap();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{id}: {errors:?}");
        let (code, body) = get_text(&s.base, id).await;
        assert_eq!(code, 200);
        assert_eq!(body, cached);
        before.push(cached);
    }

    // Flush this test's keys, then rebuild them all.
    assert!(delete_prefix(&s.prefix).await >= 3);
    let sum = ops_warm(&s, &["--all"]);
    assert_eq!(sum["objects"], 3, "{sum}");
    assert_eq!(sum["written"], 3, "{sum}");
    for (id, want) in ids.iter().zip(&before) {
        assert_eq!(
            get(&key(id)).await.as_ref(),
            Some(want),
            "{id} not restored"
        );
    }
    // Same versions again: rewritten (TTL refresh), never "newer kept".
    let sum = ops_warm(&s, &["--since", "1h"]);
    assert_eq!(sum["objects"], 3, "{sum}");

    // --ids: just the ones named (an unknown id is skipped).
    delete_prefix(&s.prefix).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let list = format!("{},{unknown}", ids[1]);
    let sum = ops_warm(&s, &["--ids", &list]);
    assert_eq!(sum["objects"], 1, "{sum}");
    assert!(get(&key(&ids[1])).await.is_some());
    assert!(get(&key(&ids[0])).await.is_none());

    // Resume point: a run interrupted after the first id continues after it.
    delete_prefix(&s.prefix).await;
    let mut sorted = ids.clone();
    sorted.sort();
    let cp = s.dir.path().join("warm.checkpoint");
    std::fs::write(
        &cp,
        serde_json::json!({"scope": "all", "after": sorted[0], "done": 1}).to_string(),
    )
    .unwrap();
    let cp_s = cp.display().to_string();
    let sum = ops_warm(&s, &["--all", "--checkpoint", &cp_s]);
    assert_eq!(sum["resumed_from"], sorted[0], "{sum}");
    assert_eq!(sum["objects"], 2, "{sum}");
    assert!(get(&key(&sorted[0])).await.is_none(), "resumed past it");
    assert!(get(&key(&sorted[1])).await.is_some());
    assert!(!cp.exists(), "a finished run removes its checkpoint");

    // Rate limit: 3 objects at 2/s take at least a second.
    let t = Instant::now();
    let sum = ops_warm(&s, &["--all", "--rate", "2", "--batch", "1"]);
    assert_eq!(sum["objects"], 3, "{sum}");
    assert!(t.elapsed() >= Duration::from_millis(1000), "{sum}");
    delete_prefix(&s.prefix).await;
}

fn settings() -> CacheSettings {
    CacheSettings {
        ttl: Duration::from_secs(600),
        pending_ttl: Duration::from_secs(60),
        lock_ttl: Duration::from_secs(5),
        op_timeout: Duration::from_secs(2),
        ..CacheSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_warm_never_overwrites_a_newer_object() {
    let prefix = unique("v");
    let cache = MediaCache::redis(&redis_url(), &prefix, settings()).unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let obj = |v: i64| format!(r#"{{"id":"{id}","status":"ready","version":{v}}}"#);
    assert_eq!(
        cache.put(&id, &obj(5), 5, true).await.unwrap(),
        Put::Written
    );
    assert_eq!(
        cache.put(&id, &obj(4), 4, true).await.unwrap(),
        Put::KeptNewer
    );
    assert_eq!(cache.get(&id).await.unwrap(), Some(obj(5)));

    // Many warms racing, in every order: the newest always wins.
    for round in 0..5 {
        let id = uuid::Uuid::now_v7().to_string();
        let mut versions: Vec<i64> = (1..=40).collect();
        versions.rotate_left(round * 7);
        let tasks: Vec<_> = versions
            .into_iter()
            .map(|v| {
                let (cache, id) = (cache.clone(), id.clone());
                tokio::spawn(async move {
                    let json = format!(r#"{{"id":"{id}","version":{v}}}"#);
                    cache.put(&id, &json, v, true).await.unwrap()
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let stored: Value = serde_json::from_str(&cache.get(&id).await.unwrap().unwrap()).unwrap();
        assert_eq!(stored["version"], 40, "round {round}");
    }

    // The pipelined batch write (ops warm) is guarded the same way.
    let json3 = obj(3);
    let json9 = obj(9);
    let other = uuid::Uuid::now_v7().to_string();
    let puts = cache
        .put_many(&[(&id, &json3, 3, true), (&other, &json9, 9, true)])
        .await
        .unwrap();
    assert_eq!(puts, vec![Put::KeptNewer, Put::Written]);
    assert_eq!(cache.get(&id).await.unwrap(), Some(obj(5)));
    delete_prefix(&prefix).await;
}

/// A fresh database with one ready media (two renditions).
async fn ready_media() -> (Records, String) {
    let records = Records::connect(&DbUrl::Postgres(pg_database().await), None)
        .await
        .unwrap();
    records.migrate().await.unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    records
        .insert_media(&NewMedia {
            id: id.clone(),
            kind: "image".into(),
            profile: "default".into(),
            source_key: format!("x/originals/{id}"),
            filename: Some("photo.jpg".into()),
            content_type: "image/jpeg".into(),
            bytes: 1000,
            sha256: "00".repeat(32),
            external_id: Some("ext-1".into()),
        })
        .await
        .unwrap();
    records
        .start_processing(&id, i64::MAX / 2, false)
        .await
        .unwrap()
        .unwrap();
    let r = |name: &str, ct: &str| RenditionRow {
        media_id: id.clone(),
        name: name.into(),
        key: format!("x/{id}/{name}"),
        content_type: ct.into(),
        width: Some(256),
        height: Some(192),
        bytes: 100,
        duration_seconds: None,
        sha256: "11".repeat(32),
    };
    let done = records
        .finish_ready(
            &id,
            &serde_json::json!({"width": 1024}),
            Some("LEHV6nWB2yk8"),
            None,
            &[r("preview", "image/jpeg"), r("thumb", "image/webp")],
        )
        .await
        .unwrap();
    assert!(done);
    (records, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_concurrent_misses_make_one_db_read() {
    let (records, id) = ready_media().await;
    let prefix = unique("s");
    let cache = MediaCache::redis(&redis_url(), &prefix, settings()).unwrap();
    let reader = MediaReader::new(records.clone(), Some(cache), None);
    let start = Arc::new(tokio::sync::Barrier::new(500));
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let (reader, id, start) = (reader.clone(), id.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                reader.get(&id).await.unwrap().expect("media exists")
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        bodies.push(t.await.unwrap());
    }
    let stats = reader.stats();
    let loads = stats.db_loads.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(loads, 1, "500 concurrent misses made {loads} DB reads");
    assert!(bodies.iter().all(|b| b == &bodies[0]));
    let v: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["renditions"].as_array().unwrap().len(), 2);
    // The object is the DB's truth: the same JSON the uncached read path builds.
    let uncached = MediaReader::new(records, None, None);
    assert_eq!(uncached.get(&id).await.unwrap().unwrap(), bodies[0]);
    delete_prefix(&prefix).await;
}

async fn readyz(base: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn wait_readyz(base: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = readyz(base).await;
        if body["status"] == status {
            assert_eq!(code, 200, "{body}");
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "readyz never said {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_mid_run_the_api_still_serves() {
    let proxy = SwitchProxy::start(&redis_addr()).await;
    let _ = redis_url(); // fails loudly when Redis itself is missing
    let s = serve(&proxy.url()).await;
    let key = |id: &str| format!("{}:media:{id}", s.prefix);
    let (_, b) = upload(&s.base, &fixture("photo.jpg"), "photo.jpg").await;
    let first = b["id"].as_str().unwrap().to_owned();
    let cached = wait_key(&key(&first), Duration::from_secs(120), |v| {
        v["status"] == "ready"
    })
    .await;
    let body = wait_readyz(&s.base, "ready").await;
    assert_eq!(body["checks"]["cache"]["status"], "ok", "{body}");

    // Redis goes away.
    proxy.off();
    let body = wait_readyz(&s.base, "degraded").await;
    assert_eq!(body["checks"]["cache"]["status"], "degraded", "{body}");
    let (code, text) = get_text(&s.base, &first).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), cached);
    // Uploads and processing go on; the warm job for the new media retries from the queue.
    let (status, b) = upload(&s.base, &fixture("alpha.png"), "alpha.png").await;
    assert_eq!(status, 202, "{b}");
    let second = b["id"].as_str().unwrap().to_owned();
    let m = wait_final(&s.base, &second, Duration::from_secs(120)).await;
    assert_eq!(m["status"], "ready", "{m}");
    let pool = sqlx::PgPool::connect(&s.db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let retries: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM job_attempts WHERE media_id = $1 AND kind = 'cache.warm' AND outcome = 'retry'",
        )
        .bind(&second)
        .fetch_one(&pool)
        .await
        .unwrap();
        if retries > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the warm job was never retried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status: String = sqlx::query_scalar("SELECT status FROM media WHERE id = $1")
        .bind(&second)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "ready", "a failing warm must never touch the media");

    // Redis comes back: readiness recovers and the retried warm lands.
    proxy.on();
    wait_readyz(&s.base, "ready").await;
    let v = wait_key(&key(&second), Duration::from_secs(60), |v| {
        v["status"] == "ready"
    })
    .await;
    assert_eq!(v["id"], second.as_str());
    delete_prefix(&s.prefix).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_leaves_a_deleted_tombstone_in_the_cache_not_the_old_object() {
    let s = serve(&redis_url()).await;
    let (status, b) = upload(&s.base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(status, 202, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let key = format!("{}:media:{id}", s.prefix);
    let ready = wait_key(&key, Duration::from_secs(120), |v| v["status"] == "ready").await;
    assert!(!ready["renditions"].as_array().unwrap().is_empty());

    let r = reqwest::Client::new()
        .delete(format!("{}/v1/media/{id}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The cached entry no longer describes renditions that are gone: it is replaced (at a newer version, so a
    // warm job still in flight for the old version cannot bring the ready object back) by the deleted object,
    // exactly what the api answers.
    let gone = wait_key(&key, Duration::from_secs(10), |v| v["status"] == "deleted").await;
    assert!(
        gone["renditions"].as_array().is_none_or(|r| r.is_empty()),
        "{gone}"
    );
    assert!(gone["version"].as_i64() > ready["version"].as_i64());
    let (code, body) = get_text(&s.base, &id).await;
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), gone);
    // And the rendition itself is gone from storage.
    let url = format!(
        "{}{}",
        s.base,
        ready["renditions"][0]["url"].as_str().unwrap()
    );
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 404, "{url}");
    delete_prefix(&s.prefix).await;
}
