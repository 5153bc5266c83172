//! Media kinds, statuses and the stable failure codes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A media's id: a UUIDv7, so ids sort by creation time. On the wire and in the DB it is the UUID's
/// hyphenated text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MediaId(Uuid);

impl MediaId {
    /// A new id (UUIDv7: time-ordered).
    pub fn new() -> Self {
        MediaId(Uuid::now_v7())
    }

    /// Parses the text form; `None` when it is not a UUID.
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s).ok().map(MediaId)
    }

    /// The UUID.
    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl Default for MediaId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for MediaId {
    fn from(u: Uuid) -> Self {
        MediaId(u)
    }
}

impl From<MediaId> for Uuid {
    fn from(id: MediaId) -> Self {
        id.0
    }
}

impl std::fmt::Display for MediaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for MediaId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, uuid::Error> {
        Uuid::parse_str(s).map(MediaId)
    }
}

/// What an original is, decided from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// A still or animated image.
    Image,
    /// A video, with or without audio.
    Video,
    /// Audio only.
    Audio,
}

impl MediaKind {
    /// Wire and DB name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
        }
    }

    /// Parses a wire or DB name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "image" => Some(MediaKind::Image),
            "video" => Some(MediaKind::Video),
            "audio" => Some(MediaKind::Audio),
            _ => None,
        }
    }
}

/// Lifecycle of a media. Statuses only move forward (see [`MediaStatus::can_move_to`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaStatus {
    /// A presigned upload has been handed out but not completed.
    Uploading,
    /// Accepted and waiting for a worker.
    Queued,
    /// A worker is on it.
    Processing,
    /// All renditions are written.
    Ready,
    /// Permanently failed; see the error code.
    Failed,
    /// Removed by the user.
    Deleted,
}

impl MediaStatus {
    /// Wire and DB name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaStatus::Uploading => "uploading",
            MediaStatus::Queued => "queued",
            MediaStatus::Processing => "processing",
            MediaStatus::Ready => "ready",
            MediaStatus::Failed => "failed",
            MediaStatus::Deleted => "deleted",
        }
    }

    /// Parses a wire or DB name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "uploading" => MediaStatus::Uploading,
            "queued" => MediaStatus::Queued,
            "processing" => MediaStatus::Processing,
            "ready" => MediaStatus::Ready,
            "failed" => MediaStatus::Failed,
            "deleted" => MediaStatus::Deleted,
            _ => return None,
        })
    }

    /// Position in the forward order; `deleted` is last.
    pub fn rank(self) -> u8 {
        match self {
            MediaStatus::Uploading => 0,
            MediaStatus::Queued => 1,
            MediaStatus::Processing => 2,
            MediaStatus::Ready | MediaStatus::Failed => 3,
            MediaStatus::Deleted => 4,
        }
    }

    /// Whether a normal (non-replay) transition from `self` to `next` is allowed.
    ///
    /// Forward only; `processing → processing` is allowed so a redelivered job can take over.
    /// Replays (`failed → queued`) and reprocessing (`ready → queued`) are explicit operator actions and
    /// do not go through this check.
    pub fn can_move_to(self, next: MediaStatus) -> bool {
        if self == MediaStatus::Deleted {
            return false;
        }
        if self.rank() == 3 {
            return next == MediaStatus::Deleted;
        }
        next.rank() > self.rank() || (self == next && self == MediaStatus::Processing)
    }
}

/// Stable media failure codes (API, DB, metrics, `process`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The content is not a format we decode.
    UnsupportedFormat,
    /// The content claims a format but does not decode.
    CorruptMedia,
    /// Over the byte limit.
    TooLargeBytes,
    /// Over the pixel limit.
    TooManyPixels,
    /// Over the frame limit.
    TooManyFrames,
    /// Over the pixel × frame limit of an animation.
    TooManyPixelFrames,
    /// Over the duration limit.
    TooLong,
    /// Over the stream-count limit.
    TooManyStreams,
    /// The sandboxed media child died (signal, OOM, abort).
    MediaCrashed,
    /// The job ran past its deadline.
    Timeout,
    /// Transient failures persisted past the maximum attempts.
    RetriesExhausted,
    /// The object store could not be reached.
    StorageUnavailable,
    /// The queue message could not be understood.
    InvalidMessage,
    /// A bug on our side.
    Internal,
}

impl ErrorCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnsupportedFormat => "unsupported_format",
            ErrorCode::CorruptMedia => "corrupt_media",
            ErrorCode::TooLargeBytes => "too_large_bytes",
            ErrorCode::TooManyPixels => "too_many_pixels",
            ErrorCode::TooManyFrames => "too_many_frames",
            ErrorCode::TooManyPixelFrames => "too_many_pixel_frames",
            ErrorCode::TooLong => "too_long",
            ErrorCode::TooManyStreams => "too_many_streams",
            ErrorCode::MediaCrashed => "media_crashed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::RetriesExhausted => "retries_exhausted",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for MediaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A DB or wire name that is not a status is an error, not a guess.
impl TryFrom<String> for MediaStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("unknown media status {s:?}"))
    }
}

impl std::fmt::Display for MediaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A DB or wire name that is not a kind is an error, not a guess.
impl TryFrom<String> for MediaKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("unknown media kind {s:?}"))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::MediaStatus::*;

    #[test]
    fn statuses_only_move_forward() {
        assert!(Queued.can_move_to(Processing));
        assert!(Processing.can_move_to(Processing));
        assert!(Processing.can_move_to(Ready));
        assert!(!Ready.can_move_to(Processing));
        assert!(!Failed.can_move_to(Ready));
        assert!(Ready.can_move_to(Deleted));
        assert!(!Deleted.can_move_to(Queued));
        assert!(!Processing.can_move_to(Queued));
    }
}
