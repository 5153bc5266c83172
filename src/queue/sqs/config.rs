//! `sqs://?endpoint=…&region=…` → [`SqsConfig`], and the queue names of a class.

use std::time::Duration;

use crate::queue::{JobClass, QueueError};

/// SQS's cap on one long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// SQS's cap on the total invisibility of one received message.
pub const VISIBILITY_CAP: Duration = Duration::from_secs(12 * 3600);
/// SQS's longest per-message `DelaySeconds`; a longer retry delay is cut to it.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// Default `maxReceiveCount` of the redrive policy: far above our own attempt limit, so that an S3 or DB outage
/// (every receive fails transiently) does not dead-letter the whole backlog; it only catches crash loops.
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 30;
/// 14 days, SQS's longest retention, for the work queues and the DLQs.
const RETENTION_SECONDS: u32 = 14 * 24 * 3600;

/// What [`super::SqsQueue::connect`] needs. Credentials are not here: they come from the standard AWS chain.
#[derive(Debug, Clone, PartialEq)]
pub struct SqsConfig {
    /// Endpoint override (`http://127.0.0.1:5055` for moto, ElasticMQ…); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region; `None` takes the AWS chain's, else `us-east-1`.
    pub region: Option<String>,
    /// Queue name prefix: `{prefix}-{class}` and `{prefix}-{class}-dlq`.
    pub prefix: String,
    /// Visibility given at receive; the worker heartbeat extends it at half-life.
    pub lease: Duration,
    /// Longest long poll (at most 20 s).
    pub max_wait: Duration,
    /// `maxReceiveCount` that `queues setup` writes into the redrive policy.
    pub max_receive_count: u32,
    /// Our own attempt limit; start-up refuses a redrive policy that would dead-letter before it.
    pub max_attempts: u32,
}

impl SqsConfig {
    /// Defaults for `prefix`: AWS endpoint and region chain, 120 s lease, 20 s long polls.
    pub fn new(prefix: &str) -> Self {
        SqsConfig {
            endpoint: None,
            region: None,
            prefix: prefix.to_owned(),
            lease: Duration::from_secs(120),
            max_wait: MAX_WAIT,
            max_receive_count: DEFAULT_MAX_RECEIVE_COUNT,
            max_attempts: 5,
        }
    }

    /// Parses `sqs://?endpoint=…&region=…[&max_receive_count=N][&wait_time_seconds=N]`.
    pub fn from_url(url: &url::Url, prefix: &str) -> Result<SqsConfig, String> {
        if url.scheme() != "sqs" {
            return Err(format!(
                "queue url {url}: expected sqs://?endpoint=…&region=…"
            ));
        }
        let mut cfg = SqsConfig::new(prefix);
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "endpoint" => {
                    url::Url::parse(&v).map_err(|e| format!("queue url: endpoint {v:?}: {e}"))?;
                    cfg.endpoint = Some(v.into_owned());
                }
                "region" => cfg.region = Some(v.into_owned()),
                "max_receive_count" => {
                    cfg.max_receive_count = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            format!("queue url: max_receive_count {v:?}: expected 1..=1000")
                        })?
                }
                "wait_time_seconds" => {
                    let s: u64 = v.parse().ok().filter(|n| *n <= 20).ok_or_else(|| {
                        format!("queue url: wait_time_seconds {v:?}: expected 0..=20")
                    })?;
                    cfg.max_wait = Duration::from_secs(s);
                }
                other => {
                    return Err(format!(
                        "queue url: unknown parameter {other:?} (known: endpoint, region, max_receive_count, \
                         wait_time_seconds)"
                    ))
                }
            }
        }
        Ok(cfg)
    }

    /// The work queue of `class`.
    pub fn work_queue(&self, class: &JobClass) -> String {
        format!("{}-{}", self.prefix, class)
    }

    /// The dead-letter queue of `class`.
    pub fn dlq(&self, class: &JobClass) -> String {
        format!("{}-{}-dlq", self.prefix, class)
    }

    /// Checks the names of `class` are valid SQS queue names (letters, digits, `-`, `_`; 80 characters).
    pub fn check_names(&self, class: &JobClass) -> Result<(), QueueError> {
        let name = self.dlq(class);
        if name.len() > 80
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(QueueError::Config(format!(
                "SQS queue name {name:?} is invalid: SQS allows letters, digits, '-' and '_' (80 at most); \
                 change --prefix"
            )));
        }
        Ok(())
    }

    /// The redrive policy `queues setup` writes.
    pub fn redrive_policy(&self, dlq_arn: &str) -> String {
        serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": self.max_receive_count,
        })
        .to_string()
    }

    /// Retention of work queues and DLQs, in seconds.
    pub fn retention_seconds(&self) -> u32 {
        RETENTION_SECONDS
    }
}

/// Whole seconds for an SQS visibility or wait, rounding up so a short delay is never zero.
pub fn secs(d: Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form() {
        let url =
            url::Url::parse("sqs://?endpoint=http://127.0.0.1:5055&region=us-east-1").unwrap();
        let cfg = SqsConfig::from_url(&url, "mf").unwrap();
        assert_eq!(cfg.endpoint.as_deref(), Some("http://127.0.0.1:5055"));
        assert_eq!(cfg.region.as_deref(), Some("us-east-1"));
        let class = JobClass::new("image").unwrap();
        assert_eq!(cfg.work_queue(&class), "mf-image");
        assert_eq!(cfg.dlq(&class), "mf-image-dlq");
        assert!(cfg.check_names(&class).is_ok());
    }

    #[test]
    fn refuses_unknown_parameters_and_bad_prefixes() {
        let url = url::Url::parse("sqs://?regoin=x").unwrap();
        assert!(SqsConfig::from_url(&url, "mf")
            .unwrap_err()
            .contains("regoin"));
        let cfg = SqsConfig::new("my.prefix");
        let err = cfg
            .check_names(&JobClass::new("image").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("--prefix"), "{err}");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(secs(Duration::from_millis(1)), 1);
        assert_eq!(secs(Duration::from_secs(2)), 2);
        assert_eq!(secs(Duration::ZERO), 0);
    }
}
