//! Audio renditions of audio-only uploads (MP3, AAC, FLAC, WAV, Opus, M4A, …): `audio` (AAC in M4A) and
//! `peaks` (waveform JSON), from one decode.
//!
//! - [`chain`]: decode → resample/downmix → AAC, with a mono tap for peaks; also used by the video encodes.
//! - [`peaks`]: bounded-memory min/max buckets.

pub mod chain;
pub mod peaks;

use std::path::Path;

use ffmpeg::Packet;
use ffmpeg_next as ffmpeg;
use mediafleet_proto::{ErrorCode, MediaKind, Profile, AUDIO, PEAKS};

use crate::av::mux::{Kind, Muxer};
use crate::av::probe::{self, Probe};
use crate::av::{corrupt, seconds};
use crate::output::{self, Output, Partial};
use crate::{Control, Limits, MediaError, Report};
use chain::AacChain;
use peaks::Peaks;

/// Runs the audio renditions of `profile` on `input`.
pub fn run(
    input: &Path,
    profile: &Profile,
    limits: &Limits,
    out_dir: &Path,
    control: &Control,
) -> Result<Report, MediaError> {
    let (_, probe) = probe::open(input)?;
    probe.check(limits)?;
    run_probed(input, &probe, profile, out_dir, control)
}

/// Runs the audio renditions on a file already probed (and checked).
pub fn run_probed(
    input: &Path,
    probe: &Probe,
    profile: &Profile,
    out_dir: &Path,
    control: &Control,
) -> Result<Report, MediaError> {
    let a = probe
        .audio
        .clone()
        .ok_or_else(|| MediaError::new(ErrorCode::CorruptMedia, "the file has no audio stream"))?;
    let mut metadata = probe.metadata();
    metadata.remove("has_video");
    let mut report = Report {
        kind: Some(MediaKind::Audio),
        status: "ready".into(),
        error: None,
        metadata,
        blurhash: None,
        thumbhash: None,
        renditions: Vec::new(),
    };
    let spec = &profile.audio;
    if spec.audio.is_none() && spec.peaks.is_none() {
        return Ok(report);
    }
    let mut ictx = crate::av::open_input(input).map_err(corrupt("the file does not open"))?;
    let stream = ictx
        .stream(a.index)
        .ok_or_else(|| crate::av::internal("the audio stream vanished"))?;
    let mut chain = AacChain::new(
        &stream,
        &a,
        spec.audio.as_ref().map(|s| s.bitrate),
        spec.peaks.as_ref().map(|_| Peaks::new(a.sample_rate)),
    )?;
    let tb = a.time_base;
    let partial = match spec.audio {
        Some(_) => Some(Partial::file(out_dir, &format!("{AUDIO}.m4a"))?),
        None => None,
    };
    let mut muxers = Vec::new();
    if let (Some(p), Some(enc)) = (&partial, chain.encoder()) {
        let mut m = Muxer::create(p.path(), Kind::M4a)?;
        m.add_audio(enc)?;
        m.start()?;
        muxers.push(m);
    }
    let total = probe.duration.max(1e-3);
    loop {
        control.check()?;
        let mut pkt = Packet::empty();
        match pkt.read(&mut ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(_) => break,
        }
        if pkt.stream() != a.index {
            continue;
        }
        if let Some(pts) = pkt.pts() {
            control.progress((seconds(pts, tb) - probe.start) / total);
        }
        chain.packet(&pkt, &mut muxers)?;
    }
    chain.finish(&mut muxers)?;
    if chain.frames == 0 {
        return Err(MediaError::new(
            ErrorCode::CorruptMedia,
            "no audio of the file decodes",
        ));
    }
    for m in muxers {
        m.finish()?;
    }
    let seconds = chain.seconds();
    let seconds = (seconds * 1000.0).round() / 1000.0;
    report
        .metadata
        .insert("duration_seconds".into(), seconds.into());
    let duration = Some(seconds);
    if let Some(p) = partial {
        let d = crate::video::output_duration(p.path()).or(duration);
        report.renditions.push(p.commit(
            out_dir,
            Output {
                name: AUDIO,
                file: format!("{AUDIO}.m4a"),
                content_type: "audio/mp4",
                size: None,
                duration_seconds: d,
            },
        )?);
    }
    if let (Some(ps), Some(peaks)) = (&spec.peaks, chain.take_peaks()) {
        let doc = peaks.finish(ps.buckets);
        let bytes = serde_json::to_vec(&doc).map_err(|e| crate::av::internal(e.to_string()))?;
        report.renditions.push(output::write(
            out_dir,
            Output {
                name: PEAKS,
                file: format!("{PEAKS}.json"),
                content_type: "application/json",
                size: None,
                duration_seconds: duration,
            },
            &bytes,
        )?);
    }
    control.progress(1.0);
    Ok(report)
}
