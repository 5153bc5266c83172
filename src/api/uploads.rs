//! `POST /v1/uploads`: multipart field `file`, or a raw body with a Content-Type.
//!
//! The body is streamed to a spool file while it is hashed, counted and sniffed: the per-kind byte limit
//! applies as soon as the first bytes reveal the kind, and the request is refused with 413 the moment it is
//! passed, without reading the rest. Content that is not media (by magic bytes, never by name) is 415, and
//! no media row is created for a refused upload.
//!
//! Uploads hold one of a capped number of slots (503 when all are busy), and a body that stalls longer than
//! `[uploads] body_idle_timeout` is cut off with 408. The media row, the `Idempotency-Key` row and the
//! `media.process` outbox row are written in one transaction; the relay publishes the job.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Extension, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use futures::{Stream, StreamExt};
use mediafleet_proto::{MediaKind, MediaStatus};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiQuery, ErrorBody};
use super::renditions::Binary;
use super::upload_form::{Fields, FormPart, FormReader};
use super::{idempotency, ApiError, AppState};
use crate::db::{IdempotencyClaim, Inserted, NewMedia, OutboxJob, UploadExtra};
use crate::storage::keys;

/// How many leading bytes the sniffer sees.
const SNIFF_BYTES: usize = 8192;

/// Bytes of an upload held in memory before they are written to its spool file.
const SPOOL_BUFFER: usize = 256 * 1024;

/// The pace an upload body must keep: no gap longer than the idle timeout, an average rate of at least
/// `min_rate` once the grace period has passed, and a total deadline. Slow clients would otherwise hold the
/// capped upload slots (slowloris on the body).
struct Pace {
    started: tokio::time::Instant,
    idle: std::time::Duration,
    min_rate: u64,
    grace: std::time::Duration,
    deadline: std::time::Duration,
}

impl Pace {
    fn new(s: &crate::config::UploadSettings) -> Self {
        Pace {
            started: tokio::time::Instant::now(),
            idle: s.body_idle_timeout,
            min_rate: s.min_rate,
            grace: s.min_rate_grace,
            deadline: s.body_deadline,
        }
    }

    /// How long to wait for the next chunk: the idle timeout, or less if the deadline is nearer.
    fn wait(&self) -> std::time::Duration {
        self.idle
            .min(self.deadline.saturating_sub(self.started.elapsed()))
            .max(std::time::Duration::from_millis(1))
    }

    /// The 408 for a body that stopped, given what had arrived.
    fn cut(&self, bytes: u64) -> ApiError {
        if self.started.elapsed() >= self.deadline {
            return timeout(format!(
                "the upload body took longer than {:?} ({bytes} bytes arrived)",
                self.deadline
            ));
        }
        timeout(format!(
            "the upload body stalled for more than {:?}",
            self.idle
        ))
    }

    /// Checks the average rate and the deadline after a chunk.
    fn check(&self, bytes: u64) -> Result<(), ApiError> {
        let elapsed = self.started.elapsed();
        if elapsed >= self.deadline {
            return Err(self.cut(bytes));
        }
        if elapsed > self.grace && (bytes as f64) < self.min_rate as f64 * elapsed.as_secs_f64() {
            return Err(timeout(format!(
                "the upload body arrives slower than {} bytes/s ({bytes} bytes in {:.0?})",
                self.min_rate, elapsed
            )));
        }
        Ok(())
    }
}

fn timeout(message: String) -> ApiError {
    ApiError {
        status: StatusCode::REQUEST_TIMEOUT,
        code: "bad_request",
        message,
    }
}

/// The spooled original.
struct Spooled {
    file: tempfile::TempPath,
    /// The spool bytes this file holds, given back when it is dropped (after the file is removed).
    _share: crate::runtime::budget::Share,
    bytes: u64,
    sha256: String,
    kind: MediaKind,
    mime: String,
}

/// `202 {"id","status"}`: the answer of `POST /v1/uploads` and `POST /v1/uploads/{id}/complete`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Accepted {
    /// Media id.
    #[schema(value_type = uuid::Uuid)]
    pub id: String,
    /// `queued` for a new upload; a repeated request answers the media's current status.
    #[schema(value_type = String, pattern = "^(uploading|queued|processing|ready|failed|deleted)$")]
    pub status: MediaStatus,
}

/// The multipart form of `POST /v1/uploads`. Unknown fields are refused (400); text fields are at most
/// 4096 bytes, and at most 64 KiB of form may come before the file part.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: the handler streams the fields
pub struct UploadForm {
    /// The file (exactly one); its kind is found by content, never by name.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Profile name (default `default`).
    profile: Option<String>,
    /// The client's own id.
    external_id: Option<String>,
    /// Webhook target.
    callback_url: Option<String>,
}

/// `POST /v1/uploads`.
#[utoipa::path(post, path = "/v1/uploads", summary = "Upload a file (multipart field `file`, or a raw body), streamed to storage", tag = "uploads",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
            description = "A retry with the same key and request answers the same media"),
        ("profile" = Option<String>, Query, description = "Profile name (raw bodies; a form field wins)"),
        ("external_id" = Option<String>, Query, description = "The client's own id"),
        ("callback_url" = Option<String>, Query, description = "Webhook target"),
        ("filename" = Option<String>, Query, description = "Client file name (kept as metadata)")),
    request_body(description = "A multipart form with a `file` field, or the file itself as the body",
        content(
            (UploadForm = "multipart/form-data"),
            (Binary = "application/octet-stream"),
            (Binary = "image/*"),
            (Binary = "video/*"),
            (Binary = "audio/*"))),
    responses(
        (status = 202, description = "Stored; processing is queued", body = Accepted),
        (status = 400, description = "Malformed multipart body, unknown profile, refused callback_url or bad Idempotency-Key", body = ErrorBody),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 408, description = "The body stalled longer than `[uploads] body_idle_timeout`", body = ErrorBody),
        (status = 413, description = "Over the size limit for the media's kind", body = ErrorBody),
        (status = 415, description = "Not an image, video or audio file (checked by content) or empty", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
        (status = 503, description = "Every upload slot is busy, or a backend does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn create(
    State(st): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
    req: Request,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let _slot = st.uploads.slot()?;
    let idem = idempotency::key(req.headers())?.map(|key| IdempotencyClaim {
        scope: caller
            .map(|c| c.0.scope().to_owned())
            .unwrap_or_else(|| "anonymous".into()),
        key,
        fingerprint: String::new(),
    });
    let max = st
        .settings
        .limits
        .image_bytes
        .max(st.settings.limits.video_bytes);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max + 64 * 1024) {
        return Err(ApiError::too_large(format!(
            "upload is larger than the {max}-byte limit"
        )));
    }
    // A body that can never fit the spool is refused before a byte is read (a multipart body's form
    // overhead is small beside the budgets this matters for), not with 503 once others fill the spool.
    let spool_limit = st.uploads.spool.limit;
    if declared.is_some_and(|n| n > spool_limit.saturating_add(64 * 1024)) {
        return Err(ApiError::too_large(format!(
            "the upload is larger than the api's {spool_limit}-byte upload spool"
        )));
    }
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    let mut fields = Fields {
        profile: query.get("profile").cloned(),
        external_id: query.get("external_id").cloned(),
        callback_url: query.get("callback_url").cloned(),
        filename: query.get("filename").cloned(),
    };
    let spooled = if is_multipart {
        let mut form = FormReader::new(req, &st, fields).await?;
        let mut spooled = None;
        while let Some(part) = form.next_part().await? {
            if let FormPart::File(field) = part {
                let stream = (*field).map(|c| c.map_err(|e| e.to_string()));
                spooled = Some(spool(&st, stream).await?);
            }
        }
        fields = form.fields;
        spooled.ok_or_else(|| ApiError::bad_request("multipart upload has no `file` field"))?
    } else {
        let stream = req
            .into_body()
            .into_data_stream()
            .map(|c| c.map_err(|e| e.to_string()));
        spool(&st, stream).await?
    };
    accept(&st, spooled, fields, idem).await
}

/// Streams a body into a spool file, enforcing the byte limits and sniffing the content.
async fn spool<S>(st: &AppState, mut stream: S) -> Result<Spooled, ApiError>
where
    S: Stream<Item = Result<Bytes, String>> + Unpin,
{
    let limits = &st.settings.limits;
    let dir = st.settings.scratch_dir.clone();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::unavailable(format!("spool dir: {e}")))?;
    let (file, path) = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(&dir)
        .map_err(|e| ApiError::unavailable(format!("spool file: {e}")))?
        .into_parts();
    // Written through a buffer: a typical photo reaches the file in one write on the blocking pool rather
    // than one per body chunk.
    let mut file =
        tokio::io::BufWriter::with_capacity(SPOOL_BUFFER, tokio::fs::File::from_std(file));
    let mut hasher = Sha256::new();
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    let mut bytes = 0u64;
    let mut limit = limits.image_bytes.max(limits.video_bytes);
    let mut kind: Option<(MediaKind, String)> = None;
    let pace = Pace::new(&st.uploads.settings);
    let mut share = st.uploads.spool.share();
    loop {
        let next = tokio::time::timeout(pace.wait(), stream.next())
            .await
            .map_err(|_| pace.cut(bytes))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        bytes += chunk.len() as u64;
        pace.check(bytes)?;
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            if head.len() == SNIFF_BYTES && kind.is_none() {
                kind = Some(sniff(&head)?);
                limit = kind_limit(st, kind.as_ref().map(|k| k.0));
            }
        }
        if bytes > limit {
            return Err(ApiError::too_large(format!(
                "upload is larger than the {limit}-byte limit for this kind"
            )));
        }
        super::upload_state::grow_spool(&mut share, chunk.len() as u64)?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::unavailable(format!("spool write: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let (kind, mime) = match kind {
        Some(k) => k,
        None => sniff(&head)?,
    };
    if bytes > kind_limit(st, Some(kind)) {
        return Err(ApiError::too_large(
            "upload is larger than the limit for this kind",
        ));
    }
    Ok(Spooled {
        file: path,
        _share: share,
        bytes,
        sha256: hex::encode(hasher.finalize()),
        kind,
        mime,
    })
}

fn kind_limit(st: &AppState, kind: Option<MediaKind>) -> u64 {
    match kind {
        Some(MediaKind::Image) => st.settings.limits.image_bytes,
        _ => st.settings.limits.video_bytes,
    }
}

fn sniff(head: &[u8]) -> Result<(MediaKind, String), ApiError> {
    match mediafleet_workers::sniff::sniff(head) {
        Some(s) => Ok((s.kind, s.mime.to_string())),
        None if head.is_empty() => Err(ApiError::unsupported("the upload is empty")),
        None => Err(ApiError::unsupported(
            "the upload is not an image, video or audio file we recognise (checked by content, not name)",
        )),
    }
}

/// Stores the original, then writes the media row, the idempotency key and the job in one transaction.
async fn accept(
    st: &AppState,
    up: Spooled,
    fields: Fields,
    idem: Option<IdempotencyClaim>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let profile = fields.profile.unwrap_or_else(|| "default".into());
    if !st.settings.profiles.contains_key(&profile) {
        return Err(ApiError::bad_request(format!(
            "unknown profile {profile:?}"
        )));
    }
    if let Some(cb) = &fields.callback_url {
        st.uploads
            .webhooks
            .check_url(cb)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let idem = idem.map(|mut c| {
        c.fingerprint = idempotency::fingerprint(&[
            Some("upload"),
            Some(&up.sha256),
            Some(&profile),
            fields.external_id.as_deref(),
            fields.callback_url.as_deref(),
            fields.filename.as_deref(),
        ]);
        c
    });
    let accepted = |id: &str| {
        (
            StatusCode::ACCEPTED,
            Json(Accepted {
                id: id.to_owned(),
                status: MediaStatus::Queued,
            }),
        )
    };
    if let Some(c) = &idem {
        if let Some(earlier) = st.records.idempotency(&c.scope, &c.key).await? {
            return Ok(accepted(&idempotency::replayed(earlier, &c.fingerprint)?));
        }
    }
    let id = uuid::Uuid::now_v7();
    let id_s = id.to_string();
    let source_key = keys::original(&st.settings.prefix, &id_s);
    st.store.put_file(&source_key, &up.file, &up.mime).await?;
    let media = NewMedia {
        id: id_s.clone(),
        kind: up.kind.as_str().into(),
        profile: profile.clone(),
        source_key: source_key.clone(),
        filename: fields.filename,
        content_type: up.mime,
        bytes: i64::try_from(up.bytes).unwrap_or(i64::MAX),
        sha256: up.sha256,
        external_id: fields.external_id,
    };
    // OUTBOX: the row and its job commit together; the relay publishes the job (see crate::relay).
    let job = OutboxJob::media_process(id, &source_key, &profile, up.kind);
    let extra = UploadExtra {
        status: "queued",
        callback_url: fields.callback_url,
        ..UploadExtra::default()
    };
    match st
        .records
        .insert_upload(&media, &extra, idem.as_ref(), Some(&job))
        .await?
    {
        Inserted::Created(_) => {}
        Inserted::Replay {
            media_id,
            fingerprint,
        } => {
            // A racing retry with the same key won: ours is the duplicate.
            let _ = st.store.delete(&source_key).await;
            let fp = idem.map(|c| c.fingerprint).unwrap_or_default();
            return Ok(accepted(&idempotency::replayed(
                (media_id, fingerprint),
                &fp,
            )?));
        }
    }
    st.uploads.committed();
    crate::scale::metrics::upload_bytes(up.bytes);
    tracing::info!(media_id = %id_s, kind = up.kind.as_str(), bytes = up.bytes, "upload accepted");
    Ok(accepted(&id_s))
}
