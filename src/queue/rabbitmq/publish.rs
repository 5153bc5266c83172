//! Confirmed, persistent, mandatory publishing with a short retry on a fresh channel or connection.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::{ExponentialBuilder, Retryable};
use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};

use super::link::{unavailable, Link};
use crate::queue::QueueError;

/// How long to wait for the broker's confirm (a broker under a memory alarm blocks publishers).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes `body` to `exchange` with `key` and waits for the broker's confirm.
///
/// A failed attempt is retried twice: the link hands out a new channel (or connection) when the old one
/// died. An unroutable message (no queue bound: the class was never declared) is not retried.
pub(super) async fn publish(
    link: &Link,
    exchange: &str,
    key: &str,
    body: &[u8],
    headers: FieldTable,
) -> Result<(), QueueError> {
    (|| publish_once(link, exchange, key, body, headers.clone()))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(1))
                .with_max_times(2),
        )
        .when(|e| !matches!(e, QueueError::Config(_)))
        .notify(
            |e, d| tracing::warn!(error = %e, retry_in = ?d, "rabbitmq: publish failed, retrying"),
        )
        .await
}

async fn publish_once(
    link: &Link,
    exchange: &str,
    key: &str,
    body: &[u8],
    headers: FieldTable,
) -> Result<(), QueueError> {
    let ch = link.publisher().await?;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_timestamp(secs)
        .with_headers(headers);
    let opts = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let confirm = ch
        .basic_publish(exchange.into(), key.into(), opts, body, props)
        .await
        .map_err(|e| unavailable(&format!("publishing to {exchange}/{key}"), &e))?;
    let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
        .await
        .map_err(|_| {
            QueueError::NotConfirmed(format!(
                "{exchange}/{key}: no confirm within {CONFIRM_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| unavailable(&format!("confirm of {exchange}/{key}"), &e))?;
    check(exchange, key, confirmation)
}

/// What a publisher confirm means for us.
fn check(exchange: &str, key: &str, confirmation: Confirmation) -> Result<(), QueueError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => Err(QueueError::Config(format!(
            "no queue is bound to {exchange} with key {key}: declare the class (mediafleet queues setup)"
        ))),
        Confirmation::Nack(None) => Err(QueueError::NotConfirmed(format!("the broker nacked {exchange}/{key}"))),
        Confirmation::NotRequested => {
            Err(QueueError::NotConfirmed("publisher confirms are not enabled on the channel".into()))
        }
    }
}

/// Publishes every body to `exchange` with `key`, pipelined on one channel (all publishes go out, then all
/// confirms are awaited), so a batch costs about one round trip instead of one per message. On error some
/// bodies may have been published; the caller publishes the whole batch again (at-least-once).
pub(super) async fn publish_many(
    link: &Link,
    exchange: &str,
    key: &str,
    bodies: &[Vec<u8>],
) -> Result<(), QueueError> {
    (|| publish_many_once(link, exchange, key, bodies))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(1))
                .with_max_times(2),
        )
        .when(|e| !matches!(e, QueueError::Config(_)))
        .notify(|e, d| {
            tracing::warn!(error = %e, retry_in = ?d, "rabbitmq: batch publish failed, retrying")
        })
        .await
}

async fn publish_many_once(
    link: &Link,
    exchange: &str,
    key: &str,
    bodies: &[Vec<u8>],
) -> Result<(), QueueError> {
    let ch = link.publisher().await?;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut confirms = Vec::with_capacity(bodies.len());
    for body in bodies {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_timestamp(secs)
            .with_headers(FieldTable::default());
        let opts = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        confirms.push(
            ch.basic_publish(exchange.into(), key.into(), opts, body, props)
                .await
                .map_err(|e| unavailable(&format!("publishing to {exchange}/{key}"), &e))?,
        );
    }
    let all = futures::future::join_all(confirms);
    let results = tokio::time::timeout(CONFIRM_TIMEOUT, all)
        .await
        .map_err(|_| {
            QueueError::NotConfirmed(format!(
                "{exchange}/{key}: no confirms within {CONFIRM_TIMEOUT:?}"
            ))
        })?;
    for r in results {
        let confirmation =
            r.map_err(|e| unavailable(&format!("confirm of {exchange}/{key}"), &e))?;
        check(exchange, key, confirmation)?;
    }
    Ok(())
}
