//! API keys and rendition access, as one middleware in front of every `/v1/` route.
//!
//! - A request with `Authorization: Bearer <key>` must carry a live key, whatever the route (a wrong key is
//!   never silently ignored). The key's id becomes the request's [`Caller`], the scope of its
//!   `Idempotency-Key`s.
//! - Without a key: `/v1/` routes answer 401 when keys are required (configured, or `--listen` is not a
//!   loopback address). `/metrics` and the `/ops` dashboard follow the same rule; health and `/openapi.json`
//!   are always open.
//! - Rendition routes follow `[auth] renditions`: `public` serves anyone; `private` needs a key or a query
//!   signed by the app's backend: `?expires=<unix>&signature=<hex HMAC-SHA256(secret, "<path>\n<expires>")>`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{ApiError, AppState};
use crate::config::RenditionAccess;

/// Who is calling: the API key's id, or nobody (open loopback api).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The key id, when a key was given.
    pub key_id: Option<String>,
}

impl Caller {
    /// The idempotency scope of this caller.
    pub fn scope(&self) -> &str {
        self.key_id.as_deref().unwrap_or("anonymous")
    }
}

/// 401.
pub fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: message.into(),
    }
}

/// 429 with `Retry-After`: this client failed too many key checks (see [`super::auth_throttle`]).
fn too_many_failures(wait: std::time::Duration) -> Response {
    use axum::response::IntoResponse;
    let mut res = ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "rate_limited",
        message: "too many requests with an invalid API key from this address; retry later".into(),
    }
    .into_response();
    res.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(wait.as_secs().max(1)),
    );
    res
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn is_rendition(path: &str) -> bool {
    let mut seg = path.trim_start_matches('/').split('/');
    matches!(
        (seg.next(), seg.next(), seg.next(), seg.next()),
        (Some("v1"), Some("media"), Some(_), Some("renditions"))
    )
}

/// The signature of a rendition path valid until `expires` (Unix seconds).
pub fn sign_rendition(secret: &str, path: &str, expires: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{path}\n{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `query` carries an unexpired `expires` and a `signature` that [`sign_rendition`] made for `path`
/// with `secret` (what a private rendition route accepts without an API key).
pub fn signed_query_ok(secret: &str, path: &str, query: Option<&str>) -> bool {
    let mut expires = None;
    let mut sig = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "expires" => expires = v.parse::<i64>().ok(),
            "signature" => sig = hex::decode(v.as_bytes()).ok(),
            _ => {}
        }
    }
    let (Some(expires), Some(sig)) = (expires, sig) else {
        return false;
    };
    if expires < chrono::Utc::now().timestamp() {
        return false;
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{path}\n{expires}").as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// An open (keyless, loopback) api answers only requests addressed to it by a loopback name or its public
/// URL's host, and, when a browser says where a request comes from, only pages of those same hosts. Without
/// this, any web page could upload to or delete from a developer's local api (cross-site form posts need no
/// preflight), and a rebound DNS name could read from it.
fn same_site(req: &Request, public_url: Option<&str>) -> Result<(), ApiError> {
    let public_host = public_url
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned));
    let allowed = |host: &str| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        matches!(host, "localhost" | "127.0.0.1" | "::1")
            || host.ends_with(".localhost")
            || public_host.as_deref() == Some(host)
    };
    let forbidden = |message: String| ApiError {
        status: StatusCode::FORBIDDEN,
        code: "forbidden",
        message,
    };
    if let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        };
        if !allowed(name) {
            return Err(forbidden(format!(
                "Host {host:?} is not this api's: an api without keys answers loopback names and --public-url only"
            )));
        }
    }
    if let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|h| h.to_str().ok())
    {
        let host = url::Url::parse(origin)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        if !host.as_deref().is_some_and(allowed) {
            return Err(forbidden(format!(
                "requests from {origin:?} are refused: an api without keys accepts its own pages only"
            )));
        }
    }
    Ok(())
}

/// The middleware.
pub async fn guard(
    State(st): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = req.uri().path().to_owned();
    // `/metrics` and the `/ops` dashboard are guarded like the API: open on a loopback api without keys,
    // behind a key otherwise.
    let dashboard = path == "/ops" || path.starts_with("/ops/");
    if !path.starts_with("/v1/") && path != "/metrics" && !dashboard {
        return Ok(next.run(req).await);
    }
    let caller = match bearer(req.headers()) {
        Some(token) => {
            let throttle = &st.uploads.auth_throttle;
            let client = throttle.client(req.headers(), req.extensions().get());
            if let Some(wait) = client.and_then(|c| throttle.check(c).err()) {
                return Ok(too_many_failures(wait));
            }
            match st.records.authenticate(token).await? {
                Some(key) => Caller {
                    key_id: Some(key.id),
                },
                None => {
                    if let Some(wait) = client.and_then(|c| throttle.failed(c)) {
                        tracing::warn!(client = ?client, "too many failed API-key checks; client blocked");
                        return Ok(too_many_failures(wait));
                    }
                    return Err(unauthorized(
                        "the API key is not valid (unknown or revoked)",
                    ));
                }
            }
        }
        None => Caller::default(),
    };
    if caller.key_id.is_none() && !st.uploads.require_keys {
        same_site(&req, st.settings.public_url.as_deref())?;
    }
    if caller.key_id.is_none() {
        let up = &st.uploads;
        let allowed = if is_rendition(&path) {
            match up.settings.renditions {
                RenditionAccess::Public => true,
                RenditionAccess::Private => up
                    .settings
                    .signing_secret
                    .as_deref()
                    .is_some_and(|s| signed_query_ok(s, &path, req.uri().query())),
            }
        } else {
            !up.require_keys
        };
        if !allowed {
            return Err(unauthorized(
                "this route needs an API key: send `Authorization: Bearer <key>` (create one with `mediafleet ops keys create`)",
            ));
        }
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendition_paths_and_signatures() {
        assert!(is_rendition("/v1/media/abc/renditions/thumb"));
        assert!(is_rendition("/v1/media/abc/renditions/hls/seg1.ts"));
        assert!(!is_rendition("/v1/media/abc"));
        let path = "/v1/media/abc/renditions/thumb";
        let exp = chrono::Utc::now().timestamp() + 60;
        let sig = sign_rendition("k", path, exp);
        let q = format!("expires={exp}&signature={sig}");
        assert!(signed_query_ok("k", path, Some(&q)));
        assert!(!signed_query_ok("other", path, Some(&q)));
        assert!(!signed_query_ok(
            "k",
            "/v1/media/abd/renditions/thumb",
            Some(&q)
        ));
        let old = format!("expires=1&signature={}", sign_rendition("k", path, 1));
        assert!(!signed_query_ok("k", path, Some(&old)));
    }
}
