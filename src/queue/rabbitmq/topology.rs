//! Queue and exchange names, queue arguments, and the idempotent declare.
//!
//! Every queue is a durable quorum queue. Messages enter through named exchanges, never the default one, so
//! an operator can see (and re-route) every path in the management UI:
//!
//! | exchange | type | routing key | routes to |
//! |---|---|---|---|
//! | `{p}.work` | direct | `{c}` | `{p}.{c}` |
//! | `{p}.retry` | direct | `{c}.{tier}` | `{p}.{c}.retry.{tier}` |
//! | `{p}.dlx` | direct | `{c}` | `{p}.{c}.dlq` |
//!
//! The work queue dead-letters (delivery limit, reject) into `{p}.dlx`; a retry tier dead-letters (TTL) back
//! into `{p}.work`. Both use `dead-letter-strategy: at-least-once`, which needs `overflow: reject-publish`.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ErrorKind, ExchangeKind};

use crate::queue::{JobClass, QueueError};

/// Names derived from the prefix and the retry tiers.
#[derive(Debug, Clone)]
pub(super) struct Topology {
    prefix: String,
    /// Sorted ascending, deduplicated, never empty.
    tiers: Vec<Duration>,
    delivery_limit: u32,
}

impl Topology {
    /// Builds the naming scheme; an empty tier list falls back to one 5 s tier.
    pub fn new(prefix: &str, tiers: &[Duration], delivery_limit: u32) -> Self {
        let mut tiers: Vec<Duration> = tiers.iter().copied().filter(|d| !d.is_zero()).collect();
        tiers.sort();
        tiers.dedup();
        if tiers.is_empty() {
            tiers.push(Duration::from_secs(5));
        }
        Topology {
            prefix: prefix.to_owned(),
            tiers,
            delivery_limit: delivery_limit.max(1),
        }
    }

    /// `{p}.work`: where jobs are published.
    pub fn work_exchange(&self) -> String {
        format!("{}.work", self.prefix)
    }

    /// `{p}.retry`: where delayed retries are published.
    pub fn retry_exchange(&self) -> String {
        format!("{}.retry", self.prefix)
    }

    /// `{p}.dlx`: dead letters, ours and the broker's.
    pub fn dlx_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// `{p}.{c}`.
    pub fn work_queue(&self, class: &JobClass) -> String {
        format!("{}.{}", self.prefix, class)
    }

    /// `{p}.{c}.dlq`.
    pub fn dlq(&self, class: &JobClass) -> String {
        format!("{}.{}.dlq", self.prefix, class)
    }

    /// The tier label: `30s`, or `500ms` for sub-second tiers.
    fn tier_label(tier: Duration) -> String {
        if tier.subsec_millis() == 0 {
            format!("{}s", tier.as_secs())
        } else {
            format!("{}ms", tier.as_millis())
        }
    }

    /// `{p}.{c}.retry.{tier}` for every tier.
    pub fn retry_queues(&self, class: &JobClass) -> Vec<String> {
        self.tiers
            .iter()
            .map(|t| self.retry_queue(class, *t))
            .collect()
    }

    fn retry_queue(&self, class: &JobClass, tier: Duration) -> String {
        format!("{}.{}.retry.{}", self.prefix, class, Self::tier_label(tier))
    }

    /// The routing key on `{p}.retry` for the smallest tier ≥ `delay` (the largest tier when none is).
    pub fn retry_key(&self, class: &JobClass, delay: Duration) -> String {
        let tier = self
            .tiers
            .iter()
            .copied()
            .find(|t| *t >= delay)
            .unwrap_or(*self.tiers.last().expect("tiers is never empty"));
        format!("{}.{}", class, Self::tier_label(tier))
    }

    /// Declares exchanges, queues and bindings for `class` on `ch`. Idempotent; a queue that exists with
    /// other arguments gives [`QueueError::Conflict`] naming it (and closes `ch`, as AMQP does on 406).
    pub async fn declare(&self, ch: &Channel, class: &JobClass) -> Result<(), QueueError> {
        for ex in [
            self.work_exchange(),
            self.retry_exchange(),
            self.dlx_exchange(),
        ] {
            let opts = ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            };
            ch.exchange_declare(
                ex.as_str().into(),
                ExchangeKind::Direct,
                opts,
                FieldTable::default(),
            )
            .await
            .map_err(|e| declare_error("exchange", &ex, e))?;
        }
        let c = class.as_str();

        let dlq = self.dlq(class);
        self.queue(ch, &dlq, quorum()).await?;
        bind(ch, &dlq, &self.dlx_exchange(), c).await?;

        let work = self.work_queue(class);
        let mut args = quorum();
        dead_letter_to(&mut args, &self.dlx_exchange(), c);
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(self.delivery_limit.into()),
        );
        self.queue(ch, &work, args).await?;
        bind(ch, &work, &self.work_exchange(), c).await?;

        for tier in &self.tiers {
            let name = self.retry_queue(class, *tier);
            let mut args = quorum();
            dead_letter_to(&mut args, &self.work_exchange(), c);
            let ttl = i64::try_from(tier.as_millis()).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
            self.queue(ch, &name, args).await?;
            bind(
                ch,
                &name,
                &self.retry_exchange(),
                &format!("{c}.{}", Self::tier_label(*tier)),
            )
            .await?;
        }
        Ok(())
    }

    async fn queue(&self, ch: &Channel, name: &str, args: FieldTable) -> Result<(), QueueError> {
        ch.queue_declare(name.into(), QueueDeclareOptions::durable(), args)
            .await
            .map(|_| ())
            .map_err(|e| declare_error("queue", name, e))
    }
}

/// `x-queue-type: quorum`.
fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args
}

/// Dead-letter into `exchange` with `key`, at least once (which needs `reject-publish` overflow).
fn dead_letter_to(args: &mut FieldTable, exchange: &str, key: &str) {
    args.insert("x-dead-letter-exchange".into(), long_string(exchange));
    args.insert("x-dead-letter-routing-key".into(), long_string(key));
    args.insert(
        "x-dead-letter-strategy".into(),
        long_string("at-least-once"),
    );
    args.insert("x-overflow".into(), long_string("reject-publish"));
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), QueueError> {
    let key: ShortString = key.into();
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| declare_error("binding of queue", queue, e))
}

/// A string header or argument value.
pub(super) fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Whether the broker answered with this channel-level (soft) error.
pub(super) fn is_soft(e: &lapin::Error, which: AMQPSoftError) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(p) if *p.kind() == AMQPErrorKind::Soft(which))
}

fn declare_error(what: &str, name: &str, e: lapin::Error) -> QueueError {
    if is_soft(&e, AMQPSoftError::PRECONDITIONFAILED) {
        let fix = if what == "exchange" {
            "delete it (management UI or `rabbitmqadmin delete exchange name=…`) or use another --prefix".to_owned()
        } else {
            format!("delete it (rabbitmqctl delete_queue {name}) or use another --prefix")
        };
        QueueError::Conflict(format!(
            "{what} {name} exists with different arguments; {fix} ({e})"
        ))
    } else if is_soft(&e, AMQPSoftError::ACCESSREFUSED) {
        QueueError::Config(format!("declaring {what} {name}: access refused ({e})"))
    } else {
        QueueError::Unavailable(format!("declaring {what} {name}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_key_picks_the_smallest_tier_at_least_the_delay() {
        let secs = Duration::from_secs;
        let t = Topology::new("p", &[secs(300), secs(5), secs(30)], 20);
        let c = JobClass::new("image").unwrap();
        assert_eq!(t.retry_key(&c, secs(1)), "image.5s");
        assert_eq!(t.retry_key(&c, secs(5)), "image.5s");
        assert_eq!(t.retry_key(&c, secs(6)), "image.30s");
        assert_eq!(t.retry_key(&c, secs(3600)), "image.300s");
        assert_eq!(t.retry_key(&c, Duration::ZERO), "image.5s");
        assert_eq!(
            t.retry_queues(&c),
            [
                "p.image.retry.5s",
                "p.image.retry.30s",
                "p.image.retry.300s"
            ]
        );
        let ms = Topology::new("p", &[Duration::from_millis(1500)], 20);
        assert_eq!(ms.retry_queues(&c), ["p.image.retry.1500ms"]);
    }
}
