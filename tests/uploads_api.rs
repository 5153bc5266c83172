//! The api around uploads on real servers: API keys required off loopback (`ops keys`), listing with a
//! cursor, DELETE, private rendition access with signed URLs, and `/openapi.json` against the routes.

mod common;

use common::uploads::*;
use common::*;
use futures::StreamExt;
use serde_json::Value;

async fn upload_with(base: &str, key: Option<&str>, file: &str, external_id: &str) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(std::fs::read(fixture(file)).unwrap())
        .file_name(file.to_owned());
    let form = reqwest::multipart::Form::new()
        .text("external_id", external_id.to_owned())
        .part("file", part);
    let mut req = reqwest::Client::new()
        .post(format!("{base}/v1/uploads"))
        .multipart(form);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(url: &str, key: Option<&str>) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = client.get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn keys_are_required_off_loopback_and_renditions_can_be_private() {
    let f = upload_fleet(
        "[auth]\nrenditions = \"private\"\nsigning_secret = \"sign-me\"\n",
        "0.0.0.0",
        true,
    )
    .await;
    let created: Value =
        serde_json::from_str(&f.cli(&["ops", "keys", "create", "--name", "app"])).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();

    // Without a key (or with a wrong one): 401 with the standard error body. Health stays open.
    let (s, e) = upload_with(&f.base, None, "photo.jpg", "a").await;
    assert_eq!(s, 401, "{e}");
    assert_eq!(e["error"]["code"], "unauthorized");
    let (s, _) = upload_with(&f.base, Some("mfk_wrong"), "photo.jpg", "a").await;
    assert_eq!(s, 401);
    assert_eq!(get(&format!("{}/v1/media", f.base), None).await.0, 401);
    assert_eq!(get(&format!("{}/healthz", f.base), None).await.0, 200);

    // With the key: accepted, listed, readable.
    let (s, a) = upload_with(&f.base, Some(&key), "photo.jpg", "ext-1").await;
    assert_eq!(s, 202, "{a}");
    let (s, b) = upload_with(&f.base, Some(&key), "alpha.png", "ext-2").await;
    assert_eq!(s, 202, "{b}");
    let id = a["id"].as_str().unwrap();
    let media = wait_status(&f.base, id, Some(&key), &["ready"]).await;

    // Private renditions: 401 without a key, a redirect with a key or a signed query.
    let path = rendition(&media, "thumb")["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{}{path}", f.base);
    assert_eq!(get(&url, None).await.0, 401);
    assert_eq!(get(&url, Some(&key)).await.0, 307);
    // The redirect carries a presigned URL, a credential of its own: no cache may keep it.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&url)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let exp = chrono::Utc::now().timestamp() + 300;
    let sig = mediafleet::api::sign_rendition("sign-me", &path, exp);
    assert_eq!(
        get(&format!("{url}?expires={exp}&signature={sig}"), None)
            .await
            .0,
        307
    );
    assert_eq!(
        get(&format!("{url}?expires={exp}&signature=00{sig}"), None)
            .await
            .0,
        401
    );

    // Listing: newest first, filters, a cursor.
    let (s, page) = get(&format!("{}/v1/media?limit=1", f.base), Some(&key)).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["items"][0]["id"], b["id"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = get(
        &format!("{}/v1/media?limit=1&cursor={cursor}", f.base),
        Some(&key),
    )
    .await;
    assert_eq!(next["items"][0]["id"], a["id"]);
    assert!(next["next_cursor"].is_null(), "{next}");
    let (_, by_ext) = get(
        &format!("{}/v1/media?external_id=ext-1", f.base),
        Some(&key),
    )
    .await;
    assert_eq!(by_ext["items"].as_array().unwrap().len(), 1);

    // DELETE removes the objects and keeps the row as deleted.
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/media/{id}", f.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, gone) = get(&format!("{}/v1/media/{id}", f.base), Some(&key)).await;
    assert_eq!(gone["status"], "deleted");
    assert_eq!(get(&url, Some(&key)).await.0, 404);
    let (_, deleted) = get(&format!("{}/v1/media?status=deleted", f.base), Some(&key)).await;
    assert_eq!(deleted["items"].as_array().unwrap().len(), 1);

    // Revoked keys stop working at once.
    let listed: Value = serde_json::from_str(&f.cli(&["ops", "keys", "list"])).unwrap();
    assert_eq!(listed["keys"][0]["name"], "app");
    assert!(
        !f.cli(&["ops", "keys", "list"]).contains(&key),
        "list must never show the key"
    );
    f.cli(&["ops", "keys", "revoke", "app"]);
    assert_eq!(
        get(&format!("{}/v1/media", f.base), Some(&key)).await.0,
        401
    );
}

#[tokio::test]
async fn openapi_documents_every_route_and_only_routes() {
    let mut f = upload_fleet(
        "[uploads]\nheader_timeout = \"1s\"\nmax_concurrent = 1\nbody_idle_timeout = \"2s\"\n",
        "127.0.0.1",
        false,
    )
    .await;
    f.start_api(&[], true).await;
    let (s, doc) = get(&format!("{}/openapi.json", f.base), None).await;
    assert_eq!(s, 200);
    assert_eq!(doc, mediafleet::api::openapi_document());
    let id = uuid::Uuid::now_v7().to_string();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut documented = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let url = format!(
                "{}{}",
                f.base,
                path.replace("{id}", &id)
                    .replace("{name}", "thumb")
                    .replace("{path}", "master.m3u8")
            );
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = client.request(m, &url).send().await.unwrap();
            // Routed handlers answer JSON (even errors); axum's fallback answers an empty 404/405.
            let status = r.status().as_u16();
            let body = r.bytes().await.unwrap();
            assert!(
                !(status == 405 || (status == 404 && body.is_empty())),
                "{method} {path} is documented but not routed ({status})"
            );
        }
    }
    // The other direction, every route is documented: the router and the document come from one list,
    // `.routes(routes!(handler))` in src/api (utoipa-axum), so the only way to serve an undocumented route is
    // to register it past that list. No file of the api may do so.
    let api_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    for entry in std::fs::read_dir(&api_dir).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        for call in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".merge(",
            ".fallback(",
        ] {
            assert!(
                !src.contains(call),
                "{} calls {call}: register routes with .routes(routes!(handler)) so they are documented",
                path.display()
            );
        }
    }
    assert!(documented.len() >= 11, "{documented:?}");
    for (path, ops) in doc["paths"].as_object().unwrap() {
        assert!(!path.contains('*'), "{path}: OpenAPI has no wildcard");
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|c| c.starts_with('2')),
                "{method} {path} documents no success"
            );
            if path.starts_with("/v1/") {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} does not document 401"
                );
                assert_eq!(op["security"], serde_json::json!([{"bearer": []}, {}]));
            }
            for (code, r) in responses {
                if (code.starts_with('4') && code != "416")
                    || (code.starts_with('5') && path.starts_with("/v1/"))
                {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{method} {path} {code} is not the error body"
                    );
                }
            }
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Local-storage-only features answer clearly; S3 is configured here, so presign works.
    let (s, e) = get(&format!("{}/v1/media?status=bogus", f.base), None).await;
    assert_eq!(s, 400, "{e}");
}

#[tokio::test]
async fn hostile_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut f = upload_fleet(
        "[uploads]\nheader_timeout = \"1s\"\nmax_concurrent = 1\nbody_idle_timeout = \"2s\"\n",
        "127.0.0.1",
        false,
    )
    .await;
    f.start_api(&[], true).await;
    // Slowloris: headers that never end are cut off by the header timeout.
    let addr = f.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept a slowloris connection open");

    // A stalled body holds the only upload slot: a second upload gets 503; the stalled one gets 408.
    let head = std::fs::read(fixture("photo.jpg")).unwrap()[..16384].to_vec();
    // The stalled upload may lose the race for the slot to a probe (and get 503 itself): start it again then.
    let spawn_stalled = |base: String, head: Vec<u8>| {
        tokio::spawn(async move {
            let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(head) })
                .chain(futures::stream::pending());
            reqwest::Client::new()
                .post(format!("{base}/v1/uploads"))
                .header("content-type", "image/jpeg")
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    let mut stalled = spawn_stalled(f.base.clone(), head.clone());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if stalled.is_finished() {
            stalled = spawn_stalled(f.base.clone(), head.clone());
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        let r = reqwest::Client::new()
            .post(format!("{}/v1/uploads", f.base))
            .header("content-type", "image/jpeg")
            .body(std::fs::read(fixture("photo.jpg")).unwrap())
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 503 {
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["error"]["code"], "unavailable");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload cap never applied"
        );
    }
    assert_eq!(stalled.await.unwrap().unwrap(), 408);
}
