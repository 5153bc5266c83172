//! The media object: the JSON of `GET /v1/media/{id}`, which is also exactly what the cache holds under
//! `{prefix}:media:{id}` (schema: `proto/schema/media-object.json`).
//!
//! - this file assembles it from DB rows;
//! - [`read`]: the api's read path (Redis first; on a miss, one DB read under a single-flight lock);
//! - [`warm`]: writes objects into the cache (warm jobs and `ops warm`).

pub mod read;
pub mod warm;

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use crate::db::{MediaRow, RenditionRow};

pub use read::{MediaReader, ReadError};

/// Unix ms as an RFC 3339 UTC time with milliseconds (empty when out of range).
pub(crate) fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The stable URL of a rendition (never a presigned one, so cached JSON never expires).
pub fn rendition_url(public_url: Option<&str>, media_id: &str, name: &str) -> String {
    format!(
        "{}/v1/media/{media_id}/renditions/{name}",
        public_url.unwrap_or("")
    )
}

/// Assembles the media object.
pub fn media_json(row: &MediaRow, renditions: &[RenditionRow], public_url: Option<&str>) -> Value {
    let error = row.error_code.as_ref().map(
        |code| json!({"code": code, "message": row.error_message.clone().unwrap_or_default()}),
    );
    let metadata: Value = serde_json::from_str(&row.metadata).unwrap_or_else(|_| json!({}));
    let renditions: Vec<Value> = renditions
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "content_type": r.content_type,
                "width": r.width,
                "height": r.height,
                "bytes": r.bytes,
                "duration_seconds": r.duration_seconds,
                "url": rendition_url(public_url, &row.id, &r.name),
            })
        })
        .collect();
    json!({
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "progress": row.progress,
        "profile": row.profile,
        "error": error,
        "renditions": renditions,
        "blurhash": row.blurhash,
        "thumbhash": row.thumbhash,
        "metadata": metadata,
        "external_id": row.external_id,
        "filename": row.filename,
        "version": row.version,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    })
}

/// Whether a media in `status` has ended: its object then lives for the full TTL. Objects of moving media
/// get the short pending TTL, because not every move enqueues a warm job.
pub fn is_final(status: &str) -> bool {
    matches!(status, "ready" | "failed" | "deleted")
}

/// The object serialised once, with what the cache needs to guard and expire it.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    /// Media id.
    pub id: String,
    /// The media version the object shows (the version guard compares this).
    pub version: i64,
    /// Whether the media has ended (chooses the TTL).
    pub is_final: bool,
    /// The JSON text, exactly as `GET /v1/media/{id}` answers it.
    pub json: String,
}

impl Assembled {
    /// Serialises rows into an object.
    pub fn new(row: &MediaRow, renditions: &[RenditionRow], public_url: Option<&str>) -> Self {
        Assembled {
            id: row.id.clone(),
            version: row.version,
            is_final: is_final(row.status.as_str()),
            json: media_json(row, renditions, public_url).to_string(),
        }
    }
}
