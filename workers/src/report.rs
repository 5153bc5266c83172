//! The report of one `process` run: what `mediafleet process` prints on stdout and the runtime reads back
//! from the sandboxed child.

use mediafleet_proto::{ErrorCode, MediaKind};
use serde::{Deserialize, Serialize};

/// A permanent media failure: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct MediaError {
    /// Stable failure code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl MediaError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        MediaError {
            code,
            message: message.into(),
        }
    }
}

/// One written rendition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    /// Rendition name (`thumb`, `preview`, …).
    pub name: String,
    /// File name inside the output directory (`thumb.webp`).
    pub file: String,
    /// MIME type.
    pub content_type: String,
    /// Pixel width, when it has one.
    pub width: Option<u32>,
    /// Pixel height, when it has one.
    pub height: Option<u32>,
    /// Size of the file.
    pub bytes: u64,
    /// Playing time, for audio and video.
    pub duration_seconds: Option<f64>,
    /// Hex SHA-256 of the file, used for content-derived storage keys.
    pub sha256: String,
}

/// `{"kind","status","error","metadata","blurhash","thumbhash","renditions"}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Detected kind; `None` when the content was not recognised at all.
    pub kind: Option<MediaKind>,
    /// `ready` or `failed`.
    pub status: String,
    /// The failure, when `status` is `failed`.
    pub error: Option<MediaError>,
    /// Useful metadata (dimensions, format, orientation, camera, …); never GPS unless asked.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// BlurHash placeholder.
    pub blurhash: Option<String>,
    /// ThumbHash placeholder, base64.
    pub thumbhash: Option<String>,
    /// Written renditions.
    pub renditions: Vec<Rendition>,
}

impl Report {
    /// A failed report.
    pub fn failed(kind: Option<MediaKind>, error: MediaError) -> Self {
        Report {
            kind,
            status: "failed".into(),
            error: Some(error),
            metadata: Default::default(),
            blurhash: None,
            thumbhash: None,
            renditions: vec![],
        }
    }

    /// Whether the media is ready.
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}
