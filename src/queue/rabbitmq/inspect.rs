//! Read-only views for operators and the scaler: depth per class and a peek at dead letters.

use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::protocol::AMQPSoftError;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::Channel;

use super::delivery::REASON_HEADER;
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
async fn ready_count(ch: &Channel, queue: &str) -> Result<u64, QueueError> {
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

/// Up to `limit` dead letters of `class`, taken with `basic_get` without ack on a private channel whose
/// close hands them all back to the DLQ (nack-requeue one by one would hand the same head back each time).
pub(super) async fn dead_letters(
    link: &Link,
    class: &JobClass,
    limit: usize,
) -> Result<Vec<DeadLetter>, QueueError> {
    let queue = link.topo.dlq(class);
    let ch = link.fresh_channel().await?;
    let mut out = Vec::new();
    while out.len() < limit {
        let got = ch
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(|e| {
                if is_soft(&e, AMQPSoftError::NOTFOUND) {
                    QueueError::Config(format!(
                        "queue {queue} does not exist; run `mediafleet queues setup`"
                    ))
                } else {
                    unavailable(&format!("reading {queue}"), &e)
                }
            })?;
        let Some(msg) = got else { break };
        let reason = reason(msg.delivery.properties.headers().as_ref());
        out.push(DeadLetter {
            body: String::from_utf8_lossy(&msg.delivery.data).into_owned(),
            reason,
        });
    }
    // Closing the channel requeues every message we took; give the close a bound so a sick broker cannot
    // hang an operator's command.
    let _ = tokio::time::timeout(Duration::from_secs(5), ch.close(200, "peeked".into())).await;
    if !out.is_empty() {
        settle(link, &queue, out.len() as u64).await;
    }
    Ok(out)
}

/// A quorum queue takes back a closed channel's messages asynchronously; wait (briefly) until `queue` shows
/// at least the `taken` messages again, so a depth read or a second peek right after this one sees them.
async fn settle(link: &Link, queue: &str, taken: u64) {
    let Ok(ch) = link.fresh_channel().await else {
        return;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        match ready_count(&ch, queue).await {
            Ok(n) if n < taken => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => break,
        }
    }
    let _ = ch.close(200, "settled".into()).await;
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
}
