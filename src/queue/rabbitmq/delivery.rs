//! A RabbitMQ delivery and how it ends.
//!
//! The lease on a RabbitMQ message is the consumer's channel: while the channel lives, the message stays
//! unacked and invisible to other consumers; when it closes, the broker requeues it. So `extend_lease` is a
//! no-op, and jobs longer than the broker's global `consumer_timeout` need that setting raised (3.10 has no
//! per-queue override; see `deploy/`).
//!
//! `retry_after` and `dead_letter` publish a new message (with a publisher confirm) and only then ack the
//! original: a crash between the two steps duplicates the job, never loses it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Acker;

use super::link::{unavailable, Link};
use super::publish::publish;
use super::topology::long_string;
use crate::queue::{Delivery, JobClass, QueueError};

/// The header that carries our dead-letter reason.
pub(super) const REASON_HEADER: &str = "x-mediafleet-reason";
/// The header that carries when we dead-lettered the message (RFC 3339, milliseconds, UTC).
pub(super) const DEAD_AT_HEADER: &str = "x-mediafleet-dead-lettered-at";

/// One leased message. Dropping it without ending it hands it back to the queue (nack with requeue), so a
/// forgotten delivery cannot hold a prefetch slot until the channel closes.
pub(super) struct RabbitDelivery {
    link: Arc<Link>,
    class: JobClass,
    body: Vec<u8>,
    count: u32,
    /// `None` once the delivery has been ended.
    acker: Option<Acker>,
}

impl RabbitDelivery {
    /// Wraps a lapin delivery received on `class`'s consumer.
    pub fn new(link: Arc<Link>, class: JobClass, d: lapin::message::Delivery) -> Self {
        let count = delivery_count(d.properties.headers().as_ref(), d.redelivered);
        RabbitDelivery {
            link,
            class,
            body: d.data,
            count,
            acker: Some(d.acker),
        }
    }

    fn take_acker(&mut self) -> Acker {
        self.acker
            .take()
            .expect("a delivery is ended once: its methods take it by value")
    }

    async fn ack_now(&mut self) -> Result<(), QueueError> {
        let acker = self.take_acker();
        ended(acker.ack(BasicAckOptions::default()).await, "ack")
    }

    /// After a failed publish, hand the original back so it is not stuck unacked on a live channel.
    async fn requeue_after(&mut self, err: QueueError) -> QueueError {
        let acker = self.take_acker();
        let _ = acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await;
        err
    }
}

/// A lapin ack/nack outcome: `Ok(false)` means the channel died (the broker requeues the message).
fn ended(r: lapin::Result<bool>, what: &str) -> Result<(), QueueError> {
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err(QueueError::Unavailable(format!(
            "{what}: the channel closed since the delivery; the broker redelivers the message"
        ))),
        Err(e) => Err(unavailable(what, &e)),
    }
}

/// The broker's delivery count: quorum queues add `x-delivery-count` (the number of earlier deliveries) on
/// redelivery; without it, the `redelivered` flag tells first from later.
pub(super) fn delivery_count(headers: Option<&FieldTable>, redelivered: bool) -> u32 {
    let header = headers
        .and_then(|h| h.inner().get("x-delivery-count"))
        .and_then(as_u64);
    match header {
        Some(n) => u32::try_from(n).unwrap_or(u32::MAX - 1).saturating_add(1),
        None if redelivered => 2,
        None => 1,
    }
}

/// A numeric AMQP value, whatever width the broker chose.
pub(super) fn as_u64(v: &AMQPValue) -> Option<u64> {
    match v {
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortShortUInt(n) => Some((*n).into()),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some((*n).into()),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some((*n).into()),
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

#[async_trait]
impl Delivery for RabbitDelivery {
    fn body(&self) -> &[u8] {
        &self.body
    }

    fn delivery_count(&self) -> u32 {
        self.count
    }

    async fn ack(mut self: Box<Self>) -> Result<(), QueueError> {
        self.ack_now().await
    }

    async fn retry_after(
        mut self: Box<Self>,
        delay: Duration,
        body: Vec<u8>,
    ) -> Result<(), QueueError> {
        let exchange = self.link.topo.retry_exchange();
        let key = self.link.topo.retry_key(&self.class, delay);
        if let Err(e) = publish(&self.link, &exchange, &key, &body, FieldTable::default()).await {
            return Err(self.requeue_after(e).await);
        }
        self.ack_now().await
    }

    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        let mut headers = FieldTable::default();
        headers.insert(REASON_HEADER.into(), long_string(reason));
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        headers.insert(DEAD_AT_HEADER.into(), long_string(&now));
        let exchange = self.link.topo.dlx_exchange();
        let body = std::mem::take(&mut self.body);
        if let Err(e) = publish(&self.link, &exchange, self.class.as_str(), &body, headers).await {
            return Err(self.requeue_after(e).await);
        }
        self.ack_now().await
    }

    async fn release(mut self: Box<Self>) -> Result<(), QueueError> {
        // Published again (confirmed), then acked: a nack with requeue would come back marked redelivered and
        // bump the quorum queue's x-delivery-count, so a drain would bring the job closer to its delivery
        // limit. When the publish fails, the nack below is the fallback: counted, but never lost.
        let exchange = self.link.topo.work_exchange();
        let body = std::mem::take(&mut self.body);
        if let Err(e) = publish(
            &self.link,
            &exchange,
            self.class.as_str(),
            &body,
            FieldTable::default(),
        )
        .await
        {
            return Err(self.requeue_after(e).await);
        }
        self.ack_now().await
    }

    /// A no-op: the lease is the channel (see the module docs).
    async fn extend_lease(&self, _lease: Duration) -> Result<(), QueueError> {
        Ok(())
    }
}

impl Drop for RabbitDelivery {
    fn drop(&mut self) {
        let Some(acker) = self.acker.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_count_prefers_the_quorum_header() {
        let mut h = FieldTable::default();
        assert_eq!(delivery_count(None, false), 1);
        assert_eq!(delivery_count(None, true), 2);
        assert_eq!(delivery_count(Some(&h), true), 2);
        h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        assert_eq!(delivery_count(Some(&h), true), 3);
    }
}
