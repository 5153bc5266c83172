//! # mediafleet-workers: media processing as pure functions of files
//!
//! No queue, DB or network code lives here, so the same code runs in-process in tests, behind
//! `mediafleet process`, and inside the sandboxed child that runs each of the worker's jobs: the lean
//! `mediafleet-image` binary (which reaches only [`process_still_image`] and links no FFmpeg) for still images
//! when it is installed beside `mediafleet`, and `mediafleet process` for video, audio, AVIF and everything
//! else ([`needs_ffmpeg`] tells them apart).
//!
//! ## Layout
//! - [`process`]: the entry points: `process(input, profile, limits, out_dir) -> Report`, [`process_with`]
//!   (progress and cancellation) and [`process_still_image`] (still images only, nothing that needs FFmpeg).
//! - [`sniff`]: content-based format detection (never the file name).
//! - [`limits`]: byte, pixel, frame, stream, duration and metadata limits, checked from the file size, headers
//!   and container structure before any pixel is decoded (compressed PNG metadata is inflated into a counting
//!   sink, never into memory); the decoders' allocation cap backs them up.
//! - [`report`]: the JSON report `process` prints and the runtime reads back.
//! - [`output`]: writes rendition files (atomic replace) and describes them with their SHA-256.
//! - [`image`]: decode (JPEG through libjpeg, streamed and DCT-scaled; HEIC/HEIF through libheif; AVIF through
//!   FFmpeg; the rest through the image crate), ICC → sRGB, EXIF orientation, Lanczos3 resize, cover crops,
//!   encode (JPEG, WebP, PNG, AVIF; animated WebP), placeholder hashes.
//! - [`av`]: FFmpeg plumbing (ffmpeg-next): probe and limits, filter graphs, encoders, muxers.
//! - [`video`]: poster, `thumb` from the poster, `mp4-720` (copy or encode), the HLS ladder, HDR tone mapping.
//! - [`audio`]: `audio` (AAC in M4A) and `peaks` for audio-only uploads.
//! - [`control`]: progress reports and cancellation for long work.

pub mod audio;
pub mod av;
pub mod control;
pub mod image;
pub mod limits;
pub mod output;
pub mod process;
pub mod report;
pub mod sniff;
pub mod video;

pub use control::Control;
pub use limits::Limits;
pub use process::{needs_ffmpeg, process, process_still_image, process_with};
pub use report::{MediaError, Rendition, Report};
pub use sniff::{sniff, Sniffed};
