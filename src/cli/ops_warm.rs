//! `mediafleet ops warm --all | --since T | --ids …`: rebuilds media objects in the cache in batches (after
//! a Redis flush, or when the object's schema changes), straight from the primary DB into a Redis pipeline.
//! Progress goes to stderr; a summary JSON to stdout. A checkpoint file holds the resume point, so an
//! interrupted run continues where it stopped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::Settings;
use crate::db::WarmScope;
use crate::media_object::warm::warm_page;

/// `ops warm` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["all", "since", "ids"])))]
pub struct WarmArgs {
    /// Every media.
    #[arg(long)]
    all: bool,
    /// Media changed since T: an RFC 3339 time (2025-01-31T12:00:00Z) or a duration ago (90m, 2h, 3d).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Just these media ids.
    #[arg(long, value_delimiter = ',', value_name = "ID,…")]
    ids: Vec<String>,
    /// Media per DB read and cache batch (Redis pipeline, memcached gets + pipelined writes).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Most objects per second (0: no limit), to spare the primary DB during a rebuild.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Resume point file (default: ops-warm.checkpoint under the data dir).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Ignore a saved resume point and start from the beginning.
    #[arg(long)]
    restart: bool,
}

/// The resume point, saved after every batch.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Checkpoint {
    scope: String,
    after: String,
    done: u64,
}

pub(super) fn parse_since(t: &str) -> anyhow::Result<i64> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(at.timestamp_millis());
    }
    let ago = humantime::parse_duration(t).map_err(|_| {
        anyhow::anyhow!("--since {t:?}: give an RFC 3339 time or a duration such as 2h")
    })?;
    Ok(crate::db::now_ms() - i64::try_from(ago.as_millis()).unwrap_or(i64::MAX / 2))
}

fn load_checkpoint(path: &Path, scope: &str) -> Option<Checkpoint> {
    let cp: Checkpoint = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    (cp.scope == scope).then_some(cp)
}

fn save_checkpoint(path: &Path, cp: &Checkpoint) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(cp)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs `ops warm`.
pub async fn run(s: Settings, a: WarmArgs) -> anyhow::Result<()> {
    let cache = super::serve::cache(&s)?.ok_or_else(|| {
        anyhow::anyhow!(
            "ops warm needs a cache: pass --cache redis://host:6379/0 or memcached://host:11211[,host2:11211]"
        )
    })?;
    cache
        .ping()
        .await
        .context("ops warm: the cache does not answer")?;
    let (scope, scope_name) = if a.all {
        (WarmScope::All, "all".to_owned())
    } else if let Some(t) = &a.since {
        let ms = parse_since(t)?;
        (WarmScope::Since(ms), format!("since:{ms}"))
    } else {
        let ids: Vec<String> = a
            .ids
            .iter()
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty())
            .collect();
        let name = format!("ids:{}", ids.join(","));
        (WarmScope::Ids(ids), name)
    };
    let records = crate::connect::records(&s).await?;
    let checkpoint = a
        .checkpoint
        .clone()
        .unwrap_or_else(|| s.data_dir.join("ops-warm.checkpoint"));
    if let Some(dir) = checkpoint.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let resumed = if a.restart {
        None
    } else {
        load_checkpoint(&checkpoint, &scope_name)
    };
    let mut after = resumed.as_ref().map(|c| c.after.clone());
    let mut done = resumed.as_ref().map_or(0, |c| c.done);
    if let Some(cp) = &resumed {
        tracing::info!(after = %cp.after, done = cp.done, file = %checkpoint.display(), "resuming a previous warm (--restart to start over)");
    }
    let total = records.count_scope(&scope).await?;
    let batch = if a.rate > 0 {
        a.batch
            .clamp(1, usize::try_from(a.rate).unwrap_or(usize::MAX))
    } else {
        a.batch.max(1)
    };
    let started = Instant::now();
    let mut progress = super::progress::Progress::new("warm", "objects", total);
    progress.set(done);
    let (mut written, mut kept_newer, mut not_cached, mut this_run) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let page = records.scope_page(&scope, after.as_deref(), batch).await?;
        let Some(last_id) = page.next else { break };
        let counts = warm_page(&cache, &page.rows, s.public_url.as_deref()).await?;
        written += counts.written;
        kept_newer += counts.kept_newer;
        not_cached += counts.not_cached;
        this_run += page.rows.len() as u64;
        done += page.rows.len() as u64;
        save_checkpoint(
            &checkpoint,
            &Checkpoint {
                scope: scope_name.clone(),
                after: last_id.clone(),
                done,
            },
        )?;
        after = Some(last_id);
        progress.set(done);
        if a.rate > 0 {
            // Pace to the rate: sleep until this run's count is due.
            let due = Duration::from_secs_f64(this_run as f64 / a.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    progress.finish();
    let _ = std::fs::remove_file(&checkpoint);
    let secs = started.elapsed().as_secs_f64();
    let summary = json!({
        "scope": scope_name,
        "objects": this_run,
        "written": written,
        "kept_newer": kept_newer,
        "not_cached": not_cached,
        "resumed_from": resumed.map(|c| c.after),
        "seconds": (secs * 1000.0).round() / 1000.0,
        "objects_per_second": if secs > 0.0 { (this_run as f64 / secs).round() } else { 0.0 },
    });
    println!("{summary}");
    Ok(())
}
