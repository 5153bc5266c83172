//! # mediafleet: the fleet
//!
//! Stateless workers that turn uploaded originals into renditions, plus the api, relay and ops around them.
//! Media work itself lives in the `mediafleet-workers` crate; the job contract in `mediafleet-proto`.
//!
//! ## Layout (arrows point down: nothing imports a module above it)
//! - [`cli`]: the `mediafleet` subcommands; the only place that uses `anyhow`.
//! - [`config`]: flags > env > TOML > defaults, and backend URLs parsed into configs that `connect()`.
//! - [`runtime`]: the worker loop: pull within a concurrency budget, panic boundary, ack / retry /
//!   dead-letter, drain on shutdown; and the reaper.
//! - [`api`]: the HTTP api (axum): uploads, media, renditions, health.
//! - [`jobs`]: what each job kind does (`media.process`), mapping failures to [`jobs::JobError`].
//! - [`sandbox`]: runs `workers::process` in a child process with rlimits and a timeout.
//! - [`queue`], [`storage`], [`db`]: the backends behind small traits.
//! - [`connect`]: builds the backends a configuration names.
//! - [`scale`]: the backlog-seconds signal, scaling policy, gauges, `fleet` supervisor and policy simulation.
//! - [`media_object`]: the JSON of a media (assembly, read-through, warming); [`cache`]: Redis behind it.
//! - [`relay`]: publishes the transactional outbox; [`webhook`]: callback URL policy and signatures.
//! - [`routing`]: the one table of which class (queue) each job goes to.
//! - [`telemetry`]: tracing to stderr.

pub mod api;
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
pub mod webhook;
