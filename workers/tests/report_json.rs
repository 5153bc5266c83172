//! The report serialises to the `process` JSON shape in DESIGN.md, and sniffing agrees with the fixtures.

mod common;

use common::{fixture, run};
use mediafleet_proto::MediaKind;
use mediafleet_workers::{sniff, Report};
use serde_json::Value;

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[test]
fn ready_report_has_the_design_shape() {
    let (r, _out) = run("photo.jpg");
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        keys(&v),
        [
            "blurhash",
            "error",
            "kind",
            "metadata",
            "renditions",
            "status",
            "thumbhash"
        ]
    );
    assert_eq!(v["kind"], "image");
    assert_eq!(v["status"], "ready");
    assert_eq!(v["error"], Value::Null);
    for rendition in v["renditions"].as_array().unwrap() {
        for key in [
            "name",
            "file",
            "content_type",
            "width",
            "height",
            "bytes",
            "duration_seconds",
            "sha256",
        ] {
            assert!(
                rendition.get(key).is_some(),
                "rendition lacks {key}: {rendition}"
            );
        }
    }
    let back: Report = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[test]
fn failed_report_has_code_and_message() {
    let (r, _out) = run("truncated.jpg");
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["code"], "corrupt_media");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(v["renditions"], serde_json::json!([]));
}

#[test]
fn sniffing_the_fixtures() {
    let table = [
        ("photo.jpg", Some((MediaKind::Image, "image/jpeg"))),
        ("truncated.jpg", Some((MediaKind::Image, "image/jpeg"))),
        ("alpha.png", Some((MediaKind::Image, "image/png"))),
        ("huge-dimensions.png", Some((MediaKind::Image, "image/png"))),
        ("animated.gif", Some((MediaKind::Image, "image/gif"))),
        ("animated.webp", Some((MediaKind::Image, "image/webp"))),
        ("still.avif", Some((MediaKind::Image, "image/avif"))),
        ("clip.mp4", Some((MediaKind::Video, "video/mp4"))),
        ("tone.m4a", Some((MediaKind::Audio, "audio/mp4"))),
        ("tone.mp3", Some((MediaKind::Audio, "audio/mpeg"))),
        ("empty.jpg", None),
        ("text.jpg", None),
    ];
    for (name, want) in table {
        let head = std::fs::read(fixture(name)).unwrap();
        let got = sniff(&head[..head.len().min(4096)]).map(|s| (s.kind, s.mime));
        assert_eq!(got, want, "{name}");
    }
}
