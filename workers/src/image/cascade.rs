//! Largest-first rendering: each rendition is resampled from the smallest image already made that still leaves
//! at least 2× headroom, so a 24 MP original is read once for the 1280 px preview and the 256 px thumb comes from
//! the preview, not from the original again.

use image::{DynamicImage, GenericImageView};

use super::resize::{Scaler, Target};
use crate::MediaError;

/// How much larger than the output a derived source must be for quality to hold (Lanczos3 needs room).
pub const HEADROOM: f64 = 2.0;

/// Renders targets from one decoded frame, reusing earlier full-frame outputs as sources.
pub struct Cascade {
    scaler: Scaler,
    base: DynamicImage,
    /// Full-frame outputs made so far.
    derived: Vec<DynamicImage>,
}

impl Cascade {
    /// A cascade over `base`, which is normalised to 8-bit RGB (or RGBA when `keep_alpha`).
    pub fn new(base: DynamicImage, keep_alpha: bool) -> Self {
        let base = match base {
            DynamicImage::ImageRgb8(_) if !keep_alpha => base,
            DynamicImage::ImageRgba8(_) if keep_alpha => base,
            other if keep_alpha => DynamicImage::ImageRgba8(other.into_rgba8()),
            other => DynamicImage::ImageRgb8(other.into_rgb8()),
        };
        Cascade {
            scaler: Scaler::new(),
            base,
            derived: Vec::new(),
        }
    }

    /// The upright, normalised original.
    pub fn base(&self) -> &DynamicImage {
        &self.base
    }

    /// The resampler, for renditions that do not come from the still (animations).
    pub fn scaler(&mut self) -> &mut Scaler {
        &mut self.scaler
    }

    /// Renders `target`. Call it for the largest targets first to get the most reuse.
    pub fn render(&mut self, target: &Target) -> Result<DynamicImage, MediaError> {
        let source = self
            .derived
            .iter()
            .filter(|d| {
                let (_, _, cw, ch) = target.region(d.width(), d.height());
                cw >= HEADROOM * f64::from(target.width)
                    && ch >= HEADROOM * f64::from(target.height)
            })
            .min_by_key(|d| u64::from(d.width()) * u64::from(d.height()))
            .unwrap_or(&self.base);
        let out = self.scaler.resize(source, target)?;
        if target.is_full_frame() && out.dimensions() != self.base.dimensions() {
            self.derived.push(out.clone());
        }
        Ok(out)
    }
}

/// Indices of `targets` from the largest output to the smallest.
pub fn largest_first(targets: &[Target]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_by_key(|&i| {
        std::cmp::Reverse(u64::from(targets[i].width) * u64::from(targets[i].height))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::resize::plan;
    use mediafleet_proto::Profile;

    #[test]
    fn renders_largest_first_and_reuses_sources() {
        let base = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            3000,
            2000,
            image::Rgb([9, 99, 199]),
        ));
        let specs = Profile::default_profile().image;
        let targets: Vec<Target> = specs.iter().map(|s| plan(3000, 2000, s)).collect();
        let order = largest_first(&targets);
        assert_eq!(specs[order[0]].name, "preview");
        let mut c = Cascade::new(base, false);
        for &i in &order {
            let out = c.render(&targets[i]).unwrap();
            assert_eq!(out.dimensions(), (targets[i].width, targets[i].height));
        }
        assert_eq!(c.derived.len(), 2);
    }
}
