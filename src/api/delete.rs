//! `DELETE /v1/media/{id}`: removes the original, the renditions and the cached object; the row stays as
//! `deleted` (the stable routes then answer 404). Repeating it is harmless.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use mediafleet_proto::MediaStatus;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiPath, ErrorBody};
use super::media::{parse_id, refresh_cached};
use super::{ApiError, AppState};
use crate::storage::keys;

/// The answer of `DELETE /v1/media/{id}`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Deleted {
    /// Media id.
    #[schema(value_type = uuid::Uuid)]
    id: String,
    /// Always `deleted`.
    #[schema(value_type = String, pattern = "^deleted$")]
    status: MediaStatus,
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
    caller: Option<Extension<Caller>>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Deleted>), ApiError> {
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
    let actor = caller
        .and_then(|Extension(c)| c.key_id)
        .map_or_else(|| "anonymous".to_owned(), |k| format!("key:{k}"));
    st.records.audit_or_log(&actor, "delete", &id, None).await;
    tracing::info!(media_id = %id, actor, "media deleted");
    Ok((
        StatusCode::OK,
        Json(Deleted {
            id,
            status: MediaStatus::Deleted,
        }),
    ))
}
