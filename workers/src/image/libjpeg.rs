//! JPEG through libjpeg's scanline API (the `mozjpeg` crate: a libjpeg-turbo fork, built from source with its
//! SIMD code): streaming shrink-on-load decode, and fast baseline encode.
//!
//! The file is read through an 8 KiB buffer and decoded row by row at the DCT scale, each row converted to sRGB
//! (ICC profile or CMYK formula) and pushed straight into a [`Shrinker`], so neither the compressed file nor the
//! decoded frame is ever held whole: only the output and a window of resampled rows. libjpeg can run its inverse
//! DCT at 1/2, 1/4 or 1/8 scale, which skips most of the IDCT, colour conversion and upsampling work;
//! [`shrink_for`] picks the largest reduction that still leaves every rendition at least 2× headroom for the real
//! (Lanczos) resize. Progressive files still make libjpeg keep the whole coefficient buffer, whatever the scale
//! (see REFERENCE.md).
//!
//! libjpeg reports fatal errors by unwinding (the crate's error manager); every call here is wrapped so that
//! becomes `corrupt_media`.

use std::fs::File;
use std::io::BufReader;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use image::RgbImage;
use mediafleet_proto::ErrorCode;
use mozjpeg::{ColorSpace, Compress, Decompress, Marker};

use super::stream::Shrinker;
use crate::MediaError;

/// An opened JPEG: header and metadata segments read, no pixels yet.
pub struct Jpeg {
    dec: Decompress<BufReader<File>>,
    /// Stored width.
    pub width: u32,
    /// Stored height.
    pub height: u32,
    /// CMYK or YCCK (4 channels).
    pub cmyk: bool,
    /// The ICC profile from the APP2 `ICC_PROFILE` segments (reassembled in sequence order), if any.
    pub icc: Option<Vec<u8>>,
    /// The TIFF body of the APP1 `Exif` segment, if any.
    pub exif: Option<Vec<u8>>,
    /// An APP14 `Adobe` segment is present (its CMYK is stored inverted).
    pub adobe: bool,
}

/// Segments kept while reading the header: EXIF (APP1), ICC (APP2), Adobe (APP14).
const MARKERS: &[Marker] = &[Marker::APP(1), Marker::APP(2), Marker::APP(14)];

impl Jpeg {
    /// Reads the header and the metadata segments of `path`.
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        let dec =
            guarded(|| Decompress::with_markers(MARKERS).from_path(path))?.map_err(corrupt)?;
        let mut icc: Vec<(u8, &[u8])> = Vec::new();
        let (mut exif, mut adobe) = (None, false);
        for m in dec.markers() {
            match m.marker {
                Marker::APP(1) if exif.is_none() && m.data.starts_with(b"Exif\0\0") => {
                    exif = Some(m.data[6..].to_vec());
                }
                Marker::APP(2) if m.data.len() > 14 && m.data.starts_with(b"ICC_PROFILE\0") => {
                    icc.push((m.data[12], &m.data[14..]));
                }
                Marker::APP(14) if m.data.starts_with(b"Adobe") => adobe = true,
                _ => {}
            }
        }
        icc.sort_by_key(|c| c.0);
        let icc = (!icc.is_empty()).then(|| icc.iter().flat_map(|c| c.1.iter().copied()).collect());
        let cmyk = matches!(
            dec.color_space(),
            ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
        );
        Ok(Jpeg {
            width: u32::try_from(dec.width()).unwrap_or(u32::MAX),
            height: u32::try_from(dec.height()).unwrap_or(u32::MAX),
            cmyk,
            icc,
            exif,
            adobe,
            dec,
        })
    }

    /// Decodes at 1/`shrink` scale to 8-bit RGB in sRGB, resampled on the fly to `size` (stored orientation),
    /// in linear light when `linear(ratio)` says so for the shrink ratio; `None`, or a size not smaller than the scaled frame, keeps the scaled frame.
    /// CMYK/YCCK goes through the ICC profile when it is a CMYK one, the naive inverted-CMYK formula otherwise;
    /// an RGB profile that is not sRGB is converted. Returns the pixels and whether a profile was applied.
    pub fn decode(
        self,
        shrink: u32,
        size: Option<(u32, u32)>,
        linear: impl FnOnce(f64) -> bool,
    ) -> Result<(RgbImage, bool), MediaError> {
        let Jpeg {
            mut dec,
            cmyk,
            icc,
            adobe,
            ..
        } = self;
        guarded(move || -> Result<(RgbImage, bool), MediaError> {
            dec.scale(match shrink {
                8 => 1,
                4 => 2,
                2 => 4,
                _ => 8,
            });
            let mut started = if cmyk {
                dec.to_colorspace(ColorSpace::JCS_CMYK)
            } else {
                dec.rgb()
            }
            .map_err(corrupt)?;
            let (w, h) = (started.width(), started.height());
            let (sw, sh) = (
                u32::try_from(w).unwrap_or(u32::MAX),
                u32::try_from(h).unwrap_or(u32::MAX),
            );
            let rgb_profile = icc
                .as_deref()
                .filter(|_| !cmyk)
                .and_then(super::icc::rgb_transform);
            let cmyk_profile = icc
                .as_deref()
                .filter(|_| cmyk)
                .and_then(super::icc::cmyk_transform);
            let converted = rgb_profile.is_some();
            let mut sink = match size {
                Some((tw, th)) if tw < sw && th < sh => {
                    let ratio = (f64::from(sw) / f64::from(tw)).max(f64::from(sh) / f64::from(th));
                    Sink::Shrink(Box::new(Shrinker::new(sw, sh, tw, th, linear(ratio))))
                }
                _ => Sink::Keep(RgbImage::new(sw, sh)),
            };
            let mut line = vec![0u8; w * if cmyk { 4 } else { 3 }];
            let mut rgb = vec![0u8; if cmyk { w * 3 } else { 0 }];
            for y in 0..h {
                started.read_scanlines_into(&mut line).map_err(corrupt)?;
                let row: &mut [u8] = if cmyk {
                    match &cmyk_profile {
                        Some(t) => t.transform_pixels(&line, &mut rgb),
                        None => naive_cmyk(&line, adobe, &mut rgb),
                    }
                    &mut rgb
                } else {
                    if let Some(t) = &rgb_profile {
                        t.transform_in_place(&mut line);
                    }
                    &mut line
                };
                match &mut sink {
                    Sink::Shrink(s) => s.push(row),
                    Sink::Keep(img) => {
                        let raw: &mut [u8] = img;
                        raw[y * w * 3..(y + 1) * w * 3].copy_from_slice(row);
                    }
                }
            }
            // Every row is out; what follows the last scan is not read (dropping ends the decompression).
            drop(started);
            let img = match sink {
                Sink::Shrink(s) => s.finish(),
                Sink::Keep(img) => img,
            };
            Ok((img, converted))
        })?
    }
}

enum Sink {
    Shrink(Box<Shrinker>),
    Keep(RgbImage),
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

/// Encodes 8-bit RGB as a baseline JPEG with libjpeg-turbo's settings (standard tables, no trellis or scan
/// optimisation): 4:2:0 below quality 90, 4:4:4 from 90 up, as libvips does.
pub fn encode(rgb: &RgbImage, quality: u8) -> Result<Vec<u8>, MediaError> {
    let (w, h) = rgb.dimensions();
    guarded(|| -> std::io::Result<Vec<u8>> {
        let mut c = Compress::new(ColorSpace::JCS_RGB);
        c.set_fastest_defaults();
        c.set_size(w as usize, h as usize);
        c.set_quality(f32::from(quality.clamp(1, 100)));
        let sub = if quality >= 90 { (1, 1) } else { (2, 2) };
        c.set_chroma_sampling_pixel_sizes(sub, sub);
        let mut started = c.start_compress(Vec::new())?;
        started.write_scanlines(rgb.as_raw())?;
        started.finish()
    })
    .and_then(|r| r.map_err(|e| internal(format!("JPEG encoding failed: {e}"))))
}

/// CMYK → RGB without a profile: `R = C·K / 255` on inverted (Adobe) values.
fn naive_cmyk(cmyk: &[u8], inverted: bool, rgb: &mut [u8]) {
    for (p, out) in cmyk.chunks_exact(4).zip(rgb.chunks_exact_mut(3)) {
        let [c, m, y, k] = if inverted {
            [p[0], p[1], p[2], p[3]]
        } else {
            [255 - p[0], 255 - p[1], 255 - p[2], 255 - p[3]]
        };
        let k = u32::from(k);
        for (o, v) in out.iter_mut().zip([c, m, y]) {
            *o = ((u32::from(v) * k + 127) / 255) as u8;
        }
    }
}

/// Runs libjpeg work, turning its unwinding fatal errors into `corrupt_media`.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, MediaError> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        MediaError::new(
            ErrorCode::CorruptMedia,
            format!(
                "the JPEG file does not decode: {}",
                super::decode::panic_message(&*payload)
            ),
        )
    })
}

fn corrupt(e: std::io::Error) -> MediaError {
    MediaError::new(
        ErrorCode::CorruptMedia,
        format!("the JPEG file does not decode: {e}"),
    )
}

fn internal(e: impl std::fmt::Display) -> MediaError {
    MediaError::new(ErrorCode::Internal, format!("libjpeg: {e}"))
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
        let mut rgb = [0u8; 3];
        naive_cmyk(&[255, 0, 0, 255], true, &mut rgb);
        assert_eq!(rgb, [255, 0, 0]);
        naive_cmyk(&[0, 255, 255, 0], false, &mut rgb);
        assert_eq!(rgb, [255, 0, 0]);
    }

    #[test]
    fn encode_round_trips() {
        let img = RgbImage::from_pixel(33, 17, image::Rgb([200, 40, 40]));
        let jpg = encode(&img, 82).unwrap();
        assert!(jpg.starts_with(&[0xFF, 0xD8]));
        let back = image::load_from_memory(&jpg).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (33, 17));
        assert!(back.get_pixel(16, 8).0[0].abs_diff(200) < 8);
    }
}
