//! A look through one DLQ. SQS has no peek and no lookup by id: a scan receives messages with a short
//! visibility timeout ([`HOLD`]), so each receive returns messages it has not returned yet, removes the ones
//! the operation is about, and on close sets the visibility of every other one back to 0.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName,
};
use aws_sdk_sqs::Client;
use chrono::{DateTime, Utc};

use super::errors::classify;
use super::{secs, REASON_ATTR};
use crate::queue::{DeadLetter, QueueError};

/// How long a scan holds the messages it received. A scan that dies without closing leaves them invisible
/// this long; a scan that runs longer than this meets its first messages again and stops there.
pub(super) const HOLD: Duration = Duration::from_secs(60);

/// One scan of one DLQ.
pub(super) struct DlqScan {
    client: Client,
    url: Arc<str>,
    buffered: VecDeque<Message>,
    /// Receipts held and not removed: handed back on close.
    held: HashSet<String>,
    /// Message ids returned so far.
    seen: HashSet<String>,
    done: bool,
}

impl DlqScan {
    pub fn new(client: Client, url: Arc<str>) -> DlqScan {
        DlqScan {
            client,
            url,
            buffered: VecDeque::new(),
            held: HashSet::new(),
            seen: HashSet::new(),
            done: false,
        }
    }

    /// The next message not returned yet, or `None` when the DLQ has nothing more visible.
    pub async fn next(&mut self) -> Result<Option<Message>, QueueError> {
        loop {
            if let Some(m) = self.buffered.pop_front() {
                return Ok(Some(m));
            }
            if self.done {
                return Ok(None);
            }
            // A long poll (1 s) asks every SQS server, so an empty answer means the DLQ has nothing visible;
            // a short poll samples a few servers and can come back empty from a queue that is not.
            let out = self
                .client
                .receive_message()
                .queue_url(&*self.url)
                .max_number_of_messages(10)
                .visibility_timeout(secs(HOLD))
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| classify(&format!("ReceiveMessage {}", self.url), e))?;
            let messages = out.messages.unwrap_or_default();
            let mut fresh = 0;
            for m in messages {
                if let Some(r) = m.receipt_handle() {
                    self.held.insert(r.to_owned());
                }
                if self
                    .seen
                    .insert(m.message_id().unwrap_or_default().to_owned())
                {
                    fresh += 1;
                    self.buffered.push_back(m);
                }
            }
            // Nothing, or only messages met before (their hold ran out): the whole DLQ has been seen.
            self.done = fresh == 0;
        }
    }

    /// Deletes received messages from the DLQ; returns how many SQS deleted.
    pub async fn remove(&mut self, messages: &[Message]) -> Result<u64, QueueError> {
        let mut deleted = 0;
        for chunk in messages.chunks(10) {
            let mut req = self.client.delete_message_batch().queue_url(&*self.url);
            for (i, m) in chunk.iter().enumerate() {
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .map_err(|e| QueueError::Backend(e.to_string()))?;
                req = req.entries(entry);
            }
            let out = req
                .send()
                .await
                .map_err(|e| classify(&format!("DeleteMessageBatch {}", self.url), e))?;
            if let Some(f) = out.failed().first() {
                return Err(QueueError::Backend(format!(
                    "SQS DeleteMessageBatch {}: {}: {}",
                    self.url,
                    f.code(),
                    f.message().unwrap_or_default()
                )));
            }
            for m in chunk {
                self.held.remove(m.receipt_handle().unwrap_or_default());
            }
            deleted += out.successful().len() as u64;
        }
        Ok(deleted)
    }

    /// Hands back every message held and not removed (visibility 0). On failure they come back when
    /// [`HOLD`] ends.
    pub async fn close(self) {
        let held: Vec<String> = self.held.into_iter().collect();
        for chunk in held.chunks(10) {
            let mut req = self
                .client
                .change_message_visibility_batch()
                .queue_url(&*self.url);
            for (i, r) in chunk.iter().enumerate() {
                if let Ok(entry) = ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .visibility_timeout(0)
                    .build()
                {
                    req = req.entries(entry);
                }
            }
            if let Err(e) = req.send().await {
                let e = classify(&format!("ChangeMessageVisibilityBatch {}", self.url), e);
                tracing::warn!(error = %e, "could not hand dead letters back; they return after {HOLD:?}");
            }
        }
    }
}

/// A DLQ message as an operator sees it. Ours carry the reason, and were sent to the DLQ when they were
/// dead-lettered, so `SentTimestamp` is that time; messages SQS's own redrive moved keep the send time of the
/// work-queue message, so their time is unknown.
pub(super) fn dead_letter(m: &Message, max_receive_count: u32) -> DeadLetter {
    let ours = m
        .message_attributes()
        .and_then(|a| a.get(REASON_ATTR))
        .and_then(|v| v.string_value());
    let (reason, at) = match ours {
        Some(r) => (r.to_owned(), sent_at(m)),
        None => (
            format!(
                "moved by the SQS redrive policy after {max_receive_count} receives without an outcome \
                 (worker crash loop?)"
            ),
            None,
        ),
    };
    DeadLetter::from_body(m.body().unwrap_or_default().as_bytes(), reason, at)
}

fn sent_at(m: &Message) -> Option<DateTime<Utc>> {
    m.attributes()?
        .get(&MessageSystemAttributeName::SentTimestamp)?
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
}
