//! Starting a contained media child without copying the worker.
//!
//! `fork` copies the worker's page tables, and every page either side then writes is copied again on its
//! first write. For a `serve` process that holds an HTTP server, a database pool and a queue, that was the
//! largest single cost of a thumbnail job (BENCHMARKS.md, "Fleet overhead"). `posix_spawn` avoids it with
//! `clone(CLONE_VM | CLONE_VFORK)`: the child borrows the parent's memory until it calls `execve`. But
//! `posix_spawn` runs no code of ours between the clone and the exec, and the containment needs some: the
//! kernel must be told to kill the child when the worker dies (`PR_SET_PDEATHSIG`) *before* the child can
//! outlive it, or a worker killed in that window leaves an encoder running for nobody.
//!
//! So [`spawn`] makes the same clone itself, and the child runs only async-signal-safe system calls before
//! `execve`: signal dispositions, `setpgid`, `prctl`, `getppid`, `setns`, `dup2`, `sigprocmask`. It allocates
//! nothing and cannot panic; everything it reads (paths, argument and environment arrays, descriptors) is
//! prepared by the parent. The parent's thread blocks all signals around the clone, so no handler of the
//! worker ever runs on the borrowed memory; the child resets every caught signal to its default before it
//! unblocks them. `CLONE_PIDFD` gives a pidfd, which tells the runtime when the child exits.

#![allow(unsafe_code)]

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// What the child needs between the clone and the exec, all prepared by the parent.
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Descriptors that become the child's stdin, stdout and stderr.
    stdio: [RawFd; 3],
    /// The worker's pid: the child checks that it is still its parent once the death signal is armed.
    parent: libc::pid_t,
    /// The highest signal number (`SIGRTMAX`), looked up by the parent.
    sigmax: libc::c_int,
    /// A network namespace the child enters (`setns`) before it execs, or -1.
    netns: RawFd,
    /// Written by the child when it cannot exec: the errno.
    err: libc::c_int,
}

/// Leaves the child with `err` recorded for the parent.
///
/// # Safety
/// Only in the cloned child, with `a` the parent's `ChildArgs`.
unsafe fn fail(a: *mut ChildArgs, err: libc::c_int) -> ! {
    // SAFETY: see the function's contract; `_exit` runs no atexit handlers of the parent's.
    unsafe {
        std::ptr::write_volatile(&mut (*a).err, err);
        libc::_exit(127)
    }
}

/// The errno of the last failed call.
///
/// # Safety
/// Reads the calling thread's errno slot (in the child, the suspended parent thread's).
unsafe fn errno() -> libc::c_int {
    // SAFETY: see the function's contract.
    unsafe { *libc::__errno_location() }
}

/// Stack of the cloned child until `execve`; it runs a handful of system-call wrappers.
const CHILD_STACK: usize = 64 * 1024;

/// The child side. Only async-signal-safe calls; no allocation, no panics.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the parent's `ChildArgs`, which outlives the child's use of it: the parent's
    // thread is suspended (CLONE_VFORK) until this child has called `execve` or `_exit`.
    unsafe {
        let a = arg as *mut ChildArgs;
        // Every caught signal back to its default, so that no handler of the worker can run here once the
        // mask is lifted; the stop signals are ignored (only the worker decides when its child stops).
        let mut old: libc::sigaction = std::mem::zeroed();
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..(*a).sigmax + 1 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
                && old.sa_sigaction != libc::SIG_DFL
            {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut ign: libc::sigaction = std::mem::zeroed();
        ign.sa_sigaction = libc::SIG_IGN;
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            if libc::sigaction(sig, &ign, std::ptr::null_mut()) != 0 {
                fail(a, errno());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            fail(a, errno());
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            fail(a, errno());
        }
        // The worker may have died before the prctl: then nothing would ever kill this child.
        if libc::getppid() != (*a).parent {
            fail(a, libc::ESRCH);
        }
        if (*a).netns >= 0 && libc::setns((*a).netns, libc::CLONE_NEWNET) != 0 {
            fail(a, errno());
        }
        for (target, fd) in (0..3).zip((*a).stdio) {
            let done = if fd == target {
                // Already in place: only its close-on-exec flag must go.
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, target)
            };
            if done < 0 {
                fail(a, errno());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve((*a).path, (*a).argv, (*a).envp);
        fail(a, errno())
    }
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a NUL byte in an argument or variable",
        )
    })
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A pipe as (read end, write end), both close-on-exec; neither end is one of the standard descriptors, so
/// the child's `dup2`s cannot overwrite each other.
fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both were just opened and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that we own.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Starts `exe` with `args` (argv[0] is `exe`) and exactly the environment `env`, contained: its own process
/// group, stop signals ignored, killed by the kernel when the calling thread's process dies. Stdout and
/// stderr are pipes; stdin is a pipe when `stdin_piped`, else `/dev/null`. With `netns`, the child enters
/// that network namespace before it execs. Call it on a runtime thread (see
/// [`super::warm::WarmPool::refill`] for why the thread matters).
pub fn spawn(
    exe: &Path,
    args: &[OsString],
    env: &[(OsString, OsString)],
    stdin_piped: bool,
    netns: Option<RawFd>,
) -> io::Result<ContainedChild> {
    let path = cstring(exe.as_os_str())?;
    let argv_c = std::iter::once(Ok(path.clone()))
        .chain(args.iter().map(|a| cstring(a)))
        .collect::<io::Result<Vec<_>>>()?;
    let envp_c = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(OsStr::from_bytes(&kv))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let argv: Vec<*const libc::c_char> = argv_c
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = envp_c
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();

    let (stdin_child, stdin_parent) = if stdin_piped {
        let (r, w) = pipe_pair()?;
        (r, Some(w))
    } else {
        (above_stdio(std::fs::File::open("/dev/null")?.into())?, None)
    };
    let (stdout_parent, stdout_child) = pipe_pair()?;
    let (stderr_parent, stderr_child) = pipe_pair()?;

    let mut a = ChildArgs {
        path: path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        stdio: [
            stdin_child.as_raw_fd(),
            stdout_child.as_raw_fd(),
            stderr_child.as_raw_fd(),
        ],
        parent: std::process::id() as libc::pid_t,
        sigmax: libc::SIGRTMAX(),
        netns: netns.unwrap_or(-1),
        err: 0,
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down on every architecture Linux runs us on here; keep its top 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    let mut pidfd: libc::c_int = -1;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;

    // SAFETY: all signals are blocked on this thread across the clone (restored right after), so no handler
    // runs in the child on borrowed memory; `a`, `argv`, `envp`, the CStrings and the stack live until the
    // clone returns, which with CLONE_VFORK is after the child has exec'd or exited.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut saved: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
        let pid = libc::clone(
            child_main,
            top as *mut libc::c_void,
            flags,
            &mut a as *mut ChildArgs as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        );
        let clone_err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_err);
        }
        pid
    };
    drop(stack);
    // SAFETY: with CLONE_PIDFD the kernel stored a new close-on-exec pidfd that we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let err = unsafe { std::ptr::read_volatile(&a.err) };
    if err != 0 {
        // The child has exited (or is about to): reap it, and report why it could not exec.
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(io::Error::from_raw_os_error(err));
    }
    drop((stdin_child, stdout_child, stderr_child));
    // SAFETY: the AsyncFd owns the pidfd, which stays open and the same until the AsyncFd is dropped.
    let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)?;
    Ok(ContainedChild {
        pid,
        pidfd: Some(pidfd),
        status: None,
        stdin: stdin_parent.map(pipe::Sender::from_owned_fd).transpose()?,
        stdout: Some(pipe::Receiver::from_owned_fd(stdout_parent)?),
        stderr: Some(pipe::Receiver::from_owned_fd(stderr_parent)?),
    })
}

/// A media child started by [`spawn`]. Killed (and reaped) when dropped before it was waited for.
pub struct ContainedChild {
    pid: libc::pid_t,
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
    /// Its stdin, when piped.
    pub stdin: Option<pipe::Sender>,
    /// Its stdout.
    pub stdout: Option<pipe::Receiver>,
    /// Its stderr.
    pub stderr: Option<pipe::Receiver>,
}

impl std::fmt::Debug for ContainedChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainedChild")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish()
    }
}

impl ContainedChild {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Its exit status if it has exited (and is now reaped), without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = reap(self.pid, libc::WNOHANG)?;
        }
        Ok(self.status)
    }

    /// Waits for it to exit and reaps it.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            let fd = self.pidfd.as_ref().expect("a pidfd until dropped");
            // The pidfd turns readable when the child exits; the next try_wait then reaps it.
            fd.readable().await?.clear_ready();
        }
    }

    /// Sends it SIGKILL (unless it was already reaped), then waits for it.
    pub async fn kill(&mut self) -> io::Result<()> {
        if self.status.is_none() {
            // SAFETY: not reaped yet, so the pid is still this child's (a zombie keeps it).
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        self.wait().await.map(|_| ())
    }
}

/// `waitpid` for one child: `Ok(None)` while it runs (with WNOHANG).
fn reap(pid: libc::pid_t, options: libc::c_int) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    // SAFETY: plain system call on our own child.
    let r = cvt(unsafe { libc::waitpid(pid, &mut status, options) })?;
    Ok((r == pid).then(|| ExitStatus::from_raw(status)))
}

impl Drop for ContainedChild {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // SAFETY: not reaped yet, so the pid is still this child's.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        if matches!(reap(self.pid, libc::WNOHANG), Ok(Some(_)) | Err(_)) {
            return;
        }
        // It dies within moments; reap it off this thread so a drop never blocks a runtime thread.
        let pid = self.pid;
        let pidfd = self.pidfd.take();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Some(fd) = &pidfd {
                        let _ = fd.readable().await;
                    }
                    let _ = reap(pid, 0);
                });
            }
            Err(_) => {
                std::thread::spawn(move || reap(pid, 0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn sh(script: &str) -> Vec<OsString> {
        vec!["-c".into(), script.into()]
    }

    #[tokio::test]
    async fn runs_a_child_with_its_stdio_and_exit_status() {
        let env = [("ONLY".into(), "this".into())];
        let mut child = spawn(
            Path::new("/bin/sh"),
            &sh("read x; echo \"$x $ONLY ${HOME:-nohome}\"; echo oops >&2; exit 3"),
            &env,
            true,
            None,
        )
        .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello\n").await.unwrap();
        drop(stdin);
        let (mut out, mut err) = (String::new(), String::new());
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        assert_eq!(out, "hello this nohome\n");
        assert_eq!(err, "oops\n");
        assert_eq!(child.wait().await.unwrap().code(), Some(3));
    }

    #[tokio::test]
    async fn the_child_is_contained_and_killable() {
        let mut child = spawn(Path::new("/bin/sleep"), &["30".into()], &[], false, None).unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        assert_eq!(nix::unistd::getpgid(Some(pid)).unwrap(), pid);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let ignored = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
            .unwrap();
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            assert_ne!(ignored & (1 << (sig - 1)), 0, "signal {sig} is not ignored");
        }
        assert!(child.try_wait().unwrap().is_none());
        child.kill().await.unwrap();
        assert_eq!(child.try_wait().unwrap().unwrap().signal(), Some(9));
    }

    #[tokio::test]
    async fn a_missing_executable_is_an_error_and_dropping_kills() {
        let err = spawn(Path::new("/nonexistent/exe"), &[], &[], false, None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let child = spawn(Path::new("/bin/sleep"), &["30".into()], &[], false, None).unwrap();
        let pid = child.id();
        drop(child);
        let gone = async {
            while std::fs::metadata(format!("/proc/{pid}")).is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), gone)
            .await
            .expect("a dropped child is killed and reaped");
    }
}
