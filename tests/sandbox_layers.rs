//! The media child confines itself: on this machine every layer runs, a socket, a connection, a file outside
//! its input and output and running another program are all denied, and the real pipelines still work
//! inside (image, video, audio), for both child binaries.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn image_bin() -> PathBuf {
    bin().with_file_name("mediafleet-image")
}

/// Runs `EXE process INPUT --out DIR --sandboxed EXTRA…`; returns (exit code, stdout JSON, stderr).
fn run(exe: &Path, input: &Path, out: &Path, extra: &[&str]) -> (i32, Value, String) {
    let o = Command::new(exe)
        .arg("process")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--sandboxed", "--max-memory", &(4u64 << 30).to_string()])
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let json = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{}: no JSON ({e}); stderr: {stderr}", exe.display()));
    (o.status.code().unwrap_or(-1), json, stderr)
}

#[test]
fn every_layer_runs_and_denies_what_it_must() {
    for exe in [bin(), image_bin()] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("job").join("out");
        let (code, report, stderr) = run(&exe, &fixture("photo.jpg"), &out, &["--self-check"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stderr.contains("mediafleet-sandbox rlimits=on netns=on seccomp=on landlock=on"),
            "{}: {stderr}",
            exe.display()
        );
        for denied in [
            "socket_denied",
            "connect_denied",
            "outside_read_denied",
            "outside_write_denied",
            "exec_denied",
        ] {
            assert_eq!(
                report[denied],
                true,
                "{}: {denied}: {report}",
                exe.display()
            );
        }
        assert_eq!(report["input_readable"], true, "{report}");
        assert_eq!(report["output_writable"], true, "{report}");
        assert!(!dir
            .path()
            .join("job")
            .join("mediafleet-self-check-sibling")
            .exists());
    }
}

#[test]
fn the_pipelines_work_inside_the_sandbox() {
    let cases: [(PathBuf, &str, &[&str]); 4] = [
        (image_bin(), "photo.jpg", &["thumb", "preview"]),
        (bin(), "av/clip-1080.mp4", &["poster", "thumb", "mp4-720"]),
        (bin(), "av/tone.flac", &["audio", "peaks"]),
        (bin(), "av/vfr.mkv", &["poster", "mp4-720"]),
    ];
    for (exe, file, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let (code, report, stderr) = run(&exe, &fixture(file), &out, &[]);
        assert_eq!(code, 0, "{file}: {report} {stderr}");
        assert_eq!(report["status"], "ready", "{file}: {report}");
        let names: Vec<&str> = report["renditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for w in want {
            assert!(names.contains(w), "{file}: {names:?}");
        }
    }
}
