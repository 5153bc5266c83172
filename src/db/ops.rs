//! What operators read and steer without SQL (`mediafleet ops failed|replay|reprocess|dlq`): failed media a
//! page at a time with their attempt counts, the media a reprocess selects, and a failed media made ready
//! for the dead letter an operator redrives.

use mediafleet_proto::{MediaKind, MediaStatus};

use super::bind::BindExt;
use super::media::COLS;
use super::{now_ms, DbError, MediaRow, Records};

/// Which failed media `ops failed list` and `ops replay --failed` take.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailedFilter {
    /// Only this error code.
    pub code: Option<String>,
    /// Only media that failed at or after this Unix ms.
    pub since_ms: Option<i64>,
    /// Only this kind of media.
    pub kind: Option<MediaKind>,
}

/// One failed media as `ops failed list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedMedia {
    /// Media id.
    pub id: String,
    /// What the original is.
    pub kind: MediaKind,
    /// Error code.
    pub error_code: Option<String>,
    /// Error message.
    pub error_message: Option<String>,
    /// Attempts recorded for the media (every job, every try).
    pub attempts: i64,
    /// When it failed (its last change), Unix ms.
    pub updated_at: i64,
}

super::row::from_row!(FailedMedia {
    id,
    kind: parsed,
    error_code,
    error_message,
    attempts,
    updated_at
});

/// Where a page of failed media ends: the next page starts after this (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCursor {
    /// `updated_at` of the last media shown.
    pub updated_at: i64,
    /// Its id (ties on `updated_at` are ordered by id).
    pub id: String,
}

impl FailedCursor {
    /// The cursor as one opaque token for `--cursor`.
    pub fn token(&self) -> String {
        format!("{}.{}", self.updated_at, self.id)
    }

    /// Reads a token made by [`Self::token`].
    pub fn parse(token: &str) -> Option<Self> {
        let (at, id) = token.split_once('.')?;
        Some(FailedCursor {
            updated_at: at.parse().ok()?,
            id: uuid::Uuid::parse_str(id).ok()?.to_string(),
        })
    }
}

/// A bound value of a statement built from optional filters.
enum Val {
    Text(String),
    Int(i64),
}

/// `AND …` conditions with `$N` placeholders from `first`, and their values in order.
fn conditions(f: &FailedFilter, after: Option<&FailedCursor>, first: usize) -> (String, Vec<Val>) {
    let (mut sql, mut vals) = (String::new(), Vec::new());
    let mut push = |cond: &str, v: Vec<Val>, vals: &mut Vec<Val>| {
        let mut c = cond.to_owned();
        for i in 0..v.len() {
            c = c.replace(
                &format!("${{{i}}}"),
                &format!("${}", first + vals.len() + i),
            );
        }
        sql.push_str(" AND ");
        sql.push_str(&c);
        vals.extend(v);
    };
    if let Some(code) = &f.code {
        push(
            "m.error_code = ${0}",
            vec![Val::Text(code.clone())],
            &mut vals,
        );
    }
    if let Some(ms) = f.since_ms {
        push("m.updated_at >= ${0}", vec![Val::Int(ms)], &mut vals);
    }
    if let Some(kind) = f.kind {
        push(
            "m.kind = ${0}",
            vec![Val::Text(kind.as_str().to_owned())],
            &mut vals,
        );
    }
    if let Some(c) = after {
        push(
            "(m.updated_at < ${0} OR (m.updated_at = ${1} AND m.id < ${2}))",
            vec![
                Val::Int(c.updated_at),
                Val::Int(c.updated_at),
                Val::Text(c.id.clone()),
            ],
            &mut vals,
        );
    }
    (sql, vals)
}

impl Records {
    /// Up to `limit` failed media matching `f`, newest first, after `after`; and the cursor of the next page
    /// when there may be one.
    pub async fn failed_page(
        &self,
        f: &FailedFilter,
        after: Option<&FailedCursor>,
        limit: usize,
    ) -> Result<(Vec<FailedMedia>, Option<FailedCursor>), DbError> {
        let (cond, vals) = conditions(f, after, 2);
        let sql = format!(
            "SELECT m.id, m.kind, m.error_code, m.error_message, m.updated_at, \
             (SELECT COUNT(*) FROM job_attempts a WHERE a.media_id = m.id) AS attempts \
             FROM media m WHERE m.status = 'failed'{cond} ORDER BY m.updated_at DESC, m.id DESC LIMIT $1"
        );
        let mut q = sqlx::query_as::<_, FailedMedia>(&sql)
            .arg(i64::try_from(limit.max(1)).unwrap_or(i64::MAX));
        for v in vals {
            q = match v {
                Val::Text(s) => q.arg(s),
                Val::Int(i) => q.arg(i),
            };
        }
        let rows = q.fetch_all(&self.read).await?;
        let next = (rows.len() >= limit.max(1))
            .then(|| rows.last())
            .flatten()
            .map(|r| FailedCursor {
                updated_at: r.updated_at,
                id: r.id.clone(),
            });
        Ok((rows, next))
    }

    /// Failed media counted by error code since `since_ms`.
    pub async fn failures_by_code(&self, since_ms: i64) -> Result<Vec<(String, i64)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(error_code, 'unknown') AS code, COUNT(*) AS n FROM media \
             WHERE status = 'failed' AND updated_at >= $1 GROUP BY COALESCE(error_code, 'unknown') \
             ORDER BY n DESC, code",
        )
        .arg(since_ms)
        .fetch_all(&self.read)
        .await?)
    }

    /// Up to `limit` media in `status` changed at or after `since_ms` (all when `None`), oldest first after
    /// the id `after`: what `ops reprocess` walks through.
    pub async fn media_page(
        &self,
        status: MediaStatus,
        since_ms: Option<i64>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MediaRow>, DbError> {
        let sql = format!(
            "SELECT {COLS} FROM media WHERE status = $1 AND updated_at >= $2 AND id > $3 \
             ORDER BY id LIMIT $4"
        );
        Ok(sqlx::query_as::<_, MediaRow>(&sql)
            .arg(status.as_str())
            .arg(since_ms.unwrap_or(i64::MIN))
            .arg(after.unwrap_or(""))
            .arg(i64::try_from(limit.max(1)).unwrap_or(i64::MAX))
            .fetch_all(&self.read)
            .await?)
    }

    /// Makes a failed media wait again for the job an operator is redriving from a dead-letter queue:
    /// `failed → queued` for a first-stage job, or back to the hand-over between a video's stages for its
    /// transcode job (`processing`, stage `transcode`, no deadline). Without this the redriven job would
    /// find its media ended and do nothing. Returns false when the media is not `failed` (then the job runs
    /// against whatever state it is in, as any redelivery does). If the redrive itself never happens, the
    /// stale-job sweep enqueues the media again through the outbox.
    pub async fn revive_failed(&self, id: &str, transcode_stage: bool) -> Result<bool, DbError> {
        // Literal states, not binds: no NULL is ever bound (see `bind`).
        let to = if transcode_stage {
            "status = 'processing', stage = 'transcode'"
        } else {
            "status = 'queued', stage = NULL"
        };
        let sql = format!(
            "UPDATE media SET {to}, error_code = NULL, error_message = NULL, progress = 0, \
             processing_deadline = NULL, version = version + 1, updated_at = $2 \
             WHERE id = $1 AND status = 'failed'"
        );
        let n = sqlx::query(&sql)
            .arg(id)
            .arg(now_ms())
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_tokens_round_trip_and_refuse_garbage() {
        let c = FailedCursor {
            updated_at: 1_700_000_000_123,
            id: "01a239b7-2a5d-7224-a6d4-143758240074".into(),
        };
        assert_eq!(FailedCursor::parse(&c.token()), Some(c));
        assert_eq!(FailedCursor::parse("x.y"), None);
        assert_eq!(FailedCursor::parse("12.not-a-uuid"), None);
    }

    #[test]
    fn conditions_number_their_placeholders_in_order() {
        let f = FailedFilter {
            code: Some("corrupt_media".into()),
            since_ms: Some(5),
            kind: Some(MediaKind::Video),
        };
        let after = FailedCursor {
            updated_at: 9,
            id: "x".into(),
        };
        let (sql, vals) = conditions(&f, Some(&after), 2);
        assert_eq!(
            sql,
            " AND m.error_code = $2 AND m.updated_at >= $3 AND m.kind = $4 \
             AND (m.updated_at < $5 OR (m.updated_at = $6 AND m.id < $7))"
        );
        assert_eq!(vals.len(), 6);
    }
}
