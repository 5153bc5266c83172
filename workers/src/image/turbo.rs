//! JPEG through libjpeg-turbo 3 (the `turbojpeg` crate, bundled build): shrink-on-load decode and fast encode.
//!
//! libjpeg-turbo can run its inverse DCT at 1/2, 1/4 or 1/8 scale, which skips most of the IDCT, colour
//! conversion and upsampling work and shrinks the decoded buffer 4×, 16× or 64×. [`shrink_for`] picks the
//! largest reduction that still leaves every rendition at least 2× headroom for the real (Lanczos) resize.
//! Progressive files still keep libjpeg's whole coefficient buffer, whatever the scale (see REFERENCE.md).

use image::{DynamicImage, RgbImage};
use mediafleet_proto::ErrorCode;
use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp};

use crate::MediaError;

/// Progressive scans allowed before the file counts as hostile (libjpeg-turbo's own advice against scan-count
/// denial of service; real encoders write about 10).
const SCAN_LIMIT: u32 = 500;

/// What the JPEG header says.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// Stored width.
    pub width: u32,
    /// Stored height.
    pub height: u32,
    /// CMYK or YCCK (4 channels).
    pub cmyk: bool,
    /// Progressive entropy coding.
    pub progressive: bool,
}

/// Reads the frame header without decoding.
pub fn header(data: &[u8]) -> Result<Header, MediaError> {
    let h = turbojpeg::read_header(data).map_err(corrupt)?;
    Ok(Header {
        width: u32::try_from(h.width).unwrap_or(u32::MAX),
        height: u32::try_from(h.height).unwrap_or(u32::MAX),
        cmyk: matches!(h.colorspace, Colorspace::CMYK | Colorspace::YCCK),
        progressive: h.is_progressive,
    })
}

/// The DCT shrink (1, 2, 4 or 8) for a `w`×`h` frame when the smallest decoded size that still works is
/// `need_w`×`need_h`: the largest shrink whose output is at least that big on both sides.
pub fn shrink_for(w: u32, h: u32, need_w: f64, need_h: f64) -> u32 {
    [8u32, 4, 2]
        .into_iter()
        .find(|&s| {
            f64::from(w.div_ceil(s)) >= need_w.max(1.0)
                && f64::from(h.div_ceil(s)) >= need_h.max(1.0)
        })
        .unwrap_or(1)
}

/// Decodes at 1/`shrink` scale to 8-bit RGB. CMYK/YCCK files go through `icc` when it is a CMYK profile, or
/// the naive inverted-CMYK formula otherwise.
pub fn decode(
    data: &[u8],
    header: &Header,
    shrink: u32,
    icc: Option<&[u8]>,
) -> Result<DynamicImage, MediaError> {
    let mut d = Decompressor::new().map_err(internal)?;
    d.set_scan_limit(SCAN_LIMIT).map_err(internal)?;
    d.set_scaling_factor(ScalingFactor::new(1, shrink as usize))
        .map_err(internal)?;
    let scaled = turbojpeg::read_header(data)
        .map_err(corrupt)?
        .scaled(ScalingFactor::new(1, shrink as usize));
    let (w, h) = (scaled.width, scaled.height);
    let format = if header.cmyk {
        PixelFormat::CMYK
    } else {
        PixelFormat::RGB
    };
    let mut pixels = vec![0u8; w * h * format.size()];
    d.decompress(
        data,
        Image {
            pixels: pixels.as_mut_slice(),
            width: w,
            pitch: w * format.size(),
            height: h,
            format,
        },
    )
    .map_err(corrupt)?;
    if header.cmyk {
        pixels = icc
            .and_then(|p| super::icc::cmyk_to_srgb(&pixels, p))
            .unwrap_or_else(|| naive_cmyk(&pixels, has_adobe_marker(data)));
    }
    let img = RgbImage::from_raw(w as u32, h as u32, pixels)
        .ok_or_else(|| internal("decoded buffer has the wrong size"))?;
    Ok(DynamicImage::ImageRgb8(img))
}

/// Encodes 8-bit RGB as a baseline JPEG (4:2:0 below quality 90, 4:4:4 from 90 up, as libvips does).
pub fn encode(rgb: &RgbImage, quality: u8) -> Result<Vec<u8>, MediaError> {
    let (w, h) = rgb.dimensions();
    let subsamp = if quality >= 90 {
        Subsamp::None
    } else {
        Subsamp::Sub2x2
    };
    let img = Image {
        pixels: rgb.as_raw().as_slice(),
        width: w as usize,
        pitch: w as usize * 3,
        height: h as usize,
        format: PixelFormat::RGB,
    };
    let out = turbojpeg::compress(img, i32::from(quality.clamp(1, 100)), subsamp)
        .map_err(|e| internal(format!("JPEG encoding failed: {e}")))?;
    Ok(out.to_vec())
}

/// The ICC profile carried in APP2 `ICC_PROFILE` segments (reassembled in sequence order), if any.
pub fn icc_profile(data: &[u8]) -> Option<Vec<u8>> {
    let mut chunks: Vec<(u8, &[u8])> = Vec::new();
    for (marker, body) in segments(data) {
        if marker == 0xE2 && body.len() > 14 && body.starts_with(b"ICC_PROFILE\0") {
            chunks.push((body[12], &body[14..]));
        }
    }
    if chunks.is_empty() {
        return None;
    }
    chunks.sort_by_key(|c| c.0);
    Some(
        chunks
            .into_iter()
            .flat_map(|c| c.1.iter().copied())
            .collect(),
    )
}

/// Whether an APP14 `Adobe` segment is present (its CMYK is stored inverted).
fn has_adobe_marker(data: &[u8]) -> bool {
    segments(data).any(|(m, body)| m == 0xEE && body.starts_with(b"Adobe"))
}

/// Marker segments before the first scan: `(marker, body)`.
fn segments(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut i = 2;
    std::iter::from_fn(move || {
        while data.get(i) == Some(&0xFF) && data.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if data.get(i) != Some(&0xFF) {
            return None;
        }
        let marker = *data.get(i + 1)?;
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([*data.get(i + 2)?, *data.get(i + 3)?]));
        let body = data.get(i + 4..i + 2 + len.max(2))?;
        i += 2 + len.max(2);
        Some((marker, body))
    })
}

/// CMYK → RGB without a profile: `R = C·K / 255` on inverted (Adobe) values.
fn naive_cmyk(cmyk: &[u8], inverted: bool) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for p in cmyk.chunks_exact(4) {
        let [c, m, y, k] = if inverted {
            [p[0], p[1], p[2], p[3]]
        } else {
            [255 - p[0], 255 - p[1], 255 - p[2], 255 - p[3]]
        };
        let k = u32::from(k);
        for v in [c, m, y] {
            rgb.push(((u32::from(v) * k + 127) / 255) as u8);
        }
    }
    rgb
}

fn corrupt(e: turbojpeg::Error) -> MediaError {
    MediaError::new(
        ErrorCode::CorruptMedia,
        format!("the JPEG file does not decode: {e}"),
    )
}

fn internal(e: impl std::fmt::Display) -> MediaError {
    MediaError::new(ErrorCode::Internal, format!("libjpeg-turbo: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_keeps_headroom() {
        // 6000×4000 → a 1280×853 preview needs ≥ 2560×1707: 1/2 gives 3000×2000.
        assert_eq!(shrink_for(6000, 4000, 2560.0, 1706.0), 2);
        // Only a 256 px thumb: 1/8 gives 750×500 ≥ 512×341.
        assert_eq!(shrink_for(6000, 4000, 512.0, 341.0), 8);
        // A preview larger than half the source: no shrink.
        assert_eq!(shrink_for(2000, 1500, 2560.0, 1920.0), 1);
    }

    #[test]
    fn naive_cmyk_inverted_red() {
        assert_eq!(naive_cmyk(&[255, 0, 0, 255], true), vec![255, 0, 0]);
        assert_eq!(naive_cmyk(&[0, 255, 255, 0], false), vec![255, 0, 0]);
    }
}
