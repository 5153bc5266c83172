//! Steering the fleet: `mediafleet ops pause|resume --class C`, `ops audit` and `ops retention`.
//!
//! A pause stops workers taking a class (while a codec bug is fixed, or a downstream is down) until it is
//! resumed. Jobs in flight finish; what the broker had pushed ahead to a worker is handed back; messages wait
//! in the queue, where `ops status` shows them. Pauses, resumes and every other operator change are kept in
//! the audit log with who made them; `ops retention` runs the retention job's pass at once.

use serde::Serialize;

use crate::config::Settings;
use crate::db::cli_actor;
use crate::queue::JobClass;

/// `ops pause` / `ops resume` flags.
#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// The class (`image`, `video`, `cache`, `notify`, …).
    #[arg(long)]
    class: String,
    /// Why (kept with the pause; shown by `ops status`).
    #[arg(long)]
    reason: Option<String>,
    /// One JSON document instead of a line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct PauseOut {
    class: String,
    paused: bool,
    /// Whether this call changed anything (false: it was already so).
    changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    paused_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paused_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Runs `ops pause` (`pause = true`) or `ops resume`.
pub async fn run(s: Settings, a: PauseArgs, pause: bool) -> anyhow::Result<()> {
    let class = JobClass::new(a.class.trim())?;
    // A class, or a class's bulk lane (`image-bulk`: pauses backfills alone).
    let (live, _) = crate::routing::lane_of(class.as_str());
    let known = s.scaling.classes.contains_key(class.as_str())
        || (s.scaling.classes.contains_key(live) && JobClass::BULK_LANES.contains(&class.as_str()));
    if !known {
        anyhow::bail!(
            "--class {class}: no such class (configured: {}, and the bulk lanes {})",
            s.scaling
                .classes
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            JobClass::BULK_LANES.join(", ")
        );
    }
    let records = crate::connect::records(&s).await?;
    let actor = cli_actor();
    let changed = if pause {
        records
            .pause_class(class.as_str(), &actor, a.reason.as_deref())
            .await?
    } else {
        records.resume_class(class.as_str()).await?
    };
    if changed {
        let action = if pause { "pause" } else { "resume" };
        records
            .audit_or_log(&actor, action, class.as_str(), a.reason.as_deref())
            .await;
    }
    let now = records.pauses().await?.remove(class.as_str());
    let out = PauseOut {
        class: class.to_string(),
        paused: now.is_some(),
        changed,
        paused_at: now
            .as_ref()
            .map(|p| crate::media_object::rfc3339(p.paused_at)),
        paused_by: now.as_ref().map(|p| p.paused_by.clone()),
        reason: now.and_then(|p| p.reason),
    };
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    match (pause, changed) {
        (true, true) => println!(
            "{class}: paused; workers take none of it within a few seconds (jobs in flight finish)"
        ),
        (true, false) => println!(
            "{class}: already paused since {} by {}",
            out.paused_at.as_deref().unwrap_or("?"),
            out.paused_by.as_deref().unwrap_or("?")
        ),
        (false, true) => println!("{class}: resumed; workers take it again within a few seconds"),
        (false, false) => println!("{class}: was not paused"),
    }
    Ok(())
}

/// `ops audit` flags.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this action (`delete`, `replay`, `reprocess`, `dlq_redrive`, `dlq_purge`, `pause`, `resume`).
    #[arg(long)]
    action: Option<String>,
    /// At most this many entries, newest first.
    #[arg(long, default_value_t = 50)]
    limit: i64,
    /// One JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `ops audit`: who changed what, newest first.
pub async fn audit(s: Settings, a: AuditArgs) -> anyhow::Result<()> {
    let records = crate::connect::records(&s).await?;
    let entries = records
        .audit_page(a.action.as_deref(), a.limit.clamp(1, 10_000))
        .await?;
    if a.json {
        let items: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "id": e.id,
                    "at": crate::media_object::rfc3339(e.at),
                    "actor": e.actor,
                    "action": e.action,
                    "target": e.target,
                    "detail": e.detail,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "items": items }));
        return Ok(());
    }
    println!(
        "{:<24}  {:<28}  {:<12}  {:<36}  DETAIL",
        "AT", "ACTOR", "ACTION", "TARGET"
    );
    for e in &entries {
        println!(
            "{:<24}  {:<28}  {:<12}  {:<36}  {}",
            crate::media_object::rfc3339(e.at),
            e.actor,
            e.action,
            e.target,
            e.detail.as_deref().unwrap_or("")
        );
    }
    if entries.is_empty() {
        println!("(nothing recorded)");
    }
    Ok(())
}

/// `ops retention` flags.
#[derive(Debug, clap::Args)]
pub struct RetentionArgs {
    /// One JSON document instead of a line.
    #[arg(long)]
    json: bool,
}

/// Runs `ops retention`: one retention pass now, with the configured ages (`[retention]`).
pub async fn retention(s: Settings, a: RetentionArgs) -> anyhow::Result<()> {
    let records = crate::connect::records(&s).await?;
    let admin = crate::connect::admin(&s).await?;
    let p = crate::jobs::retention_pass(&records, Some(&admin), &s.retention).await?;
    if a.json {
        println!("{}", serde_json::to_string(&p)?);
    } else {
        println!(
            "removed {} attempts, {} idempotency keys, {} deleted media, {} audit entries, {} dead letters",
            p.db.attempts, p.db.idempotency, p.db.tombstones, p.db.audit, p.dead_letters
        );
    }
    Ok(())
}
