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
//! Publishing and the sweeps (2 and 3) run as two tasks: a sweep waits on S3 and the DB, and one hung call
//! there must never stop jobs from reaching the queue. A publish that fails because the broker is unavailable
//! is retried with backoff for as long as that lasts; one that fails for a reason of the row's own (a refused
//! or unroutable message) is parked after [`PARK_AFTER`] tries, with its error, and a media waiting on it is
//! failed as `internal`, so nothing waits forever on a job that cannot be sent.
//!
//! The api wakes the relay right after it commits, so a job usually reaches the queue within milliseconds;
//! the poll interval only bounds the delay for rows written elsewhere (workers, other processes).
//!
//! A publishing pass sets `mediafleet_outbox_lag_seconds` (the age of the oldest row still waiting) when the
//! last reading is a poll interval old, and each row of a failed publish counts once in
//! `mediafleet_relay_publish_failures_total`.

use std::sync::Arc;
use std::time::Duration;

use mediafleet_proto::envelope::NotifyWebhook;
use mediafleet_proto::{Envelope, ErrorCode, Job, JobKind};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::db::{OutboxJob, Records};
use crate::queue::{JobClass, QueueError, SharedQueue};
use crate::storage::SharedStore;

/// Rows claimed per round.
const BATCH: i64 = 64;
/// How long a claim holds a row (a publish takes milliseconds; this covers a stalled broker).
const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// Sweeps run every this many poll intervals.
const SWEEP_EVERY: u32 = 5;
/// Publish tries, for a reason other than a broker outage, before a row is parked.
pub const PARK_AFTER: i64 = 10;

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
        let sweeper = {
            let (relay, shutdown) = (self.clone(), shutdown.clone());
            tokio::spawn(async move { relay.run_sweeps(shutdown).await })
        };
        // The lag is read at most once per interval: a pass woken by every upload's commit must not pay a
        // second statement for a gauge scraped every few seconds.
        let mut lag_read: Option<tokio::time::Instant> = None;
        loop {
            let busy = match self.publish_due().await {
                Ok(n) => n as i64 == BATCH,
                Err(e) => {
                    warn!(error = %e, "relay: cannot read the outbox");
                    false
                }
            };
            if lag_read.is_none_or(|t| t.elapsed() >= self.interval) {
                self.record_lag().await;
                lag_read = Some(tokio::time::Instant::now());
            }
            if busy {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
        let _ = sweeper.await;
    }

    /// The sweeps, every [`SWEEP_EVERY`] intervals, in a task of their own.
    async fn run_sweeps(&self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.sweep() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.interval * SWEEP_EVERY) => {}
            }
        }
    }

    /// Sets [`OUTBOX_LAG`](crate::scale::metrics::OUTBOX_LAG) from the oldest row still waiting; a failed
    /// read leaves the last value (the next pass reads again).
    async fn record_lag(&self) {
        match self.records.oldest_unsent_outbox_ms().await {
            Ok(oldest) => {
                let lag = oldest.map_or(0.0, |t| (crate::db::now_ms() - t).max(0) as f64 / 1000.0);
                crate::scale::metrics::METRICS.outbox_lag.set(lag);
            }
            Err(e) => debug!(error = %e, "relay: cannot read the outbox lag"),
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
            if result.is_err() {
                crate::scale::metrics::METRICS
                    .relay_publish_failures
                    .inc_by(batch.len() as f64);
            }
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
                    Err(e)
                        if !matches!(e, QueueError::Unavailable(_))
                            && row.attempts >= PARK_AFTER =>
                    {
                        self.park(row, &e.to_string()).await;
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

    /// Parks a row that keeps failing, and fails the media that waits on it.
    async fn park(&self, row: &crate::db::OutboxRow, error: &str) {
        error!(outbox_id = %row.id, class = %row.class, attempts = row.attempts, %error, "publish keeps failing; parking the outbox row");
        if let Err(e) = self.records.park_outbox(&row.id, error).await {
            warn!(outbox_id = %row.id, error = %e, "could not park; it will be tried again");
            return;
        }
        crate::scale::metrics::outbox_parked();
        let Ok(env) = Envelope::parse(row.body.as_bytes()) else {
            return;
        };
        if matches!(
            JobKind::parse(&env.kind),
            Some(JobKind::MediaProcess | JobKind::MediaValidate)
        ) {
            let _ = self
                .records
                .fail(
                    &env.media_id.to_string(),
                    ErrorCode::Internal.as_str(),
                    "its job could not be enqueued (parked in the outbox; see the api log)",
                )
                .await;
        }
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
        if !self.webhooks_enabled {
            // Nothing to send for any media: the announcements are only recorded.
            self.records.announce_all_without_jobs().await?;
            return Ok(());
        }
        let mut wrote = false;
        for (id, status, version, callback, traceparent) in self.records.unannounced(BATCH).await? {
            let url = callback.or_else(|| self.webhook_url.clone());
            let job = match (url, uuid::Uuid::parse_str(&id)) {
                (Some(url), Ok(media_id)) if self.webhooks_enabled => {
                    let mut env = Envelope::new(
                        media_id,
                        &Job::NotifyWebhook(NotifyWebhook {
                            url,
                            status,
                            version,
                        }),
                    );
                    // The webhook joins the trace of the request that made the media (the relay's own
                    // sweep has none).
                    if let Some(tp) = traceparent.filter(|t| crate::trace::valid(t)) {
                        env.trace.insert(
                            crate::trace::TRACEPARENT.to_owned(),
                            crate::trace::next_hop(&tp),
                        );
                    }
                    Some(OutboxJob {
                        class: "notify".into(),
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

    /// Expires direct uploads never completed. The row is claimed first (guarded on "still uncompleted"), then
    /// the objects go, so a `complete` racing the sweep either wins and keeps its object, or finds the media
    /// `deleted`; a failed removal is retried by the next sweep.
    pub async fn expire(&self) -> Result<(), crate::db::DbError> {
        for (id, key, upload_id) in self.records.expired_uploads(BATCH).await? {
            if !self
                .records
                .claim_expired_upload(&id, "the direct upload expired before it was completed")
                .await?
            {
                debug!(media_id = %id, "completed before it could expire; kept");
                continue;
            }
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
            self.records.expired_upload_removed(&id).await?;
            info!(media_id = %id, "expired an upload that was never completed");
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
