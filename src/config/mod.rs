//! Configuration: flags beat env, env beats the TOML file, the file beats the defaults.
//!
//! clap reads flags and their `MEDIAFLEET_*` env vars into [`CommonArgs`]; [`FileConfig`] is the TOML file;
//! [`Settings::resolve`] merges them into one validated [`Settings`]. Backend URLs are parsed here, once, so a
//! bad one fails at start with a one-line error naming the flag.

mod cache;
mod file;
mod retention;
mod scaling;
mod uploads;
mod urls;

use std::path::PathBuf;
use std::time::Duration;

use mediafleet_proto::Profiles;
use mediafleet_workers::Limits;

pub use cache::{CacheFile, CacheSettings};

/// A setting the process cannot run with: which one (a flag, an environment variable or a file's
/// `[table] key`), and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The flag or `[table] key`.
    pub setting: String,
    /// What is wrong with it, for people.
    pub message: String,
}

impl ConfigError {
    /// An error about `setting`.
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.into(),
            message: message.into(),
        }
    }
}
pub use file::{FileConfig, RabbitFile, WorkerFile};
pub use retention::{RetentionFile, RetentionSettings};
pub use scaling::{ClassScaling, ClassScalingFile, ScalingFile, ScalingSettings};
pub use uploads::{AuthFile, RenditionAccess, UploadSettings, UploadsFile, WebhooksFile};
pub use urls::{CacheUrl, DbUrl, MemcachedServer, QueueUrl, StorageUrl};

/// Flags shared by every subcommand that touches a backend.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML config file.
    #[arg(long, env = "MEDIAFLEET_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Queue backend URL: amqp://…, sqs://?endpoint=…&region=…, or embedded.
    #[arg(long, env = "MEDIAFLEET_QUEUE", global = true)]
    pub queue: Option<String>,
    /// Storage URL: s3://BUCKET?endpoint=…&region=…&path_style=true, or file:///abs/dir.
    #[arg(long, env = "MEDIAFLEET_STORAGE", global = true)]
    pub storage: Option<String>,
    /// Database URL: postgres://… or sqlite:///abs/file.db.
    #[arg(long, env = "MEDIAFLEET_DB", global = true)]
    pub db: Option<String>,
    /// Read-replica database URL for reads on the hot path.
    #[arg(long, env = "MEDIAFLEET_DB_READ", global = true)]
    pub db_read: Option<String>,
    /// Cache URL: redis://host:6379/0, memcached://host:11211[,host2:11211,…], or none.
    #[arg(long, env = "MEDIAFLEET_CACHE", global = true)]
    pub cache: Option<String>,
    /// Life of a cached media object whose media has ended, e.g. 24h (default 7d).
    #[arg(long, env = "MEDIAFLEET_CACHE_TTL", global = true, value_parser = humantime::parse_duration)]
    pub cache_ttl: Option<Duration>,
    /// HTTP listen address (api and serve).
    #[arg(long, env = "MEDIAFLEET_LISTEN", global = true)]
    pub listen: Option<String>,
    /// Listen address for /metrics, /healthz and /readyz on worker processes.
    #[arg(long, env = "MEDIAFLEET_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<String>,
    /// Data directory for the embedded backends and scratch space.
    #[arg(long, env = "MEDIAFLEET_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Names queues, object keys and cache keys, so environments can share servers.
    #[arg(long, env = "MEDIAFLEET_PREFIX", global = true)]
    pub prefix: Option<String>,
    /// Base for absolute URLs in JSON (default: relative paths).
    #[arg(long, env = "MEDIAFLEET_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Do not apply pending DB migrations at start.
    #[arg(long, global = true)]
    pub no_migrate: bool,
}

/// Worker runtime knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    /// Jobs in flight per class in one process.
    pub concurrency: std::collections::BTreeMap<String, usize>,
    /// Deliveries per class taken beyond its concurrency (default: `image` 1, others 0). A prefetched
    /// job does its database and storage steps, fetching its original included, while the class's
    /// `concurrency` media children run, and starts its own child the moment one of them ends; so the cores
    /// never wait on the steps between two children. Media children stay at `concurrency` per class. Long
    /// classes keep 0: a transcode held behind another would wait hours that a worker started by the
    /// scaler could have used.
    pub prefetch: std::collections::BTreeMap<String, usize>,
    /// Longest a receive call waits for messages.
    pub poll_wait: Duration,
    /// How long in-flight jobs may finish after SIGTERM before they are handed back.
    pub drain_timeout: Duration,
    /// Attempts (including the first) before the DLQ.
    pub max_attempts: u32,
    /// First retry delay; later ones grow exponentially with jitter.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How long a job waits out an infrastructure outage before its media fails (default 1 h); waiting
    /// spends no attempt.
    pub outage_budget: Duration,
    /// Wall-clock limit of one job (media child included).
    pub job_timeout: Duration,
    /// Queue lease (visibility) per delivery; heartbeats extend it at half-life.
    pub lease: Duration,
    /// How often the reaper looks for media stuck in `processing`.
    pub reaper_interval: Duration,
    /// How long a media may wait (`queued`, or between a video's stages) untouched and with no unsent job
    /// before the reaper writes its job again (default 6 h: longer than any sane queue backlog, since a
    /// duplicate of a job that is merely waiting costs a second run).
    pub requeue_stale_after: Duration,
    /// How often workers read which classes operators have paused (`ops pause`): a pause or resume takes
    /// effect within this plus one receive wait.
    pub pause_poll: Duration,
    /// The largest share of a class's slots its bulk lane (replays, reprocesses, backfills) may hold, taken
    /// only when the live queue came back empty (default 0.5; at least one slot when above 0; 0 leaves bulk
    /// lanes to workers that list them as classes, e.g. `--classes image-bulk`).
    pub bulk_share: f64,
    /// Run media work in a child process (production) or in-process (debugging).
    pub sandbox_child: bool,
    /// The executable the sandbox runs (`mediafleet`); default: this executable.
    pub sandbox_exe: Option<PathBuf>,
    /// Address-space limit of the media child, in bytes.
    pub sandbox_memory_bytes: u64,
    /// Media children of each executable started ahead of their jobs (0: each starts with its job).
    pub warm_children: usize,
    /// Bytes the jobs of one worker may hold in its scratch directory together (default: 90 % of the free
    /// space there at start). A job reserves [`crate::jobs::scratch_need`] before it downloads its original.
    pub scratch_bytes: Option<u64>,
}

/// RabbitMQ knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct RabbitSettings {
    /// Fixed-TTL retry tiers.
    pub retry_tiers: Vec<Duration>,
    /// Broker-side delivery limit: a safety net against crash loops.
    pub delivery_limit: u32,
    /// Management API base URL for in-flight counts.
    pub management_url: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Queue backend.
    pub queue: QueueUrl,
    /// Storage backend.
    pub storage: StorageUrl,
    /// Primary database.
    pub db: DbUrl,
    /// Optional read replica.
    pub db_read: Option<DbUrl>,
    /// Cache.
    pub cache: CacheUrl,
    /// Cache TTLs and timeouts.
    pub cache_options: CacheSettings,
    /// HTTP listen address.
    pub listen: String,
    /// Metrics listen address.
    pub metrics_listen: Option<String>,
    /// Name prefix.
    pub prefix: String,
    /// Public base URL.
    pub public_url: Option<String>,
    /// Apply migrations at start.
    pub migrate: bool,
    /// Media limits.
    pub limits: Limits,
    /// Profiles by name.
    pub profiles: Profiles,
    /// Worker runtime.
    pub worker: WorkerSettings,
    /// RabbitMQ.
    pub rabbit: RabbitSettings,
    /// Embedded queue: most deliveries of one message before it is dead-lettered (crash-loop guard).
    pub embedded_max_receives: u32,
    /// Life of presigned URLs.
    pub presign_ttl: Duration,
    /// Direct uploads, relay, API keys, rendition access and webhooks.
    pub uploads: UploadSettings,
    /// Queue-depth scaling policy per class (`[scaling]`).
    pub scaling: ScalingSettings,
    /// How long bookkeeping rows are kept (`[retention]`).
    pub retention: RetentionSettings,
}

impl Settings {
    /// Merges flags/env over the TOML file over the defaults.
    pub fn resolve(args: &CommonArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// Merges already-loaded parts (used by tests).
    pub fn merge(args: &CommonArgs, file: FileConfig) -> Result<Settings, ConfigError> {
        let pick =
            |flag: &Option<String>, file: &Option<String>| flag.clone().or_else(|| file.clone());
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./mediafleet-data"));
        let data_dir = std::path::absolute(&data_dir)
            .map_err(|e| ConfigError::new("--data-dir", e.to_string()))?;
        let queue = match pick(&args.queue, &file.queue) {
            Some(s) => QueueUrl::parse(&s)?,
            None => QueueUrl::Embedded,
        };
        let storage = match pick(&args.storage, &file.storage) {
            Some(s) => StorageUrl::parse(&s)?,
            None => StorageUrl::default_for(&data_dir),
        };
        let db = match pick(&args.db, &file.db) {
            Some(s) => DbUrl::parse("--db", &s)?,
            None => DbUrl::default_for(&data_dir),
        };
        let db_read = pick(&args.db_read, &file.db_read)
            .map(|s| DbUrl::parse("--db-read", &s))
            .transpose()?;
        let cache =
            CacheUrl::parse(&pick(&args.cache, &file.cache).unwrap_or_else(|| "none".into()))?;
        let listen = pick(&args.listen, &file.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let prefix = pick(&args.prefix, &file.prefix).unwrap_or_else(|| "mediafleet".into());
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::new(
                "--prefix",
                format!("{prefix:?} must be letters, digits, '-' or '_' (it names queues, keys and buckets)"),
            ));
        }
        let mut profiles = mediafleet_proto::profile::Profile::builtin();
        profiles.extend(file.profiles.clone());
        let mut worker = file.worker.resolve();
        if matches!(queue, QueueUrl::Sqs(_)) && file.worker.poll_wait.is_none() {
            // SQS bills per request: long-poll for the full 20 s (a receive returns as soon as a message comes).
            worker.poll_wait = crate::queue::sqs::MAX_WAIT;
        }
        Ok(Settings {
            queue,
            storage,
            db,
            db_read,
            cache,
            cache_options: file.cache_options.resolve(args.cache_ttl),
            listen,
            metrics_listen: pick(&args.metrics_listen, &file.metrics_listen),
            prefix,
            public_url: pick(&args.public_url, &file.public_url)
                .map(|u| u.trim_end_matches('/').to_owned()),
            migrate: !args.no_migrate,
            limits: file.limits,
            profiles,
            worker,
            rabbit: file.rabbit.resolve(),
            embedded_max_receives: file.worker.max_receives.unwrap_or(20),
            presign_ttl: file.presign_ttl.unwrap_or(Duration::from_secs(15 * 60)),
            uploads: UploadSettings::resolve(&file.uploads, &file.auth, &file.webhooks)?,
            scaling: file.scaling.resolve(&file.worker.resolve().concurrency),
            retention: file.retention.resolve(),
            data_dir,
        })
    }

    /// Scratch space for jobs in flight (one directory per worker process beneath it).
    pub fn scratch_dir(&self) -> PathBuf {
        self.data_dir.join("scratch")
    }

    /// Spool for uploads in flight (one directory per api process beneath it), apart from job scratch.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            queue = "amqp://guest:guest@127.0.0.1:5672/%2f"
            prefix = "fromfile"
            listen = "0.0.0.0:9000"
            [worker]
            max_attempts = 3
            "#,
        )
        .unwrap();
        let args = CommonArgs {
            prefix: Some("fromflag".into()),
            data_dir: Some("/tmp/mf".into()),
            ..Default::default()
        };
        let s = Settings::merge(&args, file).unwrap();
        assert_eq!(s.prefix, "fromflag");
        assert_eq!(s.listen, "0.0.0.0:9000");
        assert!(matches!(s.queue, QueueUrl::Amqp(_)));
        assert_eq!(s.worker.max_attempts, 3);
        assert_eq!(s.db, DbUrl::Sqlite("/tmp/mf/mediafleet.db".into()));
        assert_eq!(s.storage, StorageUrl::Local("/tmp/mf/objects".into()));
        assert!(s.profiles.contains_key("default"));
    }

    #[test]
    fn only_the_image_class_prefetches_by_default() {
        let s = Settings::merge(&CommonArgs::default(), FileConfig::default()).unwrap();
        assert_eq!(s.worker.prefetch.get("image"), Some(&1));
        assert_eq!(s.worker.prefetch.values().sum::<usize>(), 1);
        let file: FileConfig = toml::from_str("[worker.prefetch]\nimage = 0\ncache = 2\n").unwrap();
        let s = Settings::merge(&CommonArgs::default(), file).unwrap();
        assert_eq!(s.worker.prefetch.get("image"), Some(&0));
        assert_eq!(s.worker.prefetch.get("cache"), Some(&2));
    }

    #[test]
    fn bad_url_names_the_flag() {
        let args = CommonArgs {
            queue: Some("nats://x".into()),
            ..Default::default()
        };
        let err = Settings::merge(&args, FileConfig::default()).unwrap_err();
        assert_eq!(err.setting, "--queue", "{err}");
    }
}
