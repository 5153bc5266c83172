//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: every backend answers. `not_ready` (503) when the DB, queue or storage does not.
pub async fn readyz(State(st): State<AppState>) -> (StatusCode, Json<Value>) {
    let (db, queue, storage) = tokio::join!(st.records.ping(), st.queue.ping(), st.store.ping());
    let check = |r: Result<(), String>| match r {
        Ok(()) => json!({"status": "ok"}),
        Err(e) => json!({"status": "down", "error": e}),
    };
    let all_ok = db.is_ok() && queue.is_ok() && storage.is_ok();
    let body = json!({
        "status": if all_ok { "ready" } else { "not_ready" },
        "checks": {
            "db": check(db.map_err(|e| e.to_string())),
            "queue": check(queue.map_err(|e| e.to_string())),
            "storage": check(storage.map_err(|e| e.to_string())),
        }
    });
    let code = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
