//! Direct uploads: an optional capability of an object store (S3 has it, a local directory does not).
//!
//! Clients PUT the original straight to the store with presigned URLs: one PUT below the multipart
//! threshold, presigned parts above it. The api never sees the bytes; a validation job checks them after
//! `complete`, reading only the object's size and its first bytes.

use std::time::Duration;

use async_trait::async_trait;

use super::{Presigned, StoreError};

/// One uploaded part, as the client reports it after its PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number.
    pub number: i32,
    /// The `ETag` the store answered to the part's PUT.
    pub etag: String,
}

/// What a completed direct upload left in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Size in bytes.
    pub bytes: u64,
    /// Entity tag: later reads of the original require it to be unchanged.
    pub etag: Option<String>,
    /// SHA-256 the upload sent (`x-amz-checksum-sha256`, which S3 checks against the body), hex.
    pub sha256: Option<String>,
}

/// Presigned direct uploads.
#[async_trait]
pub trait DirectUpload: Send + Sync {
    /// A presigned single `PUT` of `key`, with the headers the client must send. `Content-Length` is signed
    /// (the PUT must be exactly `bytes`), and so is the SHA-256 when the client declared one.
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        bytes: u64,
        sha256: Option<&[u8; 32]>,
        ttl: Duration,
    ) -> Result<Presigned, StoreError>;
    /// Size, entity tag and stored checksum of an uploaded object.
    async fn uploaded(&self, key: &str) -> Result<Uploaded, StoreError>;
    /// Downloads `key` to `dest` only while its entity tag is still `etag` ([`StoreError::Changed`] else).
    async fn get_matching(
        &self,
        key: &str,
        dest: &std::path::Path,
        etag: &str,
    ) -> Result<u64, StoreError>;
    /// Starts a multipart upload; returns its upload id.
    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, StoreError>;
    /// A presigned `PUT` URL of part `number` (1-based).
    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        ttl: Duration,
    ) -> Result<String, StoreError>;
    /// Assembles the parts into the object.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<(), StoreError>;
    /// Abandons a multipart upload and frees its parts; an unknown upload is not an error.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError>;
    /// The first `len` bytes of an object (fewer if it is shorter), only while its entity tag is `if_match`
    /// when one is given.
    async fn read_head(
        &self,
        key: &str,
        len: u64,
        if_match: Option<&str>,
    ) -> Result<Vec<u8>, StoreError>;
}
