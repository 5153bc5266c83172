//! The `/ops` dashboard's buttons, run by the command line's own code: Replay is `ops replay ID`
//! ([`super::ops_failed::requeue_all`]), Redrive is `ops dlq redrive --class C` ([`super::ops_dlq::redrive`]).
//! The api defines what it needs ([`OpsActions`]); `serve` and `api` hand it this, so the arrows still point
//! down (the api never imports the command line).

use crate::api::{ApiError, OpsActions, Redriven, Replayed, SkippedMedia};
use crate::config::Settings;
use crate::db::Records;
use crate::queue::{JobClass, SharedAdmin};

/// Dead letters one Redrive moves: `ops dlq redrive`'s default `--limit`.
const REDRIVE_LIMIT: usize = 100;

/// The actions over this process's backends.
pub(super) struct CliActions {
    /// Settings (the cache a replay refreshes, public URLs).
    pub settings: Settings,
    /// The database.
    pub records: Records,
    /// The queue's admin side.
    pub admin: SharedAdmin,
}

#[async_trait::async_trait]
impl OpsActions for CliActions {
    async fn replay(&self, id: &str, actor: &str) -> Result<Replayed, ApiError> {
        let ids = [id.to_owned()];
        let out = super::ops_failed::requeue_all(&self.settings, &self.records, &ids, None, false)
            .await
            .map_err(failed)?;
        // As `ops replay` audits each media it requeued, with the caller instead of `cli:<user>@<host>`.
        for id in &out.replayed {
            self.records.audit_or_log(actor, "replay", id, None).await;
        }
        Ok(Replayed {
            replayed: out.replayed,
            skipped: out
                .skipped
                .into_iter()
                .map(|s| SkippedMedia {
                    id: s.id,
                    reason: s.reason,
                })
                .collect(),
        })
    }

    async fn redrive(&self, class: &JobClass, actor: &str) -> Result<Redriven, ApiError> {
        let out = super::ops_dlq::redrive(
            &self.admin,
            &self.records,
            class,
            None,
            REDRIVE_LIMIT,
            actor,
        )
        .await
        .map_err(failed)?;
        Ok(Redriven {
            class: class.as_str().to_owned(),
            moved: out.moved,
            skipped: out.skipped,
            duplicates: out.duplicates,
            revived_media: out.revived,
        })
    }
}

/// A database error keeps its own answer (503 while it is down); anything else is the queue's or the
/// cache's, which an operator retries.
fn failed(e: anyhow::Error) -> ApiError {
    match e.downcast::<crate::db::DbError>() {
        Ok(db) => db.into(),
        Err(e) => ApiError::unavailable(format!("{e:#}")),
    }
}
