//! `{"error":{"code","message"}}` with a 4xx/5xx status.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// An api error: a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`bad_request`, `not_found`, `too_large_bytes`, …).
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 409: the media is in a status the request cannot act on.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large_bytes", message)
    }
    /// 415.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }
    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "request failed");
        }
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

/// The body of every error answer (`GET /openapi.json` schema `Error`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` member of [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code.
    #[schema(value_type = String, example = "not_found")]
    #[schema(
        pattern = "^(bad_request|unauthorized|not_found|too_large_bytes|unsupported_media_type|idempotency_conflict|conflict|forbidden|unavailable|internal)$"
    )]
    pub code: &'static str,
    /// For people; may change.
    pub message: String,
}

/// Extractor rejections answer the error body too, never axum's plain-text default.
fn rejection(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::unsupported(text),
        s if s.is_server_error() => ApiError::unavailable(text),
        _ => ApiError::bad_request(text),
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        rejection(e.status(), e.body_text())
    }
}

/// An optional JSON body: empty (or only whitespace), `null` and `{}` all give `T::default()`; anything that
/// is not a `T` is a 400 naming `what`.
pub fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}

/// [`Path`] whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// [`Query`] whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        if e.is_transient() {
            tracing::warn!(error = %e, "database unavailable");
            return ApiError::unavailable("the database is unavailable; try again later");
        }
        // A refused statement is our bug: log the database's words, never send them to the client.
        tracing::error!(error = %e, "database refused a statement");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (see the api log)",
        )
    }
}

impl From<crate::storage::StoreError> for ApiError {
    fn from(e: crate::storage::StoreError) -> Self {
        match e {
            crate::storage::StoreError::NotFound(k) => {
                ApiError::not_found(format!("object {k} not found"))
            }
            // The store's own words (an SDK's error chain, with the endpoint's address) go to the log, never
            // to the client: a client learns only whether trying again can help.
            crate::storage::StoreError::Unavailable(_) | crate::storage::StoreError::Io(_) => {
                tracing::warn!(error = %e, "object store unavailable");
                ApiError::unavailable("the object store is unavailable; try again later")
            }
            crate::storage::StoreError::Changed(_) => {
                tracing::warn!(error = %e, "object changed while it was read");
                ApiError::unavailable("the object changed while it was read; try again")
            }
            crate::storage::StoreError::InvalidKey(_) | crate::storage::StoreError::Refused(_) => {
                tracing::error!(error = %e, "object store refused a request");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error (see the api log)",
                )
            }
        }
    }
}
