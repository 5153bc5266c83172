//! Local-directory storage: every write goes to a temp file in the target directory, then is renamed (or
//! hard-linked, for put-if-absent) into place, so readers never see half a file.

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

    /// Copies `src` to a temp file beside `dest` and returns it with its size (blocking: run it on the
    /// blocking pool).
    fn stage(&self, dest: &Path, src: &Path) -> Result<(tempfile::TempPath, u64), StoreError> {
        let dir = dest.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(".put-")
            .tempfile_in(dir)?
            .into_temp_path();
        let bytes = std::fs::copy(src, &tmp)?;
        Ok((tmp, bytes))
    }
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
}
