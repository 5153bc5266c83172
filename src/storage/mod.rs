//! Object storage: one trait, one file per backend.
//!
//! Keys are `/`-separated relative paths (`{prefix}/originals/{id}`); every backend validates them.
//! Originals and renditions are streamed between files and the store, never held whole in memory.

pub mod direct;
pub mod local;
pub mod s3;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object under that key.
    #[error("object not found: {0}")]
    NotFound(String),
    /// The key is not a safe relative path.
    #[error(
        "invalid object key {0:?}: keys are relative paths without '..', NUL or a leading '/'"
    )]
    InvalidKey(String),
    /// The store could not be reached, timed out or answered 5xx / throttling: retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Local file I/O failed.
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The store refused the request (4xx other than not-found).
    #[error("storage refused: {0}")]
    Refused(String),
    /// The object is no longer the one that was checked (a conditional read found another entity tag).
    #[error("object {0} changed since it was checked")]
    Changed(String),
}

impl StoreError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Io(_))
    }
}

/// What `head` tells about an object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub bytes: u64,
    /// Content type, when stored.
    pub content_type: Option<String>,
    /// Entity tag, when the backend has one.
    pub etag: Option<String>,
}

/// A presigned request a client can make directly.
#[derive(Debug, Clone, PartialEq)]
pub struct Presigned {
    /// HTTP method.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Headers the client must send.
    pub headers: Vec<(String, String)>,
}

/// An object store.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Backend name for logs (`local`, `s3`).
    fn backend(&self) -> &'static str;
    /// Stream the object into `dest` (created or truncated). Returns the byte count.
    async fn get_to_file(&self, key: &str, dest: &Path) -> Result<u64, StoreError>;
    /// Like [`ObjectStore::get_to_file`] for a reader that cannot write `dest`: a store that keeps objects
    /// on the same filesystem may give the object a second name instead of copying it (`dest` then shares
    /// the object's bytes, so nothing may write through it). `dest` must not exist.
    async fn get_to_file_read_only(&self, key: &str, dest: &Path) -> Result<u64, StoreError> {
        self.get_to_file(key, dest).await
    }
    /// Store `src` under `key`, replacing what is there.
    async fn put_file(&self, key: &str, src: &Path, content_type: &str) -> Result<(), StoreError>;
    /// Store `src` under `key` unless an object already exists. Returns false when it existed.
    /// With content-derived keys this makes a repeated job's writes no-ops. Renditions are written with it
    /// (originals with [`put_file`](Self::put_file)), so each backend counts a stored object's bytes in
    /// `mediafleet_rendition_bytes_total`.
    async fn put_if_absent(
        &self,
        key: &str,
        src: &Path,
        content_type: &str,
    ) -> Result<bool, StoreError>;
    /// Object metadata, or `NotFound`.
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError>;
    /// Delete; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Delete every object under a prefix (a media's renditions).
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError>;
    /// A presigned GET URL, where the backend has them (S3); `None` for local storage, which the API serves
    /// itself.
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<Option<String>, StoreError>;
    /// Local filesystem path of an object, for backends that have one (the API serves it with Range).
    fn local_path(&self, key: &str) -> Option<std::path::PathBuf>;
    /// Cheap reachability check for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Presigned direct uploads, where the backend has them (S3); `None` for local storage.
    fn direct_uploads(&self) -> Option<&dyn direct::DirectUpload> {
        None
    }
}

/// A shared store handle.
pub type SharedStore = Arc<dyn ObjectStore>;

/// Checks a key: non-empty, relative, no `..`/`.` segments, no empty segments, no NUL or backslash.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = key.is_empty()
        || key.len() > 1024
        || key.starts_with('/')
        || key.contains('\0')
        || key.contains('\\')
        || key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        Err(StoreError::InvalidKey(key.to_owned()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{keys, validate_key};

    #[test]
    fn single_files_are_flat_in_the_media_directory_and_ladders_keep_a_version_directory() {
        let sha = "8aa8e8e3a02a49c2ffffffffffffffff";
        assert_eq!(
            keys::rendition("p", "m1", "thumb", sha, "thumb.webp"),
            "p/media/m1/thumb.8aa8e8e3a02a49c2.webp"
        );
        assert_eq!(
            keys::rendition("p", "m1", "peaks", sha, "peaks"),
            "p/media/m1/peaks.8aa8e8e3a02a49c2"
        );
        assert_eq!(
            keys::rendition("p", "m1", "x", sha, ".hidden"),
            "p/media/m1/.hidden.8aa8e8e3a02a49c2"
        );
        let hls = keys::rendition("p", "m1", "hls", sha, "hls/master.m3u8");
        assert_eq!(hls, "p/media/m1/hls/8aa8e8e3a02a49c2/hls/master.m3u8");
        assert!(hls.starts_with(&keys::rendition_dir("p", "m1", "hls", sha)));
        // Every key stays under the media's prefix, which a DELETE removes.
        for k in [
            &hls,
            &keys::rendition("p", "m1", "thumb", sha, "thumb.webp"),
        ] {
            assert!(k.starts_with(&keys::media_prefix("p", "m1")));
            assert!(validate_key(k).is_ok());
        }
    }

    #[test]
    fn keys_cannot_escape() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "a/./b",
            "a\0b",
            "a\\b",
            "a/",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "a",
            "mediafleet/originals/0192",
            "p/media/x/thumb/ab12.webp",
            "a..b",
        ] {
            assert!(validate_key(good).is_ok(), "{good:?} refused");
        }
    }
}

/// Object key layout. Rendition keys are derived from media id, rendition name and content hash, so a
/// repeated job writes the same keys (and `put_if_absent` makes the second write a no-op).
pub mod keys {
    /// `{prefix}/originals/{media_id}`.
    pub fn original(prefix: &str, media_id: &str) -> String {
        format!("{prefix}/originals/{media_id}")
    }

    /// `{prefix}/media/{media_id}/` — everything a media owns besides its original.
    pub fn media_prefix(prefix: &str, media_id: &str) -> String {
        format!("{prefix}/media/{media_id}/")
    }

    /// Where a rendition is stored. A single file is `{prefix}/media/{media_id}/{stem}.{sha256[..16]}.{ext}`
    /// (`thumb.8aa8e8e3a02a49c2.webp`): flat in the media's own directory, so the local store makes one
    /// directory per media rather than two more per rendition (directories are most of what a local put
    /// costs the kernel). A multi-file rendition (`hls/master.m3u8`) is
    /// `{prefix}/media/{media_id}/{name}/{sha256[..16]}/{file}`: its playlists and segments under one
    /// version directory ([`rendition_dir`]). Keys are stored in the rendition rows, so objects written under
    /// an earlier layout are still found and removed through their rows.
    pub fn rendition(prefix: &str, media_id: &str, name: &str, sha256: &str, file: &str) -> String {
        if file.contains('/') {
            return format!("{}{file}", rendition_dir(prefix, media_id, name, sha256));
        }
        let (dir, short) = (media_prefix(prefix, media_id), short(sha256));
        match file.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => format!("{dir}{stem}.{short}.{ext}"),
            _ => format!("{dir}{file}.{short}"),
        }
    }

    /// The first 16 hex digits of a content hash: the version part of a rendition's key.
    fn short(sha256: &str) -> &str {
        &sha256[..sha256.len().min(16)]
    }

    /// `{prefix}/media/{media_id}/{name}/{sha256[..16]}/`: every object of one version of a multi-file
    /// rendition (a playlist with its segments), so deleting this prefix removes exactly that version.
    pub fn rendition_dir(prefix: &str, media_id: &str, name: &str, sha256: &str) -> String {
        format!(
            "{}{name}/{}/",
            media_prefix(prefix, media_id),
            short(sha256)
        )
    }
}
