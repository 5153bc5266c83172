//! The `mediafleet` command line. Each subcommand lives in its own file; this is the only layer that uses
//! `anyhow`. Logs go to stderr; JSON answers to stdout.

mod process;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{CommonArgs, Settings};

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
    /// Create or verify queues, DLQs and retry queues.
    Queues {
        #[command(subcommand)]
        action: QueuesAction,
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
            tracing::error!("{e:#}");
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
            let q = crate::connect::queue_declared(&settings, 1).await?;
            tracing::info!(backend = q.backend(), "queues ready");
            Ok(())
        }
        Command::Process(_) => unreachable!("handled before the runtime starts"),
    }
}
