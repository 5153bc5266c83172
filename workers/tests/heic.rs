//! HEIC input through libheif (embedded 1.23 + Debian's libde265): size, colour, orientation from `irot` (and
//! never again from EXIF), ICC → sRGB, alpha, camera facts, limits from the header, damage.

mod common;

use std::time::{Duration, Instant};

use common::{code, open, run, run_with};
use mediafleet_proto::{MediaKind, Profile};
use mediafleet_workers::Limits;

fn close(got: [u8; 3], want: [u8; 3], tol: i32) -> bool {
    got.iter()
        .zip(want)
        .all(|(&g, w)| (i32::from(g) - i32::from(w)).abs() <= tol)
}

#[test]
fn still_heic_decodes_with_its_colours() {
    let (r, out) = run("still.heic");
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(r.kind, Some(MediaKind::Image));
    assert_eq!(r.metadata["format"], "heic");
    assert_eq!(r.metadata["content_type"], "image/heic");
    assert_eq!(
        (r.metadata["width"].as_u64(), r.metadata["height"].as_u64()),
        (Some(160), Some(120))
    );
    assert_eq!(r.metadata["has_alpha"], false);
    assert_eq!(r.metadata["orientation"], 1);
    assert_eq!(r.renditions.len(), 2);
    // Red top-left, green top-right, blue bottom-left, white bottom-right, arrow pointing up (orientation-1.jpg).
    let img = open(&out, "preview.jpg").to_rgb8();
    assert_eq!(img.dimensions(), (160, 120));
    for ((x, y), want) in [
        ((20, 12), [220, 30, 30]),
        ((140, 12), [30, 200, 30]),
        ((20, 108), [30, 30, 220]),
        ((140, 108), [250, 250, 250]),
    ] {
        let got = img.get_pixel(x, y).0;
        assert!(
            close(got, want, 40),
            "at ({x},{y}) got {got:?}, want {want:?}"
        );
    }
    let tip = img.get_pixel(80, 25).0;
    assert!(tip.iter().all(|&c| c < 90), "arrow tip {tip:?}");
    assert!(r.blurhash.is_some() && r.thumbhash.is_some());
}

#[test]
fn irot_is_applied_once_and_exif_orientation_is_not() {
    // Stored 640×480, top rows red and left columns blue, `irot` 90° clockwise, and an EXIF Orientation=6 that
    // a HEIF reader must ignore: upright 480×640 with red on the right and blue on top. Applying EXIF as well
    // would give 640×480 upside down.
    let (r, out) = run("rotated.heic");
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(
        (r.metadata["width"].as_u64(), r.metadata["height"].as_u64()),
        (Some(480), Some(640))
    );
    let preview = open(&out, "preview.jpg").to_rgb8();
    assert_eq!(preview.dimensions(), (480, 640));
    let right = preview.get_pixel(470, 320).0;
    assert!(close(right, [230, 20, 20], 50), "right edge {right:?}");
    let top = preview.get_pixel(240, 15).0;
    assert!(close(top, [20, 20, 230], 50), "top edge {top:?}");
    // Camera facts come from the HEIF's Exif item.
    assert_eq!(r.metadata["camera_make"], "Mediafleet");
    assert_eq!(r.metadata["camera_model"], "Fixture Camera 1");
    assert!(
        r.metadata["captured_at"]
            .as_str()
            .unwrap()
            .starts_with("2024-05-17T10:30:00"),
        "{:?}",
        r.metadata
    );
}

#[test]
fn embedded_icc_profile_is_converted_to_srgb() {
    // As adobe-rgb.png: Adobe RGB (60,180,80) is sRGB (0,181,70) and (200,60,60) is (231,57,57); HEVC at q90
    // with 4:2:0 chroma costs a few levels more than the PNG.
    let (r, out) = run("adobe-rgb.heic");
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(r.metadata["icc_converted"], true);
    let img = open(&out, "preview.jpg").to_rgb8();
    let left = img.get_pixel(30, 60).0;
    let right = img.get_pixel(130, 60).0;
    assert!(close(left, [0, 181, 70], 14), "left {left:?}");
    assert!(close(right, [231, 57, 57], 14), "right {right:?}");
}

#[test]
fn alpha_plane_is_kept() {
    let (r, out) = run("alpha.heic");
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(r.metadata["has_alpha"], true);
    assert_eq!(
        (r.metadata["width"].as_u64(), r.metadata["height"].as_u64()),
        (Some(320), Some(240))
    );
    // alpha.png: transparent background, opaque green disc, half-transparent red band across the middle; the
    // WebP thumb keeps alpha.
    let thumb = open(&out, "thumb.webp").to_rgba8();
    let (w, h) = thumb.dimensions();
    assert_eq!(
        thumb.get_pixel(2, 2).0[3],
        0,
        "corner should be transparent"
    );
    let disc = thumb.get_pixel(w / 2, h / 4).0;
    assert!(disc[3] > 240 && disc[1] > 120, "disc {disc:?}");
    let band = thumb.get_pixel(w / 2, h / 2).0;
    assert!((100..=156).contains(&band[3]), "band {band:?}");
}

#[test]
fn pixel_limit_is_checked_from_the_header() {
    let limits = Limits {
        image_pixels: 10_000,
        ..Limits::default()
    };
    let (r, _out) = run_with("rotated.heic", &Profile::default_profile(), &limits);
    assert_eq!(code(&r), "too_many_pixels", "{r:?}");
    assert!(
        r.error.as_ref().unwrap().message.contains("640×480"),
        "the stored (ispe) size is checked: {r:?}"
    );
    let limits = Limits {
        image_bytes: 1000,
        ..Limits::default()
    };
    let (r, _out) = run_with("still.heic", &Profile::default_profile(), &limits);
    assert_eq!(code(&r), "too_large_bytes", "{r:?}");
}

#[test]
fn truncated_heic_is_corrupt_and_fast() {
    let started = Instant::now();
    let (r, out) = run("truncated.heic");
    let took = started.elapsed();
    assert_eq!(code(&r), "corrupt_media", "{r:?}");
    assert_eq!(r.kind, Some(MediaKind::Image));
    assert_eq!(r.metadata["format"], "heic");
    assert!(r.renditions.is_empty());
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn heic_header_without_a_picture_is_corrupt() {
    // An `ftyp` (brand heic) and an empty `meta` box: sniffed as HEIC, then libheif finds no image.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("header-only.bin");
    let mut data = 24u32.to_be_bytes().to_vec();
    data.extend_from_slice(b"ftypheic\0\0\0\0mif1heic");
    data.extend_from_slice(&12u32.to_be_bytes());
    data.extend_from_slice(b"meta\0\0\0\0");
    std::fs::write(&path, data).unwrap();
    let out = tempfile::tempdir().unwrap();
    let r = mediafleet_workers::process(
        &path,
        &Profile::default_profile(),
        &Limits::default(),
        out.path(),
    );
    assert_eq!(code(&r), "corrupt_media", "{r:?}");
}
