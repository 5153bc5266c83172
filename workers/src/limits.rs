//! Limits enforced before decoding.

use serde::{Deserialize, Serialize};

/// Resource limits for one original. Checked from file size and headers before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest image original in bytes.
    pub image_bytes: u64,
    /// Largest video or audio original in bytes.
    pub video_bytes: u64,
    /// Largest decoded image (width × height).
    pub image_pixels: u64,
    /// Most frames in an animation.
    pub frames: u64,
    /// Most width × height × frames in an animation.
    pub pixel_frames: u64,
    /// Decoder allocation cap in bytes (passed to `image::Limits::max_alloc`).
    pub max_alloc_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            image_bytes: 50 << 20,
            video_bytes: 4 << 30,
            image_pixels: 120_000_000,
            frames: 1_000,
            pixel_frames: 2_000_000_000,
            max_alloc_bytes: 1 << 30,
        }
    }
}
