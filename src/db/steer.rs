//! What operators steer (`mediafleet ops pause|resume`) and what they and API keys changed (the audit log).
//!
//! A pause is a row per class: workers poll the set of paused classes and stop taking those classes until the
//! row is gone. The audit log is append-only; the retention job trims it like the rest.

use std::collections::BTreeMap;

use sqlx::Row;

use super::bind::BindExt;
use super::{now_ms, DbError, Records};

/// One paused class, as `ops status` and `ops pause` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pause {
    /// The class.
    pub class: String,
    /// When it was paused, Unix ms.
    pub paused_at: i64,
    /// Who paused it (`cli:<user>` or `key:<name>`).
    pub paused_by: String,
    /// Why, as the operator wrote it.
    pub reason: Option<String>,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// When, Unix ms.
    pub at: i64,
    /// Who (`cli:<user>` or `key:<name>`).
    pub actor: String,
    /// What: `delete`, `replay`, `reprocess`, `dlq_redrive`, `dlq_purge`, `pause`, `resume`.
    pub action: String,
    /// On what (a media id, a class).
    pub target: String,
    /// More, e.g. a count or a reason.
    pub detail: Option<String>,
}

impl Records {
    /// Pauses `class` (again: the first pause's time and author stay). Returns whether it was running.
    pub async fn pause_class(
        &self,
        class: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<bool, DbError> {
        let n = sqlx::query(
            "INSERT INTO class_pauses (class, paused_at, paused_by, reason) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (class) DO NOTHING",
        )
        .arg(class)
        .arg(now_ms())
        .arg(by)
        .arg(reason)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Resumes `class`. Returns whether it was paused.
    pub async fn resume_class(&self, class: &str) -> Result<bool, DbError> {
        let n = sqlx::query("DELETE FROM class_pauses WHERE class = $1")
            .arg(class)
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Every paused class, by class.
    pub async fn pauses(&self) -> Result<BTreeMap<String, Pause>, DbError> {
        let rows = sqlx::query("SELECT class, paused_at, paused_by, reason FROM class_pauses")
            .fetch_all(&self.write)
            .await?;
        let mut out = BTreeMap::new();
        for r in rows {
            let p = Pause {
                class: r.try_get("class")?,
                paused_at: r.try_get("paused_at")?,
                paused_by: r.try_get("paused_by")?,
                reason: r.try_get("reason")?,
            };
            out.insert(p.class.clone(), p);
        }
        Ok(out)
    }

    /// Appends to the audit log. Callers log and go on when it fails: the change itself is done.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: Option<&str>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .arg(now_ms())
        .arg(actor)
        .arg(action)
        .arg(target)
        .arg(detail)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// [`Self::audit`] that logs a failure instead of returning it: the change it records is already done.
    pub async fn audit_or_log(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: Option<&str>,
    ) {
        if let Err(e) = self.audit(actor, action, target, detail).await {
            tracing::warn!(error = %e, actor, action, target, "could not write the audit log");
        }
    }

    /// The newest `limit` audit entries, optionally of one action, newest first.
    pub async fn audit_page(
        &self,
        action: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, DbError> {
        const COLS: &str = "SELECT id, at, actor, action, target, detail FROM audit_log";
        let rows = match action {
            Some(a) => {
                sqlx::query(&format!(
                    "{COLS} WHERE action = $1 ORDER BY id DESC LIMIT $2"
                ))
                .arg(a)
                .arg(limit)
                .fetch_all(&self.write)
                .await?
            }
            None => {
                sqlx::query(&format!("{COLS} ORDER BY id DESC LIMIT $1"))
                    .arg(limit)
                    .fetch_all(&self.write)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }
}

/// Who runs this CLI, for the audit log: `cli:<user>@<host>`.
pub fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
    format!("cli:{user}@{}", host.trim())
}
