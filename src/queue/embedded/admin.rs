//! The embedded queue's administration: depth, and the dead letters kept in the same table.
//!
//! A redrive turns a dead row back into a ready one in a single guarded `UPDATE` (`state = 'dead'` in the
//! `WHERE`), so it is atomic, and a second redrive of the same row finds nothing to move.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{err, now_ms, EmbeddedQueue};
use crate::queue::dead::{redrive_body, Pick, Picker};
use crate::queue::{dead_letter_id, DeadLetter, Depth, JobClass, QueueAdmin, QueueError, Redriven};

/// Dead rows read per query while scanning.
const PAGE: i64 = 500;

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn dead_letter(r: &SqliteRow) -> Result<DeadLetter, QueueError> {
    let body: Vec<u8> = r.try_get("body").map_err(err)?;
    let reason: Option<String> = r.try_get("dead_reason").map_err(err)?;
    let at: Option<i64> = r.try_get("dead_at").map_err(err)?;
    Ok(DeadLetter::from_body(
        &body,
        reason.unwrap_or_default(),
        at.and_then(chrono::DateTime::from_timestamp_millis),
    ))
}

impl EmbeddedQueue {
    /// Dead rows of `class` after row id `after`, oldest first.
    async fn dead_page(&self, class: &JobClass, after: i64) -> Result<Vec<SqliteRow>, QueueError> {
        sqlx::query(
            "SELECT id, body, dead_reason, dead_at FROM queue_messages \
             WHERE class = $1 AND state = 'dead' AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(class.as_str())
        .bind(after)
        .bind(PAGE)
        .fetch_all(&self.pool)
        .await
        .map_err(err)
    }
}

#[async_trait]
impl QueueAdmin for EmbeddedQueue {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn declare(&self, _classes: &[JobClass]) -> Result<(), QueueError> {
        Ok(()) // one table holds every class
    }

    async fn depth(&self, class: &JobClass) -> Result<Depth, QueueError> {
        let now = now_ms();
        let r = sqlx::query(
            "SELECT \
               COALESCE(SUM(CASE WHEN state = 'ready' AND visible_at <= $2 THEN 1 ELSE 0 END), 0) AS ready, \
               COALESCE(SUM(CASE WHEN state = 'ready' AND visible_at > $2 AND lease_token IS NOT NULL THEN 1 ELSE 0 END), 0) AS in_flight, \
               COALESCE(SUM(CASE WHEN state = 'ready' AND visible_at > $2 AND lease_token IS NULL THEN 1 ELSE 0 END), 0) AS delayed, \
               COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) AS dlq, \
               MIN(CASE WHEN state = 'ready' AND visible_at <= $2 THEN enqueued_at END) AS oldest \
             FROM queue_messages WHERE class = $1",
        )
        .bind(class.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        // `try_get`: a row of an unexpected shape is an error for the caller, never a panic in the scaler.
        let n = |c: &str| {
            r.try_get::<i64, _>(c)
                .map(|v| u64::try_from(v).unwrap_or(0))
                .map_err(err)
        };
        let oldest: Option<i64> = r.try_get("oldest").map_err(err)?;
        Ok(Depth {
            ready: n("ready")?,
            in_flight: Some(n("in_flight")?),
            delayed: n("delayed")?,
            dlq: n("dlq")?,
            oldest_age_seconds: oldest.map(|t| (now - t).max(0) as f64 / 1000.0),
        })
    }

    async fn dead_letters(
        &self,
        class: &JobClass,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let rows = sqlx::query(
            "SELECT body, dead_reason, dead_at FROM queue_messages WHERE class = $1 AND state = 'dead' \
             ORDER BY id LIMIT $2",
        )
        .bind(class.as_str())
        .bind(limit_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(dead_letter).collect()
    }

    async fn dead_letter(
        &self,
        class: &JobClass,
        id: &str,
    ) -> Result<Option<DeadLetter>, QueueError> {
        let mut after = 0;
        loop {
            let rows = self.dead_page(class, after).await?;
            let Some(last) = rows.last() else {
                return Ok(None);
            };
            after = last.try_get("id").map_err(err)?;
            for r in &rows {
                let body: Vec<u8> = r.try_get("body").map_err(err)?;
                if dead_letter_id(&body) == id {
                    return dead_letter(r).map(Some);
                }
            }
        }
    }

    async fn redrive(
        &self,
        class: &JobClass,
        ids: Option<&[String]>,
        limit: usize,
    ) -> Result<Redriven, QueueError> {
        let mut picker = Picker::new(ids, limit);
        let mut after = 0;
        'scan: while picker.scan_on() {
            let rows = self.dead_page(class, after).await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("id").map_err(err)?;
            for r in &rows {
                if !picker.scan_on() {
                    break 'scan;
                }
                let row: i64 = r.try_get("id").map_err(err)?;
                let body: Vec<u8> = r.try_get("body").map_err(err)?;
                let id = dead_letter_id(&body);
                let pick = picker.pick(&id);
                let q = match pick {
                    Pick::Keep => continue,
                    // Back to a fresh ready message: no lease, no receive count, enqueued now.
                    Pick::Move => sqlx::query(
                        "UPDATE queue_messages SET state = 'ready', body = $2, visible_at = $3, \
                         enqueued_at = $3, receive_count = 0, delayed = 0, lease_token = NULL, \
                         dead_reason = NULL, dead_at = NULL WHERE id = $1 AND state = 'dead'",
                    )
                    .bind(row)
                    .bind(redrive_body(&body))
                    .bind(now_ms()),
                    Pick::Duplicate => {
                        sqlx::query("DELETE FROM queue_messages WHERE id = $1 AND state = 'dead'")
                            .bind(row)
                    }
                };
                let n = q.execute(&self.pool).await.map_err(err)?.rows_affected();
                if n == 0 {
                    // Another redrive or purge took the row between our read and this statement.
                    picker.lost(pick, &id);
                }
            }
        }
        self.published.wake_all();
        Ok(picker.finish())
    }

    async fn purge(&self, class: &JobClass, limit: usize) -> Result<u64, QueueError> {
        let r = sqlx::query(
            "DELETE FROM queue_messages WHERE id IN (SELECT id FROM queue_messages \
             WHERE class = $1 AND state = 'dead' ORDER BY id LIMIT $2)",
        )
        .bind(class.as_str())
        .bind(limit_i64(limit))
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(r.rows_affected())
    }

    async fn expire_dead_letters(&self, age: std::time::Duration) -> Result<u64, QueueError> {
        let before = now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        let r = sqlx::query("DELETE FROM queue_messages WHERE state = 'dead' AND dead_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(r.rows_affected())
    }
}
