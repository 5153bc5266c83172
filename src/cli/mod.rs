//! The `mediafleet` command line. Each subcommand lives in its own file; this is the only layer that uses
//! `anyhow`. Logs go to stderr; JSON answers to stdout.

mod ops_actions;
mod ops_dlq;
mod ops_failed;
mod ops_keys;
mod ops_scale;
mod ops_status;
mod ops_steer;
mod ops_warm;
mod process;
mod progress;
mod scale;
mod serve;
mod uploads_boot;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{CommonArgs, Settings};

pub use process::{run_child, ProcessArgs, Work};

/// mediafleet: turns uploaded media into renditions, scaled on queue depth.
#[derive(Debug, Parser)]
#[command(name = "mediafleet", version, about)]
pub struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// api + workers + reaper in one process (embedded backends unless flags say otherwise).
    Serve(serve::WorkerArgs),
    /// The HTTP api only.
    Api,
    /// Workers only.
    Worker(serve::WorkerArgs),
    /// Run the media pipeline on a local file; prints a JSON report.
    Process(process::ProcessArgs),
    /// Apply DB migrations.
    Migrate,
    /// Queue-depth signal and desired workers per class; `scaler simulate` compares policies.
    Scaler(scale::ScalerArgs),
    /// Local supervisor: spawns and drains `worker` processes per class on the scaler's signal.
    Fleet(scale::FleetArgs),
    /// Create or verify queues, DLQs and retry queues.
    Queues {
        #[command(subcommand)]
        action: QueuesAction,
    },
    /// Operator tools.
    Ops {
        #[command(subcommand)]
        action: OpsAction,
    },
    /// Side-by-side benchmarks against the tools a user would otherwise pick (`mediafleet bench --help`):
    /// runs `mediafleet-bench`, installed beside this binary, with these arguments.
    #[command(disable_help_flag = true)]
    Bench {
        /// The benchmark and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Subcommand)]
enum OpsAction {
    /// Rebuild media objects in the cache (after a flush or a schema change), with a resume point.
    Warm(ops_warm::WarmArgs),
    /// API keys: create, list, revoke.
    Keys {
        #[command(subcommand)]
        action: ops_keys::KeysAction,
    },
    /// Per class: queue depth, dead letters, oldest age, the scaler's desired and live workers; failures of
    /// the last hour by code.
    Status(ops_status::StatusArgs),
    /// The scaler's decision per class, with its inputs (depth, arrival rate, cost per job, backlog);
    /// `--class C --workers N [--for D]` overrides it (a running fleet follows), `--class C --auto` ends that.
    Scale(ops_scale::ScaleArgs),
    /// Live workers (fresh heartbeats): id, host, classes, version, jobs in flight, last seen.
    Workers(ops_status::StatusArgs),
    /// Failed media: `list` (filter by code, time, kind) and `show ID` (every attempt).
    Failed {
        #[command(subcommand)]
        action: ops_failed::FailedAction,
    },
    /// Send failed media through the pipeline again: these ids, or `--failed` with filters.
    Replay(ops_failed::ReplayArgs),
    /// Make ready media's renditions again with a profile.
    Reprocess(ops_failed::ReprocessArgs),
    /// A class's dead-letter queue: list, show, redrive, purge.
    Dlq {
        #[command(subcommand)]
        action: ops_dlq::DlqAction,
    },
    /// Workers stop taking a class (jobs in flight finish; messages wait in the queue) until `resume`.
    Pause(ops_steer::PauseArgs),
    /// Workers take a paused class again.
    Resume(ops_steer::PauseArgs),
    /// Who changed what: deletes, replays, reprocesses, redrives, purges, pauses (newest first).
    Audit(ops_steer::AuditArgs),
    /// One retention pass now (workers run one every `[retention] interval`): removes attempts, idempotency
    /// keys, deleted media, audit entries and embedded dead letters past their configured ages.
    Retention(ops_steer::RetentionArgs),
}

#[derive(Debug, Subcommand)]
enum QueuesAction {
    /// Create or verify every class's queues.
    Setup,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Process(args) = &cli.command {
        // No async runtime and no span export: the media child must stay small and single-purpose.
        crate::telemetry::init();
        return process::run(&cli.common, args);
    }
    if let Command::Bench { args } = &cli.command {
        crate::telemetry::init();
        return bench(args);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            crate::telemetry::init();
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let telemetry = crate::telemetry::init_exporting(rt.handle());
    let done = rt.block_on(dispatch(cli));
    // Flushes the spans not yet exported, on the runtime that is still up.
    drop(telemetry);
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::resolve(&cli.common).map_err(anyhow::Error::msg)?;
    match cli.command {
        Command::Serve(w) => serve::serve(settings, w).await,
        Command::Api => serve::api(settings).await,
        Command::Worker(w) => serve::worker(settings, w).await,
        Command::Scaler(a) => scale::scaler(settings, a).await,
        Command::Fleet(a) => scale::fleet(settings, &cli.common, a).await,
        Command::Migrate => {
            let mut s = settings;
            s.migrate = true;
            crate::connect::records(&s).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Queues {
            action: QueuesAction::Setup,
        } => {
            let admin = crate::connect::admin(&settings).await?;
            admin.setup(&crate::connect::standard_classes()).await?;
            tracing::info!(backend = admin.backend(), "queues ready");
            Ok(())
        }
        Command::Ops { action } => match action {
            OpsAction::Warm(a) => ops_warm::run(settings, a).await,
            OpsAction::Keys { action } => ops_keys::run(settings, action).await,
            OpsAction::Status(a) => ops_status::status(settings, a).await,
            OpsAction::Workers(a) => ops_status::workers(settings, a).await,
            OpsAction::Scale(a) => ops_scale::run(settings, a).await,
            OpsAction::Failed { action } => ops_failed::failed(settings, action).await,
            OpsAction::Replay(a) => ops_failed::replay(settings, a).await,
            OpsAction::Reprocess(a) => ops_failed::reprocess(settings, a).await,
            OpsAction::Dlq { action } => ops_dlq::run(settings, action).await,
            OpsAction::Pause(a) => ops_steer::run(settings, a, true).await,
            OpsAction::Resume(a) => ops_steer::run(settings, a, false).await,
            OpsAction::Audit(a) => ops_steer::audit(settings, a).await,
            OpsAction::Retention(a) => ops_steer::retention(settings, a).await,
        },
        Command::Process(_) | Command::Bench { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
}

/// `mediafleet bench …`: the benchmarks live in their own binary, `mediafleet-bench`, beside this one.
fn bench(args: &[std::ffi::OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()
        .map(|me| me.with_file_name("mediafleet-bench"))
        .unwrap_or_else(|_| "mediafleet-bench".into());
    let err = std::process::Command::new(&exe).args(args).exec();
    eprintln!(
        "error: cannot run {}: {err} (the benchmarks are a separate binary: `cargo build --bin mediafleet-bench`)",
        exe.display()
    );
    ExitCode::from(1)
}
