//! `GET /v1/media/{id}`: the media object. The same JSON is what the cache holds.

use axum::extract::{Path, State};
use axum::Json;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::db::{MediaRow, RenditionRow};

/// `GET /v1/media/{id}`.
pub async fn show(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let row = st
        .records
        .media(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("media {id} not found")))?;
    let renditions = st.records.renditions(&id).await?;
    Ok(Json(media_json(
        &row,
        &renditions,
        st.settings.public_url.as_deref(),
    )))
}

/// Accepts only UUIDs, so a path can never be used to probe storage.
pub fn parse_id(id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::not_found(format!("media {id} not found")))
}

fn rfc3339(ms: i64) -> String {
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
