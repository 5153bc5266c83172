//! `[retention]`: how long bookkeeping rows are kept before the retention job removes them.

use std::time::Duration;

use serde::Deserialize;

/// `[retention]` in the TOML file; every age is a humantime duration (`"30d"`, `"12h"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// See [`RetentionSettings::interval`].
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// See [`RetentionSettings::attempts`].
    #[serde(default, with = "humantime_serde")]
    pub attempts: Option<Duration>,
    /// See [`RetentionSettings::idempotency`].
    #[serde(default, with = "humantime_serde")]
    pub idempotency: Option<Duration>,
    /// See [`RetentionSettings::tombstones`].
    #[serde(default, with = "humantime_serde")]
    pub tombstones: Option<Duration>,
    /// See [`RetentionSettings::dead_letters`].
    #[serde(default, with = "humantime_serde")]
    pub dead_letters: Option<Duration>,
    /// See [`RetentionSettings::audit`].
    #[serde(default, with = "humantime_serde")]
    pub audit: Option<Duration>,
}

/// What the retention job removes, and how often it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetentionSettings {
    /// How often it runs (default 1 h). Every worker runs it; a pass is a few bounded deletes.
    pub interval: Duration,
    /// Job attempts of media that ended (ready, failed, deleted) longer ago than this (default 30 days).
    pub attempts: Duration,
    /// Idempotency keys older than this (default 7 days: a client retries within hours, not weeks).
    pub idempotency: Duration,
    /// Deleted media rows (tombstones) and their rendition rows, deleted longer ago than this (default 30
    /// days). Until then a repeated DELETE answers 200 and the id cannot come back.
    pub tombstones: Duration,
    /// Dead letters of the embedded queue older than this (default 14 days). RabbitMQ and SQS dead-letter
    /// queues keep theirs by the broker's own rules (SQS: the queue's retention period).
    pub dead_letters: Duration,
    /// Audit log entries older than this (default 365 days).
    pub audit: Duration,
}

const DAY: Duration = Duration::from_secs(86_400);

impl RetentionFile {
    /// Fills in the defaults.
    pub fn resolve(&self) -> RetentionSettings {
        RetentionSettings {
            interval: self.interval.unwrap_or(Duration::from_secs(3600)),
            attempts: self.attempts.unwrap_or(30 * DAY),
            idempotency: self.idempotency.unwrap_or(7 * DAY),
            tombstones: self.tombstones.unwrap_or(30 * DAY),
            dead_letters: self.dead_letters.unwrap_or(14 * DAY),
            audit: self.audit.unwrap_or(365 * DAY),
        }
    }
}
