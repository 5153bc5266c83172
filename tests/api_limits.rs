//! The api refuses oversized or unknown form fields early, without buffering them, and private renditions
//! are never marked cacheable by shared caches. `serve` on the embedded defaults (local storage).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

const BOUNDARY: &str = "mfboundary7";

/// Sends a chunked multipart request whose first part begins with `head` and then streams `filler` bytes
/// (up to `total`), while reading the answer. Returns (status, bytes of filler sent, time to the answer).
async fn endless_part(listen: &str, head: &str, total: u64) -> (u16, u64, Duration) {
    let sock = tokio::net::TcpStream::connect(listen).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    let request = format!(
        "POST /v1/uploads HTTP/1.1\r\nHost: {listen}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    wr.write_all(request.as_bytes()).await.unwrap();
    let first = format!("--{BOUNDARY}\r\n{head}");
    wr.write_all(format!("{:x}\r\n{first}\r\n", first.len()).as_bytes())
        .await
        .unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (sent, stop) = (sent.clone(), stop.clone());
        tokio::spawn(async move {
            let chunk = vec![b'a'; 64 * 1024];
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk,
                b"\r\n".to_vec(),
            ]
            .concat();
            while !stop.load(Ordering::Relaxed) && sent.load(Ordering::Relaxed) < total {
                if wr.write_all(&framed).await.is_err() {
                    return;
                }
                sent.fetch_add(64 * 1024, Ordering::Relaxed);
            }
        })
    };
    let started = Instant::now();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let status = loop {
        let n = tokio::time::timeout(Duration::from_secs(120), rd.read(&mut buf))
            .await
            .expect("no answer within 120 s")
            .unwrap_or(0);
        assert!(
            n > 0,
            "connection closed without an answer after {} bytes",
            sent.load(Ordering::Relaxed)
        );
        head.extend_from_slice(&buf[..n]);
        if let Some(line) = head
            .split(|b| *b == b'\n')
            .next()
            .filter(|_| head.contains(&b'\n'))
        {
            let line = String::from_utf8_lossy(line);
            break line
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u16>()
                .unwrap();
        }
    };
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;
    (status, sent.load(Ordering::Relaxed), elapsed)
}

const HUGE: u64 = 800 * 1024 * 1024;

#[tokio::test]
async fn an_800_mib_text_field_is_refused_early_without_growing_the_api() {
    let s = serve_with("").await;
    // Warm up the upload path once, so lazily allocated buffers are not counted against the refusal.
    let (status, _) = upload(&s.base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(status, 202);
    let pid = s.proc.child.id();
    let before = peak_rss(pid);
    let (status, sent, elapsed) = endless_part(
        &s.listen,
        "Content-Disposition: form-data; name=\"profile\"\r\n\r\n",
        HUGE,
    )
    .await;
    let grew = peak_rss(pid).saturating_sub(before);
    println!("profile field: status {status}, {sent} bytes sent, answered in {elapsed:?}, peak RSS +{grew} bytes");
    assert_eq!(status, 400);
    assert!(sent < HUGE, "the api read the whole 800 MiB field");
    assert!(grew < 16 << 20, "peak RSS grew by {grew} bytes");
    // The api is still there and still takes uploads.
    assert_eq!(upload(&s.base, &fixture("photo.jpg"), "p.jpg").await.0, 202);
}

#[tokio::test]
async fn part_headers_that_never_end_and_unknown_fields_are_refused() {
    let s = serve_with("").await;
    let pid = s.proc.child.id();
    let before = peak_rss(pid);
    // A part whose headers never end: the parser would buffer them all while it looks for their end.
    let (status, sent, _) = endless_part(
        &s.listen,
        "Content-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\nX-Pad: ",
        HUGE,
    )
    .await;
    let grew = peak_rss(pid).saturating_sub(before);
    println!("endless headers: status {status}, {sent} bytes sent, peak RSS +{grew} bytes");
    assert_eq!(status, 400);
    assert!(sent < HUGE);
    assert!(grew < 16 << 20, "peak RSS grew by {grew} bytes");
    // An unknown field is refused at its headers, before its body is read.
    let (status, sent, _) = endless_part(
        &s.listen,
        "Content-Disposition: form-data; name=\"comment\"\r\n\r\n",
        HUGE,
    )
    .await;
    assert_eq!(status, 400);
    assert!(sent < HUGE);
    // The same through an ordinary client: the message names the field.
    let form = reqwest::multipart::Form::new()
        .text("comment", "hello")
        .part(
            "file",
            reqwest::multipart::Part::bytes(std::fs::read(fixture("photo.jpg")).unwrap())
                .file_name("photo.jpg"),
        );
    let r = reqwest::Client::new()
        .post(format!("{}/v1/uploads", s.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("comment"),
        "{body}"
    );
    // Known fields within their cap still work, before or after the file.
    let form = reqwest::multipart::Form::new()
        .text("external_id", "x".repeat(4000))
        .part(
            "file",
            reqwest::multipart::Part::bytes(std::fs::read(fixture("photo.jpg")).unwrap())
                .file_name("photo.jpg"),
        )
        .text("profile", "default");
    let r = reqwest::Client::new()
        .post(format!("{}/v1/uploads", s.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
}

async fn get(url: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

fn cache_control(r: &reqwest::Response) -> String {
    r.headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn private_renditions_are_never_publicly_cacheable() {
    let s = serve_with("[auth]\nrenditions = \"private\"\nsigning_secret = \"sign-me\"\n").await;
    let out = std::process::Command::new(bin())
        .args(["ops", "keys", "create", "--name", "app"])
        .envs(s.env.iter().map(|(a, b)| (a, b)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = serde_json::from_slice::<Value>(&out.stdout).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = upload(&s.base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap();
    let media = wait_final(&s.base, id, Duration::from_secs(60)).await;
    assert_eq!(media["status"], "ready", "{media}");
    let path = rendition(&media, "thumb")["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{}{path}", s.base);

    // With a key: the key was the credential, so nothing may store the bytes.
    let r = get(&url, Some(&key)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(cache_control(&r), "no-store");
    // With a signed URL: the browser may keep it until the signature expires; shared caches may not.
    let exp = chrono::Utc::now().timestamp() + 300;
    let sig = mediafleet::api::sign_rendition("sign-me", &path, exp);
    let signed = format!("{url}?expires={exp}&signature={sig}");
    let r = get(&signed, None).await;
    assert_eq!(r.status(), 200);
    let cc = cache_control(&r);
    assert!(cc.starts_with("private, max-age="), "{cc}");
    let age: i64 = cc.rsplit('=').next().unwrap().parse().unwrap();
    assert!((0..=300).contains(&age), "{cc}");
    assert!(!cc.contains("public"), "{cc}");
    // A revalidation answers the same policy.
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let r = reqwest::Client::new()
        .get(&signed)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(
        cache_control(&r).starts_with("private"),
        "{}",
        cache_control(&r)
    );
}

#[tokio::test]
async fn public_renditions_stay_publicly_cacheable() {
    let s = serve_with("").await;
    let (_, body) = upload(&s.base, &fixture("photo.jpg"), "photo.jpg").await;
    let media = wait_final(
        &s.base,
        body["id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    let url = format!(
        "{}{}",
        s.base,
        rendition(&media, "thumb")["url"].as_str().unwrap()
    );
    let r = get(&url, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(cache_control(&r), "public, max-age=3600");
}

/// Sends a raw JPEG body in `step`-byte chunks every `every`; returns the status and when it came.
async fn trickle(listen: &str, step: usize, every: Duration) -> (u16, Duration) {
    let body = std::fs::read(fixture("photo.jpg")).unwrap();
    let sock = tokio::net::TcpStream::connect(listen).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    let head = format!(
        "POST /v1/uploads HTTP/1.1\r\nHost: {listen}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    wr.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        for chunk in body.chunks(step) {
            if wr.write_all(chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    let started = Instant::now();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(60), rd.read(&mut buf))
        .await
        .expect("no answer within 60 s")
        .unwrap();
    writer.abort();
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, started.elapsed())
}

#[tokio::test]
async fn a_trickling_body_is_cut_by_the_minimum_rate_and_the_deadline() {
    // 1 KiB/s minimum after 1 s: 16 bytes every 100 ms (160 B/s) is cut; the idle timeout alone never fires.
    let s = serve_with("[uploads]\nmin_rate = 1024\nmin_rate_grace = \"1s\"\n").await;
    let (status, after) = trickle(&s.listen, 16, Duration::from_millis(100)).await;
    println!("slow body: {status} after {after:?}");
    assert_eq!(status, 408);
    // A total deadline, whatever the rate.
    let s = serve_with("[uploads]\nmin_rate = 0\nbody_deadline = \"2s\"\n").await;
    let (status, after) = trickle(&s.listen, 64, Duration::from_millis(50)).await;
    println!("deadline: {status} after {after:?}");
    assert_eq!(status, 408);
    // A body at a normal pace is unaffected.
    assert_eq!(upload(&s.base, &fixture("photo.jpg"), "p.jpg").await.0, 202);
}

#[tokio::test]
async fn an_open_api_answers_only_its_own_host_and_pages() {
    let s = serve_with("").await;
    // No pooled connections: the api closes a connection whose body it refused to read.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let list = format!("{}/v1/media", s.base);
    // A rebound DNS name, or a page of another site, is refused.
    let r = client
        .get(&list)
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post(format!("{}/v1/uploads", s.base))
        .header("origin", "https://evil.example")
        .header("content-type", "image/jpeg")
        .body(std::fs::read(fixture("photo.jpg")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Loopback names and the api's own pages are fine; health stays open to anyone.
    let r = client
        .get(&list)
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{}/healthz", s.base))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn failed_key_checks_are_limited_per_address_and_valid_keys_still_work() {
    let s = serve_with("[auth]\nrequire_keys = true\nfailed_auth_per_minute = 5\n").await;
    let key = s.create_key("app");
    let list = format!("{}/v1/media", s.base);
    // Five wrong keys are answered 401; the sixth in the same minute is over the limit.
    for i in 0..5 {
        let r = get(&list, Some(&format!("wrong-{i}"))).await;
        assert_eq!(r.status(), 401, "guess {i}");
    }
    let r = get(&list, Some("wrong-5")).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // While blocked, even the right key from that address waits (no key check reaches the database)…
    assert_eq!(get(&list, Some(&key)).await.status(), 429);
    // …and requests without a key are answered as before.
    assert_eq!(get(&list, None).await.status(), 401);
    // Valid keys never count: on a fresh api, many good requests are all served.
    let fresh = serve_with("[auth]\nrequire_keys = true\nfailed_auth_per_minute = 2\n").await;
    let out = std::process::Command::new(bin())
        .args(["ops", "keys", "create", "--name", "app"])
        .envs(fresh.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    for _ in 0..10 {
        let r = get(&format!("{}/v1/media", fresh.base), key["key"].as_str()).await;
        assert_eq!(r.status(), 200);
    }
}
