//! libavfilter graphs: the video chain (rotation, HDR → SDR tone mapping, one scale per output after a
//! `split`) and the audio chain (resample, downmix, fixed-size frames for AAC).
//!
//! The graph is the same one the `ffmpeg` CLI builds for `-vf`/`-filter_complex`, so the pixels match what a
//! user would get from the CLI, and so does the cost.

use ffmpeg::format::Pixel;
use ffmpeg::{filter, frame, Rational};
use ffmpeg_next as ffmpeg;

use super::failed;
use super::probe::{AudioStream, Hdr, VideoStream};
use crate::MediaError;

/// One picture output of a video graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Out {
    /// Width after scaling (even for video outputs).
    pub width: u32,
    /// Height after scaling.
    pub height: u32,
    /// Pixel format of the output.
    pub format: Pixel,
}

/// A filter graph with one source (`in`) and sinks `out0`, `out1`, ….
pub struct Graph {
    graph: filter::Graph,
    sinks: Vec<String>,
}

impl Graph {
    /// Feeds a frame, or `None` at the end of the input.
    pub fn push(&mut self, frame: Option<&ffmpeg::Frame>) -> Result<(), MediaError> {
        let mut src = self
            .graph
            .get("in")
            .ok_or_else(|| super::internal("the filter graph lost its source"))?;
        match frame {
            Some(f) => src.source().add(f).map_err(failed("filter input")),
            None => src.source().flush().map_err(failed("filter flush")),
        }
    }

    /// The next frame of sink `i`; `Ok(false)` when it has none right now (or ever again).
    pub fn pull(&mut self, i: usize, frame: &mut ffmpeg::Frame) -> Result<bool, MediaError> {
        let mut sink = self
            .graph
            .get(&self.sinks[i])
            .ok_or_else(|| super::internal("the filter graph lost a sink"))?;
        match sink.sink().frame(frame) {
            Ok(()) => Ok(true),
            Err(ffmpeg::Error::Eof) => Ok(false),
            Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => Ok(false),
            Err(e) => Err(super::internal(format!("filter output: {e}"))),
        }
    }

    /// Time base of sink `i`'s frames.
    pub fn time_base(&mut self, i: usize) -> Rational {
        self.graph
            .get(&self.sinks[i])
            .map(|mut c| c.sink().time_base())
            .unwrap_or(Rational(1, 1))
    }

    /// Makes sink `i` hand out frames of exactly `samples` samples (AAC wants 1024).
    pub fn set_frame_size(&mut self, i: usize, samples: u32) {
        if let Some(mut c) = self.graph.get(&self.sinks[i]) {
            c.sink().set_frame_size(samples);
        }
    }

    fn build(
        source: &str,
        source_args: &str,
        sink: &str,
        spec: &str,
        outputs: usize,
    ) -> Result<Self, MediaError> {
        let mut graph = filter::Graph::new();
        let find = |name: &str| {
            filter::find(name)
                .ok_or_else(|| super::internal(format!("FFmpeg has no {name} filter")))
        };
        graph
            .add(&find(source)?, "in", source_args)
            .map_err(failed("filter source"))?;
        let sinks: Vec<String> = (0..outputs).map(|i| format!("out{i}")).collect();
        for name in &sinks {
            graph
                .add(&find(sink)?, name, "")
                .map_err(failed("filter sink"))?;
        }
        let mut parser = graph.output("in", 0).map_err(failed("filter graph"))?;
        for name in &sinks {
            parser = parser.input(name, 0).map_err(failed("filter graph"))?;
        }
        parser
            .parse(spec)
            .map_err(|e| super::internal(format!("filter graph {spec:?}: {e}")))?;
        graph
            .validate()
            .map_err(|e| super::internal(format!("filter graph {spec:?}: {e}")))?;
        Ok(Graph { graph, sinks })
    }
}

/// The chain every picture goes through before it is scaled: rotation as the CLI's autorotate does it, then
/// for HLG/PQ a tone map to SDR BT.709 (done at the largest output size, so 4K HDR costs what 1080p costs).
fn prefix(v: &VideoStream, largest: (u32, u32)) -> Vec<String> {
    let mut f = Vec::new();
    match v.rotation {
        90 => f.push("transpose=clock".to_owned()),
        180 => f.push("hflip,vflip".to_owned()),
        270 => f.push("transpose=cclock".to_owned()),
        _ => {}
    }
    if let Some(hdr) = v.hdr {
        f.push(tonemap(hdr, largest));
    }
    f
}

/// HLG/PQ → SDR BT.709: linearise (zscale), tone map in float RGB (Hable, no desaturation), back to BT.709
/// limited range. The input's matrix and primaries are stated, not guessed: phone files are BT.2020.
pub fn tonemap(hdr: Hdr, (w, h): (u32, u32)) -> String {
    format!(
        "scale={w}:{h},zscale=tin={tin}:pin=bt2020:min=bt2020nc:t=linear:npl=100,format=gbrpf32le,\
         zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p",
        tin = hdr.zscale_transfer()
    )
}

/// A video graph from the decoder's frames to `outs` (one `split` branch per output).
pub fn video(v: &VideoStream, time_base: Rational, outs: &[Out]) -> Result<Graph, MediaError> {
    let (w, h) = v.coded;
    let sar = if v.sar.numerator() > 0 && v.sar.denominator() > 0 {
        v.sar
    } else {
        Rational(1, 1)
    };
    let args = format!(
        "video_size={w}x{h}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
        ffmpeg::ffi::AVPixelFormat::from(v.pix_fmt) as i32,
        time_base.numerator(),
        time_base.denominator().max(1),
        sar.numerator(),
        sar.denominator()
    );
    let largest = outs
        .iter()
        .map(|o| (o.width, o.height))
        .max_by_key(|(w, h)| u64::from(*w) * u64::from(*h))
        .unwrap_or(v.display());
    let head = prefix(v, largest);
    let tail = |o: &Out| {
        format!(
            "scale={}:{},format={},setsar=1",
            o.width,
            o.height,
            o.format.descriptor().map(|d| d.name()).unwrap_or("yuv420p")
        )
    };
    let spec = if outs.len() == 1 {
        let mut chain = head;
        chain.push(tail(&outs[0]));
        format!("[in]{}[out0]", chain.join(","))
    } else {
        let mut chain = head;
        let labels: String = (0..outs.len()).map(|i| format!("[s{i}]")).collect();
        chain.push(format!("split={}", outs.len()));
        let mut spec = format!("[in]{}{labels}", chain.join(","));
        for (i, o) in outs.iter().enumerate() {
            spec.push_str(&format!(";[s{i}]{}[out{i}]", tail(o)));
        }
        spec
    };
    Graph::build("buffer", &args, "buffersink", &spec, outs.len())
}

/// What an audio graph hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioOut {
    /// Planar float at `rate`, `channels` (1 or 2): what the AAC encoder takes.
    Aac {
        /// Output sample rate.
        rate: u32,
        /// 1 or 2.
        channels: u16,
    },
    /// Packed float mono at the source rate: for waveform peaks.
    Mono,
}

/// An audio graph from the decoder's frames to `outs`.
pub fn audio(
    a: &AudioStream,
    decoder: &ffmpeg::decoder::Audio,
    outs: &[AudioOut],
) -> Result<Graph, MediaError> {
    let mut layout = decoder.channel_layout();
    if layout.bits() == 0 || layout.channels() != i32::from(decoder.channels()) {
        layout = ffmpeg::ChannelLayout::default(i32::from(decoder.channels()));
    }
    // Decoded frames carry the packets' timestamps: the stream's time base.
    let tb = a.time_base;
    let tb = if tb.numerator() > 0 && tb.denominator() > 0 {
        tb
    } else {
        Rational(1, a.sample_rate.max(1) as i32)
    };
    let args = format!(
        "time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
        tb.numerator(),
        tb.denominator(),
        decoder.rate(),
        decoder.format().name(),
        layout.bits()
    );
    let branch = |o: &AudioOut| match o {
        AudioOut::Aac { rate, channels } => format!(
            "aresample={rate},aformat=sample_fmts=fltp:channel_layouts={}",
            if *channels == 1 { "mono" } else { "stereo" }
        ),
        AudioOut::Mono => "aformat=sample_fmts=flt:channel_layouts=mono".to_owned(),
    };
    let spec = if outs.len() == 1 {
        format!("[in]{}[out0]", branch(&outs[0]))
    } else {
        let labels: String = (0..outs.len()).map(|i| format!("[s{i}]")).collect();
        let mut spec = format!("[in]asplit={}{labels}", outs.len());
        for (i, o) in outs.iter().enumerate() {
            spec.push_str(&format!(";[s{i}]{}[out{i}]", branch(o)));
        }
        spec
    };
    Graph::build("abuffer", &args, "abuffersink", &spec, outs.len())
}

/// A still picture graph: decoder frame → rotated, tone-mapped, scaled RGB24.
pub fn still(v: &VideoStream, time_base: Rational, size: (u32, u32)) -> Result<Graph, MediaError> {
    video(
        v,
        time_base,
        &[Out {
            width: size.0,
            height: size.1,
            format: Pixel::RGB24,
        }],
    )
}

/// Convenience: pulls every frame sink `i` has right now into `f`.
pub fn drain(
    graph: &mut Graph,
    i: usize,
    mut f: impl FnMut(&mut frame::Video) -> Result<(), MediaError>,
) -> Result<(), MediaError> {
    let mut out = frame::Video::empty();
    while graph.pull(i, &mut out)? {
        f(&mut out)?;
    }
    Ok(())
}
