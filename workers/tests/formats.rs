//! One decode test per input format, detected from content (never the name), and the output formats.

mod common;

use common::{code, fixture, open, run, run_with};
use image::GenericImageView;
use mediafleet_proto::{MediaKind, OutputFormat, Profile, RenditionSpec};
use mediafleet_workers::Limits;

/// Runs the default profile and checks the basics every decodable original must give.
fn decodes(name: &str, format: &str, size: (u64, u64)) -> mediafleet_workers::Report {
    let (r, out) = run(name);
    assert!(r.is_ready(), "{name}: {r:?}");
    assert_eq!(r.kind, Some(MediaKind::Image), "{name}");
    assert_eq!(r.metadata["format"], format, "{name}");
    assert_eq!(
        (
            r.metadata["width"].as_u64().unwrap(),
            r.metadata["height"].as_u64().unwrap()
        ),
        size,
        "{name}"
    );
    assert_eq!(r.renditions.len(), 2, "{name}");
    for rend in &r.renditions {
        let img = open(&out, &rend.file);
        assert_eq!(
            img.dimensions(),
            (rend.width.unwrap(), rend.height.unwrap()),
            "{name}"
        );
    }
    assert!(r.blurhash.is_some() && r.thumbhash.is_some(), "{name}");
    r
}

#[test]
fn jpeg_baseline_and_progressive() {
    decodes("photo.jpg", "jpeg", (1600, 1200));
    decodes("progressive.jpg", "jpeg", (800, 600));
}

#[test]
fn jpeg_cmyk_converts_to_rgb() {
    let (r, out) = run("cmyk.jpg");
    assert!(r.is_ready(), "{r:?}");
    let preview = open(&out, "preview.jpg").to_rgb8();
    let [red, g, b] = preview.get_pixel(40, 120).0;
    assert!(
        red > 200 && g < 60 && b < 60,
        "left half is red, got {:?}",
        (red, g, b)
    );
    let [red, g, b] = preview.get_pixel(280, 120).0;
    assert!(
        red < 60 && g > 200 && b > 200,
        "right half is cyan, got {:?}",
        (red, g, b)
    );
}

#[test]
fn png_16_bit_palette_and_alpha() {
    let r = decodes("rgb16.png", "png", (48, 32));
    assert_eq!(r.metadata["has_alpha"], false);
    let r = decodes("palette.png", "png", (120, 80));
    assert_eq!(
        r.metadata["has_alpha"], true,
        "tRNS makes a palette PNG transparent"
    );
    decodes("alpha.png", "png", (320, 240));
}

#[test]
fn sixteen_bit_ramp_keeps_its_range() {
    let (_, out) = run("rgb16.png");
    let preview = open(&out, "preview.jpg").to_rgb8();
    let left = preview.get_pixel(1, 16).0[0];
    let right = preview.get_pixel(46, 16).0[0];
    assert!(
        left < 20 && right > 235,
        "red ramps 0→65535: {left}..{right}"
    );
}

#[test]
fn webp_lossy_lossless_animated() {
    decodes("lossy.webp", "webp", (320, 240));
    decodes("lossless.webp", "webp", (200, 150));
    let r = decodes("animated.webp", "webp", (120, 90));
    assert_eq!(r.metadata["frames"], 4);
}

#[test]
fn gif_tiff_bmp() {
    let r = decodes("animated.gif", "gif", (120, 90));
    assert_eq!(r.metadata["animated"], true);
    decodes("photo.tiff", "tiff", (320, 240));
    decodes("photo.bmp", "bmp", (320, 240));
}

#[test]
fn avif_decodes_through_ffmpeg() {
    let (r, out) = run("still.avif");
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(r.metadata["format"], "avif");
    assert_eq!(r.metadata["content_type"], "image/avif");
    assert_eq!(open(&out, "preview.jpg").dimensions(), (160, 120));
}

#[test]
fn avif_pixel_limit_is_checked_from_the_header() {
    let limits = Limits {
        image_pixels: 100,
        ..Limits::default()
    };
    let (r, _out) = run_with("still.avif", &Profile::default_profile(), &limits);
    assert_eq!(code(&r), "too_many_pixels", "{r:?}");
}

#[test]
fn heic_decodes_through_libheif() {
    // More HEIC cases (irot, ICC, alpha, damage) are in heic.rs.
    let r = decodes("still.heic", "heic", (160, 120));
    assert_eq!(r.metadata["content_type"], "image/heic");
}

#[test]
fn format_comes_from_content_not_the_name() {
    for (fixture_name, format) in [("alpha.png", "png"), ("still.heic", "heic")] {
        let dir = tempfile::tempdir().unwrap();
        let disguised = dir.path().join("holiday.jpg");
        std::fs::copy(fixture(fixture_name), &disguised).unwrap();
        let out = tempfile::tempdir().unwrap();
        let r = mediafleet_workers::process(
            &disguised,
            &Profile::default_profile(),
            &Limits::default(),
            out.path(),
        );
        assert!(r.is_ready(), "{fixture_name}: {r:?}");
        assert_eq!(r.metadata["format"], format);
    }
}

#[test]
fn every_output_format() {
    let profile = Profile {
        image: vec![
            RenditionSpec::new("a", 200, 200, OutputFormat::Jpeg),
            RenditionSpec::new("b", 200, 200, OutputFormat::Webp),
            RenditionSpec::new("c", 200, 200, OutputFormat::Png),
            RenditionSpec {
                speed: 10,
                ..RenditionSpec::new("d", 200, 200, OutputFormat::Avif)
            },
        ],
        keep_gps: false,
        ..Profile::default_profile()
    };
    let (r, out) = run_with("photo.jpg", &profile, &Limits::default());
    assert!(r.is_ready(), "{r:?}");
    let files: Vec<(&str, &str)> = r
        .renditions
        .iter()
        .map(|x| (x.file.as_str(), x.content_type.as_str()))
        .collect();
    assert_eq!(
        files,
        [
            ("a.jpg", "image/jpeg"),
            ("b.webp", "image/webp"),
            ("c.png", "image/png"),
            ("d.avif", "image/avif")
        ]
    );
    let avif = std::fs::read(out.path().join("d.avif")).unwrap();
    assert_eq!(&avif[4..12], b"ftypavif");
    // The AVIF output decodes again (through our own AVIF input path) at the right size.
    let back = mediafleet_workers::process(
        &out.path().join("d.avif"),
        &Profile::default_profile(),
        &Limits::default(),
        tempfile::tempdir().unwrap().path(),
    );
    assert_eq!(
        (
            back.metadata["width"].as_u64(),
            back.metadata["height"].as_u64()
        ),
        (Some(200), Some(150))
    );
}

#[test]
fn png_if_alpha_keeps_transparency_only_when_there_is_some() {
    let spec = RenditionSpec {
        png_if_alpha: true,
        ..RenditionSpec::new("preview", 1280, 1280, OutputFormat::Jpeg)
    };
    let profile = Profile {
        image: vec![spec],
        keep_gps: false,
        ..Profile::default_profile()
    };
    let (r, out) = run_with("alpha.png", &profile, &Limits::default());
    assert_eq!(r.renditions[0].file, "preview.png", "{r:?}");
    assert_eq!(open(&out, "preview.png").to_rgba8().get_pixel(2, 2).0[3], 0);
    let (r, _) = run_with("photo.jpg", &profile, &Limits::default());
    assert_eq!(r.renditions[0].file, "preview.jpg", "{r:?}");
}
