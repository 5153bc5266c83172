//! The still-image pipeline (`process_still_image`, what the lean `mediafleet-image` child runs): any file
//! ends in a report, never a panic, crash or hang. A `ready` report's renditions fit their boxes and match the
//! files written. Limits are small so each run is quick; a refusal on them is a normal `failed` report.
#![no_main]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use libfuzzer_sys::fuzz_target;
use mediafleet_proto::{Crop, ErrorCode, Fit, OutputFormat, Profile, RenditionSpec};
use mediafleet_workers::{process_still_image, Control, Limits};

/// One input file and one output directory per process, reused by every run.
static PATHS: LazyLock<(PathBuf, PathBuf)> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("mediafleet-fuzz-still-{}", std::process::id()));
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("fuzz scratch dir");
    (dir.join("input"), out)
});

static PROFILE: LazyLock<Profile> = LazyLock::new(|| {
    let mut profile = Profile::default_profile();
    profile.image = vec![
        RenditionSpec {
            quality: 60,
            animated: true,
            ..RenditionSpec::new("thumb", 48, 48, OutputFormat::Webp)
        },
        RenditionSpec {
            quality: 60,
            fit: Fit::Cover,
            crop: Crop::Attention,
            png_if_alpha: true,
            ..RenditionSpec::new("square", 32, 32, OutputFormat::Jpeg)
        },
        RenditionSpec {
            fit: Fit::Cover,
            crop: Crop::Entropy,
            ..RenditionSpec::new("strip", 40, 12, OutputFormat::Png)
        },
    ];
    profile
});

/// Small limits, so a run stays around a millisecond: 512×512 pixels (the small seeds, up to 96×72, decode
/// and go through every rendition; the 1600×1200 photos among the seeds exercise the header checks and the
/// refusal), 16 frames.
static LIMITS: LazyLock<Limits> = LazyLock::new(|| Limits {
    image_bytes: 1 << 20,
    image_pixels: 512 * 512,
    frames: 16,
    pixel_frames: 1 << 20,
    max_alloc_bytes: 256 << 20,
    metadata_bytes: 1 << 20,
    ..Limits::default()
});

/// `internal` means "a bug on our side"; each distinct message is printed once so a run's log shows them.
static INTERNAL: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

fuzz_target!(|data: &[u8]| {
    let (input, out) = &*PATHS;
    std::fs::write(input, data).expect("write the fuzz input");
    let report = process_still_image(input, &PROFILE, &LIMITS, out, &Control::new());
    if report.is_ready() {
        assert!(report.error.is_none());
        for r in &report.renditions {
            let spec = PROFILE
                .image
                .iter()
                .find(|s| s.name == r.name)
                .unwrap_or_else(|| panic!("rendition {:?} is not in the profile", r.name));
            let (w, h) = (r.width.unwrap_or(0), r.height.unwrap_or(0));
            assert!(
                w >= 1 && h >= 1 && w <= spec.max_width && h <= spec.max_height,
                "{} is {w}×{h}, the box is {}×{}",
                r.name,
                spec.max_width,
                spec.max_height
            );
            let written = std::fs::metadata(out.join(&r.file))
                .unwrap_or_else(|e| panic!("{} was reported but not written: {e}", r.file))
                .len();
            assert_eq!(written, r.bytes, "{}: reported size", r.file);
        }
    } else {
        let error = report.error.as_ref().expect("a failed report has an error");
        if error.code == ErrorCode::Internal
            && INTERNAL
                .lock()
                .expect("internal log")
                .insert(error.message.clone())
        {
            eprintln!("INTERNAL: {}", error.message);
        }
    }
});
