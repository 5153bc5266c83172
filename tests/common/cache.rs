//! Redis helpers for cache tests: the server address, a per-test key cleanup (never FLUSHALL: the server is
//! shared by tests running in parallel), and a proxy that can be switched off to simulate an outage
//! without touching the shared server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::require_tcp;

/// Redis host:port.
pub fn redis_addr() -> String {
    std::env::var("MEDIAFLEET_TEST_REDIS_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".into())
}

/// Redis URL; fails loudly when Redis is not reachable.
pub fn redis_url() -> String {
    let addr = redis_addr();
    require_tcp(&addr, "Redis");
    format!("redis://{addr}/0")
}

/// A plain connection for assertions.
pub async fn redis_conn() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

/// `GET key`.
pub async fn get(key: &str) -> Option<String> {
    let mut c = redis_conn().await;
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

/// Deletes every key under `{prefix}:` (this test's keys only). Returns how many.
pub async fn delete_prefix(prefix: &str) -> usize {
    let mut c = redis_conn().await;
    let mut cursor: u64 = 0;
    let mut n = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        if !keys.is_empty() {
            n += keys.len();
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut c)
                .await
                .unwrap();
        }
        if next == 0 {
            return n;
        }
        cursor = next;
    }
}

/// Polls `key` until `pred` holds on its JSON.
pub async fn wait_key(
    key: &str,
    within: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + within;
    let mut last = None;
    while std::time::Instant::now() < deadline {
        if let Some(s) = get(key).await {
            let v: serde_json::Value = serde_json::from_str(&s).expect("cached JSON");
            if pred(&v) {
                return v;
            }
            last = Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{key} did not reach the expected state within {within:?}; last: {last:?}");
}

/// A TCP proxy to Redis that can be switched off (open connections cut, new ones closed at once) and on
/// again, on the same port.
pub struct SwitchProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    /// Black hole: connections are accepted and held, nothing is forwarded or answered.
    hole: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl SwitchProxy {
    /// Starts an open proxy to `upstream`.
    pub async fn start(upstream: &str) -> SwitchProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let hole = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (u, h, c, target) = (up.clone(), hole.clone(), conns.clone(), upstream.to_owned());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if h.load(Ordering::SeqCst) {
                    // Swallow whatever the client sends and never answer, until switched back on.
                    let task = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut inbound, &mut tokio::io::sink()).await;
                    });
                    c.lock().unwrap().push(task);
                    continue;
                }
                if !u.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task);
            }
        });
        SwitchProxy {
            port,
            up,
            hole,
            conns,
            accept,
        }
    }

    /// The Redis URL through this proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Redis "goes down": every connection is cut and new ones are closed.
    pub fn off(&self) {
        self.up.store(false, Ordering::SeqCst);
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// The upstream is black-holed: open connections are cut, new ones are accepted and never answered.
    pub fn black_hole(&self) {
        self.hole.store(true, Ordering::SeqCst);
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Redis "comes back" (held black-hole connections are cut, so clients reconnect).
    pub fn on(&self) {
        if self.hole.swap(false, Ordering::SeqCst) {
            for t in self.conns.lock().unwrap().drain(..) {
                t.abort();
            }
        }
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for SwitchProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.off();
    }
}
