//! Amazon SQS (and compatible servers such as moto) as the job queue.
//!
//! - One standard queue and one DLQ per class, `{prefix}-{class}` and `{prefix}-{class}-dlq`, joined by a
//!   redrive policy whose `maxReceiveCount` is far above our own attempt limit: it only catches crash loops.
//!   Permanent failures and exhausted retries are moved to the DLQ by us, with the reason as an attribute.
//! - A lease is the visibility timeout. Receives ask for the configured lease; the worker heartbeat extends it
//!   (`ChangeMessageVisibility`) and never past SQS's 12 h cap.
//! - A transient failure sets the visibility to the backoff delay, so the retry waits in SQS. SQS cannot
//!   rewrite a body, so the attempt number of a redelivered message is the envelope's plus the receive count
//!   (`ApproximateReceiveCount`), which the runtime already adds.
//! - Acks go through a per-queue batcher that deletes up to 10 receipts per `DeleteMessageBatch`.
//! - `declare` (every start) only verifies the queues and their redrive, because production roles are often not
//!   allowed to create queues; `setup` (`mediafleet queues setup`) creates or converges them.

mod config;
mod delivery;
mod errors;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use tokio::sync::RwLock;

pub use config::{secs, SqsConfig, DEFAULT_MAX_RECEIVE_COUNT, MAX_WAIT, VISIBILITY_CAP};
use delivery::{Deleter, SqsDelivery};
use errors::{classify, is_missing};

use super::{DeadLetter, Delivery, Depth, JobClass, JobQueue, QueueError};

/// Message attribute that carries the job kind.
pub const KIND_ATTR: &str = "mf-kind";
/// Message attribute that carries the envelope version.
pub const VERSION_ATTR: &str = "mf-version";
/// Message attribute that carries the dead-letter reason.
pub const REASON_ATTR: &str = "mf-reason";
/// Message attribute naming the queue a dead letter came from.
pub const SOURCE_ATTR: &str = "mf-source-queue";

/// The URLs of one class's queues.
#[derive(Debug, Clone)]
struct ClassQueues {
    work: Arc<str>,
    dlq: Arc<str>,
}

/// SQS-backed queue.
pub struct SqsQueue {
    client: Client,
    cfg: SqsConfig,
    queues: RwLock<HashMap<JobClass, ClassQueues>>,
    deleters: std::sync::Mutex<HashMap<Arc<str>, Deleter>>,
}

impl SqsQueue {
    /// Builds the client. No request is made until the first operation.
    pub async fn connect(cfg: SqsConfig) -> Result<Self, QueueError> {
        // The long poll must finish well inside one attempt's timeout.
        let attempt_timeout = cfg.max_wait + Duration::from_secs(10);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(attempt_timeout)
                    .build(),
            );
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(region) = &cfg.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut sqs = aws_sdk_sqs::config::Builder::from(&shared);
        if shared.region().is_none() {
            sqs = sqs.region(Region::new("us-east-1"));
        }
        Ok(SqsQueue {
            client: Client::from_conf(sqs.build()),
            cfg,
            queues: RwLock::new(HashMap::new()),
            deleters: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The configuration this queue was built from.
    pub fn config(&self) -> &SqsConfig {
        &self.cfg
    }

    /// The SDK client (for tests and benchmarks that compare against raw SQS calls).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The work and DLQ URLs of `class`, looked up once.
    async fn class_queues(&self, class: &JobClass) -> Result<ClassQueues, QueueError> {
        if let Some(q) = self.queues.read().await.get(class) {
            return Ok(q.clone());
        }
        self.cfg.check_names(class)?;
        let work = self.queue_url(&self.cfg.work_queue(class)).await?;
        let dlq = self.queue_url(&self.cfg.dlq(class)).await?;
        let q = ClassQueues {
            work: work.into(),
            dlq: dlq.into(),
        };
        self.queues.write().await.insert(class.clone(), q.clone());
        Ok(q)
    }

    async fn queue_url(&self, name: &str) -> Result<String, QueueError> {
        match self.client.get_queue_url().queue_name(name).send().await {
            Ok(out) => out
                .queue_url()
                .map(str::to_owned)
                .ok_or_else(|| QueueError::Backend(format!("SQS returned no URL for {name}"))),
            Err(e) if is_missing(&e) => Err(QueueError::Config(format!(
                "SQS queue {name} does not exist; create it with `mediafleet queues setup`"
            ))),
            Err(e) => Err(classify(&format!("GetQueueUrl {name}"), e)),
        }
    }

    async fn attributes(
        &self,
        url: &str,
        names: &[QueueAttributeName],
    ) -> Result<HashMap<QueueAttributeName, String>, QueueError> {
        let mut req = self.client.get_queue_attributes().queue_url(url);
        for n in names {
            req = req.attribute_names(n.clone());
        }
        let out = req
            .send()
            .await
            .map_err(|e| classify(&format!("GetQueueAttributes {url}"), e))?;
        Ok(out.attributes().cloned().unwrap_or_default())
    }

    /// The batcher that deletes acked receipts of `queue_url`.
    fn deleter(&self, queue_url: &Arc<str>) -> Deleter {
        let mut map = self.deleters.lock().expect("deleter map lock");
        map.entry(queue_url.clone())
            .or_insert_with(|| Deleter::spawn(self.client.clone(), queue_url.clone()))
            .clone()
    }

    /// Verifies one class: both queues exist, the work queue redrives to the DLQ, and `maxReceiveCount` leaves
    /// room for our own attempts.
    async fn verify(&self, class: &JobClass) -> Result<(), QueueError> {
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
                "SQS queue {work} has maxReceiveCount {max_receive}, not above our {} attempts: an outage \
                 would dead-letter messages before their retries run out; raise it (queues setup uses {})",
                self.cfg.max_attempts, self.cfg.max_receive_count
            )));
        }
        Ok(())
    }

    /// Creates (or converges) one class's queues and redrive.
    async fn create(&self, class: &JobClass) -> Result<(), QueueError> {
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

    fn delivery(
        &self,
        q: &ClassQueues,
        deleter: &Deleter,
        m: aws_sdk_sqs::types::Message,
    ) -> Option<Box<dyn Delivery>> {
        let receipt = m.receipt_handle()?.to_owned();
        let receive_count = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        Some(Box::new(SqsDelivery {
            client: self.client.clone(),
            queue_url: q.work.clone(),
            dlq_url: q.dlq.clone(),
            receipt,
            body: m.body().unwrap_or_default().as_bytes().to_vec(),
            attributes: m.message_attributes().cloned().unwrap_or_default(),
            receive_count,
            received: tokio::time::Instant::now(),
            deleter: deleter.clone(),
        }))
    }
}

/// Attributes producers send: kind, envelope version and W3C trace context, read from the envelope when the
/// body is one (a body that is not JSON is still sent, without attributes, and dead-lettered by the worker).
fn attributes_of(body: &[u8]) -> Vec<(String, MessageAttributeValue)> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(value) = value.filter(|s| !s.is_empty()) {
            if let Ok(a) = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
            {
                out.push((name.to_owned(), a));
            }
        }
    };
    put(KIND_ATTR, v["kind"].as_str().map(str::to_owned));
    put(VERSION_ATTR, v["version"].as_u64().map(|n| n.to_string()));
    put(
        "traceparent",
        v["trace"]["traceparent"].as_str().map(str::to_owned),
    );
    put(
        "tracestate",
        v["trace"]["tracestate"].as_str().map(str::to_owned),
    );
    out
}

fn utf8(body: &[u8]) -> Result<&str, QueueError> {
    std::str::from_utf8(body)
        .map_err(|_| QueueError::Config("SQS message bodies must be UTF-8 text".into()))
}

#[async_trait]
impl JobQueue for SqsQueue {
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

    async fn publish(&self, class: &JobClass, body: &[u8]) -> Result<(), QueueError> {
        let q = self.class_queues(class).await?;
        let mut req = self
            .client
            .send_message()
            .queue_url(&*q.work)
            .message_body(utf8(body)?);
        for (k, v) in attributes_of(body) {
            req = req.message_attributes(k, v);
        }
        req.send()
            .await
            .map_err(|e| classify(&format!("SendMessage {}", q.work), e))?;
        Ok(())
    }

    async fn publish_batch(&self, class: &JobClass, bodies: &[Vec<u8>]) -> Result<(), QueueError> {
        let q = self.class_queues(class).await?;
        for chunk in bodies.chunks(10) {
            let mut req = self.client.send_message_batch().queue_url(&*q.work);
            for (i, body) in chunk.iter().enumerate() {
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(utf8(body)?);
                for (k, v) in attributes_of(body) {
                    entry = entry.message_attributes(k, v);
                }
                req = req.entries(
                    entry
                        .build()
                        .map_err(|e| QueueError::Config(e.to_string()))?,
                );
            }
            let out = req
                .send()
                .await
                .map_err(|e| classify(&format!("SendMessageBatch {}", q.work), e))?;
            // Entries SQS refused one by one are sent again singly; a second refusal is an error.
            for failed in out.failed() {
                let i: usize = failed.id().parse().unwrap_or(usize::MAX);
                let Some(body) = chunk.get(i) else {
                    return Err(QueueError::NotConfirmed(format!(
                        "SendMessageBatch {}: entry {} failed: {}",
                        q.work,
                        failed.id(),
                        failed.message().unwrap_or(failed.code())
                    )));
                };
                self.publish(class, body).await?;
            }
        }
        Ok(())
    }

    async fn receive(
        &self,
        class: &JobClass,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Box<dyn Delivery>>, QueueError> {
        let q = self.class_queues(class).await?;
        let deleter = self.deleter(&q.work);
        let out = self
            .client
            .receive_message()
            .queue_url(&*q.work)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .wait_time_seconds(secs(wait.min(self.cfg.max_wait)))
            .visibility_timeout(secs(self.cfg.lease))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| classify(&format!("ReceiveMessage {}", q.work), e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| self.delivery(&q, &deleter, m))
            .collect())
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
            .attributes(&q.dlq, &[QueueAttributeName::ApproximateNumberOfMessages])
            .await?;
        let n = |m: &HashMap<QueueAttributeName, String>, k: QueueAttributeName| {
            m.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        Ok(Depth {
            ready: n(&work, QueueAttributeName::ApproximateNumberOfMessages),
            // Leased jobs and retries waiting out their backoff are both "not visible" to SQS.
            in_flight: Some(n(
                &work,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )),
            delayed: n(
                &work,
                QueueAttributeName::ApproximateNumberOfMessagesDelayed,
            ),
            dlq: n(&dlq, QueueAttributeName::ApproximateNumberOfMessages),
            // Only CloudWatch knows the age of the oldest message; the scaler reads it from the DB instead.
            oldest_age_seconds: None,
        })
    }

    async fn dead_letters(
        &self,
        class: &JobClass,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let q = self.class_queues(class).await?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        // Peek: receive with visibility 0 so the messages stay available; a few rounds because SQS samples
        // a subset of its servers on each receive.
        for _ in 0..5 {
            if out.len() >= limit {
                break;
            }
            let got = self
                .client
                .receive_message()
                .queue_url(&*q.dlq)
                .max_number_of_messages(i32::try_from(limit.clamp(1, 10)).unwrap_or(10))
                .visibility_timeout(0)
                .wait_time_seconds(0)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| classify(&format!("ReceiveMessage {}", q.dlq), e))?;
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let id = m.message_id().unwrap_or_default().to_owned();
                if out.len() >= limit || !seen.insert(id) {
                    continue;
                }
                let reason = m
                    .message_attributes()
                    .and_then(|a| a.get(REASON_ATTR))
                    .and_then(|v| v.string_value())
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        format!(
                            "moved by the SQS redrive policy after {} receives without an outcome \
                             (worker crash loop?)",
                            self.cfg.max_receive_count
                        )
                    });
                out.push(DeadLetter {
                    body: m.body().unwrap_or_default().to_owned(),
                    reason,
                });
            }
        }
        Ok(out)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.client
            .list_queues()
            .queue_name_prefix(&self.cfg.prefix)
            .max_results(1)
            .send()
            .await
            .map_err(|e| classify("ListQueues", e))?;
        Ok(())
    }
}
