//! The S3 backend against moto (`MEDIAFLEET_TEST_S3_ENDPOINT`, default http://127.0.0.1:5055). Each test
//! makes its own bucket; an unreachable endpoint fails every test.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use mediafleet::storage::s3::{S3Config, S3Store};
use mediafleet::storage::{ObjectStore, StoreError};
use sha2::{Digest, Sha256};

fn endpoint() -> String {
    std::env::var("MEDIAFLEET_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5055".into())
}

/// A store on a fresh bucket. moto accepts any credentials; set dummy ones when the env has none.
async fn store() -> S3Store {
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var_os(k).is_none() {
            // Tests in this binary all set the same values, so a race between them is harmless.
            std::env::set_var(k, v);
        }
    }
    let bucket = format!("mft-{}", uuid::Uuid::new_v4().simple());
    let url = url::Url::parse(&format!("s3://{bucket}?endpoint={}", endpoint())).unwrap();
    let cfg = S3Config::from_url(&url).unwrap();
    let s = S3Store::connect(cfg).await.expect("connect");
    s.ensure_bucket()
        .await
        .unwrap_or_else(|e| panic!("S3 (moto) at {} is required for this test: {e}", endpoint()));
    s
}

fn file_with(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

#[tokio::test]
async fn round_trips_a_small_file_and_heads_it() {
    let s = store().await;
    let dir = tempfile::tempdir().unwrap();
    let src = file_with(dir.path(), "in.json", b"{\"hello\":\"world\"}");
    s.put_file("p/originals/a1", &src, "application/json")
        .await
        .expect("put");
    let meta = s.head("p/originals/a1").await.expect("head");
    assert_eq!(meta.bytes, 17);
    assert_eq!(meta.content_type.as_deref(), Some("application/json"));
    assert!(meta.etag.is_some());

    let dest = dir.path().join("out.json");
    assert_eq!(
        s.get_to_file("p/originals/a1", &dest).await.expect("get"),
        17
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"{\"hello\":\"world\"}");
    assert_eq!(s.local_path("p/originals/a1"), None);
    s.ping().await.expect("ping");
}

#[tokio::test]
async fn a_large_file_goes_multipart_and_reads_back_identical() {
    let s = store().await;
    assert_eq!(s.config().multipart_threshold, 16 * 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    {
        // 20 MiB of non-repeating bytes, so a misplaced part would change the hash.
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let mut block = [0u8; 32];
        for i in 0u64..(20 * 1024 * 1024 / 32) {
            block = Sha256::new()
                .chain_update(block)
                .chain_update(i.to_le_bytes())
                .finalize()
                .into();
            f.write_all(&block).unwrap();
        }
    }
    s.put_file("p/originals/big", &src, "video/mp4")
        .await
        .expect("multipart put");
    let meta = s.head("p/originals/big").await.unwrap();
    assert_eq!(meta.bytes, 20 * 1024 * 1024);
    assert!(
        meta.etag.as_deref().unwrap_or_default().contains('-'),
        "a multipart etag: {meta:?}"
    );

    let dest = dir.path().join("back.bin");
    assert_eq!(
        s.get_to_file("p/originals/big", &dest).await.unwrap(),
        20 * 1024 * 1024
    );
    assert_eq!(sha256_file(&dest), sha256_file(&src));

    // The conditional path for large files: the object exists, so nothing is uploaded.
    assert!(!s
        .put_if_absent("p/originals/big", &src, "video/mp4")
        .await
        .unwrap());
}

#[tokio::test]
async fn put_if_absent_writes_once() {
    let s = store().await;
    let dir = tempfile::tempdir().unwrap();
    let first = file_with(dir.path(), "1", b"first");
    let second = file_with(dir.path(), "2", b"second!");
    assert!(s
        .put_if_absent("p/media/m/thumb/ab/t.webp", &first, "image/webp")
        .await
        .unwrap());
    assert!(!s
        .put_if_absent("p/media/m/thumb/ab/t.webp", &second, "image/webp")
        .await
        .unwrap());
    let dest = dir.path().join("out");
    s.get_to_file("p/media/m/thumb/ab/t.webp", &dest)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"first");
}

#[tokio::test]
async fn missing_objects_are_not_found() {
    let s = store().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("never");
    assert!(matches!(
        s.get_to_file("p/nope", &dest).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(!dest.exists(), "no partial file is left behind");
    assert!(matches!(
        s.head("p/nope").await,
        Err(StoreError::NotFound(_))
    ));
    s.delete("p/nope")
        .await
        .expect("deleting a missing object is fine");
}

#[tokio::test]
async fn delete_and_delete_prefix() {
    let s = store().await;
    let dir = tempfile::tempdir().unwrap();
    let src = file_with(dir.path(), "x", b"x");
    for k in [
        "p/media/m1/thumb/a/t.webp",
        "p/media/m1/preview/b/p.jpg",
        "p/media/m10/thumb/c/t.webp",
        "p/originals/m1",
    ] {
        s.put_file(k, &src, "application/octet-stream")
            .await
            .unwrap();
    }
    s.delete("p/originals/m1").await.unwrap();
    assert!(matches!(
        s.head("p/originals/m1").await,
        Err(StoreError::NotFound(_))
    ));

    s.delete_prefix("p/media/m1/").await.expect("delete_prefix");
    assert!(matches!(
        s.head("p/media/m1/thumb/a/t.webp").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.head("p/media/m1/preview/b/p.jpg").await,
        Err(StoreError::NotFound(_))
    ));
    s.head("p/media/m10/thumb/c/t.webp")
        .await
        .expect("a sibling prefix is untouched");
    s.delete_prefix("p/media/none/")
        .await
        .expect("an empty prefix is fine");
}

#[tokio::test]
async fn delete_prefix_pages_through_many_objects() {
    let s = store().await;
    let dir = tempfile::tempdir().unwrap();
    let src = file_with(dir.path(), "x", b"x");
    // More than one list page (moto and S3 return at most 1,000 keys per page).
    let keys: Vec<String> = (0..1005)
        .map(|i| format!("p/media/many/hls/{i}.ts"))
        .collect();
    futures::stream::iter(keys.iter().map(|k| s.put_file(k, &src, "video/mp2t")))
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    s.delete_prefix("p/media/many/").await.unwrap();
    for k in [&keys[0], &keys[999], &keys[1004]] {
        assert!(
            matches!(s.head(k).await, Err(StoreError::NotFound(_))),
            "{k} survived"
        );
    }
}

#[tokio::test]
async fn presigned_get_fetches_the_bytes() {
    let s = store().await;
    let dir = tempfile::tempdir().unwrap();
    let src = file_with(dir.path(), "img", b"\xff\xd8\xffjpeg-ish");
    s.put_file("p/media/m/preview/ab/p.jpg", &src, "image/jpeg")
        .await
        .unwrap();
    let url = s
        .presign_get("p/media/m/preview/ab/p.jpg", Duration::from_secs(900))
        .await
        .unwrap()
        .expect("a url");
    assert!(url.contains("X-Amz-Signature"), "{url}");
    let resp = reqwest::get(&url).await.expect("GET the presigned url");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        b"\xff\xd8\xffjpeg-ish"
    );
}

#[tokio::test]
async fn invalid_keys_are_refused_before_any_request() {
    let s = store().await;
    let dir = tempfile::tempdir().unwrap();
    let src = file_with(dir.path(), "x", b"x");
    for bad in ["", "/abs", "a/../b", "a//b", "a\\b"] {
        assert!(
            matches!(
                s.put_file(bad, &src, "x/y").await,
                Err(StoreError::InvalidKey(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(s.head(bad).await, Err(StoreError::InvalidKey(_))),
            "{bad:?}"
        );
        assert!(matches!(
            s.get_to_file(bad, &dir.path().join("o")).await,
            Err(StoreError::InvalidKey(_))
        ));
        assert!(
            matches!(s.delete(bad).await, Err(StoreError::InvalidKey(_))),
            "{bad:?}"
        );
        assert!(matches!(
            s.presign_get(bad, Duration::from_secs(60)).await,
            Err(StoreError::InvalidKey(_))
        ));
    }
    assert!(
        matches!(s.delete_prefix("").await, Err(StoreError::InvalidKey(_))),
        "never the whole bucket"
    );
    assert!(matches!(
        s.delete_prefix("/").await,
        Err(StoreError::InvalidKey(_))
    ));
}

#[tokio::test]
async fn a_missing_bucket_is_refused_not_found() {
    let cfg = S3Config {
        bucket: format!("mft-missing-{}", uuid::Uuid::new_v4().simple()),
        endpoint: Some(endpoint()),
        region: Some("us-east-1".into()),
        path_style: true,
        ..S3Config::new("placeholder")
    };
    let _ = store().await; // sets the dummy credentials and checks moto is up
    let s = S3Store::connect(cfg).await.unwrap();
    assert!(matches!(
        s.head("p/x").await,
        Err(StoreError::NotFound(_) | StoreError::Refused(_))
    ));
    assert!(s.ping().await.is_err());
}

/// A server that takes connections and answers `answer` (then nothing, ever), like a black-holed S3 or a
/// proxy that stalls mid-body.
async fn hung_server(answer: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(answer).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

async fn store_at(endpoint: &str) -> S3Store {
    let _ = store().await; // sets the dummy credentials and checks moto is up
    let url = url::Url::parse(&format!(
        "s3://hung-bucket?endpoint={endpoint}&timeout=1s&stall_timeout=1s"
    ))
    .unwrap();
    S3Store::connect(S3Config::from_url(&url).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_black_holed_s3_fails_as_unavailable_within_its_timeouts() {
    let s = store_at(&hung_server(b"").await).await;
    let dir = tempfile::tempdir().unwrap();
    let src = file_with(dir.path(), "a", b"bytes");
    let t0 = std::time::Instant::now();
    let head = tokio::time::timeout(Duration::from_secs(60), s.head("p/a"))
        .await
        .expect("a hung HEAD returns");
    assert!(matches!(head, Err(StoreError::Unavailable(_))), "{head:?}");
    let put = tokio::time::timeout(
        Duration::from_secs(60),
        s.put_file("p/a", &src, "text/plain"),
    )
    .await
    .expect("a hung PUT returns");
    assert!(matches!(put, Err(StoreError::Unavailable(_))), "{put:?}");
    let get = tokio::time::timeout(
        Duration::from_secs(90),
        s.get_to_file("p/a", &dir.path().join("out")),
    )
    .await
    .expect("a hung GET returns");
    assert!(matches!(get, Err(StoreError::Unavailable(_))), "{get:?}");
    println!(
        "three hung calls failed as unavailable in {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn a_body_that_stalls_midway_fails_as_unavailable_and_leaves_no_file() {
    let s = store_at(
        &hung_server(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n0123456789")
            .await,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let get = tokio::time::timeout(Duration::from_secs(90), s.get_to_file("p/a", &dest))
        .await
        .expect("a stalled body returns");
    assert!(matches!(get, Err(StoreError::Unavailable(_))), "{get:?}");
    assert!(!dest.exists(), "no partial file is left");
}
