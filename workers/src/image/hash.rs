//! Placeholder hashes: BlurHash (4×3 components) and ThumbHash (base64).
//!
//! Both are computed from a small (≤ 100×100) RGBA copy of the image: ThumbHash asserts that limit, and a
//! BlurHash with 12 components gains nothing from more pixels but costs time linear in them.

use base64::Engine;
use image::RgbaImage;

/// Largest side ThumbHash accepts.
pub const MAX_SIDE: u32 = 100;

/// BlurHash of `img` with 4×3 components. Alpha is composited onto white, as in the JPEG rendition, so a
/// transparent background does not turn black in the placeholder.
pub fn blurhash(img: &RgbaImage) -> Option<String> {
    let mut flat = img.clone();
    for p in flat.pixels_mut() {
        let a = u32::from(p.0[3]);
        for c in &mut p.0[..3] {
            *c = ((u32::from(*c) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
        p.0[3] = 255;
    }
    blurhash::encode(4, 3, flat.width(), flat.height(), flat.as_raw()).ok()
}

/// ThumbHash of `img`, base64 (standard alphabet, padded). `None` when `img` is larger than [`MAX_SIDE`] on
/// either side, which the crate would otherwise panic on.
pub fn thumbhash(img: &RgbaImage) -> Option<String> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return None;
    }
    let hash = thumbhash::rgba_to_thumb_hash(w as usize, h as usize, img.as_raw());
    Some(base64::engine::general_purpose::STANDARD.encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_small_images_and_refuses_big_ones() {
        let small = RgbaImage::from_pixel(40, 30, image::Rgba([200, 100, 50, 255]));
        assert_eq!(blurhash(&small).map(|h| h.len()), Some(28));
        assert!(thumbhash(&small).is_some());
        assert_eq!(thumbhash(&RgbaImage::new(101, 10)), None);
    }
}
