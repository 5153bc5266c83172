//! Decoding: limits from the header first, then pixels (shrunk on load when the renditions allow), then ICC →
//! sRGB, then EXIF orientation.
//!
//! Order matters for hostile input: the file size, the header's dimensions and the animation's frame count are
//! all checked before a single pixel buffer is allocated, so a 69-byte PNG that claims 100000×100000 fails with
//! `too_many_pixels` in microseconds. `image::Limits` backs that up inside the decoders (side length and
//! allocation caps), and `catch_unwind` is the last line of defence; the sandboxed child is the real boundary.
//!
//! Four decoders: JPEG goes through libjpeg ([`super::libjpeg`], DCT-scaled and streamed row by row into the
//! resampler, never holding the compressed file or the decoded frame), AVIF through FFmpeg ([`super::avif`]),
//! HEIC/HEIF through libheif ([`super::heic`]), everything else through the image crate.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use image::error::LimitErrorKind;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};
use mediafleet_proto::ErrorCode;
use serde_json::{Map, Value};

use super::resize::{Target, AUTO_LINEAR_RATIO};
use super::{exif, frames, heic, icc, jpeg, libjpeg, png_meta};
use crate::sniff::{sniff, SNIFF_LEN};
use crate::{Limits, MediaError};

/// The container an original was decoded from: one the image crate knows, or HEIF (which it does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// JPEG, PNG, GIF, WebP, TIFF, BMP, AVIF.
    Image(ImageFormat),
    /// HEIF with HEVC (`heic`) or another coding (`heif`), as sniffed.
    Heif(&'static str),
}

impl Source {
    /// The short lowercase name used in metadata (`jpeg`, `png`, `heic`, …).
    pub fn name(self) -> &'static str {
        match self {
            Source::Image(f) => format_name(f),
            Source::Heif(name) => name,
        }
    }
}

/// A decoded still: the first frame of an animation, upright, 8-bit RGB(A), in sRGB.
#[derive(Debug)]
pub struct Decoded {
    /// Pixels, upright; smaller than `full` when the JPEG was shrunk on load (by `shrink`) and resampled to the
    /// request's `master` size as it streamed out of the decoder.
    pub image: DynamicImage,
    /// Upright size of the original.
    pub full: (u32, u32),
    /// The DCT shrink used (1, 2, 4 or 8).
    pub shrink: u32,
    /// Container format, from the content.
    pub format: Source,
    /// EXIF orientation of the original, 1–8 (1 when absent).
    pub orientation: u8,
    /// Whether the pixel format has an alpha channel.
    pub has_alpha: bool,
    /// Frames in the file (1 for stills).
    pub frames: u64,
    /// Whether an embedded ICC profile was converted to sRGB.
    pub icc_converted: bool,
    /// Camera facts from EXIF (and GPS when asked).
    pub exif: Map<String, Value>,
}

/// What the caller wants decoded.
pub struct Request<'a> {
    /// Resource limits.
    pub limits: &'a Limits,
    /// Record GPS from EXIF.
    pub keep_gps: bool,
    /// For an upright `w`×`h` original, the smallest decoded size (w, h) every rendition can still be made
    /// from with headroom; larger originals may be shrunk on load down to it.
    pub need: &'a dyn Fn(u32, u32) -> (f64, f64),
    /// For an upright `w`×`h` original, the full-frame size a JPEG may be resampled to while it streams out of
    /// the decoder (every rendition is then made from that), or `None` to keep the decoded frame.
    pub master: &'a dyn Fn(u32, u32) -> Option<Target>,
    /// The AVIF decoder (FFmpeg), or `None` in a build without FFmpeg (the lean image child), which then
    /// answers `unsupported_format`; the worker never sends AVIF to that child.
    pub avif: Option<AvifDecoder>,
}

/// An AVIF decoder: the file and a pixel-limit check to run on its header before decoding.
pub type AvifDecoder =
    fn(&Path, &dyn Fn(u32, u32) -> Result<(), MediaError>) -> Result<DynamicImage, MediaError>;

/// Progressive scans allowed before a JPEG counts as hostile (libjpeg-turbo's own advice against scan-count
/// denial of service; real encoders write about 10).
const SCAN_LIMIT: u32 = 500;

/// Decodes `path`. Every failure is a [`MediaError`] with a stable code; a decoder panic becomes
/// `corrupt_media`.
pub fn decode(path: &Path, req: &Request<'_>) -> Result<Decoded, MediaError> {
    let bytes = std::fs::metadata(path).map_err(internal_io)?.len();
    if bytes > req.limits.image_bytes {
        return Err(MediaError::new(
            ErrorCode::TooLargeBytes,
            format!(
                "the image is {bytes} bytes; the limit is {}",
                req.limits.image_bytes
            ),
        ));
    }
    match panic::catch_unwind(AssertUnwindSafe(|| decode_checked(path, req))) {
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

fn decode_checked(path: &Path, req: &Request<'_>) -> Result<Decoded, MediaError> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    File::open(path)
        .map_err(internal_io)?
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .map_err(internal_io)?;
    if let Some(s) = sniff(&head).filter(|s| matches!(s.format, "heic" | "heif")) {
        return decode_heif(path, s.format, req);
    }
    let reader = ImageReader::new(BufReader::new(File::open(path).map_err(internal_io)?))
        .with_guessed_format()
        .map_err(internal_io)?;
    match reader.format() {
        Some(ImageFormat::Jpeg) => decode_jpeg(path, req),
        Some(ImageFormat::Avif) => decode_avif(path, req),
        Some(ImageFormat::Png) => {
            // Before the decoder: it inflates `iCCP` whole while reading the header.
            png_meta::check(path, req.limits.metadata_bytes)?;
            decode_generic(path, reader, ImageFormat::Png, req)
        }
        Some(format) => decode_generic(path, reader, format, req),
        None => Err(MediaError::new(
            ErrorCode::UnsupportedFormat,
            "the content is not an image format we decode",
        )),
    }
}

fn decode_jpeg(path: &Path, req: &Request<'_>) -> Result<Decoded, MediaError> {
    let jpeg = libjpeg::Jpeg::open(path)?;
    check_pixels(jpeg.width, jpeg.height, req.limits)?;
    let structure = jpeg::walk(
        BufReader::new(File::open(path).map_err(internal_io)?),
        SCAN_LIMIT,
    )
    .map_err(internal_io)?;
    if structure.scans > SCAN_LIMIT {
        return Err(MediaError::new(
            ErrorCode::CorruptMedia,
            format!("the JPEG file has more than {SCAN_LIMIT} scans; real encoders write about 10"),
        ));
    }
    if !structure.complete {
        return Err(MediaError::new(
            ErrorCode::CorruptMedia,
            "the JPEG file is truncated: its data ends before the end-of-image marker",
        ));
    }
    let exif = exif::read_jpeg(jpeg.exif.clone())?;
    let orientation = exif.as_ref().map_or(1, exif::orientation);
    let full = upright(jpeg.width, jpeg.height, orientation);
    let (nw, nh) = (req.need)(full.0, full.1);
    let (nw, nh) = if orientation >= 5 { (nh, nw) } else { (nw, nh) };
    let shrink = libjpeg::shrink_for(jpeg.width, jpeg.height, nw, nh);
    let master = (req.master)(full.0, full.1);
    let size = master.map(|t| upright(t.width, t.height, orientation));
    let linear = |ratio: f64| {
        master
            .and_then(|t| t.linear)
            .unwrap_or(ratio >= AUTO_LINEAR_RATIO)
    };
    let (image, icc_converted) = jpeg.decode(shrink, size, linear)?;
    let mut image = DynamicImage::ImageRgb8(image);
    image.apply_orientation(orientation_of(orientation));
    Ok(Decoded {
        image,
        full,
        shrink,
        format: Source::Image(ImageFormat::Jpeg),
        orientation,
        has_alpha: false,
        frames: 1,
        icc_converted,
        exif: exif
            .map(|e| exif::facts(&e, req.keep_gps))
            .unwrap_or_default(),
    })
}

fn decode_avif(path: &Path, req: &Request<'_>) -> Result<Decoded, MediaError> {
    let Some(avif) = req.avif else {
        return Err(MediaError::new(
            ErrorCode::UnsupportedFormat,
            "AVIF is decoded with FFmpeg, which this image-only build does not link; run it with `mediafleet process`",
        ));
    };
    let image = avif(path, &|w, h| check_pixels(w, h, req.limits).map(drop))?;
    Ok(Decoded {
        full: (image.width(), image.height()),
        image,
        shrink: 1,
        format: Source::Image(ImageFormat::Avif),
        orientation: 1,
        has_alpha: false,
        frames: 1,
        icc_converted: false,
        exif: Map::new(),
    })
}

/// HEIC/HEIF: libheif applies `irot`/`imir` itself, so the EXIF orientation tag is never applied (and
/// `orientation` is reported as 1); EXIF still gives the camera facts.
fn decode_heif(path: &Path, name: &'static str, req: &Request<'_>) -> Result<Decoded, MediaError> {
    let data = std::fs::read(path).map_err(internal_io)?;
    let heif = heic::decode(&data, req.limits, |w, h| check_pixels(w, h, req.limits))?;
    drop(data);
    let mut image = heif.image;
    let icc_converted = heif.icc.is_some_and(|p| icc::to_srgb(&mut image, &p));
    let exif = heif
        .exif
        .and_then(exif::read_tiff)
        .map(|e| exif::facts(&e, req.keep_gps))
        .unwrap_or_default();
    Ok(Decoded {
        full: (image.width(), image.height()),
        image,
        shrink: 1,
        format: Source::Heif(name),
        orientation: 1,
        has_alpha: heif.has_alpha,
        frames: 1,
        icc_converted,
        exif,
    })
}

fn decode_generic(
    path: &Path,
    mut reader: ImageReader<BufReader<File>>,
    format: ImageFormat,
    req: &Request<'_>,
) -> Result<Decoded, MediaError> {
    reader.limits(image_limits(req.limits));
    let mut decoder = reader.into_decoder().map_err(|e| map_error(e, format))?;
    let (width, height) = decoder.dimensions();
    let pixels = check_pixels(width, height, req.limits)?;
    let frames = frames::count(path, format).map_err(internal_io)?;
    check_frames(frames, pixels, req.limits)?;

    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = decoder.icc_profile().ok().flatten();
    let has_alpha = decoder.color_type().has_alpha();
    let image = DynamicImage::from_decoder(decoder).map_err(|e| map_error(e, format))?;
    // 16-bit, grey and palette sources become 8-bit RGB(A) here, once, before colour management.
    let mut image = if has_alpha {
        DynamicImage::ImageRgba8(image.into_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.into_rgb8())
    };
    let icc_converted = icc.is_some_and(|p| icc::to_srgb(&mut image, &p));
    image.apply_orientation(orientation);
    let exif = match format {
        ImageFormat::Png | ImageFormat::WebP | ImageFormat::Tiff => File::open(path)
            .ok()
            .and_then(|f| exif::read_from(BufReader::new(f)))
            .map(|e| exif::facts(&e, req.keep_gps))
            .unwrap_or_default(),
        _ => Map::new(),
    };
    Ok(Decoded {
        full: (image.width(), image.height()),
        image,
        shrink: 1,
        format: Source::Image(format),
        orientation: orientation.to_exif(),
        has_alpha,
        frames,
        icc_converted,
        exif,
    })
}

/// Upright size of a stored `w`×`h` frame with EXIF orientation `o`.
fn upright(w: u32, h: u32, o: u8) -> (u32, u32) {
    if o >= 5 {
        (h, w)
    } else {
        (w, h)
    }
}

fn orientation_of(o: u8) -> Orientation {
    Orientation::from_exif(o).unwrap_or(Orientation::NoTransforms)
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

/// `too_many_pixels` when `width × height` is over the limit; the pixel count otherwise.
pub fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<u64, MediaError> {
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
    Ok(pixels)
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
pub fn map_error(e: ImageError, format: ImageFormat) -> MediaError {
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
