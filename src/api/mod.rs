//! The HTTP api (axum): uploads, media, renditions, health. Handlers live one concern per file; SQL stays
//! in `db`, storage calls in `storage`.

mod auth;
mod delete;
mod error;
mod health;
mod idempotency;
mod list;
mod media;
mod openapi;
mod presign;
mod renditions;
mod reprocess;
mod server;
mod upload_state;
mod uploads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use mediafleet_proto::Profiles;
use mediafleet_workers::Limits;
use tokio_util::sync::CancellationToken;

pub use auth::sign_rendition;
pub use error::ApiError;
pub use openapi::document as openapi_document;
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
    /// Where uploads are spooled before they go to storage.
    pub scratch_dir: PathBuf,
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
}

/// Largest JSON body of the presign and complete routes (a 10,000-part complete fits).
const SMALL_BODY: usize = 1 << 20;

/// The router with every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/uploads", post(uploads::create))
        .route(
            "/v1/uploads/presign",
            post(presign::presign).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/uploads/{id}/complete",
            post(presign::complete).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route("/v1/media", get(list::list))
        .route("/v1/media/{id}", get(media::show).delete(delete::remove))
        .route(
            "/v1/media/{id}/reprocess",
            post(reprocess::reprocess).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route("/v1/media/{id}/renditions/{name}", get(renditions::show))
        .route(
            "/v1/media/{id}/renditions/{name}/{*path}",
            get(renditions::show_path),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::openapi))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        // Upload bodies are streamed to disk with our own per-kind limits, so axum's 2 MB default is off.
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
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
