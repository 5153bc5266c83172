//! Operators' overrides of the scaler (`mediafleet ops scale --class C --workers N`): one row per class, read
//! by every scaler at each poll, so a running `fleet` (and KEDA, through the desired-workers gauge) follows it.

use std::collections::BTreeMap;

use sqlx::Row;

use super::bind::BindExt;
use super::{now_ms, DbError, Records};

/// An override of one class's desired workers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScaleOverride {
    /// The class.
    pub class: String,
    /// Workers every scaler wants for it (within its max).
    pub workers: u32,
    /// When it ends, Unix ms; `None` until it is removed.
    pub until_ms: Option<i64>,
    /// When it was set, Unix ms.
    pub set_at: i64,
    /// Who set it (`cli:<user>@<host>`).
    pub set_by: String,
}

impl Records {
    /// Sets (or replaces) the override of `class`.
    pub async fn set_scale_override(
        &self,
        class: &str,
        workers: u32,
        until_ms: Option<i64>,
        by: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO scale_overrides (class, workers, until_ms, set_at, set_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (class) DO UPDATE SET workers = excluded.workers, \
             until_ms = excluded.until_ms, set_at = excluded.set_at, set_by = excluded.set_by",
        )
        .arg(class)
        .arg(i64::from(workers))
        .arg(until_ms)
        .arg(now_ms())
        .arg(by)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Removes the override of `class`. Returns whether there was one.
    pub async fn clear_scale_override(&self, class: &str) -> Result<bool, DbError> {
        let n = sqlx::query("DELETE FROM scale_overrides WHERE class = $1")
            .arg(class)
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// The overrides in force now, by class (expired ones are left out; the next `set` or `clear` replaces
    /// them).
    pub async fn scale_overrides(&self) -> Result<BTreeMap<String, ScaleOverride>, DbError> {
        let rows = sqlx::query(
            "SELECT class, workers, until_ms, set_at, set_by FROM scale_overrides \
             WHERE until_ms IS NULL OR until_ms > $1",
        )
        .arg(now_ms())
        .fetch_all(&self.write)
        .await?;
        let mut out = BTreeMap::new();
        for r in rows {
            let workers: i64 = r.try_get("workers")?;
            let o = ScaleOverride {
                class: r.try_get("class")?,
                workers: u32::try_from(workers.max(0)).unwrap_or(u32::MAX),
                until_ms: r.try_get("until_ms")?,
                set_at: r.try_get("set_at")?,
                set_by: r.try_get("set_by")?,
            };
            out.insert(o.class.clone(), o);
        }
        Ok(out)
    }
}
