//! The contract suite's harness: one namespace per test on one backend, independent consumer handles, and the
//! helpers every contract test uses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mediafleet::queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use mediafleet::queue::rabbitmq::{RabbitConfig, RabbitQueue};
use mediafleet::queue::sqs::{SqsConfig, SqsQueue};
use mediafleet::queue::{Delivery, Depth, JobClass, JobQueue, QueueAdmin};
use mediafleet_proto::envelope::CacheWarm;
use mediafleet_proto::{Envelope, Job};

use crate::common;
use crate::common::proxy::Proxy;

pub(crate) const LEASE: Duration = Duration::from_secs(3);
/// Broker-side receive limit (crash-loop guard) configured on every backend.
pub(crate) const MAX_RECEIVES: u32 = 4;
/// Our own attempt limit in the DLQ test.
pub(crate) const MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Backend {
    Embedded,
    Rabbit,
    Sqs,
}

/// One test's namespace on one backend, and a factory of independent consumer handles (separate
/// connections, clients or SQLite pools) on it.
pub(crate) struct Ns {
    pub(crate) backend: Backend,
    pub(crate) prefix: String,
    pub(crate) class: JobClass,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) first: Arc<dyn JobQueue>,
    /// The admin side of `first` (same connection).
    pub(crate) admin: Arc<dyn QueueAdmin>,
}

/// Both sides of one backend value, as `connect::queue_and_admin` hands them out.
fn both<T: JobQueue + QueueAdmin + 'static>(
    backend: T,
) -> (Arc<dyn JobQueue>, Arc<dyn QueueAdmin>) {
    let backend = Arc::new(backend);
    (backend.clone(), backend)
}

impl Ns {
    pub(crate) async fn new(backend: Backend) -> Ns {
        let prefix = common::unique("qc");
        let dir = tempfile::tempdir().unwrap();
        let class = JobClass::new("image").unwrap();
        let (first, admin) = Self::open(backend, &prefix, &dir, None, 3).await;
        if backend == Backend::Sqs {
            admin
                .setup(std::slice::from_ref(&class))
                .await
                .expect("queues setup on moto");
        } else {
            admin
                .declare(std::slice::from_ref(&class))
                .await
                .expect("declare");
        }
        Ns {
            backend,
            prefix,
            class,
            dir,
            first,
            admin,
        }
    }

    pub(crate) async fn open(
        backend: Backend,
        prefix: &str,
        dir: &tempfile::TempDir,
        via: Option<&Proxy>,
        prefetch: u16,
    ) -> (Arc<dyn JobQueue>, Arc<dyn QueueAdmin>) {
        match backend {
            Backend::Embedded => both(
                EmbeddedQueue::open(
                    &dir.path().join("queue.db"),
                    EmbeddedConfig {
                        lease: LEASE,
                        max_receives: MAX_RECEIVES,
                        poll_interval: Duration::from_millis(50),
                    },
                )
                .await
                .expect("embedded queue"),
            ),
            Backend::Rabbit => {
                let mut url = common::amqp_url();
                if let Some(p) = via {
                    url = url.replace("127.0.0.1:5672", &format!("127.0.0.1:{}", p.port));
                }
                both(
                    RabbitQueue::connect(RabbitConfig {
                        url,
                        prefix: prefix.to_owned(),
                        prefetch,
                        class_prefetch: Default::default(),
                        retry_tiers: vec![Duration::from_secs(1), Duration::from_secs(60)],
                        delivery_limit: MAX_RECEIVES,
                        management_url: Some(common::amqp_management_url()),
                    })
                    .await
                    .unwrap_or_else(|e| {
                        panic!("RabbitMQ at {} is required: {e}", common::amqp_url())
                    }),
                )
            }
            Backend::Sqs => {
                common::aws_env();
                let url = url::Url::parse(&format!(
                    "sqs://?endpoint={}&region=us-east-1&max_receive_count={MAX_RECEIVES}",
                    common::s3_endpoint()
                ))
                .unwrap();
                let mut cfg = SqsConfig::from_url(&url, prefix).unwrap();
                cfg.lease = LEASE;
                cfg.max_attempts = MAX_ATTEMPTS;
                both(SqsQueue::connect(cfg).await.expect("sqs client"))
            }
        }
    }

    /// Another consumer on the same queues.
    pub(crate) async fn handle(&self) -> Arc<dyn JobQueue> {
        self.handle_with_prefetch(3).await
    }

    pub(crate) async fn handle_with_prefetch(&self, prefetch: u16) -> Arc<dyn JobQueue> {
        let (q, admin) = Self::open(self.backend, &self.prefix, &self.dir, None, prefetch).await;
        admin
            .declare(std::slice::from_ref(&self.class))
            .await
            .expect("declare/verify");
        q
    }

    /// A consumer whose lease can be made to expire: on RabbitMQ it talks through a proxy that `expire` cuts.
    pub(crate) async fn doomed(&self) -> (Arc<dyn JobQueue>, Option<Proxy>) {
        if self.backend == Backend::Rabbit {
            let proxy = Proxy::start("127.0.0.1:5672").await;
            let (q, admin) =
                Self::open(self.backend, &self.prefix, &self.dir, Some(&proxy), 3).await;
            admin
                .declare(std::slice::from_ref(&self.class))
                .await
                .unwrap();
            (q, Some(proxy))
        } else {
            (self.handle().await, None)
        }
    }

    /// Ends the lease of `d` without an outcome: drop it and wait out the visibility (embedded, SQS), or kill
    /// the consumer's connection for good (RabbitMQ; cut first, so the drop's nack never reaches the broker).
    pub(crate) async fn expire(
        &self,
        d: Box<dyn Delivery>,
        consumer: Arc<dyn JobQueue>,
        proxy: Option<Proxy>,
    ) {
        let rabbit = proxy.is_some();
        drop(proxy); // stops accepting and cuts: the consumer cannot come back for it
        drop(d);
        drop(consumer);
        if rabbit {
            tokio::time::sleep(Duration::from_millis(300)).await;
        } else {
            tokio::time::sleep(LEASE + Duration::from_millis(300)).await;
        }
    }

    /// A consumer leaves (its process exits): on RabbitMQ its connection closes, so nothing more is pushed to
    /// it; elsewhere dropping the handle is enough.
    ///
    /// On RabbitMQ an ack has no reply: the outcome the test just awaited may still be on its way through the
    /// proxy. Cutting at once can lose it (the broker then requeues the message, as it should for a lost ack),
    /// so the consumer gets a second to flush before its connection is cut.
    pub(crate) async fn retire(&self, consumer: Arc<dyn JobQueue>, proxy: Option<Proxy>) {
        let rabbit = proxy.is_some();
        if rabbit {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        drop(consumer);
        drop(proxy);
        if rabbit {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub(crate) async fn cleanup(self) {
        if self.backend == Backend::Rabbit {
            use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
            if let Ok(conn) =
                lapin::Connection::connect(&common::amqp_url(), Default::default()).await
            {
                if let Ok(ch) = conn.create_channel().await {
                    let c = &self.class;
                    for n in [
                        format!("{}.{c}", self.prefix),
                        format!("{}.{c}.dlq", self.prefix),
                        format!("{}.{c}.retry.1s", self.prefix),
                        format!("{}.{c}.retry.60s", self.prefix),
                    ] {
                        let _ = ch
                            .queue_delete(n.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                    for x in ["work", "retry", "dlx"] {
                        let _ = ch
                            .exchange_delete(
                                format!("{}.{x}", self.prefix).as_str().into(),
                                ExchangeDeleteOptions::default(),
                            )
                            .await;
                    }
                }
                let _ = conn.close(200, "test done".into()).await;
            }
        }
    }
}

pub(crate) fn envelope() -> Envelope {
    Envelope::new(
        uuid::Uuid::now_v7(),
        &Job::CacheWarm(CacheWarm { version: 1 }),
    )
}

/// The attempt number the runtime gives a delivery.
pub(crate) fn attempt_of(d: &dyn Delivery) -> u32 {
    let env = Envelope::parse(d.body()).expect("envelope");
    env.attempt + d.delivery_count().saturating_sub(1)
}

/// Receives until `n` deliveries arrived or `within` passed.
pub(crate) async fn receive_n(
    q: &dyn JobQueue,
    class: &JobClass,
    n: usize,
    within: Duration,
) -> Vec<Box<dyn Delivery>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        got.extend(
            q.receive(class, n - got.len(), wait)
                .await
                .expect("receive"),
        );
    }
    got
}

/// Polls `depth` until `ok` holds (broker statistics lag: the management API refreshes every few seconds).
pub(crate) async fn depth_until(
    q: &dyn QueueAdmin,
    class: &JobClass,
    within: Duration,
    ok: impl Fn(&Depth) -> bool,
) -> Depth {
    let deadline = Instant::now() + within;
    loop {
        let d = q.depth(class).await.expect("depth");
        if ok(&d) || Instant::now() > deadline {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
