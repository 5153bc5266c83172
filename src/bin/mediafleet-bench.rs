//! `mediafleet-bench`: the side-by-side benchmarks, kept out of the production library. `mediafleet bench …`
//! runs this binary (installed beside `mediafleet`) with the same arguments. Each benchmark compares us, in
//! one run, with the tool a user would otherwise pick, and prints a ratio; the figures go to BENCHMARKS.md.

#[path = "../bench/cache.rs"]
mod cache;
#[path = "../bench/fleet.rs"]
mod fleet;
#[path = "../bench/image.rs"]
mod image;
#[path = "../bench/queue.rs"]
mod queue;
#[path = "../bench/sandbox.rs"]
mod sandbox;
#[path = "../bench/video.rs"]
mod video;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Side-by-side benchmarks against the tools a user would otherwise pick.
#[derive(Debug, Parser)]
#[command(name = "mediafleet bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// The media cache on memcached against Redis: `ops warm --all` objects/s on the same seeded media, and
    /// GET round trips from this host.
    Cache(cache::BenchCacheArgs),
    /// N uploads through a real `serve` (or api + worker) against the bare still-image child at the worker's
    /// concurrency: what the fleet adds to the work.
    Fleet(fleet::BenchFleetArgs),
    /// Image renditions (thumb + preview from one decode) against `vipsthumbnail` run once per size.
    Image(image::BenchImageArgs),
    /// No-op jobs (with one Postgres write each) through every queue backend, against raw lapin and
    /// aws-sdk-sqs loops doing the same work.
    Queue(queue::BenchQueueArgs),
    /// What the sandbox costs per job: a still image in the sandboxed child against the same work in-process.
    Sandbox(sandbox::BenchSandboxArgs),
    /// mp4-720, the HLS ladder and the poster against the `ffmpeg` CLI (one run per rung, one split command).
    Video(video::BenchVideoArgs),
}

/// The `mediafleet` binary the benchmarks run as a child: beside this one (the usual install and the build
/// directory), else on the PATH.
fn mediafleet_exe() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let beside = me.with_file_name("mediafleet");
    if beside.is_file() {
        return Ok(beside);
    }
    Ok(PathBuf::from("mediafleet"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    mediafleet::telemetry::init();
    // These two time child processes and need no async runtime of their own.
    match &cli.command {
        Bench::Image(a) => return image::run(a),
        Bench::Video(a) => return video::run(a),
        _ => {}
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Bench::Cache(a) => cache::run(a).await,
            Bench::Fleet(a) => fleet::run(a).await,
            Bench::Queue(a) => queue::run(a).await,
            Bench::Sandbox(a) => sandbox::run(a).await,
            Bench::Image(_) | Bench::Video(_) => unreachable!("run above"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
