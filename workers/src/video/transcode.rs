//! The encode engine: one demux and one decode feed a filter graph that splits into one branch per output
//! size; each branch has one libx264 encoder, and each encoder feeds every muxer that wants that size (the
//! `mp4-720` file and the 720p HLS rung share an encode when their settings agree). One AAC encode feeds every
//! muxer that wants audio.
//!
//! Timestamps are the source's, passed through (variable frame rate stays variable, as the CLI does for MP4);
//! a frame whose timestamp does not move forward is dropped. HLS encoders get a forced keyframe at every
//! segment boundary, so segments cut at the target length whatever the frame rate.

use std::path::{Path, PathBuf};

use ffmpeg::format::Pixel;
use ffmpeg::{frame, picture, Packet, Rational};
use ffmpeg_next as ffmpeg;
use mediafleet_proto::ErrorCode;

use crate::audio::chain::AacChain;
use crate::av::encode::{avc1_codec_string, h264, H264};
use crate::av::graph::{self, Graph, Out};
use crate::av::mux::{Kind, Muxer};
use crate::av::probe::{Probe, VideoStream};
use crate::av::{auto_threads, corrupt, failed, seconds};
use crate::{Control, MediaError};

/// One H.264 encode.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Output size (even).
    pub size: (u32, u32),
    /// x264 CRF.
    pub crf: u8,
    /// x264 preset.
    pub preset: String,
    /// Force a keyframe every this many seconds (HLS segment boundaries).
    pub keyframe_every: Option<f64>,
}

/// One output file.
#[derive(Debug, Clone)]
pub struct Sink {
    /// Where it goes.
    pub path: PathBuf,
    /// MP4 or an HLS variant.
    pub kind: Kind,
    /// Index into [`Plan::targets`].
    pub target: usize,
    /// Whether it carries the audio.
    pub audio: bool,
}

/// Everything one decode produces.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Distinct encodes.
    pub targets: Vec<Target>,
    /// Output files.
    pub sinks: Vec<Sink>,
    /// AAC bit rate.
    pub audio_bitrate: u32,
}

impl Plan {
    /// The index of an encode with these settings, added if new.
    pub fn target(&mut self, t: Target) -> usize {
        if let Some(i) = self
            .targets
            .iter()
            .position(|x| x.size == t.size && x.crf == t.crf && x.preset == t.preset)
        {
            // A shared encode keeps the stricter keyframe placement (HLS needs it; MP4 does not mind).
            if self.targets[i].keyframe_every.is_none() {
                self.targets[i].keyframe_every = t.keyframe_every;
            }
            return i;
        }
        self.targets.push(t);
        self.targets.len() - 1
    }
}

/// What the run produced.
#[derive(Debug, Clone, Default)]
pub struct Done {
    /// `avc1.PPCCLL` per target (from its first SPS), for HLS `CODECS`.
    pub codecs: Vec<Option<String>>,
    /// Frames decoded.
    pub frames: u64,
    /// Whether audio was encoded.
    pub audio: bool,
}

struct Encode {
    enc: ffmpeg::encoder::Video,
    time_base: Rational,
    last_pts: Option<i64>,
    every: Option<f64>,
    next_key: Option<f64>,
    codec: Option<String>,
    sinks: Vec<usize>,
    /// One frame at the nominal rate, in `time_base` ticks: the duration of packets x264 leaves unset (the
    /// MP4 muxer needs it for the last sample, or the last frame is cut by the edit list).
    frame_ticks: i64,
}

/// Runs `plan` over `input` in one pass.
pub fn run(
    input: &Path,
    probe: &Probe,
    v: &VideoStream,
    plan: &Plan,
    control: &Control,
) -> Result<Done, MediaError> {
    let mut ictx = crate::av::open_input(input).map_err(corrupt("the file does not open"))?;
    let (mut vdec, tb_in) = {
        let ist = ictx
            .stream(v.index)
            .ok_or_else(|| crate::av::internal("the video stream vanished"))?;
        let mut ctx = ffmpeg::codec::Context::from_parameters(ist.parameters())
            .map_err(corrupt("the video stream parameters are invalid"))?;
        auto_threads(&mut ctx);
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(ist.time_base());
        let dec = dec
            .video()
            .map_err(corrupt("the video decoder does not open"))?;
        (dec, ist.time_base())
    };
    let outs: Vec<Out> = plan
        .targets
        .iter()
        .map(|t| Out {
            width: t.size.0,
            height: t.size.1,
            format: Pixel::YUV420P,
        })
        .collect();
    let mut vgraph = graph::video(v, tb_in, &outs)?;
    let mut encodes = Vec::with_capacity(plan.targets.len());
    for (i, t) in plan.targets.iter().enumerate() {
        let sinks: Vec<usize> = (0..plan.sinks.len())
            .filter(|&s| plan.sinks[s].target == i)
            .collect();
        let global_header = sinks.iter().all(|&s| plan.sinks[s].kind == Kind::Mp4);
        let time_base = vgraph.time_base(i);
        let enc = h264(&H264 {
            width: t.size.0,
            height: t.size.1,
            time_base,
            rate: v.rate,
            crf: t.crf,
            preset: t.preset.clone(),
            global_header,
            bt709: v.hdr.is_some(),
        })?;
        let frame_ticks = (i64::from(time_base.denominator()) * i64::from(v.rate.denominator()))
            / (i64::from(time_base.numerator()) * i64::from(v.rate.numerator())).max(1);
        encodes.push(Encode {
            enc,
            time_base,
            frame_ticks: frame_ticks.max(1),
            last_pts: None,
            every: t.keyframe_every,
            next_key: None,
            codec: None,
            sinks,
        });
    }
    let mut audio = match &probe.audio {
        Some(a) if plan.sinks.iter().any(|s| s.audio) => {
            let stream = ictx
                .stream(a.index)
                .ok_or_else(|| crate::av::internal("the audio stream vanished"))?;
            Some(AacChain::new(&stream, a, Some(plan.audio_bitrate), None)?)
        }
        _ => None,
    };
    let mut muxers = Vec::with_capacity(plan.sinks.len());
    for s in &plan.sinks {
        let mut m = Muxer::create(&s.path, s.kind.clone())?;
        m.add_video(&encodes[s.target].enc)?;
        if s.audio {
            if let Some(enc) = audio.as_ref().and_then(|a| a.encoder()) {
                m.add_audio(enc)?;
            }
        }
        m.start()?;
        muxers.push(m);
    }

    let total = probe.duration.max(1e-3);
    let start = probe.start;
    let mut decoded = frame::Video::empty();
    let mut filtered = frame::Video::empty();
    let mut frames = 0u64;
    let mut bad_reads = 0u32;
    loop {
        control.check()?;
        let mut pkt = Packet::empty();
        match pkt.read(&mut ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) if bad_reads < 1000 => {
                bad_reads += 1;
                continue;
            }
            // A truncated or unreadable file ends here; whatever decoded so far is kept.
            Err(_) => break,
        }
        let i = pkt.stream();
        if i == v.index {
            // A packet that does not decode is skipped, as the CLI does.
            let _ = vdec.send_packet(&pkt);
            let (n, last) = pump(
                &mut vdec,
                &mut decoded,
                &mut vgraph,
                &mut filtered,
                &mut encodes,
                &mut muxers,
            )?;
            frames += n;
            if let Some(ts) = last {
                control.progress((seconds(ts, tb_in) - start) / total);
            }
        } else if let Some(a) = audio.as_mut().filter(|a| a.index == i) {
            a.packet(&pkt, &mut muxers)?;
        }
    }
    let _ = vdec.send_eof();
    frames += pump(
        &mut vdec,
        &mut decoded,
        &mut vgraph,
        &mut filtered,
        &mut encodes,
        &mut muxers,
    )?
    .0;
    if frames == 0 {
        return Err(MediaError::new(
            ErrorCode::CorruptMedia,
            "no frame of the video decodes",
        ));
    }
    vgraph.push(None)?;
    drain(&mut vgraph, &mut filtered, &mut encodes, &mut muxers)?;
    for e in &mut encodes {
        e.enc.send_eof().map_err(failed("libx264 flush"))?;
        packets(e, &mut muxers)?;
    }
    if let Some(a) = &mut audio {
        a.finish(&mut muxers)?;
    }
    for m in muxers {
        m.finish()?;
    }
    Ok(Done {
        codecs: encodes.into_iter().map(|e| e.codec).collect(),
        frames,
        audio: audio.is_some(),
    })
}

/// Receives every decoded frame, filters and encodes it; returns how many frames were decoded and the last
/// one's timestamp.
fn pump(
    dec: &mut ffmpeg::decoder::Video,
    decoded: &mut frame::Video,
    graph: &mut Graph,
    filtered: &mut frame::Video,
    encodes: &mut [Encode],
    muxers: &mut [Muxer],
) -> Result<(u64, Option<i64>), MediaError> {
    let (mut n, mut last) = (0, None);
    while dec.receive_frame(decoded).is_ok() {
        n += 1;
        let ts = decoded.timestamp();
        last = ts.or(last);
        decoded.set_pts(ts);
        graph.push(Some(decoded))?;
        drain(graph, filtered, encodes, muxers)?;
    }
    Ok((n, last))
}

fn drain(
    graph: &mut Graph,
    filtered: &mut frame::Video,
    encodes: &mut [Encode],
    muxers: &mut [Muxer],
) -> Result<(), MediaError> {
    for (i, e) in encodes.iter_mut().enumerate() {
        while graph.pull(i, filtered)? {
            encode(e, filtered, muxers)?;
        }
    }
    Ok(())
}

fn encode(e: &mut Encode, f: &mut frame::Video, muxers: &mut [Muxer]) -> Result<(), MediaError> {
    let pts = match (f.pts(), e.last_pts) {
        (Some(p), _) => p,
        (None, Some(l)) => l + 1,
        (None, None) => 0,
    };
    if e.last_pts.is_some_and(|l| pts <= l) {
        return Ok(()); // a duplicate or backwards timestamp (VFR sources): drop it, as the CLI does
    }
    e.last_pts = Some(pts);
    f.set_pts(Some(pts));
    // Never inherit the source's picture types: x264 decides, except at the boundaries forced below.
    f.set_kind(picture::Type::None);
    if let Some(every) = e.every {
        let t = seconds(pts, e.time_base);
        match e.next_key {
            None => e.next_key = Some(t + every),
            Some(next) if t + 1e-6 >= next => {
                f.set_kind(picture::Type::I);
                let mut next = next;
                while next <= t + 1e-6 {
                    next += every;
                }
                e.next_key = Some(next);
            }
            Some(_) => {}
        }
    }
    e.enc.send_frame(f).map_err(failed("libx264 encode"))?;
    packets(e, muxers)
}

fn packets(e: &mut Encode, muxers: &mut [Muxer]) -> Result<(), MediaError> {
    let mut pkt = Packet::empty();
    while e.enc.receive_packet(&mut pkt).is_ok() {
        if pkt.duration() <= 0 {
            pkt.set_duration(e.frame_ticks);
        }
        if e.codec.is_none() {
            e.codec = pkt.data().and_then(avc1_codec_string);
        }
        for &s in &e.sinks {
            muxers[s].write(&pkt, e.time_base, true)?;
        }
    }
    Ok(())
}
