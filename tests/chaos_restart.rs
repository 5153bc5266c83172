//! Server restarts under load, on private servers of the test's own (the shared ones are never touched):
//! - a RabbitMQ node's `rabbitmqctl stop_app` / `start_app` while uploads flow (RabbitMQ + moto + Postgres);
//! - a Postgres `pg_ctl restart` while uploads flow (RabbitMQ + moto + Postgres);
//! - Postgres stopped for 120 s while uploads flow, on SQS (moto) + moto S3 + Postgres.
//!
//! Each strikes once a third of the uploads is accepted; the client retries a refused upload under its
//! `Idempotency-Key`. Each prints `lost=… duplicated=… orphaned=…` and asserts zeros. The load is 300 uploads
//! (`CHAOS_UPLOADS` overrides), the outage 120 s (`CHAOS_OUTAGE_SECS` overrides).

mod common;

use std::time::{Duration, Instant};

use common::chaos::{attempts_spent, count, load, send_uploads, wait_accepted, IMAGES};
use common::fleet::{sqs_url, start_fleet_opts, start_fleet_with, FleetOpts};
use common::servers::{PrivatePostgres, PrivateRabbit};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rabbitmq_restart_while_uploads_flow_loses_nothing() {
    let started = Instant::now();
    let rabbit = std::sync::Arc::new(PrivateRabbit::start());
    let (bucket, storage) = moto_bucket().await;
    let f = start_fleet_with(rabbit.url(), Some(storage), vec![], "").await;
    let n = load(300);
    let base = f.base.clone();
    let sender =
        tokio::spawn(
            async move { send_uploads(&base, &IMAGES, n, 4, Duration::from_secs(120)).await },
        );
    wait_accepted(&f, n / 3, Duration::from_secs(120)).await;
    let r = rabbit.clone();
    tokio::task::spawn_blocking(move || r.restart_app(Duration::from_secs(5)))
        .await
        .unwrap();
    eprintln!("RabbitMQ restarted (5 s down) at {:?}", started.elapsed());
    let (ids, refused) = sender.await.unwrap();
    let c = count(&f, &bucket, &ids, Duration::from_secs(300)).await;
    println!(
        "{c} uploads={} refused_tries={refused} attempts_spent={} wall={:?}",
        ids.len(),
        attempts_spent(&f).await,
        started.elapsed()
    );
    c.assert_zero();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_while_uploads_flow_loses_nothing() {
    let started = Instant::now();
    let pg = std::sync::Arc::new(PrivatePostgres::start());
    let db = pg.database().await;
    let (bucket, storage) = moto_bucket().await;
    let f = start_fleet_opts(FleetOpts {
        storage: Some(storage),
        db: Some(db),
        ..FleetOpts::on(amqp_url())
    })
    .await;
    let n = load(300);
    let base = f.base.clone();
    let sender =
        tokio::spawn(
            async move { send_uploads(&base, &IMAGES, n, 4, Duration::from_secs(120)).await },
        );
    wait_accepted(&f, n / 3, Duration::from_secs(120)).await;
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.restart())
        .await
        .unwrap();
    eprintln!("Postgres restarted at {:?}", started.elapsed());
    let (ids, refused) = sender.await.unwrap();
    let c = count(&f, &bucket, &ids, Duration::from_secs(300)).await;
    println!(
        "{c} uploads={} refused_tries={refused} attempts_spent={} wall={:?}",
        ids.len(),
        attempts_spent(&f).await,
        started.elapsed()
    );
    c.assert_zero();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_postgres_outage_on_sqs_loses_nothing_and_spends_no_attempt() {
    let started = Instant::now();
    let outage = Duration::from_secs(
        std::env::var("CHAOS_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    );
    let pg = std::sync::Arc::new(PrivatePostgres::start());
    let db = pg.database().await;
    let (bucket, storage) = moto_bucket().await;
    let f = start_fleet_opts(FleetOpts {
        storage: Some(storage),
        db: Some(db),
        ..FleetOpts::on(sqs_url())
    })
    .await;
    let n = load(300);
    let base = f.base.clone();
    let within = outage + Duration::from_secs(120);
    let sender = tokio::spawn(async move { send_uploads(&base, &IMAGES, n, 4, within).await });
    wait_accepted(&f, n / 3, Duration::from_secs(120)).await;
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.stop()).await.unwrap();
    eprintln!("Postgres stopped at {:?}", started.elapsed());
    tokio::time::sleep(outage).await;
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.start_again())
        .await
        .unwrap();
    eprintln!("Postgres back after {outage:?}, at {:?}", started.elapsed());
    let (ids, refused) = sender.await.unwrap();
    let c = count(&f, &bucket, &ids, Duration::from_secs(300)).await;
    let spent = attempts_spent(&f).await;
    println!(
        "{c} uploads={} refused_tries={refused} attempts_spent={spent} outage={outage:?} wall={:?}",
        ids.len(),
        started.elapsed()
    );
    c.assert_zero();
    assert_eq!(spent, 0, "the outage spent attempts");
}
