//! Amazon SQS (and compatible servers such as moto) as the job queue.
//!
//! - One standard queue and one DLQ per class, `{prefix}-{class}` and `{prefix}-{class}-dlq`, joined by a
//!   redrive policy whose `maxReceiveCount` is far above our own attempt limit: it only catches crash loops.
//!   Permanent failures and exhausted retries are moved to the DLQ by us, with the reason as an attribute.
//! - A lease is the visibility timeout. Receives ask for the configured lease; the worker heartbeat extends it
//!   (`ChangeMessageVisibility`) and never past SQS's 12 h cap.
//! - A transient failure (or an outage wait) sends the body the runtime passes, the envelope with its attempt
//!   bumped or its outage clock, as a new message with `DelaySeconds` set to the backoff (at most 15 min) and
//!   the received message's attributes, then deletes the received message. The retry waits in SQS, and the
//!   new message's receive count starts at 1, so retries never move a job towards the redrive's
//!   `maxReceiveCount`. A release is the same with the body unchanged and no delay. While one message is
//!   redelivered (a lost lease), the runtime's attempt is the envelope's plus `ApproximateReceiveCount - 1`.
//! - Acks go through a per-queue batcher that deletes up to 10 receipts per `DeleteMessageBatch`.
//! - `declare` (every start) only verifies the queues and their redrive, because production roles are often not
//!   allowed to create queues; `setup` (`mediafleet queues setup`) creates or converges them (`topology`).
//! - The DLQ operations (`admin`) scan the DLQ with receives that hold messages under a short visibility
//!   timeout and hand back what they do not remove.

mod admin;
mod config;
mod delivery;
mod errors;
mod scan;
mod topology;

use std::collections::HashMap;
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

use super::{Delivery, JobClass, JobQueue, QueueError, Received};

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

/// SQS-backed [`JobQueue`] and [`crate::queue::QueueAdmin`].
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
            .http_client(crate::aws_http::https_client())
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

    async fn receive(&self, class: &JobClass, max: usize, wait: Duration) -> Received {
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
