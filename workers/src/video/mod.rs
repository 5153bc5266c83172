//! Video renditions: `poster` first (so a UI has a picture within seconds), `thumb` from the poster through
//! the image pipeline, then `mp4-720` and the `hls` ladder from one decode.
//!
//! - [`size`]: output sizes (box, no upscaling, even sides).
//! - [`poster`]: seek to the keyframe before 10 %, decode forward, rotate, tone-map, scale.
//! - [`remux`]: `mp4-720` as a stream copy when the source already fits.
//! - [`transcode`]: one decode → split → one libx264 per size → MP4 and HLS muxers; one AAC for all.
//! - [`ladder`]: rungs at or below the source, the master playlist.
//!
//! HDR (HLG/PQ) sources are tone-mapped to SDR BT.709 in the filter graph ([`crate::av::graph::tonemap`]).

pub mod ladder;
pub mod poster;
pub mod remux;
pub mod size;
pub mod transcode;

use std::path::Path;

use image::DynamicImage;
use mediafleet_proto::{
    Fit, MediaKind, OutputFormat, Profile, RenditionSpec, HLS, MP4_720, POSTER,
};
use serde_json::Value;

use crate::av::mux::Kind;
use crate::av::probe::{self, Probe, VideoStream};
use crate::image::cascade::Cascade;
use crate::image::resize::plan;
use crate::image::{crop, encode, hash};
use crate::output::{self, Output, Partial};
use crate::{Control, Limits, MediaError, Report};
use transcode::{Plan, Sink, Target};

/// Runs the video renditions of `profile` on `input`.
pub fn run(
    input: &Path,
    profile: &Profile,
    limits: &Limits,
    out_dir: &Path,
    control: &Control,
) -> Result<Report, MediaError> {
    let (_, probe) = probe::open(input)?;
    probe.check(limits)?;
    let Some(v) = probe.video.clone() else {
        // An MP4 or Matroska file with only sound in it is audio.
        return crate::audio::run_probed(input, &probe, profile, out_dir, control);
    };
    let mut report = Report {
        kind: Some(MediaKind::Video),
        status: "ready".into(),
        error: None,
        metadata: probe.metadata(),
        blurhash: None,
        thumbhash: None,
        renditions: Vec::new(),
    };
    let long = profile.video.mp4.is_some() || profile.video.hls.is_some();
    let poster_share = if long { 0.05 } else { 1.0 };
    if let Some(spec) = &profile.video.poster {
        let img = poster::grab(input, &probe, &v, spec, control)?;
        stills(img, profile, out_dir, &mut report)?;
        control.progress(poster_share);
    }
    if long {
        encodes(
            input,
            &probe,
            &v,
            profile,
            out_dir,
            &control.part(poster_share, 1.0 - poster_share),
            &mut report,
        )?;
    }
    control.progress(1.0);
    Ok(report)
}

/// `poster.jpg`, the `thumb` image renditions made from it, and the placeholder hashes.
fn stills(
    img: image::RgbImage,
    profile: &Profile,
    out_dir: &Path,
    report: &mut Report,
) -> Result<(), MediaError> {
    let (w, h) = img.dimensions();
    let img = DynamicImage::ImageRgb8(img);
    if profile.video.poster_written {
        let quality = profile.video.poster.as_ref().map_or(85, |p| p.quality);
        let bytes = encode::encode(&img, OutputFormat::Jpeg, quality, 0)?;
        report.renditions.push(output::write(
            out_dir,
            Output {
                name: POSTER,
                file: format!("{POSTER}.jpg"),
                content_type: OutputFormat::Jpeg.content_type(),
                size: Some((w, h)),
                duration_seconds: None,
            },
            &bytes,
        )?);
    }
    let mut cascade = Cascade::new(img, false);
    for spec in profile.image.iter().filter(|s| s.name == "thumb") {
        let mut t = plan(w, h, spec);
        if spec.fit == Fit::Cover {
            t.crop = crop::place(cascade.base(), t.crop[2], t.crop[3], spec.crop);
        }
        let thumb = cascade.render(&t)?;
        let bytes = encode::encode(&thumb, spec.format, spec.quality, spec.speed)?;
        report.renditions.push(output::write(
            out_dir,
            Output {
                name: &spec.name,
                file: format!("{}.{}", spec.name, spec.format.extension()),
                content_type: spec.format.content_type(),
                size: Some((thumb.width(), thumb.height())),
                duration_seconds: None,
            },
            &bytes,
        )?);
    }
    let placeholder = RenditionSpec::new(
        "placeholder",
        hash::MAX_SIDE,
        hash::MAX_SIDE,
        OutputFormat::Png,
    );
    let small = cascade.render(&plan(w, h, &placeholder))?.into_rgba8();
    report.blurhash = hash::blurhash(&small);
    report.thumbhash = hash::thumbhash(&small);
    Ok(())
}

/// `mp4-720` (copied or encoded) and the `hls` ladder, from one decode.
fn encodes(
    input: &Path,
    probe: &Probe,
    v: &VideoStream,
    profile: &Profile,
    out_dir: &Path,
    control: &Control,
    report: &mut Report,
) -> Result<(), MediaError> {
    let display = v.display();
    let has_audio = probe.audio.is_some();
    let mut plan = Plan::default();
    let mut mp4: Option<(Partial, (u32, u32))> = None;
    let mut remuxed = false;
    if let Some(spec) = &profile.video.mp4 {
        let partial = Partial::file(out_dir, &format!("{MP4_720}.mp4"))?;
        if remux::compatible(probe, v, spec) {
            remux::run(input, probe, v, partial.path(), control)?;
            remuxed = true;
            mp4 = Some((partial, display));
        } else {
            let size = size::fit(display.0, display.1, spec.short_side, spec.long_side);
            let target = plan.target(Target {
                size,
                crf: spec.crf,
                preset: spec.preset.clone(),
                keyframe_every: None,
            });
            plan.audio_bitrate = spec.audio_bitrate;
            plan.sinks.push(Sink {
                path: partial.path().to_path_buf(),
                kind: Kind::Mp4,
                target,
                audio: has_audio,
            });
            mp4 = Some((partial, size));
        }
        report.metadata.insert("mp4_remuxed".into(), remuxed.into());
    }
    let mut hls = None;
    if let Some(spec) = &profile.video.hls {
        let dir = Partial::dir(out_dir, HLS)?;
        let rungs = ladder::rungs(display, spec);
        let mut targets = Vec::new();
        for r in &rungs {
            let variant = dir.path().join(&r.name);
            std::fs::create_dir_all(&variant)
                .map_err(|e| crate::av::internal(format!("hls dir: {e}")))?;
            let target = plan.target(Target {
                size: r.size,
                crf: spec.crf,
                preset: spec.preset.clone(),
                keyframe_every: Some(f64::from(spec.segment_seconds.max(1))),
            });
            if plan.audio_bitrate == 0 {
                plan.audio_bitrate = spec.audio_bitrate;
            }
            plan.sinks.push(Sink {
                path: variant.join("index.m3u8"),
                kind: Kind::Hls {
                    segment_seconds: spec.segment_seconds.max(1),
                    segment_pattern: variant.join("seg_%04d.ts"),
                },
                target,
                audio: has_audio,
            });
            targets.push(target);
        }
        report.metadata.insert(
            "hls_rungs".into(),
            Value::from(rungs.iter().map(|r| r.name.clone()).collect::<Vec<_>>()),
        );
        hls = Some((dir, rungs, targets));
    }
    let done = if plan.sinks.is_empty() {
        transcode::Done::default()
    } else {
        transcode::run(input, probe, v, &plan, control)?
    };
    if let Some((partial, size)) = mp4 {
        let duration = output_duration(partial.path());
        report.renditions.push(partial.commit(
            out_dir,
            Output {
                name: MP4_720,
                file: format!("{MP4_720}.mp4"),
                content_type: "video/mp4",
                size: Some(size),
                duration_seconds: duration,
            },
        )?);
    }
    if let Some((dir, rungs, targets)) = hls {
        let codecs: Vec<String> = targets
            .iter()
            .map(|&t| {
                done.codecs
                    .get(t)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| "avc1.640028".into())
            })
            .collect();
        ladder::write_master(dir.path(), &rungs, &codecs, done.audio, v.fps)?;
        let duration = output_duration(&dir.path().join(&rungs[0].name).join("index.m3u8"));
        report.renditions.push(dir.commit(
            out_dir,
            Output {
                name: HLS,
                file: format!("{HLS}/master.m3u8"),
                content_type: "application/vnd.apple.mpegurl",
                size: Some(rungs[0].size),
                duration_seconds: duration.or(Some(probe.duration)),
            },
        )?);
    }
    Ok(())
}

/// The playing time of a written output, read back from its header.
pub fn output_duration(path: &Path) -> Option<f64> {
    let ctx = crate::av::open_input(path).ok()?;
    (ctx.duration() > 0).then(|| {
        let s = ctx.duration() as f64 / f64::from(ffmpeg_next::ffi::AV_TIME_BASE);
        (s * 1000.0).round() / 1000.0
    })
}

/// The renditions a video job has, in the order they are made (for staging and `--only`).
pub fn names(profile: &Profile) -> Vec<&'static str> {
    let mut v = Vec::new();
    if profile.video.poster.is_some() && profile.video.poster_written {
        v.push(POSTER);
    }
    if profile.video.mp4.is_some() {
        v.push(MP4_720);
    }
    if profile.video.hls.is_some() {
        v.push(HLS);
    }
    v
}
