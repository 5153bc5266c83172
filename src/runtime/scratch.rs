//! Scratch space that is swept when its owner dies.
//!
//! Each process (a worker's jobs, an api's upload spool) works in a directory of its own under a shared root,
//! `ROOT/p-<pid>-<random>/`, and holds an exclusive lock on that directory's `.lock` file for as long as it
//! lives. The kernel drops the lock however the process ends (SIGKILL and the OOM killer included). At start
//! a process removes every sibling directory whose lock it can take: its owner is gone, and so is every job
//! that wrote there. A live process's directory is never touched, so several workers can share one root.

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
        let name = format!("p-{}-{:08x}", std::process::id(), rand::random::<u32>());
        let dir = root.join(name);
        std::fs::create_dir(&dir)?;
        let lock = File::create(dir.join(".lock"))?;
        lock.try_lock().map_err(|e| match e {
            TryLockError::Error(e) => e,
            TryLockError::WouldBlock => std::io::Error::other("fresh scratch lock already held"),
        })?;
        Ok((Scratch { dir, _lock: lock }, swept))
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

/// Removes every `p-*` directory under `root` whose lock is free.
pub fn sweep(root: &Path) -> std::io::Result<Swept> {
    let mut swept = Swept::default();
    for entry in std::fs::read_dir(root)?.flatten() {
        let path = entry.path();
        let owned = entry.file_name().to_string_lossy().starts_with("p-");
        if !owned || !path.is_dir() {
            continue;
        }
        // A missing lock file means the owner died between mkdir and creating it: create it to take it.
        let Ok(lock) = File::create(path.join(".lock")) else {
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
}
