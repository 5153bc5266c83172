//! Bad, hostile and not-yet-supported input: every one is a failed report with a stable code, never a panic.

mod common;

use std::time::{Duration, Instant};

use common::{code, fixture, run, run_with};
use mediafleet_proto::{MediaKind, Profile};
use mediafleet_workers::Limits;

#[test]
fn truncated_jpeg_is_corrupt() {
    let (r, out) = run("truncated.jpg");
    assert_eq!(code(&r), "corrupt_media", "{r:?}");
    assert_eq!(r.kind, Some(MediaKind::Image));
    assert!(r.renditions.is_empty());
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn huge_dimensions_fail_fast_from_the_header() {
    let started = Instant::now();
    let (r, _out) = run("huge-dimensions.png");
    assert_eq!(code(&r), "too_many_pixels", "{r:?}");
    assert!(r.error.as_ref().unwrap().message.contains("100000×100000"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn empty_and_text_files_are_unsupported() {
    for name in ["empty.jpg", "text.jpg"] {
        let (r, _out) = run(name);
        assert_eq!(code(&r), "unsupported_format", "{name}: {r:?}");
        assert_eq!(r.kind, None, "{name}");
        let head = std::fs::read(fixture(name)).unwrap();
        assert_eq!(mediafleet_workers::sniff(&head), None, "{name}");
    }
}

#[test]
fn byte_limit_is_checked_before_decoding() {
    let limits = Limits {
        image_bytes: 10_000,
        ..Limits::default()
    };
    let (r, _out) = run_with("photo.jpg", &Profile::default_profile(), &limits);
    assert_eq!(code(&r), "too_large_bytes", "{r:?}");
}

#[test]
fn pixel_limit_uses_the_configured_value() {
    let limits = Limits {
        image_pixels: 1_000_000,
        ..Limits::default()
    };
    let (r, _out) = run_with("photo.jpg", &Profile::default_profile(), &limits);
    assert_eq!(code(&r), "too_many_pixels", "{r:?}");
}

#[test]
fn frame_limits_apply_to_animations() {
    let limits = Limits {
        frames: 3,
        ..Limits::default()
    };
    let (r, _out) = run_with("animated.gif", &Profile::default_profile(), &limits);
    assert_eq!(code(&r), "too_many_frames", "{r:?}");
    let limits = Limits {
        pixel_frames: 120 * 90 * 3,
        ..Limits::default()
    };
    let (r, _out) = run_with("animated.webp", &Profile::default_profile(), &limits);
    assert_eq!(code(&r), "too_many_pixel_frames", "{r:?}");
}

/// Runs a hostile fixture and checks its code and that the answer came in under a second.
fn fails_fast(name: &str, want: &str) {
    let started = Instant::now();
    let (r, out) = run(name);
    let took = started.elapsed();
    assert_eq!(code(&r), want, "{name}: {r:?}");
    assert!(r.renditions.is_empty(), "{name}");
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "{name}: files written"
    );
    assert!(took < Duration::from_secs(1), "{name} took {took:?}");
}

#[test]
fn decompression_bomb_png_fails_from_the_header() {
    fails_fast("bomb.png", "too_many_pixels");
}

#[test]
fn truncated_progressive_jpeg_is_corrupt() {
    fails_fast("truncated-progressive.jpg", "corrupt_media");
}

#[test]
fn malformed_exif_block_is_corrupt() {
    fails_fast("bad-exif.jpg", "corrupt_media");
    let (r, _out) = run("bad-exif.jpg");
    assert!(r.error.unwrap().message.contains("EXIF"));
}

#[test]
fn huge_dimensions_and_truncated_baseline_fail_fast() {
    fails_fast("huge-dimensions.png", "too_many_pixels");
    fails_fast("truncated.jpg", "corrupt_media");
}

#[test]
fn jpeg_pixel_limit_is_checked_before_decoding() {
    let limits = Limits {
        image_pixels: 50_000,
        ..Limits::default()
    };
    for name in ["photo.jpg", "progressive.jpg", "cmyk.jpg"] {
        let (r, _out) = run_with(name, &Profile::default_profile(), &limits);
        assert_eq!(code(&r), "too_many_pixels", "{name}: {r:?}");
    }
}

#[test]
fn video_and_audio_are_recognised_and_processed() {
    for (name, kind) in [
        ("clip.mp4", MediaKind::Video),
        ("tone.m4a", MediaKind::Audio),
        ("tone.mp3", MediaKind::Audio),
    ] {
        let (r, _out) = run(name);
        assert!(r.is_ready(), "{name}: {r:?}");
        assert_eq!(r.kind, Some(kind), "{name}");
    }
}
