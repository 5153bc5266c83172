//! The OpenAPI document describes what the api really sends: real responses of a running `serve` (upload,
//! list, show, reprocess, delete, health, readiness, and errors) are validated against the schema the
//! document gives for that route and status, with every documented object closed (`additionalProperties:
//! false`), so a field sent but not documented fails as surely as a documented field that is missing.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Closes every object schema: a property the document does not name is an error.
fn close_objects(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let is_object = m.get("type").is_some_and(|t| {
                t == "object"
                    || t.as_array()
                        .is_some_and(|a| a.iter().any(|x| x == "object"))
            });
            if is_object && m.contains_key("properties") && !m.contains_key("additionalProperties")
            {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (_, x) in m.iter_mut() {
                close_objects(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(close_objects),
        _ => {}
    }
}

struct Doc(Value);

impl Doc {
    /// Checks `body` against the schema documented for `method path` answering `status`.
    fn check(&self, method: &str, path: &str, status: u16, body: &Value) {
        let op = &self.0["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let response = &op["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {path} answered {status}, which is not documented: {body}"
        );
        let schema = response["content"]["application/json"]["schema"].clone();
        assert!(
            schema.is_object(),
            "{method} {path} {status}: no JSON schema"
        );
        let mut root = json!({"allOf": [schema], "components": self.0["components"].clone()});
        close_objects(&mut root["components"]);
        let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| {
            panic!("{method} {path} {status}: the schema does not compile: {e}")
        });
        let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status} sent what its schema does not describe: {errors:?}\nbody: {body}"
        );
    }
}

async fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_answer_matches_its_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fast_config(dir.path(), "");
    let (_serve, base) = serve_embedded(dir.path(), &cfg).await;
    let (s, doc) = call(reqwest::Method::GET, &format!("{base}/openapi.json"), None).await;
    assert_eq!(s, 200);
    let doc = Doc(doc);

    let (s, body) = call(reqwest::Method::GET, &format!("{base}/healthz"), None).await;
    doc.check("get", "/healthz", s, &body);
    let (s, body) = call(reqwest::Method::GET, &format!("{base}/readyz"), None).await;
    doc.check("get", "/readyz", s, &body);

    let (s, body) = upload(&base, &fixture("photo.jpg"), "photo.jpg").await;
    doc.check("post", "/v1/uploads", s, &body);
    let id = body["id"].as_str().unwrap().to_owned();
    let ready = wait_final(&base, &id, Duration::from_secs(60)).await;
    doc.check("get", "/v1/media/{id}", 200, &ready);

    let (s, body) = call(
        reqwest::Method::GET,
        &format!("{base}/v1/media?limit=5"),
        None,
    )
    .await;
    doc.check("get", "/v1/media", s, &body);
    let (s, body) = call(
        reqwest::Method::GET,
        &format!("{base}/v1/media?status=bogus"),
        None,
    )
    .await;
    assert_eq!(s, 400);
    doc.check("get", "/v1/media", s, &body);

    let reprocess = format!("{base}/v1/media/{id}/reprocess");
    let (s, body) = call(reqwest::Method::POST, &reprocess, Some(json!({}))).await;
    doc.check("post", "/v1/media/{id}/reprocess", s, &body);
    wait_final(&base, &id, Duration::from_secs(60)).await;

    // Direct uploads need S3: on local storage the presign is a documented 400.
    let (s, body) = call(
        reqwest::Method::POST,
        &format!("{base}/v1/uploads/presign"),
        Some(json!({"filename": "a.jpg", "content_type": "image/jpeg", "bytes": 10})),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    doc.check("post", "/v1/uploads/presign", s, &body);

    let (s, body) = call(
        reqwest::Method::DELETE,
        &format!("{base}/v1/media/{id}"),
        None,
    )
    .await;
    doc.check("delete", "/v1/media/{id}", s, &body);
    let missing = uuid::Uuid::now_v7();
    let (s, body) = call(
        reqwest::Method::GET,
        &format!("{base}/v1/media/{missing}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    doc.check("get", "/v1/media/{id}", s, &body);
}
