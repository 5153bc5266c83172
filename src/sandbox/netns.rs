//! One empty network namespace per worker, entered by each of its media children.
//!
//! A child used to make its own namespace (`unshare(CLONE_NEWNET)`). Creating one and, above all, tearing it
//! down again (the kernel's `cleanup_net` worker) costs about a millisecond of CPU per child, more than the
//! rest of the containment together, and on a busy worker every core is doing media work. So where the worker
//! may create a network namespace itself (as root, or with `CAP_SYS_ADMIN`), it makes one empty namespace once,
//! keeps a descriptor to it, and every child enters it with `setns` between the clone and the exec (see
//! [`super::spawn`]). The child checks on its own that it sees no interface but the loopback, which is down in
//! a namespace nobody configured, before it counts the layer as on ([`super::confine`]).
//!
//! Children sharing a namespace could in principle reach each other over it, but none can open a socket
//! (seccomp), and none can reach the host's network, which is what the layer is for. Where the worker may not
//! create a namespace, each child still makes its own inside a new user namespace, as before.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// Set in a child's environment when it was started inside the worker's empty namespace.
pub const ENTERED: &str = "MEDIAFLEET_NETNS_ENTERED";

static SHARED: OnceLock<Option<OwnedFd>> = OnceLock::new();

/// The worker's empty network namespace, made on first use; `None` where it may not make one.
pub fn shared() -> Option<RawFd> {
    SHARED.get_or_init(make).as_ref().map(|fd| fd.as_raw_fd())
}

/// Unshares the network namespace of a short-lived thread (namespaces belong to threads) and keeps a
/// descriptor to it, which keeps the namespace alive after the thread ends.
fn make() -> Option<OwnedFd> {
    let made = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        std::fs::File::open("/proc/thread-self/ns/net")
            .ok()
            .map(OwnedFd::from)
    })
    .join()
    .ok()
    .flatten();
    if made.is_none() {
        tracing::debug!("no shared network namespace here; each media child makes its own");
    }
    made
}

/// Whether the calling process sees no network interface but the loopback.
pub fn only_loopback() -> bool {
    let Ok(dev) = std::fs::read_to_string("/proc/self/net/dev") else {
        return false;
    };
    // Bound first: as the tail expression, the iterator borrowing `dev` would outlive it.
    let only_lo = interfaces(&dev).all(|name| name == "lo");
    only_lo
}

/// The interface names in the text of `/proc/…/net/dev`: two header lines, then one `name: counters…` line
/// per interface.
fn interfaces(dev: &str) -> impl Iterator<Item = &str> {
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_that_enters_the_shared_namespace_sees_only_the_loopback() {
        let Some(fd) = shared() else {
            // Not root here: the fallback (a namespace per child) is covered by the sandbox's own tests.
            assert_ne!(
                std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()),
                0,
                "root must be able to make a namespace"
            );
            return;
        };
        assert_eq!(shared(), Some(fd), "made once");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut child = super::super::spawn::spawn(
                std::path::Path::new("/bin/cat"),
                &["/proc/self/net/dev".into()],
                &[],
                false,
                Some(fd),
            )
            .unwrap();
            let mut out = String::new();
            tokio::io::AsyncReadExt::read_to_string(child.stdout.as_mut().unwrap(), &mut out)
                .await
                .unwrap();
            assert!(child.wait().await.unwrap().success());
            let names: Vec<&str> = interfaces(&out).collect();
            assert_eq!(names, ["lo"], "{out}");
        });
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let theirs = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert_ne!(ours, theirs, "the shared namespace is not the worker's own");
    }
}
