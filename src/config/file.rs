//! The TOML config file. Every field is optional; missing ones fall back to the defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mediafleet_proto::Profiles;
use mediafleet_workers::Limits;
use serde::Deserialize;

use super::{RabbitSettings, WorkerSettings};

/// `--config FILE`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See `--queue`.
    pub queue: Option<String>,
    /// See `--storage`.
    pub storage: Option<String>,
    /// See `--db`.
    pub db: Option<String>,
    /// See `--db-read`.
    pub db_read: Option<String>,
    /// See `--cache`.
    pub cache: Option<String>,
    /// See `--listen`.
    pub listen: Option<String>,
    /// See `--metrics-listen`.
    pub metrics_listen: Option<String>,
    /// See `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// See `--prefix`.
    pub prefix: Option<String>,
    /// See `--public-url`.
    pub public_url: Option<String>,
    /// `[limits]`.
    #[serde(default)]
    pub limits: Limits,
    /// `[profiles.NAME]`: replaces or adds profiles.
    #[serde(default)]
    pub profiles: Profiles,
    /// `[worker]`.
    #[serde(default)]
    pub worker: WorkerFile,
    /// `[rabbitmq]`.
    #[serde(default, rename = "rabbitmq")]
    pub rabbit: RabbitFile,
    /// Life of presigned URLs, e.g. "15m".
    #[serde(default, with = "humantime_serde")]
    pub presign_ttl: Option<Duration>,
    /// `[uploads]`: direct uploads, the relay, hostile-client limits.
    #[serde(default)]
    pub uploads: super::UploadsFile,
    /// `[auth]`: API keys and rendition access.
    #[serde(default)]
    pub auth: super::AuthFile,
    /// `[webhooks]`: callback allow-list, secret, global URL.
    #[serde(default)]
    pub webhooks: super::WebhooksFile,
    /// `[cache_options]`: TTLs and timeouts of the media object cache.
    #[serde(default)]
    pub cache_options: super::CacheFile,
    /// `[scaling]` and `[scaling.<class>]`.
    #[serde(default)]
    pub scaling: super::ScalingFile,
    /// `[retention]`: how long bookkeeping rows are kept.
    #[serde(default)]
    pub retention: super::RetentionFile,
}

impl FileConfig {
    /// Reads and parses the file.
    pub fn load(path: &Path) -> Result<Self, super::ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            super::ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
        })?;
        toml::from_str(&text).map_err(|e| {
            super::ConfigError::new(
                "--config",
                format!("{}: {}", path.display(), e.to_string().replace('\n', " ")),
            )
        })
    }
}

/// `[worker]` in the TOML file; durations as "30s", "2m".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerFile {
    /// Per-class concurrency, e.g. `{ image = 4, video = 1 }`.
    #[serde(default)]
    pub concurrency: BTreeMap<String, usize>,
    /// See [`WorkerSettings::prefetch`], e.g. `{ image = 1 }`.
    #[serde(default)]
    pub prefetch: BTreeMap<String, usize>,
    /// See [`WorkerSettings::poll_wait`].
    #[serde(default, with = "humantime_serde")]
    pub poll_wait: Option<Duration>,
    /// See [`WorkerSettings::drain_timeout`].
    #[serde(default, with = "humantime_serde")]
    pub drain_timeout: Option<Duration>,
    /// See [`WorkerSettings::max_attempts`].
    pub max_attempts: Option<u32>,
    /// See [`WorkerSettings::retry_base`].
    #[serde(default, with = "humantime_serde")]
    pub retry_base: Option<Duration>,
    /// See [`WorkerSettings::retry_max`].
    #[serde(default, with = "humantime_serde")]
    pub retry_max: Option<Duration>,
    /// See [`WorkerSettings::outage_budget`].
    #[serde(default, with = "humantime_serde")]
    pub outage_budget: Option<Duration>,
    /// See [`WorkerSettings::job_timeout`].
    #[serde(default, with = "humantime_serde")]
    pub job_timeout: Option<Duration>,
    /// See [`WorkerSettings::lease`].
    #[serde(default, with = "humantime_serde")]
    pub lease: Option<Duration>,
    /// See [`WorkerSettings::reaper_interval`].
    #[serde(default, with = "humantime_serde")]
    pub reaper_interval: Option<Duration>,
    /// See [`WorkerSettings::requeue_stale_after`].
    #[serde(default, with = "humantime_serde")]
    pub requeue_stale_after: Option<Duration>,
    /// See [`WorkerSettings::pause_poll`].
    #[serde(default, with = "humantime_serde")]
    pub pause_poll: Option<Duration>,
    /// See [`WorkerSettings::bulk_share`].
    pub bulk_share: Option<f64>,
    /// `false` runs media work in-process (debugging only).
    pub sandbox: Option<bool>,
    /// See [`WorkerSettings::sandbox_exe`].
    pub sandbox_exe: Option<PathBuf>,
    /// See [`WorkerSettings::sandbox_memory_bytes`].
    pub sandbox_memory_bytes: Option<u64>,
    /// See [`WorkerSettings::warm_children`].
    pub warm_children: Option<usize>,
    /// See [`WorkerSettings::scratch_bytes`].
    pub scratch_bytes: Option<u64>,
    /// Embedded queue crash-loop guard.
    pub max_receives: Option<u32>,
}

impl WorkerFile {
    /// Fills in the defaults.
    pub fn resolve(&self) -> WorkerSettings {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut concurrency: BTreeMap<String, usize> = [
            ("image".to_owned(), cores),
            ("video".to_owned(), 1),
            ("cache".to_owned(), 4),
            ("notify".to_owned(), 4),
        ]
        .into();
        concurrency.extend(self.concurrency.clone());
        let mut prefetch: BTreeMap<String, usize> = [("image".to_owned(), 1)].into();
        prefetch.extend(self.prefetch.clone());
        WorkerSettings {
            concurrency,
            prefetch,
            poll_wait: self.poll_wait.unwrap_or(Duration::from_secs(5)),
            drain_timeout: self.drain_timeout.unwrap_or(Duration::from_secs(30)),
            max_attempts: self.max_attempts.unwrap_or(5).max(1),
            retry_base: self.retry_base.unwrap_or(Duration::from_secs(5)),
            retry_max: self.retry_max.unwrap_or(Duration::from_secs(300)),
            outage_budget: self.outage_budget.unwrap_or(Duration::from_secs(3600)),
            job_timeout: self.job_timeout.unwrap_or(Duration::from_secs(600)),
            lease: self.lease.unwrap_or(Duration::from_secs(120)),
            reaper_interval: self.reaper_interval.unwrap_or(Duration::from_secs(60)),
            requeue_stale_after: self
                .requeue_stale_after
                .unwrap_or(Duration::from_secs(6 * 3600)),
            pause_poll: self.pause_poll.unwrap_or(Duration::from_secs(5)),
            bulk_share: self
                .bulk_share
                .filter(|s| s.is_finite())
                .unwrap_or(0.5)
                .clamp(0.0, 1.0),
            sandbox_child: self.sandbox.unwrap_or(true),
            sandbox_exe: self.sandbox_exe.clone(),
            sandbox_memory_bytes: self.sandbox_memory_bytes.unwrap_or(4 << 30),
            warm_children: self.warm_children.unwrap_or(crate::sandbox::WARM_CHILDREN),
            scratch_bytes: self.scratch_bytes,
        }
    }
}

/// `[rabbitmq]` in the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitFile {
    /// Retry tiers, e.g. ["5s", "30s", "5m"].
    #[serde(default)]
    pub retry_tiers: Vec<String>,
    /// Broker delivery limit.
    pub delivery_limit: Option<u32>,
    /// Management API base URL, e.g. http://guest:guest@127.0.0.1:15672.
    pub management_url: Option<String>,
}

impl RabbitFile {
    /// Fills in the defaults.
    pub fn resolve(&self) -> RabbitSettings {
        let tiers: Vec<Duration> = self
            .retry_tiers
            .iter()
            .filter_map(|t| humantime::parse_duration(t).ok())
            .collect();
        RabbitSettings {
            retry_tiers: if tiers.is_empty() {
                vec![
                    Duration::from_secs(5),
                    Duration::from_secs(30),
                    Duration::from_secs(300),
                ]
            } else {
                tiers
            },
            delivery_limit: self.delivery_limit.unwrap_or(20),
            management_url: self.management_url.clone(),
        }
    }
}
