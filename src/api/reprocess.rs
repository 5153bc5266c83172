//! `POST /v1/media/{id}/reprocess`: makes a media's renditions again, optionally with another profile
//! (`ready → queued`), or replays a failed one (`failed → queued`). The old renditions keep being served until
//! the new ones are ready; the worker then deletes the ones they replace.
//!
//! Repeating the request is safe: while the media is already queued or processing with the same profile it
//! answers 202 with the current status and enqueues nothing.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use mediafleet_proto::MediaStatus;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{optional_json, ApiPath, ErrorBody};
use super::media::{parse_id, refresh_cached};
use super::{ApiError, AppState};
use crate::db::OutboxJob;

/// The optional body of `POST /v1/media/{id}/reprocess`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReprocessRequest {
    /// Profile for the new renditions; the media's current one when absent.
    pub profile: Option<String>,
}

/// The answer of `POST /v1/media/{id}/reprocess`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Requeued {
    /// Media id.
    #[schema(value_type = uuid::Uuid)]
    id: String,
    /// `queued`, or the current status when the same request was already accepted.
    #[schema(value_type = String, pattern = "^(queued|processing)$")]
    status: MediaStatus,
    /// The profile the new renditions are made with.
    profile: String,
}

/// `POST /v1/media/{id}/reprocess`.
#[utoipa::path(post, path = "/v1/media/{id}/reprocess", summary = "Make a media's renditions again, or replay a failed one", tag = "media",
    description = "`ready → queued` (optionally with another profile) or `failed → queued`. The old renditions are served until the new ones are ready; the ones they replace are then deleted. Repeating the request while the media is queued or processing with that profile enqueues nothing.",
    params(("id" = uuid::Uuid, Path, description = "Media id")),
    request_body(content = Option<ReprocessRequest>, content_type = "application/json",
        description = "`{\"profile\":\"…\"}`, or empty to keep the media's profile"),
    responses(
        (status = 202, description = "Requeued (or already queued with that profile)", body = Requeued),
        (status = 400, description = "Invalid body or unknown profile", body = ErrorBody),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 404, description = "No such media, or the id is not a UUID", body = ErrorBody),
        (status = 409, description = "The media is uploading, deleted, or being processed with another profile", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn reprocess(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Requeued>), ApiError> {
    let body = body?;
    let id = parse_id(&id)?;
    let req: ReprocessRequest = optional_json(&body, "reprocess request")?;
    // Two tries: the guarded update fails only when the row changed between the read and the write.
    for _ in 0..2 {
        let row = st
            .records
            .media_primary(&id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("media {id} not found")))?;
        let profile = req.profile.clone().unwrap_or_else(|| row.profile.clone());
        if !st.settings.profiles.contains_key(&profile) {
            let known: Vec<&str> = st.settings.profiles.keys().map(String::as_str).collect();
            return Err(ApiError::bad_request(format!(
                "unknown profile {profile:?}; configured: {}",
                known.join(", ")
            )));
        }
        match row.status {
            MediaStatus::Queued | MediaStatus::Processing if row.profile == profile => {
                return Ok(accepted(&id, row.status, &profile));
            }
            MediaStatus::Ready | MediaStatus::Failed => {}
            other => {
                return Err(ApiError::conflict(format!(
                    "media {id} is {other}; only ready or failed media can be reprocessed"
                )))
            }
        }
        let kind = row.kind;
        let uuid = uuid::Uuid::parse_str(&id).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let job = OutboxJob::media_process(uuid, &row.source_key, &profile, kind);
        if let Some(now) = st.records.requeue(&row, &profile, &job).await? {
            st.uploads.committed();
            // Cache readers see `queued` at once; a stale object would still point at served renditions.
            refresh_cached(&st, &id).await;
            tracing::info!(media_id = %id, from = %row.status, %profile, "media requeued");
            return Ok(accepted(&id, now.status, &profile));
        }
    }
    Err(ApiError::conflict(format!(
        "media {id} changed while it was being requeued; try again"
    )))
}

fn accepted(id: &str, status: MediaStatus, profile: &str) -> (StatusCode, Json<Requeued>) {
    (
        StatusCode::ACCEPTED,
        Json(Requeued {
            id: id.to_owned(),
            status,
            profile: profile.to_owned(),
        }),
    )
}
