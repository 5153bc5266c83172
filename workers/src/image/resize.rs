//! Sizing and resampling: where each rendition comes from and how big it is.
//!
//! [`plan`] turns a rendition spec into an output size and a source crop (as fractions of the frame, so the same
//! crop applies to the original and to any smaller full-frame copy of it). [`Scaler`] does the resampling with
//! fast_image_resize (Lanczos3, alpha premultiplied internally so transparent edges do not bleed dark fringes)
//! and keeps one `Resizer` so its buffers are reused across renditions. Full-frame RGB in linear light goes
//! through [`super::stream::Shrinker`] row by row instead, so no 16-bit linear copy of the source is made.

use fast_image_resize::{
    create_srgb_mapper, FilterType, PixelComponentMapper, ResizeAlg, ResizeOptions, Resizer,
};
use image::{DynamicImage, GenericImageView};
use mediafleet_proto::{ErrorCode, Fit, RenditionSpec};

use crate::MediaError;

/// The output of one rendition: its size and which part of the frame it shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Source region as fractions of the frame: left, top, width, height (`[0, 0, 1, 1]` is the whole frame).
    pub crop: [f64; 4],
    /// Resample in linear light: forced on or off, or (`None`) automatic, see [`AUTO_LINEAR_RATIO`].
    pub linear: Option<bool>,
}

/// Shrink factor from which resampling switches to linear light when the rendition does not say: averaging 3 or
/// more source pixels per output pixel in gamma space visibly darkens fine bright detail (text, foliage, stars).
pub const AUTO_LINEAR_RATIO: f64 = 3.0;

impl Target {
    /// Whether the target shows the whole frame (it can then seed smaller renditions).
    pub fn is_full_frame(&self) -> bool {
        self.crop == FULL
    }

    /// A full-frame target of `width`×`height` (rounded, at least 1), linear light automatic.
    pub fn full_frame(width: f64, height: f64) -> Self {
        Target {
            width: px(width),
            height: px(height),
            crop: FULL,
            linear: None,
        }
    }

    /// The source region in pixels of a `w`×`h` frame, always inside the frame: a crop placed at the far
    /// edge (`start = 1 - cw`) can end one rounding step past it in floating point (`start + cw > 1`), which
    /// the resampler refuses (found by the `still_image` fuzz target).
    pub fn region(&self, w: u32, h: u32) -> (f64, f64, f64, f64) {
        let [l, t, cw, ch] = self.crop;
        let (w, h) = (f64::from(w), f64::from(h));
        let (cw, ch) = ((cw * w).clamp(0.0, w), (ch * h).clamp(0.0, h));
        let (l, t) = ((l * w).clamp(0.0, w - cw), (t * h).clamp(0.0, h - ch));
        (l, t, cw, ch)
    }
}

const FULL: [f64; 4] = [0.0, 0.0, 1.0, 1.0];

/// Output size and crop for `spec` applied to a `w`×`h` upright frame.
///
/// `contain` scales to fit inside the box; `cover` fills the box and crops the centre. Unless `spec.upscale`,
/// nothing is enlarged: a small source keeps its size (`contain`), or the box shrinks to the largest box of the
/// same shape that fits inside the source (`cover`).
pub fn plan(w: u32, h: u32, spec: &RenditionSpec) -> Target {
    let (fw, fh) = (f64::from(w.max(1)), f64::from(h.max(1)));
    let (bw, bh) = (
        f64::from(spec.max_width.max(1)),
        f64::from(spec.max_height.max(1)),
    );
    match spec.fit {
        Fit::Contain => {
            let mut scale = (bw / fw).min(bh / fh);
            if !spec.upscale {
                scale = scale.min(1.0);
            }
            Target {
                width: px(fw * scale),
                height: px(fh * scale),
                crop: FULL,
                linear: spec.linear,
            }
        }
        Fit::Cover => {
            let scale = (bw / fw).max(bh / fh);
            // Without upscaling, shrink the box until the source covers it at scale 1.
            let shrink = if spec.upscale { 1.0 } else { scale.max(1.0) };
            let (ow, oh) = (px(bw / shrink), px(bh / shrink));
            let (cw, ch) = (
                (f64::from(ow) / (fw * scale / shrink)).min(1.0),
                (f64::from(oh) / (fh * scale / shrink)).min(1.0),
            );
            Target {
                width: ow,
                height: oh,
                crop: [(1.0 - cw) / 2.0, (1.0 - ch) / 2.0, cw, ch],
                linear: spec.linear,
            }
        }
    }
}

fn failed(e: impl std::fmt::Display) -> MediaError {
    MediaError::new(ErrorCode::Internal, format!("resize failed: {e}"))
}

fn px(v: f64) -> u32 {
    (v.round() as u32).max(1)
}

/// A reusable resampler: one `Resizer` (its convolution buffers are reused across renditions) and, once
/// needed, the sRGB ↔ linear lookup tables.
pub struct Scaler {
    resizer: Resizer,
    srgb: Option<PixelComponentMapper>,
}

impl Default for Scaler {
    fn default() -> Self {
        Scaler::new()
    }
}

impl Scaler {
    /// A Lanczos3 scaler.
    pub fn new() -> Self {
        Scaler {
            resizer: Resizer::new(),
            srgb: None,
        }
    }

    /// Renders `target` from the full-frame image `src` (8-bit RGB or RGBA). A target that needs no resampling
    /// (same size as its source region) is a plain copy or crop.
    pub fn resize(
        &mut self,
        src: &DynamicImage,
        target: &Target,
    ) -> Result<DynamicImage, MediaError> {
        let (sw, sh) = src.dimensions();
        let (l, t, cw, ch) = target.region(sw, sh);
        if cw.round() as u32 == target.width && ch.round() as u32 == target.height {
            if target.is_full_frame() {
                return Ok(src.clone());
            }
            return Ok(src.crop_imm(
                l.round() as u32,
                t.round() as u32,
                target.width,
                target.height,
            ));
        }
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .crop(l, t, cw, ch);
        let ratio = (cw / f64::from(target.width)).max(ch / f64::from(target.height));
        let mut dst = DynamicImage::new(target.width, target.height, src.color());
        if !target.linear.unwrap_or(ratio >= AUTO_LINEAR_RATIO) {
            self.resizer
                .resize(src, &mut dst, &options)
                .map_err(failed)?;
            return Ok(dst);
        }
        // Full-frame RGB: stream the rows through the linear-light resampler instead of holding a 16-bit linear
        // copy of the whole source (6 bytes a pixel).
        if let (true, DynamicImage::ImageRgb8(rgb)) = (target.is_full_frame(), src) {
            let mut shrinker =
                super::stream::Shrinker::new(sw, sh, target.width, target.height, true);
            for row in rgb.as_raw().chunks_exact(sw as usize * 3) {
                shrinker.push(row);
            }
            return Ok(DynamicImage::ImageRgb8(shrinker.finish()));
        }
        let wide = |w, h| match src.color().has_alpha() {
            true => DynamicImage::new_rgba16(w, h),
            false => DynamicImage::new_rgb16(w, h),
        };
        let srgb = self.srgb.get_or_insert_with(create_srgb_mapper);
        let mut linear_src = wide(sw, sh);
        srgb.forward_map(src, &mut linear_src).map_err(failed)?;
        let mut linear_dst = wide(target.width, target.height);
        self.resizer
            .resize(&linear_src, &mut linear_dst, &options)
            .map_err(failed)?;
        srgb.backward_map(&linear_dst, &mut dst).map_err(failed)?;
        Ok(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediafleet_proto::OutputFormat;

    fn spec(w: u32, h: u32, fit: Fit, upscale: bool) -> RenditionSpec {
        RenditionSpec {
            fit,
            upscale,
            ..RenditionSpec::new("t", w, h, OutputFormat::Webp)
        }
    }

    #[test]
    fn contain_fits_and_never_upscales() {
        let t = plan(4000, 3000, &spec(256, 256, Fit::Contain, false));
        assert_eq!((t.width, t.height), (256, 192));
        let t = plan(100, 50, &spec(256, 256, Fit::Contain, false));
        assert_eq!((t.width, t.height, t.crop), (100, 50, FULL));
        let t = plan(100, 50, &spec(256, 256, Fit::Contain, true));
        assert_eq!((t.width, t.height), (256, 128));
    }

    #[test]
    fn cover_crops_the_centre() {
        let t = plan(4000, 3000, &spec(256, 256, Fit::Cover, false));
        assert_eq!((t.width, t.height), (256, 256));
        assert!((t.crop[2] - 0.75).abs() < 1e-9 && (t.crop[0] - 0.125).abs() < 1e-9);
        // A small source: the box shrinks to a square the source covers, no enlargement.
        let t = plan(200, 100, &spec(256, 256, Fit::Cover, false));
        assert_eq!((t.width, t.height), (100, 100));
        assert!((t.crop[2] - 0.5).abs() < 1e-9 && (t.crop[3] - 1.0).abs() < 1e-9);
    }
}
