//! `[scaling]` and `[scaling.<class>]` in the TOML file: the queue-depth scaling policy, per class.
//!
//! ```toml
//! [scaling]
//! poll_interval = "5s"
//! scale_down_window = "120s"
//! startup = "10s"
//! status_sample = "15s"
//! [scaling.image]
//! min_workers = 0
//! max_workers = 8
//! target_latency = "10s"
//! concurrency = 4
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// `[scaling]`: global knobs plus one `[scaling.<class>]` table per class.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScalingFile {
    /// How often the scaler and `fleet` read the queues.
    #[serde(default, with = "humantime_serde")]
    pub poll_interval: Option<Duration>,
    /// Scale-down stabilisation: a class shrinks only to the highest count wanted during this window.
    #[serde(default, with = "humantime_serde")]
    pub scale_down_window: Option<Duration>,
    /// Weight of the newest finished job in the per-class cost EWMA (0 < alpha ≤ 1).
    pub ewma_alpha: Option<f64>,
    /// First estimate of a worker's start-up (decision to taking jobs); `fleet` measures its own.
    #[serde(default, with = "humantime_serde")]
    pub startup: Option<Duration>,
    /// How often the api samples `ops status` for the `/ops` dashboard's one-hour history.
    #[serde(default, with = "humantime_serde")]
    pub status_sample: Option<Duration>,
    /// `[scaling.<class>]` tables.
    #[serde(flatten)]
    pub classes: BTreeMap<String, ClassScalingFile>,
}

/// `[scaling.<class>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassScalingFile {
    /// Fewest workers (0 allows scale to zero).
    pub min_workers: Option<u32>,
    /// Most workers.
    pub max_workers: Option<u32>,
    /// How long a queued job may wait: the backlog one worker may hold is this × its concurrency.
    #[serde(default, with = "humantime_serde")]
    pub target_latency: Option<Duration>,
    /// Jobs in flight per worker of this class.
    pub concurrency: Option<u32>,
    /// Expected cost of one job before any has been measured.
    #[serde(default, with = "humantime_serde")]
    pub default_cost: Option<Duration>,
    /// Capability routing: move this class's jobs to `fallback_to` when no worker serves it this long.
    pub fallback_to: Option<String>,
    /// See `fallback_to`.
    #[serde(default, with = "humantime_serde")]
    pub fallback_after: Option<Duration>,
}

/// The resolved policy of one class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScaling {
    /// Fewest workers.
    pub min_workers: u32,
    /// Most workers.
    pub max_workers: u32,
    /// Acceptable queue wait.
    pub target_latency: Duration,
    /// Jobs in flight per worker.
    pub concurrency: u32,
    /// First cost estimate of one job, before measurements.
    pub default_cost: Duration,
    /// Class that takes this class's jobs when no worker serves it (`video-gpu` → `video`).
    pub fallback_to: Option<String>,
    /// How long the jobs may wait for a capable worker before they fall back.
    pub fallback_after: Duration,
}

/// The resolved scaling settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingSettings {
    /// Policy per class: the standard classes plus every `[scaling.<class>]` table.
    pub classes: BTreeMap<String, ClassScaling>,
    /// Poll interval.
    pub poll_interval: Duration,
    /// Scale-down stabilisation window.
    pub scale_down_window: Duration,
    /// EWMA weight of the newest sample.
    pub ewma_alpha: f64,
    /// First estimate of a worker's start-up.
    pub startup: Duration,
    /// The `/ops` dashboard's sampling interval (its history holds one hour of samples).
    pub status_sample: Duration,
}

/// Defaults per class: (min, max, target latency s, default cost s).
fn class_default(class: &str) -> (u32, u32, f64, f64) {
    match class {
        "image" => (0, 8, 10.0, 0.2),
        // 1 s of work per second of media; a job's media length is unknown before the probe, so the first
        // estimate assumes a one-minute clip until finished jobs teach the EWMA better.
        "video" | "video-gpu" => (0, 4, 300.0, 60.0),
        "cache" => (0, 2, 5.0, 0.05),
        _ => (0, 2, 5.0, 0.2),
    }
}

impl ScalingFile {
    /// Fills in the defaults; `concurrency` is the worker's per-class concurrency unless the table says.
    pub fn resolve(&self, worker_concurrency: &BTreeMap<String, usize>) -> ScalingSettings {
        let mut names: Vec<String> = ["image", "video", "cache", "notify"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        names.extend(self.classes.keys().cloned());
        let mut classes = BTreeMap::new();
        for name in names {
            let f = self.classes.get(&name).cloned().unwrap_or_default();
            let (min, max, latency, cost) = class_default(&name);
            let min_workers = f.min_workers.unwrap_or(min);
            let conc = worker_concurrency.get(&name).copied().unwrap_or(1);
            let gpu = name == "video-gpu";
            classes.insert(
                name,
                ClassScaling {
                    min_workers,
                    max_workers: f.max_workers.unwrap_or(max).max(min_workers),
                    target_latency: f.target_latency.unwrap_or(Duration::from_secs_f64(latency)),
                    concurrency: f
                        .concurrency
                        .unwrap_or(u32::try_from(conc).unwrap_or(1))
                        .max(1),
                    default_cost: f.default_cost.unwrap_or(Duration::from_secs_f64(cost)),
                    fallback_to: f.fallback_to.or_else(|| gpu.then(|| "video".to_owned())),
                    fallback_after: f.fallback_after.unwrap_or(Duration::from_secs(60)),
                },
            );
        }
        ScalingSettings {
            classes,
            poll_interval: self.poll_interval.unwrap_or(Duration::from_secs(5)),
            scale_down_window: self.scale_down_window.unwrap_or(Duration::from_secs(120)),
            ewma_alpha: self
                .ewma_alpha
                .filter(|a| *a > 0.0 && *a <= 1.0)
                .unwrap_or(0.2),
            startup: self.startup.unwrap_or(Duration::from_secs(10)),
            status_sample: self
                .status_sample
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(15)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_class_tables_override_defaults() {
        let f: ScalingFile = toml::from_str(
            r#"
            poll_interval = "1s"
            [image]
            max_workers = 3
            target_latency = "2s"
            [video-gpu]
            min_workers = 1
            "#,
        )
        .unwrap();
        let s = f.resolve(&[("image".to_owned(), 4)].into());
        assert_eq!(s.poll_interval, Duration::from_secs(1));
        let img = &s.classes["image"];
        assert_eq!(
            (img.min_workers, img.max_workers, img.concurrency),
            (0, 3, 4)
        );
        assert_eq!(img.target_latency, Duration::from_secs(2));
        assert_eq!(s.classes["video"].target_latency, Duration::from_secs(300));
        assert_eq!(s.classes["video-gpu"].fallback_to.as_deref(), Some("video"));
        assert_eq!(s.classes.len(), 5);
    }

    #[test]
    fn a_typo_in_a_class_table_is_an_error() {
        assert!(toml::from_str::<ScalingFile>("[image]\nmax_worker = 3").is_err());
    }
}
