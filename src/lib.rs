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
//! - [`telemetry`]: tracing to stderr.

pub mod api;
pub mod cli;
pub mod config;
pub mod connect;
pub mod db;
pub mod jobs;
pub mod queue;
pub mod runtime;
pub mod sandbox;
pub mod storage;
pub mod telemetry;
