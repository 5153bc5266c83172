//! Warm media children: a child started ahead of its job, waiting for its arguments on stdin.
//!
//! Starting a child costs a fork, an exec, the dynamic linker (FFmpeg's ~160 libraries for `mediafleet`) and
//! its own start-up, several milliseconds that a thumbnail job would otherwise wait for. So the sandbox keeps
//! a few children of each executable started and waiting (`process --await-args`), and a job hands one its
//! argument list as one JSON line; a replacement is started while the job runs.
//!
//! A waiting child is already contained (own process group, cleared environment, stop signals ignored,
//! `PR_SET_PDEATHSIG`) and has already entered its empty network namespace; the rest of the confinement
//! (rlimits, landlock on the job's paths, seccomp) follows once it knows its job, exactly as for a child
//! started cold. It reads nothing but its stdin until then. A child that died while waiting (its parent
//! thread ended, an operator killed it) is noticed when taken, and the job starts a child cold instead.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::io::AsyncWriteExt;

use super::spawn::ContainedChild as Child;

/// The flag that makes `process` wait for its arguments on stdin.
pub const AWAIT_ARGS: &str = "--await-args";

/// Idle children per executable.
pub struct WarmPool {
    per_exe: usize,
    idle: Mutex<Vec<(PathBuf, Child)>>,
    /// The worker's scratch directory, shown as the placeholder `--out` of a waiting child so that `ps`
    /// tells whose child it is (its real output directory comes with its job).
    home: Mutex<Option<PathBuf>>,
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().map(|v| v.len()).unwrap_or(0);
        f.debug_struct("WarmPool")
            .field("per_exe", &self.per_exe)
            .field("idle", &idle)
            .finish()
    }
}

impl WarmPool {
    /// A pool keeping `per_exe` children of each executable waiting.
    pub fn new(per_exe: usize) -> Self {
        WarmPool {
            per_exe,
            idle: Mutex::new(Vec::new()),
            home: Mutex::new(None),
        }
    }

    /// Sets the directory waiting children name as their placeholder `--out`.
    pub fn set_home(&self, dir: &Path) {
        *self.home.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.to_path_buf());
    }

    /// A waiting child of `exe`, if one is idle and still alive.
    pub fn take(&self, exe: &Path) -> Option<Child> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Children that died while waiting are dropped (and reaped).
        idle.retain_mut(|(_, c)| matches!(c.try_wait(), Ok(None)));
        let i = idle.iter().position(|(e, _)| e == exe)?;
        Some(idle.swap_remove(i).1)
    }

    /// Starts children of `exe` until `per_exe` are waiting. Call it from a task on the runtime: the kernel
    /// ties `PR_SET_PDEATHSIG` to the thread that forked, and runtime worker threads live as long as the
    /// worker (a blocking-pool thread would end when idle and take its children with it).
    pub fn refill(&self, exe: &Path) {
        loop {
            let waiting = {
                let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.iter().filter(|(e, _)| e == exe).count()
            };
            if waiting >= self.per_exe {
                return;
            }
            let home = self.home.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match spawn_waiting(exe, home.as_deref()) {
                Ok(child) => self
                    .idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((exe.to_path_buf(), child)),
                Err(e) => {
                    tracing::warn!(exe = %exe.display(), error = %e, "cannot start a warm media child");
                    return;
                }
            }
        }
    }
}

/// Starts `exe process - --out HOME --sandboxed --await-args`, contained like every media child.
fn spawn_waiting(exe: &Path, home: Option<&Path>) -> std::io::Result<Child> {
    let args: [OsString; 6] = [
        "process".into(),
        "-".into(),
        "--out".into(),
        home.unwrap_or(Path::new("-")).into(),
        "--sandboxed".into(),
        AWAIT_ARGS.into(),
    ];
    super::contain(exe, &args, true)
}

/// Hands a waiting child its arguments (everything after `process`) and closes its stdin. `None` when an
/// argument is not UTF-8 (the caller starts a child cold) or the child is gone.
pub async fn hand(mut child: Child, args: &[OsString]) -> Option<Child> {
    let argv: Option<Vec<&str>> = args.iter().map(|a| a.to_str()).collect();
    let mut line = serde_json::to_vec(&argv?).ok()?;
    line.push(b'\n');
    let mut stdin = child.stdin.take()?;
    stdin.write_all(&line).await.ok()?;
    drop(stdin);
    Some(child)
}

/// Reads the argument list a waiting child was handed. `Ok(None)`: stdin closed with no job (the worker is
/// stopping, or dropped its idle children).
pub fn read_args() -> std::io::Result<Option<Vec<String>>> {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| std::io::Error::other(format!("unreadable argument line: {e}")))
}
