//! Local-directory storage: every write goes to a temp name in the target directory, then is renamed (or
//! hard-linked, for put-if-absent) into place, so readers never see half a file.
//!
//! The temp name is a hard link to the caller's file when both are on one filesystem (the api's spool and
//! a worker's scratch are under the data dir, like the objects), so a put copies nothing. Callers hand over
//! finished files that they only delete afterwards: a file written again after its put would change the
//! stored object too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use super::{validate_key, ObjectMeta, ObjectStore, StoreError};

/// Objects as files under a root directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens (creating if needed) the root directory.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root)?;
        Ok(LocalStore {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// Gives `src`'s content a temp name beside `dest` and returns it with its size (blocking: run it on the
    /// blocking pool). A hard link when both are on one filesystem: no copy, and no new inode (creating
    /// inodes is most of what a local put costs the kernel); a copy otherwise.
    fn stage(&self, dest: &Path, src: &Path) -> Result<(tempfile::TempPath, u64), StoreError> {
        let dir = dest.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        let temp = || tempfile::Builder::new().prefix(".put-").to_owned();
        match temp().make_in(dir, |p| std::fs::hard_link(src, p)) {
            Ok(linked) => {
                let bytes = std::fs::metadata(src)?.len();
                return Ok((linked.into_temp_path(), bytes));
            }
            Err(e) if !cannot_link(&e) => return Err(e.into()),
            Err(_) => {}
        }
        let tmp = temp().tempfile_in(dir)?.into_temp_path();
        let bytes = std::fs::copy(src, &tmp)?;
        Ok((tmp, bytes))
    }
}

/// Errors of `link(2)` that mean "not here" (another filesystem, or one without hard links), not a failure.
fn cannot_link(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV | libc::EPERM | libc::EMLINK | libc::EOPNOTSUPP)
    )
}

/// Runs a file operation on the blocking pool: each put is one hop there, not one per system call.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
}

fn not_found(key: &str, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::NotFound(key.to_owned())
    } else {
        StoreError::Io(e)
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn get_to_file(&self, key: &str, dest: &Path) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        tokio::fs::copy(&path, dest)
            .await
            .map_err(|e| not_found(key, e))
    }

    async fn get_to_file_read_only(&self, key: &str, dest: &Path) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        let to = dest.to_path_buf();
        let linked = blocking(move || {
            let dest = to;
            // A name left by an earlier try of this job would make link(2) fail.
            let _ = std::fs::remove_file(&dest);
            match std::fs::hard_link(&path, &dest) {
                Ok(()) => Ok(Some(std::fs::metadata(&dest)?.len())),
                Err(e) if cannot_link(&e) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await;
        match linked {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => self.get_to_file(key, dest).await,
            Err(StoreError::Io(e)) => Err(not_found(key, e)),
            Err(e) => Err(e),
        }
    }

    async fn put_file(&self, key: &str, src: &Path, _content_type: &str) -> Result<(), StoreError> {
        let dest = self.path(key)?;
        let (store, src) = (self.clone(), src.to_path_buf());
        blocking(move || {
            let (tmp, _) = store.stage(&dest, &src)?;
            tmp.persist(&dest).map_err(|e| StoreError::Io(e.error))?;
            Ok(())
        })
        .await
    }

    async fn put_if_absent(
        &self,
        key: &str,
        src: &Path,
        _content_type: &str,
    ) -> Result<bool, StoreError> {
        let dest = self.path(key)?;
        let (store, src) = (self.clone(), src.to_path_buf());
        let stored = blocking(move || {
            if dest.try_exists()? {
                return Ok(None);
            }
            let (tmp, bytes) = store.stage(&dest, &src)?;
            // link(2) fails if the name exists: an atomic create-if-absent. The temp file is removed on drop.
            match std::fs::hard_link(&tmp, &dest) {
                Ok(()) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await?;
        if let Some(bytes) = stored {
            crate::scale::metrics::rendition_bytes(bytes);
        }
        Ok(stored.is_some())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let meta = tokio::fs::metadata(self.path(key)?)
            .await
            .map_err(|e| not_found(key, e))?;
        Ok(ObjectMeta {
            bytes: meta.len(),
            content_type: None,
            etag: None,
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let path = self.path(prefix.trim_end_matches('/'))?;
        match tokio::fs::remove_dir_all(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn presign_get(&self, _key: &str, _ttl: Duration) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        tokio::fs::metadata(&self.root).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_conditional_put() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("objects")).unwrap();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"hello").unwrap();
        store
            .put_file("p/a/b.bin", &src, "application/octet-stream")
            .await
            .unwrap();
        assert_eq!(store.head("p/a/b.bin").await.unwrap().bytes, 5);
        assert!(!store.put_if_absent("p/a/b.bin", &src, "x").await.unwrap());
        assert!(store.put_if_absent("p/a/c.bin", &src, "x").await.unwrap());
        let out = dir.path().join("out.bin");
        assert_eq!(store.get_to_file("p/a/c.bin", &out).await.unwrap(), 5);
        assert!(matches!(
            store.get_to_file("p/nope", &out).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.get_to_file("../etc/passwd", &out).await,
            Err(StoreError::InvalidKey(_))
        ));
        // On one filesystem a put is a second name for the same file, not a copy.
        use std::os::unix::fs::MetadataExt;
        let linked = store.local_path("p/a/c.bin").unwrap();
        assert_eq!(
            std::fs::metadata(&linked).unwrap().ino(),
            std::fs::metadata(&src).unwrap().ino()
        );
        // A read-only reader gets a second name of the object (twice: a name left over is replaced).
        let shared = dir.path().join("shared.bin");
        for _ in 0..2 {
            assert_eq!(
                store
                    .get_to_file_read_only("p/a/c.bin", &shared)
                    .await
                    .unwrap(),
                5
            );
        }
        assert_eq!(
            std::fs::metadata(&shared).unwrap().ino(),
            std::fs::metadata(&linked).unwrap().ino()
        );
        assert!(matches!(
            store.get_to_file_read_only("p/nope", &shared).await,
            Err(StoreError::NotFound(_))
        ));
        store.delete_prefix("p/a").await.unwrap();
        assert!(matches!(
            store.head("p/a/b.bin").await,
            Err(StoreError::NotFound(_))
        ));
        store.delete("p/a/b.bin").await.unwrap();
        // no temp files left behind
        let left: Vec<_> = std::fs::read_dir(dir.path().join("objects/p"))
            .unwrap()
            .collect();
        assert!(left.is_empty());
    }

    #[tokio::test]
    async fn a_put_from_another_filesystem_is_a_copy() {
        // /dev/shm is a mount of its own (tmpfs) on Linux: no hard link reaches the temp dir from there.
        let other =
            tempfile::tempdir_in("/dev/shm").expect("/dev/shm (tmpfs) is needed for this test");
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("objects")).unwrap();
        let src = other.path().join("src.bin");
        std::fs::write(&src, b"across").unwrap();
        assert!(store.put_if_absent("x/y.bin", &src, "x").await.unwrap());
        store.put_file("x/z.bin", &src, "x").await.unwrap();
        std::fs::write(&src, b"changed").unwrap();
        for key in ["x/y.bin", "x/z.bin"] {
            assert_eq!(
                std::fs::read(store.local_path(key).unwrap()).unwrap(),
                b"across"
            );
        }
    }
}
