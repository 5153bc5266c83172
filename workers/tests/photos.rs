//! Correctness on real-photo features: all 8 EXIF orientations, ICC → sRGB, metadata and GPS policy,
//! shrink-on-load, smart crops, animated output and `--only`.

mod common;

use common::{fixture, open, run, run_with};
use image::GenericImageView;
use mediafleet_proto::{Crop, Fit, OutputFormat, Profile, RenditionSpec};
use mediafleet_workers::Limits;

fn close(got: [u8; 3], want: [u8; 3], tol: i32) -> bool {
    got.iter()
        .zip(want)
        .all(|(&g, w)| (i32::from(g) - i32::from(w)).abs() <= tol)
}

#[test]
fn every_orientation_comes_out_upright() {
    // The upright view: red top-left, green top-right, blue bottom-left, white bottom-right, arrow pointing up.
    let quadrants = [
        ((20, 12), [220, 30, 30]),
        ((140, 12), [30, 200, 30]),
        ((20, 108), [30, 30, 220]),
        ((140, 108), [250, 250, 250]),
    ];
    for o in 1..=8 {
        let name = format!("orientation-{o}.jpg");
        let (r, out) = run(&name);
        assert!(r.is_ready(), "{name}: {r:?}");
        assert_eq!(r.metadata["orientation"], o, "{name}");
        let img = open(&out, "preview.jpg").to_rgb8();
        assert_eq!(img.dimensions(), (160, 120), "{name}");
        for ((x, y), want) in quadrants {
            let got = img.get_pixel(x, y).0;
            assert!(
                close(got, want, 40),
                "{name}: at ({x},{y}) got {got:?}, want {want:?}"
            );
        }
        // The arrow's tip is at the top centre: dark just below the tip, light beside it.
        let tip = img.get_pixel(80, 25).0;
        assert!(
            tip.iter().all(|&c| c < 90),
            "{name}: arrow tip should be dark, got {tip:?}"
        );
        assert_eq!(open(&out, "thumb.webp").dimensions(), (160, 120));
    }
}

#[test]
fn every_orientation_is_upright_through_the_streaming_resample() {
    // A 40 px rendition: the decoder streams each 160×120 frame (120×160 stored for 5–8) into a 100×75 master
    // (the placeholder's size) in stored orientation, which is then turned upright and resampled again.
    let profile = Profile {
        image: vec![RenditionSpec::new("small", 40, 40, OutputFormat::Png)],
        ..Profile::default_profile()
    };
    let quadrants = [
        ((5, 3), [220, 30, 30]),
        ((35, 3), [30, 200, 30]),
        ((5, 27), [30, 30, 220]),
        ((35, 27), [250, 250, 250]),
    ];
    for o in 1..=8 {
        let name = format!("orientation-{o}.jpg");
        let (r, out) = run_with(&name, &profile, &Limits::default());
        assert!(r.is_ready(), "{name}: {r:?}");
        let img = open(&out, "small.png").to_rgb8();
        assert_eq!(img.dimensions(), (40, 30), "{name}");
        for ((x, y), want) in quadrants {
            let got = img.get_pixel(x, y).0;
            assert!(
                close(got, want, 40),
                "{name}: at ({x},{y}) got {got:?}, want {want:?}"
            );
        }
    }
}

#[test]
fn adobe_rgb_is_converted_to_srgb() {
    // lcms (Pillow ImageCms) says Adobe RGB (60,180,80) is sRGB (0,181,70) and (200,60,60) is (231,57,57).
    for (name, file) in [
        ("adobe-rgb.jpg", "preview.jpg"),
        ("adobe-rgb.png", "preview.jpg"),
    ] {
        let (r, out) = run(name);
        assert!(r.is_ready(), "{name}: {r:?}");
        assert_eq!(r.metadata["icc_converted"], true, "{name}");
        let img = open(&out, file).to_rgb8();
        let left = img.get_pixel(30, 60).0;
        let right = img.get_pixel(130, 60).0;
        assert!(close(left, [0, 181, 70], 8), "{name}: left {left:?}");
        assert!(close(right, [231, 57, 57], 8), "{name}: right {right:?}");
    }
}

#[test]
fn metadata_keeps_camera_facts_and_gps_only_when_asked() {
    let (r, _out) = run("gps.jpg");
    assert_eq!(r.metadata["camera_model"], "Fixture Camera 1");
    assert!(!r.metadata.contains_key("gps_latitude"));
    let profile = Profile {
        keep_gps: true,
        ..Profile::default_profile()
    };
    let (r, out) = run_with("gps.jpg", &profile, &Limits::default());
    let lat = r.metadata["gps_latitude"].as_f64().unwrap();
    assert!((lat - 52.37).abs() < 0.01, "{lat}");
    // Even then, the outputs carry no EXIF.
    let jpg = std::fs::read(out.path().join("preview.jpg")).unwrap();
    assert!(!jpg.windows(6).any(|w| w == b"Exif\0\0"));
    for key in [
        "width",
        "height",
        "orientation",
        "has_alpha",
        "animated",
        "frames",
        "captured_at",
    ] {
        assert!(
            r.metadata.contains_key(key),
            "metadata lacks {key}: {:?}",
            r.metadata
        );
    }
}

#[test]
fn jpeg_is_shrunk_on_load_with_headroom() {
    let thumb_only = Profile::default_profile().only(&["thumb".into()]);
    let (r, out) = run_with("photo.jpg", &thumb_only, &Limits::default());
    // 1600×1200 with only a 256 px thumb: 1/2 gives 800×600 ≥ 2×256; 1/4 (400×300) would not.
    assert_eq!(r.metadata["decode_shrink"], 2, "{r:?}");
    assert_eq!(
        r.metadata["width"], 1600,
        "metadata reports the original size"
    );
    assert_eq!(open(&out, "thumb.webp").dimensions(), (256, 192));
    let (r, _) = run("photo.jpg");
    assert_eq!(
        r.metadata["decode_shrink"], 1,
        "a 1280 px preview needs the full decode"
    );
}

#[test]
fn only_restricts_the_run_to_the_named_renditions() {
    let profile = Profile::default_profile().only(&["preview".into()]);
    let (r, out) = run_with("photo.jpg", &profile, &Limits::default());
    let names: Vec<&str> = r.renditions.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["preview"]);
    let files: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, ["preview.jpg"]);
}

#[test]
fn smart_cover_crops_move_the_window() {
    let spec = |c| RenditionSpec {
        fit: Fit::Cover,
        crop: c,
        ..RenditionSpec::new("sq", 100, 100, OutputFormat::Png)
    };
    for c in [Crop::Centre, Crop::Entropy, Crop::Attention] {
        let profile = Profile {
            image: vec![spec(c)],
            keep_gps: false,
            ..Profile::default_profile()
        };
        let (r, out) = run_with("orientation-1.jpg", &profile, &Limits::default());
        assert!(r.is_ready(), "{c:?}: {r:?}");
        assert_eq!(open(&out, "sq.png").dimensions(), (100, 100), "{c:?}");
    }
}

#[test]
fn animated_webp_rendition_keeps_every_frame() {
    let profile = Profile {
        image: vec![
            RenditionSpec {
                animated: true,
                ..RenditionSpec::new("thumb", 60, 60, OutputFormat::Webp)
            },
            RenditionSpec::new("preview", 1280, 1280, OutputFormat::Jpeg),
        ],
        keep_gps: false,
        ..Profile::default_profile()
    };
    for name in ["animated.gif", "animated.webp"] {
        let (r, out) = run_with(name, &profile, &Limits::default());
        assert!(r.is_ready(), "{name}: {r:?}");
        let bytes = std::fs::read(out.path().join("thumb.webp")).unwrap();
        let anmf = bytes.windows(4).filter(|w| w == b"ANMF").count();
        assert_eq!(anmf, 4, "{name}: animated thumb has {anmf} frames");
        let d = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&bytes)).unwrap();
        assert_eq!(image::ImageDecoder::dimensions(&d), (60, 45), "{name}");
        // The still rendition is the first frame.
        let still = open(&out, "preview.jpg").to_rgb8();
        assert!(
            close(still.get_pixel(100, 10).0, [220, 30, 30], 40),
            "{name}"
        );
    }
    // A still source with `animated = true` gives an ordinary still.
    let (r, _) = run_with("photo.jpg", &profile, &Limits::default());
    assert!(r.is_ready(), "{r:?}");
    assert!(std::fs::metadata(fixture("photo.jpg")).is_ok());
}
