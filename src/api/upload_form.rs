//! The multipart form of `POST /v1/uploads`, read field by field: text fields are read into memory with a
//! cap, unknown fields and a second `file` are refused at their headers, and at most [`PREAMBLE_MAX`] bytes of
//! form may come before the `file` part, which is handed to the caller to stream. [`read_upload_form`] runs the
//! same reader over an in-memory body (the fuzzing entry point).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use futures::StreamExt;

use super::ApiError;

/// Longest text field (`profile`, `external_id`, `callback_url`). Text fields are read into memory, so they
/// are capped; only the file part is streamed.
pub const TEXT_FIELD_MAX: usize = 4096;

/// Most bytes of form (preamble, part headers, text fields) before the file part: bounds what a request can
/// make the api parse and buffer before any byte of the file arrives.
pub const PREAMBLE_MAX: u64 = 64 * 1024;

/// What the preamble guard saw.
#[derive(Default)]
struct Preamble {
    /// Set by the handler when the file part begins; from then on bytes are not counted.
    file_started: AtomicBool,
    /// Set by the guard when it cut the body.
    tripped: AtomicBool,
}

/// Wraps the body so that it fails once [`PREAMBLE_MAX`] bytes have passed before the file part starts.
/// The multipart parser buffers part headers until it finds their end, so this also bounds a part whose
/// headers never end.
fn guard_preamble(req: Request) -> (Request, Arc<Preamble>) {
    let state = Arc::new(Preamble::default());
    let guard = state.clone();
    let mut seen = 0u64;
    let (parts, body) = req.into_parts();
    let guarded = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        // The check is on the bytes before this chunk: the chunk that holds the start of the file part must
        // pass, however large the server's read buffer made it. The overshoot is one chunk at most.
        if !guard.file_started.load(Ordering::Relaxed) {
            if seen > PREAMBLE_MAX {
                guard.tripped.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other("form preamble too long"));
            }
            seen += chunk.len() as u64;
        }
        Ok(chunk)
    });
    (
        Request::from_parts(parts, axum::body::Body::from_stream(guarded)),
        state,
    )
}

/// Reads a text field, refusing it as soon as it passes [`TEXT_FIELD_MAX`] bytes.
async fn read_text_field(
    mut field: axum::extract::multipart::Field<'_>,
    name: &str,
) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::bad_request(format!("field {name}: {e}")))?
    {
        if buf.len() + chunk.len() > TEXT_FIELD_MAX {
            return Err(ApiError::bad_request(format!(
                "field {name} is longer than {TEXT_FIELD_MAX} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| ApiError::bad_request(format!("field {name} is not UTF-8")))
}

/// The multipart form of an upload, read field by field: text fields are read (capped) into [`Fields`],
/// unknown fields and a second `file` are refused, and the `file` part is handed to the caller to stream.
pub(super) struct FormReader {
    mp: Multipart,
    preamble: Arc<Preamble>,
    file_seen: bool,
    pub(super) fields: Fields,
}

impl FormReader {
    pub(super) async fn new<S: Send + Sync>(
        req: Request,
        state: &S,
        fields: Fields,
    ) -> Result<Self, ApiError> {
        let (req, preamble) = guard_preamble(req);
        let mp = Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        Ok(FormReader {
            mp,
            preamble,
            file_seen: false,
            fields,
        })
    }

    /// Reads the next part: a text field is read (capped) into `fields`, the `file` part is handed back to
    /// be streamed; `None` at the end of the form.
    pub(super) async fn next_part(&mut self) -> Result<Option<FormPart<'_>>, ApiError> {
        let next = self.mp.next_field().await.map_err(|e| {
            if self.preamble.tripped.load(Ordering::Relaxed) {
                ApiError::bad_request(format!(
                    "more than {PREAMBLE_MAX} bytes of form before the `file` part"
                ))
            } else {
                ApiError::bad_request(format!("malformed multipart body: {e}"))
            }
        })?;
        let Some(field) = next else {
            return Ok(None);
        };
        match field.name().unwrap_or_default() {
            "file" if !self.file_seen => {
                self.file_seen = true;
                self.preamble.file_started.store(true, Ordering::Relaxed);
                let fields = &mut self.fields;
                fields.filename = fields
                    .filename
                    .take()
                    .or(field.file_name().map(str::to_owned));
                Ok(Some(FormPart::File(Box::new(field))))
            }
            "file" => Err(ApiError::bad_request("only one `file` field per upload")),
            name @ ("profile" | "external_id" | "callback_url") => {
                let name = name.to_owned();
                let text = read_text_field(field, &name).await?;
                match name.as_str() {
                    "profile" => self.fields.profile = Some(text),
                    "external_id" => self.fields.external_id = Some(text),
                    _ => self.fields.callback_url = Some(text),
                }
                Ok(Some(FormPart::Text))
            }
            other => {
                // Refused before its bytes are read: an unknown field is a client bug, and skipping it
                // would still mean reading (and waiting for) all of it.
                Err(ApiError::bad_request(format!(
                    "unknown form field {:?}: the fields are file, profile, external_id and callback_url",
                    other.chars().take(64).collect::<String>()
                )))
            }
        }
    }
}

/// One part of the form, as [`FormReader::next_part`] found it.
pub(super) enum FormPart<'a> {
    /// The `file` part, to be streamed (boxed: it is large beside `Text`).
    File(Box<axum::extract::multipart::Field<'a>>),
    /// A text field, already stored.
    Text,
}

/// What [`read_upload_form`] read from a form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadFormSummary {
    /// The `profile` field.
    pub profile: Option<String>,
    /// The `external_id` field.
    pub external_id: Option<String>,
    /// The `callback_url` field.
    pub callback_url: Option<String>,
    /// The `file` part's file name.
    pub filename: Option<String>,
    /// How many bytes the `file` part held.
    pub file_bytes: u64,
}

/// Runs the upload form reader of `POST /v1/uploads` over an in-memory body that arrives in `chunks`, with
/// the `file` part counted instead of spooled: the fuzzing entry point for the multipart parser, its caps and
/// refusals. The error is the 400 the handler would answer.
pub async fn read_upload_form(
    content_type: &str,
    chunks: Vec<Bytes>,
) -> Result<UploadFormSummary, ApiError> {
    let body = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let req = Request::builder()
        .method("POST")
        .uri("/v1/uploads")
        .header(header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from_stream(body))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut form = FormReader::new(req, &(), Fields::default()).await?;
    let mut file_bytes = None;
    while let Some(part) = form.next_part().await? {
        let FormPart::File(field) = part else {
            continue;
        };
        let mut field = *field;
        let mut n = 0u64;
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?
        {
            n += chunk.len() as u64;
        }
        file_bytes = Some(n);
    }
    let file_bytes =
        file_bytes.ok_or_else(|| ApiError::bad_request("multipart upload has no `file` field"))?;
    let f = form.fields;
    Ok(UploadFormSummary {
        profile: f.profile,
        external_id: f.external_id,
        callback_url: f.callback_url,
        filename: f.filename,
        file_bytes,
    })
}

/// Optional fields of an upload.
#[derive(Debug, Default)]
pub(super) struct Fields {
    pub(super) profile: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) callback_url: Option<String>,
    pub(super) filename: Option<String>,
}
