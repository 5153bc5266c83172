//! Upload flows on real servers (Postgres, RabbitMQ, moto S3), with `api` and `worker` as OS processes:
//! the outbox crash case, presigned single and multipart uploads, validation of direct uploads,
//! idempotent retries and signed webhooks retried after a 500.

mod common;

use std::time::{Duration, Instant};

use common::uploads::*;
use common::*;
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;

/// A noise PNG of about 12 MiB (incompressible, so the PNG stays big).
fn noise_png(dir: &std::path::Path) -> std::path::PathBuf {
    let (w, h) = (2048u32, 2048u32);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let b = state.to_le_bytes();
        image::Rgb([b[0], b[1], b[2]])
    });
    let path = dir.join("noise.png");
    img.save(&path).unwrap();
    path
}

#[tokio::test]
async fn outbox_crash_between_commit_and_publish_is_processed_once() {
    let mut f = upload_fleet("", "127.0.0.1", false).await;
    // An api that exits right after the upload's commit, before the relay could publish.
    f.start_api(&[("MEDIAFLEET_FAULT_EXIT_AFTER_COMMIT", "1")], true)
        .await;
    let part = reqwest::multipart::Part::bytes(std::fs::read(fixture("photo.jpg")).unwrap())
        .file_name("photo.jpg");
    let res = reqwest::Client::new()
        .post(format!("{}/v1/uploads", f.base))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await;
    assert!(
        res.is_err(),
        "the api should have died mid-request: {res:?}"
    );
    let api = f.api.as_mut().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = api.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "api did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, Some(86));
    // The commit happened; the job did not reach the queue.
    let mut pg = f.pg().await;
    let (id, status): (String, String) = sqlx::query_as("SELECT id, status FROM media")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(status, "queued");
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(pending, 1);

    // Restart: the relay publishes the row; the worker processes the media once.
    f.start_api(&[], true).await;
    f.start_worker();
    let media = wait_status(&f.base, &id, None, &["ready", "failed"]).await;
    assert_eq!(media["status"], "ready", "{media}");
    // The worker records the attempt's outcome just after it marks the media ready: wait for that write.
    let deadline = Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let runs: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT kind, outcome FROM job_attempts WHERE media_id = $1 AND kind = 'media.process'",
        )
        .bind(&id)
        .fetch_all(&mut pg)
        .await
        .unwrap();
        if runs.iter().all(|r| r.1.is_some()) || Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(runs.len(), 1, "processed more than once: {runs:?}");
    assert_eq!(runs[0].1.as_deref(), Some("ok"));
    let (sent, total): (i64, i64) =
        sqlx::query_as("SELECT COUNT(sent_at), COUNT(*) FROM outbox WHERE media_id = $1")
            .bind(&id)
            .fetch_one(&mut pg)
            .await
            .unwrap();
    assert_eq!((sent, total), (1, 1));
}

#[tokio::test]
async fn presigned_single_put_and_multipart_uploads_reach_ready() {
    let f = upload_fleet(
        "[uploads]\nmultipart_threshold = 10485760\npart_size = 5242880\n",
        "127.0.0.1",
        true,
    )
    .await;
    // Single PUT.
    let photo = std::fs::read(fixture("photo.jpg")).unwrap();
    let (s, a) = presign(
        &f.base,
        json!({"filename": "photo.jpg", "content_type": "image/jpeg", "bytes": photo.len(),
               "external_id": "post-1"}),
        None,
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["status"], "uploading");
    let single = a["id"].as_str().unwrap().to_owned();
    let (s, early) = complete(&f.base, &single, json!({})).await;
    assert_eq!(s, 400, "complete before the PUT must be refused: {early}");
    put_single(&a, photo).await;
    let (s, c) = complete(&f.base, &single, json!({})).await;
    assert_eq!(s, 202, "{c}");

    // Multipart: a 12 MiB file in 5 MiB parts.
    let dir = tempfile::tempdir().unwrap();
    let big = std::fs::read(noise_png(dir.path())).unwrap();
    assert!(big.len() > 10 * MIB, "{}", big.len());
    let (s, m) = presign(
        &f.base,
        json!({"filename": "noise.png", "content_type": "image/png", "bytes": big.len()}),
        None,
    )
    .await;
    assert_eq!(s, 200, "{m}");
    let mp = &m["multipart"];
    assert_eq!(mp["part_size"], 5 * MIB);
    let parts = mp["parts"].as_array().unwrap();
    assert_eq!(parts.len(), big.len().div_ceil(5 * MIB));
    let client = reqwest::Client::new();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let chunk = big[i * 5 * MIB..big.len().min((i + 1) * 5 * MIB)].to_vec();
        let r = client
            .put(p["url"].as_str().unwrap())
            .body(chunk)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "part {i}: {}", r.status());
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        done.push(json!({"number": p["number"], "etag": etag}));
    }
    let multi = m["id"].as_str().unwrap().to_owned();
    let (s, c) = complete(&f.base, &multi, json!({ "parts": done })).await;
    assert_eq!(s, 202, "{c}");
    // A repeated complete is harmless.
    let (s, _) = complete(&f.base, &multi, json!({ "parts": done })).await;
    assert_eq!(s, 202);

    for id in [&single, &multi] {
        let media = wait_status(&f.base, id, None, &["ready", "failed"]).await;
        assert_eq!(media["status"], "ready", "{media}");
        assert!(!media["renditions"].as_array().unwrap().is_empty());
    }
    let one = wait_status(&f.base, &single, None, &["ready"]).await;
    assert_eq!(one["external_id"], "post-1");
    assert_eq!(one["filename"], "photo.jpg");
}

#[tokio::test]
async fn validation_rejects_a_non_media_direct_upload() {
    let f = upload_fleet("", "127.0.0.1", true).await;
    let text = b"<?php echo 'definitely not a JPEG'; ?>\n".repeat(50);
    let (s, a) = presign(
        &f.base,
        json!({"filename": "cat.jpg", "content_type": "image/jpeg", "bytes": text.len()}),
        None,
    )
    .await;
    assert_eq!(s, 200, "{a}");
    let id = a["id"].as_str().unwrap().to_owned();
    put_single(&a, text).await;
    let (s, _) = complete(&f.base, &id, json!({})).await;
    assert_eq!(s, 202);
    let media = wait_status(&f.base, &id, None, &["failed", "ready"]).await;
    assert_eq!(media["status"], "failed", "{media}");
    assert_eq!(media["error"]["code"], "unsupported_format", "{media}");
    // Declared types that are not media are refused up front.
    let (s, e) = presign(
        &f.base,
        json!({"filename": "a.pdf", "content_type": "application/pdf", "bytes": 10}),
        None,
    )
    .await;
    assert_eq!(s, 415, "{e}");
    assert_eq!(e["error"]["code"], "unsupported_media_type");
}

#[tokio::test]
async fn idempotent_retries_return_the_same_media() {
    let f = upload_fleet("", "127.0.0.1", true).await;
    let send = |file: &'static str, key: &'static str| {
        let base = f.base.clone();
        async move {
            let part = reqwest::multipart::Part::bytes(std::fs::read(fixture(file)).unwrap())
                .file_name(file);
            let form = reqwest::multipart::Form::new()
                .text("external_id", "order-7")
                .part("file", part);
            let r = reqwest::Client::new()
                .post(format!("{base}/v1/uploads"))
                .header("Idempotency-Key", key)
                .multipart(form)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s1, a) = send("photo.jpg", "key-1").await;
    let (s2, b) = send("photo.jpg", "key-1").await;
    assert_eq!((s1, s2), (202, 202), "{a} {b}");
    assert_eq!(a["id"], b["id"], "a retry made a second media");
    let (s3, c) = send("alpha.png", "key-1").await;
    assert_eq!(s3, 422, "{c}");
    assert_eq!(c["error"]["code"], "idempotency_conflict");
    // Concurrent retries of one request also make one media.
    let (r1, r2) = tokio::join!(send("alpha.png", "key-2"), send("alpha.png", "key-2"));
    assert_eq!(r1.1["id"], r2.1["id"]);
    let mut pg = f.pg().await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM media")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(n, 2);
    // Presign retries too.
    let body = json!({"filename": "p.jpg", "content_type": "image/jpeg", "bytes": 1000});
    let (_, p1) = presign(&f.base, body.clone(), Some("key-3")).await;
    let (_, p2) = presign(&f.base, body, Some("key-3")).await;
    assert_eq!(p1["id"], p2["id"]);
    let media = wait_status(&f.base, a["id"].as_str().unwrap(), None, &["ready"]).await;
    assert_eq!(media["external_id"], "order-7");
}

#[tokio::test]
async fn webhook_is_signed_and_retried_after_a_500() {
    let (hook_url, got) = webhook_receiver(1).await;
    let f = upload_fleet(
        "[webhooks]\nsecret = \"whsec-test\"\nallow_hosts = [\"127.0.0.1\"]\nallow_loopback = true\n",
        "127.0.0.1",
        true,
    )
    .await;
    let hook_url = hook_url.replace("localhost", "127.0.0.1");
    let upload = |cb: String| {
        let base = f.base.clone();
        async move {
            let part =
                reqwest::multipart::Part::bytes(std::fs::read(fixture("photo.jpg")).unwrap())
                    .file_name("photo.jpg");
            let form = reqwest::multipart::Form::new()
                .text("callback_url", cb)
                .text("external_id", "hooked")
                .part("file", part);
            let r = reqwest::Client::new()
                .post(format!("{base}/v1/uploads"))
                .header("traceparent", UPLOAD_TRACE)
                .multipart(form)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // Hosts outside the allow-list are refused at upload time.
    let (s, e) = upload("http://169.254.169.254/latest/meta-data".into()).await;
    assert_eq!(s, 400, "{e}");
    let (s, a) = upload(hook_url).await;
    assert_eq!(s, 202, "{a}");
    let id = a["id"].as_str().unwrap();
    wait_status(&f.base, id, None, &["ready"]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let hooks = loop {
        let v = got.lock().unwrap().clone();
        if v.len() >= 2 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "webhook not retried: {} deliveries",
            v.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(hooks[0].answered, 500);
    assert_eq!(hooks[1].answered, 200);
    let now = chrono::Utc::now().timestamp();
    for h in &hooks {
        assert!(
            mediafleet::webhook::verify("whsec-test", &h.signature, &h.body, now, 300),
            "bad signature {}",
            h.signature
        );
        assert!(!mediafleet::webhook::verify(
            "other",
            &h.signature,
            &h.body,
            now,
            300
        ));
    }
    let body: Value = serde_json::from_slice(&hooks[1].body).unwrap();
    assert_eq!(body["id"], id);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["external_id"], "hooked");
    // The relay announced it long after the upload's request ended; the webhook still joins its trace.
    for h in &hooks {
        let trace_id = h.traceparent.split('-').nth(1);
        assert_eq!(
            trace_id,
            UPLOAD_TRACE.split('-').nth(1),
            "the webhook is not in the upload's trace: {:?}",
            h.traceparent
        );
    }
}

/// The trace context the webhook test's upload is sent with.
const UPLOAD_TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test]
async fn a_webhook_that_keeps_failing_is_dead_lettered_after_max_attempts() {
    // The receiver answers 500 forever; the fast test config allows 3 attempts.
    let (hook_url, got) = webhook_receiver(usize::MAX).await;
    let f = upload_fleet(
        "[webhooks]\nsecret = \"whsec-test\"\nallow_hosts = [\"127.0.0.1\"]\nallow_loopback = true\n",
        "127.0.0.1",
        true,
    )
    .await;
    let hook_url = hook_url.replace("localhost", "127.0.0.1");
    let part = reqwest::multipart::Part::bytes(std::fs::read(fixture("photo.jpg")).unwrap())
        .file_name("photo.jpg");
    let form = reqwest::multipart::Form::new()
        .text("callback_url", hook_url)
        .part("file", part);
    let a: Value = reqwest::Client::new()
        .post(format!("{}/v1/uploads", f.base))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = a["id"].as_str().unwrap().to_owned();
    wait_status(&f.base, &id, None, &["ready"]).await;

    let prefix = f
        .env
        .iter()
        .find(|(k, _)| k == "MEDIAFLEET_PREFIX")
        .map(|(_, v)| v.clone())
        .unwrap();
    let q = mediafleet::queue::rabbitmq::RabbitQueue::connect(
        mediafleet::queue::rabbitmq::RabbitConfig {
            prefix,
            ..mediafleet::queue::rabbitmq::RabbitConfig::new(&amqp_url())
        },
    )
    .await
    .unwrap();
    let notify = mediafleet::queue::JobClass::new("notify").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let dead = mediafleet::queue::QueueAdmin::dead_letters(&q, &notify, 10)
            .await
            .unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(
            Instant::now() < deadline,
            "webhook never dead-lettered after {} deliveries",
            got.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]
            .reason
            .contains("retries exhausted after 3 attempts"),
        "{:?}",
        dead[0].reason
    );
    assert!(dead[0].body.contains(&id));
    // Exactly the allowed attempts reached the receiver, and no more follow.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hooks = got.lock().unwrap().clone();
    assert_eq!(hooks.len(), 3, "{} deliveries", hooks.len());
    assert!(hooks.iter().all(|h| h.answered == 500));
    // The media itself stays ready: a failed announcement does not fail the media.
    let m = wait_status(&f.base, &id, None, &["ready"]).await;
    assert_eq!(m["status"], "ready");
}
