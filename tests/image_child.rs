//! `mediafleet-image`, the still-image child: the same report as `mediafleet process`, no FFmpeg linked, and
//! the worker's sandbox sends it exactly the images that need no FFmpeg.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{bin, fixture};
use mediafleet::sandbox::Sandbox;
use mediafleet_proto::Profile;
use mediafleet_workers::Limits;
use serde_json::Value;

/// `mediafleet-image`, from the same build as [`bin`].
fn image_bin() -> PathBuf {
    let lean = bin().with_file_name("mediafleet-image");
    assert!(lean.is_file(), "{} is not built", lean.display());
    lean
}

fn run(exe: &Path, input: &str, out: &Path) -> (i32, Value) {
    let o = Command::new(exe)
        .arg("process")
        .arg(fixture(input))
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{input}: not one JSON report ({e})"));
    (o.status.code().unwrap(), report)
}

#[test]
fn the_image_child_links_no_ffmpeg() {
    let out = Command::new("ldd")
        .arg(image_bin())
        .output()
        .expect("ldd (libc-bin) is needed to read the child's shared libraries");
    let libs = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{libs}");
    for lib in [
        "libavcodec",
        "libavformat",
        "libavfilter",
        "libavutil",
        "libswscale",
    ] {
        assert!(
            !libs.contains(lib),
            "{lib} is linked into mediafleet-image:\n{libs}"
        );
    }
    // The full binary does link them: the check above is not vacuous.
    let full = Command::new("ldd").arg(bin()).output().unwrap();
    assert!(String::from_utf8_lossy(&full.stdout).contains("libavcodec"));
}

#[test]
fn the_image_child_reports_like_process_and_refuses_what_needs_ffmpeg() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (code, lean) = run(&image_bin(), "photo.jpg", a.path());
    let (full_code, full) = run(&bin(), "photo.jpg", b.path());
    assert_eq!((code, full_code), (0, 0), "{lean}\n{full}");
    for field in [
        "kind",
        "status",
        "metadata",
        "blurhash",
        "thumbhash",
        "renditions",
    ] {
        assert_eq!(lean[field], full[field], "{field} differs");
    }
    for input in ["still.heic", "animated.gif", "cmyk.jpg", "rgb16.png"] {
        let out = tempfile::tempdir().unwrap();
        let (code, r) = run(&image_bin(), input, out.path());
        assert_eq!(
            (code, r["status"].as_str()),
            (0, Some("ready")),
            "{input}: {r}"
        );
    }
    for input in ["still.avif", "clip.mp4", "tone.mp3"] {
        let out = tempfile::tempdir().unwrap();
        let (code, r) = run(&image_bin(), input, out.path());
        assert_eq!(code, 2, "{input}: {r}");
        assert_eq!(r["error"]["code"], "unsupported_format", "{input}: {r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("mediafleet process"),
            "{input}: {r}"
        );
    }
}

/// A stand-in image child that says it ran, so the test sees which child the sandbox picked.
fn marker_child(dir: &Path) -> PathBuf {
    let path = dir.join("mediafleet-image");
    std::fs::write(
        &path,
        "#!/bin/sh\necho '{\"kind\":\"image\",\"status\":\"failed\",\"error\":{\"code\":\"internal\",\"message\":\"image child ran\"},\"metadata\":{},\"blurhash\":null,\"thumbhash\":null,\"renditions\":[]}'\nexit 2\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn the_sandbox_sends_images_without_ffmpeg_needs_to_the_image_child() {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::with_exe(bin(), 4 << 30);
    assert_eq!(sandbox.image_exe.as_deref(), Some(image_bin().as_path()));
    sandbox.image_exe = Some(marker_child(dir.path()));
    let profile = Profile::default_profile();
    for (input, image_child) in [
        ("photo.jpg", true),
        ("alpha.png", true),
        ("still.heic", true),
        ("still.avif", false),
        ("clip.mp4", false),
        ("text.jpg", false),
    ] {
        let out = tempfile::tempdir().unwrap();
        let report = sandbox
            .run(
                &fixture(input),
                &profile,
                &Limits::default(),
                out.path(),
                Duration::from_secs(120),
            )
            .await
            .unwrap();
        let said = report.error.as_ref().map(|e| e.message.as_str());
        assert_eq!(
            said == Some("image child ran"),
            image_child,
            "{input}: {report:?}"
        );
    }
}

/// `mediafleet process` on a still image hands it to `mediafleet-image` (an exec, same arguments); on a video
/// it does the work itself. Watched with strace's execve trace.
#[test]
fn process_hands_still_images_to_the_image_child() {
    let dir = tempfile::tempdir().unwrap();
    let trace = |input: &str| {
        let log = dir.path().join(format!("{input}.trace"));
        let out = dir.path().join(format!("{input}.out"));
        let o = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=execve", "-o"])
            .arg(&log)
            .arg(bin())
            .arg("process")
            .arg(fixture(input))
            .arg("--out")
            .arg(&out)
            .output()
            .expect("strace is installed (scripts/ensure-deps.sh --services)");
        assert!(
            o.status.success(),
            "{input}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(report["status"], "ready", "{input}: {report}");
        std::fs::read_to_string(&log).unwrap()
    };
    let still = trace("photo.jpg");
    assert!(
        still.contains("mediafleet-image\", [\"mediafleet-image\"")
            || still.contains("/mediafleet-image\""),
        "photo.jpg was not handed to mediafleet-image:\n{still}"
    );
    let video = trace("clip.mp4");
    assert!(
        !video.contains("mediafleet-image"),
        "a video must stay in the full binary:\n{video}"
    );
}
