//! AVIF input through Debian's FFmpeg 5.1 (ffmpeg-next 9).
//!
//! The image crate's AVIF decoder needs dav1d ≥ 1.3 and Debian 12 has 1.0; FFmpeg 5.1 reads a still AVIF as a
//! one-frame AV1 stream (its `mov` demuxer) and decodes it with libdav1d or libaom. Limits: FFmpeg 5.1 does not
//! read AVIF alpha planes (an auxiliary image item) nor grid-tiled AVIF (it would show one tile), so such
//! files come out opaque or partial; both are rare outside cameras that write HEIC instead.

use std::path::Path;

use ffmpeg::format::Pixel;
use ffmpeg::media::Type;
use ffmpeg::software::scaling::{Context as Scaler, Flags};
use ffmpeg_next as ffmpeg;
use image::{DynamicImage, RgbImage};
use mediafleet_proto::ErrorCode;

use crate::MediaError;

/// Decodes the first picture of the AVIF at `path` to 8-bit RGB. `check` sees the coded size before any
/// frame is decoded, so the pixel limit holds from the header.
pub fn decode(
    path: &Path,
    check: impl FnOnce(u32, u32) -> Result<(), MediaError>,
) -> Result<DynamicImage, MediaError> {
    ffmpeg::init().map_err(|e| internal(format!("FFmpeg did not initialise: {e}")))?;
    ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    let mut input = crate::av::open_input(path).map_err(corrupt)?;
    let stream = input
        .streams()
        .best(Type::Video)
        .ok_or_else(|| MediaError::new(ErrorCode::CorruptMedia, "the AVIF file has no picture"))?;
    let index = stream.index();
    let context = ffmpeg::codec::Context::from_parameters(stream.parameters()).map_err(corrupt)?;
    let mut decoder = context.decoder().video().map_err(corrupt)?;
    check(decoder.width(), decoder.height())?;

    let mut frame = ffmpeg::frame::Video::empty();
    let mut got = false;
    for (s, packet) in input.packets() {
        if s.index() != index {
            continue;
        }
        decoder.send_packet(&packet).map_err(corrupt)?;
        if decoder.receive_frame(&mut frame).is_ok() {
            got = true;
            break;
        }
    }
    if !got {
        decoder.send_eof().map_err(corrupt)?;
        decoder.receive_frame(&mut frame).map_err(corrupt)?;
    }
    to_rgb(&frame)
}

/// Converts a decoded frame to packed RGB (the scaler is created here: it is not `Send`).
fn to_rgb(frame: &ffmpeg::frame::Video) -> Result<DynamicImage, MediaError> {
    let (w, h) = (frame.width(), frame.height());
    let mut scaler =
        Scaler::get(frame.format(), w, h, Pixel::RGB24, w, h, Flags::BICUBIC).map_err(corrupt)?;
    let mut rgb = ffmpeg::frame::Video::empty();
    scaler.run(frame, &mut rgb).map_err(corrupt)?;
    let stride = rgb.stride(0);
    let data = rgb.data(0);
    let row = w as usize * 3;
    let mut packed = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        packed.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    RgbImage::from_raw(w, h, packed)
        .map(DynamicImage::ImageRgb8)
        .ok_or_else(|| internal("the AVIF frame has the wrong size".into()))
}

fn corrupt(e: ffmpeg::Error) -> MediaError {
    MediaError::new(
        ErrorCode::CorruptMedia,
        format!("the AVIF file does not decode: {e}"),
    )
}

fn internal(message: String) -> MediaError {
    MediaError::new(ErrorCode::Internal, message)
}

/// [`decode`] as a plain function, for [`super::decode::Request::avif`]: only builds that pass it link FFmpeg.
pub fn decode_checked(
    path: &Path,
    check: &dyn Fn(u32, u32) -> Result<(), MediaError>,
) -> Result<DynamicImage, MediaError> {
    decode(path, check)
}
