//! Job queues: one trait, one file per backend.
//!
//! A queue has one work queue per job class plus its dead-letter queue (and, on RabbitMQ, retry-tier queues).
//! A [`Delivery`] is a leased message: the consumer must end it with exactly one of `ack`, `retry_after`,
//! `dead_letter` or `release`. A delivery that is dropped without any of those is redelivered when its lease
//! ends (visibility timeout, or the channel closing on RabbitMQ) — that is the at-least-once guarantee.

pub mod embedded;
pub mod rabbitmq;
pub mod sqs;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

/// A job class: one queue each.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct JobClass(pub String);

impl JobClass {
    /// The classes every deployment has.
    pub const STANDARD: [&'static str; 4] = ["image", "video", "cache", "notify"];

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

/// A message that was dead-lettered, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The raw body, lossily decoded as UTF-8.
    pub body: String,
    /// Why it was dead-lettered.
    pub reason: String,
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

/// A job queue backend.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Backend name for logs (`embedded`, `rabbitmq`, `sqs`).
    fn backend(&self) -> &'static str;
    /// Create (or verify, where creating is not ours to do) the queues of these classes.
    async fn declare(&self, classes: &[JobClass]) -> Result<(), QueueError>;
    /// Create (or converge) the queues of these classes, then verify them: `mediafleet queues setup`.
    /// Backends that create on `declare` need nothing more.
    async fn setup(&self, classes: &[JobClass]) -> Result<(), QueueError> {
        self.declare(classes).await
    }
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
    async fn receive(
        &self,
        class: &JobClass,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Box<dyn Delivery>>, QueueError>;
    /// Depth readings for `class`.
    async fn depth(&self, class: &JobClass) -> Result<Depth, QueueError>;
    /// Read (without removing) up to `limit` dead letters of `class`.
    async fn dead_letters(
        &self,
        class: &JobClass,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError>;
    /// Cheap liveness check for readiness probes.
    async fn ping(&self) -> Result<(), QueueError>;
}

/// A shared queue handle.
pub type SharedQueue = Arc<dyn JobQueue>;
