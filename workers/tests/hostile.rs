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

#[test]
fn avif_is_recognised_but_refused_with_a_reason() {
    let (r, _out) = run("still.avif");
    assert_eq!(code(&r), "unsupported_format", "{r:?}");
    assert_eq!(r.kind, Some(MediaKind::Image));
    assert!(r.error.as_ref().unwrap().message.contains("AVIF"), "{r:?}");
    assert_eq!(r.metadata["content_type"], "image/avif");
}

#[test]
fn video_and_audio_are_recognised_but_not_processed_yet() {
    for (name, kind) in [
        ("clip.mp4", MediaKind::Video),
        ("tone.m4a", MediaKind::Audio),
        ("tone.mp3", MediaKind::Audio),
    ] {
        let (r, _out) = run(name);
        assert_eq!(code(&r), "unsupported_format", "{name}: {r:?}");
        assert_eq!(r.kind, Some(kind), "{name}");
        assert_eq!(
            r.error.as_ref().unwrap().message,
            "video/audio processing is not available in this build yet"
        );
    }
}
