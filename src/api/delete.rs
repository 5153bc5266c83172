//! `DELETE /v1/media/{id}`: removes the original, the renditions and the cached object; the row stays as
//! `deleted` (the stable routes then answer 404). Repeating it is harmless.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::error::{ApiPath, ErrorBody};
use super::media::{parse_id, refresh_cached};
use super::{ApiError, AppState};
use crate::storage::keys;

/// The answer of `DELETE /v1/media/{id}`.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: the handler builds the JSON
pub struct Deleted {
    #[schema(value_type = uuid::Uuid)]
    id: String,
    /// Always `deleted`.
    #[schema(pattern = "^deleted$")]
    status: String,
}

/// `DELETE /v1/media/{id}`.
#[utoipa::path(delete, path = "/v1/media/{id}", summary = "Delete a media's objects; the row stays as `deleted`", tag = "media",
    params(("id" = uuid::Uuid, Path, description = "Media id")),
    responses(
        (status = 200, description = "Deleted (also when it already was)", body = Deleted),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 404, description = "No such media, or the id is not a UUID", body = ErrorBody),
        (status = 503, description = "The database or storage does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn remove(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = parse_id(&id)?;
    let row = st
        .records
        .media_primary(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("media {id} not found")))?;
    // The row first, so no worker starts on it; then the objects (a retry of DELETE finishes a partial one).
    st.records.mark_deleted(&id, None).await?;
    if let (Some(direct), Some(upload_id)) = (
        st.store.direct_uploads(),
        st.records.upload_state(&id).await?.and_then(|s| s.0),
    ) {
        let _ = direct.abort_multipart(&row.source_key, &upload_id).await;
    }
    st.store.delete(&row.source_key).await?;
    st.store
        .delete_prefix(&keys::media_prefix(&st.settings.prefix, &id))
        .await?;
    refresh_cached(&st, &id).await;
    tracing::info!(media_id = %id, "media deleted");
    Ok((StatusCode::OK, Json(json!({"id": id, "status": "deleted"}))))
}
