//! Builds the backends a [`Settings`] names.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{QueueUrl, Settings, StorageUrl};
use crate::db::{DbError, Records};
use crate::queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use crate::queue::rabbitmq::{RabbitConfig, RabbitQueue};
use crate::queue::sqs::{SqsConfig, SqsQueue};
use crate::queue::{JobClass, JobQueue, QueueAdmin, QueueError, SharedAdmin, SharedQueue};
use crate::storage::local::LocalStore;
use crate::storage::s3::{S3Config, S3Store};
use crate::storage::{SharedStore, StoreError};

/// Connects the queue (the hot path). `prefetch` bounds unacked RabbitMQ deliveries per consumer.
pub async fn queue(s: &Settings, prefetch: u16) -> Result<SharedQueue, QueueError> {
    queue_with(s, prefetch, BTreeMap::new()).await
}

/// [`queue`] with a RabbitMQ prefetch per class (a worker's concurrency of that class), so a class never
/// holds more messages than it can run; classes not named get `prefetch`.
pub async fn queue_with(
    s: &Settings,
    prefetch: u16,
    class_prefetch: BTreeMap<String, u16>,
) -> Result<SharedQueue, QueueError> {
    Ok(queue_and_admin_with(s, prefetch, class_prefetch).await?.0)
}

/// Connects the queue's admin side alone (`queues setup`, the operators' DLQ commands). Declares nothing.
pub async fn admin(s: &Settings) -> Result<SharedAdmin, QueueError> {
    Ok(queue_and_admin(s, 1).await?.1)
}

/// Connects the queue once and hands out both sides of it: the hot path and the admin. Declares nothing.
pub async fn queue_and_admin(
    s: &Settings,
    prefetch: u16,
) -> Result<(SharedQueue, SharedAdmin), QueueError> {
    queue_and_admin_with(s, prefetch, BTreeMap::new()).await
}

/// Both sides of one backend value: one connection, two trait objects.
fn both<T: JobQueue + QueueAdmin + 'static>(backend: T) -> (SharedQueue, SharedAdmin) {
    let backend = Arc::new(backend);
    (backend.clone(), backend)
}

/// [`queue_and_admin`] with a RabbitMQ prefetch per class (see [`queue_with`]).
pub async fn queue_and_admin_with(
    s: &Settings,
    prefetch: u16,
    class_prefetch: BTreeMap<String, u16>,
) -> Result<(SharedQueue, SharedAdmin), QueueError> {
    Ok(match &s.queue {
        QueueUrl::Embedded => both(
            EmbeddedQueue::open(
                &s.data_dir.join("queue.db"),
                EmbeddedConfig {
                    lease: s.worker.lease,
                    max_receives: s.embedded_max_receives,
                    ..EmbeddedConfig::default()
                },
            )
            .await?,
        ),
        QueueUrl::Amqp(url) => both(
            RabbitQueue::connect(RabbitConfig {
                url: url.clone(),
                prefix: s.prefix.clone(),
                prefetch: prefetch.max(1),
                class_prefetch,
                retry_tiers: s.rabbit.retry_tiers.clone(),
                delivery_limit: s.rabbit.delivery_limit,
                management_url: s.rabbit.management_url.clone(),
            })
            .await?,
        ),
        QueueUrl::Sqs(url) => {
            let mut cfg = SqsConfig::from_url(url, &s.prefix)
                .map_err(|e| QueueError::Config(format!("--queue: {e}")))?;
            cfg.lease = s.worker.lease;
            cfg.max_attempts = s.worker.max_attempts;
            both(SqsQueue::connect(cfg).await?)
        }
    })
}

/// Connects the queue and declares the standard classes (idempotent).
pub async fn queue_declared(s: &Settings, prefetch: u16) -> Result<SharedQueue, QueueError> {
    queue_declared_with(s, prefetch, BTreeMap::new()).await
}

/// [`queue_declared`] with a prefetch per class (see [`queue_with`]).
pub async fn queue_declared_with(
    s: &Settings,
    prefetch: u16,
    class_prefetch: BTreeMap<String, u16>,
) -> Result<SharedQueue, QueueError> {
    let (queue, admin) = queue_and_admin_with(s, prefetch, class_prefetch).await?;
    admin.declare(&standard_classes()).await?;
    Ok(queue)
}

/// [`queue_and_admin`], with the standard classes declared (idempotent).
pub async fn queue_and_admin_declared(
    s: &Settings,
    prefetch: u16,
) -> Result<(SharedQueue, SharedAdmin), QueueError> {
    let (queue, admin) = queue_and_admin(s, prefetch).await?;
    admin.declare(&standard_classes()).await?;
    Ok((queue, admin))
}

/// The queues every deployment declares: the standard classes and their bulk lanes.
pub fn standard_classes() -> Vec<JobClass> {
    JobClass::STANDARD
        .iter()
        .chain(JobClass::BULK_LANES.iter())
        .map(|c| JobClass::new(c).expect("standard class names are valid"))
        .collect()
}

/// Connects the object store.
pub async fn store(s: &Settings) -> Result<SharedStore, StoreError> {
    Ok(match &s.storage {
        StorageUrl::Local(root) => Arc::new(LocalStore::open(root)?),
        StorageUrl::S3(url) => {
            let cfg = S3Config::from_url(url).map_err(StoreError::Refused)?;
            Arc::new(S3Store::connect(cfg).await?)
        }
    })
}

/// Connects the database and applies pending migrations unless `--no-migrate`.
pub async fn records(s: &Settings) -> Result<Records, DbError> {
    let r = Records::connect(&s.db, s.db_read.as_ref()).await?;
    if s.migrate {
        r.migrate().await?;
    }
    Ok(r)
}
