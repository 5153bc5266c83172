//! Probe: what a video or audio file holds, read from its headers, and the limits checked before any frame
//! is decoded.
//!
//! FFmpeg's `avformat_find_stream_info` reads at most a few MB and a few seconds of packets to fill in stream
//! parameters; the probe then opens (but does not feed) the decoders only to read sizes and formats, because
//! ffmpeg-next 9 exposes those on a codec context, not on stream parameters. A header that lies about its
//! duration, size or frame count is refused here with its own code, so a hostile file costs milliseconds.

use std::path::Path;

use ffmpeg::codec::packet::side_data::Type as SideDataType;
use ffmpeg::color::{Primaries, TransferCharacteristic};
use ffmpeg::format::Pixel;
use ffmpeg::media::Type;
use ffmpeg::Rational;
use ffmpeg_next as ffmpeg;
use mediafleet_proto::ErrorCode;
use serde_json::{Map, Value};

use super::{corrupt, seconds};
use crate::{Limits, MediaError};

/// High dynamic range transfer functions that are tone-mapped to SDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hdr {
    /// Hybrid log-gamma (ARIB STD-B67), as phones record it.
    Hlg,
    /// Perceptual quantiser (SMPTE ST 2084), HDR10.
    Pq,
}

impl Hdr {
    /// zscale's name for the transfer function.
    pub fn zscale_transfer(self) -> &'static str {
        match self {
            Hdr::Hlg => "arib-std-b67",
            Hdr::Pq => "smpte2084",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Hdr::Hlg => "hlg",
            Hdr::Pq => "pq",
        }
    }
}

/// The video stream that is used.
#[derive(Debug, Clone)]
pub struct VideoStream {
    /// Stream index in the container.
    pub index: usize,
    /// Codec name (`h264`, `hevc`, …).
    pub codec: String,
    /// Decoded pixel format.
    pub pix_fmt: Pixel,
    /// Stored picture size.
    pub coded: (u32, u32),
    /// Sample aspect ratio (1:1 for square pixels).
    pub sar: Rational,
    /// Clockwise rotation to apply for display: 0, 90, 180 or 270.
    pub rotation: u32,
    /// Frames per second (average), 0 when unknown.
    pub fps: f64,
    /// Frame rate for encoders (average, else real base rate, else 25).
    pub rate: Rational,
    /// Whether the real base rate and the average differ (variable frame rate).
    pub vfr: bool,
    /// Frame count (from the header, else duration × rate).
    pub frames: u64,
    /// Stream time base.
    pub time_base: Rational,
    /// HDR transfer, when the stream is HLG or PQ.
    pub hdr: Option<Hdr>,
    /// Bits per component of the pixel format (8, 10, 12).
    pub bit_depth: u8,
    /// Colour primaries, as tagged.
    pub primaries: Primaries,
    /// Whether BT.2020 primaries are tagged.
    pub bt2020: bool,
}

impl VideoStream {
    /// Size as displayed: square pixels, rotation applied.
    pub fn display(&self) -> (u32, u32) {
        let (w, h) = self.coded;
        let sar = if self.sar.numerator() > 0 && self.sar.denominator() > 0 {
            f64::from(self.sar.numerator()) / f64::from(self.sar.denominator())
        } else {
            1.0
        };
        let w = if (sar - 1.0).abs() > 1e-3 {
            ((f64::from(w) * sar).round() as u32).max(2)
        } else {
            w
        };
        if self.rotation % 180 == 90 {
            (h, w)
        } else {
            (w, h)
        }
    }
}

/// The audio stream that is used.
#[derive(Debug, Clone)]
pub struct AudioStream {
    /// Stream index in the container.
    pub index: usize,
    /// Codec name (`aac`, `mp3`, `opus`, …).
    pub codec: String,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u16,
    /// Stream time base.
    pub time_base: Rational,
}

/// What a file holds.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Demuxer name (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`, …).
    pub container: String,
    /// Seconds, from the container (0 when unknown).
    pub duration: f64,
    /// Container start time in seconds.
    pub start: f64,
    /// Overall bit rate, bits per second (0 when unknown).
    pub bit_rate: i64,
    /// Number of streams of any kind.
    pub streams: usize,
    /// The best video stream.
    pub video: Option<VideoStream>,
    /// The best audio stream.
    pub audio: Option<AudioStream>,
}

/// Opens `path` and reads its headers.
pub fn open(path: &Path) -> Result<(ffmpeg::format::context::Input, Probe), MediaError> {
    super::init()?;
    let input = super::open_input(path).map_err(corrupt("the file does not open as media"))?;
    let duration = if input.duration() > 0 {
        input.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)
    } else {
        0.0
    };
    let video = match input.streams().best(Type::Video) {
        Some(s) => Some(video_stream(&s, duration)?),
        None => None,
    };
    let audio = match input.streams().best(Type::Audio) {
        Some(s) => Some(audio_stream(&s)?),
        None => None,
    };
    // Where the timeline starts (MPEG-TS rarely starts at 0): the first stream used, in seconds.
    let start = video
        .as_ref()
        .map(|v| v.index)
        .or(audio.as_ref().map(|a| a.index))
        .and_then(|i| input.stream(i))
        .map(|s| s.start_time())
        .filter(|&t| t != ffmpeg::ffi::AV_NOPTS_VALUE && t > 0)
        .zip(
            video
                .as_ref()
                .map(|v| v.time_base)
                .or(audio.as_ref().map(|a| a.time_base)),
        )
        .map_or(0.0, |(t, tb)| seconds(t, tb));
    let probe = Probe {
        container: input.format().name().to_owned(),
        duration,
        start,
        bit_rate: input.bit_rate(),
        streams: input.nb_streams() as usize,
        video,
        audio,
    };
    Ok((input, probe))
}

fn video_stream(
    s: &ffmpeg::format::stream::Stream,
    duration: f64,
) -> Result<VideoStream, MediaError> {
    let params = s.parameters();
    let codec = params.id().name().to_owned();
    let ctx = ffmpeg::codec::Context::from_parameters(params)
        .map_err(corrupt("the video stream parameters are invalid"))?;
    let dec = ctx.decoder().video().map_err(|e| {
        MediaError::new(
            ErrorCode::UnsupportedFormat,
            format!("no decoder for the {codec} video stream: {e}"),
        )
    })?;
    let avg = s.avg_frame_rate();
    let real = s.rate();
    let as_f64 = |r: Rational| {
        if r.numerator() > 0 && r.denominator() > 0 {
            f64::from(r.numerator()) / f64::from(r.denominator())
        } else {
            0.0
        }
    };
    let fps = if as_f64(avg) > 0.0 {
        as_f64(avg)
    } else {
        as_f64(real)
    };
    let rate = if as_f64(avg) > 0.0 {
        avg
    } else if as_f64(real) > 0.0 {
        real
    } else {
        Rational(25, 1)
    };
    let stream_seconds = if s.duration() > 0 {
        seconds(s.duration(), s.time_base())
    } else {
        duration
    };
    let frames = if s.frames() > 0 {
        s.frames() as u64
    } else {
        (stream_seconds.max(duration) * fps).ceil().max(0.0) as u64
    };
    let transfer = dec.color_transfer_characteristic();
    let hdr = match transfer {
        TransferCharacteristic::ARIB_STD_B67 => Some(Hdr::Hlg),
        TransferCharacteristic::SMPTE2084 => Some(Hdr::Pq),
        _ => None,
    };
    let pix_fmt = dec.format();
    let bit_depth = bit_depth(pix_fmt);
    Ok(VideoStream {
        index: s.index(),
        codec,
        pix_fmt,
        coded: (dec.width(), dec.height()),
        sar: dec.aspect_ratio(),
        rotation: rotation(s),
        fps,
        rate,
        vfr: as_f64(avg) > 0.0 && as_f64(real) > 0.0 && (as_f64(avg) - as_f64(real)).abs() > 0.01,
        frames,
        time_base: s.time_base(),
        hdr,
        bit_depth,
        primaries: dec.color_primaries(),
        bt2020: dec.color_primaries() == Primaries::BT2020,
    })
}

fn audio_stream(s: &ffmpeg::format::stream::Stream) -> Result<AudioStream, MediaError> {
    let params = s.parameters();
    let codec = params.id().name().to_owned();
    let ctx = ffmpeg::codec::Context::from_parameters(params)
        .map_err(corrupt("the audio stream parameters are invalid"))?;
    let dec = ctx.decoder().audio().map_err(|e| {
        MediaError::new(
            ErrorCode::UnsupportedFormat,
            format!("no decoder for the {codec} audio stream: {e}"),
        )
    })?;
    Ok(AudioStream {
        index: s.index(),
        codec,
        sample_rate: dec.rate(),
        channels: dec.channels(),
        time_base: s.time_base(),
    })
}

/// Bits per component, from the pixel format's name (`yuv420p10le` → 10); ffmpeg-next 9 does not expose the
/// descriptor's component depths.
fn bit_depth(pix: Pixel) -> u8 {
    let name = pix.descriptor().map(|d| d.name()).unwrap_or("");
    let stem = name.trim_end_matches("le").trim_end_matches("be");
    let digits: String = stem
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    match digits.parse::<u8>() {
        Ok(d) if (9..=16).contains(&d) && stem.len() > digits.len() => d,
        _ => 8,
    }
}

/// Clockwise display rotation from the stream's display matrix, rounded to a quarter turn (as the `ffmpeg`
/// CLI's autorotate does).
fn rotation(s: &ffmpeg::format::stream::Stream) -> u32 {
    let Some(sd) = s
        .side_data()
        .find(|sd| sd.kind() == SideDataType::DisplayMatrix)
    else {
        return 0;
    };
    let m: Vec<f64> = sd
        .data()
        .chunks_exact(4)
        .take(9)
        .map(|c| f64::from(i32::from_ne_bytes([c[0], c[1], c[2], c[3]])) / 65536.0)
        .collect();
    if m.len() < 9 {
        return 0;
    }
    quarter_turns(m[0], m[1], m[3], m[4])
}

/// The display matrix's rotation (`av_display_rotation_get`, negated as the CLI does) in quarter turns.
fn quarter_turns(a: f64, b: f64, c: f64, d: f64) -> u32 {
    let sx = a.hypot(c);
    let sy = b.hypot(d);
    if sx == 0.0 || sy == 0.0 {
        return 0;
    }
    // fftools' get_rotation(): -av_display_rotation_get(), and that is itself the negated matrix angle.
    let theta = (b / sy).atan2(a / sx).to_degrees().rem_euclid(360.0);
    (((theta / 90.0).round() as u32) % 4) * 90
}

impl Probe {
    /// Checks duration, stream count, picture size and frame count against `limits`, each with its own code.
    pub fn check(&self, limits: &Limits) -> Result<(), MediaError> {
        if self.duration > limits.video_seconds {
            return Err(MediaError::new(
                ErrorCode::TooLong,
                format!(
                    "the header says {:.0} s; the limit is {:.0} s",
                    self.duration, limits.video_seconds
                ),
            ));
        }
        if self.streams as u64 > limits.streams {
            return Err(MediaError::new(
                ErrorCode::TooManyStreams,
                format!(
                    "the file has {} streams; the limit is {}",
                    self.streams, limits.streams
                ),
            ));
        }
        if let Some(v) = &self.video {
            let (w, h) = v.coded;
            if w == 0 || h == 0 {
                return Err(MediaError::new(
                    ErrorCode::CorruptMedia,
                    "the video stream has no picture size",
                ));
            }
            let pixels = u64::from(w) * u64::from(h);
            if pixels > limits.video_pixels {
                return Err(MediaError::new(
                    ErrorCode::TooManyPixels,
                    format!(
                        "the video is {w}×{h} ({pixels} pixels); the limit is {}",
                        limits.video_pixels
                    ),
                ));
            }
            if v.frames > limits.video_frames {
                return Err(MediaError::new(
                    ErrorCode::TooManyFrames,
                    format!(
                        "the video has {} frames; the limit is {}",
                        v.frames, limits.video_frames
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The probe as report metadata.
    pub fn metadata(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("container".into(), self.container.clone().into());
        m.insert("duration_seconds".into(), round3(self.duration).into());
        m.insert("bit_rate".into(), self.bit_rate.into());
        m.insert("streams".into(), self.streams.into());
        m.insert("has_audio".into(), self.audio.is_some().into());
        m.insert("has_video".into(), self.video.is_some().into());
        if let Some(v) = &self.video {
            let (w, h) = v.display();
            m.insert("width".into(), w.into());
            m.insert("height".into(), h.into());
            m.insert("coded_width".into(), v.coded.0.into());
            m.insert("coded_height".into(), v.coded.1.into());
            m.insert("rotation".into(), v.rotation.into());
            m.insert("video_codec".into(), v.codec.clone().into());
            m.insert(
                "pix_fmt".into(),
                v.pix_fmt
                    .descriptor()
                    .map(|d| d.name())
                    .unwrap_or("unknown")
                    .into(),
            );
            m.insert("bit_depth".into(), v.bit_depth.into());
            m.insert("fps".into(), round3(v.fps).into());
            m.insert("vfr".into(), v.vfr.into());
            m.insert("frames".into(), v.frames.into());
            m.insert("hdr".into(), v.hdr.map(Hdr::name).into());
        }
        if let Some(a) = &self.audio {
            m.insert("audio_codec".into(), a.codec.clone().into());
            m.insert("sample_rate".into(), a.sample_rate.into());
            m.insert("channels".into(), a.channels.into());
        }
        m
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::quarter_turns;

    #[test]
    fn display_matrix_to_clockwise_quarter_turns() {
        // What FFmpeg 5.1 writes for `-metadata:s:v rotate=90` (ffprobe: "rotation: 90"); the CLI turns it
        // with `transpose=cclock`, i.e. 270° clockwise.
        assert_eq!(quarter_turns(0.0, -1.0, 1.0, 0.0), 270);
        assert_eq!(quarter_turns(0.0, 1.0, -1.0, 0.0), 90);
        assert_eq!(quarter_turns(-1.0, 0.0, 0.0, -1.0), 180);
        assert_eq!(quarter_turns(1.0, 0.0, 0.0, 1.0), 0);
    }
}
