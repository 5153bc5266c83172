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
    /// Most bytes that compressed metadata (a PNG's `iCCP`, `zTXt`, `iTXt`) may inflate to, in total; checked
    /// by inflating into a counting sink before the decoder opens the file.
    pub metadata_bytes: u64,
    /// Longest video or audio, in seconds (from the container header, before decoding).
    pub video_seconds: f64,
    /// Largest video frame (width × height), from the stream header.
    pub video_pixels: u64,
    /// Most video frames (the header's count, or duration × frame rate).
    pub video_frames: u64,
    /// Most streams in one container.
    pub streams: u64,
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
            // Real ICC profiles are a few KiB to about 1 MiB (LUT-based printer profiles); XMP packets rarely
            // pass 100 KiB.
            metadata_bytes: 8 << 20,
            video_seconds: 4.0 * 3600.0,
            // 8K UHD (7680 × 4320 = 33.2 MP) with room for odd sizes around it.
            video_pixels: 36_000_000,
            // 4 h at 120 fps.
            video_frames: 1_728_000,
            streams: 16,
        }
    }
}
