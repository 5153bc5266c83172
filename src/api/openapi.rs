//! `GET /openapi.json`: the OpenAPI 3.1 document of the HTTP api.
//!
//! Written next to the router rather than derived by macros: the handlers take raw bodies (streamed
//! uploads, optional JSON), which derive macros describe poorly. `tests/uploads_api.rs` keeps it honest: every
//! documented operation must be routed, and every route must be documented.

use axum::Json;
use serde_json::{json, Value};

fn error_ref() -> Value {
    json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn op(summary: &str, ok: (&str, Value), errors: &[&str], extra: Value) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert(
        ok.0.to_owned(),
        json!({"description": summary, "content": {"application/json": {"schema": ok.1}}}),
    );
    for code in errors {
        responses.insert((*code).to_owned(), error_ref());
    }
    let mut o = json!({"summary": summary, "responses": responses});
    if let (Some(o), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
        o.extend(extra.clone());
    }
    o
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}})
}

fn media_ref() -> Value {
    json!({"$ref": "#/components/schemas/Media"})
}

/// The document.
pub fn document() -> Value {
    let accepted = json!({"type": "object", "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"type": "string"}}});
    let idem = json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "maxLength": 255}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "mediafleet", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Uploads in, renditions out. Errors are {\"error\":{\"code\",\"message\"}}."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                    "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Media": {"type": "object", "required": ["id", "kind", "status"], "properties": {
                    "id": {"type": "string"}, "kind": {"type": "string"}, "status": {"type": "string",
                    "enum": ["uploading", "queued", "processing", "ready", "failed", "deleted"]},
                    "progress": {"type": "number"}, "profile": {"type": "string"}, "error": {},
                    "renditions": {"type": "array", "items": {"type": "object"}}, "blurhash": {}, "thumbhash": {},
                    "metadata": {"type": "object"}, "external_id": {}, "filename": {}, "version": {"type": "integer"},
                    "created_at": {"type": "string"}, "updated_at": {"type": "string"}}},
                "PresignRequest": {"type": "object", "additionalProperties": false,
                    "required": ["filename", "content_type", "bytes"], "properties": {
                    "filename": {"type": "string"}, "content_type": {"type": "string"},
                    "bytes": {"type": "integer", "minimum": 1}, "profile": {"type": "string"},
                    "external_id": {"type": "string"}, "callback_url": {"type": "string", "format": "uri"}}},
            }
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/v1/uploads": {"post": op("Upload a file (multipart field `file`, or a raw body)", ("202", accepted.clone()),
                &["400", "401", "408", "413", "415", "422", "503"],
                json!({"parameters": [idem.clone()], "requestBody": {"required": true, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"},
                        "profile": {"type": "string"}, "external_id": {"type": "string"}, "callback_url": {"type": "string"}}}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}))},
            "/v1/uploads/presign": {"post": op("Presigned direct-to-S3 upload (single PUT or multipart)",
                ("200", json!({"type": "object", "required": ["id", "status"]})), &["400", "401", "413", "415", "422"],
                json!({"parameters": [idem], "requestBody": {"required": true, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PresignRequest"}}}}}))},
            "/v1/uploads/{id}/complete": {"post": op("Finish a direct upload; validation follows", ("202", accepted),
                &["400", "401", "404"], json!({"parameters": [id_param()], "requestBody": {"required": false,
                    "content": {"application/json": {"schema": {"type": "object", "properties": {"parts": {"type": "array",
                    "items": {"type": "object", "required": ["number", "etag"], "properties": {
                        "number": {"type": "integer"}, "etag": {"type": "string"}}}}}}}}}}))},
            "/v1/media": {"get": op("List media, newest first", ("200", json!({"type": "object", "properties": {
                    "items": {"type": "array", "items": media_ref()}, "next_cursor": {}}})), &["400", "401"],
                json!({"parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string"}},
                    {"name": "external_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}]}))},
            "/v1/media/{id}": {
                "get": op("A media object", ("200", media_ref()), &["401", "404"], json!({"parameters": [id_param()]})),
                "delete": op("Delete a media's objects; the row stays as `deleted`", ("200", json!({"type": "object"})),
                    &["401", "404"], json!({"parameters": [id_param()]}))},
            "/v1/media/{id}/reprocess": {"post": op(
                "Make the renditions again (`ready → queued`, optionally with another profile) or replay a failed media (`failed → queued`); the old renditions are served until the new ones are ready",
                ("202", json!({"type": "object", "properties": {"id": {"type": "string"}, "status": {"type": "string"}, "profile": {"type": "string"}}})),
                &["400", "401", "404", "409"],
                json!({"parameters": [id_param()], "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {"profile": {"type": "string"}}, "additionalProperties": false}}}}}))},
            "/v1/media/{id}/renditions/{name}": {"get": op("A rendition (bytes, or a redirect to a presigned URL)",
                ("200", json!({"type": "string", "format": "binary"})), &["401", "404"],
                json!({"parameters": [id_param(), {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "expires", "in": "query", "schema": {"type": "integer"}},
                    {"name": "signature", "in": "query", "schema": {"type": "string"}}]}))},
            "/v1/media/{id}/renditions/{name}/{path}": {"get": op(
                "A file inside a multi-file rendition (the playlists and segments of `hls`); `path` may contain `/`",
                ("200", json!({"type": "string", "format": "binary"})), &["401", "404"],
                json!({"parameters": [id_param(), {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "path", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "expires", "in": "query", "schema": {"type": "integer"}},
                    {"name": "signature", "in": "query", "schema": {"type": "string"}}]}))},
            "/healthz": {"get": op("Liveness", ("200", json!({"type": "object"})), &[], json!({"security": []}))},
            "/readyz": {"get": op("Readiness", ("200", json!({"type": "object"})), &["503"], json!({"security": []}))},
            "/openapi.json": {"get": op("This document", ("200", json!({"type": "object"})), &[], json!({"security": []}))},
        }
    })
}

/// `GET /openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(document())
}
