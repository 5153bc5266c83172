//! Image renditions: decode, resize, encode, hash.
//!
//! - [`pipeline`]: the whole image job, `run(input, profile, limits, out_dir) -> Report`.
//! - [`decode`]: header limits, then pixels, then EXIF orientation (first frame of animations).
//! - [`jpeg`]: JPEG completeness (the decoder hides truncation).
//! - [`frames`]: frame counts from container structure, for the animation limits.
//! - [`resize`]: output sizes (`contain`, `cover`, no upscaling) and Lanczos3 resampling.
//! - [`cascade`]: largest-first rendering that reuses earlier outputs with 2× headroom.
//! - [`encode`]: WebP (libwebp, lossy), JPEG and PNG, with no metadata.
//! - [`hash`]: BlurHash and ThumbHash placeholders.
//! - [`exif`]: camera make, model and capture time (never GPS).

pub mod cascade;
pub mod decode;
pub mod encode;
pub mod exif;
pub mod frames;
pub mod hash;
pub mod jpeg;
pub mod pipeline;
pub mod resize;
