//! Image renditions: decode, resize, encode, hash.
//!
//! - [`pipeline`]: the whole image job, `run(input, profile, limits, out_dir) -> Report`.
//! - [`decode`]: header limits, then pixels (shrunk on load), ICC → sRGB, EXIF orientation (first frame of
//!   animations).
//! - [`libjpeg`]: JPEG through libjpeg's scanline API (mozjpeg): streaming DCT-scaled decode, CMYK, ICC
//!   segments, fast encode.
//! - [`stream`]: streaming Lanczos3 downscale of decoder rows (only a window of rows held).
//! - [`avif`]: AVIF input through FFmpeg (ffmpeg-next).
//! - [`heic`]: HEIC/HEIF input through libheif 1.23 (built from libheif-sys's bundled source) and libde265.
//! - [`icc`]: embedded ICC profiles → sRGB with lcms2.
//! - [`jpeg`]: JPEG structure, streamed: completeness (decoders hide truncation) and scan count.
//! - [`frames`]: frame counts from container structure, for the animation limits.
//! - [`resize`]: output sizes (`contain`, `cover`, no upscaling) and Lanczos3 resampling, linear light when it
//!   matters.
//! - [`crop`]: where a `cover` window goes (centre, entropy, attention).
//! - [`cascade`]: largest-first rendering that reuses earlier outputs with 2× headroom.
//! - [`anim`]: animated WebP renditions of animated originals.
//! - [`png_meta`]: PNG metadata chunks (ICC, text) inflated into a counting sink before decoding, so a
//!   metadata bomb fails `too_large_bytes` without the allocation.
//! - [`encode`]: WebP (libwebp, lossy), JPEG (libjpeg), PNG and AVIF (ravif), with no metadata.
//! - [`hash`]: BlurHash and ThumbHash placeholders.
//! - [`exif`]: orientation, camera make and model, capture time (GPS only when the profile asks).

pub mod anim;
pub mod avif;
pub mod cascade;
pub mod crop;
pub mod decode;
pub mod encode;
pub mod exif;
pub mod frames;
pub mod hash;
pub mod heic;
pub mod icc;
pub mod jpeg;
pub mod libjpeg;
pub mod pipeline;
pub mod png_meta;
pub mod resize;
pub mod stream;
