//! `GET /v1/media?status=&external_id=&cursor=&limit=`: media, newest first, cursor-paged.
//!
//! The cursor is the last id of the previous page: ids are UUIDv7, so they sort by creation time and a page
//! boundary never shifts when new media arrive.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};

use super::media::parse_id;
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

/// `GET /v1/media`.
pub async fn list(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({"items": items, "next_cursor": next.flatten()})))
}
