//! Job queues: two traits, one file (or folder) per backend.
//!
//! [`JobQueue`] is the hot path every worker and producer uses: publish, receive, and the ends of a
//! [`Delivery`]. [`QueueAdmin`] is what operators, `queues setup` and the scaler use: declare, depth, and the
//! dead-letter queue (peek, show, redrive, purge). Every backend implements both on one struct, so one
//! connection can be handed out as both trait objects (see `connect::queue_and_admin`).
//!
//! A queue has one work queue per job class plus its dead-letter queue (and, on RabbitMQ, retry-tier queues).
//! A [`Delivery`] is a leased message: the consumer must end it with exactly one of `ack`, `retry_after`,
//! `dead_letter` or `release`. A delivery that is dropped without any of those is redelivered when its lease
//! ends (visibility timeout, or the channel closing on RabbitMQ) — that is the at-least-once guarantee.

mod dead;
pub mod embedded;
pub mod rabbitmq;
pub mod sqs;

pub use dead::{dead_letter_id, Redriven};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A job class: one queue each.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct JobClass(String);

impl JobClass {
    /// The classes every deployment has.
    pub const STANDARD: [&'static str; 4] = ["image", "video", "cache", "notify"];
    /// The bulk lanes of the standard classes that take bulk work (replays, reprocesses, backfills and the
    /// cache warms they cause; see `routing::in_lane`). Workers of `image` also take `image-bulk` when their
    /// live work is idle; `notify` has none (webhooks are never bulk).
    pub const BULK_LANES: [&'static str; 3] = ["image-bulk", "video-bulk", "cache-bulk"];

    /// Builds a class, checking its name is safe for every backend (`[a-z0-9-]`).
    pub fn new(name: &str) -> Result<Self, QueueError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(QueueError::Config(format!(
                "invalid job class {name:?}: use lower-case letters, digits and '-'"
            )));
        }
        Ok(JobClass(name.to_owned()))
    }

    /// The class name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This class's bulk lane (`image` → `image-bulk`), when it has one ([`Self::BULK_LANES`]).
    pub fn bulk_lane(&self) -> Option<JobClass> {
        let bulk = crate::routing::in_lane(&self.0, mediafleet_proto::Lane::Bulk);
        Self::BULK_LANES
            .contains(&bulk.as_str())
            .then_some(JobClass(bulk))
            .filter(|b| *b != *self)
    }
}

impl std::fmt::Display for JobClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Queue errors. Everything but `Config` and `Conflict` is transient.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker could not be reached or dropped the connection.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The broker refused or did not confirm a publish.
    #[error("publish not confirmed: {0}")]
    NotConfirmed(String),
    /// A queue exists with arguments that differ from ours.
    #[error("{0}")]
    Conflict(String),
    /// A misconfiguration that retrying will not fix.
    #[error("queue configuration: {0}")]
    Config(String),
    /// Anything else the backend reported.
    #[error("queue backend: {0}")]
    Backend(String),
}

impl QueueError {
    /// Stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            QueueError::Unavailable(_) => "queue_unavailable",
            QueueError::NotConfirmed(_) => "publish_not_confirmed",
            QueueError::Conflict(_) => "queue_conflict",
            QueueError::Config(_) => "queue_config",
            QueueError::Backend(_) => "queue_backend",
        }
    }
}

/// Depth readings for one class.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Depth {
    /// Messages ready to be delivered.
    pub ready: u64,
    /// Delivered and not yet ended. `None` when the backend cannot tell (RabbitMQ without management).
    pub in_flight: Option<u64>,
    /// Waiting for a retry delay.
    pub delayed: u64,
    /// In the dead-letter queue.
    pub dlq: u64,
    /// Age of the oldest ready message, when known.
    pub oldest_age_seconds: Option<f64>,
}

/// A message that was dead-lettered, as an operator sees it (`mediafleet ops dlq list|show`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Stable id: the envelope's `job_id` when the body is an envelope, else `sha256-` and a hash of the body
    /// ([`dead_letter_id`]). Copies of one message (at-least-once allows a message to be dead-lettered twice)
    /// share it.
    pub id: String,
    /// The envelope's media, when the body is an envelope.
    pub media_id: Option<String>,
    /// The envelope's job kind, when the body is an envelope.
    pub kind: Option<String>,
    /// The envelope's `attempt` (0 when the body is not an envelope).
    pub attempts: u32,
    /// Why it was dead-lettered: our reason, which names the last error, or the broker's own (crash loop).
    pub reason: String,
    /// When it was dead-lettered, where the backend knows it.
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// The raw body, lossily decoded as UTF-8.
    pub body: String,
}

/// A leased message.
#[async_trait]
pub trait Delivery: Send + Sync {
    /// The message body as published.
    fn body(&self) -> &[u8];
    /// How many times the broker has delivered this message (1 on first delivery). Counts crashes and
    /// lost connections, which our own `attempt` in the envelope does not.
    fn delivery_count(&self) -> u32;
    /// Done: remove the message.
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    /// Transient failure: deliver `body` (the envelope with its attempt bumped) again after `delay`.
    /// The wait happens in the broker, never in a sleeping worker.
    async fn retry_after(self: Box<Self>, delay: Duration, body: Vec<u8>)
        -> Result<(), QueueError>;
    /// Permanent refusal: move the message to the class's DLQ, keeping `reason`.
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError>;
    /// Hand the message back now, unprocessed (drain at shutdown).
    async fn release(self: Box<Self>) -> Result<(), QueueError>;
    /// Keep the message invisible for `lease` more (heartbeat). A no-op where the lease is the connection.
    async fn extend_lease(&self, lease: Duration) -> Result<(), QueueError>;
}

/// The hot path of a queue backend: what producers and workers use.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Backend name for logs (`embedded`, `rabbitmq`, `sqs`).
    fn backend(&self) -> &'static str;
    /// Publish one message; returns once the broker has confirmed it durable.
    async fn publish(&self, class: &JobClass, body: &[u8]) -> Result<(), QueueError>;
    /// Publish several messages of one class (SQS sends them 10 per request). Returns once all are confirmed;
    /// on error some may have been published, so callers republish the whole batch (at-least-once).
    async fn publish_batch(&self, class: &JobClass, bodies: &[Vec<u8>]) -> Result<(), QueueError> {
        for body in bodies {
            self.publish(class, body).await?;
        }
        Ok(())
    }
    /// Stop taking messages of `class` (a drain begins): where the broker pushes messages to a subscribed
    /// consumer (RabbitMQ), the subscription is cancelled, so messages handed back during the drain go to
    /// other workers instead of returning to this one. Elsewhere receiving is pull-only and this is a no-op.
    async fn stop_receiving(&self, _class: &JobClass) -> Result<(), QueueError> {
        Ok(())
    }
    /// Wait up to `wait` for at most `max` messages of `class`.
    async fn receive(&self, class: &JobClass, max: usize, wait: Duration) -> Received;
    /// Cheap liveness check for readiness probes.
    async fn ping(&self) -> Result<(), QueueError>;
}

/// Administration of a queue backend: topology, depth and the dead-letter queue. Used by `queues setup`,
/// the scaler and the operators' DLQ commands, never by a job.
///
/// The dead-letter operations work on ids ([`DeadLetter::id`]). Where the backend cannot look a message up by
/// id (RabbitMQ, SQS), they scan the DLQ, holding what they looked at until they are done; see
/// docs/decisions.md for what that costs on each backend.
#[async_trait]
pub trait QueueAdmin: Send + Sync {
    /// Backend name for logs (`embedded`, `rabbitmq`, `sqs`).
    fn backend(&self) -> &'static str;
    /// Create (or verify, where creating is not ours to do) the queues of these classes.
    async fn declare(&self, classes: &[JobClass]) -> Result<(), QueueError>;
    /// Create (or converge) the queues of these classes, then verify them: `mediafleet queues setup`.
    /// Backends that create on `declare` need nothing more.
    async fn setup(&self, classes: &[JobClass]) -> Result<(), QueueError> {
        self.declare(classes).await
    }
    /// Depth readings for `class`.
    async fn depth(&self, class: &JobClass) -> Result<Depth, QueueError>;
    /// Up to `limit` dead letters of `class`, oldest first where the backend keeps an order. A peek: nothing
    /// is removed, and the DLQ's depth is the same afterwards.
    async fn dead_letters(
        &self,
        class: &JobClass,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError>;
    /// The dead letter with this id, if the DLQ of `class` holds one (a peek, like [`Self::dead_letters`]).
    async fn dead_letter(
        &self,
        class: &JobClass,
        id: &str,
    ) -> Result<Option<DeadLetter>, QueueError>;
    /// Moves dead letters back to the work queue of `class`: those with the given `ids`, or, with `None`, the
    /// first `limit` (`limit` also caps a list of ids). An envelope goes back with its attempt and outage
    /// clock reset ([`mediafleet_proto::Envelope::redriven`]), everything else unchanged; a body that is not
    /// an envelope goes back as it is.
    ///
    /// Each message is published to the work queue (confirmed) before it is removed from the DLQ: a crash in
    /// between leaves it in both, and the job runs twice, which at-least-once allows. Copies of one id met in
    /// the same call go back once (the others are removed, counted in [`Redriven::duplicates`]). An id that
    /// is not in the DLQ (any more) is reported in [`Redriven::skipped`], not as an error, so redriving
    /// twice moves each message once.
    async fn redrive(
        &self,
        class: &JobClass,
        ids: Option<&[String]>,
        limit: usize,
    ) -> Result<Redriven, QueueError>;
    /// Deletes up to `limit` dead letters of `class` (`usize::MAX`: all of them); returns how many.
    async fn purge(&self, class: &JobClass, limit: usize) -> Result<u64, QueueError>;
    /// Deletes dead letters of every class dead-lettered more than `age` ago (the retention job); returns
    /// how many. Only where we keep them ourselves (embedded): RabbitMQ and SQS apply their own retention.
    async fn expire_dead_letters(&self, _age: std::time::Duration) -> Result<u64, QueueError> {
        Ok(0)
    }
}

/// A shared queue handle (the hot path).
pub type SharedQueue = Arc<dyn JobQueue>;

/// What [`JobQueue::receive`] hands back: the deliveries leased (possibly none).
pub type Received = Result<Vec<Box<dyn Delivery>>, QueueError>;

/// A shared admin handle.
pub type SharedAdmin = Arc<dyn QueueAdmin>;
