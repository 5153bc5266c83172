//! Host-level faults a test makes for itself (it runs as root): a small tmpfs, and a network namespace joined
//! to the host by a veth pair whose link the test takes down and up. Both are undone on drop, also on a panic.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a command, failing loudly with what it said.
fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tmpfs of `size` (`mount -o size=…`) on a directory; unmounted on drop.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                path.to_str().unwrap(),
            ],
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    /// Bytes in use (`statvfs`, through `df`).
    pub fn used_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=used", "-B1"])
            .arg(&self.path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A network namespace with one veth pair to the host: `host` (on the host side) and `inner` (in the
/// namespace), a /30 of 10.231.0.0/16 made up for the test. Nothing else is routed: a process inside reaches
/// only what listens on `host`.
pub struct Netns {
    pub name: String,
    pub host: Ipv4Addr,
    pub inner: Ipv4Addr,
    veth: String,
}

impl Netns {
    pub fn create() -> Netns {
        let tag = &super::unique("")[1..8];
        let name = format!("mfchaos{tag}");
        let veth = format!("mfh{tag}");
        let peer = format!("mfn{tag}");
        let n = u8::from_str_radix(&tag[..2], 16).unwrap();
        let host = Ipv4Addr::new(10, 231, n, 1);
        let inner = Ipv4Addr::new(10, 231, n, 2);
        sh("ip", &["netns", "add", &name]);
        let ns = Netns {
            name,
            host,
            inner,
            veth,
        };
        sh(
            "ip",
            &[
                "link", "add", &ns.veth, "type", "veth", "peer", "name", &peer,
            ],
        );
        sh("ip", &["link", "set", &peer, "netns", &ns.name]);
        sh(
            "ip",
            &["addr", "add", &format!("{host}/30"), "dev", &ns.veth],
        );
        sh("ip", &["link", "set", &ns.veth, "up"]);
        sh(
            "ip",
            &[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{inner}/30"),
                "dev",
                &peer,
            ],
        );
        sh("ip", &["-n", &ns.name, "link", "set", &peer, "up"]);
        sh("ip", &["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Takes the host end of the veth down: packets either way are dropped, no connection is reset.
    pub fn link_down(&self) {
        sh("ip", &["link", "set", &self.veth, "down"]);
    }

    /// Brings it back up.
    pub fn link_up(&self) {
        sh("ip", &["link", "set", &self.veth, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
