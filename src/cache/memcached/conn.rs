//! One pipelined connection to one memcached server, speaking the classic text protocol.
//!
//! Any number of tasks share it: a request is a buffer of one or more commands plus what each answers (a
//! status line, or `VALUE` blocks up to `END`). A writer task writes requests in order; a reader task reads
//! the answers in the same order and hands each request its replies. A caller that gives up (a deadline)
//! only drops its receiver: the reader still consumes that answer, so the stream never goes out of step.
//! Any I/O or protocol error closes the connection and fails everything in flight; the next call dials
//! again. The reader also watches an idle connection, so a server that closes it (a restart, a proxy cut)
//! is noticed before the next call rather than by it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::cache::CacheError;

/// What one command answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// One line (`STORED`, `NOT_STORED`, `EXISTS`, `NOT_FOUND`, `DELETED`, `VERSION …`, or an error line).
    Line,
    /// `VALUE` blocks, then `END` (`get`/`gets`), or one error line.
    Values,
}

/// One item of a `get`/`gets` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The key.
    pub key: String,
    /// The client flags (PHP's `Memcached` reads flags 0 as a plain string).
    pub flags: u32,
    /// The data.
    pub data: Vec<u8>,
    /// The CAS unique (`gets` only).
    pub cas: Option<u64>,
}

/// One command's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A status line, without `\r\n`.
    Line(String),
    /// The values found (misses are absent).
    Values(Vec<Value>),
}

struct Request {
    bytes: Vec<u8>,
    expect: Vec<Expect>,
    reply: oneshot::Sender<Result<Vec<Reply>, String>>,
}

struct Pending {
    expect: Vec<Expect>,
    reply: oneshot::Sender<Result<Vec<Reply>, String>>,
}

/// A handle on the connection; clones share it.
#[derive(Clone, Debug)]
pub struct Conn {
    tx: mpsc::UnboundedSender<Request>,
    /// Cancelled by the reader when the connection ends; stops the writer too.
    closed: CancellationToken,
    /// `host:port`, for errors.
    addr: std::sync::Arc<str>,
}

impl Conn {
    /// Dials `addr`.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Conn, CacheError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| CacheError::Unavailable(format!("memcached {addr}: connect timed out")))?
            .map_err(|e| CacheError::Unavailable(format!("memcached {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let (ptx, prx) = mpsc::unbounded_channel();
        let closed = CancellationToken::new();
        tokio::spawn(write_loop(w, rx, ptx, closed.clone()));
        tokio::spawn(read_loop(r, prx, addr.to_owned(), closed.clone()));
        Ok(Conn {
            tx,
            closed,
            addr: addr.into(),
        })
    }

    /// Whether the connection has ended (the next call should dial again).
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled() || self.tx.is_closed()
    }

    /// Sends `bytes` (commands whose answers are `expect`, in order) and waits for all the answers.
    pub async fn call(
        &self,
        bytes: Vec<u8>,
        expect: Vec<Expect>,
    ) -> Result<Vec<Reply>, CacheError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                bytes,
                expect,
                reply,
            })
            .map_err(|_| {
                CacheError::Unavailable(format!("memcached {}: connection closed", self.addr))
            })?;
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(CacheError::Unavailable(e)),
            Err(_) => Err(CacheError::Unavailable(format!(
                "memcached {}: connection lost mid-request",
                self.addr
            ))),
        }
    }
}

async fn write_loop(
    w: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Request>,
    pending: mpsc::UnboundedSender<Pending>,
    closed: CancellationToken,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, w);
    loop {
        let first = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => r,
                None => return,
            },
            _ = closed.cancelled() => break,
        };
        let mut next = Some(first);
        // Write everything already queued, then flush once: concurrent callers share packets.
        while let Some(req) = next.take() {
            // The reader learns of a request before any of its bytes can reach the server, so an answer
            // never arrives ahead of the request it answers.
            if pending
                .send(Pending {
                    expect: req.expect,
                    reply: req.reply,
                })
                .is_err()
            {
                return; // the reader has ended: the connection is dead
            }
            if w.write_all(&req.bytes).await.is_err() {
                // Dropping the write half ends the connection; the reader fails what is in flight.
                return;
            }
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    // The reader ended the connection: refuse what callers queued meanwhile (dropping their senders).
    rx.close();
}

async fn read_loop(
    r: OwnedReadHalf,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    addr: String,
    closed: CancellationToken,
) {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut line = Vec::with_capacity(256);
    let mut failed: Option<String> = None;
    let mut queue: VecDeque<Pending> = VecDeque::new();
    loop {
        // Idle: wait for the next request, but notice the server closing the connection (or sending
        // anything unasked, which would put the stream out of step).
        let p = tokio::select! {
            biased;
            p = pending.recv() => match p {
                Some(p) => p,
                None => break,
            },
            idle = r.fill_buf() => {
                // Every request is queued here before its bytes are written, so data that arrives while a
                // request is queued is that request's answer, whatever `recv` last said; only data with
                // nothing queued is out of step. Its first bytes go into the error (the server may have
                // said why, e.g. "ERROR Too many open connections").
                let next = match idle {
                    Ok([]) => Err(format!("memcached {addr}: connection closed by the server")),
                    Ok(data) => {
                        let head = String::from_utf8_lossy(&data[..data.len().min(80)]).into_owned();
                        pending
                            .try_recv()
                            .map_err(|_| format!("memcached {addr}: unrequested data {head:?}"))
                    }
                    Err(e) => Err(format!("memcached {addr}: {e}")),
                };
                match next {
                    Ok(p) => p,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        };
        queue.push_back(p);
        while let Some(p) = queue.pop_front() {
            let mut replies = Vec::with_capacity(p.expect.len());
            for e in &p.expect {
                match read_reply(&mut r, &mut line, *e).await {
                    Ok(reply) => replies.push(reply),
                    Err(err) => {
                        failed = Some(format!("memcached {addr}: {err}"));
                        break;
                    }
                }
            }
            if let Some(err) = &failed {
                let _ = p.reply.send(Err(err.clone()));
                break;
            }
            let _ = p.reply.send(Ok(replies));
        }
        if failed.is_some() {
            break;
        }
    }
    // Stops the writer and makes the connection look closed; requests still queued fail.
    closed.cancel();
    pending.close();
    while let Ok(p) = pending.try_recv() {
        let _ = p
            .reply
            .send(Err(failed.clone().unwrap_or_else(|| "closed".into())));
    }
}

async fn read_line(r: &mut BufReader<OwnedReadHalf>, line: &mut Vec<u8>) -> Result<String, String> {
    line.clear();
    let n = r.read_until(b'\n', line).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed by the server".into());
    }
    if !line.ends_with(b"\r\n") {
        return Err("truncated line".into());
    }
    line.truncate(line.len() - 2);
    String::from_utf8(std::mem::take(line)).map_err(|_| "non-UTF-8 status line".into())
}

fn is_error_line(l: &str) -> bool {
    l == "ERROR" || l.starts_with("CLIENT_ERROR") || l.starts_with("SERVER_ERROR")
}

async fn read_reply(
    r: &mut BufReader<OwnedReadHalf>,
    line: &mut Vec<u8>,
    expect: Expect,
) -> Result<Reply, String> {
    match expect {
        Expect::Line => Ok(Reply::Line(read_line(r, line).await?)),
        Expect::Values => {
            let mut values = Vec::new();
            loop {
                let l = read_line(r, line).await?;
                if l == "END" {
                    return Ok(Reply::Values(values));
                }
                if is_error_line(&l) && values.is_empty() {
                    return Ok(Reply::Line(l));
                }
                // VALUE <key> <flags> <bytes> [<cas unique>]
                let mut it = l.split(' ');
                let (Some("VALUE"), Some(key), Some(flags), Some(len)) =
                    (it.next(), it.next(), it.next(), it.next())
                else {
                    return Err(format!("unexpected line {l:?}"));
                };
                let flags: u32 = flags.parse().map_err(|_| format!("bad flags in {l:?}"))?;
                let len: usize = len.parse().map_err(|_| format!("bad length in {l:?}"))?;
                let cas = match it.next() {
                    Some(c) => Some(c.parse::<u64>().map_err(|_| format!("bad cas in {l:?}"))?),
                    None => None,
                };
                let mut data = vec![0u8; len + 2];
                r.read_exact(&mut data).await.map_err(|e| e.to_string())?;
                if !data.ends_with(b"\r\n") {
                    return Err("value not followed by CRLF".into());
                }
                data.truncate(len);
                values.push(Value {
                    key: key.to_owned(),
                    flags,
                    data,
                    cas,
                });
            }
        }
    }
}

/// Appends a storage command (`set`, `add`, `cas`) to `buf`. Flags are always 0 (a plain string to PHP).
pub fn storage(
    buf: &mut Vec<u8>,
    cmd: &str,
    key: &str,
    exptime: i64,
    data: &[u8],
    cas: Option<u64>,
) {
    buf.extend_from_slice(cmd.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(format!(" 0 {exptime} {}", data.len()).as_bytes());
    if let Some(c) = cas {
        buf.extend_from_slice(format!(" {c}").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that finds a thousand answers in one read hands each to its caller, in order, and keeps the
    /// connection (CI once saw a connection dropped for "unrequested data" under load; this is the heaviest
    /// pipelining a caller can cause). Needs the memcached on 127.0.0.1:11211 that scripts/services.sh
    /// starts.
    #[tokio::test(flavor = "current_thread")]
    async fn answers_buffered_beyond_the_task_budget_reach_their_callers() {
        let conn = Conn::connect("127.0.0.1:11211", Duration::from_secs(2))
            .await
            .expect("memcached on 127.0.0.1:11211 (scripts/services.sh starts it)");
        let calls = (0..1000).map(|i| {
            conn.call(
                format!("get mf-conn-budget-{i}\r\n").into_bytes(),
                vec![Expect::Values],
            )
        });
        let all = futures::future::join_all(calls);
        tokio::pin!(all);
        // Every request is queued on the first poll; a few yields let the writer send them all.
        assert!(futures::poll!(&mut all).is_pending());
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        // Hold the only thread while the server answers: the reader then finds all 1000 answers at once.
        std::thread::sleep(Duration::from_millis(300));
        let replies = all.await;
        let failed: Vec<_> = replies.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(
            failed.is_empty(),
            "{} failed: {:?}",
            failed.len(),
            failed.first()
        );
        assert!(replies
            .into_iter()
            .all(|r| r.unwrap() == vec![Reply::Values(vec![])]));
        assert!(!conn.is_closed());
    }
}
