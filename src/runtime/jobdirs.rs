//! Job scratch directories, reused from one job to the next.
//!
//! A job works in a directory of its own under the runtime's scratch directory. Making one per job and
//! removing it afterwards creates and frees a few inodes per job (the directory, the media job's `out`
//! directory, its input), and on a busy worker that churn was a third of `serve`'s own CPU: an ext4 without a
//! journal, for one, scans past every inode freed in the last minutes for each one it allocates. So a job's
//! directory is emptied when the job ends and handed to the next job: its files and anything nested deeper
//! than one level are removed, its first-level directories are kept, empty. A directory that cannot be
//! emptied is removed instead. What a job leaves is therefore never seen by the next one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The free job directories of one runtime.
#[derive(Debug)]
pub struct JobDirs {
    root: PathBuf,
    free: Mutex<Vec<PathBuf>>,
}

impl JobDirs {
    /// Job directories made under `root` (the runtime's own scratch directory).
    pub fn new(root: &Path) -> Arc<Self> {
        Arc::new(JobDirs {
            root: root.to_path_buf(),
            free: Mutex::new(Vec::new()),
        })
    }

    /// An empty directory for one job: a free one, or a new one.
    pub fn take(self: &Arc<Self>) -> std::io::Result<JobDir> {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let path = match reused {
            Some(p) => p,
            None => tempfile::Builder::new()
                .prefix("job-")
                .tempdir_in(&self.root)?
                .keep(),
        };
        Ok(JobDir {
            path,
            dirs: self.clone(),
        })
    }
}

/// One job's directory; emptied and handed back when dropped.
#[derive(Debug)]
pub struct JobDir {
    path: PathBuf,
    dirs: Arc<JobDirs>,
}

impl JobDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for JobDir {
    fn drop(&mut self) {
        match empty(&self.path) {
            Ok(()) => self
                .dirs
                .free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(std::mem::take(&mut self.path)),
            Err(_) => {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }
}

/// Removes every file under `dir` and every directory below its first level. Symbolic links are removed,
/// never followed.
fn empty(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            for inner in std::fs::read_dir(&path)? {
                let inner = inner?;
                if inner.file_type()?.is_dir() {
                    std::fs::remove_dir_all(inner.path())?;
                } else {
                    std::fs::remove_file(inner.path())?;
                }
            }
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_directory_is_emptied_and_reused() {
        let root = tempfile::tempdir().unwrap();
        let dirs = JobDirs::new(root.path());
        let first = dirs.take().unwrap();
        let path = first.path().to_path_buf();
        let out = path.join("out");
        std::fs::create_dir_all(out.join("deep/deeper")).unwrap();
        std::fs::write(path.join("original"), b"x").unwrap();
        std::fs::write(out.join("thumb.webp"), b"x").unwrap();
        std::os::unix::fs::symlink(root.path(), out.join("link")).unwrap();
        let elsewhere = root.path().join("kept");
        std::fs::write(&elsewhere, b"x").unwrap();
        // A second job at the same time gets a directory of its own.
        let second = dirs.take().unwrap();
        assert_ne!(second.path(), path);
        drop(first);
        let again = dirs.take().unwrap();
        assert_eq!(
            again.path(),
            path,
            "the emptied directory is handed out again"
        );
        let left: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["out"], "only the first-level directory stays");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
        assert!(elsewhere.exists(), "a link is removed, not followed");
        drop((again, second));
    }

    #[test]
    fn a_directory_that_cannot_be_emptied_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let dirs = JobDirs::new(root.path());
        let job = dirs.take().unwrap();
        let path = job.path().to_path_buf();
        // The job removed its own directory: nothing to empty, and nothing is handed out again.
        std::fs::remove_dir_all(&path).unwrap();
        drop(job);
        assert!(dirs.free.lock().unwrap().is_empty());
        let next = dirs.take().unwrap();
        assert_ne!(next.path(), path);
        assert!(next.path().is_dir());
    }
}
