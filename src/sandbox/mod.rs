//! Runs `workers::process` in a child process with rlimits and a timeout.
//!
//! Decoders can panic, abort or run away on hostile files, and libav runs in-process. So a job's media work
//! runs as `mediafleet process … --sandboxed`: a child that caps its own address space and CPU time before
//! touching the file, prints one JSON report and exits. Each way the child can end has its own meaning:
//! exit 0 or 2 with a report is the answer; death by a signal is `media_crashed`; the deadline is `timeout`;
//! exit 1 or a failed spawn is our problem, and retryable.
//!
//! Progress: with `--progress` the child writes `mediafleet-progress 0.420` lines to its stderr (at most a
//! few per second). The parent reads the child's stderr line by line, hands progress lines to the caller's
//! callback and passes every other line through to its own stderr, so logs stay where they were.
//!
//! Time: the child is killed at the deadline (and when the job's future is dropped on shutdown) and reaped
//! before `run` returns, so no encoder outlives its job. Its CPU-time rlimit is the deadline times the number
//! of cores, because x264 and the frame-threaded decoders use every core.
//!
//! Containment (see [`contain`]): only the worker decides when its child stops.
//! - The child runs in its own process group, so a signal to the worker's group (Ctrl-C, `kill -TERM -PGID`)
//!   reaches the worker alone, which drains; the stop signals (SIGTERM, SIGINT, SIGHUP) are ignored in the
//!   child too, for managers that signal every process of a cgroup (systemd's `KillMode=control-group`).
//! - `PR_SET_PDEATHSIG` kills the child when the worker dies, however it dies (SIGKILL, OOM kill).
//! - The environment is cleared to [`ENV_ALLOW`]: a decoder exploited by a hostile file finds no AWS keys,
//!   database URLs or webhook secrets there.
//! - A child that still dies by a stop signal was stopped from outside, not by its media: that is a
//!   transient error (the job is retried), never `media_crashed`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub mod confine;
pub mod netns;
pub mod spawn;
pub mod warm;

use mediafleet_proto::{ErrorCode, Profile};
use mediafleet_workers::{Limits, MediaError, Report};
use tokio::io::AsyncReadExt;

/// Why the sandbox could not produce a report. Both variants are transient.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The child could not be started.
    #[error("cannot start media child {exe}: {source}")]
    Spawn {
        /// The executable.
        exe: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The child failed for a reason that is not the media's (exit 1: disk full, bad arguments, …).
    #[error("media child failed: {0}")]
    Internal(String),
    /// The child was stopped from outside (a stop signal sent to it by a service manager), not by its media.
    #[error("media child was stopped by signal {0} before it finished")]
    Stopped(i32),
}

/// Environment variables the media child keeps; everything else is removed before it starts. Codecs need
/// the locale and the search path at most; `MALLOC_ARENA_MAX` is set by the sandbox itself.
pub const ENV_ALLOW: [&str; 9] = [
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_NUMERIC",
    "TZ",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "MEDIAFLEET_LOG_FORMAT",
];

/// The environment of a media child: [`ENV_ALLOW`] from ours, and `MALLOC_ARENA_MAX`. glibc reserves 64 MiB
/// of address space per thread arena; encoders run many threads, and the address-space rlimit counts
/// reservations, not use.
fn child_env() -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = ENV_ALLOW
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
        .collect();
    env.push(("MALLOC_ARENA_MAX".into(), "4".into()));
    env
}

/// Starts a media child contained (see [`spawn::spawn`]): its own process group, environment cleared to
/// [`child_env`], stop signals ignored, SIGKILLed by the kernel when the worker dies, and inside the worker's
/// empty network namespace where there is one ([`netns`]).
pub fn contain(
    exe: &Path,
    args: &[OsString],
    stdin_piped: bool,
) -> std::io::Result<spawn::ContainedChild> {
    let mut env = child_env();
    let shared = netns::shared();
    if shared.is_some() {
        env.push((netns::ENTERED.into(), "1".into()));
    }
    spawn::spawn(exe, args, &env, stdin_piped, shared)
}

/// The lean still-image child, looked for next to the `mediafleet` executable.
pub const IMAGE_CHILD: &str = "mediafleet-image";

/// How media work is run.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// `Some(exe)`: a child process of that executable (`mediafleet`); `None`: in-process (debugging and unit
    /// tests).
    pub exe: Option<PathBuf>,
    /// The child for still images that need no FFmpeg (`mediafleet-image`, same arguments), when installed.
    /// Without it `exe` does all the work, at a higher memory floor per job.
    pub image_exe: Option<PathBuf>,
    /// Address-space cap of the child.
    pub memory_bytes: u64,
    /// Children started ahead of their jobs (see [`warm`]); `None` starts each child when its job does.
    pub warm: Option<std::sync::Arc<warm::WarmPool>>,
}

impl Sandbox {
    /// Whether this sandbox's children are known to run under landlock, which lets them read their input and
    /// nothing else: then a job may hand its child the stored original itself (a second name of it, see
    /// [`crate::storage::ObjectStore::get_to_file_read_only`]) rather than a copy. False for in-process work,
    /// until a child has reported its layers, and for good once one reported landlock off.
    pub fn input_is_read_only(&self) -> bool {
        self.exe.is_some()
            && LANDLOCK_ON.load(Ordering::Relaxed)
            && !LANDLOCK_OFF.load(Ordering::Relaxed)
    }
}

/// Children of each executable kept started and waiting, by default.
pub const WARM_CHILDREN: usize = 1;

impl Sandbox {
    /// A sandbox that runs this very executable as the child (and `mediafleet-image` beside it for images).
    pub fn current_exe(memory_bytes: u64) -> Result<Self, std::io::Error> {
        Ok(Self::with_exe(std::env::current_exe()?, memory_bytes))
    }

    /// A sandbox whose child is `exe`, with [`IMAGE_CHILD`] for still images if it sits beside `exe`.
    pub fn with_exe(exe: PathBuf, memory_bytes: u64) -> Self {
        let image_exe = Some(exe.with_file_name(IMAGE_CHILD)).filter(|p| p.is_file());
        if image_exe.is_none() {
            tracing::warn!(exe = %exe.display(), "no {IMAGE_CHILD} beside the media child; images run in the full binary");
        }
        Sandbox {
            exe: Some(exe),
            image_exe,
            memory_bytes,
            warm: Some(std::sync::Arc::new(warm::WarmPool::new(WARM_CHILDREN))),
        }
    }

    /// Keeps `per_exe` children of each executable waiting (0: start every child with its job).
    pub fn with_warm_children(mut self, per_exe: usize) -> Self {
        self.warm = (per_exe > 0 && self.exe.is_some())
            .then(|| std::sync::Arc::new(warm::WarmPool::new(per_exe)));
        self
    }

    /// Starts the waiting children now, so the first jobs do not wait for them either; `home` is the
    /// worker's scratch directory (see [`warm::WarmPool::set_home`]). Call it on the runtime.
    pub fn prewarm(&self, home: Option<&Path>) {
        if let (Some(pool), Some(exe)) = (&self.warm, &self.exe) {
            if let Some(home) = home {
                pool.set_home(home);
            }
            pool.refill(exe);
            if let Some(image) = &self.image_exe {
                pool.refill(image);
            }
        }
    }

    /// Media work in this process (no rlimits, no kill on timeout): for debugging and unit tests.
    pub fn in_process(memory_bytes: u64) -> Self {
        Sandbox {
            exe: None,
            image_exe: None,
            memory_bytes,
            warm: None,
        }
    }

    /// The executable for `input`: the image child for a still image that needs no FFmpeg, else `exe`.
    async fn child_for<'a>(&'a self, input: &Path, exe: &'a PathBuf) -> &'a PathBuf {
        let Some(image_exe) = &self.image_exe else {
            return exe;
        };
        let mut head = Vec::with_capacity(mediafleet_workers::sniff::SNIFF_LEN);
        let read = async {
            let f = tokio::fs::File::open(input).await?;
            f.take(mediafleet_workers::sniff::SNIFF_LEN as u64)
                .read_to_end(&mut head)
                .await
        };
        match read
            .await
            .ok()
            .and_then(|_| mediafleet_workers::sniff(&head))
        {
            Some(s) if !mediafleet_workers::needs_ffmpeg(&s) => image_exe,
            // Unknown or unreadable content: the full binary reports it the usual way.
            _ => exe,
        }
    }

    /// Runs the media work; the child is killed if this future is dropped (shutdown) or times out.
    pub async fn run(
        &self,
        input: &Path,
        profile: &Profile,
        limits: &Limits,
        out_dir: &Path,
        timeout: Duration,
    ) -> Result<Report, SandboxError> {
        self.run_with_progress(input, profile, limits, out_dir, timeout, |_| {})
            .await
    }

    /// [`Sandbox::run`], calling `progress` with the fraction done (0.0–1.0) as the child reports it.
    pub async fn run_with_progress(
        &self,
        input: &Path,
        profile: &Profile,
        limits: &Limits,
        out_dir: &Path,
        timeout: Duration,
        progress: impl Fn(f64) + Send + Sync + 'static,
    ) -> Result<Report, SandboxError> {
        let Some(exe) = &self.exe else {
            return Ok(run_in_process(input, profile, limits, out_dir, timeout, progress).await);
        };
        let exe = self.child_for(input, exe).await;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let mut args: Vec<OsString> = vec![
            input.into(),
            "--out".into(),
            out_dir.into(),
            "--profile-json".into(),
            serde_json::to_string(profile)
                .expect("profiles serialise")
                .into(),
            "--limits-json".into(),
            serde_json::to_string(limits)
                .expect("limits serialise")
                .into(),
            "--sandboxed".into(),
            "--max-memory".into(),
            self.memory_bytes.to_string().into(),
            // The wall-clock deadline must fire first: CPU time can reach cores × wall, plus rounding slack.
            "--max-cpu-seconds".into(),
            ((timeout.as_secs() + 2) * cores).to_string().into(),
            "--progress".into(),
        ];
        let warm = match &self.warm {
            Some(pool) => match pool.take(exe) {
                Some(waiting) => warm::hand(waiting, &args).await,
                None => None,
            },
            None => None,
        };
        if let Some(pool) = &self.warm {
            // The next job's child starts while this one works.
            let (pool, exe) = (pool.clone(), exe.clone());
            tokio::spawn(async move { pool.refill(&exe) });
        }
        let mut child = match warm {
            Some(child) => child,
            None => {
                args.insert(0, "process".into());
                contain(exe, &args, false).map_err(|source| SandboxError::Spawn {
                    exe: exe.clone(),
                    source,
                })?
            }
        };
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let relay = tokio::spawn(relay_stderr(stderr, progress));
        let work = async {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).await?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out))
        };
        let outcome = tokio::time::timeout(timeout, work).await;
        if outcome.is_err() {
            // Kill and reap now: the encoder must not outlive its job, and its scratch is about to go.
            let _ = child.kill().await;
        }
        // The relay ends when the child's stderr closes (it has exited or been killed).
        let _ = relay.await;
        let (status, out) = match outcome {
            Err(_) => {
                return Ok(Report::failed(
                    None,
                    MediaError::new(
                        ErrorCode::Timeout,
                        format!("media work ran past its {}s limit", timeout.as_secs()),
                    ),
                ))
            }
            Ok(Err(e)) => return Err(SandboxError::Internal(e.to_string())),
            Ok(Ok(x)) => x,
        };
        interpret(status, &out)
    }
}

fn interpret(status: std::process::ExitStatus, out: &[u8]) -> Result<Report, SandboxError> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        // SIGTERM, SIGINT, SIGHUP: someone asked it to stop. The media did nothing wrong; run it again.
        if matches!(sig, 1 | 2 | 15) {
            return Err(SandboxError::Stopped(sig));
        }
        let hint = match sig {
            9 => " (killed: memory or CPU limit)",
            6 => " (aborted)",
            11 => " (segmentation fault)",
            24 => " (CPU time limit)",
            25 => " (output file size limit)",
            _ => "",
        };
        return Ok(Report::failed(
            None,
            MediaError::new(
                ErrorCode::MediaCrashed,
                format!("media child died by signal {sig}{hint}"),
            ),
        ));
    }
    match status.code() {
        Some(0) | Some(2) => serde_json::from_slice(out).map_err(|e| {
            SandboxError::Internal(format!("media child printed an unreadable report: {e}"))
        }),
        // 101 is Rust's panic exit code: the decoder panicked on this file.
        Some(101) => Ok(Report::failed(
            None,
            MediaError::new(ErrorCode::MediaCrashed, "media child panicked on this file"),
        )),
        other => Err(SandboxError::Internal(format!(
            "media child exited with {other:?}"
        ))),
    }
}

/// The prefix of a progress line on the child's stderr.
pub const PROGRESS_PREFIX: &str = "mediafleet-progress ";

/// Longest stderr line of a child that is relayed whole; longer lines are cut.
pub const STDERR_LINE_MAX: usize = 2048;
/// Most stderr lines relayed per child (progress lines aside); the rest are counted and dropped.
pub const STDERR_LINES_MAX: usize = 200;

/// Reads the child's stderr: progress lines go to `progress`, everything else to our stderr, each line cut at
/// [`STDERR_LINE_MAX`] bytes and at most [`STDERR_LINES_MAX`] lines, so a child cannot flood the worker's
/// memory or its log.
async fn relay_stderr(
    stderr: tokio::net::unix::pipe::Receiver,
    progress: impl Fn(f64) + Send + Sync + 'static,
) {
    use futures::StreamExt;
    use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
    let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(STDERR_LINE_MAX));
    let (mut relayed, mut dropped) = (0usize, 0usize);
    let mut layers_seen = false;
    while let Some(item) = lines.next().await {
        let line = match item {
            Ok(line) => line,
            // The codec skips the rest of an over-long line by itself; note that it was there.
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                "[line longer than the cap cut]".to_owned()
            }
            Err(LinesCodecError::Io(_)) => break,
        };
        if let Some(p) = line
            .strip_prefix(PROGRESS_PREFIX)
            .and_then(|x| x.trim().parse::<f64>().ok())
        {
            progress(p);
            continue;
        }
        // Only a child's first layers line counts: the child writes it once confined, before it opens its
        // input, so anything later could come from a decoder a hostile file took over.
        if let Some(layers) = line.strip_prefix(confine::LAYERS_PREFIX) {
            if !layers_seen {
                layers_seen = true;
                note_layers(layers);
                continue;
            }
        }
        if relayed < STDERR_LINES_MAX {
            relayed += 1;
            eprintln!("{line}");
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "media child wrote more stderr lines than are relayed"
        );
    }
}

/// The sandbox layers the last media child reported (`rlimits=on netns=on …`), for logs and readiness.
static LAST_LAYERS: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Whether some media child reported landlock on, and whether any reported it off (then never again on).
static LANDLOCK_ON: AtomicBool = AtomicBool::new(false);
static LANDLOCK_OFF: AtomicBool = AtomicBool::new(false);

fn note_layers(layers: &str) {
    if layers.split_whitespace().any(|l| l == "landlock=on") {
        LANDLOCK_ON.store(true, Ordering::Relaxed);
    } else {
        LANDLOCK_OFF.store(true, Ordering::Relaxed);
    }
    let mut last = LAST_LAYERS.lock().unwrap_or_else(|e| e.into_inner());
    if last.as_deref() != Some(layers) {
        if layers.contains("=off") {
            tracing::warn!(layers, "media sandbox runs with a layer off");
        } else {
            tracing::info!(layers, "media sandbox layers");
        }
        *last = Some(layers.to_owned());
    }
}

/// The layers the last media child reported, if any child has run.
pub fn last_layers() -> Option<String> {
    LAST_LAYERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Cancels the in-process work when dropped (the job's future was dropped on shutdown), so the blocking
/// thread stops at its next packet instead of encoding on for nobody.
struct CancelOnDrop(mediafleet_workers::Control);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn run_in_process(
    input: &Path,
    profile: &Profile,
    limits: &Limits,
    out_dir: &Path,
    timeout: Duration,
    progress: impl Fn(f64) + Send + Sync + 'static,
) -> Report {
    let (input, profile, limits, out_dir) = (
        input.to_path_buf(),
        profile.clone(),
        *limits,
        out_dir.to_path_buf(),
    );
    let control = mediafleet_workers::Control::with_progress(progress);
    let guard = CancelOnDrop(control.clone());
    let mut task = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            mediafleet_workers::process_with(&input, &profile, &limits, &out_dir, &control)
        }))
    });
    let result = match tokio::time::timeout(timeout, &mut task).await {
        Ok(r) => r,
        Err(_) => {
            // Stop the encode and wait for the thread: nothing may keep writing into a scratch dir that the
            // caller is about to remove.
            guard.0.cancel();
            let _ = task.await;
            return Report::failed(
                None,
                MediaError::new(
                    ErrorCode::Timeout,
                    format!("media work ran past its {}s limit", timeout.as_secs()),
                ),
            );
        }
    };
    match result {
        Ok(Ok(report)) => report,
        _ => Report::failed(
            None,
            MediaError::new(ErrorCode::MediaCrashed, "media work panicked on this file"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;

    #[test]
    fn each_way_the_child_ends_has_its_meaning() {
        let killed = interpret(ExitStatus::from_raw(9), b"").unwrap();
        assert_eq!(killed.error.unwrap().code, ErrorCode::MediaCrashed);
        let report = Report::failed(None, MediaError::new(ErrorCode::CorruptMedia, "bad"));
        let json = serde_json::to_vec(&report).unwrap();
        assert_eq!(
            interpret(ExitStatus::from_raw(2 << 8), &json).unwrap(),
            report
        );
        let panicked = interpret(ExitStatus::from_raw(101 << 8), b"").unwrap();
        assert_eq!(panicked.error.unwrap().code, ErrorCode::MediaCrashed);
        assert!(interpret(ExitStatus::from_raw(1 << 8), b"").is_err());
        // Stopped from outside: retried, never the media's fault.
        for sig in [1, 2, 15] {
            assert!(matches!(
                interpret(ExitStatus::from_raw(sig), b""),
                Err(SandboxError::Stopped(_))
            ));
        }
        assert!(interpret(ExitStatus::from_raw(0), b"garbage").is_err());
    }

    #[tokio::test]
    async fn in_process_mode_reports_like_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        std::fs::write(&input, b"not an image at all").unwrap();
        let sandbox = Sandbox::in_process(1 << 30);
        let profile = mediafleet_proto::Profile::default_profile();
        let report = sandbox
            .run(
                &input,
                &profile,
                &Limits::default(),
                dir.path(),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert!(!report.is_ready());
    }
}
