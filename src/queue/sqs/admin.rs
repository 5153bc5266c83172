//! The SQS admin side: declare (verify) and setup (create), depth, and the dead-letter operations, each a
//! [`DlqScan`] that is always closed, so what it holds and did not remove is handed back at once.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sqs::types::{Message, QueueAttributeName};

use super::scan::{dead_letter, DlqScan};
use super::SqsQueue;
use crate::queue::dead::{redrive_body, Pick, Picker};
use crate::queue::{
    dead_letter_id, DeadLetter, Depth, JobClass, JobQueue, QueueAdmin, QueueError, Redriven,
};

impl SqsQueue {
    async fn scan(&self, class: &JobClass) -> Result<DlqScan, QueueError> {
        let q = self.class_queues(class).await?;
        Ok(DlqScan::new(self.client.clone(), q.dlq))
    }

    async fn peek(&self, scan: &mut DlqScan, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(m) = scan.next().await? else { break };
            out.push(dead_letter(&m, self.cfg.max_receive_count));
        }
        Ok(out)
    }

    async fn find(&self, scan: &mut DlqScan, id: &str) -> Result<Option<DeadLetter>, QueueError> {
        while let Some(m) = scan.next().await? {
            if dead_letter_id(m.body().unwrap_or_default().as_bytes()) == id {
                return Ok(Some(dead_letter(&m, self.cfg.max_receive_count)));
            }
        }
        Ok(None)
    }

    async fn redrive_with(
        &self,
        scan: &mut DlqScan,
        class: &JobClass,
        picker: &mut Picker,
    ) -> Result<(), QueueError> {
        while picker.scan_on() {
            let Some(m) = scan.next().await? else { break };
            let body = m.body().unwrap_or_default().as_bytes();
            match picker.pick(&dead_letter_id(body)) {
                Pick::Keep => {}
                // Sent to the work queue first (with the producer's attributes for the new body), then
                // deleted from the DLQ: a failure in between leaves the job in both, never in neither.
                Pick::Move => {
                    self.publish(class, &redrive_body(body)).await?;
                    scan.remove(std::slice::from_ref(&m)).await?;
                }
                Pick::Duplicate => {
                    scan.remove(std::slice::from_ref(&m)).await?;
                }
            }
        }
        Ok(())
    }

    async fn purge_with(&self, scan: &mut DlqScan, limit: usize) -> Result<u64, QueueError> {
        let mut removed = 0;
        let mut batch: Vec<Message> = Vec::new();
        while removed + (batch.len() as u64) < limit as u64 {
            let Some(m) = scan.next().await? else { break };
            batch.push(m);
            if batch.len() == 10 {
                removed += scan.remove(&batch).await?;
                batch.clear();
            }
        }
        removed += scan.remove(&batch).await?;
        Ok(removed)
    }
}

#[async_trait]
impl QueueAdmin for SqsQueue {
    fn backend(&self) -> &'static str {
        "sqs"
    }

    async fn declare(&self, classes: &[JobClass]) -> Result<(), QueueError> {
        for class in classes {
            self.verify(class).await?;
        }
        Ok(())
    }

    async fn setup(&self, classes: &[JobClass]) -> Result<(), QueueError> {
        for class in classes {
            self.create(class).await?;
        }
        self.declare(classes).await
    }

    async fn depth(&self, class: &JobClass) -> Result<Depth, QueueError> {
        let q = self.class_queues(class).await?;
        let work = self
            .attributes(
                &q.work,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                ],
            )
            .await?;
        let dlq = self
            .attributes(
                &q.dlq,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ],
            )
            .await?;
        let n = |m: &HashMap<QueueAttributeName, String>, k: QueueAttributeName| {
            m.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        Ok(Depth {
            ready: n(&work, QueueAttributeName::ApproximateNumberOfMessages),
            // Received messages still under their visibility timeout: jobs being worked on.
            in_flight: Some(n(
                &work,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )),
            // Retries and outage waits: new messages sent with `DelaySeconds`, not visible until it ends.
            delayed: n(
                &work,
                QueueAttributeName::ApproximateNumberOfMessagesDelayed,
            ),
            // Nothing consumes a DLQ but an admin scan, which holds messages invisible for a moment: they
            // are still dead letters.
            dlq: n(&dlq, QueueAttributeName::ApproximateNumberOfMessages)
                + n(
                    &dlq,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ),
            // Only CloudWatch knows the age of the oldest message; the scaler reads it from the DB instead.
            oldest_age_seconds: None,
        })
    }

    async fn dead_letters(
        &self,
        class: &JobClass,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let mut scan = self.scan(class).await?;
        let r = self.peek(&mut scan, limit).await;
        scan.close().await;
        r
    }

    async fn dead_letter(
        &self,
        class: &JobClass,
        id: &str,
    ) -> Result<Option<DeadLetter>, QueueError> {
        let mut scan = self.scan(class).await?;
        let r = self.find(&mut scan, id).await;
        scan.close().await;
        r
    }

    async fn redrive(
        &self,
        class: &JobClass,
        ids: Option<&[String]>,
        limit: usize,
    ) -> Result<Redriven, QueueError> {
        let mut scan = self.scan(class).await?;
        let mut picker = Picker::new(ids, limit);
        let r = self.redrive_with(&mut scan, class, &mut picker).await;
        scan.close().await;
        r.map(|()| picker.finish())
    }

    async fn purge(&self, class: &JobClass, limit: usize) -> Result<u64, QueueError> {
        let mut scan = self.scan(class).await?;
        let r = self.purge_with(&mut scan, limit).await;
        scan.close().await;
        r
    }
}
