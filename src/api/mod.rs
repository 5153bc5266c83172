//! The HTTP api (axum): uploads, media, renditions, health. Handlers live one concern per file; SQL stays
//! in `db`, storage calls in `storage`.

mod error;
mod health;
mod media;
mod renditions;
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

pub use error::ApiError;

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
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/uploads", post(uploads::create))
        .route("/v1/media/{id}", get(media::show))
        .route("/v1/media/{id}/renditions/{name}", get(renditions::show))
        .route(
            "/v1/media/{id}/renditions/{name}/{*path}",
            get(renditions::show_path),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
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
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
