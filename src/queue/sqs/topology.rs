//! Queue topology on SQS: `declare` verifies (production roles are often not allowed to create queues), `setup`
//! creates or converges.

use aws_sdk_sqs::types::QueueAttributeName;

use super::errors::classify;
use super::{secs, ClassQueues, SqsQueue};
use crate::queue::{JobClass, QueueError};

impl SqsQueue {
    /// Verifies one class: both queues exist, the work queue redrives to the DLQ, and `maxReceiveCount` leaves
    /// room for our own attempts.
    pub(super) async fn verify(&self, class: &JobClass) -> Result<(), QueueError> {
        let q = self.class_queues(class).await?;
        let work = self.cfg.work_queue(class);
        let dlq = self.cfg.dlq(class);
        let attrs = self
            .attributes(&q.work, &[QueueAttributeName::RedrivePolicy])
            .await?;
        let fix =
            "run `mediafleet queues setup` (or set the redrive policy in your infrastructure code)";
        let Some(policy) = attrs.get(&QueueAttributeName::RedrivePolicy) else {
            return Err(QueueError::Config(format!(
                "SQS queue {work} has no redrive policy to {dlq}; {fix}"
            )));
        };
        let policy: serde_json::Value = serde_json::from_str(policy).map_err(|e| {
            QueueError::Config(format!("SQS queue {work}: unreadable redrive policy: {e}"))
        })?;
        let target = policy["deadLetterTargetArn"].as_str().unwrap_or_default();
        if !target.ends_with(&format!(":{dlq}")) {
            return Err(QueueError::Config(format!(
                "SQS queue {work} redrives to {target:?}, not to {dlq}; {fix}"
            )));
        }
        let max_receive = match &policy["maxReceiveCount"] {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(0);
        if max_receive <= u64::from(self.cfg.max_attempts) {
            return Err(QueueError::Config(format!(
                "SQS queue {work} has maxReceiveCount {max_receive}, not above our {} attempts: deliveries \
                 that end without an outcome (a lost lease, a worker that dies on the job) count towards \
                 both, so SQS would move such a job to the DLQ, with no reason and its media left queued, \
                 before our own limit fails it with one; raise it (queues setup uses {})",
                self.cfg.max_attempts, self.cfg.max_receive_count
            )));
        }
        Ok(())
    }

    /// Creates (or converges) one class's queues and redrive.
    pub(super) async fn create(&self, class: &JobClass) -> Result<(), QueueError> {
        self.cfg.check_names(class)?;
        let retention = self.cfg.retention_seconds().to_string();
        let dlq_name = self.cfg.dlq(class);
        let dlq_url = self.create_queue(&dlq_name).await?;
        self.client
            .set_queue_attributes()
            .queue_url(&dlq_url)
            .attributes(QueueAttributeName::MessageRetentionPeriod, &retention)
            .send()
            .await
            .map_err(|e| classify(&format!("SetQueueAttributes {dlq_name}"), e))?;
        let dlq_arn = self
            .attributes(&dlq_url, &[QueueAttributeName::QueueArn])
            .await?
            .remove(&QueueAttributeName::QueueArn)
            .ok_or_else(|| QueueError::Backend(format!("SQS gave no ARN for {dlq_name}")))?;
        let work_name = self.cfg.work_queue(class);
        let work_url = self.create_queue(&work_name).await?;
        self.client
            .set_queue_attributes()
            .queue_url(&work_url)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                secs(self.cfg.lease).to_string(),
            )
            .attributes(QueueAttributeName::MessageRetentionPeriod, &retention)
            .attributes(
                QueueAttributeName::ReceiveMessageWaitTimeSeconds,
                secs(self.cfg.max_wait).to_string(),
            )
            .attributes(
                QueueAttributeName::RedrivePolicy,
                self.cfg.redrive_policy(&dlq_arn),
            )
            .send()
            .await
            .map_err(|e| classify(&format!("SetQueueAttributes {work_name}"), e))?;
        self.queues.write().await.insert(
            class.clone(),
            ClassQueues {
                work: work_url.into(),
                dlq: dlq_url.into(),
            },
        );
        Ok(())
    }

    /// `CreateQueue` by name only, which returns the existing queue whatever its attributes; attributes are
    /// converged afterwards with `SetQueueAttributes`.
    async fn create_queue(&self, name: &str) -> Result<String, QueueError> {
        let out = self
            .client
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| classify(&format!("CreateQueue {name}"), e))?;
        out.queue_url()
            .map(str::to_owned)
            .ok_or_else(|| QueueError::Backend(format!("SQS returned no URL for {name}")))
    }
}
