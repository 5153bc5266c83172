//! # mediafleet-workers: media processing as pure functions of files
//!
//! No queue, DB or network code lives here, so the same code runs in-process in tests, behind
//! `mediafleet process`, and inside the sandboxed child the worker runtime spawns for every job.
//!
//! ## Layout
//! - [`process`]: the entry point, `process(input, profile, limits, out_dir) -> Report`.
//! - [`sniff`]: content-based format detection (never the file name).
//! - [`limits`]: byte, pixel and frame limits, checked from headers before any decoding.
//! - [`report`]: the JSON report `process` prints and the runtime reads back.
//! - [`output`]: writes rendition files (atomic replace) and describes them with their SHA-256.
//! - [`image`]: decode (orientation, first frame), resize (fast_image_resize), encode (JPEG, WebP, PNG),
//!   placeholder hashes.
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
