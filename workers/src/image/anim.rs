//! Animated WebP renditions of animated GIF, WebP and APNG originals.
//!
//! Frames are decoded one at a time (the image crate composites each onto the full canvas) and resized at
//! once, so memory holds one full-size canvas plus the small output frames, never every full-size frame. The
//! frame and pixel-frame limits were checked from the container before this runs.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::codecs::gif::GifDecoder;
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, DynamicImage, Frames, ImageFormat};
use mediafleet_proto::ErrorCode;

use super::decode::map_error;
use super::resize::{Scaler, Target};
use crate::MediaError;

/// Encodes every frame of the animation at `path`, resized to `target`, as a lossy animated WebP.
pub fn webp(
    path: &Path,
    format: ImageFormat,
    target: &Target,
    quality: u8,
    scaler: &mut Scaler,
) -> Result<Vec<u8>, MediaError> {
    let file = || -> Result<BufReader<File>, MediaError> {
        File::open(path).map(BufReader::new).map_err(|e| {
            MediaError::new(
                ErrorCode::Internal,
                format!("could not read the original: {e}"),
            )
        })
    };
    let err = |e| map_error(e, format);
    let frames: Frames<'_> = match format {
        ImageFormat::Gif => GifDecoder::new(file()?).map_err(err)?.into_frames(),
        ImageFormat::WebP => WebPDecoder::new(file()?).map_err(err)?.into_frames(),
        ImageFormat::Png => PngDecoder::new(file()?)
            .map_err(err)?
            .apng()
            .map_err(err)?
            .into_frames(),
        _ => {
            return Err(MediaError::new(
                ErrorCode::Internal,
                "only GIF, WebP and PNG originals can be animated",
            ))
        }
    };
    let mut small = Vec::new();
    let mut at_ms = 0i32;
    for frame in frames {
        let frame = frame.map_err(err)?;
        let (num, den) = frame.delay().numer_denom_ms();
        let delay = num.checked_div(den).map_or(100, |d| d.max(20));
        let img = scaler.resize(&DynamicImage::ImageRgba8(frame.into_buffer()), target)?;
        small.push((img.into_rgba8(), at_ms));
        at_ms = at_ms.saturating_add(i32::try_from(delay).unwrap_or(i32::MAX));
    }
    let mut config = webp::WebPConfig::new()
        .map_err(|_| MediaError::new(ErrorCode::Internal, "libwebp config failed"))?;
    config.quality = f32::from(quality.clamp(1, 100));
    config.lossless = 0;
    let mut encoder = webp::AnimEncoder::new(target.width, target.height, &config);
    encoder.set_loop_count(0);
    for (img, ts) in &small {
        encoder.add_frame(webp::AnimFrame::from_rgba(
            img.as_raw(),
            img.width(),
            img.height(),
            *ts,
        ));
    }
    let out = encoder.try_encode().map_err(|e| {
        MediaError::new(
            ErrorCode::Internal,
            format!("animated WebP encoding failed: {e:?}"),
        )
    })?;
    Ok(out.to_vec())
}
