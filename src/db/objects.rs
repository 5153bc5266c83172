//! Reads for assembling media objects into the cache: one media from the primary (warm jobs must not act on
//! a lagging replica), and pages of media with their renditions for `ops warm`.

use super::bind::BindExt;
use std::collections::HashMap;

use super::media::COLS;
use super::{DbError, MediaRow, Records, RenditionRow};

/// Which media `ops warm` rebuilds.
#[derive(Debug, Clone, PartialEq)]
pub enum WarmScope {
    /// Every media.
    All,
    /// Media changed at or after this Unix ms.
    Since(i64),
    /// Just these ids.
    Ids(Vec<String>),
}

/// One page of a warm scope.
#[derive(Debug, Default)]
pub struct ScopePage {
    /// Media with their renditions.
    pub rows: Vec<(MediaRow, Vec<RenditionRow>)>,
    /// The resume point after this page; `None` when the scope is done.
    pub next: Option<String>,
}

const RENDITION_COLS: &str =
    "media_id, name, key, content_type, width, height, bytes, duration_seconds, sha256";

impl Records {
    /// A media and its renditions, from the primary.
    pub async fn object_rows(
        &self,
        id: &str,
    ) -> Result<Option<(MediaRow, Vec<RenditionRow>)>, DbError> {
        let Some(row) = self.media_from(&self.write, id).await? else {
            return Ok(None);
        };
        let sql =
            format!("SELECT {RENDITION_COLS} FROM renditions WHERE media_id = $1 ORDER BY name");
        let renditions = sqlx::query_as::<_, RenditionRow>(&sql)
            .arg(id)
            .fetch_all(&self.write)
            .await?;
        Ok(Some((row, renditions)))
    }

    /// How many media a scope covers (for progress).
    /// How many media with `external_id` are in each status, as (status, count). Answered from an index,
    /// without assembling any media: for callers that wait for a batch to end (`bench fleet`).
    pub async fn status_counts(&self, external_id: &str) -> Result<Vec<(String, i64)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT status, COUNT(*) FROM media WHERE external_id = $1 GROUP BY status",
        )
        .arg(external_id)
        .fetch_all(&self.read)
        .await?)
    }

    pub async fn count_scope(&self, scope: &WarmScope) -> Result<u64, DbError> {
        let n: i64 = match scope {
            WarmScope::All => {
                sqlx::query_scalar("SELECT COUNT(*) FROM media")
                    .fetch_one(&self.write)
                    .await?
            }
            WarmScope::Since(ms) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM media WHERE updated_at >= $1")
                    .arg(ms)
                    .fetch_one(&self.write)
                    .await?
            }
            WarmScope::Ids(ids) => i64::try_from(ids.len()).unwrap_or(i64::MAX),
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The next page of a scope, in id order after `after` (the resume point), with renditions, from the
    /// primary, and the resume point after it (`None`: the scope is done). For [`WarmScope::Ids`] the ids
    /// are taken in the order given; ids without a row are skipped.
    pub async fn scope_page(
        &self,
        scope: &WarmScope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ScopePage, DbError> {
        let limit_i = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let after_s = after.unwrap_or("");
        let mut next = None;
        let rows: Vec<MediaRow> = match scope {
            WarmScope::All => {
                let sql = format!("SELECT {COLS} FROM media WHERE id > $1 ORDER BY id LIMIT $2");
                sqlx::query_as(&sql)
                    .arg(after_s)
                    .arg(limit_i)
                    .fetch_all(&self.write)
                    .await?
            }
            WarmScope::Since(ms) => {
                let sql = format!(
                    "SELECT {COLS} FROM media WHERE id > $1 AND updated_at >= $2 ORDER BY id LIMIT $3"
                );
                sqlx::query_as(&sql)
                    .arg(after_s)
                    .arg(ms)
                    .arg(limit_i)
                    .fetch_all(&self.write)
                    .await?
            }
            WarmScope::Ids(ids) => {
                let start = after
                    .and_then(|a| ids.iter().position(|i| i == a).map(|p| p + 1))
                    .unwrap_or(0);
                let chunk: Vec<&String> = ids.iter().skip(start).take(limit.max(1)).collect();
                next = chunk.last().map(|s| s.to_string());
                let mut found = self.media_by_ids(&chunk).await?;
                // Keep the caller's order; ids with no row are simply absent.
                chunk.iter().filter_map(|id| found.remove(*id)).collect()
            }
        };
        if !matches!(scope, WarmScope::Ids(_)) {
            next = rows.last().map(|r| r.id.clone());
        }
        let ids: Vec<&String> = rows.iter().map(|r| &r.id).collect();
        let mut by_media = self.renditions_by_ids(&ids).await?;
        let rows = rows
            .into_iter()
            .map(|r| {
                let rs = by_media.remove(&r.id).unwrap_or_default();
                (r, rs)
            })
            .collect();
        Ok(ScopePage { rows, next })
    }

    async fn media_by_ids(&self, ids: &[&String]) -> Result<HashMap<String, MediaRow>, DbError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT {COLS} FROM media WHERE id IN ({})",
            placeholders(ids.len())
        );
        let mut q = sqlx::query_as::<_, MediaRow>(&sql);
        for id in ids {
            q = q.arg(id.as_str());
        }
        let rows = q.fetch_all(&self.write).await?;
        Ok(rows.into_iter().map(|r| (r.id.clone(), r)).collect())
    }

    async fn renditions_by_ids(
        &self,
        ids: &[&String],
    ) -> Result<HashMap<String, Vec<RenditionRow>>, DbError> {
        let mut out: HashMap<String, Vec<RenditionRow>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT {RENDITION_COLS} FROM renditions WHERE media_id IN ({}) ORDER BY media_id, name",
            placeholders(ids.len())
        );
        let mut q = sqlx::query_as::<_, RenditionRow>(&sql);
        for id in ids {
            q = q.arg(id.as_str());
        }
        for r in q.fetch_all(&self.write).await? {
            out.entry(r.media_id.clone()).or_default().push(r);
        }
        Ok(out)
    }
}

fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
