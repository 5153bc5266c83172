//! Video renditions on real fixtures, checked with the real `ffprobe`: the outputs play, with the codec, size
//! and duration they should have.

mod av_common;

use av_common::*;
use mediafleet_proto::Profile;

#[test]
fn mp4_720_from_a_1080p_source_plays() {
    let (r, out) = run("av/clip-1080.mp4", &Profile::default_profile());
    assert!(r.is_ready(), "{r:?}");
    let names: Vec<&str> = r.renditions.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["poster", "thumb", "mp4-720"]);
    assert_eq!(r.metadata["width"], 1920);
    assert_eq!(r.metadata["height"], 1080);
    assert_eq!(r.metadata["video_codec"], "h264");
    assert_eq!(r.metadata["has_audio"], true);
    assert_eq!(r.metadata["mp4_remuxed"], false);
    near(
        r.metadata["duration_seconds"].as_f64().unwrap(),
        3.0,
        0.1,
        "probe duration",
    );
    assert!(r.blurhash.is_some() && r.thumbhash.is_some());

    let mp4 = &r.renditions[2];
    assert_eq!(
        (mp4.file.as_str(), mp4.width, mp4.height),
        ("mp4-720.mp4", Some(1280), Some(720))
    );
    let p = ffprobe(&out.path().join("mp4-720.mp4"));
    let v = stream(&p, "video").unwrap();
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["profile"], "High");
    assert_eq!(v["pix_fmt"], "yuv420p");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(1280), Some(720))
    );
    let a = stream(&p, "audio").unwrap();
    assert_eq!(a["codec_name"], "aac");
    let abr: f64 = a["bit_rate"].as_str().unwrap().parse().unwrap();
    assert!((90_000.0..170_000.0).contains(&abr), "AAC at {abr} b/s");
    near(duration(&p), 3.0, 0.15, "mp4-720 duration");
    near(
        mp4.duration_seconds.unwrap(),
        3.0,
        0.15,
        "reported duration",
    );
    assert_eq!(count_frames(&out.path().join("mp4-720.mp4")), 75);

    // faststart: the index comes before the media data.
    let bytes = std::fs::read(out.path().join("mp4-720.mp4")).unwrap();
    let at = |tag: &[u8]| bytes.windows(4).position(|w| w == tag).unwrap();
    assert!(
        at(b"moov") < at(b"mdat"),
        "moov must precede mdat (+faststart)"
    );

    let poster = image::open(out.path().join("poster.jpg")).unwrap();
    assert_eq!((poster.width(), poster.height()), (1920, 1080));
    let thumb = image::open(out.path().join("thumb.webp")).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (256, 144));
    // Nothing half-written is left behind.
    for e in std::fs::read_dir(out.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "left a partial file: {name}");
    }
}

#[test]
fn rotation_is_applied_like_the_ffmpeg_cli() {
    let (r, out) = run("av/rotated-90.mp4", &Profile::default_profile());
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(r.metadata["rotation"], 270);
    assert_eq!(
        (r.metadata["width"].as_u64(), r.metadata["height"].as_u64()),
        (Some(120), Some(320))
    );
    // Stored landscape with red on the left; the CLI's autorotate shows it portrait with blue on top.
    let poster = image::open(out.path().join("poster.jpg"))
        .unwrap()
        .to_rgb8();
    assert_eq!(poster.dimensions(), (120, 320));
    let top = poster.get_pixel(60, 40).0;
    let bottom = poster.get_pixel(60, 280).0;
    assert!(top[2] > 200 && top[0] < 60, "top should be blue: {top:?}");
    assert!(
        bottom[0] > 200 && bottom[2] < 60,
        "bottom should be red: {bottom:?}"
    );
    // The encode is upright (no rotation flag left for players to apply twice) and was not a copy.
    assert_eq!(r.metadata["mp4_remuxed"], false);
    let p = ffprobe(&out.path().join("mp4-720.mp4"));
    let v = stream(&p, "video").unwrap();
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(120), Some(320))
    );
    assert!(v.get("side_data_list").is_none(), "no display matrix: {v}");
}

#[test]
fn a_compatible_source_is_copied_not_encoded() {
    let (r, out) = run("av/compatible.mp4", &Profile::default_profile());
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(r.metadata["mp4_remuxed"], true);
    let src = ffprobe(&fixture("av/compatible.mp4"));
    let p = ffprobe(&out.path().join("mp4-720.mp4"));
    let (sv, ov) = (stream(&src, "video").unwrap(), stream(&p, "video").unwrap());
    // A copy has the very same bit stream: same size of video data, same frame count, same profile.
    assert_eq!(ov["bit_rate"], sv["bit_rate"]);
    assert_eq!(ov["nb_frames"], sv["nb_frames"]);
    assert_eq!(
        (ov["width"].as_u64(), ov["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert_eq!(stream(&p, "audio").unwrap()["codec_name"], "aac");
    let bytes = std::fs::read(out.path().join("mp4-720.mp4")).unwrap();
    let at = |tag: &[u8]| bytes.windows(4).position(|w| w == tag).unwrap();
    assert!(at(b"moov") < at(b"mdat"));
    // Turning remux off in the profile encodes instead.
    let mut p = Profile::default_profile();
    p.video.mp4.as_mut().unwrap().remux = false;
    let (r, _out) = run("av/compatible.mp4", &p);
    assert_eq!(r.metadata["mp4_remuxed"], false);
}

#[test]
fn no_audio_and_vfr_sources() {
    let (r, out) = run("av/noaudio.mp4", &Profile::default_profile());
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(r.metadata["has_audio"], false);
    let p = ffprobe(&out.path().join("mp4-720.mp4"));
    assert!(stream(&p, "audio").is_none());
    assert_eq!(p["streams"].as_array().unwrap().len(), 1);

    // 30 fps for a second, then 10 fps: 50 frames over 3 s. Timestamps pass through, so the output keeps 50
    // frames (a constant-rate conversion would make 90) and its duration.
    let (r, out) = run("av/vfr.mkv", &Profile::default_profile());
    assert!(r.is_ready(), "{r:?}");
    let path = out.path().join("mp4-720.mp4");
    let p = ffprobe(&path);
    near(duration(&p), 3.0, 0.15, "vfr duration");
    let frames = count_frames(&path);
    assert!((49..=51).contains(&frames), "{frames} frames");
    assert_eq!(stream(&p, "audio").unwrap()["codec_name"], "aac");
}

#[test]
fn ten_bit_hlg_is_tone_mapped_to_sdr_bt709() {
    let (r, out) = run("av/hlg-10bit.mp4", &Profile::default_profile());
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(r.metadata["hdr"], "hlg");
    assert_eq!(r.metadata["bit_depth"], 10);
    let p = ffprobe(&out.path().join("mp4-720.mp4"));
    let v = stream(&p, "video").unwrap();
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["pix_fmt"], "yuv420p");
    assert_eq!(v["color_transfer"], "bt709");
    assert_eq!(v["color_primaries"], "bt709");
    // Not grey and washed out: the testsrc colours survive the tone map.
    let poster = image::open(out.path().join("poster.jpg"))
        .unwrap()
        .to_rgb8();
    let c = colourfulness(&poster);
    assert!(c > 60.0, "poster colourfulness {c}");
}

#[test]
fn hls_ladder_playlists_parse_and_every_segment_exists() {
    let (r, out) = run("av/clip-1080.mp4", &streaming(1));
    assert!(r.is_ready(), "{r:?}");
    let hls = r.renditions.iter().find(|x| x.name == "hls").unwrap();
    assert_eq!(hls.file, "hls/master.m3u8");
    assert_eq!(hls.content_type, "application/vnd.apple.mpegurl");
    assert_eq!((hls.width, hls.height), (Some(1920), Some(1080)));
    assert_eq!(
        r.metadata["hls_rungs"],
        serde_json::json!(["1080p", "720p", "480p"])
    );
    let dir = out.path().join("hls");
    let master = std::fs::read_to_string(dir.join("master.m3u8")).unwrap();
    assert!(master.starts_with("#EXTM3U\n"), "{master}");
    let mut variants = Vec::new();
    let mut lines = master.lines();
    while let Some(line) = lines.next() {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            assert!(attrs.contains("BANDWIDTH="), "{attrs}");
            assert!(attrs.contains("RESOLUTION="), "{attrs}");
            assert!(
                attrs.contains("CODECS=\"avc1.64"),
                "High profile and AAC: {attrs}"
            );
            assert!(attrs.contains(",mp4a.40.2\""), "{attrs}");
            let bw: u64 = attrs["BANDWIDTH=".len()..]
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(bw > 10_000, "{bw}");
            variants.push((attrs.to_owned(), lines.next().unwrap().to_owned()));
        }
    }
    assert_eq!(variants.len(), 3, "{master}");
    for (res, (attrs, uri)) in ["1920x1080", "1280x720", "854x480"].iter().zip(&variants) {
        assert!(attrs.contains(&format!("RESOLUTION={res}")), "{attrs}");
        let playlist_path = dir.join(uri);
        let playlist = std::fs::read_to_string(&playlist_path).unwrap();
        assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
        let segments: Vec<&str> = playlist
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert!(
            segments.len() >= 3,
            "1 s segments of a 3 s clip: {playlist}"
        );
        let mut total = 0.0;
        for l in playlist.lines().filter_map(|l| l.strip_prefix("#EXTINF:")) {
            let d: f64 = l.trim_end_matches(',').parse().unwrap();
            assert!(d <= 1.5, "segment of {d} s with a 1 s target");
            total += d;
        }
        near(total, 3.0, 0.2, "variant duration");
        for s in segments {
            let seg = playlist_path.parent().unwrap().join(s);
            assert!(seg.is_file(), "{} is listed but missing", seg.display());
        }
        let p = ffprobe(&playlist_path);
        let v = stream(&p, "video").unwrap();
        assert_eq!(format!("{}x{}", v["width"], v["height"]), *res);
    }
    // ffprobe reads the whole ladder from the master.
    let p = ffprobe(&dir.join("master.m3u8"));
    assert!(p["streams"].as_array().unwrap().len() >= 6);
    // The mp4-720 rendition is still there (sharing the 720p encode) and plays.
    let p = ffprobe(&out.path().join("mp4-720.mp4"));
    near(duration(&p), 3.0, 0.15, "mp4-720 duration");
}

#[test]
fn a_small_source_gets_one_rung_at_its_own_size() {
    let (r, out) = run("av/noaudio.mp4", &streaming(6));
    assert!(r.is_ready(), "{r:?}");
    assert_eq!(r.metadata["hls_rungs"], serde_json::json!(["270p"]));
    let master = std::fs::read_to_string(out.path().join("hls/master.m3u8")).unwrap();
    assert!(master.contains("RESOLUTION=480x270"), "{master}");
    assert!(
        !master.contains("mp4a"),
        "no audio, no audio codec: {master}"
    );
}
