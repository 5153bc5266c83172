//! Direct-to-S3 uploads: `POST /v1/uploads/presign` and `POST /v1/uploads/{id}/complete`.
//!
//! Presign creates the media as `uploading` with a server-made key and answers either one presigned PUT or,
//! above `[uploads] multipart_threshold`, a multipart upload with a presigned URL per part. `complete`
//! assembles the parts (multipart) or checks the object exists (single PUT), then commits the
//! `media.validate` job; only a validated original enters processing. A direct upload never completed is
//! expired by the relay's sweep after `[uploads] expire_after`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::Json;
use mediafleet_proto::envelope::MediaValidate;
use mediafleet_proto::{Envelope, Job, MediaKind, MediaStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{optional_json, ApiPath, ErrorBody};
use super::media::parse_id;
use super::uploads::Accepted;
use super::{idempotency, ApiError, AppState};
use crate::db::{now_ms, IdempotencyClaim, Inserted, MediaRow, NewMedia, OutboxJob, UploadExtra};
use crate::storage::direct::{CompletedPart, DirectUpload};
use crate::storage::keys;

/// S3's part-count limit.
const MAX_PARTS: u64 = 10_000;

/// The presign request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresignRequest {
    /// Client file name (kept as metadata; never a storage key).
    pub filename: String,
    /// Declared MIME type (`image/*`, `video/*`, `audio/*`); checked again by content after upload.
    pub content_type: String,
    /// Declared size; the upload must match it exactly.
    #[schema(minimum = 1)]
    pub bytes: u64,
    /// Profile name.
    pub profile: Option<String>,
    /// The client's own id.
    pub external_id: Option<String>,
    /// Webhook target.
    pub callback_url: Option<String>,
    /// SHA-256 of the file (64 hex digits). Single PUTs only: it is signed into the URL, S3 refuses a body
    /// that does not match, and `complete` refuses an object stored without it.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub sha256: Option<String>,
}

/// The declared SHA-256 as bytes, or 400.
fn declared_sha256(hex_digest: Option<&str>) -> Result<Option<[u8; 32]>, ApiError> {
    let Some(h) = hex_digest else {
        return Ok(None);
    };
    let mut out = [0u8; 32];
    hex::decode_to_slice(h, &mut out)
        .map_err(|_| ApiError::bad_request("sha256 must be 64 hexadecimal digits"))?;
    Ok(Some(out))
}

/// The presign answer: `upload` (one presigned PUT) or `multipart` (a presigned URL per part) while the
/// media is `uploading`; only `id` and `status` once it has moved on (a replayed `Idempotency-Key`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PresignAnswer {
    /// Media id.
    #[schema(value_type = uuid::Uuid)]
    id: String,
    /// `uploading`, or the media's status when a replay finds it further on.
    #[schema(value_type = String, pattern = "^(uploading|queued|processing|ready|failed|deleted)$")]
    status: MediaStatus,
    /// Single upload: PUT the whole file here, with these headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    upload: Option<PresignedPut>,
    /// Multipart upload (above `[uploads] multipart_threshold`): PUT each part, then complete with the ETags.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    multipart: Option<PresignedMultipart>,
}

impl PresignAnswer {
    /// Only the id and status: the media has moved past `uploading`.
    fn moved_on(id: &str, status: MediaStatus) -> Self {
        PresignAnswer {
            id: id.to_owned(),
            status,
            upload: None,
            multipart: None,
        }
    }
}

/// One presigned PUT.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresignedPut {
    /// `PUT`.
    method: String,
    /// The presigned URL.
    url: String,
    /// Headers the PUT must send.
    headers: std::collections::BTreeMap<String, String>,
}

/// A presigned multipart upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresignedMultipart {
    /// The S3 upload id.
    upload_id: String,
    /// Bytes per part (the last part may be shorter).
    part_size: u64,
    /// One presigned URL per part.
    parts: Vec<PresignedPart>,
}

/// One part's presigned URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresignedPart {
    /// 1-based part number.
    number: i32,
    /// The presigned PUT URL.
    url: String,
}

fn direct(st: &AppState) -> Result<&dyn DirectUpload, ApiError> {
    st.store.direct_uploads().ok_or_else(|| {
        ApiError::bad_request(format!(
            "direct uploads need S3 storage, and this server stores originals on {} storage; \
             POST the file to /v1/uploads instead",
            st.store.backend()
        ))
    })
}

fn declared_kind(content_type: &str) -> Result<MediaKind, ApiError> {
    match content_type.split('/').next().unwrap_or_default() {
        "image" => Ok(MediaKind::Image),
        "video" => Ok(MediaKind::Video),
        "audio" => Ok(MediaKind::Audio),
        _ => Err(ApiError::unsupported(format!(
            "content_type {content_type:?} is not an image, video or audio type"
        ))),
    }
}

/// `POST /v1/uploads/presign`.
#[utoipa::path(post, path = "/v1/uploads/presign", summary = "Presign a direct-to-S3 upload (one PUT, or multipart above the threshold)", tag = "uploads",
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
        description = "A retry with the same key and request answers the same media")),
    request_body(content = PresignRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The media is `uploading`: upload to the presigned URL(s), then complete", body = PresignAnswer),
        (status = 400, description = "Invalid request, unknown profile, refused callback_url, or storage is not S3", body = ErrorBody),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 413, description = "Over the size limit for the declared kind, more than 10,000 parts, or a body over 1 MiB", body = ErrorBody),
        (status = 415, description = "content_type is not image/*, video/* or audio/*", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorBody),
        (status = 503, description = "The database or storage does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn presign(
    State(st): State<AppState>,
    caller: Option<Extension<Caller>>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PresignAnswer>, ApiError> {
    let body = body?;
    let req: PresignRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid presign request: {e}")))?;
    let direct = direct(&st)?;
    let kind = declared_kind(&req.content_type)?;
    let sha256 = declared_sha256(req.sha256.as_deref())?;
    let limit = match kind {
        MediaKind::Image => st.settings.limits.image_bytes,
        _ => st.settings.limits.video_bytes,
    };
    if req.bytes == 0 {
        return Err(ApiError::bad_request("bytes must be greater than 0"));
    }
    if req.bytes > limit {
        return Err(ApiError::too_large(format!(
            "{} bytes is over the {limit}-byte limit for {} uploads",
            req.bytes,
            kind.as_str()
        )));
    }
    let profile = req.profile.clone().unwrap_or_else(|| "default".into());
    if !st.settings.profiles.contains_key(&profile) {
        return Err(ApiError::bad_request(format!(
            "unknown profile {profile:?}"
        )));
    }
    if let Some(cb) = &req.callback_url {
        st.uploads
            .webhooks
            .check_url(cb)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let up = &st.uploads.settings;
    let multipart = req.bytes > up.multipart_threshold;
    let parts = req.bytes.div_ceil(up.part_size);
    if multipart && parts > MAX_PARTS {
        return Err(ApiError::too_large(
            "the upload would need more than 10,000 parts",
        ));
    }
    let size = req.bytes.to_string();
    let idem = idempotency::key(&headers)?.map(|key| IdempotencyClaim {
        scope: caller
            .map(|c| c.0.scope().to_owned())
            .unwrap_or_else(|| "anonymous".into()),
        key,
        fingerprint: idempotency::fingerprint(&[
            Some("presign"),
            Some(&req.filename),
            Some(&req.content_type),
            Some(&size),
            Some(&profile),
            req.external_id.as_deref(),
            req.callback_url.as_deref(),
            req.sha256.as_deref(),
        ]),
    });
    if let Some(c) = &idem {
        if let Some(earlier) = st.records.idempotency(&c.scope, &c.key).await? {
            let id = idempotency::replayed(earlier, &c.fingerprint)?;
            return answer_for(&st, &id).await.map(Json);
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    let source_key = keys::original(&st.settings.prefix, &id);
    let upload_id = if multipart {
        Some(
            direct
                .create_multipart(&source_key, &req.content_type)
                .await?,
        )
    } else {
        None
    };
    let media = NewMedia {
        id: id.clone(),
        kind: kind.as_str().into(),
        profile,
        source_key,
        filename: Some(req.filename),
        content_type: req.content_type,
        bytes: i64::try_from(req.bytes).unwrap_or(i64::MAX),
        // Multipart uploads carry per-part checksums only: the declared digest binds single PUTs.
        sha256: sha256
            .filter(|_| !multipart)
            .map(hex::encode)
            .unwrap_or_default(),
        external_id: req.external_id,
    };
    let expires = now_ms() + i64::try_from(up.expire_after.as_millis()).unwrap_or(i64::MAX / 4);
    let extra = UploadExtra {
        status: "uploading",
        callback_url: req.callback_url,
        upload_id,
        upload_expires_at: Some(expires),
    };
    match st
        .records
        .insert_upload(&media, &extra, idem.as_ref(), None)
        .await?
    {
        Inserted::Created(_) => answer_for(&st, &id).await.map(Json),
        Inserted::Replay {
            media_id,
            fingerprint,
        } => {
            if let Some(u) = &extra.upload_id {
                let _ = direct.abort_multipart(&media.source_key, u).await;
            }
            let fp = idem.map(|c| c.fingerprint).unwrap_or_default();
            let id = idempotency::replayed((media_id, fingerprint), &fp)?;
            answer_for(&st, &id).await.map(Json)
        }
    }
}

/// The presign answer for a media: fresh URLs while it is `uploading`, else its id and status.
async fn answer_for(st: &AppState, id: &str) -> Result<PresignAnswer, ApiError> {
    let row = st
        .records
        .media_primary(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("media {id} not found")))?;
    let (upload_id, completed) = st.records.upload_state(id).await?.unwrap_or((None, None));
    if row.status != MediaStatus::Uploading || completed.is_some() {
        return Ok(PresignAnswer::moved_on(id, row.status));
    }
    let direct = direct(st)?;
    let ttl = st.settings.presign_ttl;
    match upload_id {
        None => {
            let sha256 = declared_sha256(
                Some(&row.sha256)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.as_str()),
            )?;
            let p = direct
                .presign_put(
                    &row.source_key,
                    &row.content_type,
                    u64::try_from(row.bytes).unwrap_or(0),
                    sha256.as_ref(),
                    ttl,
                )
                .await?;
            Ok(PresignAnswer {
                id: id.to_owned(),
                status: MediaStatus::Uploading,
                upload: Some(PresignedPut {
                    method: p.method,
                    url: p.url,
                    headers: p.headers.into_iter().collect(),
                }),
                multipart: None,
            })
        }
        Some(upload_id) => multipart_answer(st, direct, &row, &upload_id, ttl).await,
    }
}

async fn multipart_answer(
    st: &AppState,
    direct: &dyn DirectUpload,
    row: &MediaRow,
    upload_id: &str,
    ttl: Duration,
) -> Result<PresignAnswer, ApiError> {
    let part_size = st.uploads.settings.part_size;
    let count = u64::try_from(row.bytes).unwrap_or(0).div_ceil(part_size);
    let mut parts = Vec::new();
    for n in 1..=count {
        let number = i32::try_from(n).unwrap_or(i32::MAX);
        let url = direct
            .presign_part(&row.source_key, upload_id, number, ttl)
            .await?;
        parts.push(PresignedPart { number, url });
    }
    Ok(PresignAnswer {
        id: row.id.clone(),
        status: MediaStatus::Uploading,
        upload: None,
        multipart: Some(PresignedMultipart {
            upload_id: upload_id.to_owned(),
            part_size,
            parts,
        }),
    })
}

/// The complete request (multipart only; a single PUT sends nothing or `{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The parts, with the `ETag` of each part's PUT.
    #[serde(default)]
    pub parts: Vec<PartRef>,
}

/// One part.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartRef {
    /// 1-based part number.
    #[schema(minimum = 1, maximum = 10000)]
    pub number: i32,
    /// The part's `ETag`.
    pub etag: String,
}

/// `POST /v1/uploads/{id}/complete`.
#[utoipa::path(post, path = "/v1/uploads/{id}/complete", summary = "Finish a direct upload; validation follows", tag = "uploads",
    params(("id" = uuid::Uuid, Path, description = "Media id from presign")),
    request_body(content = Option<CompleteRequest>, content_type = "application/json",
        description = "`{\"parts\":[…]}` for a multipart upload; empty or `{}` for a single PUT"),
    responses(
        (status = 202, description = "Validation is queued (or had been: a repeated complete answers the status)", body = Accepted),
        (status = 400, description = "Invalid body, parts missing or not matching, nothing uploaded yet, or storage is not S3", body = ErrorBody),
        (status = 401, description = "No or an invalid API key", body = ErrorBody),
        (status = 404, description = "No such media", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 503, description = "The database or storage does not answer", body = ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn complete(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let body = body?;
    let id = parse_id(&id)?;
    // Empty, `null` and `{}` all mean "a single PUT".
    let req: CompleteRequest = optional_json(&body, "complete request")?;
    let row = st
        .records
        .media_primary(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("media {id} not found")))?;
    let (upload_id, completed) = st.records.upload_state(&id).await?.unwrap_or((None, None));
    let status = |status: MediaStatus| {
        (
            StatusCode::ACCEPTED,
            Json(Accepted {
                id: id.clone(),
                status,
            }),
        )
    };
    if row.status != MediaStatus::Uploading || completed.is_some() {
        // A repeated complete: nothing more to do.
        return Ok(status(row.status));
    }
    let direct = direct(&st)?;
    let single_put = upload_id.is_none();
    if let Some(upload_id) = upload_id {
        if req.parts.is_empty() {
            return Err(ApiError::bad_request(
                "this is a multipart upload: send {\"parts\":[{\"number\",\"etag\"}, …]}",
            ));
        }
        let parts: Vec<CompletedPart> = req
            .parts
            .into_iter()
            .map(|p| CompletedPart {
                number: p.number,
                etag: p.etag,
            })
            .collect();
        if let Err(e) = direct
            .complete_multipart(&row.source_key, &upload_id, &parts)
            .await
        {
            // A racing complete may have finished it: then the object exists.
            if st.store.head(&row.source_key).await.is_err() {
                return Err(match e {
                    crate::storage::StoreError::Refused(m) => {
                        ApiError::bad_request(format!("the parts do not complete the upload: {m}"))
                    }
                    other => other.into(),
                });
            }
        }
    }
    let uploaded = match direct.uploaded(&row.source_key).await {
        Ok(u) => u,
        Err(crate::storage::StoreError::NotFound(_)) => {
            return Err(ApiError::bad_request(
                "nothing was uploaded yet: PUT the file to the presigned URL first",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    if single_put
        && !row.sha256.is_empty()
        && uploaded.sha256.as_deref() != Some(row.sha256.as_str())
    {
        // S3 itself refuses a body that does not match the signed checksum; this catches a PUT that sent
        // none (or a store that does not check). The object is not kept: a new PUT may replace it.
        let _ = st.store.delete(&row.source_key).await;
        return Err(ApiError::bad_request(format!(
            "the uploaded object does not carry the declared sha256 {} (send the x-amz-checksum-sha256 header \
             the presign answer lists)",
            row.sha256
        )));
    }
    let media_id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::not_found("bad id"))?;
    let env = Envelope::new(
        media_id,
        &Job::MediaValidate(MediaValidate {
            source_key: row.source_key.clone(),
            declared_bytes: u64::try_from(row.bytes).unwrap_or(0),
            profile: row.profile.clone(),
        }),
    );
    if st
        .records
        .complete_upload(
            &id,
            uploaded.etag.as_deref(),
            &OutboxJob::new(
                crate::routing::class_for(mediafleet_proto::JobKind::MediaValidate, None, None),
                &env,
            ),
        )
        .await?
    {
        st.uploads.committed();
        crate::scale::metrics::upload_bytes(uploaded.bytes);
        return Ok(status(MediaStatus::Uploading));
    }
    // Another complete got in first, or the expiry sweep claimed it meanwhile: answer what it is now.
    let now = st
        .records
        .media_primary(&id)
        .await?
        .map_or(MediaStatus::Deleted, |m| m.status);
    Ok(status(now))
}
