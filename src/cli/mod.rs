//! The `mediafleet` command line. Each subcommand lives in its own file; this is the only layer that uses
//! `anyhow`. Logs go to stderr; JSON answers to stdout.

mod bench_cache;
mod bench_image;
mod bench_queue;
mod bench_sandbox;
mod bench_video;
mod ops_keys;
mod ops_warm;
mod process;
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
    /// Side-by-side benchmarks against the tools a user would otherwise pick.
    Bench {
        #[command(subcommand)]
        action: BenchAction,
    },
}

#[derive(Debug, Subcommand)]
enum BenchAction {
    /// The media cache on memcached against Redis: `ops warm --all` objects/s on the same seeded media, and
    /// GET round trips from this host.
    Cache(bench_cache::BenchCacheArgs),
    /// Image renditions (thumb + preview from one decode) against `vipsthumbnail` run once per size.
    Image(bench_image::BenchImageArgs),
    /// No-op jobs (with one Postgres write each) through every queue backend, against raw lapin and
    /// aws-sdk-sqs loops doing the same work.
    Queue(bench_queue::BenchQueueArgs),
    /// What the sandbox costs per job: a still image in the sandboxed child against the same work in-process.
    Sandbox(bench_sandbox::BenchSandboxArgs),
    /// mp4-720, the HLS ladder and the poster against the `ffmpeg` CLI (one run per rung, one split command).
    Video(bench_video::BenchVideoArgs),
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
}

#[derive(Debug, Subcommand)]
enum QueuesAction {
    /// Create or verify every class's queues.
    Setup,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init();
    if let Command::Process(args) = &cli.command {
        // No async runtime: the media child must stay small and single-purpose.
        return process::run(&cli.common, args);
    }
    if let Command::Bench {
        action: BenchAction::Image(args),
    } = &cli.command
    {
        return bench_image::run(args);
    }
    if let Command::Bench {
        action: BenchAction::Video(args),
    } = &cli.command
    {
        return bench_video::run(args);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(dispatch(cli)) {
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
            let q = crate::connect::queue(&settings, 1).await?;
            q.setup(&crate::connect::standard_classes()).await?;
            tracing::info!(backend = q.backend(), "queues ready");
            Ok(())
        }
        Command::Ops {
            action: OpsAction::Warm(a),
        } => ops_warm::run(settings, a).await,
        Command::Ops {
            action: OpsAction::Keys { action },
        } => ops_keys::run(settings, action).await,
        Command::Process(_) => unreachable!("handled before the runtime starts"),
        Command::Bench {
            action: BenchAction::Queue(a),
        } => bench_queue::run(a).await,
        Command::Bench {
            action: BenchAction::Cache(a),
        } => bench_cache::run(a).await,
        Command::Bench {
            action: BenchAction::Sandbox(a),
        } => bench_sandbox::run(a).await,
        Command::Bench { .. } => unreachable!("handled before the runtime starts"),
    }
}
