//! A received SQS message, and the batcher that deletes acked ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageAttributeValue};
use aws_sdk_sqs::Client;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::config::{secs, MAX_DELAY, VISIBILITY_CAP};
use super::errors::classify;
use super::{REASON_ATTR, SOURCE_ATTR};
use crate::queue::{Delivery, QueueError};

/// One ack waiting for its batch.
struct DeleteRequest {
    receipt: String,
    done: oneshot::Sender<Result<(), QueueError>>,
}

/// Deletes acked receipts of one queue, up to 10 per `DeleteMessageBatch`. Acks that arrive while a batch is
/// in flight form the next batch, so a busy worker makes one call per ten jobs and an idle one adds no delay.
#[derive(Clone)]
pub(super) struct Deleter {
    tx: mpsc::Sender<DeleteRequest>,
}

impl Deleter {
    /// Starts the batcher task; it ends when the last handle is dropped.
    pub(super) fn spawn(client: Client, queue_url: Arc<str>) -> Deleter {
        let (tx, mut rx) = mpsc::channel::<DeleteRequest>(256);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 10 {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                delete_batch(&client, &queue_url, batch).await;
            }
        });
        Deleter { tx }
    }

    async fn delete(&self, receipt: String) -> Result<(), QueueError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(DeleteRequest { receipt, done })
            .await
            .map_err(|_| QueueError::Unavailable("SQS delete batcher stopped".into()))?;
        rx.await
            .map_err(|_| QueueError::Unavailable("SQS delete batcher stopped".into()))?
    }
}

async fn delete_batch(client: &Client, queue_url: &str, batch: Vec<DeleteRequest>) {
    let mut req = client.delete_message_batch().queue_url(queue_url);
    for (i, r) in batch.iter().enumerate() {
        match DeleteMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .receipt_handle(&r.receipt)
            .build()
        {
            Ok(entry) => req = req.entries(entry),
            Err(e) => {
                tracing::error!(error = %e, "could not build a delete entry");
            }
        }
    }
    match req.send().await {
        Ok(out) => {
            let mut failed: HashMap<usize, String> = out
                .failed()
                .iter()
                .map(|f| {
                    (
                        f.id().parse().unwrap_or(usize::MAX),
                        format!(
                            "SQS DeleteMessageBatch {queue_url}: {}: {}",
                            f.code(),
                            f.message().unwrap_or_default()
                        ),
                    )
                })
                .collect();
            for (i, r) in batch.into_iter().enumerate() {
                let result = match failed.remove(&i) {
                    Some(msg) => Err(QueueError::Backend(msg)),
                    None => Ok(()),
                };
                let _ = r.done.send(result);
            }
        }
        Err(e) => {
            let msg = classify(&format!("DeleteMessageBatch {queue_url}"), e).to_string();
            for r in batch {
                let _ = r.done.send(Err(QueueError::Unavailable(msg.clone())));
            }
        }
    }
}

/// The attributes of a dead letter. SQS allows 10 a message: ours first (the reason, cut to something sane,
/// and the source queue), then the message's own, the producer's (`mf-*`, trace context) before foreign
/// ones, by name, so which ones are dropped does not depend on a map's order.
fn dead_letter_attributes(
    reason: &str,
    source: &str,
    theirs: &HashMap<String, MessageAttributeValue>,
) -> Vec<(String, MessageAttributeValue)> {
    let mut reason = reason.to_owned();
    if reason.len() > 4096 {
        let mut cut = 4096;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    let mut attrs: Vec<(String, MessageAttributeValue)> = Vec::with_capacity(10);
    for (k, v) in [(REASON_ATTR, reason), (SOURCE_ATTR, source.to_owned())] {
        if let Ok(a) = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
        {
            attrs.push((k.to_owned(), a));
        }
    }
    let mut theirs: Vec<_> = theirs
        .iter()
        .filter(|(k, _)| k.as_str() != REASON_ATTR && k.as_str() != SOURCE_ATTR)
        .collect();
    theirs.sort_by_key(|(k, _)| (!is_producers(k), k.as_str()));
    let room = 10 - attrs.len();
    attrs.extend(
        theirs
            .into_iter()
            .take(room)
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    attrs
}

/// Attributes our producers set (see `attributes_of`), kept first when a message has more than fit.
fn is_producers(name: &str) -> bool {
    name.starts_with("mf-") || name == "traceparent" || name == "tracestate"
}

/// A leased SQS message. The lease is its visibility timeout, identified by the receipt handle.
pub(super) struct SqsDelivery {
    pub(super) client: Client,
    pub(super) queue_url: Arc<str>,
    pub(super) dlq_url: Arc<str>,
    pub(super) receipt: String,
    pub(super) body: Vec<u8>,
    pub(super) attributes: HashMap<String, MessageAttributeValue>,
    pub(super) receive_count: u32,
    pub(super) received: Instant,
    pub(super) deleter: Deleter,
}

impl SqsDelivery {
    async fn set_visibility(&self, d: Duration, op: &str) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&*self.queue_url)
            .receipt_handle(&self.receipt)
            .visibility_timeout(secs(d))
            .send()
            .await
            .map_err(|e| {
                classify(
                    &format!("ChangeMessageVisibility ({op}) {}", self.queue_url),
                    e,
                )
            })?;
        Ok(())
    }

    /// Sends `body` again as a new message visible after `delay` (at most SQS's 15 min `DelaySeconds`), with
    /// this message's attributes, then deletes this one. Send first: a failed delete leaves a duplicate, which
    /// the jobs' guards absorb, never a loss.
    async fn resend(&self, body: &[u8], delay: Duration, op: &str) -> Result<(), QueueError> {
        let text = std::str::from_utf8(body)
            .map_err(|e| QueueError::Backend(format!("{op}: the body is not UTF-8: {e}")))?;
        let mut req = self
            .client
            .send_message()
            .queue_url(&*self.queue_url)
            .message_body(text)
            .delay_seconds(secs(delay.min(MAX_DELAY)));
        for (k, v) in &self.attributes {
            req = req.message_attributes(k.clone(), v.clone());
        }
        req.send()
            .await
            .map_err(|e| classify(&format!("SendMessage ({op}) {}", self.queue_url), e))?;
        self.deleter.delete(self.receipt.clone()).await
    }

    /// Visibility left under the 12 h cap, keeping a minute of margin for clock and request latency.
    fn under_cap(&self, want: Duration) -> Duration {
        let left = VISIBILITY_CAP
            .saturating_sub(self.received.elapsed())
            .saturating_sub(Duration::from_secs(60));
        want.min(left)
    }
}

#[async_trait]
impl Delivery for SqsDelivery {
    fn body(&self) -> &[u8] {
        &self.body
    }

    fn delivery_count(&self) -> u32 {
        self.receive_count
    }

    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.deleter.delete(self.receipt.clone()).await
    }

    async fn retry_after(
        self: Box<Self>,
        delay: Duration,
        body: Vec<u8>,
    ) -> Result<(), QueueError> {
        // A new message carries the new body (the runtime's attempt and outage clock), so the broker-side
        // receive count, and with it the redrive policy's maxReceiveCount, starts over.
        self.resend(&body, delay, "retry").await
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        let body = std::str::from_utf8(&self.body).unwrap_or_default();
        let mut req = self
            .client
            .send_message()
            .queue_url(&*self.dlq_url)
            .message_body(body);
        let attrs = dead_letter_attributes(reason, &self.queue_url, &self.attributes);
        for (k, v) in attrs {
            req = req.message_attributes(k, v);
        }
        req.send()
            .await
            .map_err(|e| classify(&format!("SendMessage {}", self.dlq_url), e))?;
        // If this delete fails the message comes back and is dead-lettered again: a duplicate in the DLQ,
        // never a loss.
        self.deleter.delete(self.receipt.clone()).await
    }

    async fn release(self: Box<Self>) -> Result<(), QueueError> {
        // A copy sent again, not the visibility set to zero: a hand-back during a drain is not a failed
        // delivery, and must not bring the message closer to the DLQ.
        let body = self.body.clone();
        self.resend(&body, Duration::ZERO, "release").await
    }

    async fn extend_lease(&self, lease: Duration) -> Result<(), QueueError> {
        let d = self.under_cap(lease);
        if d.is_zero() {
            return Err(QueueError::Backend(format!(
                "message on {} has been invisible for nearly SQS's 12 h cap; the lease cannot be extended",
                self.queue_url
            )));
        }
        self.set_visibility(d, "heartbeat").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &str) -> MessageAttributeValue {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .unwrap()
    }

    #[test]
    fn a_dead_letter_keeps_our_attributes_first_whatever_the_message_carries() {
        let mut theirs: HashMap<String, MessageAttributeValue> = (0..12)
            .map(|i| (format!("app-{i:02}"), text("x")))
            .collect();
        theirs.insert("mf-kind".into(), text("cache.warm"));
        theirs.insert("traceparent".into(), text("00-1-2-01"));
        theirs.insert(REASON_ATTR.into(), text("an older reason"));
        let long = "é".repeat(3000);
        let attrs = dead_letter_attributes(&long, "https://q/p-image", &theirs);
        let names: Vec<&str> = attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                REASON_ATTR,
                SOURCE_ATTR,
                "mf-kind",
                "traceparent",
                "app-00",
                "app-01",
                "app-02",
                "app-03",
                "app-04",
                "app-05"
            ]
        );
        let reason = attrs[0].1.string_value().unwrap();
        assert!(
            reason.len() <= 4096 && reason.starts_with('é'),
            "{}",
            reason.len()
        );
    }
}
