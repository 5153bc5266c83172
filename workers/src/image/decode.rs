//! Decoding: limits from the header first, then pixels, then EXIF orientation.
//!
//! Order matters for hostile input: the file size, the header's dimensions and the animation's frame count are
//! all checked before a single pixel buffer is allocated, so a 69-byte PNG that claims 100000×100000 fails with
//! `too_many_pixels` in microseconds. `image::Limits` backs that up inside the decoders (side length and
//! allocation caps), and `catch_unwind` is the last line of defence; the sandboxed child is the real boundary.

use std::fs::File;
use std::io::{self, BufReader};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use image::error::LimitErrorKind;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};
use mediafleet_proto::ErrorCode;

use super::{frames, jpeg};
use crate::{Limits, MediaError};

/// A decoded still: the first frame of an animation, with EXIF orientation already applied.
#[derive(Debug)]
pub struct Decoded {
    /// Pixels, upright.
    pub image: DynamicImage,
    /// Container format, from the content.
    pub format: ImageFormat,
    /// EXIF orientation of the original, 1–8 (1 when absent).
    pub orientation: u8,
    /// Whether the pixel format has an alpha channel.
    pub has_alpha: bool,
    /// Frames in the file (1 for stills).
    pub frames: u64,
}

/// Decodes `path` under `limits`. Every failure is a [`MediaError`] with a stable code; a decoder panic becomes
/// `corrupt_media`.
pub fn decode(path: &Path, limits: &Limits) -> Result<Decoded, MediaError> {
    let bytes = std::fs::metadata(path).map_err(internal_io)?.len();
    if bytes > limits.image_bytes {
        return Err(MediaError::new(
            ErrorCode::TooLargeBytes,
            format!(
                "the image is {bytes} bytes; the limit is {}",
                limits.image_bytes
            ),
        ));
    }
    match panic::catch_unwind(AssertUnwindSafe(|| decode_checked(path, limits))) {
        Ok(result) => result,
        Err(payload) => Err(MediaError::new(
            ErrorCode::CorruptMedia,
            format!(
                "the image decoder crashed on this file ({})",
                panic_message(&*payload)
            ),
        )),
    }
}

fn decode_checked(path: &Path, limits: &Limits) -> Result<Decoded, MediaError> {
    let file = File::open(path).map_err(internal_io)?;
    let mut reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(internal_io)?;
    let format = reader.format().ok_or_else(|| {
        MediaError::new(
            ErrorCode::UnsupportedFormat,
            "the content is not an image format we decode",
        )
    })?;
    reader.limits(image_limits(limits));
    let mut decoder = reader.into_decoder().map_err(|e| map_error(e, format))?;

    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.image_pixels {
        return Err(MediaError::new(
            ErrorCode::TooManyPixels,
            format!(
                "the image is {width}×{height} ({pixels} pixels); the limit is {}",
                limits.image_pixels
            ),
        ));
    }
    let frames = frames::count(path, format).map_err(internal_io)?;
    check_frames(frames, pixels, limits)?;
    if format == ImageFormat::Jpeg && !jpeg::is_complete(&std::fs::read(path).map_err(internal_io)?)
    {
        return Err(MediaError::new(
            ErrorCode::CorruptMedia,
            "the JPEG file is truncated: its data ends before the end-of-image marker",
        ));
    }

    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let has_alpha = decoder.color_type().has_alpha();
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| map_error(e, format))?;
    image.apply_orientation(orientation);
    Ok(Decoded {
        image,
        format,
        orientation: orientation.to_exif(),
        has_alpha,
        frames,
    })
}

/// The decoder-side limits. A side longer than the pixel limit already breaks it (the other side is at least
/// 1), so that is the side cap; allocation is capped separately because 16-bit and float images cost more per
/// pixel.
fn image_limits(limits: &Limits) -> image::Limits {
    let side = u32::try_from(limits.image_pixels).unwrap_or(u32::MAX);
    let mut l = image::Limits::default();
    l.max_image_width = Some(side);
    l.max_image_height = Some(side);
    l.max_alloc = Some(limits.max_alloc_bytes);
    l
}

fn check_frames(frames: u64, pixels: u64, limits: &Limits) -> Result<(), MediaError> {
    if frames > limits.frames {
        return Err(MediaError::new(
            ErrorCode::TooManyFrames,
            format!(
                "the animation has {frames} frames; the limit is {}",
                limits.frames
            ),
        ));
    }
    let total = frames.saturating_mul(pixels);
    if frames > 1 && total > limits.pixel_frames {
        return Err(MediaError::new(
            ErrorCode::TooManyPixelFrames,
            format!(
                "the animation has {total} pixels over all frames; the limit is {}",
                limits.pixel_frames
            ),
        ));
    }
    Ok(())
}

/// Maps an `image` error onto the stable codes.
fn map_error(e: ImageError, format: ImageFormat) -> MediaError {
    let name = format_name(format).to_uppercase();
    match e {
        ImageError::Unsupported(u) => MediaError::new(
            ErrorCode::UnsupportedFormat,
            format!("this {name} file uses a feature we do not decode: {u}"),
        ),
        ImageError::Limits(l) => match l.kind() {
            LimitErrorKind::InsufficientMemory => MediaError::new(
                ErrorCode::TooManyPixels,
                format!("decoding this {name} file needs more memory than the limit allows"),
            ),
            _ => MediaError::new(
                ErrorCode::TooManyPixels,
                format!("this {name} file is over the image limits: {l}"),
            ),
        },
        ImageError::IoError(io) if !is_truncation(&io) => internal_io(io),
        other => MediaError::new(
            ErrorCode::CorruptMedia,
            format!("the {name} file is damaged and does not decode: {other}"),
        ),
    }
}

fn is_truncation(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
    )
}

fn internal_io(e: io::Error) -> MediaError {
    MediaError::new(
        ErrorCode::Internal,
        format!("could not read the original: {e}"),
    )
}

/// The short lowercase name of a format, as used in metadata (`jpeg`, `png`, `webp`, …).
pub fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::Gif => "gif",
        ImageFormat::WebP => "webp",
        ImageFormat::Tiff => "tiff",
        ImageFormat::Bmp => "bmp",
        ImageFormat::Avif => "avif",
        other => other.extensions_str().first().copied().unwrap_or("image"),
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}
