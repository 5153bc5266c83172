//! FFmpeg plumbing shared by the video and audio pipelines (ffmpeg-next 9 on Debian's FFmpeg 5.1).
//!
//! - [`probe`]: what a file holds, read from headers, and the limits checked before any decoding.
//! - [`graph`]: libavfilter graphs (rotation, HDR tone mapping, scaling, splitting, resampling).
//! - [`encode`]: libx264 and AAC encoders configured like the `ffmpeg` CLI would.
//! - [`mux`]: output files (MP4 with faststart, M4A, HLS) fed from shared encoders.

pub mod encode;
pub mod graph;
pub mod mux;
pub mod probe;

use std::sync::OnceLock;

use ffmpeg::codec::threading;
use ffmpeg::Rational;
use ffmpeg_next as ffmpeg;
use mediafleet_proto::ErrorCode;

use crate::MediaError;

/// Initialises FFmpeg once per process and keeps its logging quiet (hostile files make a lot of noise; the
/// error we return says what matters).
pub fn init() -> Result<(), MediaError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        ffmpeg::init().map_err(|e| e.to_string())?;
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
        Ok(())
    })
    .clone()
    .map_err(|e| internal(format!("FFmpeg did not initialise: {e}")))
}

/// The demuxers a media input may be opened with. Formats that name other files or URLs (HLS and DASH
/// playlists, concat lists, image sequences, `tee`, SDP/RTSP, `data:`) are left out, so a playlist uploaded
/// as a video cannot make libavformat open anything but the file it was given.
pub const DEMUXERS: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,mpegvideo,flv,asf,mxf,ogg,\
    mp3,flac,wav,aac,aiff,caf,w64,wv,ape,amr,ac3,eac3,dts,truehd,mlp,tta,h264,hevc,ivf,m4v,obu,avif";

/// Opens a media file for demuxing with only the `file` protocol and the demuxers in [`DEMUXERS`].
pub fn open_input(path: &std::path::Path) -> Result<ffmpeg::format::context::Input, ffmpeg::Error> {
    let mut opts = ffmpeg::Dictionary::new();
    opts.set("protocol_whitelist", "file");
    opts.set("format_whitelist", DEMUXERS);
    ffmpeg::format::input_with_dictionary(&path, opts)
}

/// A `corrupt_media` error that says what was being done.
pub fn corrupt(what: &'static str) -> impl Fn(ffmpeg::Error) -> MediaError {
    move |e| MediaError::new(ErrorCode::CorruptMedia, format!("{what}: {e}"))
}

/// An `internal` error (our side: an encoder or muxer refused what we built).
pub fn internal(message: impl Into<String>) -> MediaError {
    MediaError::new(ErrorCode::Internal, message)
}

/// An `internal` error from FFmpeg, saying what was being done.
pub fn failed(what: &'static str) -> impl Fn(ffmpeg::Error) -> MediaError {
    move |e| internal(format!("{what}: {e}"))
}

/// Frame + slice threads, as many as there are cores: what the CLI does with `-threads auto`.
pub fn auto_threads(ctx: &mut ffmpeg::codec::Context) {
    ctx.set_threading(threading::Config {
        kind: threading::Type::Frame,
        count: 0,
        ..Default::default()
    });
}

/// A timestamp in seconds.
pub fn seconds(ts: i64, tb: Rational) -> f64 {
    if tb.denominator() == 0 {
        return 0.0;
    }
    ts as f64 * f64::from(tb.numerator()) / f64::from(tb.denominator())
}
