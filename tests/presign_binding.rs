//! Presigned single PUTs are bound to the declared upload (Postgres, RabbitMQ, moto S3, `api` and `worker`
//! as processes): the URL signs the size and the declared SHA-256, `complete` refuses an object without the
//! declared checksum, and an object replaced through the still-valid URL after `complete` is never processed.

mod common;

use common::uploads::*;
use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn signed_headers(answer: &Value) -> String {
    let url = url::Url::parse(answer["upload"]["url"].as_str().unwrap()).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "X-Amz-SignedHeaders")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_url_signs_size_and_checksum_and_a_missing_checksum_is_refused() {
    let f = upload_fleet("", "127.0.0.1", true).await;
    let photo = std::fs::read(fixture("photo.jpg")).unwrap();
    let digest = hex::encode(Sha256::digest(&photo));
    let body = json!({"filename": "p.jpg", "content_type": "image/jpeg", "bytes": photo.len(), "sha256": digest});
    let (s, a) = presign(&f.base, body.clone(), None).await;
    assert_eq!(s, 200, "{a}");
    let signed = signed_headers(&a);
    assert!(signed.contains("content-length"), "{signed}");
    assert!(signed.contains("x-amz-checksum-sha256"), "{signed}");
    assert!(
        a["upload"]["headers"]["x-amz-checksum-sha256"].is_string(),
        "{a}"
    );
    // The honest client sends what the answer lists, and the media becomes ready.
    let id = a["id"].as_str().unwrap().to_owned();
    put_single(&a, photo.clone()).await;
    assert_eq!(complete(&f.base, &id, json!({})).await.0, 202);
    assert_eq!(
        wait_status(&f.base, &id, None, &["ready", "failed"]).await["status"],
        "ready"
    );

    // A PUT without the signed checksum header (which S3 would refuse outright) is refused at complete,
    // and its object is not kept.
    let (_, b) = presign(&f.base, body, None).await;
    let id = b["id"].as_str().unwrap().to_owned();
    let r = reqwest::Client::new()
        .put(b["upload"]["url"].as_str().unwrap())
        .header("content-type", "image/jpeg")
        .body(photo)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (s, e) = complete(&f.base, &id, json!({})).await;
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("sha256"),
        "{e}"
    );
    // Malformed digests are refused up front.
    let (s, _) = presign(
        &f.base,
        json!({"filename": "p.jpg", "content_type": "image/jpeg", "bytes": 10, "sha256": "abc"}),
        None,
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn an_object_replaced_after_complete_is_never_processed() {
    // The api alone first: the validation job waits in the queue while the object is swapped.
    let mut f = upload_fleet("", "127.0.0.1", false).await;
    f.start_api(&[], true).await;
    let photo = std::fs::read(fixture("photo.jpg")).unwrap();
    let (s, a) = presign(
        &f.base,
        json!({"filename": "p.jpg", "content_type": "image/jpeg", "bytes": photo.len()}),
        None,
    )
    .await;
    assert_eq!(s, 200, "{a}");
    let id = a["id"].as_str().unwrap().to_owned();
    put_single(&a, photo.clone()).await;
    assert_eq!(complete(&f.base, &id, json!({})).await.0, 202);
    // The URL is still valid: replace the validated object with other bytes of the same size.
    let mut other = photo;
    let n = other.len();
    other[n / 2..].fill(0x5a);
    put_single(&a, other).await;
    f.start_worker();
    let media = wait_status(&f.base, &id, None, &["ready", "failed"]).await;
    assert_eq!(media["status"], "failed", "{media}");
    assert_eq!(media["error"]["code"], "corrupt_media", "{media}");
    assert!(
        media["error"]["message"]
            .as_str()
            .unwrap()
            .contains("replaced"),
        "{media}"
    );
}
