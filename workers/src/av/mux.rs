//! Output files fed from encoders (or copied packets): MP4 with `+faststart`, M4A, and HLS variants.
//!
//! One encoder may feed several muxers (the 720p rung of the ladder and `mp4-720` are the same encode when
//! their settings agree), so [`Muxer::write`] takes a borrowed packet and the encoder's time base and does its
//! own copy and rescale.

use std::path::{Path, PathBuf};

use ffmpeg::format::context::Output;
use ffmpeg::{codec, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;

use super::failed;
use crate::MediaError;

/// What kind of file a muxer writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// MP4 with the index moved to the front (`movflags=+faststart`), so playback starts before the download
    /// ends.
    Mp4,
    /// M4A (the `ipod` muxer: brand `M4A `), with faststart.
    M4a,
    /// One HLS variant: `path` is its playlist; segments are `segment_pattern` (`seg_%04d.ts`) in the same
    /// directory.
    Hls {
        /// Target segment length in seconds.
        segment_seconds: u32,
        /// Absolute segment file pattern.
        segment_pattern: PathBuf,
    },
}

/// An output file being written.
pub struct Muxer {
    octx: Output,
    kind: Kind,
    video: Option<usize>,
    audio: Option<usize>,
    started: bool,
}

impl Muxer {
    /// Creates the file (not written until [`Muxer::start`]).
    pub fn create(path: &Path, kind: Kind) -> Result<Self, MediaError> {
        let format = match kind {
            Kind::Mp4 => "mp4",
            Kind::M4a => "ipod",
            Kind::Hls { .. } => "hls",
        };
        let octx = ffmpeg::format::output_as(path, format).map_err(failed("output file"))?;
        Ok(Muxer {
            octx,
            kind,
            video: None,
            audio: None,
            started: false,
        })
    }

    /// Adds the video stream of an opened encoder.
    pub fn add_video(&mut self, enc: &ffmpeg::encoder::Video) -> Result<(), MediaError> {
        let mut ost = self
            .octx
            .add_stream(enc.codec())
            .map_err(failed("video stream"))?;
        ost.set_parameters(enc);
        ost.set_time_base(enc.time_base());
        self.video = Some(ost.index());
        Ok(())
    }

    /// Adds the audio stream of an opened encoder.
    pub fn add_audio(&mut self, enc: &ffmpeg::encoder::Audio) -> Result<(), MediaError> {
        let mut ost = self
            .octx
            .add_stream(enc.codec())
            .map_err(failed("audio stream"))?;
        ost.set_parameters(enc);
        ost.set_time_base(enc.time_base());
        self.audio = Some(ost.index());
        Ok(())
    }

    /// Adds a stream whose packets are copied from the input (remux).
    pub fn add_copy(
        &mut self,
        params: codec::Parameters,
        time_base: Rational,
        video: bool,
    ) -> Result<(), MediaError> {
        let mut ost = self
            .octx
            .add_stream(ffmpeg::encoder::find(codec::Id::None))
            .map_err(failed("copied stream"))?;
        ost.set_parameters(params);
        ost.set_time_base(time_base);
        if video {
            self.video = Some(ost.index());
        } else {
            self.audio = Some(ost.index());
        }
        Ok(())
    }

    /// Writes the header.
    pub fn start(&mut self) -> Result<(), MediaError> {
        let mut opts = Dictionary::new();
        match &self.kind {
            Kind::Mp4 | Kind::M4a => opts.set("movflags", "+faststart"),
            Kind::Hls {
                segment_seconds,
                segment_pattern,
            } => {
                opts.set("hls_time", &segment_seconds.to_string());
                opts.set("hls_playlist_type", "vod");
                opts.set("hls_list_size", "0");
                opts.set("hls_flags", "independent_segments");
                opts.set("hls_segment_filename", &segment_pattern.to_string_lossy());
            }
        }
        self.octx
            .write_header_with(opts)
            .map_err(failed("output header"))?;
        self.started = true;
        Ok(())
    }

    /// Whether this muxer takes audio.
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Writes a copy of `packet` (timestamps in `from`) to the video (`video = true`) or audio stream.
    pub fn write(
        &mut self,
        packet: &Packet,
        from: Rational,
        video: bool,
    ) -> Result<(), MediaError> {
        let Some(index) = (if video { self.video } else { self.audio }) else {
            return Ok(());
        };
        let to = self
            .octx
            .stream(index)
            .map(|s| s.time_base())
            .unwrap_or(from);
        let mut p = packet.clone();
        p.set_stream(index);
        p.set_position(-1);
        p.rescale_ts(from, to);
        p.write_interleaved(&mut self.octx)
            .map_err(failed("writing a packet"))
    }

    /// Writes the trailer (for MP4, the faststart pass that moves the index to the front).
    pub fn finish(mut self) -> Result<(), MediaError> {
        if self.started {
            self.octx
                .write_trailer()
                .map_err(failed("output trailer"))?;
        }
        Ok(())
    }
}
