//! Good images: sizes, orientation, alpha, animation, stripped metadata.

mod common;

use common::{fixture, open, run, run_with};
use image::GenericImageView;
use mediafleet_proto::{Fit, OutputFormat, Profile, RenditionSpec};
use mediafleet_workers::Limits;
use sha2::{Digest, Sha256};

#[test]
fn photo_gets_thumb_and_preview_within_bounds() {
    let (r, out) = run("photo.jpg");
    assert!(r.is_ready(), "{r:?}");
    let names: Vec<(&str, &str, &str)> = r
        .renditions
        .iter()
        .map(|x| (x.name.as_str(), x.file.as_str(), x.content_type.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("thumb", "thumb.webp", "image/webp"),
            ("preview", "preview.jpg", "image/jpeg")
        ]
    );
    let thumb = &r.renditions[0];
    assert_eq!((thumb.width, thumb.height), (Some(256), Some(192)));
    let preview = &r.renditions[1];
    assert_eq!((preview.width, preview.height), (Some(1280), Some(960)));
    for rend in &r.renditions {
        let bytes = std::fs::read(out.path().join(&rend.file)).unwrap();
        assert_eq!(rend.bytes, bytes.len() as u64);
        assert_eq!(rend.sha256, hex::encode(Sha256::digest(&bytes)));
        let img = open(&out, &rend.file);
        assert_eq!(
            img.dimensions(),
            (rend.width.unwrap(), rend.height.unwrap())
        );
    }
    assert_eq!(r.metadata["width"], 1600);
    assert_eq!(r.metadata["format"], "jpeg");
    assert_eq!(r.metadata["animated"], false);
    assert_eq!(r.blurhash.as_ref().map(|h| h.len()), Some(28));
    assert!(r.thumbhash.as_ref().is_some_and(|h| !h.is_empty()));
}

#[test]
fn small_source_is_never_upscaled() {
    let (r, _out) = run("alpha.png");
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(
        (r.renditions[0].width, r.renditions[0].height),
        (Some(256), Some(192))
    );
    assert_eq!(
        (r.renditions[1].width, r.renditions[1].height),
        (Some(320), Some(240))
    );
}

#[test]
fn orientation_6_is_applied() {
    let (r, out) = run("exif-orientation-6.jpg");
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(
        (r.metadata["width"].as_u64(), r.metadata["height"].as_u64()),
        (Some(480), Some(640))
    );
    assert_eq!(r.metadata["orientation"], 6);
    let preview = open(&out, "preview.jpg").to_rgb8();
    assert_eq!(preview.dimensions(), (480, 640));
    // Stored top rows are red and stored left columns blue: upright, red is on the right and blue on top.
    let [r_, g, b] = preview.get_pixel(470, 320).0;
    assert!(
        r_ > 180 && g < 80 && b < 80,
        "right edge should be red, got {:?}",
        (r_, g, b)
    );
    let [r_, g, b] = preview.get_pixel(240, 15).0;
    assert!(
        b > 180 && r_ < 80 && g < 80,
        "top edge should be blue, got {:?}",
        (r_, g, b)
    );
    let thumb = open(&out, "thumb.webp");
    assert_eq!(thumb.dimensions(), (192, 256));
}

#[test]
fn outputs_carry_no_exif_or_gps() {
    let original = std::fs::read(fixture("gps.jpg")).unwrap();
    assert!(
        has_app1(&original),
        "the fixture must have an EXIF block for this test to mean anything"
    );
    let (r, out) = run("gps.jpg");
    assert!(r.is_ready(), "{r:?}");
    let jpg = std::fs::read(out.path().join("preview.jpg")).unwrap();
    assert!(
        !has_app1(&jpg),
        "preview.jpg has an APP1 (EXIF/XMP) segment"
    );
    assert!(!contains(&jpg, b"Exif\0\0"));
    let webp = std::fs::read(out.path().join("thumb.webp")).unwrap();
    let chunks = riff_chunks(&webp);
    assert!(
        !chunks.iter().any(|c| c == b"EXIF" || c == b"XMP "),
        "thumb.webp chunks: {chunks:?}"
    );
    // Camera facts are reported; location is not.
    assert_eq!(r.metadata["camera_make"], "Mediafleet");
    assert_eq!(r.metadata["camera_model"], "Fixture Camera 1");
    assert_eq!(r.metadata["captured_at"], "2024-05-17T10:30:00");
    assert!(!r.metadata.keys().any(|k| k.to_lowercase().contains("gps")));
    assert!(!serde_json::to_string(&r).unwrap().contains("52.0"));
}

#[test]
fn alpha_survives_into_webp_and_flattens_to_white_in_jpeg() {
    let (r, out) = run("alpha.png");
    assert_eq!(r.metadata["has_alpha"], true);
    let thumb = open(&out, "thumb.webp");
    assert!(
        thumb.color().has_alpha(),
        "thumb.webp lost its alpha: {:?}",
        thumb.color()
    );
    let thumb = thumb.to_rgba8();
    assert_eq!(
        thumb.get_pixel(2, 2).0[3],
        0,
        "corner should stay transparent"
    );
    assert!(
        thumb.get_pixel(128, 40).0[3] > 250,
        "disc should stay opaque"
    );
    let preview = open(&out, "preview.jpg").to_rgb8();
    let corner = preview.get_pixel(2, 2).0;
    assert!(
        corner.iter().all(|&c| c > 245),
        "transparent corner should be white in JPEG, got {corner:?}"
    );
}

#[test]
fn animations_render_their_first_frame() {
    for name in ["animated.gif", "animated.webp"] {
        let (r, out) = run(name);
        assert!(r.is_ready(), "{name}: {r:?}");
        assert_eq!(r.metadata["animated"], true, "{name}");
        assert_eq!(r.metadata["frames"], 4, "{name}");
        let preview = open(&out, "preview.jpg").to_rgb8();
        assert_eq!(preview.dimensions(), (120, 90));
        let [red, g, b] = preview.get_pixel(100, 10).0;
        assert!(
            red > 180 && g < 80 && b < 80,
            "{name}: first frame is red, got {:?}",
            (red, g, b)
        );
    }
}

#[test]
fn lossless_webp_with_alpha_decodes() {
    let (r, _out) = run("lossless.webp");
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(r.metadata["format"], "webp");
    assert_eq!(r.metadata["has_alpha"], true);
    assert_eq!(r.metadata["animated"], false);
}

#[test]
fn cover_crops_to_the_box_and_formats_follow_the_profile() {
    let profile = Profile {
        image: vec![RenditionSpec {
            quality: 90,
            fit: Fit::Cover,
            ..RenditionSpec::new("square", 200, 200, OutputFormat::Png)
        }],
        keep_gps: false,
        ..Profile::default_profile()
    };
    let (r, out) = run_with("photo.jpg", &profile, &Limits::default());
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(r.renditions[0].file, "square.png");
    assert_eq!(open(&out, "square.png").dimensions(), (200, 200));
}

#[test]
fn existing_files_are_replaced() {
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("thumb.webp"), b"stale").unwrap();
    let r = mediafleet_workers::process(
        &fixture("photo.jpg"),
        &Profile::default_profile(),
        &Limits::default(),
        out.path(),
    );
    assert!(r.is_ready(), "{r:?}");
    let thumb = std::fs::read(out.path().join("thumb.webp")).unwrap();
    assert!(thumb.starts_with(b"RIFF"));
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["preview.jpg", "thumb.webp"],
        "no temporary files may be left behind"
    );
}

/// Whether a JPEG has an APP1 segment (where EXIF and XMP live) before its scan data.
fn has_app1(jpeg: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
        let marker = jpeg[i + 1];
        if marker == 0xE1 {
            return true;
        }
        if marker == 0xDA {
            return false;
        }
        i += 2 + usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
    }
    false
}

fn riff_chunks(webp: &[u8]) -> Vec<[u8; 4]> {
    let mut out = Vec::new();
    let mut i = 12;
    while i + 8 <= webp.len() {
        out.push(webp[i..i + 4].try_into().unwrap());
        let len = u32::from_le_bytes(webp[i + 4..i + 8].try_into().unwrap()) as usize;
        i += 8 + len + (len & 1);
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Found by the `still_image` fuzz target: a small animated WebP (46×30 canvas) whose attention and entropy
/// crops were placed against the far edge came out one rounding step past it, and the resampler refused
/// the box, so the media got an `internal` error (retried, never ready). The crop box is now clamped to the
/// frame. The input is `fuzz/regressions/still_image/cover-crop-past-the-edge.webp`; the profile is the
/// fuzz target's.
#[test]
fn cover_crops_at_the_far_edge_stay_inside_the_frame() {
    use mediafleet_proto::Crop;
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
    let (r, out) = run_with(
        "../fuzz/regressions/still_image/cover-crop-past-the-edge.webp",
        &profile,
        &Limits::default(),
    );
    // Before the fix: failed, `internal`, "resize failed: … crop box is out of the image boundaries".
    assert!(
        r.error
            .as_ref()
            .is_none_or(|e| e.code != mediafleet_proto::ErrorCode::Internal),
        "{r:?}"
    );
    for rend in &r.renditions {
        let img = open(&out, &rend.file);
        assert_eq!(
            img.dimensions(),
            (rend.width.unwrap(), rend.height.unwrap())
        );
    }
}
