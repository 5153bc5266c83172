//! Views for operators and the scaler: depth per class, and scans of a DLQ (a peek hands everything back; a
//! redrive or purge removes what it took, see `admin.rs`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::protocol::AMQPSoftError;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::Channel;

use super::delivery::{DEAD_AT_HEADER, REASON_HEADER};
use super::link::{unavailable, Link};
use super::topology::is_soft;
use crate::queue::{DeadLetter, Depth, JobClass, QueueError};

/// Ready counts from passive declares; in-flight from the management API when configured.
///
/// AMQP cannot tell unacked counts or the age of the oldest message: `in_flight` is `None` without
/// `management_url`, and `oldest_age_seconds` is always `None` (quorum queues do not report a head timestamp).
pub(super) async fn depth(link: &Link, class: &JobClass) -> Result<Depth, QueueError> {
    let ch = link.fresh_channel().await?;
    let work = link.topo.work_queue(class);
    let ready = ready_count(&ch, &work).await?;
    let dlq = ready_count(&ch, &link.topo.dlq(class)).await?;
    let mut delayed = 0;
    for q in link.topo.retry_queues(class) {
        delayed += ready_count(&ch, &q).await?;
    }
    let _ = ch.close(200, "depth read".into()).await;
    let in_flight = match &link.cfg.management_url {
        Some(base) => Some(super::management::unacked(base, &link.cfg.url, &work).await?),
        None => None,
    };
    Ok(Depth {
        ready,
        in_flight,
        delayed,
        dlq,
        oldest_age_seconds: None,
    })
}

/// Ready messages in `queue`, by passive declare (which never creates anything).
pub(super) async fn ready_count(ch: &Channel, queue: &str) -> Result<u64, QueueError> {
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match ch
        .queue_declare(queue.into(), opts, FieldTable::default())
        .await
    {
        Ok(q) => Ok(q.message_count().into()),
        Err(e) if is_soft(&e, AMQPSoftError::NOTFOUND) => Err(QueueError::Config(format!(
            "queue {queue} does not exist; run `mediafleet queues setup`"
        ))),
        Err(e) => Err(unavailable(&format!("reading the depth of {queue}"), &e)),
    }
}

/// A look through one class's DLQ on a private channel: messages taken with `basic_get` and not acked stay
/// held by the channel, so each `next` gives a message not seen yet; closing the channel hands every held
/// message back (nack-requeue one by one would hand the same head back each time). Messages acked through
/// [`Self::remove`] are gone for good.
pub(super) struct DlqScan {
    ch: Channel,
    queue: String,
    /// Ready messages when the scan began, less those removed since: what the queue shows again once the
    /// held ones are back.
    expect: u64,
}

impl DlqScan {
    pub async fn open(link: &Link, class: &JobClass) -> Result<DlqScan, QueueError> {
        let queue = link.topo.dlq(class);
        let ch = link.fresh_channel().await?;
        let expect = ready_count(&ch, &queue).await?;
        Ok(DlqScan { ch, queue, expect })
    }

    /// The next message not yet held, or `None` when the DLQ has nothing more ready.
    pub async fn next(&mut self) -> Result<Option<lapin::message::Delivery>, QueueError> {
        let got = self
            .ch
            .basic_get(
                self.queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .map_err(|e| {
                if is_soft(&e, AMQPSoftError::NOTFOUND) {
                    QueueError::Config(format!(
                        "queue {} does not exist; run `mediafleet queues setup`",
                        self.queue
                    ))
                } else {
                    unavailable(&format!("reading {}", self.queue), &e)
                }
            })?;
        Ok(got.map(|m| m.delivery))
    }

    /// Removes a held message from the DLQ (ack).
    pub async fn remove(&mut self, d: &lapin::message::Delivery) -> Result<(), QueueError> {
        let what = format!("removing a message from {}", self.queue);
        match d.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => {
                self.expect = self.expect.saturating_sub(1);
                Ok(())
            }
            Ok(false) => Err(QueueError::Unavailable(format!(
                "{what}: the channel closed; the broker keeps the message"
            ))),
            Err(e) => Err(unavailable(&what, &e)),
        }
    }

    /// Hands every held message back and waits (briefly) until the broker shows them again.
    pub async fn close(self, link: &Link) {
        // Bounded, so a sick broker cannot hang an operator's command.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.ch.close(200, "dlq scan done".into()),
        )
        .await;
        settle(link, &self.queue, self.expect).await;
    }
}

/// Up to `limit` dead letters of `class`, held on a scan's channel and handed back when it closes.
pub(super) async fn dead_letters(
    link: &Link,
    class: &JobClass,
    limit: usize,
) -> Result<Vec<DeadLetter>, QueueError> {
    let mut scan = DlqScan::open(link, class).await?;
    let mut out = Vec::new();
    let mut failed = None;
    while out.len() < limit {
        match scan.next().await {
            Ok(Some(d)) => out.push(dead_letter(&d)),
            Ok(None) => break,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    scan.close(link).await;
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// A held DLQ message as an operator sees it.
pub(super) fn dead_letter(d: &lapin::message::Delivery) -> DeadLetter {
    let headers = d.properties.headers().as_ref();
    DeadLetter::from_body(&d.data, reason(headers), dead_lettered_at(headers))
}

/// A quorum queue takes back a closed channel's messages asynchronously; wait (briefly) until `queue` shows
/// `expect` ready messages again, so a depth read or another scan right after this one sees them.
async fn settle(link: &Link, queue: &str, expect: u64) {
    let Ok(ch) = link.fresh_channel().await else {
        return;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        match ready_count(&ch, queue).await {
            Ok(n) if n < expect => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => break,
        }
    }
    let _ = ch.close(200, "settled".into()).await;
}

/// When the message was dead-lettered: our header, else the time of the broker's latest `x-death`.
pub(super) fn dead_lettered_at(headers: Option<&FieldTable>) -> Option<DateTime<Utc>> {
    let h = headers?.inner();
    if let Some(t) = h.get(DEAD_AT_HEADER).and_then(text) {
        return DateTime::parse_from_rfc3339(&t)
            .ok()
            .map(|t| t.with_timezone(&Utc));
    }
    let Some(AMQPValue::FieldArray(deaths)) = h.get("x-death") else {
        return None;
    };
    match deaths.as_slice().first() {
        Some(AMQPValue::FieldTable(t)) => match t.inner().get("time") {
            Some(AMQPValue::Timestamp(secs)) => {
                DateTime::from_timestamp(i64::try_from(*secs).ok()?, 0)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Our reason header, else the broker's latest `x-death` reason (`delivery_limit`, `rejected`, …).
pub(super) fn reason(headers: Option<&FieldTable>) -> String {
    let Some(h) = headers.map(|h| h.inner()) else {
        return "unknown".into();
    };
    if let Some(r) = h.get(REASON_HEADER).and_then(text) {
        return r;
    }
    let death = match h.get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().first().cloned(),
        _ => None,
    };
    match death {
        Some(AMQPValue::FieldTable(t)) => {
            let why = t
                .inner()
                .get("reason")
                .and_then(text)
                .unwrap_or_else(|| "unknown".into());
            match t.inner().get("queue").and_then(text) {
                Some(q) => format!("{why} (from {q})"),
                None => why,
            }
        }
        _ => "unknown".into(),
    }
}

fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(long(s)),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn long(s: &LongString) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::rabbitmq::topology::long_string;

    #[test]
    fn reason_prefers_ours_then_x_death() {
        assert_eq!(reason(None), "unknown");
        let mut death = FieldTable::default();
        death.insert("reason".into(), long_string("delivery_limit"));
        death.insert("queue".into(), long_string("p.image"));
        let mut h = FieldTable::default();
        h.insert(
            "x-death".into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
        );
        assert_eq!(reason(Some(&h)), "delivery_limit (from p.image)");
        h.insert(
            REASON_HEADER.into(),
            long_string("corrupt_media: bad header"),
        );
        assert_eq!(reason(Some(&h)), "corrupt_media: bad header");
    }

    #[test]
    fn dead_lettered_at_prefers_ours_then_x_death() {
        assert_eq!(dead_lettered_at(None), None);
        let mut death = FieldTable::default();
        death.insert("time".into(), AMQPValue::Timestamp(1_796_000_000));
        let mut h = FieldTable::default();
        h.insert(
            "x-death".into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
        );
        assert_eq!(
            dead_lettered_at(Some(&h)),
            DateTime::from_timestamp(1_796_000_000, 0)
        );
        h.insert(
            DEAD_AT_HEADER.into(),
            long_string("2026-12-02T07:00:00.250Z"),
        );
        assert_eq!(
            dead_lettered_at(Some(&h)),
            "2026-12-02T07:00:00.250Z".parse().ok()
        );
    }
}
