//! RabbitMQ backend (lapin 4).
//!
//! # Layout
//! - `topology`: names, queue arguments and the idempotent declare (quorum work queue, TTL retry tiers, DLQ).
//! - `link`: the self-healing connection holder (reconnect with backoff, redeclare, recreate consumers).
//! - `publish`: persistent, mandatory, confirmed publishing with a short retry.
//! - `delivery`: ack / retry / dead-letter / release of one message.
//! - `inspect` and `management`: depth readings, and scans of a DLQ.
//! - `admin`: the [`crate::queue::QueueAdmin`] side: declare, depth, and peek / show / redrive / purge of dead
//!   letters.
//!
//! # Guarantees
//! Publishes return after the broker's confirm (persisted on a quorum queue). Consumers use manual acks and a
//! per-class prefetch, so `prefetch` bounds the jobs a process holds per class. A retry or dead letter is
//! published (confirmed) before the original is acked: a crash in between duplicates, never loses. The
//! broker's `x-delivery-limit` dead-letters crash-looping messages (a poison file that kills the worker
//! before it can dead-letter the job itself).

mod admin;
mod delivery;
mod inspect;
mod link;
mod management;
mod publish;
mod topology;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use lapin::types::FieldTable;

use self::delivery::RabbitDelivery;
use self::link::Link;
use crate::queue::{Delivery, JobClass, JobQueue, QueueError, Received};

/// What [`RabbitQueue::connect`] needs.
#[derive(Debug, Clone)]
pub struct RabbitConfig {
    /// `amqp://user:pass@host:5672/vhost` (`%2f` is the default vhost).
    pub url: String,
    /// Names exchanges and queues: `{prefix}.{class}`, `{prefix}.{class}.dlq`, `{prefix}.{class}.retry.30s`.
    pub prefix: String,
    /// Unacked deliveries per class consumer (AMQP `basic.qos`), for classes not in `class_prefetch`.
    pub prefetch: u16,
    /// Unacked deliveries of one class's consumer: a worker's concurrency of that class, so a multi-class
    /// worker never holds video messages behind a running transcode where other workers (and KEDA, which
    /// counts unacked as taken) cannot get them.
    pub class_prefetch: std::collections::BTreeMap<String, u16>,
    /// Retry-tier delays; a retry goes to the smallest tier at least as long as the asked delay.
    pub retry_tiers: Vec<Duration>,
    /// Deliveries after which the broker itself dead-letters a message (a safety net for crash loops; the
    /// runtime's own attempt count dead-letters well before).
    pub delivery_limit: u32,
    /// Management API base (`http://user:pass@host:15672`), for in-flight counts. `None`: in-flight unknown.
    pub management_url: Option<String>,
}

impl RabbitConfig {
    /// Defaults for `url`: prefix `mediafleet`, prefetch 1, tiers 5 s / 30 s / 5 min, delivery limit 20.
    pub fn new(url: &str) -> Self {
        RabbitConfig {
            url: url.to_owned(),
            prefix: "mediafleet".to_owned(),
            prefetch: 1,
            class_prefetch: Default::default(),
            retry_tiers: [5, 30, 300].map(Duration::from_secs).to_vec(),
            delivery_limit: 20,
            management_url: None,
        }
    }
}

/// A RabbitMQ-backed [`JobQueue`] and [`crate::queue::QueueAdmin`]. Cheap to share behind an `Arc`; one
/// connection per instance.
pub struct RabbitQueue {
    link: Arc<Link>,
}

impl RabbitQueue {
    /// Connects to the broker (retrying for a few seconds). Declares nothing: call
    /// [`crate::queue::QueueAdmin::declare`].
    pub async fn connect(cfg: RabbitConfig) -> Result<Self, QueueError> {
        if cfg.prefix.is_empty() {
            return Err(QueueError::Config(
                "the queue prefix must not be empty".into(),
            ));
        }
        Ok(RabbitQueue {
            link: Arc::new(Link::connect(cfg).await?),
        })
    }

    /// How many times the connection has been (re)established; 1 until the first recovery.
    pub async fn generation(&self) -> u64 {
        self.link.generation().await
    }
}

#[async_trait]
impl JobQueue for RabbitQueue {
    fn backend(&self) -> &'static str {
        "rabbitmq"
    }

    async fn publish(&self, class: &JobClass, body: &[u8]) -> Result<(), QueueError> {
        let exchange = self.link.topo.work_exchange();
        publish::publish(
            &self.link,
            &exchange,
            class.as_str(),
            body,
            FieldTable::default(),
        )
        .await
    }

    async fn publish_batch(&self, class: &JobClass, bodies: &[Vec<u8>]) -> Result<(), QueueError> {
        let exchange = self.link.topo.work_exchange();
        publish::publish_many(&self.link, &exchange, class.as_str(), bodies).await
    }

    async fn stop_receiving(&self, class: &JobClass) -> Result<(), QueueError> {
        let buffered = self.link.cancel_consumer(class).await?;
        let n = buffered.len();
        for d in buffered {
            // Published again and acked (see `release`): other workers take them at once, and the quorum
            // queue's delivery count does not grow.
            let d = Box::new(RabbitDelivery::new(self.link.clone(), class.clone(), d));
            if let Err(e) = d.release().await {
                tracing::warn!(%class, error = %e, "could not hand back a prefetched message");
            }
        }
        if n > 0 {
            tracing::info!(%class, handed_back = n, "prefetched messages handed back");
        }
        Ok(())
    }

    async fn receive(&self, class: &JobClass, max: usize, wait: Duration) -> Received {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out: Vec<Box<dyn Delivery>> = Vec::new();
        while out.is_empty() {
            let consumer = self.link.consumer(class).await?;
            let Ok(mut stream) = tokio::time::timeout_at(deadline, consumer.stream.lock()).await
            else {
                break;
            };
            let mut failed = None;
            while out.len() < max {
                // Wait for the first delivery; then take only what is already buffered.
                let next = if out.is_empty() {
                    match tokio::time::timeout_at(deadline, stream.next()).await {
                        Ok(n) => n,
                        Err(_) => break,
                    }
                } else {
                    match stream.next().now_or_never() {
                        Some(n) => n,
                        None => break,
                    }
                };
                match next {
                    Some(Ok(d)) => {
                        out.push(Box::new(RabbitDelivery::new(
                            self.link.clone(),
                            class.clone(),
                            d,
                        )));
                    }
                    Some(Err(e)) => {
                        failed = Some(link::unavailable(&format!("consuming {class}"), &e));
                        break;
                    }
                    None => {
                        failed = Some(QueueError::Unavailable(format!(
                            "the consumer of {class} was cancelled"
                        )));
                        break;
                    }
                }
            }
            drop(stream);
            match failed {
                // The channel or connection died: rebuild the consumer and keep waiting while time is left.
                Some(e) => {
                    tracing::warn!(error = %e, "rabbitmq: consumer lost, recreating it");
                    self.link.forget_consumer(class, &consumer).await;
                    if out.is_empty() && tokio::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                }
                None => break,
            }
        }
        Ok(out)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        if self.link.is_connected().await {
            return Ok(());
        }
        // Not connected: try to (re)connect now, within a readiness probe's patience.
        match tokio::time::timeout(Duration::from_secs(5), self.link.fresh_channel()).await {
            Ok(Ok(ch)) => {
                let _ = ch.close(200, "ping".into()).await;
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(QueueError::Unavailable(
                "rabbitmq: not connected (reconnect in progress)".into(),
            )),
        }
    }
}
