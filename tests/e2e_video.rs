//! Video and audio end to end on the embedded defaults: `mediafleet serve` as a real process, uploads through
//! the HTTP api, the sandboxed child doing real FFmpeg work, renditions served back and read with `ffprobe`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

struct Served {
    _proc: Proc,
    base: String,
    dir: tempfile::TempDir,
}

async fn start() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fast_config(dir.path(), "");
    let (proc, base) = serve_embedded(dir.path(), &cfg).await;
    Served {
        _proc: proc,
        base,
        dir,
    }
}

/// Uploads `path` with a profile.
async fn upload_with_profile(base: &str, path: &Path, profile: &str) -> String {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let form = reqwest::multipart::Form::new()
        .text("profile", profile.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/uploads"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let body: Value = r.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// Polls the media until it ends, recording what was visible while it was `processing`.
async fn watch(base: &str, id: &str, within: Duration) -> (Value, Vec<Value>) {
    let deadline = Instant::now() + within;
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let v: Value = client
            .get(format!("{base}/v1/media/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match v["status"].as_str() {
            Some("ready" | "failed" | "deleted") => return (v, seen),
            Some("processing") => seen.push(v),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("media {id} did not finish within {within:?}");
}

async fn get(base: &str, path: &str) -> reqwest::Response {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r
}

fn ffprobe(path: &Path) -> Value {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn video_upload_reaches_ready_with_poster_first_then_mp4_and_hls() {
    let s = start().await;
    let id = upload_with_profile(&s.base, &fixture("av/clip-1080.mp4"), "streaming").await;
    let (media, seen) = watch(&s.base, &id, Duration::from_secs(180)).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert_eq!(media["kind"], "video");
    assert_eq!(media["progress"], 1.0);
    assert_eq!(media["metadata"]["width"], 1920);
    assert!(media["blurhash"].is_string(), "{media}");
    // The poster stage finished, and was visible, while the transcode stage still ran.
    let early = seen
        .iter()
        .find(|m| m["renditions"].as_array().is_some_and(|r| !r.is_empty()))
        .unwrap_or_else(|| panic!("no poster while processing; saw {seen:?}"));
    let names: Vec<&str> = early["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"poster") && names.contains(&"thumb"),
        "{names:?}"
    );
    assert!(!names.contains(&"mp4-720"), "{names:?}");
    let progress: Vec<f64> = seen.iter().filter_map(|m| m["progress"].as_f64()).collect();
    assert!(
        progress.iter().all(|p| (0.0..=1.0).contains(p)),
        "{progress:?}"
    );

    for name in ["poster", "thumb", "mp4-720", "hls"] {
        rendition(&media, name);
    }
    // mp4-720 plays.
    let mp4 = rendition(&media, "mp4-720");
    let r = get(&s.base, mp4["url"].as_str().unwrap()).await;
    assert_eq!(r.headers()["content-type"], "video/mp4");
    let file = s.dir.path().join("mp4-720.mp4");
    std::fs::write(&file, r.bytes().await.unwrap()).unwrap();
    let p = ffprobe(&file);
    let v = &p["streams"][0];
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(1280), Some(720))
    );

    // The ladder: master, variants and every segment through the rendition route.
    let hls = rendition(&media, "hls");
    let url = hls["url"].as_str().unwrap();
    assert_eq!(url, format!("/v1/media/{id}/renditions/hls"));
    let r = get(&s.base, url).await;
    assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");
    let master = r.text().await.unwrap();
    let variants: Vec<&str> = master
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(
        variants,
        ["1080p/index.m3u8", "720p/index.m3u8", "480p/index.m3u8"],
        "{master}"
    );
    let mut segments = 0;
    for v in variants {
        let r = get(&s.base, &format!("{url}/{v}")).await;
        assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");
        let playlist = r.text().await.unwrap();
        let dir = v.rsplit_once('/').unwrap().0;
        for seg in playlist
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let r = get(&s.base, &format!("{url}/{dir}/{seg}")).await;
            assert_eq!(r.headers()["content-type"], "video/mp2t");
            assert!(!r.bytes().await.unwrap().is_empty());
            segments += 1;
        }
    }
    assert!(segments >= 3);
    // Paths cannot climb out of the rendition.
    let r = reqwest::get(format!("{}{url}/../mp4-720/x", s.base))
        .await
        .unwrap();
    assert_ne!(r.status(), 200);
}

#[tokio::test]
async fn audio_upload_gives_audio_and_peaks_and_hostile_video_fails_with_its_code() {
    let s = start().await;
    let audio = upload_with_profile(&s.base, &fixture("av/tone.flac"), "default").await;
    let hostile = upload_with_profile(&s.base, &fixture("av/absurd-duration.mp4"), "default").await;
    let (media, _) = watch(&s.base, &audio, Duration::from_secs(120)).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert_eq!(media["kind"], "audio");
    let a = rendition(&media, "audio");
    assert_eq!(a["content_type"], "audio/mp4");
    assert!(
        (a["duration_seconds"].as_f64().unwrap() - 2.0).abs() < 0.1,
        "{a}"
    );
    let peaks = rendition(&media, "peaks");
    let doc: Value = get(&s.base, peaks["url"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["length"], 1000);

    let (media, _) = watch(&s.base, &hostile, Duration::from_secs(60)).await;
    assert_eq!(media["status"], "failed", "{media}");
    assert_eq!(media["error"]["code"], "too_long", "{media}");
}
