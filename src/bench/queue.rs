//! `mediafleet bench queue`: no-op jobs through each queue backend, against a raw client doing the same work.
//!
//! For each backend it publishes `--jobs` envelopes, then consumes them with `--concurrency` jobs in flight.
//! Every job makes the same Postgres write (`UPDATE … SET status = 'done'` on its own row), so the figure is
//! what a worker sees, not a broker microbenchmark. Two sides per backend, on the same servers in one run:
//! - ours: `JobQueue::publish_batch`, then a consumer loop shaped like the runtime's puller (a semaphore of
//!   `concurrency` permits, `receive(free permits)`, envelope parsed, one task per job, `ack`);
//! - raw: RabbitMQ with plain lapin (pipelined confirmed publishes; `basic_consume` with prefetch =
//!   concurrency, `ack` per message); SQS with plain aws-sdk-sqs (`SendMessageBatch`; pollers receiving 10 with
//!   `DeleteMessageBatch`). The embedded queue has no raw client; it is printed for scale.
//!
//! On RabbitMQ the two sides alternate for two rounds and each keeps its best figures, so the broker's warm-up
//! on fresh quorum queues does not always land on the side that runs first. It prints jobs/s for publish and
//! consume on each side and the ratio ours ÷ raw.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::Semaphore;

use mediafleet::queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use mediafleet::queue::rabbitmq::{RabbitConfig, RabbitQueue};
use mediafleet::queue::sqs::{SqsConfig, SqsQueue};
use mediafleet::queue::{JobClass, JobQueue, QueueAdmin};
use mediafleet_proto::envelope::CacheWarm;
use mediafleet_proto::{Envelope, Job};

/// Arguments of `bench queue`.
#[derive(Debug, clap::Args)]
pub struct BenchQueueArgs {
    /// Backends to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = ["embedded".to_owned(), "rabbitmq".to_owned(), "sqs".to_owned()])]
    backends: Vec<String>,
    /// Jobs per side on embedded and RabbitMQ.
    #[arg(long, default_value_t = 5000)]
    jobs: usize,
    /// Jobs per side on SQS (moto answers a few hundred requests per second).
    #[arg(long, default_value_t = 1000)]
    sqs_jobs: usize,
    /// Jobs in flight per consumer.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// RabbitMQ URL.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    /// SQS URL.
    #[arg(
        long,
        default_value = "sqs://?endpoint=http://127.0.0.1:5055&region=us-east-1"
    )]
    sqs: String,
    /// Postgres database for the per-job status write.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg: String,
}

/// One side's figures.
#[derive(Debug, Clone, Copy)]
struct Rates {
    publish: f64,
    consume: f64,
}

impl Rates {
    /// The faster of two measurements, figure by figure.
    fn best(self, other: Rates) -> Rates {
        Rates {
            publish: self.publish.max(other.publish),
            consume: self.consume.max(other.consume),
        }
    }
}

/// Runs the benchmark; prints a table on stdout.
pub async fn run(args: BenchQueueArgs) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(args.concurrency).unwrap_or(16).max(2))
        .connect(&args.pg)
        .await
        .with_context(|| format!("connecting to {}", args.pg))?;
    let table = format!("mf_bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!(
        "CREATE UNLOGGED TABLE {table} (id TEXT PRIMARY KEY, status TEXT NOT NULL, updated_at BIGINT)"
    ))
    .execute(&pool)
    .await?;
    let result = run_all(&args, &pool, &table).await;
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await?;
    result
}

async fn run_all(args: &BenchQueueArgs, pool: &PgPool, table: &str) -> anyhow::Result<()> {
    println!(
        "{:<10} {:>6} {:>5} {:>14} {:>14} {:>14} {:>14} {:>9} {:>9}",
        "backend",
        "jobs",
        "conc",
        "ours_pub/s",
        "raw_pub/s",
        "ours_jobs/s",
        "raw_jobs/s",
        "pub_x",
        "jobs_x"
    );
    for backend in &args.backends {
        let (jobs, ours, raw) = match backend.as_str() {
            "embedded" => {
                let dir = tempfile::tempdir()?;
                let q = EmbeddedQueue::open(
                    &dir.path().join("queue.db"),
                    EmbeddedConfig {
                        poll_interval: Duration::from_millis(20),
                        ..EmbeddedConfig::default()
                    },
                )
                .await?;
                let ours = ours(&q, args.jobs, args.concurrency, pool, table).await?;
                (args.jobs, ours, None)
            }
            "rabbitmq" => {
                let prefix = format!("mfbench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
                let mut cfg = RabbitConfig::new(&args.amqp);
                cfg.prefix = prefix.clone();
                cfg.prefetch = u16::try_from(args.concurrency).unwrap_or(16);
                let q = RabbitQueue::connect(cfg).await?;
                // The raw side gets its own queue of the same type and arguments: our consumer keeps its
                // prefetch on `bench` for as long as the connection lives.
                q.declare(&[class(), raw_class()]).await?;
                // Two alternating rounds, best of each: the first pass over fresh quorum queues pays the
                // broker's warm-up, which would otherwise always fall on the side that runs first.
                let raw_queue = format!("{prefix}.rawbench");
                let mut best: Option<(Rates, Rates)> = None;
                for _ in 0..2 {
                    let o = ours(&q, args.jobs, args.concurrency, pool, table).await;
                    let r = raw_lapin(args, &raw_queue, pool, table).await;
                    let (o, r) = match (o, r) {
                        (Ok(o), Ok(r)) => (o, r),
                        (Err(e), _) | (_, Err(e)) => {
                            delete_rabbit(&args.amqp, &prefix).await;
                            return Err(e);
                        }
                    };
                    best = Some(match best {
                        None => (o, r),
                        Some((bo, br)) => (bo.best(o), br.best(r)),
                    });
                }
                delete_rabbit(&args.amqp, &prefix).await;
                let (ours, raw) = best.expect("two rounds ran");
                (args.jobs, ours, Some(raw))
            }
            "sqs" => {
                let prefix = format!("mfbench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
                let url = url::Url::parse(&args.sqs)?;
                let cfg = SqsConfig::from_url(&url, &prefix).map_err(anyhow::Error::msg)?;
                let q = SqsQueue::connect(cfg).await?;
                q.setup(&[class(), raw_class()]).await?;
                let ours = ours(&q, args.sqs_jobs, args.concurrency, pool, table).await?;
                let raw = raw_sqs(args, &q, &format!("{prefix}-rawbench"), pool, table).await;
                for name in ["bench", "bench-dlq", "rawbench", "rawbench-dlq"] {
                    let name = format!("{prefix}-{name}");
                    if let Ok(u) = q.client().get_queue_url().queue_name(name).send().await {
                        let _ = q
                            .client()
                            .delete_queue()
                            .queue_url(u.queue_url().unwrap_or_default())
                            .send()
                            .await;
                    }
                }
                (args.sqs_jobs, ours, Some(raw?))
            }
            other => anyhow::bail!("unknown backend {other:?} (embedded, rabbitmq, sqs)"),
        };
        let ratio = |a: f64, b: Option<f64>| b.map_or("-".to_owned(), |b| format!("{:.2}", a / b));
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        println!(
            "{:<10} {:>6} {:>5} {:>14.0} {:>14} {:>14.0} {:>14} {:>9} {:>9}",
            backend,
            jobs,
            args.concurrency,
            ours.publish,
            show(raw.map(|r| r.publish)),
            ours.consume,
            show(raw.map(|r| r.consume)),
            ratio(ours.publish, raw.map(|r| r.publish)),
            ratio(ours.consume, raw.map(|r| r.consume)),
        );
    }
    Ok(())
}

fn class() -> JobClass {
    JobClass::new("bench").expect("valid class")
}

fn raw_class() -> JobClass {
    JobClass::new("rawbench").expect("valid class")
}

/// Inserts `n` queued rows and returns their envelopes.
async fn seed(pool: &PgPool, table: &str, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    sqlx::query(&format!("TRUNCATE {table}"))
        .execute(pool)
        .await?;
    let mut bodies = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let env = Envelope::new(
            uuid::Uuid::now_v7(),
            &Job::CacheWarm(CacheWarm { version: 1 }),
        );
        ids.push(env.job_id.to_string());
        bodies.push(env.to_bytes());
    }
    for chunk in ids.chunks(1000) {
        let mut qb =
            sqlx::QueryBuilder::<sqlx::Postgres>::new(format!("INSERT INTO {table} (id, status) "));
        qb.push_values(chunk, |mut b, id| {
            b.push_bind(id).push_bind("queued");
        });
        qb.build().execute(pool).await?;
    }
    Ok(bodies)
}

/// The job both sides run: parse the envelope, mark its row done.
async fn job(pool: &PgPool, table: &str, body: &[u8]) -> anyhow::Result<()> {
    let env = Envelope::parse(body)?;
    let n = sqlx::query(&format!(
        "UPDATE {table} SET status = 'done', updated_at = $2 WHERE id = $1"
    ))
    .bind(env.job_id.to_string())
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(pool)
    .await?
    .rows_affected();
    anyhow::ensure!(n == 1, "job {} has no row", env.job_id);
    Ok(())
}

async fn done_count(pool: &PgPool, table: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {table} WHERE status = 'done'"
    ))
    .fetch_one(pool)
    .await?)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

async fn ours(
    q: &dyn JobQueue,
    n: usize,
    concurrency: usize,
    pool: &PgPool,
    table: &str,
) -> anyhow::Result<Rates> {
    let bodies = seed(pool, table, n).await?;
    let c = class();
    let t0 = Instant::now();
    for chunk in bodies.chunks(100) {
        q.publish_batch(&c, chunk).await?;
    }
    let publish = rate(n, t0.elapsed());
    if q.backend() == "rabbitmq" {
        // Start the class consumer (channel, prefetch, basic.consume) before the clock, as the raw side does:
        // a worker pays that once at start, not per job. A zero-length receive only opens it.
        q.receive(&c, 0, Duration::ZERO).await?;
    }
    let permits = Arc::new(Semaphore::new(concurrency));
    let done = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    while done.load(Ordering::Relaxed) < n {
        let first = permits.clone().acquire_owned().await?;
        if done.load(Ordering::Relaxed) >= n {
            break;
        }
        let free = 1 + permits.available_permits();
        let got = q.receive(&c, free, Duration::from_millis(500)).await?;
        let mut first = Some(first);
        for d in got {
            let permit = match first.take() {
                Some(p) => p,
                None => permits.clone().acquire_owned().await?,
            };
            let (pool, table, done) = (pool.clone(), table.to_owned(), done.clone());
            tasks.spawn(async move {
                let r = job(&pool, &table, d.body()).await;
                if r.is_ok() {
                    d.ack().await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
                r
            });
        }
        while let Some(r) = tasks.try_join_next() {
            r??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let consume = rate(n, t0.elapsed());
    anyhow::ensure!(
        done_count(pool, table).await? as usize == n,
        "ours: rows not all done"
    );
    Ok(Rates { publish, consume })
}

async fn raw_lapin(
    args: &BenchQueueArgs,
    queue: &str,
    pool: &PgPool,
    table: &str,
) -> anyhow::Result<Rates> {
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let n = args.jobs;
    let bodies = seed(pool, table, n).await?;
    let conn = Connection::connect(&args.amqp, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let t0 = Instant::now();
    // Pipelined: up to 100 publishes in flight, then wait for their confirms.
    for chunk in bodies.chunks(100) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for body in chunk {
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await?,
            );
        }
        for c in confirms {
            anyhow::ensure!(c.await?.is_ack(), "raw publish nacked");
        }
    }
    let publish = rate(n, t0.elapsed());
    let consumer_ch = conn.create_channel().await?;
    consumer_ch
        .basic_qos(
            u16::try_from(args.concurrency).unwrap_or(16),
            BasicQosOptions::default(),
        )
        .await?;
    let mut consumer = consumer_ch
        .basic_consume(
            queue.into(),
            "raw-bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // Count deliveries taken, not `done + tasks.len()`: a task that has finished but is not joined yet would
    // be counted twice, and the loop would stop before the last deliveries were taken.
    let mut taken = 0;
    while taken < n {
        let Some(d) = consumer.next().await else {
            anyhow::bail!("raw consumer cancelled");
        };
        let d = d?;
        taken += 1;
        let (pool, table) = (pool.clone(), table.to_owned());
        tasks.spawn(async move {
            job(&pool, &table, &d.data).await?;
            d.acker.ack(BasicAckOptions::default()).await?;
            anyhow::Ok(())
        });
        while let Some(r) = tasks.try_join_next() {
            r??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let consume = rate(n, t0.elapsed());
    let _ = conn.close(200, "bench done".into()).await;
    anyhow::ensure!(
        done_count(pool, table).await? as usize == n,
        "raw: rows not all done"
    );
    Ok(Rates { publish, consume })
}

async fn raw_sqs(
    args: &BenchQueueArgs,
    ours: &SqsQueue,
    queue: &str,
    pool: &PgPool,
    table: &str,
) -> anyhow::Result<Rates> {
    use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};

    let n = args.sqs_jobs;
    let client = ours.client().clone();
    let url = client
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let bodies = seed(pool, table, n).await?;
    let t0 = Instant::now();
    for chunk in bodies.chunks(10) {
        let mut req = client.send_message_batch().queue_url(&url);
        for (i, b) in chunk.iter().enumerate() {
            req = req.entries(
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(String::from_utf8_lossy(b))
                    .build()?,
            );
        }
        let out = req.send().await?;
        anyhow::ensure!(out.failed().is_empty(), "raw send_message_batch failed");
    }
    let publish = rate(n, t0.elapsed());
    // ceil(concurrency / 10) pollers, each running up to 10 jobs at once, then one batch delete.
    let pollers = args.concurrency.div_ceil(10).max(1);
    let done = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..pollers {
        let (client, url, pool, table, done) = (
            client.clone(),
            url.clone(),
            pool.clone(),
            table.to_owned(),
            done.clone(),
        );
        let per = args.concurrency.div_ceil(pollers).min(10);
        tasks.spawn(async move {
            while done.load(Ordering::Relaxed) < n {
                let out = client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(i32::try_from(per).unwrap_or(10))
                    .wait_time_seconds(1)
                    .visibility_timeout(120)
                    .send()
                    .await?;
                let messages = out.messages.unwrap_or_default();
                if messages.is_empty() {
                    continue;
                }
                let jobs = messages
                    .iter()
                    .map(|m| job(&pool, &table, m.body().unwrap_or_default().as_bytes()));
                for r in futures::future::join_all(jobs).await {
                    r?;
                }
                let mut del = client.delete_message_batch().queue_url(&url);
                for (i, m) in messages.iter().enumerate() {
                    del = del.entries(
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .build()?,
                    );
                }
                del.send().await?;
                done.fetch_add(messages.len(), Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let consume = rate(n, t0.elapsed());
    anyhow::ensure!(
        done_count(pool, table).await? as usize == n,
        "raw sqs: rows not all done"
    );
    Ok(Rates { publish, consume })
}

async fn delete_rabbit(amqp: &str, prefix: &str) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(conn) = lapin::Connection::connect(amqp, Default::default()).await else {
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        for class in ["bench", "rawbench"] {
            let mut names = vec![format!("{prefix}.{class}"), format!("{prefix}.{class}.dlq")];
            names.extend(["5s", "30s", "300s"].map(|t| format!("{prefix}.{class}.retry.{t}")));
            for q in names {
                let _ = ch
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        for x in ["work", "retry", "dlx"] {
            let _ = ch
                .exchange_delete(
                    format!("{prefix}.{x}").as_str().into(),
                    ExchangeDeleteOptions::default(),
                )
                .await;
        }
    }
    let _ = conn.close(200, "bench done".into()).await;
}
