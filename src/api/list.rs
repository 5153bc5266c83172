//! `GET /v1/media?status=&external_id=&cursor=&limit=`: media, newest first, cursor-paged.
//!
//! The cursor is the last id of the previous page: ids are UUIDv7, so they sort by creation time and a page
//! boundary never shifts when new media arrive.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use serde_json::Value;
use utoipa::ToSchema;

use super::error::{ApiQuery, ErrorBody};
use super::media::{parse_id, Media};
use super::{ApiError, AppState};
use crate::media_object::media_json;

/// Page size when `limit` is not given, and the largest allowed.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;
const STATUSES: [&str; 6] = [
    "uploading",
    "queued",
    "processing",
    "ready",
    "failed",
    "deleted",
];

/// A page of `GET /v1/media`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct MediaPage {
    /// Newest first.
    #[schema(value_type = Vec<Media>)]
    items: Vec<Value>,
    /// The `cursor` of the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// `GET /v1/media`.
#[utoipa::path(get, path = "/v1/media", summary = "List media, newest first, cursor-paged", tag = "media",
    params(
        ("status" = Option<String>, Query, description = "One of uploading, queued, processing, ready, failed, deleted",
            pattern = "^(|uploading|queued|processing|ready|failed|deleted)$"),
        ("external_id" = Option<String>, Query, description = "Only media with this external id"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page (empty: the first page)",
            pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size (default 50)")),
    responses(
        (status = 200, description = "A page of media, newest first", body = MediaPage),
        (status = 400, description = "Unknown status, invalid cursor or limit", body = ErrorBody),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Json<MediaPage>, ApiError> {
    let status = q.get("status").filter(|s| !s.is_empty());
    if let Some(s) = status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!(
                "status {s:?} is not one of {STATUSES:?}"
            )));
        }
    }
    let cursor = match q.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => Some(parse_id(c).map_err(|_| ApiError::bad_request("invalid cursor"))?),
        None => None,
    };
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit must be 1-{MAX_LIMIT}")))?,
        None => DEFAULT_LIMIT,
    };
    let rows = st
        .records
        .list_media(
            status.map(String::as_str),
            q.get("external_id")
                .map(String::as_str)
                .filter(|s| !s.is_empty()),
            cursor.as_deref(),
            limit + 1,
        )
        .await?;
    let more = rows.len() as i64 > limit;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows.iter().take(usize::try_from(limit).unwrap_or(0)) {
        let renditions = st.records.renditions(&row.id).await?;
        items.push(media_json(
            row,
            &renditions,
            st.settings.public_url.as_deref(),
        ));
    }
    let next = more.then(|| {
        items
            .last()
            .and_then(|m| m["id"].as_str().map(str::to_owned))
    });
    Ok(Json(MediaPage {
        items,
        next_cursor: next.flatten(),
    }))
}
