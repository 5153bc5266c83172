//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// `GET /healthz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: Alive,
}

/// The only liveness answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Alive {
    /// The process answers.
    Ok,
}

/// `GET /readyz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `degraded` (only the cache is down; still 200) or `not_ready` (503).
    status: ReadyState,
    /// One check per backend: `db`, `queue`, `storage`, and `cache` when one is configured.
    checks: std::collections::BTreeMap<String, Check>,
}

/// Readiness as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyState {
    /// Every backend answers.
    Ready,
    /// Only the cache does not answer (reads fall back to the DB): still 200.
    Degraded,
    /// The DB, queue or storage does not answer: 503.
    NotReady,
}

/// One backend's check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `ok`, `down` or (cache only) `degraded`.
    status: CheckStatus,
    /// Why it is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<String>,
}

/// One backend's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// It answers.
    Ok,
    /// It does not answer.
    Down,
    /// The cache does not answer; nothing fails for users.
    Degraded,
}

impl Check {
    fn of(r: Result<(), String>, failed: CheckStatus) -> Check {
        match r {
            Ok(()) => Check {
                status: CheckStatus::Ok,
                error: None,
            },
            Err(e) => Check {
                status: failed,
                error: Some(e),
            },
        }
    }
}

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", summary = "Liveness", tag = "health",
    responses((status = 200, description = "The process answers", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: Alive::Ok })
}

/// `GET /metrics`: this process's metrics in the Prometheus text format (HTTP requests by route template,
/// method and status; DB statements refused; outbox rows parked). Open on a loopback api without keys,
/// behind an API key otherwise.
#[utoipa::path(get, path = "/metrics", summary = "Prometheus metrics", tag = "health", responses(
    (status = 200, description = "The Prometheus text exposition (version 0.0.4)", content_type = "text/plain", body = String),
    (status = 401, description = "No or an invalid API key (keys required)", body = super::error::ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn metrics() -> impl axum::response::IntoResponse {
    crate::scale::metrics::metrics().await
}

/// `GET /readyz`: every backend answers. `not_ready` (503) when the DB, queue or storage does not;
/// `degraded` (still 200: reads fall back to the DB) when only the cache does not.
#[utoipa::path(get, path = "/readyz", summary = "Readiness: every backend answers", tag = "health", responses(
    (status = 200, description = "Ready, or degraded (the cache is down; reads fall back to the DB)", body = Readiness),
    (status = 503, description = "The DB, queue or storage does not answer", body = Readiness)))]
pub async fn readyz(State(st): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (db, queue, storage) = tokio::join!(st.records.ping(), st.queue.ping(), st.store.ping());
    let all_ok = db.is_ok() && queue.is_ok() && storage.is_ok();
    let mut checks = std::collections::BTreeMap::from([
        (
            "db".to_owned(),
            Check::of(db.map_err(|e| e.to_string()), CheckStatus::Down),
        ),
        (
            "queue".to_owned(),
            Check::of(queue.map_err(|e| e.to_string()), CheckStatus::Down),
        ),
        (
            "storage".to_owned(),
            Check::of(storage.map_err(|e| e.to_string()), CheckStatus::Down),
        ),
    ]);
    let cache = cache_check(&st).await;
    let cache_ok = cache.as_ref().is_none_or(|c| c.status == CheckStatus::Ok);
    if let Some(c) = cache {
        checks.insert("cache".to_owned(), c);
    }
    let status = match (all_ok, cache_ok) {
        (false, _) => ReadyState::NotReady,
        (true, false) => ReadyState::Degraded,
        (true, true) => ReadyState::Ready,
    };
    let code = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(Readiness { status, checks }))
}

/// The cache's check, `None` when no cache is configured. A cache that does not answer is `degraded`:
/// nothing fails for users, reads come from the DB.
async fn cache_check(st: &AppState) -> Option<Check> {
    let cache = st.reader.cache()?;
    Some(Check::of(
        cache.ping().await.map_err(|e| e.to_string()),
        CheckStatus::Degraded,
    ))
}
