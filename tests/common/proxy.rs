//! A TCP proxy whose connections a test can cut, to simulate a dropped broker connection without
//! restarting a shared server.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards 127.0.0.1:port → upstream.
pub struct Proxy {
    pub port: u16,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (host:port).
    pub async fn start(upstream: &str) -> Proxy {
        Proxy::start_on("127.0.0.1", upstream).await
    }

    /// Starts a proxy listening on `ip` (a free port), to `upstream`.
    pub async fn start_on(ip: &str, upstream: &str) -> Proxy {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (c, up) = (conns.clone(), upstream.to_owned());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let up = up.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&up).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task);
            }
        });
        Proxy {
            port,
            conns,
            accept,
        }
    }

    /// Cuts every open connection (new ones are still accepted). Returns how many were cut.
    pub fn cut_all(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        let n = conns.iter().filter(|t| !t.is_finished()).count();
        for t in conns.drain(..) {
            t.abort();
        }
        n
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}
