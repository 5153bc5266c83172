//! An in-memory queue on tokio's clock, for the runtime's in-process tests: messages with a visibility time
//! (the SQS model), a dead-letter list, and a log of everything the runtime did to them. Faults are switched
//! on per test: receives that fail, heartbeats that are refused or time out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mediafleet::queue::{Delivery, JobClass, JobQueue, QueueError, Received};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a received message stays invisible unless its lease is extended.
pub const VISIBILITY: Duration = Duration::from_secs(30);

/// What happened to a message, and when (tokio's paused clock, from the test's start).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Received { id: u64, delivery: u32 },
    Acked { id: u64 },
    Retried { id: u64, delay: Duration },
    DeadLettered { id: u64, reason: String },
    Released { id: u64 },
    Extended { id: u64 },
}

struct Msg {
    id: u64,
    body: Vec<u8>,
    visible_at: Instant,
    deliveries: u32,
    /// Bumped on each receive, so a stale delivery cannot settle a newer one.
    receipt: u64,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Msg>,
    dead: Vec<(Vec<u8>, String)>,
    log: Vec<(Duration, Event)>,
    next_id: u64,
    next_receipt: u64,
}

/// The queue (one class; the class argument is ignored). Clones share the queue.
#[derive(Clone)]
pub struct MemoryQueue(Arc<Inner>);

impl std::ops::Deref for MemoryQueue {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The queue's state and fault switches.
pub struct Inner {
    state: Mutex<State>,
    published: Notify,
    start: Instant,
    /// Receives that fail (counting down) before receives work again.
    pub failing_receives: AtomicUsize,
    /// Receives that panic (counting down), checked before `failing_receives`.
    pub panicking_receives: AtomicUsize,
    /// Heartbeats after which every further heartbeat is refused (`u32::MAX`: never).
    pub refuse_heartbeats_after: AtomicU32,
    /// Heartbeats after which every further heartbeat fails as `Unavailable` (`u32::MAX`: never).
    pub unavailable_heartbeats_after: AtomicU32,
    heartbeats: AtomicU32,
}

impl MemoryQueue {
    pub fn new() -> Self {
        MemoryQueue(Arc::new(Inner {
            state: Mutex::default(),
            published: Notify::new(),
            start: Instant::now(),
            failing_receives: AtomicUsize::new(0),
            panicking_receives: AtomicUsize::new(0),
            refuse_heartbeats_after: AtomicU32::new(u32::MAX),
            unavailable_heartbeats_after: AtomicU32::new(u32::MAX),
            heartbeats: AtomicU32::new(0),
        }))
    }

    /// Publishes `body`; returns its id.
    pub fn push(&self, body: &[u8]) -> u64 {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = s.next_id;
        s.ready.push_back(Msg {
            id,
            body: body.to_vec(),
            visible_at: Instant::now(),
            deliveries: 0,
            receipt: 0,
        });
        drop(s);
        self.published.notify_waiters();
        id
    }

    /// Everything that happened, with the time since the queue was made.
    pub fn log(&self) -> Vec<(Duration, Event)> {
        self.state.lock().unwrap().log.clone()
    }

    /// The dead letters: body and reason.
    pub fn dead(&self) -> Vec<(Vec<u8>, String)> {
        self.state.lock().unwrap().dead.clone()
    }

    /// Messages not acked or dead-lettered (visible or leased).
    pub fn pending(&self) -> usize {
        self.state.lock().unwrap().ready.len()
    }

    /// Heartbeats received so far.
    pub fn heartbeats(&self) -> u32 {
        self.heartbeats.load(Ordering::SeqCst)
    }

    fn record(&self, s: &mut State, e: Event) {
        s.log.push((self.start.elapsed(), e));
    }

    /// Runs `f` on the message `id` if `receipt` is still its latest delivery.
    fn settle(
        &self,
        id: u64,
        receipt: u64,
        f: impl FnOnce(&mut State, usize) -> Event,
    ) -> Result<(), QueueError> {
        let mut s = self.state.lock().unwrap();
        let Some(i) = s
            .ready
            .iter()
            .position(|m| m.id == id && m.receipt == receipt)
        else {
            return Err(QueueError::Backend(format!(
                "message {id}: receipt {receipt} is stale"
            )));
        };
        let e = f(&mut s, i);
        self.record(&mut s, e);
        drop(s);
        self.published.notify_waiters();
        Ok(())
    }
}

struct MemoryDelivery {
    queue: MemoryQueue,
    id: u64,
    receipt: u64,
    body: Vec<u8>,
    count: u32,
}

#[async_trait]
impl Delivery for MemoryDelivery {
    fn body(&self) -> &[u8] {
        &self.body
    }
    fn delivery_count(&self) -> u32 {
        self.count
    }
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        let id = self.id;
        self.queue.settle(id, self.receipt, |s, i| {
            s.ready.remove(i);
            Event::Acked { id }
        })
    }
    async fn retry_after(
        self: Box<Self>,
        delay: Duration,
        body: Vec<u8>,
    ) -> Result<(), QueueError> {
        let id = self.id;
        self.queue.settle(id, self.receipt, |s, i| {
            let m = &mut s.ready[i];
            m.body = body;
            m.visible_at = Instant::now() + delay;
            // A retry is a new message: the broker's delivery count starts again.
            m.deliveries = 0;
            Event::Retried { id, delay }
        })
    }
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        let id = self.id;
        self.queue.settle(id, self.receipt, |s, i| {
            let m = s.ready.remove(i).expect("index is valid");
            s.dead.push((m.body, reason.to_owned()));
            Event::DeadLettered {
                id,
                reason: reason.to_owned(),
            }
        })
    }
    async fn release(self: Box<Self>) -> Result<(), QueueError> {
        let id = self.id;
        self.queue.settle(id, self.receipt, |s, i| {
            s.ready[i].visible_at = Instant::now();
            Event::Released { id }
        })
    }
    async fn extend_lease(&self, lease: Duration) -> Result<(), QueueError> {
        let n = self.queue.heartbeats.fetch_add(1, Ordering::SeqCst);
        if n >= self.queue.refuse_heartbeats_after.load(Ordering::SeqCst) {
            return Err(QueueError::Backend(
                "receipt handle is no longer valid".into(),
            ));
        }
        if n >= self
            .queue
            .unavailable_heartbeats_after
            .load(Ordering::SeqCst)
        {
            return Err(QueueError::Unavailable("connection refused".into()));
        }
        let id = self.id;
        self.queue.settle(id, self.receipt, |s, i| {
            s.ready[i].visible_at = Instant::now() + lease;
            Event::Extended { id }
        })
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    fn backend(&self) -> &'static str {
        "memory"
    }
    async fn publish(&self, _class: &JobClass, body: &[u8]) -> Result<(), QueueError> {
        self.push(body);
        Ok(())
    }
    async fn receive(&self, _class: &JobClass, max: usize, wait: Duration) -> Received {
        if self
            .panicking_receives
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("a backend bug: a frame that does not decode");
        }
        if self
            .failing_receives
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(QueueError::Unavailable("broker restarting".into()));
        }
        let deadline = Instant::now() + wait;
        loop {
            let published = self.published.notified();
            let next_visible = {
                let mut s = self.state.lock().unwrap();
                let now = Instant::now();
                let mut got: Vec<Box<dyn Delivery>> = Vec::new();
                let mut events = Vec::new();
                for i in 0..s.ready.len() {
                    if got.len() >= max {
                        break;
                    }
                    if s.ready[i].visible_at > now {
                        continue;
                    }
                    s.next_receipt += 1;
                    let receipt = s.next_receipt;
                    let m = &mut s.ready[i];
                    m.visible_at = now + VISIBILITY;
                    m.deliveries += 1;
                    m.receipt = receipt;
                    events.push(Event::Received {
                        id: m.id,
                        delivery: m.deliveries,
                    });
                    got.push(Box::new(MemoryDelivery {
                        queue: self.clone(),
                        id: m.id,
                        receipt,
                        body: m.body.clone(),
                        count: m.deliveries,
                    }));
                }
                for e in events {
                    self.record(&mut s, e);
                }
                if !got.is_empty() {
                    return Ok(got);
                }
                s.ready.iter().map(|m| m.visible_at).min()
            };
            let until = next_visible.map_or(deadline, |t| t.min(deadline));
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            tokio::select! {
                _ = published => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }
    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
