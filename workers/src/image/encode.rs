//! Encoding renditions: lossy WebP (libwebp), baseline JPEG (libjpeg), PNG and AVIF (ravif/rav1e).
//!
//! Only pixel data is written. No EXIF, XMP, ICC or GPS block reaches an output, because nothing here ever
//! copies one: the encoders are fed raw pixels, never the original's bytes.

use image::codecs::png::PngEncoder;
use image::{DynamicImage, ExtendedColorType, ImageEncoder, RgbImage, RgbaImage};
use mediafleet_proto::{ErrorCode, OutputFormat};
use rgb::FromSlice;

use crate::MediaError;

/// Largest side libwebp can encode.
const WEBP_MAX_SIDE: u32 = 16_383;
/// Largest side a baseline JPEG header can declare.
const JPEG_MAX_SIDE: u32 = 65_535;

/// Encodes an 8-bit RGB or RGBA image. `quality` is 1–100 (ignored for PNG); `speed` (1–10) is the AVIF
/// encoder's. JPEG has no alpha, so transparent pixels are composited onto white.
pub fn encode(
    img: &DynamicImage,
    format: OutputFormat,
    quality: u8,
    speed: u8,
) -> Result<Vec<u8>, MediaError> {
    let (w, h) = (img.width(), img.height());
    let quality = quality.clamp(1, 100);
    match format {
        OutputFormat::Webp => {
            check_side(w, h, WEBP_MAX_SIDE, "WebP")?;
            let rgba;
            let encoder = match img {
                DynamicImage::ImageRgb8(b) => webp::Encoder::from_rgb(b.as_raw(), w, h),
                DynamicImage::ImageRgba8(b) => webp::Encoder::from_rgba(b.as_raw(), w, h),
                other => {
                    rgba = other.to_rgba8();
                    webp::Encoder::from_rgba(rgba.as_raw(), w, h)
                }
            };
            let out = encoder
                .encode_simple(false, f32::from(quality))
                .map_err(|e| internal(format!("WebP encoding failed: {e:?}")))?;
            Ok(out.to_vec())
        }
        OutputFormat::Jpeg => {
            check_side(w, h, JPEG_MAX_SIDE, "JPEG")?;
            match img {
                DynamicImage::ImageRgb8(b) => super::libjpeg::encode(b, quality),
                other => super::libjpeg::encode(&flatten_on_white(other), quality),
            }
        }
        OutputFormat::Avif => {
            let encoder = ravif::Encoder::new()
                .with_quality(f32::from(quality))
                .with_alpha_quality(f32::from(quality))
                .with_speed(speed.clamp(1, 10))
                .with_num_threads(Some(1));
            let encoded = match img {
                DynamicImage::ImageRgb8(b) => encoder.encode_rgb(imgref::Img::new(
                    b.as_raw().as_rgb(),
                    w as usize,
                    h as usize,
                )),
                DynamicImage::ImageRgba8(b) => encoder.encode_rgba(imgref::Img::new(
                    b.as_raw().as_rgba(),
                    w as usize,
                    h as usize,
                )),
                other => {
                    return encode(
                        &DynamicImage::ImageRgba8(other.to_rgba8()),
                        format,
                        quality,
                        speed,
                    )
                }
            };
            encoded
                .map(|e| e.avif_file)
                .map_err(|e| internal(format!("AVIF encoding failed: {e}")))
        }
        OutputFormat::Png => {
            let mut out = Vec::new();
            let (raw, color) = match img {
                DynamicImage::ImageRgb8(b) => (b.as_raw().as_slice(), ExtendedColorType::Rgb8),
                DynamicImage::ImageRgba8(b) => (b.as_raw().as_slice(), ExtendedColorType::Rgba8),
                other => {
                    return encode(
                        &DynamicImage::ImageRgba8(other.to_rgba8()),
                        format,
                        quality,
                        speed,
                    )
                }
            };
            PngEncoder::new(&mut out)
                .write_image(raw, w, h, color)
                .map_err(|e| internal(format!("PNG encoding failed: {e}")))?;
            Ok(out)
        }
    }
}

/// RGB pixels with any alpha composited onto white.
pub fn flatten_on_white(img: &DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(b) => b.clone(),
        DynamicImage::ImageRgba8(b) => flatten(b),
        other if other.color().has_alpha() => flatten(&other.to_rgba8()),
        other => other.to_rgb8(),
    }
}

fn flatten(rgba: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = u32::from(a);
        let over = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([over(r), over(g), over(b)])
    })
}

fn check_side(w: u32, h: u32, max: u32, name: &str) -> Result<(), MediaError> {
    if w > max || h > max {
        return Err(internal(format!(
            "a {w}×{h} rendition is larger than {name} allows ({max} px per side); lower the profile's max size"
        )));
    }
    Ok(())
}

fn internal(message: String) -> MediaError {
    MediaError::new(ErrorCode::Internal, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattening_composites_onto_white() {
        let img = DynamicImage::ImageRgba8(
            RgbaImage::from_raw(2, 1, vec![0, 0, 0, 0, 255, 0, 0, 255]).unwrap(),
        );
        let rgb = flatten_on_white(&img);
        assert_eq!(rgb.as_raw(), &vec![255, 255, 255, 255, 0, 0]);
    }

    #[test]
    fn outputs_have_the_right_magic() {
        let img =
            DynamicImage::ImageRgba8(RgbaImage::from_pixel(8, 8, image::Rgba([10, 20, 30, 128])));
        let enc = |f| encode(&img, f, 80, 8).unwrap();
        assert!(enc(OutputFormat::Webp).starts_with(b"RIFF"));
        assert!(enc(OutputFormat::Jpeg).starts_with(&[0xFF, 0xD8]));
        assert!(enc(OutputFormat::Png).starts_with(b"\x89PNG"));
        assert_eq!(&enc(OutputFormat::Avif)[4..12], b"ftypavif");
    }
}
