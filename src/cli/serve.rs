//! `serve`, `api` and `worker`: the long-running processes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{ApiSettings, AppState};
use crate::config::Settings;
use crate::jobs::JobContext;
use crate::jobs::{run_reaper, MediaHandler, RetryPolicy};
use crate::queue::JobClass;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::sandbox::Sandbox;
use crate::scale::history::{History, Sampler};

/// Worker flags.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Classes to serve (default: image,video,cache,notify).
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Jobs in flight per class (default: per class from config; image = cores, video = 1).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Time in-flight jobs get to finish after SIGTERM before they are handed back.
    #[arg(long, value_parser = humantime::parse_duration)]
    drain_timeout: Option<Duration>,
}

/// Cancels the token on SIGTERM or SIGINT.
pub(super) fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
        }
        t.cancel();
    });
    token
}

fn worker_classes(s: &Settings, w: &WorkerArgs) -> anyhow::Result<Vec<(JobClass, usize)>> {
    let names: Vec<String> = if w.classes.is_empty() {
        JobClass::STANDARD.iter().map(|c| c.to_string()).collect()
    } else {
        w.classes.clone()
    };
    names
        .iter()
        .map(|n| {
            let class = JobClass::new(n.trim())?;
            let c = w
                .concurrency
                .or_else(|| s.worker.concurrency.get(class.as_str()).copied())
                .unwrap_or(1);
            Ok((class, c))
        })
        .collect()
}

fn api_state(
    s: &Settings,
    records: crate::db::Records,
    store: crate::storage::SharedStore,
    queue: crate::queue::SharedQueue,
    admin: crate::queue::SharedAdmin,
) -> anyhow::Result<AppState> {
    let reader =
        crate::media_object::MediaReader::new(records.clone(), cache(s)?, s.public_url.clone());
    let (spool, swept) = crate::runtime::Scratch::claim(&s.spool_dir())
        .with_context(|| format!("spool dir {}", s.spool_dir().display()))?;
    if swept.dirs > 0 {
        info!(
            dirs = swept.dirs,
            bytes = swept.bytes,
            "swept upload spool left by dead processes"
        );
    }
    let ops = Arc::new(crate::api::OpsState {
        history: Arc::new(History::new(s.scaling.status_sample)),
        admin: admin.clone(),
        scaling: s.scaling.clone(),
        actions: Arc::new(super::ops_actions::CliActions {
            settings: s.clone(),
            records: records.clone(),
            admin,
        }),
    });
    Ok(AppState {
        ops,
        reader,
        records,
        store,
        queue,
        settings: Arc::new(ApiSettings {
            prefix: s.prefix.clone(),
            public_url: s.public_url.clone(),
            limits: s.limits,
            profiles: s.profiles.clone(),
            scratch_dir: spool.path().to_path_buf(),
            spool: Some(Arc::new(spool)),
            presign_ttl: s.presign_ttl,
        }),
        uploads: Arc::new(
            crate::api::UploadState::new(s.uploads.clone(), &s.listen)
                .with_spool_dir(&s.spool_dir()),
        ),
    })
}

/// The media object cache `--cache` names (none by default). It connects lazily, so Redis may be down.
pub(crate) fn cache(s: &Settings) -> anyhow::Result<Option<crate::cache::MediaCache>> {
    Ok(crate::cache::MediaCache::from_url(
        &s.cache,
        &s.prefix,
        s.cache_options,
    )?)
}

/// Starts the `/ops` dashboard's sampler: a status snapshot every `[scaling] status_sample` into the state's
/// one-hour history, until `shutdown`.
fn start_sampler(
    state: &AppState,
    queue: crate::queue::SharedQueue,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let sampler = Sampler {
        queue,
        admin: state.ops.admin.clone(),
        records: state.records.clone(),
        scaling: state.ops.scaling.clone(),
    };
    tokio::spawn(sampler.run(state.ops.history.clone(), shutdown))
}

async fn bind(s: &Settings) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(&s.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", s.listen))
}

fn runtime(
    s: &Settings,
    w: &WorkerArgs,
    records: crate::db::Records,
    store: crate::storage::SharedStore,
    queue: crate::queue::SharedQueue,
) -> anyhow::Result<Runtime<MediaHandler>> {
    let classes = worker_classes(s, w)?;
    let sandbox = if s.worker.sandbox_child {
        match &s.worker.sandbox_exe {
            Some(exe) => Sandbox::with_exe(exe.clone(), s.worker.sandbox_memory_bytes),
            None => Sandbox::current_exe(s.worker.sandbox_memory_bytes)?,
        }
        .with_warm_children(s.worker.warm_children)
    } else {
        Sandbox::in_process(s.worker.sandbox_memory_bytes)
    };
    let ctx = Arc::new(JobContext {
        records,
        store,
        queue: queue.clone(),
        sandbox,
        prefix: s.prefix.clone(),
        profiles: s.profiles.clone(),
        limits: s.limits,
        job_timeout: s.worker.job_timeout,
        cache: cache(s)?,
        public_url: s.public_url.clone(),
        webhooks: crate::webhook::WebhookPolicy::from_settings(&s.uploads),
        media_slots: crate::jobs::slots::MediaSlots::new(&classes),
        scratch: {
            let _ = std::fs::create_dir_all(s.scratch_dir());
            let budget = crate::runtime::budget::ByteBudget::for_dir(
                s.worker.scratch_bytes,
                &s.scratch_dir(),
            );
            tracing::info!(bytes = budget.limit, "job scratch budget");
            budget
        },
    });
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
    let handler = MediaHandler::new(
        ctx,
        RetryPolicy {
            max_attempts: s.worker.max_attempts,
            retry_base: s.worker.retry_base,
            retry_max: s.worker.retry_max,
            outage_budget: s.worker.outage_budget,
        },
        format!("{}:{}", host.trim(), std::process::id()),
    );
    Ok(Runtime::new(
        queue,
        Arc::new(handler),
        Arc::new(crate::scale::observe::WorkerObserver),
        RuntimeOptions {
            classes: delivery_slots(s, &classes),
            poll_wait: s.worker.poll_wait,
            drain_timeout: w.drain_timeout.unwrap_or(s.worker.drain_timeout),
            lease: s.worker.lease,
            scratch_dir: s.scratch_dir(),
            bulk_share: s.worker.bulk_share,
        },
    ))
}

/// Deliveries in flight per class: its concurrency plus its prefetch (`[worker] prefetch`; see
/// `jobs::slots`).
fn delivery_slots(s: &Settings, classes: &[(JobClass, usize)]) -> Vec<(JobClass, usize)> {
    classes
        .iter()
        .map(|(class, n)| {
            let ahead = s.worker.prefetch.get(class.as_str()).copied().unwrap_or(0);
            (class.clone(), (*n).max(1) + ahead)
        })
        .collect()
}

/// The RabbitMQ prefetch of each class this process serves: its deliveries in flight, and for its bulk
/// lane the lane's share of them (so no more bulk messages wait in this process than it may run).
fn prefetch(s: &Settings, w: &WorkerArgs) -> std::collections::BTreeMap<String, u16> {
    let mut out = std::collections::BTreeMap::new();
    for (c, n) in delivery_slots(s, &worker_classes(s, w).unwrap_or_default()) {
        if let Some(bulk) = c.bulk_lane() {
            let cap = crate::runtime::bulk_slots(n, s.worker.bulk_share).max(1);
            out.entry(bulk.as_str().to_owned())
                .or_insert(u16::try_from(cap).unwrap_or(u16::MAX));
        }
        out.insert(c.as_str().to_owned(), u16::try_from(n).unwrap_or(u16::MAX));
    }
    out
}

/// This process's worker id: `host:pid`.
fn worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
    format!("{}:{}", host.trim(), std::process::id())
}

/// The classes `w` serves, by name.
fn class_names(s: &Settings, w: &WorkerArgs) -> anyhow::Result<Vec<String>> {
    Ok(worker_classes(s, w)?
        .iter()
        .map(|(c, _)| c.to_string())
        .collect())
}

/// `mediafleet serve`: the api, the outbox relay, workers of every class, the reaper, presence heartbeats and
/// the scaler (its gauges on the api's `/metrics`; `ops status` and `/ops` read the same figures).
pub async fn serve(s: Settings, w: WorkerArgs) -> anyhow::Result<()> {
    let records = crate::connect::records(&s).await?;
    let store = crate::connect::store(&s).await?;
    let (queue, admin) = crate::connect::queue_and_admin_with(&s, 1, prefetch(&s, &w)).await?;
    admin.declare(&crate::connect::standard_classes()).await?;
    let listener = bind(&s).await?;
    info!(
        listen = %s.listen, queue = queue.backend(), storage = store.backend(), data_dir = %s.data_dir.display(),
        "mediafleet serve: api + workers + relay + scaler"
    );
    let shutdown = shutdown_on_signal();
    let sidecars = crate::scale::observe::start_worker_sidecars(
        &s,
        &class_names(&s, &w)?,
        &worker_id(),
        records.clone(),
        queue.clone(),
        shutdown.clone(),
    )
    .await?;
    let retention = tokio::spawn(crate::jobs::run_retention(
        records.clone(),
        Some(admin.clone()),
        s.retention,
        shutdown.clone(),
    ));
    let scaler = crate::scale::scaler::Scaler::new(
        queue.clone(),
        admin.clone(),
        records.clone(),
        &s.scaling,
        &[],
    )?;
    let scaling = tokio::spawn(super::scale::scale_loop(
        scaler,
        records.clone(),
        s.scaling.poll_interval,
        false,
        shutdown.clone(),
    ));
    let paused =
        crate::jobs::watch_pauses(records.clone(), s.worker.pause_poll, shutdown.clone()).await;
    let rt = runtime(&s, &w, records.clone(), store.clone(), queue.clone())?.with_pauses(paused);
    let reaper = tokio::spawn(run_reaper(
        records.clone(),
        s.worker.reaper_interval,
        s.worker.requeue_stale_after,
        shutdown.clone(),
    ));
    let workers = tokio::spawn(rt.run(shutdown.clone()));
    let state = api_state(&s, records, store, queue.clone(), admin)?;
    let relay = super::uploads_boot::start(&s, &state, shutdown.clone());
    let sampler = start_sampler(&state, queue, shutdown.clone());
    crate::api::serve(listener, state, shutdown.clone()).await?;
    let _ = relay.await;
    let _ = sampler.await;
    let _ = workers.await;
    let _ = reaper.await;
    let _ = scaling.await;
    let _ = retention.await;
    sidecars.wait().await;
    Ok(())
}

/// `mediafleet api`.
pub async fn api(s: Settings) -> anyhow::Result<()> {
    let records = crate::connect::records(&s).await?;
    let store = crate::connect::store(&s).await?;
    let (queue, admin) = crate::connect::queue_and_admin_declared(&s, 1).await?;
    let listener = bind(&s).await?;
    let shutdown = shutdown_on_signal();
    let state = api_state(&s, records, store, queue.clone(), admin)?;
    let relay = super::uploads_boot::start(&s, &state, shutdown.clone());
    let sampler = start_sampler(&state, queue, shutdown.clone());
    crate::api::serve(listener, state, shutdown).await?;
    let _ = relay.await;
    let _ = sampler.await;
    Ok(())
}

/// `mediafleet worker`.
pub async fn worker(s: Settings, w: WorkerArgs) -> anyhow::Result<()> {
    let records = crate::connect::records(&s).await?;
    let store = crate::connect::store(&s).await?;
    let (queue, admin) = crate::connect::queue_and_admin_with(&s, 1, prefetch(&s, &w)).await?;
    admin.declare(&crate::connect::standard_classes()).await?;
    info!(queue = queue.backend(), storage = store.backend(), classes = ?worker_classes(&s, &w)?, "worker starting");
    let shutdown = shutdown_on_signal();
    // Scaling sidecars: /metrics on --metrics-listen, presence heartbeats, the video-gpu capability check.
    let sidecars = crate::scale::observe::start_worker_sidecars(
        &s,
        &class_names(&s, &w)?,
        &worker_id(),
        records.clone(),
        queue.clone(),
        shutdown.clone(),
    )
    .await?;
    let reaper = tokio::spawn(run_reaper(
        records.clone(),
        s.worker.reaper_interval,
        s.worker.requeue_stale_after,
        shutdown.clone(),
    ));
    let retention = tokio::spawn(crate::jobs::run_retention(
        records.clone(),
        Some(admin),
        s.retention,
        shutdown.clone(),
    ));
    let paused =
        crate::jobs::watch_pauses(records.clone(), s.worker.pause_poll, shutdown.clone()).await;
    runtime(&s, &w, records, store, queue)?
        .with_pauses(paused)
        .run(shutdown)
        .await;
    let _ = reaper.await;
    let _ = retention.await;
    sidecars.wait().await;
    Ok(())
}
