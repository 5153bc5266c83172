//! `GET /v1/media/{id}`: the media object. The same JSON is what the cache holds; it is assembled in
//! [`crate::media_object`] and served through [`crate::media_object::MediaReader`] (Redis first, then the DB).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::media_object::ReadError;

/// `GET /v1/media/{id}`.
pub async fn show(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let json = st
        .reader
        .get(&id)
        .await
        .map_err(|ReadError::Db(e)| ApiError::from(e))?
        .ok_or_else(|| ApiError::not_found(format!("media {id} not found")))?;
    // The cached text is served as is: no parse and re-serialise on the hot path.
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response())
}

/// Accepts only UUIDs, so a path can never be used to probe storage.
pub fn parse_id(id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::not_found(format!("media {id} not found")))
}
