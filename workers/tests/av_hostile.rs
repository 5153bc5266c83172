//! Hostile and broken video files fail fast with their own codes, from headers, before decoding.

mod av_common;

use std::time::{Duration, Instant};

use av_common::*;
use mediafleet_proto::Profile;
use mediafleet_workers::Limits;

/// Generous for a debug build on a busy 2-core machine; a decode of the lie would take hours.
const BOUND: Duration = Duration::from_secs(5);

fn timed(name: &str, limits: &Limits) -> (&'static str, Duration) {
    let t = Instant::now();
    let (r, out) = run_limits(
        name,
        &Profile::builtin().remove("streaming").unwrap(),
        limits,
    );
    let took = t.elapsed();
    let entries: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert!(entries.is_empty(), "{name}: a failed job wrote {entries:?}");
    (code(&r), took)
}

#[test]
fn headers_that_lie_are_refused_with_codes() {
    for (name, want) in [
        ("av/absurd-duration.mp4", "too_long"),
        ("av/absurd-dimensions.mov", "too_many_pixels"),
        ("av/truncated.mp4", "corrupt_media"),
    ] {
        let (got, took) = timed(name, &Limits::default());
        assert_eq!(got, want, "{name}");
        assert!(took < BOUND, "{name} took {took:?}");
    }
}

#[test]
fn each_limit_has_its_code() {
    let clip = "av/clip-1080.mp4";
    let cases = [
        (
            Limits {
                video_seconds: 2.0,
                ..Limits::default()
            },
            "too_long",
        ),
        (
            Limits {
                streams: 1,
                ..Limits::default()
            },
            "too_many_streams",
        ),
        (
            Limits {
                video_pixels: 1280 * 720,
                ..Limits::default()
            },
            "too_many_pixels",
        ),
        (
            Limits {
                video_frames: 10,
                ..Limits::default()
            },
            "too_many_frames",
        ),
        (
            Limits {
                video_bytes: 1000,
                ..Limits::default()
            },
            "too_large_bytes",
        ),
    ];
    for (limits, want) in cases {
        let (got, took) = timed(clip, &limits);
        assert_eq!(got, want);
        assert!(took < BOUND, "{want} took {took:?}");
    }
    // Audio has a duration limit too.
    let (got, _) = timed(
        "av/tone.flac",
        &Limits {
            video_seconds: 1.0,
            ..Limits::default()
        },
    );
    assert_eq!(got, "too_long");
}

#[test]
fn garbage_behind_a_video_signature_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.mp4");
    let mut bytes = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
    bytes.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&path, bytes).unwrap();
    let out = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let r = mediafleet_workers::process(
        &path,
        &Profile::default_profile(),
        &Limits::default(),
        out.path(),
    );
    assert_eq!(code(&r), "corrupt_media");
    assert!(t.elapsed() < BOUND);
}
