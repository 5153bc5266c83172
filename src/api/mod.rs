//! The HTTP api (axum): uploads, media, renditions, health, and the operations dashboard (`ops`). Handlers
//! live one concern per file; SQL stays in `db`, storage calls in `storage`.

mod auth;
mod auth_throttle;
mod delete;
mod error;
mod health;
mod idempotency;
mod list;
mod media;
mod openapi;
mod ops;
mod presign;
mod renditions;
mod reprocess;
mod server;
mod upload_form;
mod upload_state;
mod uploads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use mediafleet_proto::Profiles;
use mediafleet_workers::Limits;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub use auth::{sign_rendition, signed_query_ok};
pub use error::ApiError;
pub use openapi::document as openapi_document;
pub use ops::{OpsActions, OpsState, Redriven, Replayed, SkippedMedia, OPS_HEADER};
pub use upload_form::{read_upload_form, UploadFormSummary};
pub use upload_state::{is_loopback, UploadState};

use crate::db::Records;
use crate::queue::SharedQueue;
use crate::storage::SharedStore;

/// What the api needs besides its backends.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Key and queue prefix.
    pub prefix: String,
    /// Base for absolute URLs; relative paths when `None`.
    pub public_url: Option<String>,
    /// Upload limits.
    pub limits: Limits,
    /// Known profiles (an upload may name one).
    pub profiles: Profiles,
    /// Where uploads are spooled before they go to storage (this process's own directory under the spool
    /// root; see `runtime::scratch`).
    pub scratch_dir: PathBuf,
    /// Holds the spool directory's lock for the life of the api, so no other process sweeps it.
    pub spool: Option<Arc<crate::runtime::Scratch>>,
    /// Life of presigned redirect URLs.
    pub presign_ttl: Duration,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub records: Records,
    /// The object store.
    pub store: SharedStore,
    /// The queue.
    pub queue: SharedQueue,
    /// Settings.
    pub settings: Arc<ApiSettings>,
    /// Serves media objects: Redis first when `--cache` is set, else the DB.
    pub reader: crate::media_object::MediaReader,
    /// Upload, auth and webhook state (direct uploads, relay wake-up, upload slots).
    pub uploads: Arc<UploadState>,
    /// The operations dashboard (`/ops`): its history, the queue admin and the replay/redrive actions.
    pub ops: Arc<OpsState>,
}

/// Largest JSON body of the presign and complete routes (a 10,000-part complete fits).
const SMALL_BODY: usize = 1 << 20;

/// Every route, each with its OpenAPI operation: the handler's `#[utoipa::path]` gives the method and path
/// to both the router and the document. Register routes only here and only with `routes!`: a route added
/// to the axum router directly would be served undocumented (`tests/uploads_api.rs` checks for that).
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(uploads::create))
        .routes(routes!(presign::presign).layer(DefaultBodyLimit::max(SMALL_BODY)))
        .routes(routes!(presign::complete).layer(DefaultBodyLimit::max(SMALL_BODY)))
        .routes(routes!(list::list))
        .routes(routes!(media::show, delete::remove))
        .routes(routes!(reprocess::reprocess).layer(DefaultBodyLimit::max(SMALL_BODY)))
        .routes(routes!(renditions::show))
        .routes(routes!(renditions::show_path))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::openapi))
        .routes(routes!(ops::dashboard))
        .routes(routes!(ops::status))
        .routes(routes!(ops::replay))
        .routes(routes!(ops::redrive))
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    let (router, _document) = routes().split_for_parts();
    router
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        // Outside the guard, so refused requests (401, 403, 429) are counted too.
        .layer(axum::middleware::from_fn(count_request))
        // Every request runs under a W3C trace context (taken from `traceparent` or started) that the jobs
        // it enqueues carry to the workers; the answer carries it back.
        .layer(axum::middleware::from_fn(crate::trace::layer))
        // Upload bodies are streamed to disk with our own per-kind limits, so axum's 2 MB default is off.
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Counts each answered request by its route template (`MatchedPath`: `/v1/media/{id}`, never the id), so
/// the label set stays small.
async fn count_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    crate::scale::metrics::METRICS.http(
        &route,
        &method,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// Serves until `shutdown` is cancelled; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "api listening");
    }
    let header_timeout = state.uploads.settings.header_timeout;
    server::serve(listener, router(state), shutdown, header_timeout).await
}
