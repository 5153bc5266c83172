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

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mediafleet_proto::{ErrorCode, Profile};
use mediafleet_workers::{Limits, MediaError, Report};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

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
}

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
        }
    }

    /// Media work in this process (no rlimits, no kill on timeout): for debugging and unit tests.
    pub fn in_process(memory_bytes: u64) -> Self {
        Sandbox {
            exe: None,
            image_exe: None,
            memory_bytes,
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
        let mut child = tokio::process::Command::new(exe)
            .arg("process")
            .arg(input)
            .arg("--out")
            .arg(out_dir)
            .arg("--profile-json")
            .arg(serde_json::to_string(profile).expect("profiles serialise"))
            .arg("--limits-json")
            .arg(serde_json::to_string(limits).expect("limits serialise"))
            .arg("--sandboxed")
            .arg("--max-memory")
            .arg(self.memory_bytes.to_string())
            .arg("--max-cpu-seconds")
            // The wall-clock deadline must fire first: CPU time can reach cores × wall, plus rounding slack.
            .arg(((timeout.as_secs() + 2) * cores).to_string())
            .arg("--progress")
            .env_remove("MEDIAFLEET_CONFIG")
            // glibc reserves 64 MiB of address space per thread arena; encoders run many threads, and the
            // address-space rlimit counts reservations, not use.
            .env("MALLOC_ARENA_MAX", "4")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SandboxError::Spawn {
                exe: exe.clone(),
                source,
            })?;
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
        let hint = match sig {
            9 => " (killed: memory or CPU limit)",
            6 => " (aborted)",
            11 => " (segmentation fault)",
            24 => " (CPU time limit)",
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

/// Reads the child's stderr: progress lines go to `progress`, everything else to our stderr.
async fn relay_stderr(
    stderr: tokio::process::ChildStderr,
    progress: impl Fn(f64) + Send + Sync + 'static,
) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match line
            .strip_prefix(PROGRESS_PREFIX)
            .and_then(|x| x.trim().parse::<f64>().ok())
        {
            Some(p) => progress(p),
            None => eprintln!("{line}"),
        }
    }
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
