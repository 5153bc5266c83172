//! The media child confines itself before it opens its input: `process --sandboxed` calls [`confine`] while it
//! is still single-threaded, so every layer covers every thread the decoders start later.
//!
//! Layers, each applied where the kernel allows and reported either way ([`Layers`]):
//! - **rlimits**: address space, CPU seconds, file size (what one rendition may write), open files, processes,
//!   no core dumps;
//! - **network**: an empty network namespace: the worker's own empty one, entered before exec (see
//!   [`super::netns`]), or else a new one (`unshare(CLONE_NEWNET)`, inside a new user namespace when not
//!   root): only a loopback that is down, so no connection can leave;
//! - **seccomp**: `socket`, `execve`/`execveat` and `ptrace` fail with `EACCES`, so even without a namespace no
//!   socket can be made and no other program run;
//! - **landlock**: the filesystem shrinks to the input file (read) and the output directory (read, write,
//!   create, remove); everything else, other jobs' scratch included, is out of reach.
//!
//! A kernel without landlock or namespaces (some container runtimes forbid them) still gets the other layers;
//! `strict` makes a missing layer an error instead.

use std::path::Path;

/// Limits the child sets on itself.
#[derive(Debug, Clone, Copy)]
pub struct ChildLimits {
    /// Address-space cap (bytes).
    pub memory: Option<u64>,
    /// CPU-time cap (seconds).
    pub cpu_seconds: Option<u64>,
    /// Largest file the child may write (bytes).
    pub file_bytes: u64,
    /// Most open file descriptors.
    pub open_files: u64,
    /// Most processes and threads of the child's user (threads count here on Linux).
    pub processes: u64,
}

impl Default for ChildLimits {
    fn default() -> Self {
        ChildLimits {
            memory: None,
            cpu_seconds: None,
            file_bytes: 8 << 30,
            open_files: 256,
            processes: 4096,
        }
    }
}

/// Which layers are in force, for the log and for `/readyz`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Layers {
    /// rlimits set.
    pub rlimits: bool,
    /// In a fresh network namespace.
    pub netns: bool,
    /// seccomp filter loaded.
    pub seccomp: bool,
    /// landlock ruleset enforced (fully or partially, by the kernel's ABI).
    pub landlock: bool,
}

impl std::fmt::Display for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "rlimits={} netns={} seccomp={} landlock={}",
            on(self.rlimits),
            on(self.netns),
            on(self.seccomp),
            on(self.landlock)
        )
    }
}

/// The prefix of the one line the child writes to stderr to say which layers run.
pub const LAYERS_PREFIX: &str = "mediafleet-sandbox ";

/// Why confinement failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A limit could not be set.
    #[error("rlimit: {0}")]
    Rlimit(std::io::Error),
    /// A layer is unavailable and `strict` was asked for.
    #[error("sandbox layer {0} is unavailable here: {1}")]
    Unavailable(&'static str, String),
}

/// Confines the calling process. Call it single-threaded, before opening `input`.
pub fn confine(
    input: &Path,
    out_dir: &Path,
    limits: &ChildLimits,
    strict: bool,
) -> Result<Layers, ConfineError> {
    let mut layers = Layers::default();
    set_rlimits(limits).map_err(ConfineError::Rlimit)?;
    layers.rlimits = true;
    let network = match EARLY_NETNS.get() {
        Some(done) => done.clone(),
        None => isolate_network(),
    };
    match network {
        Ok(()) => layers.netns = true,
        Err(e) if strict => return Err(ConfineError::Unavailable("netns", e)),
        Err(_) => {}
    }
    match restrict_filesystem(input, out_dir) {
        Ok(full) => layers.landlock = full,
        Err(e) if strict => return Err(ConfineError::Unavailable("landlock", e)),
        Err(_) => {}
    }
    // Last: the filter forbids execve, and nothing after this point needs a socket.
    match deny_syscalls() {
        Ok(()) => layers.seccomp = true,
        Err(e) if strict => return Err(ConfineError::Unavailable("seccomp", e)),
        Err(_) => {}
    }
    Ok(layers)
}

fn set_rlimits(l: &ChildLimits) -> std::io::Result<()> {
    use rlimit::Resource;
    if let Some(bytes) = l.memory {
        Resource::AS.set(bytes, bytes)?;
    }
    if let Some(secs) = l.cpu_seconds {
        Resource::CPU.set(secs, secs + 1)?;
    }
    Resource::CORE.set(0, 0)?;
    Resource::FSIZE.set(l.file_bytes, l.file_bytes)?;
    Resource::NOFILE.set(l.open_files, l.open_files)?;
    Resource::NPROC.set(l.processes, l.processes)?;
    Ok(())
}

/// The outcome of [`isolate_network_early`], when a warm child entered its namespace while it waited.
static EARLY_NETNS: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

/// Enters the empty network namespace now (a warm child, still single-threaded, before it knows its job);
/// [`confine`] then reports that outcome instead of unsharing again.
pub fn isolate_network_early() {
    let _ = EARLY_NETNS.set(isolate_network());
}

/// An empty network namespace: the worker's, when the child was started inside it; else a new one: as root
/// directly, otherwise inside a new user namespace (allowed to unprivileged
/// users on most distributions, and in a single-threaded process only).
fn isolate_network() -> Result<(), String> {
    use nix::sched::{unshare, CloneFlags};
    if std::env::var_os(super::netns::ENTERED).is_some() && super::netns::only_loopback() {
        return Ok(());
    }
    match unshare(CloneFlags::CLONE_NEWNET) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Landlock: read the input, read and write the output directory, nothing else. Returns whether the ruleset
/// is fully enforced (an older kernel may enforce part of it).
fn restrict_filesystem(input: &Path, out_dir: &Path) -> Result<bool, String> {
    use landlock::{
        Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, ABI,
    };
    let abi = ABI::V5;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let input_fd = PathFd::new(input).map_err(|e| err(&e))?;
    let out_fd = PathFd::new(out_dir).map_err(|e| err(&e))?;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| err(&e))?
        .create()
        .map_err(|e| err(&e))?
        .add_rule(PathBeneath::new(input_fd, AccessFs::from_read(abi)))
        .map_err(|e| err(&e))?
        .add_rule(PathBeneath::new(out_fd, AccessFs::from_all(abi)))
        .map_err(|e| err(&e))?
        .restrict_self()
        .map_err(|e| err(&e))?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(true),
        RulesetStatus::PartiallyEnforced => Ok(true),
        RulesetStatus::NotEnforced => Err("the kernel does not enforce landlock".into()),
    }
}

/// seccomp: no sockets, no new programs, no tracing of other processes.
fn deny_syscalls() -> Result<(), String> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    use std::collections::BTreeMap;
    let denied = [
        libc::SYS_socket,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
    ];
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        denied.iter().map(|nr| (*nr, Vec::new())).collect();
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(nix::errno::Errno::EACCES as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    seccompiler::apply_filter(&program).map_err(|e| e.to_string())
}

/// Tries, from inside a confined process, what the sandbox must deny, and reports what happened. Used by
/// `process --sandboxed --self-check` (tests, and operators checking a new host).
pub fn self_check(input: &Path, out_dir: &Path, layers: Layers) -> serde_json::Value {
    let denied = |r: std::io::Result<()>| r.is_err();
    let socket = denied(std::net::TcpListener::bind("127.0.0.1:0").map(|_| ()));
    let connect = denied(
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([1, 1, 1, 1], 80)),
            std::time::Duration::from_millis(200),
        )
        .map(|_| ()),
    );
    let outside_read = denied(std::fs::read("/etc/hostname").map(|_| ()));
    let sibling = out_dir
        .parent()
        .map(|p| p.join("mediafleet-self-check-sibling"));
    let outside_write = denied(match &sibling {
        Some(p) => std::fs::write(p, b"x"),
        None => Err(std::io::Error::other("no parent")),
    });
    let exec = denied(std::process::Command::new("/bin/true").status().map(|_| ()));
    let input_read = std::fs::read(input).is_ok();
    let output_write = std::fs::write(out_dir.join("self-check"), b"ok").is_ok();
    serde_json::json!({
        "layers": layers,
        "socket_denied": socket,
        "connect_denied": connect,
        "outside_read_denied": outside_read,
        "outside_write_denied": outside_write,
        "exec_denied": exec,
        "input_readable": input_read,
        "output_writable": output_write,
    })
}
