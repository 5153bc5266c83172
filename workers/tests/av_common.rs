//! Helpers for the video/audio tests: run the pipeline on a fixture, and look at outputs with the real
//! `ffprobe`/`ffmpeg` CLI (an independent reader, not our own probe).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use mediafleet_proto::Profile;
use mediafleet_workers::{process_with, Control, Limits, Report};
use serde_json::Value;

/// A fixture under `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

/// Runs `profile` on a fixture into a fresh directory.
pub fn run(name: &str, profile: &Profile) -> (Report, tempfile::TempDir) {
    run_limits(name, profile, &Limits::default())
}

/// Runs `profile` under `limits`.
pub fn run_limits(name: &str, profile: &Profile, limits: &Limits) -> (Report, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let report = process_with(&fixture(name), profile, limits, out.path(), &Control::new());
    (report, out)
}

/// The `streaming` profile with short segments, so a 3 s clip has several.
pub fn streaming(segment_seconds: u32) -> Profile {
    let mut p = Profile::builtin().remove("streaming").unwrap();
    p.video.hls.as_mut().unwrap().segment_seconds = segment_seconds;
    p
}

/// `ffprobe -show_format -show_streams` as JSON.
pub fn ffprobe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
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
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe refused {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The first stream of `kind` (`video`/`audio`) in an ffprobe answer.
pub fn stream<'a>(probe: &'a Value, kind: &str) -> Option<&'a Value> {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == kind)
}

/// The container duration in seconds.
pub fn duration(probe: &Value) -> f64 {
    probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Counts frames by decoding (`-count_frames`).
pub fn count_frames(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The error code of a failed report.
pub fn code(report: &Report) -> &'static str {
    assert_eq!(report.status, "failed", "{report:?}");
    report.error.as_ref().unwrap().code.as_str()
}

/// Asserts `x` is within `tol` of `want`.
pub fn near(x: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (x - want).abs() <= tol,
        "{what}: {x} is not within {tol} of {want}"
    );
}

/// Mean of (max − min channel) over an RGB image: grey and washed out is near 0, testsrc bars are far above.
pub fn colourfulness(img: &image::RgbImage) -> f64 {
    let sum: u64 = img
        .pixels()
        .map(|p| u64::from(p.0.iter().max().unwrap() - p.0.iter().min().unwrap()))
        .sum();
    sum as f64 / (img.width() * img.height()) as f64
}
