//! The operations dashboard: `GET /ops` (one server-rendered page with a small inline script, no front-end
//! build), `GET /ops/status` (what it draws), and its two buttons, `POST /ops/replay/{id}` and
//! `POST /ops/dlq/{class}/redrive`.
//!
//! - The figures are [`crate::scale::status::snapshot`]'s, the document `mediafleet ops status --json`
//!   prints; the last hour comes from the sampler's ring buffer ([`crate::scale::history`]).
//! - The buttons run the command line's own code (`ops replay ID`, `ops dlq redrive --class C`), handed in
//!   as [`OpsActions`] by `cli::serve`, and are audited with the calling key, as `DELETE` is.
//! - Access is `/metrics`'s rule (`auth::guard`): open on a loopback api without keys, behind a key otherwise.
//!   The POST routes also want the header `x-mediafleet-ops: 1`, which the page's script sends and a
//!   cross-site form cannot (a custom header needs a CORS preflight, which this api never grants).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Html;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiPath, ErrorBody};
use super::{ApiError, AppState};
use crate::config::ScalingSettings;
use crate::db::FailedFilter;
use crate::queue::{JobClass, SharedAdmin};
use crate::scale::history::{History, Sample};
use crate::scale::status::{snapshot, StatusDoc};
use crate::scale::ScaleError;

/// The header every dashboard POST must carry (value `1`).
pub const OPS_HEADER: &str = "x-mediafleet-ops";

/// Most failed media the page lists (newest first), as `ops failed list` shows them.
const FAILED_SHOWN: usize = 50;

/// What the dashboard's buttons do. The command line supplies it (`cli::ops_actions`), so the api runs the
/// same code as `mediafleet ops replay ID` and `ops dlq redrive --class C`.
#[async_trait::async_trait]
pub trait OpsActions: Send + Sync {
    /// Replays one failed media; `actor` goes to the audit log.
    async fn replay(&self, id: &str, actor: &str) -> Result<Replayed, ApiError>;
    /// Redrives up to 100 dead letters of `class` (the CLI's default `--limit`).
    async fn redrive(&self, class: &JobClass, actor: &str) -> Result<Redriven, ApiError>;
}

/// What the dashboard routes need besides the api's backends.
#[derive(Clone)]
pub struct OpsState {
    /// The last hour, sampled.
    pub history: Arc<History>,
    /// The queue's admin side (depth, dead letters), of the same backend as `AppState::queue`.
    pub admin: SharedAdmin,
    /// Scaling policy per class (the scaler's decision is part of the status).
    pub scaling: ScalingSettings,
    /// Replay and redrive.
    pub actions: Arc<dyn OpsActions>,
}

/// The answer of `GET /ops/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpsStatus {
    /// Now: the document `mediafleet ops status --json` prints.
    pub status: StatusDoc,
    /// The last hour, oldest first, one sample every `sample_seconds`.
    pub history: Vec<Sample>,
    /// The sampling interval (`[scaling] status_sample`).
    pub sample_seconds: f64,
    /// The newest failed media (at most 50), each with the Replay button on the page.
    pub failed: Vec<FailedMedia>,
}

/// A failed media, as `ops failed list --json` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedMedia {
    /// Media id.
    #[schema(value_type = uuid::Uuid)]
    pub media_id: String,
    /// `image`, `video` or `audio`.
    pub kind: String,
    /// Error code.
    pub code: Option<String>,
    /// Error message.
    pub message: Option<String>,
    /// Attempts recorded (every job, every try).
    pub attempts: i64,
    /// When it failed (RFC 3339).
    pub failed_at: String,
}

/// The answer of `POST /ops/replay/{id}`: `ops replay --json`'s document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// Media sent back to `queued`.
    pub replayed: Vec<String>,
    /// Ids that were not, with why.
    pub skipped: Vec<SkippedMedia>,
}

/// A media a replay left alone.
#[derive(Debug, Serialize, ToSchema)]
pub struct SkippedMedia {
    /// The id asked for.
    pub id: String,
    /// Why (its status, not found, changed meanwhile).
    pub reason: String,
}

/// The answer of `POST /ops/dlq/{class}/redrive`: `ops dlq redrive --json`'s document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Redriven {
    /// The class.
    pub class: String,
    /// Dead letters sent back to the work queue.
    pub moved: Vec<String>,
    /// Ids the DLQ no longer held.
    pub skipped: Vec<String>,
    /// Further copies of a moved id removed from the DLQ.
    pub duplicates: u64,
    /// Failed media made to wait for their redriven job again.
    pub revived_media: Vec<String>,
}

/// The page, with its script and styles inline.
const PAGE: &str = include_str!("ops_page.html");

/// `GET /ops`.
#[utoipa::path(get, path = "/ops", summary = "The operations dashboard (HTML)", tag = "ops",
    responses(
        (status = 200, description = "The dashboard page; its script reads `/ops/status`", body = String, content_type = "text/html"),
        (status = 401, description = "No or an invalid API key (required off loopback)", body = ErrorBody),
        (status = 403, description = "An open (loopback) api refuses other hosts and origins", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn dashboard() -> Html<String> {
    Html(PAGE.to_owned())
}

/// `GET /ops/status`.
#[utoipa::path(get, path = "/ops/status", summary = "What the dashboard shows: status now, the last hour, failed media", tag = "ops",
    responses(
        (status = 200, description = "The status document, its history and the failed media", body = OpsStatus),
        (status = 401, description = "No or an invalid API key (required off loopback)", body = ErrorBody),
        (status = 403, description = "An open (loopback) api refuses other hosts and origins", body = ErrorBody),
        (status = 503, description = "The queue or the database does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn status(State(st): State<AppState>) -> Result<Json<OpsStatus>, ApiError> {
    let ops = &st.ops;
    let status = snapshot(
        st.queue.clone(),
        ops.admin.clone(),
        &st.records,
        &ops.scaling,
        &[],
    )
    .await
    .map_err(scale_error)?;
    let (rows, _) = st
        .records
        .failed_page(&FailedFilter::default(), None, FAILED_SHOWN)
        .await?;
    let failed = rows
        .into_iter()
        .map(|r| FailedMedia {
            media_id: r.id,
            kind: r.kind.as_str().to_owned(),
            code: r.error_code,
            message: r.error_message,
            attempts: r.attempts,
            failed_at: crate::media_object::rfc3339(r.updated_at),
        })
        .collect();
    Ok(Json(OpsStatus {
        status,
        history: ops.history.samples(),
        sample_seconds: ops.history.every().as_secs_f64(),
        failed,
    }))
}

/// `POST /ops/replay/{id}`.
#[utoipa::path(post, path = "/ops/replay/{id}", summary = "Replay one failed media (`ops replay ID`)", tag = "ops",
    params(("id" = uuid::Uuid, Path, description = "Media id"),
        ("x-mediafleet-ops" = String, Header, description = "Must be `1`: refuses cross-site forms")),
    responses(
        (status = 200, description = "Replayed, or skipped with the reason (not failed, not found)", body = Replayed),
        (status = 401, description = "No or an invalid API key (required off loopback)", body = ErrorBody),
        (status = 403, description = "The `x-mediafleet-ops: 1` header is missing, or a foreign origin", body = ErrorBody),
        (status = 503, description = "The database does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn replay(
    State(st): State<AppState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Replayed>, ApiError> {
    require_header(&headers)?;
    let actor = actor(caller);
    let out = st.ops.actions.replay(&id, &actor).await?;
    tracing::info!(media_id = %id, actor, replayed = out.replayed.len(), "replay from the dashboard");
    Ok(Json(out))
}

/// `POST /ops/dlq/{class}/redrive`.
#[utoipa::path(post, path = "/ops/dlq/{class}/redrive", summary = "Redrive a class's dead letters (`ops dlq redrive --class C`)", tag = "ops",
    params(("class" = String, Path, description = "Job class (`image`, `video`, `cache`, `notify`, …)"),
        ("x-mediafleet-ops" = String, Header, description = "Must be `1`: refuses cross-site forms")),
    responses(
        (status = 200, description = "Up to 100 dead letters sent back to the work queue", body = Redriven),
        (status = 400, description = "Not a class name", body = ErrorBody),
        (status = 401, description = "No or an invalid API key (required off loopback)", body = ErrorBody),
        (status = 403, description = "The `x-mediafleet-ops: 1` header is missing, or a foreign origin", body = ErrorBody),
        (status = 503, description = "The queue or the database does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn redrive(
    State(st): State<AppState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    ApiPath(class): ApiPath<String>,
) -> Result<Json<Redriven>, ApiError> {
    require_header(&headers)?;
    let class = JobClass::new(&class).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let out = st.ops.actions.redrive(&class, &actor(caller)).await?;
    Ok(Json(out))
}

/// 403 unless the request carries `x-mediafleet-ops: 1`.
fn require_header(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.get(OPS_HEADER).and_then(|v| v.to_str().ok()) == Some("1") {
        return Ok(());
    }
    Err(ApiError {
        status: StatusCode::FORBIDDEN,
        code: "forbidden",
        message: format!(
            "dashboard actions need the header `{OPS_HEADER}: 1` (the /ops page sends it; cross-site forms cannot)"
        ),
    })
}

/// Who is calling, for the audit log: `key:<id>`, or `anonymous` on an open api.
fn actor(caller: Option<Extension<Caller>>) -> String {
    caller
        .and_then(|Extension(c)| c.key_id)
        .map_or_else(|| "anonymous".to_owned(), |k| format!("key:{k}"))
}

/// A failed reading: the database's own mapping, else the queue is unavailable.
fn scale_error(e: ScaleError) -> ApiError {
    match e {
        ScaleError::Db(e) => e.into(),
        other => ApiError::unavailable(format!("cannot read the fleet's status: {other}")),
    }
}
