//! The job envelope: one JSON object per queue message.
//!
//! Parsing happens in two steps. [`Envelope::parse`] checks the JSON and the version; [`Envelope::job`] turns
//! the kind and payload into a typed [`Job`]. Each step fails with a [`ParseError`] whose message is stored as
//! the dead-letter reason, so an operator can see exactly why a message was refused.
//!
//! # Compatibility during a rolling upgrade
//! Fields are added, never renamed or removed, within one [`ENVELOPE_VERSION`]. A reader ignores fields it
//! does not know, in the envelope and in every payload, so a worker one release behind takes messages from a
//! newer producer. Unknown top-level fields are kept in [`Envelope::extra`] and written back on a retry, and
//! the payload travels as raw JSON, so a message that passes through an older worker loses nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::media::MediaId;

/// Envelope field: when the outage a job is waiting out began (RFC 3339); absent when it is not waiting one.
pub const OUTAGE_SINCE: &str = "outage_since";
/// Envelope field: how many times a job was sent back during the current outage.
pub const OUTAGE_RETRIES: &str = "outage_retries";

/// The envelope version this build writes and accepts.
pub const ENVELOPE_VERSION: u32 = 1;

/// One queue message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope format version; only [`ENVELOPE_VERSION`] is accepted.
    pub version: u32,
    /// Unique per enqueue; a retry keeps the job id and bumps `attempt`.
    pub job_id: Uuid,
    /// What to do, e.g. `media.process` (see [`JobKind`]).
    pub kind: String,
    /// The media this job is about.
    pub media_id: MediaId,
    /// 1 for the first delivery of this job; incremented by every retry we schedule ourselves.
    pub attempt: u32,
    /// When the job was first enqueued (RFC 3339).
    pub enqueued_at: DateTime<Utc>,
    /// W3C trace context (`traceparent`, `tracestate`), carried so logs of api and worker join up.
    #[serde(default)]
    pub trace: BTreeMap<String, String>,
    /// The lane the job travels in: `live` (the default, left out on the wire) or `bulk` (replays,
    /// reprocesses and backfills, which workers take only when live work is idle; see [`Lane`]). The stages
    /// and cache warms a job enqueues stay in its lane.
    #[serde(default, skip_serializing_if = "Lane::is_live")]
    pub lane: Lane,
    /// Kind-specific payload; see [`Job`].
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Fields written by a newer producer that this build does not know; kept so a retry re-sends them.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The lane of a job. Every class has two queues: its live lane (`image`) and its bulk lane (`image-bulk`).
/// Uploads travel live; replays, reprocesses and backfills travel bulk, so a backfill of 100 000 media queues
/// behind nothing a user waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// Work someone waits for (uploads).
    #[default]
    Live,
    /// Work nobody waits for (replays, reprocesses, backfills).
    Bulk,
}

impl Lane {
    /// The suffix of a class's bulk-lane queue: `image` → `image-bulk`.
    pub const BULK_SUFFIX: &'static str = "-bulk";

    /// Whether this is the live lane (the wire leaves it out).
    pub fn is_live(&self) -> bool {
        *self == Lane::Live
    }

    /// The wire name: `live` or `bulk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Live => "live",
            Lane::Bulk => "bulk",
        }
    }
}

/// The job kinds this build understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobKind {
    /// Probe an original and make its renditions.
    #[serde(rename = "media.process")]
    MediaProcess,
    /// Assemble the media object into the cache.
    #[serde(rename = "cache.warm")]
    CacheWarm,
    /// Check a directly uploaded original (size, limits, content) before it is processed.
    #[serde(rename = "media.validate")]
    MediaValidate,
    /// POST the media object to a webhook.
    #[serde(rename = "notify.webhook")]
    NotifyWebhook,
}

impl JobKind {
    /// The wire name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::MediaProcess => "media.process",
            JobKind::CacheWarm => "cache.warm",
            JobKind::MediaValidate => "media.validate",
            JobKind::NotifyWebhook => "notify.webhook",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "media.process" => Some(JobKind::MediaProcess),
            "cache.warm" => Some(JobKind::CacheWarm),
            "media.validate" => Some(JobKind::MediaValidate),
            "notify.webhook" => Some(JobKind::NotifyWebhook),
            _ => None,
        }
    }
}

/// Payload of `media.process`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaProcess {
    /// Object-store key of the original.
    pub source_key: String,
    /// Profile name; `default` when absent.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Which part of a video's work this message asks for; absent means all of it (images and audio are
    /// always one stage). See [`Stage`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
}

/// The two halves of a video's `media.process`, so a two-hour transcode never delays thumbnails: the short
/// half runs on the `image` class, the long half on `video`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Probe, limits, `poster` and `thumb`; then enqueue the `transcode` stage on the `video` class.
    Poster,
    /// `mp4-720` and the `hls` ladder; the media becomes `ready` when it ends.
    Transcode,
}

fn default_profile() -> String {
    "default".to_owned()
}

/// Payload of `cache.warm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheWarm {
    /// The media version that triggered the warm; an older object never overwrites a newer one.
    pub version: i64,
}

/// Payload of `media.validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaValidate {
    /// Object-store key the client uploaded to.
    pub source_key: String,
    /// The size the client declared when it asked for the upload URL.
    pub declared_bytes: u64,
    /// Profile name for the processing job that follows.
    #[serde(default = "default_profile")]
    pub profile: String,
}

/// Payload of `notify.webhook`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyWebhook {
    /// Where to POST the media object.
    pub url: String,
    /// The final status being announced (`ready` or `failed`).
    pub status: String,
    /// The media version being announced.
    pub version: i64,
}

/// A typed job, after the envelope has been checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// See [`MediaProcess`].
    MediaProcess(MediaProcess),
    /// See [`CacheWarm`].
    CacheWarm(CacheWarm),
    /// See [`MediaValidate`].
    MediaValidate(MediaValidate),
    /// See [`NotifyWebhook`].
    NotifyWebhook(NotifyWebhook),
}

/// Why a message could not be understood. The `Display` text is the dead-letter reason.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    /// Not JSON, or not an envelope.
    #[error("invalid envelope: {0}")]
    BadJson(String),
    /// A version this build does not speak.
    #[error("unsupported envelope version {0} (this build accepts {ENVELOPE_VERSION})")]
    UnknownVersion(u32),
    /// A kind this build does not know.
    #[error("unknown job kind {0:?}")]
    UnknownKind(String),
    /// The payload does not match the kind.
    #[error("invalid payload for {kind}: {reason}")]
    BadPayload {
        /// The job kind.
        kind: String,
        /// What serde said.
        reason: String,
    },
}

impl Envelope {
    /// Builds a first-attempt envelope for a job.
    pub fn new(media_id: impl Into<MediaId>, job: &Job) -> Self {
        let media_id = media_id.into();
        let (kind, payload) = match job {
            Job::MediaProcess(p) => (JobKind::MediaProcess, serde_json::to_value(p)),
            Job::CacheWarm(p) => (JobKind::CacheWarm, serde_json::to_value(p)),
            Job::MediaValidate(p) => (JobKind::MediaValidate, serde_json::to_value(p)),
            Job::NotifyWebhook(p) => (JobKind::NotifyWebhook, serde_json::to_value(p)),
        };
        Envelope {
            version: ENVELOPE_VERSION,
            job_id: Uuid::now_v7(),
            kind: kind.as_str().to_owned(),
            media_id,
            attempt: 1,
            enqueued_at: Utc::now(),
            trace: BTreeMap::new(),
            lane: Lane::Live,
            payload: payload.unwrap_or(serde_json::Value::Null),
            extra: BTreeMap::new(),
        }
    }

    /// Parses and version-checks a message body.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        // Peek at the version first, so a v2 message is reported as "unsupported version", not as a
        // confusing field error.
        let raw: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ParseError::BadJson(e.to_string()))?;
        match raw.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v != u64::from(ENVELOPE_VERSION) => {
                return Err(ParseError::UnknownVersion(
                    u32::try_from(v).unwrap_or(u32::MAX),
                ))
            }
            _ => {}
        }
        serde_json::from_value(raw).map_err(|e| ParseError::BadJson(e.to_string()))
    }

    /// The typed job.
    pub fn job(&self) -> Result<Job, ParseError> {
        let kind =
            JobKind::parse(&self.kind).ok_or_else(|| ParseError::UnknownKind(self.kind.clone()))?;
        let bad = |e: serde_json::Error| ParseError::BadPayload {
            kind: self.kind.clone(),
            reason: e.to_string(),
        };
        Ok(match kind {
            JobKind::MediaProcess => {
                Job::MediaProcess(serde_json::from_value(self.payload.clone()).map_err(bad)?)
            }
            JobKind::CacheWarm => {
                Job::CacheWarm(serde_json::from_value(self.payload.clone()).map_err(bad)?)
            }
            JobKind::MediaValidate => {
                Job::MediaValidate(serde_json::from_value(self.payload.clone()).map_err(bad)?)
            }
            JobKind::NotifyWebhook => {
                Job::NotifyWebhook(serde_json::from_value(self.payload.clone()).map_err(bad)?)
            }
        })
    }

    /// Serialises the envelope for the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serialises")
    }

    /// The same job, one attempt later (for a retry scheduled by us). An outage clock ends here: the job got
    /// past the infrastructure this time.
    pub fn next_attempt(&self) -> Self {
        let mut next = Envelope {
            attempt: self.attempt.saturating_add(1),
            ..self.clone()
        };
        next.extra.remove(OUTAGE_SINCE);
        next.extra.remove(OUTAGE_RETRIES);
        next
    }

    /// The same job with a full retry budget, as an operator sends it back from the dead-letter queue: attempt
    /// 1 and no outage clock. Everything else (job id, enqueue time, trace, payload, unknown fields) is kept.
    pub fn redriven(&self) -> Self {
        let mut next = Envelope {
            attempt: 1,
            ..self.clone()
        };
        next.extra.remove(OUTAGE_SINCE);
        next.extra.remove(OUTAGE_RETRIES);
        next
    }

    /// When the infrastructure outage this job is waiting out began, if it is waiting one out.
    pub fn outage_since(&self) -> Option<DateTime<Utc>> {
        self.extra
            .get(OUTAGE_SINCE)
            .and_then(|v| v.as_str())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    }

    /// How many times this job was sent back to wait out the current outage.
    pub fn outage_retries(&self) -> u32 {
        self.extra
            .get(OUTAGE_RETRIES)
            .and_then(|v| v.as_u64())
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The same job and attempt, sent back to wait out an outage that began at `since`: infrastructure
    /// failures spend the outage budget, never the media's attempts.
    pub fn waiting_out_outage(&self, since: DateTime<Utc>) -> Self {
        let mut next = self.clone();
        next.extra.insert(
            OUTAGE_SINCE.to_owned(),
            serde_json::Value::String(since.to_rfc3339()),
        );
        next.extra.insert(
            OUTAGE_RETRIES.to_owned(),
            serde_json::Value::from(self.outage_retries().saturating_add(1)),
        );
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let job = Job::MediaProcess(MediaProcess {
            source_key: "mediafleet/originals/x".into(),
            profile: "default".into(),
            stage: Some(Stage::Transcode),
        });
        let env = Envelope::new(Uuid::now_v7(), &job);
        let back = Envelope::parse(&env.to_bytes()).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.job().unwrap(), job);
        assert_eq!(back.next_attempt().attempt, 2);
    }

    #[test]
    fn an_outage_keeps_the_attempt_and_carries_its_clock() {
        let env = Envelope::new(Uuid::now_v7(), &Job::CacheWarm(CacheWarm { version: 1 }));
        assert_eq!(env.outage_since(), None);
        let t0: DateTime<Utc> = "2026-12-02T07:00:00Z".parse().unwrap();
        let w = Envelope::parse(&env.waiting_out_outage(t0).to_bytes()).unwrap();
        let w =
            Envelope::parse(&w.waiting_out_outage(w.outage_since().unwrap()).to_bytes()).unwrap();
        assert_eq!(
            (w.attempt, w.outage_since(), w.outage_retries()),
            (1, Some(t0), 2)
        );
        let next = w.next_attempt();
        assert_eq!(
            (next.attempt, next.outage_since(), next.outage_retries()),
            (2, None, 0)
        );
    }

    #[test]
    fn a_redrive_restores_the_retry_budget_and_keeps_the_rest() {
        let body = br#"{"version":1,"job_id":"0192b3a4-0000-7000-8000-000000000000","kind":"cache.warm",
            "media_id":"0192b3a4-0000-7000-8000-000000000001","attempt":4,"enqueued_at":"2026-12-02T00:00:00Z",
            "priority":"bulk","payload":{"version":3}}"#;
        let env = Envelope::parse(body).unwrap();
        let waiting = env.waiting_out_outage("2026-12-02T07:00:00Z".parse().unwrap());
        let back = Envelope::parse(&waiting.redriven().to_bytes()).unwrap();
        assert_eq!(
            (back.attempt, back.outage_since(), back.outage_retries()),
            (1, None, 0)
        );
        assert_eq!(back, Envelope { attempt: 1, ..env });
    }

    #[test]
    fn refusals_say_why() {
        assert!(matches!(
            Envelope::parse(b"{nope"),
            Err(ParseError::BadJson(_))
        ));
        let v2 = br#"{"version":2,"job_id":"0192b3a4-0000-7000-8000-000000000000"}"#;
        assert_eq!(Envelope::parse(v2), Err(ParseError::UnknownVersion(2)));
        let mut env = Envelope::new(Uuid::now_v7(), &Job::CacheWarm(CacheWarm { version: 1 }));
        env.kind = "media.explode".into();
        let parsed = Envelope::parse(&env.to_bytes()).unwrap();
        assert_eq!(
            parsed.job(),
            Err(ParseError::UnknownKind("media.explode".into()))
        );
        env.kind = "media.process".into();
        let parsed = Envelope::parse(&env.to_bytes()).unwrap();
        assert!(matches!(parsed.job(), Err(ParseError::BadPayload { .. })));
    }

    /// Found by the `envelope` fuzz target (fuzz/regressions/envelope/float-drift.json): without serde_json's
    /// `float_roundtrip`, a number in the payload or in an unknown field moved by one ULP each time an envelope
    /// went through a worker (parse → serialise → parse), so a retry did not carry the producer's value on.
    #[test]
    fn numbers_survive_the_wire_bit_for_bit() {
        let body = br#"{"version":1,"job_id":"0192b3a4-0000-7000-8000-000000000000","kind":"media.process",
            "media_id":"0192b3a4-0000-7000-8000-000000000001","attempt":1,"enqueued_at":"2026-12-02T00:00:00Z",
            "weight":1.4999999999999998e-47,"payload":{"source_key":"o/x","n":1.4999999999999998e-47}}"#;
        let env = Envelope::parse(body).unwrap();
        assert_eq!(env.payload["n"].as_f64(), Some(1.4999999999999998e-47));
        assert_eq!(env.extra["weight"].as_f64(), Some(1.4999999999999998e-47));
        let again = Envelope::parse(&env.to_bytes()).unwrap();
        assert_eq!(again, env);
        let retried = Envelope::parse(&again.next_attempt().to_bytes()).unwrap();
        assert_eq!((retried.payload, retried.extra), (env.payload, env.extra));
    }

    /// A message from a newer producer: a new envelope field and a new payload field. This build takes it,
    /// and a retry it schedules carries both fields on.
    #[test]
    fn newer_producers_fields_are_tolerated_and_kept() {
        let body = br#"{"version":1,"job_id":"0192b3a4-0000-7000-8000-000000000000","kind":"media.process",
            "media_id":"0192b3a4-0000-7000-8000-000000000001","attempt":1,
            "enqueued_at":"2026-12-02T00:00:00Z","priority":"bulk",
            "payload":{"source_key":"o/x","profile":"default","stage":"poster","checksum":"abc"}}"#;
        let env = Envelope::parse(body).expect("an unknown field is not a refusal");
        assert_eq!(env.extra.get("priority"), Some(&serde_json::json!("bulk")));
        let Job::MediaProcess(p) = env.job().expect("an unknown payload field is ignored") else {
            panic!("kind")
        };
        assert_eq!(p.stage, Some(Stage::Poster));
        let again: serde_json::Value =
            serde_json::from_slice(&env.next_attempt().to_bytes()).unwrap();
        assert_eq!(again["priority"], "bulk");
        assert_eq!(again["payload"]["checksum"], "abc");
        assert_eq!(again["attempt"], 2);
        for (name, payload) in [
            ("cache.warm", r#"{"version":3,"new":1}"#),
            (
                "media.validate",
                r#"{"source_key":"k","declared_bytes":1,"new":1}"#,
            ),
            (
                "notify.webhook",
                r#"{"url":"http://x","status":"ready","version":1,"new":1}"#,
            ),
        ] {
            let mut e = env.clone();
            e.kind = name.into();
            e.payload = serde_json::from_str(payload).unwrap();
            e.job().unwrap_or_else(|err| panic!("{name}: {err}"));
        }
    }
}
