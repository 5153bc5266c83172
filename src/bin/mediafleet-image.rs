//! `mediafleet-image`: the worker's sandboxed child for still images.
//!
//! It takes exactly the arguments of `mediafleet process` and prints the same JSON report, but its code only
//! reaches `mediafleet_workers::process_still_image`, so the linker leaves out FFmpeg and the ~160 shared
//! libraries it pulls in. A thumbnail job then starts at about a third of `mediafleet`'s resident memory,
//! which is most of a small job's footprint. The worker's sandbox sends it every image that needs no FFmpeg
//! (everything but AVIF) when it sits next to the `mediafleet` binary; video, audio and AVIF go to
//! `mediafleet process`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mediafleet::cli::{run_child, ProcessArgs};

/// Still-image renditions, without FFmpeg (the sandboxed child of `mediafleet worker` for images).
#[derive(Debug, Parser)]
#[command(name = "mediafleet-image", version, about)]
struct Cli {
    /// TOML config (profiles and limits) when no `--profile-json` is given.
    #[arg(long, env = "MEDIAFLEET_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the image pipeline on a local file; prints a JSON report (exit 0 ready, 2 failed, 1 other error).
    Process(ProcessArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Process(args) => run_child(
            cli.config.as_deref(),
            args,
            mediafleet_workers::process_still_image,
        ),
    }
}
