//! The connection holder: one AMQP connection, a confirm-mode publishing channel and one consumer channel
//! per class, rebuilt after any connection or channel failure without restarting the process.
//!
//! Every user of the link asks it for a channel; the link checks the connection's status first and, when it
//! is gone (socket closed, broker restarted, heartbeat missed), reconnects with exponential `backon` delays,
//! redeclares the topology of every class declared so far, and bumps a generation counter. Consumers from an
//! older generation are dropped and recreated lazily on the next `receive`. Deliveries taken on a dead
//! channel fail to ack; the broker has already requeued them, so they are simply delivered again.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use tokio::sync::Mutex;

use super::topology::Topology;
use super::RabbitConfig;
use crate::queue::{JobClass, QueueError};

/// How long one TCP + AMQP handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The consumer of one class, on its own channel (so prefetch bounds that class alone).
pub(super) struct ClassConsumer {
    /// Keeps the channel referenced for as long as the consumer lives.
    pub channel: Channel,
    /// The delivery stream; one `receive` at a time reads it.
    pub stream: Mutex<Consumer>,
}

/// What a reconnect replaces.
struct State {
    generation: u64,
    conn: Option<Arc<Connection>>,
    publisher: Option<Channel>,
    consumers: HashMap<JobClass, Arc<ClassConsumer>>,
    /// Cancelled consumers whose channels still carry unacked deliveries.
    draining: Vec<Arc<ClassConsumer>>,
}

/// A self-healing connection to one broker.
pub(super) struct Link {
    pub cfg: RabbitConfig,
    pub topo: Topology,
    state: Mutex<State>,
    /// Classes declared through this link, redeclared after a reconnect (a restarted broker may have lost
    /// non-replicated state, and declaring is idempotent).
    declared: std::sync::Mutex<BTreeSet<JobClass>>,
}

impl Link {
    /// Connects (retrying briefly) and returns the link.
    pub async fn connect(cfg: RabbitConfig) -> Result<Link, QueueError> {
        let topo = Topology::new(&cfg.prefix, &cfg.retry_tiers, cfg.delivery_limit);
        let link = Link {
            cfg,
            topo,
            state: Mutex::new(State {
                generation: 0,
                conn: None,
                publisher: None,
                consumers: HashMap::new(),
                draining: Vec::new(),
            }),
            declared: std::sync::Mutex::new(BTreeSet::new()),
        };
        {
            let mut st = link.state.lock().await;
            link.live(&mut st).await?;
        }
        Ok(link)
    }

    /// Remembers `class` so a reconnect redeclares it.
    pub fn remember(&self, class: &JobClass) {
        self.declared
            .lock()
            .expect("declared set poisoned")
            .insert(class.clone());
    }

    /// The current connection generation (bumped by every reconnect).
    pub async fn generation(&self) -> u64 {
        self.state.lock().await.generation
    }

    /// Whether the connection is up right now, without reconnecting.
    pub async fn is_connected(&self) -> bool {
        let st = self.state.lock().await;
        st.conn.as_ref().is_some_and(|c| c.status().connected())
    }

    /// A new channel on a live connection, for one-off work (declare, passive declare, basic_get) whose
    /// failures close the channel.
    pub async fn fresh_channel(&self) -> Result<Channel, QueueError> {
        let conn = {
            let mut st = self.state.lock().await;
            self.live(&mut st).await?
        };
        conn.create_channel()
            .await
            .map_err(|e| unavailable("opening a channel", &e))
    }

    /// The confirm-mode publishing channel, recreated when it or its connection died.
    pub async fn publisher(&self) -> Result<Channel, QueueError> {
        let mut st = self.state.lock().await;
        let conn = self.live(&mut st).await?;
        if let Some(ch) = st.publisher.as_ref().filter(|c| c.status().connected()) {
            return Ok(ch.clone());
        }
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| unavailable("opening a channel", &e))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| unavailable("enabling publisher confirms", &e))?;
        st.publisher = Some(ch.clone());
        Ok(ch)
    }

    /// The consumer of `class`, created on first use and after any failure.
    pub async fn consumer(&self, class: &JobClass) -> Result<Arc<ClassConsumer>, QueueError> {
        let mut st = self.state.lock().await;
        let conn = self.live(&mut st).await?;
        if let Some(c) = st
            .consumers
            .get(class)
            .filter(|c| c.channel.status().connected())
        {
            return Ok(c.clone());
        }
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| unavailable("opening a channel", &e))?;
        let prefetch = self
            .cfg
            .class_prefetch
            .get(class.as_str())
            .copied()
            .unwrap_or(self.cfg.prefetch);
        ch.basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(|e| unavailable("setting prefetch", &e))?;
        let queue = self.topo.work_queue(class);
        let consumer = ch
            .basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(|e| {
                if super::topology::is_soft(&e, lapin::protocol::AMQPSoftError::NOTFOUND) {
                    QueueError::Config(format!(
                        "queue {queue} does not exist; run `mediafleet queues setup` or declare the class first"
                    ))
                } else {
                    unavailable(&format!("consuming {queue}"), &e)
                }
            })?;
        let c = Arc::new(ClassConsumer {
            channel: ch,
            stream: Mutex::new(consumer),
        });
        st.consumers.insert(class.clone(), c.clone());
        Ok(c)
    }

    /// Cancels `class`'s subscription (`basic.cancel`), if there is one, and returns what the broker had
    /// pushed to it that no `receive` took yet (up to the prefetch), for the caller to hand back: without
    /// that, a paused or draining worker would sit on those messages until its connection closed. Deliveries
    /// already handed out stay ackable on the channel.
    pub async fn cancel_consumer(
        &self,
        class: &JobClass,
    ) -> Result<Vec<lapin::message::Delivery>, QueueError> {
        use futures::StreamExt;
        let c = self.state.lock().await.consumers.remove(class);
        let Some(c) = c else {
            return Ok(Vec::new());
        };
        let mut stream = c.stream.lock().await;
        c.channel
            .basic_cancel(stream.tag(), lapin::options::BasicCancelOptions::default())
            .await
            .map_err(|e| unavailable("cancelling a consumer", &e))?;
        // After cancel-ok nothing more is pushed: the stream yields what it buffered, then ends.
        let mut buffered = Vec::new();
        while let Ok(Some(Ok(d))) =
            tokio::time::timeout(Duration::from_secs(2), stream.next()).await
        {
            buffered.push(d);
        }
        drop(stream);
        // The channel must outlive the deliveries still in flight on it: keep it until the link drops.
        self.state.lock().await.draining.push(c);
        Ok(buffered)
    }

    /// Drops `class`'s consumer if it is still `which` (its stream ended or failed), so the next `receive`
    /// builds a new one.
    pub async fn forget_consumer(&self, class: &JobClass, which: &Arc<ClassConsumer>) {
        let mut st = self.state.lock().await;
        if st
            .consumers
            .get(class)
            .is_some_and(|c| Arc::ptr_eq(c, which))
        {
            st.consumers.remove(class);
        }
    }

    /// The live connection, reconnecting (with backoff) when it is gone.
    async fn live(&self, st: &mut State) -> Result<Arc<Connection>, QueueError> {
        if let Some(conn) = st.conn.as_ref().filter(|c| c.status().connected()) {
            return Ok(conn.clone());
        }
        // Everything on the old connection is dead; dropping it closes what is left.
        st.publisher = None;
        st.consumers.clear();
        st.conn = None;
        let conn = (|| self.open_and_declare())
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(6)
                    .with_jitter(),
            )
            .when(|e| matches!(e, QueueError::Unavailable(_)))
            .notify(|e, d| tracing::warn!(error = %e, retry_in = ?d, "rabbitmq: reconnecting"))
            .await?;
        let conn = Arc::new(conn);
        st.conn = Some(conn.clone());
        st.generation += 1;
        if st.generation > 1 {
            tracing::info!(generation = st.generation, "rabbitmq: reconnected");
        }
        Ok(conn)
    }

    /// One connection attempt, followed by redeclaring the classes declared so far.
    async fn open_and_declare(&self) -> Result<Connection, QueueError> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("mediafleet {}", self.cfg.prefix).into());
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.cfg.url, props))
            .await
            .map_err(|_| {
                QueueError::Unavailable(format!(
                    "connecting to {}: timed out",
                    redact(&self.cfg.url)
                ))
            })?
            .map_err(|e| connect_error(&self.cfg.url, &e))?;
        let classes: Vec<JobClass> = self
            .declared
            .lock()
            .expect("declared set poisoned")
            .iter()
            .cloned()
            .collect();
        if !classes.is_empty() {
            let ch = conn
                .create_channel()
                .await
                .map_err(|e| unavailable("opening a channel", &e))?;
            for class in &classes {
                self.topo.declare(&ch, class).await?;
            }
            let _ = ch.close(200, "declared".into()).await;
        }
        Ok(conn)
    }
}

/// A lapin error as a transient queue error.
pub(super) fn unavailable(ctx: &str, e: &lapin::Error) -> QueueError {
    QueueError::Unavailable(format!("{ctx}: {e}"))
}

fn connect_error(url: &str, e: &lapin::Error) -> QueueError {
    let msg = format!("connecting to {}: {e}", redact(url));
    let refused = matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
        if matches!(p.kind(), lapin::protocol::AMQPErrorKind::Hard(lapin::protocol::AMQPHardError::NOTALLOWED)))
        || e.to_string().contains("ACCESS_REFUSED");
    if refused {
        QueueError::Config(msg)
    } else {
        QueueError::Unavailable(msg)
    }
}

/// The URL without its password, for messages.
pub(super) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<invalid amqp url>".to_owned(),
    }
}
