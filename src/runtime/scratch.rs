//! Scratch space that is swept when its owner dies.
//!
//! Each process (a worker's jobs, an api's upload spool) works in a directory of its own under a shared root,
//! `ROOT/p-<pid>-<random>/`, and holds an exclusive lock on that directory's `.lock` file for as long as it
//! lives. The kernel drops the lock however the process ends (SIGKILL and the OOM killer included). At start
//! a process removes every sibling directory whose lock it can take: its owner is gone, and so is every job
//! that wrote there. A live process's directory is never touched, so several workers can share one root.
//!
//! A directory is born locked: it is made as `.new-…`, its lock taken, and only then renamed to `p-…`. A sweep
//! by a process starting at the same moment therefore never finds a `p-` directory whose lock is merely not
//! taken yet, which it could not tell from a dead owner's. Sweeps skip `.new-…` directories until they are
//! older than a grace period (60 s), which only a process that died while claiming leaves behind.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// A claimed scratch directory; the lock is released (and the directory removed) when it is dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    _lock: File,
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Directories of dead owners removed.
    pub dirs: usize,
    /// Bytes they held.
    pub bytes: u64,
}

impl Scratch {
    /// Sweeps `root` of directories whose owner is gone, then claims a new one.
    pub fn claim(root: &Path) -> std::io::Result<(Scratch, Swept)> {
        std::fs::create_dir_all(root)?;
        let swept = sweep(root)?;
        let scratch = Nascent::create(root)?.claim()?;
        Ok((scratch, swept))
    }

    /// The directory this process works in.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A directory made for claiming, not yet locked nor named `p-…`: sweeps leave it alone.
struct Nascent {
    root: PathBuf,
    name: String,
}

impl Nascent {
    fn create(root: &Path) -> std::io::Result<Self> {
        let name = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        std::fs::create_dir(root.join(format!("{NASCENT}{name}")))?;
        Ok(Nascent {
            root: root.to_path_buf(),
            name,
        })
    }

    /// Takes the lock, then gives the directory its `p-` name.
    fn claim(self) -> std::io::Result<Scratch> {
        let nascent = self.root.join(format!("{NASCENT}{}", self.name));
        let lock = File::create(nascent.join(".lock"))?;
        lock.try_lock().map_err(|e| match e {
            TryLockError::Error(e) => e,
            TryLockError::WouldBlock => std::io::Error::other("fresh scratch lock already held"),
        })?;
        let dir = self.root.join(format!("{OWNED}{}", self.name));
        std::fs::rename(&nascent, &dir)?;
        Ok(Scratch { dir, _lock: lock })
    }
}

/// The prefix of a claimed directory.
const OWNED: &str = "p-";
/// The prefix of a directory being claimed (not yet locked).
const NASCENT: &str = ".new-";
/// A nascent directory older than this was left by a process that died while claiming it.
const NASCENT_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes every `p-*` directory under `root` whose lock is free, and nascent ones abandoned mid-claim.
pub fn sweep(root: &Path) -> std::io::Result<Swept> {
    let mut swept = Swept::default();
    for entry in std::fs::read_dir(root)?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_dir() {
            continue;
        }
        if name.starts_with(NASCENT) {
            let abandoned = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > NASCENT_GRACE);
            if !abandoned {
                continue;
            }
        } else if !name.starts_with(OWNED) {
            continue;
        }
        // A `p-` directory had its lock file made and locked before it got its name. A directory without
        // one (a nascent directory whose process died before making it) gets one here, so it can be taken.
        let Ok(lock) = File::open(path.join(".lock")).or_else(|_| File::create(path.join(".lock")))
        else {
            continue;
        };
        match lock.try_lock() {
            Ok(()) => {
                swept.bytes += du(&path);
                if std::fs::remove_dir_all(&path).is_ok() {
                    swept.dirs += 1;
                }
            }
            Err(TryLockError::WouldBlock) => {} // alive
            Err(TryLockError::Error(_)) => {}
        }
    }
    Ok(swept)
}

/// Bytes under `path` (best effort).
fn du(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_owners_directory_is_swept_and_a_live_one_kept() {
        let root = tempfile::tempdir().unwrap();
        let (live, swept) = Scratch::claim(root.path()).unwrap();
        assert_eq!(swept, Swept::default());
        // A dead owner: its directory exists but nobody holds its lock.
        let dead = root.path().join("p-1-deadbeef");
        std::fs::create_dir_all(dead.join("job-x")).unwrap();
        std::fs::write(dead.join("job-x/part.mp4"), vec![0u8; 1000]).unwrap();
        File::create(dead.join(".lock")).unwrap();
        let (other, swept) = Scratch::claim(root.path()).unwrap();
        assert_eq!(swept.dirs, 1);
        assert!(swept.bytes >= 1000);
        assert!(!dead.exists());
        assert!(live.path().exists(), "a live owner's directory was swept");
        let kept = live.path().to_path_buf();
        drop(live);
        assert!(!kept.exists());
        drop(other);
    }

    #[test]
    fn a_sweep_between_making_and_locking_a_directory_leaves_it_alone() {
        // Worker A has made its directory but not yet taken its lock when worker B, starting, sweeps. The
        // sweep must leave A's directory alone, and A's claim must then succeed with a usable directory.
        let root = tempfile::tempdir().unwrap();
        let a = Nascent::create(root.path()).unwrap();
        assert_eq!(sweep(root.path()).unwrap(), Swept::default());
        let a = a.claim().unwrap();
        assert!(a.path().is_dir());
        tempfile::Builder::new().tempdir_in(a.path()).unwrap();
    }

    #[test]
    fn workers_starting_together_never_sweep_each_other() {
        // Many workers claiming at the same moment, each sweeping as it starts: no sweep may take the lock
        // of another's fresh directory and delete it.
        for _ in 0..20 {
            let root = tempfile::tempdir().unwrap();
            let claims: Vec<Scratch> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| Scratch::claim(root.path()).unwrap().0))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for c in &claims {
                assert!(
                    c.path().is_dir(),
                    "{} was swept from under its owner",
                    c.path().display()
                );
                tempfile::Builder::new().tempdir_in(c.path()).unwrap();
            }
        }
    }

    #[test]
    fn an_abandoned_nascent_directory_is_swept_only_when_old() {
        let root = tempfile::tempdir().unwrap();
        let young = root.path().join(".new-1-young");
        std::fs::create_dir(&young).unwrap();
        let old = root.path().join(".new-2-old");
        std::fs::create_dir(&old).unwrap();
        let then = std::time::SystemTime::now() - 2 * NASCENT_GRACE;
        File::open(&old).unwrap().set_modified(then).unwrap();
        let swept = sweep(root.path()).unwrap();
        assert_eq!(swept.dirs, 1);
        assert!(young.exists() && !old.exists());
    }
}
