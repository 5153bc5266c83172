//! `Idempotency-Key`: a retry of the same request returns the same media, never a second one.
//!
//! A request's fingerprint is a hash of what makes it that request: for `POST /v1/uploads` the file's content
//! hash plus its fields (never the raw multipart bytes, whose boundary changes on every retry); for presign,
//! the JSON fields. The key is scoped to the caller's API key. The same key with another fingerprint is 422
//! `idempotency_conflict`. The key row is written in the transaction that creates the media, so two racing
//! retries cannot both create one.

use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

use super::ApiError;

/// The header.
pub const HEADER: &str = "idempotency-key";

/// The request's key, if it sent one (1–255 visible ASCII characters).
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| (0x21..0x7f).contains(&b)))
        .ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key must be 1-255 visible ASCII characters")
        })?;
    Ok(Some(s.to_owned()))
}

/// Hash of the parts that identify a request.
pub fn fingerprint(parts: &[Option<&str>]) -> String {
    let json = serde_json::to_vec(parts).expect("strings serialise");
    hex::encode(Sha256::digest(json))
}

/// 422 `idempotency_conflict`.
pub fn conflict() -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "idempotency_conflict",
        message: "this Idempotency-Key was already used for a different request".into(),
    }
}

/// The media an earlier use of the key made, when the fingerprints match; 422 when they differ.
pub fn replayed(earlier: (String, String), fingerprint: &str) -> Result<String, ApiError> {
    if earlier.1 == fingerprint {
        Ok(earlier.0)
    } else {
        Err(conflict())
    }
}
