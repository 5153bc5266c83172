//! # mediafleet: the fleet
//!
//! Stateless workers that turn uploaded originals into renditions, plus the api, relay and ops around them.
//! Media work itself lives in the `mediafleet-workers` crate; the job contract in `mediafleet-proto`.
//!
//! ## Layout (arrows point down: nothing imports a module above it)
//! - [`cli`]: the `mediafleet` subcommands; the only place that uses `anyhow`.
//! - [`config`]: flags > env > TOML > defaults, and backend URLs parsed into configs that `connect()`.
//! - [`runtime`]: the generic worker loop: pull within a concurrency budget, lease heartbeats, panic
//!   boundary, time limit, drain on shutdown; it applies the [`runtime::Outcome`] a [`runtime::Handler`]
//!   returns and reports to an [`runtime::Observer`]. Scratch directories and byte budgets.
//! - [`api`]: the HTTP api (axum): uploads, media, renditions, health, and the `/ops` dashboard.
//! - [`jobs`]: what each job kind does, and [`jobs::MediaHandler`], the media rules around them (attempts,
//!   failing a media and warming its cache entry, retries and outage waits); the reaper.
//! - [`sandbox`]: runs `workers::process` in a contained child process (started by our own
//!   `clone(CLONE_VM | CLONE_VFORK)` spawn, `sandbox::spawn`) with rlimits, isolation and a timeout;
//!   `jobs::slots` keeps a class's children at its concurrency.
//! - [`queue`] (hot path `JobQueue`, operator `QueueAdmin`), [`storage`], [`db`]: the backends behind small
//!   traits. [`aws_http`]: the one HTTPS client of the S3 and SQS clients.
//! - [`connect`]: builds the backends a configuration names.
//! - [`scale`]: the backlog-seconds signal, scaling policy, gauges, `fleet` supervisor and policy simulation.
//! - [`media_object`]: the JSON of a media (assembly, read-through, warming); [`cache`]: Redis behind it.
//! - [`relay`]: publishes the transactional outbox; [`webhook`]: callback URL policy and signatures.
//! - [`routing`]: the one table of which class (queue) each job goes to.
//! - [`telemetry`]: tracing to stderr.
//!
//! The benchmarks are not in the library: `src/bench/` is compiled into the `mediafleet-bench` binary.

pub mod api;
pub mod aws_http;
pub mod cache;
pub mod cli;
pub mod config;
pub mod connect;
pub mod db;
pub mod jobs;
pub mod media_object;
pub mod queue;
pub mod relay;
pub mod routing;
pub mod runtime;
pub mod sandbox;
pub mod scale;
pub mod storage;
pub mod telemetry;
pub mod trace;
pub mod webhook;
