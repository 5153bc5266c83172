//! `mediafleet ops failed list|show`, `ops replay` and `ops reprocess`: what failed and why, every attempt of
//! one media, and sending media through the pipeline again, without SQL.
//!
//! A replay or reprocess is the API's reprocess (`POST /v1/media/{id}/reprocess`) run in bulk: each media
//! moves to `queued` in the same transaction as its job's outbox row, guarded by the row's version, so
//! running a command twice, or beside the API, enqueues each media once. Replays take the normal lane (the
//! bulk lane is not built yet; see docs/operations.md).

use std::collections::BTreeMap;

use anyhow::Context;
use mediafleet_proto::{MediaKind, MediaStatus};
use serde::Serialize;

use super::ops_warm::parse_since;
use crate::config::Settings;
use crate::db::{FailedCursor, FailedFilter, MediaRow, OutboxJob, Records};
use crate::media_object::rfc3339;

/// Filters shared by `failed list` and `replay --failed`.
#[derive(Debug, Clone, clap::Args)]
pub struct FailedArgs {
    /// Only this error code (e.g. `corrupt_media`, `retries_exhausted`).
    #[arg(long)]
    code: Option<String>,
    /// Only media that failed since T: an RFC 3339 time or a duration ago (90m, 2h, 3d).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only this kind of media (`image`, `video`, …).
    #[arg(long)]
    kind: Option<String>,
}

impl FailedArgs {
    fn filter(&self) -> anyhow::Result<FailedFilter> {
        let kind = match &self.kind {
            Some(k) => Some(MediaKind::parse(k).ok_or_else(|| {
                anyhow::anyhow!("--kind {k:?}: not a media kind (image, video, …)")
            })?),
            None => None,
        };
        Ok(FailedFilter {
            code: self.code.clone(),
            since_ms: self.since.as_deref().map(parse_since).transpose()?,
            kind,
        })
    }
}

/// `ops failed` actions.
#[derive(Debug, clap::Subcommand)]
pub enum FailedAction {
    /// Failed media, newest first, with their code, message and attempt count.
    List {
        #[command(flatten)]
        filter: FailedArgs,
        /// Most media to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Continue after a previous page (its `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One media with every attempt of every job (worker, timings, outcome, code, message).
    Show {
        /// Media id.
        id: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `ops replay` flags.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["ids", "failed"])))]
pub struct ReplayArgs {
    /// Failed media to replay.
    ids: Vec<String>,
    /// Every failed media the filters select.
    #[arg(long)]
    failed: bool,
    #[command(flatten)]
    filter: FailedArgs,
    #[command(flatten)]
    bulk: BulkArgs,
}

/// `ops reprocess` flags.
#[derive(Debug, clap::Args)]
pub struct ReprocessArgs {
    /// Make the renditions again with this profile.
    #[arg(long)]
    profile: String,
    /// Only media that became ready since T: an RFC 3339 time or a duration ago.
    #[arg(long, value_name = "T")]
    since: Option<String>,
    #[command(flatten)]
    bulk: BulkArgs,
}

/// Flags of every bulk requeue (`replay`, `reprocess`).
#[derive(Debug, clap::Args)]
pub struct BulkArgs {
    /// Most media to take.
    #[arg(long)]
    limit: Option<usize>,
    /// Show what would be requeued; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct FailedItem {
    media_id: String,
    kind: MediaKind,
    code: Option<String>,
    message: Option<String>,
    attempts: i64,
    failed_at: String,
}

#[derive(Debug, Serialize)]
struct AttemptItem {
    attempt: i64,
    job_id: String,
    kind: String,
    worker: String,
    started_at: String,
    finished_at: Option<String>,
    outcome: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct Skipped {
    pub(super) id: String,
    pub(super) reason: String,
}

#[derive(Debug, Default, Serialize)]
pub(super) struct Replayed {
    pub(super) replayed: Vec<String>,
    pub(super) skipped: Vec<Skipped>,
    dry_run: bool,
}

/// Runs `ops failed …`.
pub async fn failed(s: Settings, action: FailedAction) -> anyhow::Result<()> {
    let records = crate::connect::records(&s).await?;
    match action {
        FailedAction::List {
            filter,
            limit,
            cursor,
            json,
        } => {
            let after =
                match cursor.as_deref() {
                    Some(c) => Some(FailedCursor::parse(c).ok_or_else(|| {
                        anyhow::anyhow!("--cursor {c:?}: not a cursor this printed")
                    })?),
                    None => None,
                };
            let (rows, next) = records
                .failed_page(&filter.filter()?, after.as_ref(), limit)
                .await?;
            let items: Vec<FailedItem> = rows
                .into_iter()
                .map(|r| FailedItem {
                    media_id: r.id,
                    kind: r.kind,
                    code: r.error_code,
                    message: r.error_message,
                    attempts: r.attempts,
                    failed_at: rfc3339(r.updated_at),
                })
                .collect();
            let next_cursor = next.map(|c| c.token());
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "items": items, "next_cursor": next_cursor })
                );
                return Ok(());
            }
            println!(
                "{:<36}  {:<6}  {:<18}  {:>8}  {:<24}  MESSAGE",
                "MEDIA", "KIND", "CODE", "ATTEMPTS", "FAILED AT"
            );
            for i in &items {
                println!(
                    "{:<36}  {:<6}  {:<18}  {:>8}  {:<24}  {}",
                    i.media_id,
                    i.kind.as_str(),
                    i.code.as_deref().unwrap_or("-"),
                    i.attempts,
                    i.failed_at,
                    one_line(i.message.as_deref().unwrap_or(""), 100)
                );
            }
            if let Some(c) = next_cursor {
                println!("more: --cursor {c}");
            }
            Ok(())
        }
        FailedAction::Show { id, json } => show(&records, &id, json).await,
    }
}

async fn show(records: &Records, id: &str, json: bool) -> anyhow::Result<()> {
    let row = records
        .media_primary(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("media {id} not found"))?;
    let attempts: Vec<AttemptItem> = records
        .attempts(id)
        .await?
        .into_iter()
        .map(|a| AttemptItem {
            attempt: a.attempt,
            job_id: a.job_id,
            kind: a.kind,
            worker: a.worker,
            started_at: rfc3339(a.started_at),
            finished_at: a.finished_at.map(rfc3339),
            outcome: a.outcome,
            code: a.error_code,
            message: a.error_message,
        })
        .collect();
    if json {
        let doc = serde_json::json!({
            "media_id": row.id,
            "kind": row.kind,
            "status": row.status,
            "profile": row.profile,
            "code": row.error_code,
            "message": row.error_message,
            "content_type": row.content_type,
            "bytes": row.bytes,
            "created_at": rfc3339(row.created_at),
            "updated_at": rfc3339(row.updated_at),
            "attempts": attempts,
        });
        println!("{doc}");
        return Ok(());
    }
    println!(
        "media {}  {}  {}  profile {}  {} bytes ({})",
        row.id,
        row.kind.as_str(),
        row.status,
        row.profile,
        row.bytes,
        row.content_type
    );
    if let Some(code) = &row.error_code {
        println!(
            "failed: {code}: {}",
            row.error_message.as_deref().unwrap_or("")
        );
    }
    println!(
        "{:>3}  {:<16}  {:<24}  {:<24}  {:<12}  {:<18}  MESSAGE",
        "TRY", "JOB KIND", "WORKER", "STARTED", "OUTCOME", "CODE"
    );
    for a in &attempts {
        println!(
            "{:>3}  {:<16}  {:<24}  {:<24}  {:<12}  {:<18}  {}",
            a.attempt,
            a.kind,
            one_line(&a.worker, 24),
            a.started_at,
            a.outcome.as_deref().unwrap_or("running"),
            a.code.as_deref().unwrap_or("-"),
            one_line(a.message.as_deref().unwrap_or(""), 80)
        );
    }
    Ok(())
}

/// Runs `ops replay …`.
pub async fn replay(s: Settings, a: ReplayArgs) -> anyhow::Result<()> {
    let records = crate::connect::records(&s).await?;
    let limit = a.bulk.limit.unwrap_or(usize::MAX);
    let mut ids: Vec<String> = a.ids.clone();
    if a.failed {
        let filter = a.filter.filter()?;
        let mut after: Option<FailedCursor> = None;
        while ids.len() < limit {
            let page = (limit - ids.len()).min(500);
            let (rows, next) = records.failed_page(&filter, after.as_ref(), page).await?;
            ids.extend(rows.into_iter().map(|r| r.id));
            match next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
    }
    ids.truncate(limit);
    let out = requeue_all(&s, &records, &ids, None, a.bulk.dry_run).await?;
    if !out.dry_run {
        let actor = crate::db::cli_actor();
        for id in &out.replayed {
            records.audit_or_log(&actor, "replay", id, None).await;
        }
    }
    print_requeued(&out, a.bulk.json, "replayed")
}

/// Runs `ops reprocess …`.
pub async fn reprocess(s: Settings, a: ReprocessArgs) -> anyhow::Result<()> {
    if !s.profiles.contains_key(&a.profile) {
        let known: Vec<&str> = s.profiles.keys().map(String::as_str).collect();
        anyhow::bail!(
            "unknown profile {:?}; configured: {}",
            a.profile,
            known.join(", ")
        );
    }
    let records = crate::connect::records(&s).await?;
    let since = a.since.as_deref().map(parse_since).transpose()?;
    let limit = a.bulk.limit.unwrap_or(usize::MAX);
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    while ids.len() < limit {
        let page = records
            .media_page(
                MediaStatus::Ready,
                since,
                after.as_deref(),
                (limit - ids.len()).min(500),
            )
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        ids.extend(page.into_iter().map(|r| r.id));
    }
    let out = requeue_all(&s, &records, &ids, Some(&a.profile), a.bulk.dry_run).await?;
    if !out.dry_run && !out.replayed.is_empty() {
        let detail = format!(
            "{} media{}",
            out.replayed.len(),
            a.since
                .as_deref()
                .map(|t| format!(" ready since {t}"))
                .unwrap_or_default()
        );
        records
            .audit_or_log(
                &crate::db::cli_actor(),
                "reprocess",
                &a.profile,
                Some(&detail),
            )
            .await;
    }
    print_requeued(&out, a.bulk.json, "reprocessed")
}

/// Requeues each media: failed ones (a replay, `profile` `None`: their own profile) or ready ones (a
/// reprocess with `profile`). Anything else is skipped with its reason. The `/ops` dashboard's Replay button
/// runs it too (`super::ops_actions`).
pub(super) async fn requeue_all(
    s: &Settings,
    records: &Records,
    ids: &[String],
    profile: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<Replayed> {
    let cache = super::serve::cache(s)?;
    let want = if profile.is_some() {
        MediaStatus::Ready
    } else {
        MediaStatus::Failed
    };
    let mut out = Replayed {
        dry_run,
        ..Replayed::default()
    };
    let mut seen = std::collections::HashSet::new();
    let verb = if profile.is_some() {
        "reprocess"
    } else {
        "replay"
    };
    let mut progress = super::progress::Progress::new(verb, "media", ids.len() as u64);
    for id in ids {
        progress.inc();
        let Ok(uuid) = uuid::Uuid::parse_str(id) else {
            out.skip(id, "not a media id");
            continue;
        };
        let id = uuid.to_string();
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(row) = records.media_primary(&id).await? else {
            out.skip(&id, "not found");
            continue;
        };
        if row.status != want {
            out.skip(
                &id,
                &format!("{} (only {want} media are taken)", row.status),
            );
            continue;
        }
        if dry_run {
            out.replayed.push(id);
            continue;
        }
        if requeue_one(records, &row, uuid, profile).await? {
            if let Some(cache) = &cache {
                if let Err(e) = crate::media_object::warm::warm_one(
                    records,
                    cache,
                    &id,
                    s.public_url.as_deref(),
                )
                .await
                {
                    tracing::warn!(media_id = %id, error = %e, "could not refresh the cached object");
                }
            }
            tracing::info!(media_id = %id, from = %row.status, "media requeued");
            out.replayed.push(id);
        } else {
            out.skip(&id, "changed while it was being requeued; run again");
        }
    }
    progress.finish();
    Ok(out)
}

async fn requeue_one(
    records: &Records,
    row: &MediaRow,
    uuid: uuid::Uuid,
    profile: Option<&str>,
) -> anyhow::Result<bool> {
    let profile = profile.unwrap_or(&row.profile);
    // Replays and reprocesses travel in the bulk lane: workers take them only when live work is idle.
    let job = OutboxJob::media_process(uuid, &row.source_key, profile, row.kind)
        .in_lane(mediafleet_proto::Lane::Bulk);
    Ok(records
        .requeue(row, profile, &job)
        .await
        .with_context(|| format!("requeueing media {}", row.id))?
        .is_some())
}

impl Replayed {
    fn skip(&mut self, id: &str, reason: &str) {
        self.skipped.push(Skipped {
            id: id.to_owned(),
            reason: reason.to_owned(),
        });
    }
}

fn print_requeued(out: &Replayed, json: bool, verb: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(out)?);
        return Ok(());
    }
    let verb = if out.dry_run {
        format!("would be {verb}")
    } else {
        verb.to_owned()
    };
    println!(
        "{} {verb}, {} skipped",
        out.replayed.len(),
        out.skipped.len()
    );
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &out.skipped {
        *reasons.entry(s.reason.as_str()).or_default() += 1;
    }
    for (reason, n) in reasons {
        println!("  skipped {n}: {reason}");
    }
    Ok(())
}

/// `s` on one line, cut to `max` characters.
pub(super) fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
