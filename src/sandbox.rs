//! Runs `workers::process` in a child process with rlimits and a timeout.
//!
//! Decoders can panic, abort or run away on hostile files, and libav runs in-process. So a job's media work
//! runs as `mediafleet process … --sandboxed`: a child that caps its own address space and CPU time before
//! touching the file, prints one JSON report and exits. Each way the child can end has its own meaning:
//! exit 0 or 2 with a report is the answer; death by a signal is `media_crashed`; the deadline is `timeout`;
//! exit 1 or a failed spawn is our problem, and retryable.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

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
}

/// How media work is run.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// `Some(exe)`: a child process of that executable; `None`: in-process (debugging and unit tests).
    pub exe: Option<PathBuf>,
    /// Address-space cap of the child.
    pub memory_bytes: u64,
}

impl Sandbox {
    /// A sandbox that runs this very executable as the child.
    pub fn current_exe(memory_bytes: u64) -> Result<Self, std::io::Error> {
        Ok(Sandbox {
            exe: Some(std::env::current_exe()?),
            memory_bytes,
        })
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
        let Some(exe) = &self.exe else {
            return Ok(run_in_process(input, profile, limits, out_dir, timeout).await);
        };
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
            .arg(timeout.as_secs().max(1).to_string())
            .env_remove("MEDIAFLEET_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SandboxError::Spawn {
                exe: exe.clone(),
                source,
            })?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let work = async {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).await?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out))
        };
        let (status, out) = match tokio::time::timeout(timeout, work).await {
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

async fn run_in_process(
    input: &Path,
    profile: &Profile,
    limits: &Limits,
    out_dir: &Path,
    timeout: Duration,
) -> Report {
    let (input, profile, limits, out_dir) = (
        input.to_path_buf(),
        profile.clone(),
        *limits,
        out_dir.to_path_buf(),
    );
    let task = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(|| {
            mediafleet_workers::process(&input, &profile, &limits, &out_dir)
        })
    });
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Report::failed(
            None,
            MediaError::new(ErrorCode::Timeout, "media work timed out"),
        ),
        Ok(Ok(Ok(report))) => report,
        Ok(_) => Report::failed(
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
        let sandbox = Sandbox {
            exe: None,
            memory_bytes: 1 << 30,
        };
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
