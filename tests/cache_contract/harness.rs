//! What the cache contract needs around a backend: the server (shared Redis, shared memcached, or a pool of
//! memcached processes this test starts), raw reads that bypass our client, and a `mediafleet serve` on it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mediafleet::cache::MediaCache;
use mediafleet::config::{CacheSettings, CacheUrl};
use serde_json::Value;

use crate::common::cache::{delete_prefix, redis_addr, redis_url};
use crate::common::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Memcached,
}

/// The shared memcached (scripts/services.sh starts it).
pub fn memcached_addr() -> String {
    std::env::var("MEDIAFLEET_TEST_MEMCACHED_ADDR").unwrap_or_else(|_| "127.0.0.1:11211".into())
}

/// The shared server's address, checked.
pub fn server_addr(b: Backend) -> String {
    match b {
        Backend::Redis => {
            let _ = redis_url();
            redis_addr()
        }
        Backend::Memcached => {
            let addr = memcached_addr();
            require_tcp(&addr, "memcached");
            addr
        }
    }
}

/// The `--cache` URL of a server at `addr`.
pub fn url_at(b: Backend, addr: &str) -> String {
    match b {
        Backend::Redis => format!("redis://{addr}/0"),
        Backend::Memcached => format!("memcached://{addr}"),
    }
}

/// The `--cache` URL of the shared server.
pub fn cache_url(b: Backend) -> String {
    url_at(b, &server_addr(b))
}

/// Test timings: a 1 s pending TTL and lock (memcached counts whole seconds).
pub fn settings() -> CacheSettings {
    CacheSettings {
        ttl: Duration::from_secs(600),
        pending_ttl: Duration::from_secs(1),
        lock_ttl: Duration::from_secs(2),
        op_timeout: Duration::from_secs(2),
        ..CacheSettings::default()
    }
}

/// A cache on `url` under `prefix`.
pub fn cache_on(url: &str, prefix: &str, settings: CacheSettings) -> MediaCache {
    MediaCache::from_url(&CacheUrl::parse(url).unwrap(), prefix, settings)
        .unwrap()
        .unwrap()
}

/// One line-protocol `get` on one memcached server, bypassing our client.
pub fn memcached_raw_get(addr: &str, key: &str) -> Option<(u32, String)> {
    let mut s = TcpStream::connect(addr).expect("connect to memcached");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "get {key}\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    if line == "END\r\n" {
        return None;
    }
    let parts: Vec<&str> = line.trim_end().split(' ').collect();
    assert_eq!(parts[0], "VALUE", "{line:?}");
    let flags: u32 = parts[2].parse().unwrap();
    let len: usize = parts[3].parse().unwrap();
    let mut data = vec![0u8; len + 2];
    r.read_exact(&mut data).unwrap();
    data.truncate(len);
    Some((flags, String::from_utf8(data).unwrap()))
}

/// A raw memcached command answered by one line.
pub fn memcached_raw_line(addr: &str, cmd: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to memcached");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(cmd.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// The stored text of `key` on the shared server of `b`, read without our client.
pub async fn raw_get(b: Backend, key: &str) -> Option<String> {
    match b {
        Backend::Redis => crate::common::cache::get(key).await,
        Backend::Memcached => {
            let addr = memcached_addr();
            let key = key.to_owned();
            tokio::task::spawn_blocking(move || {
                memcached_raw_get(&addr, &key).map(|(f, v)| {
                    assert_eq!(
                        f, 0,
                        "objects are stored with flags 0 (a plain string to PHP)"
                    );
                    v
                })
            })
            .await
            .unwrap()
        }
    }
}

/// Removes raw keys (Redis: the whole prefix; memcached cannot list keys, so the named ones).
pub async fn forget(b: Backend, prefix: &str, keys: &[String]) {
    match b {
        Backend::Redis => {
            delete_prefix(prefix).await;
        }
        Backend::Memcached => {
            let addr = memcached_addr();
            let keys = keys.to_vec();
            tokio::task::spawn_blocking(move || {
                for k in keys {
                    let l = memcached_raw_line(&addr, &format!("delete {k}\r\n"));
                    assert!(l == "DELETED" || l == "NOT_FOUND", "{l}");
                }
            })
            .await
            .unwrap();
        }
    }
}

/// Polls `key` until `pred` holds on its JSON.
pub async fn wait_raw(
    b: Backend,
    key: &str,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(s) = raw_get(b, key).await {
            let v: Value = serde_json::from_str(&s).expect("cached JSON");
            if pred(&v) {
                return v;
            }
            last = Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{key} did not reach the expected state within {within:?}; last: {last:?}");
}

/// memcached processes started by a test on free ports, killed on drop.
pub struct MemcachedPool {
    pub ports: Vec<u16>,
    children: Vec<Child>,
}

impl MemcachedPool {
    /// Starts `n` servers (`memcached -p PORT -U 0 -l 127.0.0.1`; `-u root` when running as root).
    pub fn start(n: usize, extra: &[&str]) -> MemcachedPool {
        let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
            || Command::new("id")
                .arg("-u")
                .output()
                .map(|o| o.stdout == b"0\n")
                .unwrap_or(false);
        let mut pool = MemcachedPool {
            ports: Vec::new(),
            children: Vec::new(),
        };
        for _ in 0..n {
            let port = free_port();
            let mut cmd = Command::new("memcached");
            cmd.args([
                "-p",
                &port.to_string(),
                "-U",
                "0",
                "-l",
                "127.0.0.1",
                "-m",
                "64",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
            if root {
                cmd.args(["-u", "root"]);
            }
            let child = cmd.spawn().expect(
                "memcached is not installed (scripts/ensure-deps.sh --services installs it)",
            );
            pool.children.push(child);
            pool.ports.push(port);
        }
        for p in &pool.ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", *p)).is_err() {
                assert!(Instant::now() < deadline, "memcached on {p} did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        pool
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,…`
    pub fn list(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `memcached://127.0.0.1:p1,…`
    pub fn url(&self) -> String {
        format!("memcached://{}", self.list())
    }
}

impl Drop for MemcachedPool {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `mediafleet serve` on Postgres, the embedded queue, local storage and `cache_url`.
pub struct Served {
    pub proc: Proc,
    pub base: String,
    pub prefix: String,
    pub db: String,
    pub env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
}

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("mediafleet.toml");
    std::fs::write(
        &path,
        r#"
[worker]
poll_wait = "200ms"
lease = "5s"
retry_base = "200ms"
retry_max = "1s"
reaper_interval = "1s"
job_timeout = "60s"
drain_timeout = "5s"
max_attempts = 200
max_receives = 1000

[cache_options]
op_timeout = "300ms"
"#,
    )
    .unwrap();
    path
}

pub async fn serve(cache_url: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let db = pg_database().await;
    let prefix = unique("c");
    let port = free_port();
    let env: Vec<(String, String)> = vec![
        ("MEDIAFLEET_DB".into(), db.clone()),
        ("MEDIAFLEET_CACHE".into(), cache_url.into()),
        ("MEDIAFLEET_PREFIX".into(), prefix.clone()),
        (
            "MEDIAFLEET_CONFIG".into(),
            config(dir.path()).display().to_string(),
        ),
        (
            "MEDIAFLEET_DATA_DIR".into(),
            dir.path().join("data").display().to_string(),
        ),
        ("MEDIAFLEET_LISTEN".into(), format!("127.0.0.1:{port}")),
    ];
    let refs: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let proc = Proc::spawn("serve", &["serve"], &refs);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, Duration::from_secs(60)).await;
    Served {
        proc,
        base,
        prefix,
        db,
        env,
        dir,
    }
}

/// Runs `mediafleet ops warm ARGS` with `env`; returns its stdout summary.
pub fn ops_warm(env: &[(String, String)], args: &[&str]) -> Value {
    let mut cmd = Command::new(bin());
    cmd.args(["ops", "warm"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env("RUST_LOG", "warn");
    let out = cmd.output().expect("run ops warm");
    assert!(
        out.status.success(),
        "ops warm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("summary JSON on stdout")
}

pub async fn get_text(base: &str, id: &str) -> (u16, String) {
    let r = reqwest::get(format!("{base}/v1/media/{id}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

pub async fn wait_readyz(base: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
        let code = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        if body["status"] == status {
            assert_eq!(code, 200, "{body}");
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "readyz never said {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Seeds `n` ready media (two renditions each) into a fresh, migrated Postgres database; returns its URL and
/// the ids in id order.
pub async fn seeded_database(n: usize) -> (String, Vec<String>) {
    let db = pg_database().await;
    let records =
        mediafleet::db::Records::connect(&mediafleet::config::DbUrl::Postgres(db.clone()), None)
            .await
            .unwrap();
    records.migrate().await.unwrap();
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    sqlx::query(&format!(
        r#"INSERT INTO media (id, kind, status, profile, source_key, filename, content_type, bytes, sha256,
                              external_id, metadata, blurhash, progress, version, created_at, updated_at)
           SELECT gen_random_uuid()::text, 'image', 'ready', 'default', 'k/' || i, 'photo-' || i || '.jpg',
                  'image/jpeg', 123456, md5(i::text) || md5(i::text), 'ext-' || i,
                  '{{"width":4032,"height":3024,"format":"jpeg"}}', 'LEHV6nWB2yk8pyo0adR*.7kCMdnj', 1, 3,
                  1700000000000 + i, 1700000000000 + i
           FROM generate_series(1, {n}) AS i"#
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        r#"INSERT INTO renditions (media_id, name, key, content_type, width, height, bytes, sha256)
           SELECT id, r.name, 'k/' || id || '/' || r.name, r.ct, r.w, r.h, 20000, md5(id) || md5(id)
           FROM media, (VALUES ('thumb', 'image/webp', 256, 192), ('preview', 'image/jpeg', 1280, 960))
                AS r(name, ct, w, h)"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM media ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    (db, ids)
}

impl MemcachedPool {
    /// Kills server `i` (its port stays in the list: the pool sees it as down).
    pub fn kill(&mut self, i: usize) {
        let _ = self.children[i].kill();
        let _ = self.children[i].wait();
    }
}
