//! End to end on the embedded defaults: `mediafleet serve` as a real process, SQLite + local directory.

mod common;

use std::time::Duration;

use common::*;

struct Served {
    proc: Proc,
    base: String,
    dir: tempfile::TempDir,
}

fn serve_in(dir: tempfile::TempDir, port: u16, extra_args: &[&str]) -> Served {
    let cfg = fast_config(dir.path(), "");
    let listen = format!("127.0.0.1:{port}");
    let data = dir.path().join("data");
    let mut args = vec![
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        &listen,
        "serve",
    ];
    args.extend_from_slice(extra_args);
    let proc = Proc::spawn("serve", &args, &[]);
    Served {
        proc,
        base: format!("http://{listen}"),
        dir,
    }
}

async fn start() -> Served {
    let s = serve_in(tempfile::tempdir().unwrap(), free_port(), &[]);
    wait_healthy(&s.base, Duration::from_secs(30)).await;
    s
}

async fn media_rows(dir: &std::path::Path) -> i64 {
    use sqlx::Connection;
    let url = format!("sqlite://{}", dir.join("data/mediafleet.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM media")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn photo_upload_reaches_ready_with_renditions_that_decode() {
    let s = start().await;
    let (status, body) = upload(&s.base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    let id = body["id"].as_str().unwrap();
    let media = wait_final(&s.base, id, Duration::from_secs(60)).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert_eq!(media["kind"], "image");
    assert!(media["blurhash"].is_string(), "{media}");
    assert!(media["version"].as_i64().unwrap() >= 3);
    let client = reqwest::Client::new();
    for (name, max) in [("thumb", 256), ("preview", 1280)] {
        let r = rendition(&media, name);
        let url = r["url"].as_str().unwrap();
        assert_eq!(url, format!("/v1/media/{id}/renditions/{name}"));
        let resp = client.get(format!("{}{url}", s.base)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        assert!(resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age"));
        assert_eq!(
            resp.headers()["content-type"],
            r["content_type"].as_str().unwrap()
        );
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(bytes.len() as i64, r["bytes"].as_i64().unwrap());
        let img = image::load_from_memory(&bytes).expect("rendition decodes");
        assert!(
            img.width().max(img.height()) <= max,
            "{name} is {}x{}",
            img.width(),
            img.height()
        );
        assert_eq!(img.width() as i64, r["width"].as_i64().unwrap());
        // Conditional and ranged requests.
        let again = client
            .get(format!("{}{url}", s.base))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);
        let part = client
            .get(format!("{}{url}", s.base))
            .header("range", "bytes=0-9")
            .send()
            .await
            .unwrap();
        assert_eq!(part.status(), 206);
        assert_eq!(part.bytes().await.unwrap().len(), 10);
    }
    let missing = client
        .get(format!("{}/v1/media/{id}/renditions/nope", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let ready: serde_json::Value = client
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
}

#[tokio::test]
async fn non_media_is_refused_and_hostile_media_fails_cleanly() {
    let s = start().await;
    for name in ["text.jpg", "empty.jpg"] {
        let (status, body) = upload(&s.base, &fixture(name), name).await;
        assert_eq!(status, 415, "{name}: {body}");
        assert_eq!(body["error"]["code"], "unsupported_media_type");
    }
    assert_eq!(
        media_rows(s.dir.path()).await,
        0,
        "a refused upload created a media row"
    );

    let (_, t) = upload(&s.base, &fixture("truncated.jpg"), "truncated.jpg").await;
    let (_, h) = upload(&s.base, &fixture("huge-dimensions.png"), "huge.png").await;
    let truncated = wait_final(&s.base, t["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(truncated["status"], "failed");
    assert_eq!(truncated["error"]["code"], "corrupt_media", "{truncated}");
    let huge = wait_final(&s.base, h["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(huge["status"], "failed");
    assert_eq!(huge["error"]["code"], "too_many_pixels", "{huge}");

    // The worker is not wedged: a good upload afterwards still succeeds.
    let (_, g) = upload(&s.base, &fixture("exif-orientation-6.jpg"), "rotated.jpg").await;
    let good = wait_final(&s.base, g["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(good["status"], "ready", "{good}");
    let preview = rendition(&good, "preview");
    assert!(
        preview["height"].as_i64() > preview["width"].as_i64(),
        "orientation 6 not applied: {preview}"
    );
}

#[tokio::test]
async fn gps_photo_outputs_carry_no_exif() {
    let s = start().await;
    let (_, b) = upload(&s.base, &fixture("gps.jpg"), "gps.jpg").await;
    let media = wait_final(&s.base, b["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert!(
        !media["metadata"].to_string().to_lowercase().contains("gps"),
        "{}",
        media["metadata"]
    );
    for name in ["thumb", "preview"] {
        let url = format!(
            "{}{}",
            s.base,
            rendition(&media, name)["url"].as_str().unwrap()
        );
        let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
        assert!(
            !bytes.windows(4).any(|w| w == b"Exif"),
            "{name} carries EXIF"
        );
    }
}

#[tokio::test]
async fn queued_jobs_survive_a_killed_serve() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // First life: one job at a time, so most uploads are still queued when it dies.
    let mut s = serve_in(dir, port, &["--concurrency", "1"]);
    wait_healthy(&s.base, Duration::from_secs(30)).await;
    let mut ids = vec![];
    for i in 0..6 {
        let (status, b) = upload(&s.base, &fixture("photo.jpg"), &format!("p{i}.jpg")).await;
        assert_eq!(status, 202);
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    s.proc.kill(); // SIGKILL: no drain, leases left dangling
    let dir = s.dir;
    let s = serve_in(dir, port, &[]);
    wait_healthy(&s.base, Duration::from_secs(30)).await;
    for id in &ids {
        let m = wait_final(&s.base, id, Duration::from_secs(90)).await;
        assert_eq!(m["status"], "ready", "{m}");
    }
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let mut s = start().await;
    let (_, b) = upload(&s.base, &fixture("photo.jpg"), "p.jpg").await;
    assert!(b["id"].is_string());
    let code = s.proc.terminate(Duration::from_secs(20));
    assert_eq!(code, Some(0), "serve did not drain and exit 0 on SIGTERM");
}
