//! Embedded ICC profiles → sRGB (lcms2), so Adobe RGB and Display P3 photos do not come out washed out.
//!
//! Conversion runs on the (possibly shrunk-on-load) 8-bit buffer in place, before any resampling. Profiles that
//! already describe sRGB are skipped: most camera JPEGs carry one, and an identity transform over 24 MP is
//! time for nothing. A profile lcms cannot parse is ignored (the pixels are then taken as sRGB, as a browser
//! would), because an odd profile should not make a photo fail.

use image::DynamicImage;
use lcms2::{ColorSpaceSignature, InfoType, Intent, Locale, PixelFormat, Profile, Transform};

/// Converts an 8-bit RGB or RGBA image from the colour space `icc` describes to sRGB, in place. Other pixel
/// layouts, non-RGB profiles and sRGB profiles are left as they are. Returns whether pixels changed.
pub fn to_srgb(img: &mut DynamicImage, icc: &[u8]) -> bool {
    let Some(src) = rgb_profile(icc) else {
        return false;
    };
    let srgb = Profile::new_srgb();
    let (format, pixels): (PixelFormat, &mut [u8]) = match img {
        DynamicImage::ImageRgb8(b) => (PixelFormat::RGB_8, &mut **b),
        DynamicImage::ImageRgba8(b) => (PixelFormat::RGBA_8, &mut **b),
        _ => return false,
    };
    match Transform::new(&src, format, &srgb, format, Intent::Perceptual) {
        Ok(t) => {
            t.transform_in_place(pixels);
            true
        }
        Err(_) => false,
    }
}

/// A row transform from the RGB colour space `icc` describes to sRGB (8-bit RGB in place); `None` for non-RGB,
/// sRGB and unusable profiles.
pub fn rgb_transform(icc: &[u8]) -> Option<Transform<u8, u8>> {
    let src = rgb_profile(icc)?;
    Transform::new(
        &src,
        PixelFormat::RGB_8,
        &Profile::new_srgb(),
        PixelFormat::RGB_8,
        Intent::Perceptual,
    )
    .ok()
}

/// A row transform from Adobe-style (inverted) 8-bit CMYK to sRGB RGB with a CMYK ICC profile. `None` when the
/// profile is not a usable CMYK profile; the caller then uses the naive conversion.
pub fn cmyk_transform(icc: &[u8]) -> Option<Transform<u8, u8>> {
    let src = Profile::new_icc(icc).ok()?;
    if src.color_space() != ColorSpaceSignature::CmykData {
        return None;
    }
    Transform::new(
        &src,
        PixelFormat::CMYK_8_REV,
        &Profile::new_srgb(),
        PixelFormat::RGB_8,
        Intent::Perceptual,
    )
    .ok()
}

/// The profile, when it is an RGB profile that is not sRGB already.
fn rgb_profile(icc: &[u8]) -> Option<Profile> {
    let p = Profile::new_icc(icc).ok()?;
    if p.color_space() != ColorSpaceSignature::RgbData {
        return None;
    }
    let name = p
        .info(InfoType::Description, Locale::none())
        .unwrap_or_default();
    (!name.to_ascii_lowercase().contains("srgb")).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srgb_and_broken_profiles_are_skipped() {
        let srgb = Profile::new_srgb().icc().unwrap();
        let mut img =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(2, 2, image::Rgb([200, 60, 60])));
        assert!(!to_srgb(&mut img, &srgb));
        assert!(!to_srgb(&mut img, b"not a profile"));
    }
}
