//! `mediafleet process INPUT --out DIR [--profile P] [--only r1,r2]`
//!
//! Prints one JSON report on stdout. Exit 0 when ready, 2 when the media failed (report still printed),
//! 1 on any other error. The worker runtime runs this same command as its sandboxed child
//! (`--sandboxed --max-memory … --profile-json … --limits-json …`), with `mediafleet-image process` (the
//! same arguments, [`run_child`] with the still-image entry point) for still images.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mediafleet_proto::Profile;
use mediafleet_workers::{Control, Limits, Report};

use crate::config::{CommonArgs, FileConfig};
use crate::sandbox::confine::{confine, ChildLimits, LAYERS_PREFIX};

/// The media work a child binary runs: `mediafleet_workers::process_with` (everything) or
/// `process_still_image` (no FFmpeg).
pub type Work = fn(&Path, &Profile, &Limits, &Path, &Control) -> Report;

/// Arguments of `process`.
#[derive(Debug, clap::Args)]
pub struct ProcessArgs {
    /// The original.
    input: PathBuf,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Profile name.
    #[arg(long, default_value = "default")]
    profile: String,
    /// Only these renditions (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The profile itself, as JSON (used by the worker's sandbox).
    #[arg(long, hide = true)]
    profile_json: Option<String>,
    /// Limits as JSON (used by the worker's sandbox).
    #[arg(long, hide = true)]
    limits_json: Option<String>,
    /// Confine this process (rlimits, network, seccomp, landlock) before touching the file.
    #[arg(long, hide = true)]
    sandboxed: bool,
    /// Address-space cap in bytes (with --sandboxed).
    #[arg(long, hide = true)]
    max_memory: Option<u64>,
    /// CPU-time cap in seconds (with --sandboxed).
    #[arg(long, hide = true)]
    max_cpu_seconds: Option<u64>,
    /// Report progress on stderr as `mediafleet-progress 0.420` lines (read by the worker's sandbox).
    #[arg(long, hide = true)]
    progress: bool,
    /// With --sandboxed: instead of processing, try what the sandbox must deny (a socket, a file outside
    /// the input and output, running a program) and print what happened as JSON.
    #[arg(long, hide = true)]
    self_check: bool,
    /// A warm child (see `sandbox::warm`): wait for the real arguments as one JSON line on stdin; the
    /// positional input and `--out` are placeholders.
    #[arg(long, hide = true)]
    await_args: bool,
}

/// The argument line a warm child is handed, parsed as `process` would parse its command line.
#[derive(Debug, clap::Parser)]
#[command(no_binary_name = true)]
struct Handed {
    #[command(flatten)]
    args: ProcessArgs,
}

/// Runs `process`. A still image that needs no FFmpeg is handed to `mediafleet-image` when it sits beside
/// this binary, as the worker's sandbox does: the same report, from a process that never loaded FFmpeg.
pub fn run(common: &CommonArgs, args: &ProcessArgs) -> ExitCode {
    if !args.sandboxed && !args.await_args && !args.self_check {
        if let Some(err) = hand_to_image_child(common, args) {
            eprintln!(
                "warning: could not run {}: {err}; processing here",
                crate::sandbox::IMAGE_CHILD
            );
        }
    }
    run_child(
        common.config.as_deref(),
        args,
        mediafleet_workers::process_with,
    )
}

/// Replaces this process with `mediafleet-image process …` (same arguments) when the input is a still image
/// it handles. Returns only when it did not: `None` when the input is not for it (or the child is missing),
/// the error when the exec failed.
fn hand_to_image_child(common: &CommonArgs, args: &ProcessArgs) -> Option<std::io::Error> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let child = std::env::current_exe()
        .ok()?
        .with_file_name(crate::sandbox::IMAGE_CHILD);
    if !child.is_file() {
        return None;
    }
    let mut head = Vec::with_capacity(mediafleet_workers::sniff::SNIFF_LEN);
    std::fs::File::open(&args.input)
        .ok()?
        .take(mediafleet_workers::sniff::SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .ok()?;
    let sniffed = mediafleet_workers::sniff(&head)?;
    if mediafleet_workers::needs_ffmpeg(&sniffed) {
        return None;
    }
    // Everything after the `process` word is the subcommand's own arguments; of the global ones only the
    // config file matters to the child.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let at = argv.iter().position(|a| a == "process")?;
    let mut cmd = std::process::Command::new(&child);
    if let Some(config) = &common.config {
        cmd.arg("--config").arg(config);
    }
    Some(cmd.arg("process").args(&argv[at + 1..]).exec())
}

/// Runs `process` with `work`, reading profiles from `config` when no `--profile-json` is given.
pub fn run_child(config: Option<&Path>, args: &ProcessArgs, work: Work) -> ExitCode {
    if args.await_args {
        return run_warm(config, work);
    }
    match run_inner(config, args, work) {
        Ok(ready) => ExitCode::from(if ready { 0 } else { 2 }),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A warm child: enters its network namespace while it waits (nothing about the job is needed for that),
/// then runs the arguments it is handed. Stdin closed with no job: exit 0 quietly.
fn run_warm(config: Option<&Path>, work: Work) -> ExitCode {
    crate::sandbox::confine::isolate_network_early();
    let handed = match crate::sandbox::warm::read_args() {
        Ok(Some(argv)) => argv,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match <Handed as clap::Parser>::try_parse_from(handed) {
        Ok(h) if !h.args.await_args => run_child(config, &h.args, work),
        Ok(_) => {
            eprintln!("error: a warm child was handed --await-args again");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: the handed arguments do not parse: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_inner(config: Option<&Path>, args: &ProcessArgs, work: Work) -> anyhow::Result<bool> {
    let (profile, limits) = resolve(config, args)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| anyhow::anyhow!("--out {}: {e}", args.out.display()))?;
    if args.sandboxed {
        // Still single-threaded here: every layer covers every thread the decoders start later.
        let child = ChildLimits {
            memory: args.max_memory,
            cpu_seconds: args.max_cpu_seconds,
            ..ChildLimits::default()
        };
        let layers = confine(&args.input, &args.out, &child, false)?;
        eprintln!("{LAYERS_PREFIX}{layers}");
        if args.self_check {
            println!(
                "{}",
                crate::sandbox::confine::self_check(&args.input, &args.out, layers)
            );
            return Ok(true);
        }
    }
    let control = if args.progress {
        progress_on_stderr()
    } else {
        Control::new()
    };
    let report = work(&args.input, &profile, &limits, &args.out, &control);
    println!("{}", serde_json::to_string(&report)?);
    Ok(report.is_ready())
}

/// Progress lines on stderr, at most every 500 ms (and always the last one), for the parent to read.
fn progress_on_stderr() -> Control {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    let last: Mutex<Option<Instant>> = Mutex::new(None);
    Control::with_progress(move |p| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_millis(500));
        if due || p >= 1.0 {
            *last = Some(Instant::now());
            eprintln!("{}{p:.3}", crate::sandbox::PROGRESS_PREFIX);
        }
    })
}

fn resolve(config: Option<&Path>, args: &ProcessArgs) -> anyhow::Result<(Profile, Limits)> {
    let file = match config {
        Some(p) => FileConfig::load(p).map_err(anyhow::Error::msg)?,
        None => FileConfig::default(),
    };
    let profile = match &args.profile_json {
        Some(json) => serde_json::from_str(json)?,
        None => {
            let mut profiles = Profile::builtin();
            profiles.extend(file.profiles.clone());
            profiles
                .remove(&args.profile)
                .ok_or_else(|| anyhow::anyhow!("--profile: unknown profile {:?}", args.profile))?
        }
    };
    let limits = match &args.limits_json {
        Some(json) => serde_json::from_str(json)?,
        None => file.limits,
    };
    Ok((profile.only(&args.only), limits))
}
