//! What each job kind does, and the media rules around them. A job returns `Ok` or a [`JobError`] whose
//! variant carries the retry intent; [`MediaHandler`] turns that into the runtime's [`crate::runtime::Outcome`]
//! (failing the media and warming its cache entry where the job ends for good). The [`run_reaper`] fails or
//! re-enqueues media whose job was lost.

mod handler;
mod media;
mod notify;
mod pauses;
mod progress;
mod reaper;
mod retention;
mod retire;
pub mod slots;
mod upload;
mod validate;
mod warm;

use std::path::Path;
use std::time::Duration;

use mediafleet_proto::{Envelope, ErrorCode, Job, Profiles};
use mediafleet_workers::{Limits, MediaError};

pub use handler::{retry_delay, MediaHandler, RetryPolicy};
pub use media::{longest_media_job, TRANSCODE_SECONDS_PER_MEDIA_SECOND};
pub use pauses::watch_pauses;
pub use reaper::run_reaper;
pub use retention::{retention_pass, run_retention, RetentionPass};
pub use warm::{changes_media_status, enqueue_warm};

use crate::cache::MediaCache;
use crate::db::{DbError, Records};
use crate::queue::{QueueError, SharedQueue};
use crate::sandbox::{Sandbox, SandboxError};
use crate::storage::{SharedStore, StoreError};

/// How a job failed, and so what happens to its message.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The media itself is bad (corrupt, unsupported, over a limit): mark it failed and ack. Never retried.
    #[error("{0}")]
    Permanent(MediaError),
    /// Something around the media failed (network, 5xx, DB down): retry later, in the queue.
    #[error("{code}: {message}")]
    Transient {
        /// The code the media gets if the retries run out.
        code: ErrorCode,
        /// What happened.
        message: String,
    },
    /// The infrastructure around the job (storage, database, broker) does not answer. Not the media's fault:
    /// the job waits it out with backoff for up to the outage budget, without spending an attempt.
    #[error("{code}: {message}")]
    Outage {
        /// The code the media gets if the outage outlasts the budget.
        code: ErrorCode,
        /// What happened (for logs; clients get one readable line).
        message: String,
        /// What was unavailable, for that line: `storage`, `the database`, `the queue`.
        what: &'static str,
    },
    /// The message cannot be understood: dead-letter it with this reason.
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl JobError {
    /// A transient error with a code.
    pub fn transient(code: ErrorCode, message: impl std::fmt::Display) -> Self {
        JobError::Transient {
            code,
            message: message.to_string(),
        }
    }
}

impl From<DbError> for JobError {
    fn from(e: DbError) -> Self {
        if e.is_transient() {
            return JobError::Outage {
                code: ErrorCode::Internal,
                message: e.to_string(),
                what: "the database",
            };
        }
        // The statement, not the server, is at fault: repeating it fails the same way, so the media fails now
        // with `internal` (and the error is logged loudly and counted) instead of waiting out retries.
        tracing::error!(error = %e, "database refused a statement; failing the job as internal");
        JobError::Permanent(MediaError::new(
            ErrorCode::Internal,
            "internal error while recording the result (see worker log)",
        ))
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(k) => JobError::Permanent(MediaError::new(
                ErrorCode::StorageUnavailable,
                format!("original {k} is missing from storage"),
            )),
            StoreError::Changed(k) => JobError::Permanent(MediaError::new(
                ErrorCode::CorruptMedia,
                format!("original {k} was replaced after its upload was completed"),
            )),
            StoreError::InvalidKey(k) => {
                JobError::Invalid(format!("object key {k:?} is not a valid key"))
            }
            StoreError::Unavailable(m) => JobError::Outage {
                code: ErrorCode::StorageUnavailable,
                message: m,
                what: "storage",
            },
            // A full scratch disk is the host's trouble: wait it out like an outage.
            StoreError::Io(e) if e.raw_os_error() == Some(libc::ENOSPC) => JobError::Outage {
                code: ErrorCode::Internal,
                message: format!("scratch disk full: {e}"),
                what: "the scratch disk",
            },
            other => JobError::transient(ErrorCode::StorageUnavailable, other),
        }
    }
}

impl From<QueueError> for JobError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Unavailable(m) => JobError::Outage {
                code: ErrorCode::Internal,
                message: m,
                what: "the queue",
            },
            other => JobError::transient(ErrorCode::Internal, other),
        }
    }
}

impl From<SandboxError> for JobError {
    fn from(e: SandboxError) -> Self {
        JobError::transient(ErrorCode::Internal, e)
    }
}

/// Everything a job may use.
pub struct JobContext {
    /// The database.
    pub records: Records,
    /// The object store.
    pub store: SharedStore,
    /// The queue (jobs may enqueue follow-up jobs).
    pub queue: SharedQueue,
    /// Where media work runs.
    pub sandbox: Sandbox,
    /// Key and queue prefix.
    pub prefix: String,
    /// Profiles by name.
    pub profiles: Profiles,
    /// Media limits.
    pub limits: Limits,
    /// Wall-clock limit of one job.
    pub job_timeout: Duration,
    /// The media object cache, when `--cache` names one (`cache.warm` jobs write to it).
    pub cache: Option<MediaCache>,
    /// Base for absolute URLs in cached objects (must match the api's `--public-url`).
    pub public_url: Option<String>,
    /// Webhook secret and callback policy (`notify.webhook` jobs).
    pub webhooks: crate::webhook::WebhookPolicy,
    /// Bytes this worker's jobs may hold in scratch together.
    pub scratch: std::sync::Arc<crate::runtime::budget::ByteBudget>,
    /// Media children at a time, per class (see [`slots`]).
    pub media_slots: slots::MediaSlots,
}

/// Scratch a media job reserves for an original of `bytes`: the original, and room for renditions as large
/// as three times it (a transcode's MP4 and HLS ladder of a well-compressed original), plus 1 MiB. A job
/// whose outputs outgrow that anyway meets a full disk, which waits like an outage.
pub fn scratch_need(bytes: u64) -> u64 {
    bytes.saturating_mul(4).saturating_add(1 << 20)
}

/// What a job did, for logs and attempt records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// The work was done.
    Completed,
    /// Nothing to do (the media had already ended, e.g. a duplicate delivery).
    Skipped,
}

/// Runs one job, delivered from `class`.
pub async fn run(
    ctx: &JobContext,
    class: &crate::queue::JobClass,
    env: &Envelope,
    scratch: &Path,
) -> Result<Done, JobError> {
    match env.job().map_err(|e| JobError::Invalid(e.to_string()))? {
        Job::MediaProcess(p) => media::process(ctx, class, env, &p, scratch).await,
        Job::CacheWarm(w) => warm::warm(ctx, env, &w).await,
        Job::MediaValidate(v) => validate::validate(ctx, env, &v).await,
        Job::NotifyWebhook(n) => notify::notify(ctx, env, &n).await,
    }
}
