//! Shared helpers for the fixture-driven tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mediafleet_proto::Profile;
use mediafleet_workers::{process, Limits, Report};

/// Path of a file in the workspace's `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

/// Runs the default profile on a fixture into a fresh directory.
pub fn run(name: &str) -> (Report, tempfile::TempDir) {
    run_with(name, &Profile::default_profile(), &Limits::default())
}

/// Runs `profile` under `limits` on a fixture into a fresh directory.
pub fn run_with(name: &str, profile: &Profile, limits: &Limits) -> (Report, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let report = process(&fixture(name), profile, limits, out.path());
    (report, out)
}

/// Decodes a written rendition.
pub fn open(out: &tempfile::TempDir, file: &str) -> image::DynamicImage {
    image::open(out.path().join(file)).unwrap()
}

/// The error code of a failed report, as its wire name.
pub fn code(report: &Report) -> &'static str {
    assert_eq!(report.status, "failed", "{report:?}");
    report.error.as_ref().unwrap().code.as_str()
}
