//! `mediafleet ops dlq list|show|redrive|purge --class C`: a class's dead-letter queue, on every backend,
//! through the queue admin ([`crate::queue::QueueAdmin`]).
//!
//! - `list` and `show` peek: nothing is removed, and the DLQ's depth stays the same.
//! - `redrive` sends dead letters back to the work queue with a full retry budget, keeping the envelope (job
//!   id, payload, trace, unknown fields). A media that was failed when its job was dead-lettered is first made
//!   to wait for that job again ([`crate::db::Records`]`::revive_failed`), or the redriven job would find it
//!   ended and do nothing. Redriving an id twice moves it once; ids the DLQ no longer holds are reported as
//!   skipped.
//! - `purge` deletes dead letters, and only with `--yes`.

use mediafleet_proto::{Envelope, Job, JobKind, Stage};
use serde::Serialize;

use super::ops_failed::one_line;
use crate::config::Settings;
use crate::db::Records;
use crate::queue::{DeadLetter, JobClass, SharedAdmin};

/// Flags every `ops dlq` action takes.
#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    /// The class whose DLQ this is (`image`, `video`, `cache`, `notify`).
    #[arg(long)]
    class: String,
    /// Most dead letters to read, redrive or purge.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `ops dlq` actions.
#[derive(Debug, clap::Subcommand)]
pub enum DlqAction {
    /// Dead letters of a class, oldest first where the backend keeps an order.
    List {
        #[command(flatten)]
        args: DlqArgs,
    },
    /// One dead letter with its reason and body.
    Show {
        /// Its id (`ops dlq list` shows them).
        id: String,
        #[command(flatten)]
        args: DlqArgs,
    },
    /// Send dead letters back to the work queue: these ids, or the first `--limit`.
    Redrive {
        /// Ids to redrive (all up to `--limit` when none).
        ids: Vec<String>,
        #[command(flatten)]
        args: DlqArgs,
    },
    /// Delete up to `--limit` dead letters (`--all`: every one).
    Purge {
        /// Every dead letter of the class.
        #[arg(long)]
        all: bool,
        /// Confirm: a purge cannot be undone.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        args: DlqArgs,
    },
}

#[derive(Debug, Serialize)]
struct Item<'a> {
    id: &'a str,
    media_id: Option<&'a str>,
    kind: Option<&'a str>,
    attempts: u32,
    reason: &'a str,
    dead_lettered_at: Option<String>,
}

impl<'a> From<&'a DeadLetter> for Item<'a> {
    fn from(d: &'a DeadLetter) -> Self {
        Item {
            id: &d.id,
            media_id: d.media_id.as_deref(),
            kind: d.kind.as_deref(),
            attempts: d.attempts,
            reason: &d.reason,
            dead_lettered_at: d
                .dead_lettered_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        }
    }
}

/// Runs `ops dlq …`.
pub async fn run(s: Settings, action: DlqAction) -> anyhow::Result<()> {
    let args = match &action {
        DlqAction::List { args }
        | DlqAction::Show { args, .. }
        | DlqAction::Redrive { args, .. }
        | DlqAction::Purge { args, .. } => args,
    };
    let class = JobClass::new(&args.class)?;
    if let DlqAction::Purge { yes: false, .. } = &action {
        anyhow::bail!(
            "ops dlq purge deletes dead letters of {class} for good: run it again with --yes"
        );
    }
    let admin = crate::connect::admin(&s).await?;
    match &action {
        DlqAction::List { args } => {
            let dead = admin.dead_letters(&class, args.limit).await?;
            if args.json {
                let items: Vec<Item> = dead.iter().map(Item::from).collect();
                println!(
                    "{}",
                    serde_json::json!({ "class": class.as_str(), "items": items })
                );
                return Ok(());
            }
            println!(
                "{:<44}  {:<36}  {:<14}  {:>3}  {:<24}  REASON",
                "ID", "MEDIA", "KIND", "TRY", "DEAD-LETTERED AT"
            );
            for d in &dead {
                let i = Item::from(d);
                println!(
                    "{:<44}  {:<36}  {:<14}  {:>3}  {:<24}  {}",
                    i.id,
                    i.media_id.unwrap_or("-"),
                    i.kind.unwrap_or("-"),
                    i.attempts,
                    i.dead_lettered_at.as_deref().unwrap_or("-"),
                    one_line(i.reason, 100)
                );
            }
            Ok(())
        }
        DlqAction::Show { id, args } => {
            let d = admin
                .dead_letter(&class, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the {class} DLQ holds no dead letter {id}"))?;
            if args.json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                let i = Item::from(&d);
                println!("id:               {}", i.id);
                println!("media:            {}", i.media_id.unwrap_or("-"));
                println!("kind:             {}", i.kind.unwrap_or("-"));
                println!("attempts:         {}", i.attempts);
                println!(
                    "dead-lettered at: {}",
                    i.dead_lettered_at.as_deref().unwrap_or("-")
                );
                println!("reason:           {}", d.reason);
                println!("body:             {}", d.body);
            }
            Ok(())
        }
        DlqAction::Redrive { ids, args } => {
            let wanted = (!ids.is_empty()).then_some(ids.as_slice());
            let records = crate::connect::records(&s).await?;
            let out = redrive(
                &admin,
                &records,
                &class,
                wanted,
                args.limit,
                &crate::db::cli_actor(),
            )
            .await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "class": class.as_str(),
                        "moved": out.moved,
                        "skipped": out.skipped,
                        "duplicates": out.duplicates,
                        "revived_media": out.revived,
                    })
                );
            } else {
                println!(
                    "{} redriven to {class}, {} not in the DLQ, {} duplicate copies removed, {} failed media waiting again",
                    out.moved.len(),
                    out.skipped.len(),
                    out.duplicates,
                    out.revived.len()
                );
            }
            Ok(())
        }
        DlqAction::Purge { all, args, .. } => {
            let limit = if *all { usize::MAX } else { args.limit };
            let n = admin.purge(&class, limit).await?;
            tracing::warn!(class = %class, purged = n, "dead letters purged");
            if n > 0 {
                crate::connect::records(&s)
                    .await?
                    .audit_or_log(
                        &crate::db::cli_actor(),
                        "dlq_purge",
                        class.as_str(),
                        Some(&format!("{n} dead letters")),
                    )
                    .await;
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "class": class.as_str(), "purged": n })
                );
            } else {
                println!("{n} dead letters of {class} purged");
            }
            Ok(())
        }
    }
}

/// What a redrive did.
pub(crate) struct RedriveOutcome {
    /// Dead letters sent back to the work queue.
    pub moved: Vec<String>,
    /// Ids asked for that the DLQ no longer holds.
    pub skipped: Vec<String>,
    /// Further copies of a moved id removed from the DLQ.
    pub duplicates: u64,
    /// Failed media made to wait for their redriven job again.
    pub revived: Vec<String>,
}

/// Redrives `ids` of `class`'s DLQ (the first `limit` when `None`) and audits each move as `actor`: the one
/// code path of `ops dlq redrive` and the `/ops` dashboard's Redrive button. Peeks first, so media failed with
/// these jobs wait for them again before the jobs are visible.
pub(crate) async fn redrive(
    admin: &SharedAdmin,
    records: &Records,
    class: &JobClass,
    wanted: Option<&[String]>,
    limit: usize,
    actor: &str,
) -> anyhow::Result<RedriveOutcome> {
    let dead = match wanted {
        Some(ids) => {
            let mut found = Vec::new();
            for id in ids.iter().take(limit) {
                found.extend(admin.dead_letter(class, id).await?);
            }
            found
        }
        None => admin.dead_letters(class, limit).await?,
    };
    let mut revived = Vec::new();
    for d in &dead {
        if let Some((media, transcode)) = revivable(d) {
            if records.revive_failed(&media, transcode).await? {
                revived.push(media);
            }
        }
    }
    let picked: Vec<String> = match wanted {
        Some(ids) => ids.to_vec(),
        None => dead.iter().map(|d| d.id.clone()).collect(),
    };
    let out = admin.redrive(class, Some(&picked), limit).await?;
    tracing::info!(class = %class, moved = out.moved.len(), skipped = out.skipped.len(), revived = revived.len(), "dead letters redriven");
    for id in &out.moved {
        records
            .audit_or_log(actor, "dlq_redrive", class.as_str(), Some(id))
            .await;
    }
    Ok(RedriveOutcome {
        moved: out.moved,
        skipped: out.skipped,
        duplicates: out.duplicates,
        revived,
    })
}

/// The media a dead `media.process` job was for, and whether it is a video's transcode stage: the jobs whose
/// failed media a redrive makes wait again. Other kinds (validation, cache, webhook) go back as they are.
fn revivable(d: &DeadLetter) -> Option<(String, bool)> {
    let env = Envelope::parse(d.body.as_bytes()).ok()?;
    if JobKind::parse(&env.kind) != Some(JobKind::MediaProcess) {
        return None;
    }
    let Ok(Job::MediaProcess(p)) = env.job() else {
        return None;
    };
    Some((env.media_id.to_string(), p.stage == Some(Stage::Transcode)))
}
