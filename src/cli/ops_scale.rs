//! `mediafleet ops scale`: the scaler's decision per class with its inputs, and the operator's override of it.
//! `--class C --workers N [--for D]` makes every scaler want N workers for C (a running `fleet` follows at its
//! next poll; KEDA through `mediafleet_desired_workers`), `--class C --auto` hands C back to the policy.

use std::time::Duration;

use crate::config::Settings;
use crate::db::cli_actor;

use super::ops_status;

/// `ops scale` flags.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    status: ops_status::StatusArgs,
    /// The class to steer (with --workers or --auto).
    #[arg(long)]
    class: Option<String>,
    /// Want exactly N workers for --class whatever the load, within its max_workers.
    #[arg(long, requires = "class", value_name = "N")]
    workers: Option<u32>,
    /// How long the override lasts, e.g. 30m (default: until --auto).
    #[arg(long = "for", requires = "workers", value_parser = humantime::parse_duration, value_name = "D")]
    duration: Option<Duration>,
    /// Hand --class back to the scaler's policy.
    #[arg(long, requires = "class", conflicts_with = "workers")]
    auto: bool,
}

/// Runs `ops scale`: sets or clears an override when asked, then prints the decisions (one JSON document
/// with `--json`; the override shows as `decided_by: "override"`).
pub async fn run(s: Settings, a: ScaleArgs) -> anyhow::Result<()> {
    if let Some(class) = a.class.as_deref().map(str::trim) {
        if a.workers.is_none() && !a.auto {
            anyhow::bail!("--class {class}: say --workers N or --auto");
        }
        if !s.scaling.classes.contains_key(class) {
            let known: Vec<&str> = s.scaling.classes.keys().map(String::as_str).collect();
            anyhow::bail!(
                "--class {class}: no such class (configured: {})",
                known.join(", ")
            );
        }
        let records = crate::connect::records(&s).await?;
        let actor = cli_actor();
        let detail = match a.workers {
            Some(n) => {
                let until = a.duration.map(|d| {
                    crate::db::now_ms() + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
                });
                records.set_scale_override(class, n, until, &actor).await?;
                let max = s.scaling.classes[class].max_workers;
                let lasts = a.duration.map_or("until --auto".to_owned(), |d| {
                    format!("for {}", humantime::format_duration(d))
                });
                eprintln!(
                    "{class}: {n} workers {lasts}{}",
                    if n > max {
                        format!(" (held to max_workers = {max})")
                    } else {
                        String::new()
                    }
                );
                format!("workers={n} {lasts}")
            }
            None => {
                let had = records.clear_scale_override(class).await?;
                eprintln!(
                    "{class}: {}",
                    if had {
                        "back to the scaler's policy"
                    } else {
                        "had no override"
                    }
                );
                "auto".to_owned()
            }
        };
        records
            .audit_or_log(&actor, "scale", class, Some(&detail))
            .await;
    }
    ops_status::scale(s, a.status).await
}
