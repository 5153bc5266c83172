//! Audio-only uploads: `audio` (AAC in M4A) and `peaks`, from every container the issue names.

mod av_common;

use av_common::*;
use mediafleet_proto::{MediaKind, Profile};

#[test]
fn every_audio_format_becomes_aac_m4a_and_peaks() {
    for (name, seconds) in [
        ("tone.mp3", 1.0),
        ("tone.m4a", 1.0),
        ("av/tone.flac", 2.0),
        ("av/tone.wav", 2.0),
        ("av/tone.opus", 2.0),
        ("av/tone.aac", 2.0),
    ] {
        let (r, out) = run(name, &Profile::default_profile());
        assert!(r.is_ready(), "{name}: {r:?}");
        assert_eq!(r.kind, Some(MediaKind::Audio), "{name}");
        let names: Vec<&str> = r.renditions.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["audio", "peaks"], "{name}");
        near(
            r.metadata["duration_seconds"].as_f64().unwrap(),
            seconds,
            0.1,
            name,
        );

        let audio = &r.renditions[0];
        assert_eq!(
            (audio.file.as_str(), audio.content_type.as_str()),
            ("audio.m4a", "audio/mp4")
        );
        let p = ffprobe(&out.path().join("audio.m4a"));
        assert_eq!(
            p["format"]["format_name"], "mov,mp4,m4a,3gp,3g2,mj2",
            "{name}"
        );
        assert_eq!(p["format"]["tags"]["major_brand"], "M4A ", "{name}");
        let a = stream(&p, "audio").unwrap();
        assert_eq!(a["codec_name"], "aac", "{name}");
        assert!(stream(&p, "video").is_none());
        near(duration(&p), seconds, 0.1, name);

        let peaks: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("peaks.json")).unwrap()).unwrap();
        assert_eq!(peaks["version"], 2);
        assert_eq!(peaks["bits"], 8);
        let length = peaks["length"].as_u64().unwrap();
        assert_eq!(length, 1000, "{name}");
        assert_eq!(peaks["data"].as_array().unwrap().len() as u64, 2 * length);
        near(
            peaks["duration_seconds"].as_f64().unwrap(),
            seconds,
            0.1,
            name,
        );
    }
}

#[test]
fn peaks_follow_the_loudness() {
    // A tone that swells for 2.5 s and fades for 2.5 s.
    let (r, out) = run("av/swell.mp3", &Profile::default_profile());
    assert!(r.is_ready(), "{r:?}");
    let peaks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("peaks.json")).unwrap()).unwrap();
    let data: Vec<i64> = peaks["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let max_at = |i: usize| data[2 * i + 1];
    let n = data.len() / 2;
    assert!(max_at(n / 20) < max_at(n / 4), "rising");
    // lavfi's sine is at 1/8 of full scale: 127 / 8 ≈ 16 in 8-bit peaks.
    assert!(
        max_at(n / 2) >= 14,
        "loudest in the middle: {}",
        max_at(n / 2)
    );
    assert!(max_at(n - n / 20) < max_at(3 * n / 4), "falling");
}

#[test]
fn only_restricts_audio_renditions() {
    let p = Profile::default_profile().only(&["peaks".to_owned()]);
    let (r, out) = run("tone.mp3", &p);
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(r.renditions.len(), 1);
    assert_eq!(r.renditions[0].name, "peaks");
    assert!(!out.path().join("audio.m4a").exists());
}
