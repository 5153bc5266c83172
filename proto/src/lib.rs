//! # mediafleet-proto: the job contract
//!
//! Everything a producer (the api, a PHP or Python app, an operator's script) and a worker must agree on.
//!
//! ## Layout
//! - [`envelope`]: the versioned job envelope and the typed payload of each job kind. Parsing is two-step
//!   (envelope first, then payload) so a bad message can be dead-lettered with a precise reason.
//! - [`profile`]: renditions and profiles: what a media kind turns into.
//! - [`media`]: media kinds, statuses and stable failure codes shared by the API, DB, metrics and `process`.
//!
//! The JSON Schemas in `proto/schema/` describe the same messages for producers in other languages; a test
//! validates `proto/examples/*.json` against them and round-trips them through these types.

pub mod envelope;
pub mod media;
pub mod profile;

pub use envelope::{Envelope, Job, JobKind, Lane, ParseError, Stage, ENVELOPE_VERSION};
pub use media::{ErrorCode, MediaId, MediaKind, MediaStatus};
pub use profile::{
    AudioProfile, AudioSpec, Crop, Fit, HlsSpec, Mp4Spec, OutputFormat, PeaksSpec, PosterSpec,
    Profile, Profiles, RenditionSpec, Rung, VideoProfile, AUDIO, HLS, MP4_720, PEAKS, POSTER,
};
