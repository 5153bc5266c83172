//! `mediafleet process` on video and audio at the binary level: `--only`, the JSON report on stdout, exit codes,
//! and the sandbox killing a child at its deadline.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{bin, fixture};
use serde_json::Value;

fn process(input: &str, out: &Path, extra: &[&str]) -> (i32, Value) {
    let o = Command::new(bin())
        .arg("process")
        .arg(fixture(input))
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON report ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    (o.status.code().unwrap(), report)
}

fn names(report: &Value) -> Vec<String> {
    report["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn only_restricts_image_renditions() {
    let out = tempfile::tempdir().unwrap();
    let (code, r) = process("photo.jpg", out.path(), &[]);
    assert_eq!(code, 0, "{r}");
    let mut all = names(&r);
    all.sort();
    assert_eq!(all, ["preview", "thumb"]);
    assert!(
        r["blurhash"].is_string() && r["thumbhash"].is_string(),
        "{r}"
    );

    let out = tempfile::tempdir().unwrap();
    let (code, r) = process("photo.jpg", out.path(), &["--only", "preview"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r), ["preview"]);
    assert_eq!(files(out.path()), ["preview.jpg"]);
}

#[test]
fn only_restricts_video_renditions() {
    let out = tempfile::tempdir().unwrap();
    let (code, r) = process("av/clip-1080.mp4", out.path(), &["--only", "poster,thumb"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r), ["poster", "thumb"]);
    assert_eq!(files(out.path()), ["poster.jpg", "thumb.webp"]);

    let out = tempfile::tempdir().unwrap();
    let (code, r) = process("av/clip-1080.mp4", out.path(), &["--only", "thumb"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r), ["thumb"]);
    assert_eq!(files(out.path()), ["thumb.webp"]);

    let out = tempfile::tempdir().unwrap();
    let (code, r) = process(
        "av/clip-1080.mp4",
        out.path(),
        &["--profile", "streaming", "--only", "hls"],
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r), ["hls"]);
    assert_eq!(r["renditions"][0]["file"], "hls/master.m3u8");
    assert_eq!(files(out.path()), ["hls"]);
    assert!(out.path().join("hls/master.m3u8").is_file());

    let out = tempfile::tempdir().unwrap();
    let (code, r) = process("av/tone.opus", out.path(), &["--only", "audio"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["kind"], "audio");
    assert_eq!(names(&r), ["audio"]);
    assert_eq!(files(out.path()), ["audio.m4a"]);
}

#[test]
fn failed_media_prints_the_report_and_exits_2() {
    let out = tempfile::tempdir().unwrap();
    let (code, r) = process("av/absurd-dimensions.mov", out.path(), &[]);
    assert_eq!(code, 2);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "too_many_pixels");
    let (code, r) = process("av/truncated.mp4", out.path(), &[]);
    assert_eq!(code, 2);
    assert_eq!(r["error"]["code"], "corrupt_media");
}

#[tokio::test]
async fn the_sandbox_kills_a_child_at_its_deadline() {
    let sandbox = mediafleet::sandbox::Sandbox::with_exe(bin(), 4 << 30);
    let out = tempfile::tempdir().unwrap();
    let profile = mediafleet_proto::Profile::builtin()
        .remove("streaming")
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let report = {
        let seen = seen.clone();
        sandbox
            .run_with_progress(
                &fixture("av/clip-1080.mp4"),
                &profile,
                &mediafleet_workers::Limits::default(),
                out.path(),
                Duration::from_millis(1500),
                move |p| seen.lock().unwrap().push(p),
            )
            .await
            .unwrap()
    };
    assert_eq!(report.error.unwrap().code.as_str(), "timeout");
    // The child is gone: nothing writes into the scratch directory any more.
    let before = files(out.path());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(files(out.path()), before);
    // What it reported on the way is a fraction that only grows. (How far it got in 1.5 s depends on the
    // machine's load, so no minimum is asserted here; the run below must reach 1.)
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().all(|p| (0.0..=1.0).contains(p)), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");

    // With time enough, the same run ends ready with progress at 1.
    let out = tempfile::tempdir().unwrap();
    let last = std::sync::Arc::new(std::sync::Mutex::new(0.0));
    let report = {
        let last = last.clone();
        sandbox
            .run_with_progress(
                &fixture("av/clip-1080.mp4"),
                &profile,
                &mediafleet_workers::Limits::default(),
                out.path(),
                Duration::from_secs(120),
                move |p| *last.lock().unwrap() = p,
            )
            .await
            .unwrap()
    };
    assert!(report.is_ready(), "{report:?}");
    assert_eq!(*last.lock().unwrap(), 1.0);
}
