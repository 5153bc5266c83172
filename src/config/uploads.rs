//! `[uploads]`, `[auth]` and `[webhooks]`: direct uploads, the outbox relay, API keys, rendition access and
//! webhooks. Secrets may also come from `MEDIAFLEET_SIGNING_SECRET` and `MEDIAFLEET_WEBHOOK_SECRET`, so they
//! need not sit in a file.

use std::time::Duration;

use serde::Deserialize;

/// `[uploads]` in the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsFile {
    /// Above this declared size, presign answers a multipart upload (default 100 MiB).
    pub multipart_threshold: Option<u64>,
    /// Part size of presigned multipart uploads (default 16 MiB; S3's minimum is 5 MiB).
    pub part_size: Option<u64>,
    /// How long a presigned upload may stay incomplete before the sweep deletes it (default 24h).
    #[serde(default, with = "humantime_serde")]
    pub expire_after: Option<Duration>,
    /// Uploads streamed through the api at once; more get 503 (default 64).
    pub max_concurrent: Option<usize>,
    /// Longest gap between two chunks of an upload body before it is cut off (default 30s).
    #[serde(default, with = "humantime_serde")]
    pub body_idle_timeout: Option<Duration>,
    /// Slowest average rate of an upload body, in bytes per second, once `min_rate_grace` has passed
    /// (default 8192). A client trickling bytes just fast enough to beat the idle timeout holds a slot.
    pub min_rate: Option<u64>,
    /// Time an upload gets before its average rate is checked (default 10s).
    #[serde(default, with = "humantime_serde")]
    pub min_rate_grace: Option<Duration>,
    /// Longest one upload body may take in all (default 1h).
    #[serde(default, with = "humantime_serde")]
    pub body_deadline: Option<Duration>,
    /// Longest a client may take to send its request headers (default 10s).
    #[serde(default, with = "humantime_serde")]
    pub header_timeout: Option<Duration>,
    /// How often the relay looks for outbox rows when nothing woke it (default 1s).
    #[serde(default, with = "humantime_serde")]
    pub relay_interval: Option<Duration>,
    /// Bytes the upload spool may hold at once, all uploads in flight together (default: 90 % of the free
    /// space on the spool's filesystem when the api starts). An upload that would pass it is cut off: 413 if
    /// it could never fit, else 503 to retry.
    pub spool_bytes: Option<u64>,
}

/// `[auth]` in the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// Require API keys even on a loopback address.
    pub require_keys: Option<bool>,
    /// `public` (default) or `private` rendition access.
    pub renditions: Option<String>,
    /// HMAC secret for signed rendition URLs.
    pub signing_secret: Option<String>,
    /// Failed API-key checks allowed per client address per minute (a burst of that many), after which its
    /// requests with a key answer 429 without touching the database; 0 turns the limit off (default 30).
    pub failed_auth_per_minute: Option<u32>,
    /// Take the client address from the last `X-Forwarded-For` hop (behind a trusted load balancer).
    pub trust_forwarded_for: Option<bool>,
}

/// `[webhooks]` in the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksFile {
    /// Global callback URL for uploads that name none.
    pub url: Option<String>,
    /// HMAC secret of `Mediafleet-Signature`.
    pub secret: Option<String>,
    /// Hosts callbacks may go to: exact names, or `*.example.com`.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Allow private (RFC 1918, ULA) addresses.
    pub allow_private: Option<bool>,
    /// Allow loopback addresses (tests).
    pub allow_loopback: Option<bool>,
    /// Per-request timeout (default 10s).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// Who may fetch renditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenditionAccess {
    /// Anyone with the stable URL.
    Public,
    /// An API key, or a query signed with the signing secret.
    Private,
}

/// The resolved upload, auth and webhook settings.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// See [`UploadsFile::multipart_threshold`].
    pub multipart_threshold: u64,
    /// See [`UploadsFile::part_size`].
    pub part_size: u64,
    /// See [`UploadsFile::expire_after`].
    pub expire_after: Duration,
    /// See [`UploadsFile::max_concurrent`].
    pub max_concurrent: usize,
    /// See [`UploadsFile::body_idle_timeout`].
    pub body_idle_timeout: Duration,
    /// See [`UploadsFile::min_rate`].
    pub min_rate: u64,
    /// See [`UploadsFile::min_rate_grace`].
    pub min_rate_grace: Duration,
    /// See [`UploadsFile::body_deadline`].
    pub body_deadline: Duration,
    /// See [`UploadsFile::header_timeout`].
    pub header_timeout: Duration,
    /// See [`UploadsFile::relay_interval`].
    pub relay_interval: Duration,
    /// See [`UploadsFile::spool_bytes`] (`None`: measured from the disk at start).
    pub spool_bytes: Option<u64>,
    /// See [`AuthFile::require_keys`].
    pub require_keys: bool,
    /// See [`AuthFile::renditions`].
    pub renditions: RenditionAccess,
    /// See [`AuthFile::signing_secret`].
    pub signing_secret: Option<String>,
    /// See [`AuthFile::failed_auth_per_minute`].
    pub failed_auth_per_minute: u32,
    /// See [`AuthFile::trust_forwarded_for`].
    pub trust_forwarded_for: bool,
    /// See [`WebhooksFile::url`].
    pub webhook_url: Option<String>,
    /// See [`WebhooksFile::secret`].
    pub webhook_secret: Option<String>,
    /// See [`WebhooksFile::allow_hosts`].
    pub webhook_allow_hosts: Vec<String>,
    /// See [`WebhooksFile::allow_private`].
    pub webhook_allow_private: bool,
    /// See [`WebhooksFile::allow_loopback`].
    pub webhook_allow_loopback: bool,
    /// See [`WebhooksFile::timeout`].
    pub webhook_timeout: Duration,
}

const MIB: u64 = 1024 * 1024;

impl UploadSettings {
    /// Fills in the defaults and checks the combination.
    pub fn resolve(
        u: &UploadsFile,
        a: &AuthFile,
        w: &WebhooksFile,
    ) -> Result<Self, super::ConfigError> {
        use super::ConfigError;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let renditions = match a.renditions.as_deref().unwrap_or("public") {
            "public" => RenditionAccess::Public,
            "private" => RenditionAccess::Private,
            other => {
                return Err(ConfigError::new(
                    "[auth] renditions",
                    format!("{other:?}: use \"public\" or \"private\""),
                ))
            }
        };
        let signing_secret = env("MEDIAFLEET_SIGNING_SECRET").or(a.signing_secret.clone());
        if renditions == RenditionAccess::Private && signing_secret.is_none() {
            return Err(ConfigError::new(
                "[auth] renditions",
                "\"private\" needs signing_secret (or MEDIAFLEET_SIGNING_SECRET) to sign rendition URLs",
            ));
        }
        let webhook_secret = env("MEDIAFLEET_WEBHOOK_SECRET").or(w.secret.clone());
        if w.url.is_some() && webhook_secret.is_none() {
            return Err(ConfigError::new(
                "[webhooks] url",
                "needs a secret (or MEDIAFLEET_WEBHOOK_SECRET) to sign deliveries",
            ));
        }
        let part_size = u.part_size.unwrap_or(16 * MIB);
        if part_size < 5 * MIB {
            return Err(ConfigError::new(
                "[uploads] part_size",
                format!("{part_size}: S3 parts must be at least 5 MiB"),
            ));
        }
        Ok(UploadSettings {
            multipart_threshold: u.multipart_threshold.unwrap_or(100 * MIB),
            part_size,
            expire_after: u.expire_after.unwrap_or(Duration::from_secs(24 * 3600)),
            max_concurrent: u.max_concurrent.unwrap_or(64).max(1),
            body_idle_timeout: u.body_idle_timeout.unwrap_or(Duration::from_secs(30)),
            min_rate: u.min_rate.unwrap_or(8 * 1024),
            min_rate_grace: u.min_rate_grace.unwrap_or(Duration::from_secs(10)),
            body_deadline: u.body_deadline.unwrap_or(Duration::from_secs(3600)),
            header_timeout: u.header_timeout.unwrap_or(Duration::from_secs(10)),
            relay_interval: u.relay_interval.unwrap_or(Duration::from_secs(1)),
            spool_bytes: u.spool_bytes,
            require_keys: a.require_keys.unwrap_or(false),
            renditions,
            signing_secret,
            failed_auth_per_minute: a.failed_auth_per_minute.unwrap_or(30),
            trust_forwarded_for: a.trust_forwarded_for.unwrap_or(false),
            webhook_url: w.url.clone(),
            webhook_secret,
            webhook_allow_hosts: w.allow_hosts.clone(),
            webhook_allow_private: w.allow_private.unwrap_or(false),
            webhook_allow_loopback: w.allow_loopback.unwrap_or(false),
            webhook_timeout: w.timeout.unwrap_or(Duration::from_secs(10)),
        })
    }
}
