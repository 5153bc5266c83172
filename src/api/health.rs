//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::AppState;

/// `GET /healthz`'s answer.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: the handler builds the JSON
pub struct Health {
    /// Always `ok`.
    #[schema(pattern = "^ok$")]
    status: String,
}

/// `GET /readyz`'s answer.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
pub struct Readiness {
    /// `ready`, `degraded` (only the cache is down; still 200) or `not_ready` (503).
    #[schema(pattern = "^(ready|degraded|not_ready)$")]
    status: String,
    /// One check per backend: `db`, `queue`, `storage`, and `cache` when one is configured.
    checks: std::collections::BTreeMap<String, Check>,
}

/// One backend's check.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
pub struct Check {
    /// `ok`, `down` or (cache only) `degraded`.
    #[schema(pattern = "^(ok|down|degraded)$")]
    status: String,
    /// Why it is not `ok`.
    error: Option<String>,
}

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", summary = "Liveness", tag = "health",
    responses((status = 200, description = "The process answers", body = Health)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: every backend answers. `not_ready` (503) when the DB, queue or storage does not;
/// `degraded` (still 200: reads fall back to the DB) when only the cache does not.
#[utoipa::path(get, path = "/readyz", summary = "Readiness: every backend answers", tag = "health", responses(
    (status = 200, description = "Ready, or degraded (the cache is down; reads fall back to the DB)", body = Readiness),
    (status = 503, description = "The DB, queue or storage does not answer", body = Readiness)))]
pub async fn readyz(State(st): State<AppState>) -> (StatusCode, Json<Value>) {
    let (db, queue, storage) = tokio::join!(st.records.ping(), st.queue.ping(), st.store.ping());
    let check = |r: Result<(), String>| match r {
        Ok(()) => json!({"status": "ok"}),
        Err(e) => json!({"status": "down", "error": e}),
    };
    let all_ok = db.is_ok() && queue.is_ok() && storage.is_ok();
    let cache = cache_check(&st).await;
    let cache_ok = cache.as_ref().is_none_or(|c| c["status"] == "ok");
    let mut body = json!({
        "status": match (all_ok, cache_ok) {
            (false, _) => "not_ready",
            (true, false) => "degraded",
            (true, true) => "ready",
        },
        "checks": {
            "db": check(db.map_err(|e| e.to_string())),
            "queue": check(queue.map_err(|e| e.to_string())),
            "storage": check(storage.map_err(|e| e.to_string())),
        }
    });
    if let Some(c) = cache {
        body["checks"]["cache"] = c;
    }
    let code = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// The cache's check, `None` when no cache is configured. A cache that does not answer is `degraded`:
/// nothing fails for users, reads come from the DB.
async fn cache_check(st: &AppState) -> Option<Value> {
    let cache = st.reader.cache()?;
    Some(match cache.ping().await {
        Ok(()) => json!({"status": "ok"}),
        Err(e) => json!({"status": "degraded", "error": e.to_string()}),
    })
}
