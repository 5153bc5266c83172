//! `GET /v1/media/{id}`: the media object. The same JSON is what the cache holds; it is assembled in
//! [`crate::media_object`] and served through [`crate::media_object::MediaReader`] (Redis first, then the DB).

use std::borrow::Cow;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema};

use super::error::{ApiPath, ErrorBody};
use super::{ApiError, AppState};
use crate::media_object::ReadError;

/// The media object of `GET /v1/media/{id}` and of list pages. It is assembled as JSON in
/// [`crate::media_object`], not serialised from a Rust type, so its schema is the project's own
/// `proto/schema/media-object.json` (the one the cache tests check objects against), which
/// `openapi::document` puts in place of this placeholder.
pub struct Media;

impl utoipa::PartialSchema for Media {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some("proto/schema/media-object.json"))
            .into()
    }
}

impl utoipa::ToSchema for Media {
    fn name() -> Cow<'static, str> {
        "Media".into()
    }
}

/// `GET /v1/media/{id}`.
#[utoipa::path(get, path = "/v1/media/{id}", summary = "A media object", tag = "media",
    params(("id" = uuid::Uuid, Path, description = "Media id")),
    responses(
        (status = 200, description = "The media object (from the cache when one is configured)", body = Media),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 404, description = "No such media, or the id is not a UUID", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn show(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
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
    mediafleet_proto::MediaId::parse(id)
        .map(|m| m.to_string())
        .ok_or_else(|| ApiError::not_found(format!("media {id} not found")))
}

/// Rewrites the cached object of `id` after a change made by the api (delete, requeue). Best effort: the
/// cache's own expiry and the next warm job correct a failure here.
pub async fn refresh_cached(st: &AppState, id: &str) {
    if let Some(cache) = st.reader.cache() {
        if let Err(e) = crate::media_object::warm::warm_one(
            &st.records,
            cache,
            id,
            st.settings.public_url.as_deref(),
        )
        .await
        {
            tracing::warn!(media_id = %id, error = %e, "could not refresh the cached object");
        }
    }
}
