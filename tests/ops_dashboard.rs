//! The `/ops` dashboard, as an operator uses it: headless Chromium (Debian's `chromium`, driven through
//! `chromedriver` with fantoccini) against a real `mediafleet serve` on the embedded defaults, sampling every
//! 300 ms.
//!
//! 1. a truncated JPEG fails (`corrupt_media`), a photo becomes ready;
//! 2. the page's figures (read from its cells: `data-figure` / `data-value`, and their text) are the ones
//!    `mediafleet ops status --json` prints, and the charts draw the sampled history;
//! 3. with the broken original replaced in storage, the failed media's Replay button brings it to `ready`,
//!    audited as the caller; a screenshot is saved under the target dir's `test-artefacts/`;
//! 4. over plain HTTP: the routes are open on a loopback api without keys and need a key when keys are
//!    required (as `/metrics`), and the POST routes refuse a request without `x-mediafleet-ops: 1` or from a
//!    foreign origin.
//!
//! A missing `chromium` or `chromedriver` fails the test (scripts/ensure-deps.sh --services installs them).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fleet::ops_ok;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// Samples every 300 ms, so the charts have points within a second.
const SAMPLE: &str = "[scaling]\nstatus_sample = \"300ms\"\n";

/// `name` from `$env_var` or the PATH; panics (never skips) when it is not installed.
fn program(name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return p.into();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed (or set {env_var}): run scripts/ensure-deps.sh --services \
                 (Debian packages chromium and chromium-driver)"
            )
        })
}

/// A chromedriver on a free port, killed on drop, with the browser's throwaway profile.
struct Driver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Driver {
    let exe = program("chromedriver", "MEDIAFLEET_TEST_CHROMEDRIVER");
    let port = free_port();
    let child = Command::new(&exe)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        profile: tempfile::tempdir().unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/status", driver.url)).await {
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if v["value"]["ready"] == true {
                return driver;
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A headless Chromium session. As root it needs `--no-sandbox`; the background-networking flags keep it
/// from calling out (nothing but loopback is reachable here).
async fn browser(driver: &Driver) -> Client {
    let chromium = program("chromium", "MEDIAFLEET_TEST_CHROMIUM");
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--window-size=1400,1700".to_owned(),
        format!("--user-data-dir={}", driver.profile.path().display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": chromium, "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromedriver session")
}

/// Evaluates `script` (which `return`s) in the page.
async fn eval(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("script runs")
}

/// Polls `script` until it returns `true`.
async fn wait_for(c: &Client, script: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while eval(c, script).await != true {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn generation(c: &Client) -> u64 {
    eval(
        c,
        "return Number(document.getElementById('state').dataset.generation)",
    )
    .await
    .as_u64()
    .unwrap_or(0)
}

/// Every figure cell of the page: `data-figure` → (`data-value`, shown text).
async fn figures(c: &Client) -> serde_json::Map<String, Value> {
    let v = eval(
        c,
        "return Object.fromEntries([...document.querySelectorAll('[data-figure]')].map(e => \
         [e.dataset.figure, {value: JSON.parse(e.dataset.value), text: e.textContent}]))",
    )
    .await;
    v.as_object().cloned().expect("figures")
}

/// What the page must show for `ops status --json`'s document `doc` (worker `last_seen` moves with every
/// heartbeat and is only checked for presence).
fn expected(doc: &Value) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for c in doc["classes"].as_array().unwrap() {
        let class = c["class"].as_str().unwrap();
        for (field, v) in c.as_object().unwrap() {
            if field != "class" {
                out.insert(format!("class/{class}/{field}"), v.clone());
            }
        }
    }
    for (code, n) in doc["failures_last_hour"].as_object().unwrap() {
        out.insert(format!("failures/{code}"), n.clone());
    }
    for w in doc["workers"].as_array().unwrap() {
        let id = w["id"].as_str().unwrap();
        for (field, v) in w.as_object().unwrap() {
            if field != "last_seen" {
                out.insert(format!("worker/{id}/{field}"), v.clone());
            }
        }
    }
    out
}

/// Equal as JSON, numbers compared as numbers (`0` and `0.0` are one figure).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Differences between the page and the CLI; empty when they agree.
fn differences(page: &serde_json::Map<String, Value>, doc: &Value) -> Vec<String> {
    let want = expected(doc);
    let mut diffs = Vec::new();
    for (k, v) in &want {
        match page.get(k) {
            Some(p) if same(&p["value"], v) => {}
            Some(p) => diffs.push(format!("{k}: page {} != cli {v}", p["value"])),
            None => diffs.push(format!("{k}: not on the page")),
        }
    }
    for k in page.keys() {
        if !want.contains_key(k) && !k.ends_with("/last_seen") {
            diffs.push(format!("{k}: on the page, not in ops status"));
        }
    }
    diffs
}

fn artefact(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // …/target/debug/deps/ops_dashboard-<hash>
            let exe = std::env::current_exe().unwrap();
            exe.ancestors().nth(3).unwrap().to_path_buf()
        });
    let dir = target.join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let path = artefact(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

fn env_value(env: &[(String, String)], key: &str) -> String {
    env.iter().find(|(k, _)| k == key).unwrap().1.clone()
}

async fn wait_ready(base: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = reqwest::get(format!("{base}/v1/media/{id}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == "ready" {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{id} did not become ready after its replay: {v}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() {
    // Loud before anything starts when the browser is missing.
    program("chromium", "MEDIAFLEET_TEST_CHROMIUM");
    let driver = chromedriver().await;
    let s = serve_with(SAMPLE).await;

    // 1. One media that fails, one that works.
    let (status, bad) = upload(&s.base, &fixture("truncated.jpg"), "truncated.jpg").await;
    assert_eq!(status, 202, "{bad}");
    let bad = bad["id"].as_str().unwrap().to_owned();
    let (status, good) = upload(&s.base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(status, 202, "{good}");
    let within = Duration::from_secs(60);
    let failed = wait_final(&s.base, &bad, within).await;
    assert_eq!(failed["error"]["code"], "corrupt_media", "{failed}");
    let good = wait_final(&s.base, good["id"].as_str().unwrap(), within).await;
    assert_eq!(good["status"], "ready", "{good}");

    // 2. The page shows what `ops status --json` prints.
    let c = browser(&driver).await;
    c.goto(&format!("{}/ops", s.base)).await.expect("open /ops");
    wait_for(
        &c,
        "return document.getElementById('state').dataset.loaded === '1'",
        "the first render",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let (page, cli) = loop {
        let cli = ops_ok(&s.env, &["status", "--json"]);
        // A render that started after the CLI read.
        let g = generation(&c).await;
        let until = Instant::now() + Duration::from_secs(10);
        while generation(&c).await <= g + 1 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = figures(&c).await;
        if differences(&page, &cli).is_empty() || Instant::now() > deadline {
            break (page, cli);
        }
    };
    let diffs = differences(&page, &cli);
    assert!(
        diffs.is_empty(),
        "the page and `ops status --json` disagree: {diffs:#?}\ncli: {cli}"
    );
    assert_eq!(cli["failures_last_hour"]["corrupt_media"], 1, "{cli}");
    assert!(!cli["workers"].as_array().unwrap().is_empty(), "{cli}");
    // What a person reads is what the cells hold.
    for (k, p) in &page {
        if let Some(n) = p["value"].as_u64() {
            assert_eq!(p["text"], n.to_string(), "{k}");
        }
    }
    assert_eq!(page["failures/corrupt_media"]["text"], "1");
    // The sampled hour is drawn: every class has a line of several points.
    wait_for(
        &c,
        "return [...document.querySelectorAll('#chart-ready polyline')].length >= 4 && \
         [...document.querySelectorAll('#chart-ready polyline')].every(p => Number(p.dataset.points) >= 2)",
        "the depth chart",
    )
    .await;
    let dlq = c
        .find(Locator::Css("button[data-redrive=\"image\"]"))
        .await
        .expect("a Redrive button per class");
    assert_eq!(dlq.text().await.unwrap(), "Redrive");
    screenshot(&c, "ops-dashboard.png").await;

    // 3. Replay from the page, once the original is one a replay can process.
    let data = PathBuf::from(env_value(&s.env, "MEDIAFLEET_DATA_DIR"));
    let original = data.join("objects/mediafleet/originals").join(&bad);
    assert!(original.is_file(), "no original at {}", original.display());
    std::fs::copy(fixture("photo.jpg"), &original).unwrap();
    c.find(Locator::Css(&format!("button[data-replay=\"{bad}\"]")))
        .await
        .expect("a Replay button on the failed media")
        .click()
        .await
        .unwrap();
    wait_for(
        &c,
        "return document.getElementById('action-result').dataset.outcome === 'ok'",
        "the replay's answer",
    )
    .await;
    let said = c
        .find(Locator::Id("action-result"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(said.starts_with("replayed 1"), "{said}");
    let v = wait_ready(&s.base, &bad).await;
    assert!(v["version"].as_i64() > failed["version"].as_i64(), "{v}");
    wait_for(
        &c,
        &format!("return document.querySelector('[data-media=\"{bad}\"]') === null"),
        "the replayed media to leave the failed list",
    )
    .await;
    let audit = ops_ok(&s.env, &["audit", "--action", "replay", "--json"]);
    let entry = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["target"] == bad.as_str())
        .unwrap_or_else(|| panic!("the replay is not audited: {audit}"));
    assert_eq!(entry["actor"], "anonymous", "{entry}");
    screenshot(&c, "ops-dashboard-after-replay.png").await;
    c.close().await.unwrap();
}

async fn request(
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const OPS: (&str, &str) = ("x-mediafleet-ops", "1");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_the_key_rule_and_want_the_header() {
    use reqwest::Method;
    // A loopback api without keys: open, but its POSTs need the header and refuse foreign pages.
    let open = serve_with(SAMPLE).await;
    let (s, page) = request(Method::GET, &format!("{}/ops", open.base), None, &[]).await;
    assert_eq!(s, 200);
    assert!(page.as_str().unwrap().contains("mediafleet ops"));
    let (s, v) = request(Method::GET, &format!("{}/ops/status", open.base), None, &[]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["sample_seconds"], 0.3, "{v}");
    assert!(v["status"]["classes"].as_array().unwrap().len() >= 4, "{v}");
    assert!(v["history"].is_array() && v["failed"].is_array(), "{v}");
    let replay = format!("{}/ops/replay/{}", open.base, uuid::Uuid::now_v7());
    let redrive = format!("{}/ops/dlq/image/redrive", open.base);
    for url in [&replay, &redrive] {
        let (s, e) = request(Method::POST, url, None, &[]).await;
        assert_eq!((s, &e["error"]["code"]), (403, &json!("forbidden")), "{e}");
        let (s, e) = request(
            Method::POST,
            url,
            None,
            &[OPS, ("origin", "http://evil.example")],
        )
        .await;
        assert_eq!(s, 403, "{e}");
    }
    let (s, v) = request(Method::POST, &replay, None, &[OPS]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["skipped"][0]["reason"], "not found", "{v}");
    let (s, v) = request(Method::POST, &redrive, None, &[OPS]).await;
    assert_eq!((s, &v["moved"]), (200, &json!([])), "{v}");
    let bad_class = format!("{}/ops/dlq/No_Such!/redrive", open.base);
    assert_eq!(request(Method::POST, &bad_class, None, &[OPS]).await.0, 400);
    drop(open);

    // Keys required: every dashboard route wants one, as /metrics does; a replay is audited with it.
    let locked = serve_with(&format!("[auth]\nrequire_keys = true\n{SAMPLE}")).await;
    for path in ["/ops", "/ops/status"] {
        let url = format!("{}{path}", locked.base);
        assert_eq!(request(Method::GET, &url, None, &[]).await.0, 401, "{path}");
    }
    let key = locked.create_key("ops");
    for path in ["/ops", "/ops/status"] {
        let url = format!("{}{path}", locked.base);
        assert_eq!(
            request(Method::GET, &url, Some(&key), &[]).await.0,
            200,
            "{path}"
        );
    }
    let bytes = std::fs::read(fixture("truncated.jpg")).unwrap();
    let upload = reqwest::Client::new()
        .post(format!("{}/v1/uploads", locked.base))
        .bearer_auth(&key)
        .header("content-type", "image/jpeg")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 202);
    let id = upload.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = request(
            Method::GET,
            &format!("{}/v1/media/{id}", locked.base),
            Some(&key),
            &[],
        )
        .await;
        if v["status"] == "failed" {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let replay = format!("{}/ops/replay/{id}", locked.base);
    assert_eq!(request(Method::POST, &replay, None, &[OPS]).await.0, 401);
    assert_eq!(request(Method::POST, &replay, Some(&key), &[]).await.0, 403);
    let (s, v) = request(Method::POST, &replay, Some(&key), &[OPS]).await;
    assert_eq!((s, &v["replayed"]), (200, &json!([id])), "{v}");
    let audit = ops_ok(&locked.env, &["audit", "--action", "replay", "--json"]);
    let entry = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["target"] == id.as_str())
        .unwrap_or_else(|| panic!("the replay is not audited: {audit}"));
    assert!(
        entry["actor"].as_str().unwrap().starts_with("key:"),
        "{entry}"
    );
}
