//! `GET /v1/media/{id}/renditions/{name}[/{path}]`: the stable rendition route.
//!
//! Local storage: the bytes, with `Range` (tower-http), a strong `ETag` (the content hash) and
//! `Cache-Control`. S3: a redirect to a short-lived presigned URL.
//!
//! A directory rendition (`hls`, whose file is `hls/master.m3u8`) is stored under one prefix; its other files
//! are served by path relative to the master: `…/renditions/hls/720p/index.m3u8`, `…/hls/720p/seg_0000.ts`.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use mediafleet_proto::MediaStatus;
use tower::ServiceExt;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

use super::auth::Caller;
use super::error::{ApiPath, ErrorBody};
use super::media::parse_id;
use super::{ApiError, AppState};
use crate::config::RenditionAccess;

/// Bytes of any type (the schema of file bodies).
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for Binary {
    fn name() -> Cow<'static, str> {
        "Binary".into()
    }
}

/// `GET /v1/media/{id}/renditions/{name}`.
#[utoipa::path(get, path = "/v1/media/{id}/renditions/{name}", summary = "A rendition: its bytes (local storage) or a redirect to a presigned URL (S3)", tag = "renditions",
    params(
        ("id" = uuid::Uuid, Path, description = "Media id"),
        ("name" = String, Path, description = "Rendition name: thumb, preview, poster, mp4-720, hls, audio, peaks"),
        ("expires" = Option<i64>, Query, description = "Signed URL expiry (Unix seconds), with `[auth] renditions = \"private\"`"),
        ("signature" = Option<String>, Query, description = "hex HMAC-SHA256(secret, \"<path>\\n<expires>\")")),
    responses(
        (status = 200, description = "The rendition's bytes (local storage)", body = Binary, content_type = "*/*",
            headers(("ETag" = String, description = "The content hash"), ("Cache-Control" = String))),
        (status = 206, description = "A `Range` of the bytes", body = Binary, content_type = "*/*"),
        (status = 304, description = "`If-None-Match` matched the ETag"),
        (status = 307, description = "S3 storage: a redirect to a short-lived presigned URL",
            headers(("Location" = String, description = "The presigned URL"))),
        (status = 401, description = "No or an invalid API key, or (private renditions) no valid signature", body = ErrorBody),
        (status = 404, description = "No such media or rendition", body = ErrorBody),
        (status = 416, description = "The `Range` is outside the file"),
        (status = 503, description = "The database or storage does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn show(
    State(st): State<AppState>,
    ApiPath((id, name)): ApiPath<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    serve(st, &id, &name, None, req).await
}

/// `GET /v1/media/{id}/renditions/{name}/{*path}` (files inside a multi-file rendition such as `hls`).
/// The document names the wildcard `{path}` (OpenAPI has no wildcard); `path` may contain `/`.
#[utoipa::path(get, path = "/v1/media/{id}/renditions/{name}/{*path}", summary = "A file inside a multi-file rendition (the playlists and segments of `hls`)", tag = "renditions",
    params(
        ("id" = uuid::Uuid, Path, description = "Media id"),
        ("name" = String, Path, description = "A multi-file rendition, e.g. hls"),
        ("path" = String, Path, description = "A file inside it, relative to its main file (`720p/index.m3u8`); may contain `/`"),
        ("expires" = Option<i64>, Query, description = "Signed URL expiry (Unix seconds)"),
        ("signature" = Option<String>, Query, description = "The signature of this path")),
    responses(
        (status = 200, description = "The file's bytes (local storage)", body = Binary, content_type = "*/*",
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 206, description = "A `Range` of the bytes", body = Binary, content_type = "*/*"),
        (status = 304, description = "`If-None-Match` matched the ETag"),
        (status = 307, description = "S3 storage: a redirect to a short-lived presigned URL",
            headers(("Location" = String))),
        (status = 401, description = "No or an invalid API key, or (private renditions) no valid signature", body = ErrorBody),
        (status = 404, description = "No such media, rendition or file", body = ErrorBody),
        (status = 416, description = "The `Range` is outside the file"),
        (status = 503, description = "The database or storage does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn show_path(
    State(st): State<AppState>,
    ApiPath((id, name, path)): ApiPath<(String, String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    serve(st, &id, &name, Some(&path), req).await
}

async fn serve(
    st: AppState,
    id: &str,
    name: &str,
    sub: Option<&str>,
    req: Request,
) -> Result<Response, ApiError> {
    let id = parse_id(id)?;
    let missing = || ApiError::not_found(format!("rendition {name} of media {id} not found"));
    let media = st.records.media(&id).await?.ok_or_else(missing)?;
    if media.status == MediaStatus::Deleted {
        return Err(missing());
    }
    let rendition = st
        .records
        .renditions(&id)
        .await?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(missing)?;
    let (key, etag) = match sub {
        None => (rendition.key.clone(), format!("\"{}\"", rendition.sha256)),
        Some(path) => {
            // Files beside the rendition's main file (playlists, segments) share its directory.
            let dir = rendition.key.rsplit_once('/').map_or("", |(d, _)| d);
            (
                format!("{dir}/{path}"),
                format!("\"{}-{}\"", rendition.sha256, path),
            )
        }
    };
    crate::storage::validate_key(&key).map_err(|_| missing())?;
    let cache_control = cache_control(&st, &req);
    if let Some(url) = st.store.presign_get(&key, st.settings.presign_ttl).await? {
        let mut res = Redirect::temporary(&url).into_response();
        if st.uploads.settings.renditions == RenditionAccess::Private {
            // The presigned URL is a bearer credential: no cache may keep or share the redirect.
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        return Ok(res);
    }
    let path = st.store.local_path(&key).ok_or_else(missing)?;
    if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Err(missing());
    }
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| missing())?;
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes() || v.as_bytes() == b"*");
    if not_modified {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag_value),
                (header::CACHE_CONTROL, cache_control),
            ],
        )
            .into_response());
    }
    let mut res = tower_http::services::ServeFile::new(&path)
        .oneshot(req)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .map(Body::new);
    let h = res.headers_mut();
    // The stored type for the rendition's own file; for files inside it (HLS playlists and segments) the type
    // follows the extension, because a guess from a `.ts` name would say TypeScript.
    let content_type = match sub {
        None => rendition.content_type.as_str(),
        Some(path) => mediafleet_workers::output::content_type(path),
    };
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    h.insert(header::ETAG, etag_value);
    h.insert(header::CACHE_CONTROL, cache_control);
    Ok(res)
}

/// How long a browser or a shared cache may keep a rendition (RFC 9111).
///
/// Public renditions: any cache, for an hour (the route is stable, but a reprocess changes its content).
/// Private renditions: never a shared cache (`private`); fetched with an API key, not even the browser
/// (`no-store`), because the key, not the URL, was the credential; fetched with a signed URL, the browser
/// may keep it until the signature expires, an hour at most.
fn cache_control(st: &AppState, req: &Request) -> HeaderValue {
    const PUBLIC_MAX_AGE: i64 = 3600;
    if st.uploads.settings.renditions == RenditionAccess::Public {
        return HeaderValue::from_static("public, max-age=3600");
    }
    let keyed = req
        .extensions()
        .get::<Caller>()
        .is_some_and(|c| c.key_id.is_some());
    if keyed {
        return HeaderValue::from_static("no-store");
    }
    let expires = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "expires")
        .and_then(|(_, v)| v.parse::<i64>().ok());
    let left = expires.map_or(0, |e| e - chrono::Utc::now().timestamp());
    let age = left.clamp(0, PUBLIC_MAX_AGE);
    HeaderValue::from_str(&format!("private, max-age={age}"))
        .unwrap_or(HeaderValue::from_static("no-store"))
}
