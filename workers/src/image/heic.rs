//! HEIC/HEIF input through libheif 1.23, built from libheif-sys's bundled source (`embedded-libheif`) and
//! linked statically; HEVC is decoded by Debian's libde265 (`libde265-dev`, linked dynamically).
//!
//! Debian 12 ships libheif 1.15, and libheif-rs needs ≥ 1.17 (libheif-sys 5 finds it with `system-deps`), so the
//! system library cannot be used; the last libheif-rs releases that accepted 1.14–1.16 are two years old and
//! unmaintained. FFmpeg 5.1 cannot read HEIF image items at all.
//!
//! What this module guarantees, like the other decoders:
//! - limits first: the primary item's size (its `ispe` property, and the size after `irot`/`imir`) is checked
//!   against `limits.image_pixels` before any HEVC data is decoded, and libheif's own security limit is set to
//!   the same pixel count, so grid tiles cannot add up to more;
//! - orientation: libheif applies the HEIF transforms (`clap`, `irot`, `imir`) while decoding. The EXIF
//!   orientation tag of a HEIF is **not** applied: the HEIF spec says the transform properties govern, and
//!   iPhones write both (applying EXIF as well would turn their photos twice);
//! - colour: an embedded ICC profile (`colr` `prof`/`rICC`) goes through [`super::icc::to_srgb`]; an `nclx`
//!   profile's matrix is applied by libheif when it converts YCbCr to RGB, and wide primaries (Display P3,
//!   BT.2020) are converted to sRGB with lcms2. HDR transfer functions (PQ, HLG) are only scaled to 8 bits, not
//!   tone mapped;
//! - alpha: an alpha auxiliary image comes out as RGBA;
//! - damage: a truncated or malformed file is `corrupt_media`; a coding libheif has no decoder for in this build
//!   (e.g. VVC, JPEG 2000) is `unsupported_format`.

use image::{DynamicImage, RgbImage, RgbaImage};
use lcms2::{CIExyY, CIExyYTRIPLE, Profile, ToneCurve};
use libheif_rs::{
    ColorPrimaries, ColorProfileNCLX, ColorSpace, DecodingOptions, HeifContext, HeifError,
    HeifErrorCode, ImageHandle, LibHeif, RgbChroma, TransferCharacteristics,
};
use mediafleet_proto::ErrorCode;

use crate::{Limits, MediaError};

/// A decoded HEIF primary image, upright, 8-bit, before colour management.
pub struct Heif {
    /// Upright pixels (libheif applied `irot`/`imir`/`clap`).
    pub image: DynamicImage,
    /// The embedded ICC profile, or one built from wide `nclx` primaries.
    pub icc: Option<Vec<u8>>,
    /// Whether the primary image has an alpha plane.
    pub has_alpha: bool,
    /// The TIFF payload of the `Exif` item (camera facts; its orientation tag is ignored).
    pub exif: Option<Vec<u8>>,
}

/// Decodes the primary image of the HEIF in `data`. `check` sees the stored (`ispe`) and the upright size before
/// any pixel is decoded.
pub fn decode(
    data: &[u8],
    limits: &Limits,
    check: impl Fn(u32, u32) -> Result<u64, MediaError>,
) -> Result<Heif, MediaError> {
    let lib = LibHeif::new();
    let mut ctx = HeifContext::read_from_bytes(data).map_err(|e| map_error(&e))?;
    let mut security = ctx.security_limits();
    security.set_max_image_size_pixels(limits.image_pixels);
    ctx.set_security_limits(&security)
        .map_err(|e| internal(&e))?;
    let handle = ctx.primary_image_handle().map_err(|e| map_error(&e))?;

    let (sw, sh) = (handle.ispe_width(), handle.ispe_height());
    if sw > 0 && sh > 0 {
        check(sw.unsigned_abs(), sh.unsigned_abs())?;
    }
    let (width, height) = (handle.width(), handle.height());
    if width == 0 || height == 0 {
        return Err(MediaError::new(
            ErrorCode::CorruptMedia,
            "the HEIF primary image has no size (ispe property missing)",
        ));
    }
    check(width, height)?;

    let has_alpha = handle.has_alpha_channel();
    let icc = handle
        .color_profile_raw()
        .map(|p| p.data)
        .filter(|d| !d.is_empty())
        .or_else(|| handle.color_profile_nclx().and_then(|n| nclx_icc(&n)));
    let exif = exif_tiff(&handle);

    let mut options = DecodingOptions::new()
        .ok_or_else(|| MediaError::new(ErrorCode::Internal, "libheif decoding options"))?;
    options.set_convert_hdr_to_8bit(true);
    let chroma = if has_alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    };
    let decoded = lib
        .decode(&handle, ColorSpace::Rgb(chroma), Some(options))
        .map_err(|e| map_error(&e))?;
    let planes = decoded.planes();
    let plane = planes.interleaved.ok_or_else(|| {
        MediaError::new(
            ErrorCode::CorruptMedia,
            "libheif returned no interleaved RGB plane",
        )
    })?;
    let channels = if has_alpha { 4 } else { 3 };
    let (w, h) = (plane.width, plane.height);
    let row = w as usize * channels;
    if plane.storage_bits_per_pixel as usize != 8 * channels || plane.stride < row {
        return Err(MediaError::new(
            ErrorCode::CorruptMedia,
            format!(
                "libheif returned an unexpected pixel layout ({} bits per pixel)",
                plane.storage_bits_per_pixel
            ),
        ));
    }
    let mut pixels = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        let start = y * plane.stride;
        let line = plane.data.get(start..start + row).ok_or_else(|| {
            MediaError::new(ErrorCode::CorruptMedia, "libheif returned a short plane")
        })?;
        pixels.extend_from_slice(line);
    }
    let short = || MediaError::new(ErrorCode::CorruptMedia, "libheif returned a short plane");
    let image = if has_alpha {
        DynamicImage::ImageRgba8(RgbaImage::from_raw(w, h, pixels).ok_or_else(short)?)
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, pixels).ok_or_else(short)?)
    };
    Ok(Heif {
        image,
        icc,
        has_alpha,
        exif,
    })
}

/// The TIFF data of the primary image's `Exif` item: libheif returns it behind a 4-byte big-endian offset to
/// the TIFF header (ISO/IEC 23008-12 A.2.1).
fn exif_tiff(handle: &ImageHandle) -> Option<Vec<u8>> {
    let mut ids = [0; 1];
    if handle.metadata_block_ids(&mut ids, b"Exif") == 0 {
        return None;
    }
    let block = handle.metadata(ids[0]).ok()?;
    let offset = u32::from_be_bytes(block.get(..4)?.try_into().ok()?) as usize;
    let tiff = block.get(4usize.checked_add(offset)?..)?;
    (tiff.len() >= 8).then(|| tiff.to_vec())
}

/// An ICC profile for `nclx` primaries that are not sRGB's (Display P3, BT.2020, …), with the sRGB tone curve;
/// `None` for BT.709/unspecified primaries and for PQ/HLG (HDR) transfer, which are taken as they are.
fn nclx_icc(nclx: &ColorProfileNCLX) -> Option<Vec<u8>> {
    if matches!(
        nclx.color_primaries(),
        ColorPrimaries::ITU_R_BT_709_5 | ColorPrimaries::Unspecified | ColorPrimaries::Unknown
    ) || matches!(
        nclx.transfer_characteristics(),
        TransferCharacteristics::ITU_R_BT_2100_0_PQ | TransferCharacteristics::ITU_R_BT_2100_0_HLG
    ) {
        return None;
    }
    let xy = |x: f32, y: f32| CIExyY {
        x: f64::from(x),
        y: f64::from(y),
        Y: 1.0,
    };
    let white = xy(nclx.color_primary_white_x(), nclx.color_primary_white_y());
    let primaries = CIExyYTRIPLE {
        Red: xy(nclx.color_primary_red_x(), nclx.color_primary_red_y()),
        Green: xy(nclx.color_primary_green_x(), nclx.color_primary_green_y()),
        Blue: xy(nclx.color_primary_blue_x(), nclx.color_primary_blue_y()),
    };
    // IEC 61966-2-1 (sRGB) curve: Display P3 uses it; BT.709/BT.2020 camera curves display about the same.
    let curve =
        ToneCurve::new_parametric(4, &[2.4, 1.0 / 1.055, 0.055 / 1.055, 1.0 / 12.92, 0.04045])
            .ok()?;
    let profile = Profile::new_rgb(&white, &primaries, &[&curve, &curve, &curve]).ok()?;
    profile.icc().ok()
}

/// Maps libheif errors onto the stable codes: a coding without a decoder in this build is
/// `unsupported_format`; memory and security limits are `too_many_pixels`; everything else is damage.
fn map_error(e: &HeifError) -> MediaError {
    let (code, what) = match e.code {
        HeifErrorCode::UnsupportedFeature | HeifErrorCode::UnsupportedFileType => (
            ErrorCode::UnsupportedFormat,
            "this HEIF file uses a feature or coding this build does not decode",
        ),
        HeifErrorCode::MemoryAllocationError => (
            ErrorCode::TooManyPixels,
            "this HEIF file is over the image limits",
        ),
        _ => (
            ErrorCode::CorruptMedia,
            "the HEIF file is damaged and does not decode",
        ),
    };
    MediaError::new(code, format!("{what}: {}", describe(e)))
}

fn describe(e: &HeifError) -> String {
    let message = e.message.trim();
    if message.is_empty() {
        format!("{:?}/{:?}", e.code, e.sub_code)
    } else {
        message.to_owned()
    }
}

fn internal(e: &HeifError) -> MediaError {
    MediaError::new(
        ErrorCode::Internal,
        format!("libheif refused its settings: {}", describe(e)),
    )
}
