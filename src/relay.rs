//! The relay: publishes outbox rows to the queue, and runs the sweeps that feed the outbox.
//!
//! It runs inside `api` and `serve`, in as many processes as there are (claims are leased and, on Postgres,
//! `SKIP LOCKED`). Each round:
//! 1. claims due outbox rows, publishes each with the broker's confirm, then marks it sent; a failed publish
//!    goes back with exponential backoff (capped at a minute) and its error recorded;
//! 2. announces media that reached `ready` or `failed` since their last announcement: a `notify.webhook`
//!    row when a callback applies, in the same transaction that records the announcement;
//! 3. expires direct uploads never completed (aborts the multipart upload, deletes the object, marks the
//!    media `deleted`), and purges rows sent more than a day ago.
//!
//! The api wakes the relay right after it commits, so a job usually reaches the queue within milliseconds;
//! the poll interval only bounds the delay for rows written elsewhere (workers, other processes).

use std::sync::Arc;
use std::time::Duration;

use mediafleet_proto::envelope::NotifyWebhook;
use mediafleet_proto::{Envelope, Job};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::db::{OutboxJob, Records};
use crate::queue::{JobClass, SharedQueue};
use crate::storage::SharedStore;

/// Rows claimed per round.
const BATCH: i64 = 64;
/// How long a claim holds a row (a publish takes milliseconds; this covers a stalled broker).
const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// Sweeps run every this many rounds.
const SWEEP_EVERY: u32 = 5;

/// What the relay needs.
#[derive(Clone)]
pub struct Relay {
    /// The database.
    pub records: Records,
    /// The queue.
    pub queue: SharedQueue,
    /// The store (expired uploads).
    pub store: SharedStore,
    /// Poll interval when nobody wakes it.
    pub interval: Duration,
    /// Woken by the api after each commit that wrote outbox rows.
    pub wake: Arc<Notify>,
    /// The global callback URL, if any.
    pub webhook_url: Option<String>,
    /// Whether webhooks are configured at all (a secret is set).
    pub webhooks_enabled: bool,
}

/// Backoff of a failed publish: 1 s, 2 s, 4 s, … capped at 60 s.
pub fn publish_backoff(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 7) - 1).unwrap_or(6);
    Duration::from_secs(2u64.pow(exp)).min(Duration::from_secs(60))
}

impl Relay {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        info!(interval = ?self.interval, "outbox relay running");
        let mut round = 0u32;
        loop {
            let busy = match self.publish_due().await {
                Ok(n) => n as i64 == BATCH,
                Err(e) => {
                    warn!(error = %e, "relay: cannot read the outbox");
                    false
                }
            };
            if round.is_multiple_of(SWEEP_EVERY) {
                self.sweep().await;
            }
            round = round.wrapping_add(1);
            if busy {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// Publishes every due row once, a batch per class (SQS sends 10 per request); returns how many were
    /// claimed.
    pub async fn publish_due(&self) -> Result<usize, crate::db::DbError> {
        let rows = self.records.claim_outbox(BATCH, CLAIM_LEASE).await?;
        let mut by_class: std::collections::BTreeMap<&str, Vec<&crate::db::OutboxRow>> =
            std::collections::BTreeMap::new();
        for row in &rows {
            by_class.entry(row.class.as_str()).or_default().push(row);
        }
        for (class, batch) in by_class {
            let bodies: Vec<Vec<u8>> = batch.iter().map(|r| r.body.as_bytes().to_vec()).collect();
            let result = match JobClass::new(class) {
                Ok(class) => self.queue.publish_batch(&class, &bodies).await,
                Err(e) => Err(e),
            };
            for row in batch {
                match &result {
                    Ok(()) => {
                        debug!(outbox_id = %row.id, class = %row.class, "published");
                        if let Err(e) = self.records.mark_sent(&row.id).await {
                            // Published but not marked: the row is published again after its lease, and the
                            // job is idempotent, so the effect still happens once.
                            warn!(outbox_id = %row.id, error = %e, "published but could not mark sent");
                        }
                    }
                    Err(e) => {
                        // Part of the batch may have gone out; all of it is published again (at-least-once).
                        let delay = publish_backoff(row.attempts);
                        warn!(outbox_id = %row.id, class = %row.class, error = %e, retry_in = ?delay, "publish failed");
                        let _ = self
                            .records
                            .release_outbox(&row.id, delay, &e.to_string())
                            .await;
                    }
                }
            }
        }
        Ok(rows.len())
    }

    /// The announcement, expiry and purge sweeps; errors are logged and retried next time.
    pub async fn sweep(&self) {
        if let Err(e) = self.announce().await {
            warn!(error = %e, "relay: announce sweep failed");
        }
        if let Err(e) = self.expire().await {
            warn!(error = %e, "relay: expiry sweep failed");
        }
        if let Err(e) = self.records.purge_sent(Duration::from_secs(86_400)).await {
            warn!(error = %e, "relay: purge failed");
        }
    }

    async fn announce(&self) -> Result<(), crate::db::DbError> {
        let mut wrote = false;
        for (id, status, version, callback) in self.records.unannounced(BATCH).await? {
            let url = callback.or_else(|| self.webhook_url.clone());
            let job = match (url, uuid::Uuid::parse_str(&id)) {
                (Some(url), Ok(media_id)) if self.webhooks_enabled => {
                    let env = Envelope::new(
                        media_id,
                        &Job::NotifyWebhook(NotifyWebhook {
                            url,
                            status,
                            version,
                        }),
                    );
                    Some(OutboxJob {
                        class: crate::routing::class_for(
                            mediafleet_proto::JobKind::NotifyWebhook,
                            None,
                            None,
                        )
                        .into(),
                        body: env.to_bytes(),
                        media_id: Some(id.clone()),
                    })
                }
                _ => None,
            };
            wrote |= job.is_some();
            self.records.announce(&id, version, job.as_ref()).await?;
        }
        if wrote {
            self.wake.notify_one();
        }
        Ok(())
    }

    async fn expire(&self) -> Result<(), crate::db::DbError> {
        for (id, key, upload_id) in self.records.expired_uploads(BATCH).await? {
            if let (Some(upload_id), Some(direct)) = (&upload_id, self.store.direct_uploads()) {
                if let Err(e) = direct.abort_multipart(&key, upload_id).await {
                    warn!(media_id = %id, error = %e, "cannot abort an expired multipart upload; will retry");
                    continue;
                }
            }
            if let Err(e) = self.store.delete(&key).await {
                warn!(media_id = %id, error = %e, "cannot delete an expired upload; will retry");
                continue;
            }
            if self
                .records
                .mark_deleted(
                    &id,
                    Some("the direct upload expired before it was completed"),
                )
                .await?
                .is_some()
            {
                info!(media_id = %id, "expired an upload that was never completed");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::publish_backoff;
    use std::time::Duration;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(publish_backoff(1), Duration::from_secs(1));
        assert_eq!(publish_backoff(3), Duration::from_secs(4));
        assert_eq!(publish_backoff(50), Duration::from_secs(60));
    }
}
