//! The RabbitMQ admin side: declare, depth, and the dead-letter operations.
//!
//! AMQP has no way to read or remove one message by id, so every DLQ operation but an unlimited purge is a
//! [`DlqScan`]: messages are taken with `basic_get` on a private channel and held unacked while the scan looks
//! at them; the ones it moves or deletes are acked, and closing the channel hands every other one back.
//! While a scan runs, the messages it holds are invisible to other scans, and a scan with ids walks the
//! whole DLQ.

use async_trait::async_trait;
use lapin::options::{BasicGetOptions, QueuePurgeOptions};
use lapin::types::FieldTable;

use super::inspect::{self, DlqScan};
use super::link::unavailable;
use super::publish::publish;
use super::RabbitQueue;
use crate::queue::dead::{redrive_body, Pick, Picker};
use crate::queue::{dead_letter_id, DeadLetter, Depth, JobClass, QueueAdmin, QueueError, Redriven};

#[async_trait]
impl QueueAdmin for RabbitQueue {
    fn backend(&self) -> &'static str {
        "rabbitmq"
    }

    async fn declare(&self, classes: &[JobClass]) -> Result<(), QueueError> {
        // A 406 closes the channel it happened on: one fresh channel per declare call.
        let ch = self.link.fresh_channel().await?;
        for class in classes {
            self.link.topo.declare(&ch, class).await?;
            self.link.remember(class);
        }
        let _ = ch.close(200, "declared".into()).await;
        Ok(())
    }

    async fn depth(&self, class: &JobClass) -> Result<Depth, QueueError> {
        inspect::depth(&self.link, class).await
    }

    async fn dead_letters(
        &self,
        class: &JobClass,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        inspect::dead_letters(&self.link, class, limit).await
    }

    async fn dead_letter(
        &self,
        class: &JobClass,
        id: &str,
    ) -> Result<Option<DeadLetter>, QueueError> {
        let mut scan = DlqScan::open(&self.link, class).await?;
        let found = loop {
            match scan.next().await {
                Ok(Some(d)) if dead_letter_id(&d.data) == id => {
                    break Ok(Some(inspect::dead_letter(&d)))
                }
                Ok(Some(_)) => {}
                Ok(None) => break Ok(None),
                Err(e) => break Err(e),
            }
        };
        scan.close(&self.link).await;
        found
    }

    async fn redrive(
        &self,
        class: &JobClass,
        ids: Option<&[String]>,
        limit: usize,
    ) -> Result<Redriven, QueueError> {
        let mut scan = DlqScan::open(&self.link, class).await?;
        let mut picker = Picker::new(ids, limit);
        let exchange = self.link.topo.work_exchange();
        let mut failed = None;
        while picker.scan_on() {
            let d = match scan.next().await {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let step = match picker.pick(&dead_letter_id(&d.data)) {
                Pick::Keep => continue,
                // Published (confirmed) to the work queue first, then removed: a failure in between leaves
                // the message in both places, never in neither.
                Pick::Move => {
                    let body = redrive_body(&d.data);
                    match publish(
                        &self.link,
                        &exchange,
                        class.as_str(),
                        &body,
                        FieldTable::default(),
                    )
                    .await
                    {
                        Ok(()) => scan.remove(&d).await,
                        Err(e) => Err(e),
                    }
                }
                Pick::Duplicate => scan.remove(&d).await,
            };
            if let Err(e) = step {
                failed = Some(e);
                break;
            }
        }
        scan.close(&self.link).await;
        match failed {
            Some(e) => Err(e),
            None => Ok(picker.finish()),
        }
    }

    async fn purge(&self, class: &JobClass, limit: usize) -> Result<u64, QueueError> {
        let queue = self.link.topo.dlq(class);
        let ch = self.link.fresh_channel().await?;
        let result = if limit == usize::MAX {
            // Everything ready; messages a running scan holds are not ready and stay.
            ch.queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
                .await
                .map(u64::from)
                .map_err(|e| unavailable(&format!("purging {queue}"), &e))
        } else {
            purge_some(&ch, &queue, limit).await
        };
        let _ = ch.close(200, "purged".into()).await;
        result
    }
}

/// Takes up to `limit` messages with auto-ack `basic_get`: each one is gone as soon as it is delivered.
async fn purge_some(ch: &lapin::Channel, queue: &str, limit: usize) -> Result<u64, QueueError> {
    let mut n = 0;
    while n < limit {
        let got = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .map_err(|e| unavailable(&format!("purging {queue}"), &e))?;
        if got.is_none() {
            break;
        }
        n += 1;
    }
    Ok(n as u64)
}
