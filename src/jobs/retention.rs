//! The retention job: removes bookkeeping rows past their configured age (`[retention]`): job attempts of
//! media that ended, idempotency keys, deleted-media tombstones, embedded dead letters and audit entries.
//! Every worker (and `serve`) runs it; passes from several workers only find less to delete.

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::RetentionSettings;
use crate::db::{DbError, Purged, Records};
use crate::queue::SharedAdmin;

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionPass {
    /// Rows removed from the database.
    #[serde(flatten)]
    pub db: Purged,
    /// Dead letters removed from the embedded queue.
    pub dead_letters: u64,
}

/// Runs one pass. A failing part is logged and the others still run; the first error is returned.
pub async fn retention_pass(
    records: &Records,
    admin: Option<&SharedAdmin>,
    r: &RetentionSettings,
) -> Result<RetentionPass, DbError> {
    let mut out = RetentionPass::default();
    let mut first: Option<DbError> = None;
    let mut keep = |res: Result<u64, DbError>, what: &str| match res {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, what, "retention could not purge");
            first.get_or_insert(e);
            0
        }
    };
    out.db.attempts = keep(records.purge_attempts(r.attempts).await, "attempts");
    out.db.idempotency = keep(
        records.purge_idempotency(r.idempotency).await,
        "idempotency",
    );
    out.db.tombstones = keep(records.purge_tombstones(r.tombstones).await, "tombstones");
    out.db.audit = keep(records.purge_audit(r.audit).await, "audit");
    if let Some(admin) = admin {
        match admin.expire_dead_letters(r.dead_letters).await {
            Ok(n) => out.dead_letters = n,
            Err(e) => warn!(error = %e, "retention could not expire dead letters"),
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Runs a pass every `r.interval` until `shutdown` (the first one after one interval, so a restarting fleet
/// does not all purge at once).
pub async fn run_retention(
    records: Records,
    admin: Option<SharedAdmin>,
    r: RetentionSettings,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + r.interval, r.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Ok(p) = retention_pass(&records, admin.as_ref(), &r).await {
            if p != RetentionPass::default() {
                info!(
                    attempts = p.db.attempts,
                    idempotency = p.db.idempotency,
                    tombstones = p.db.tombstones,
                    audit = p.db.audit,
                    dead_letters = p.dead_letters,
                    "retention: old rows removed"
                );
            }
        }
    }
}
