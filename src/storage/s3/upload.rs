//! Uploads from files: one `PutObject` below the multipart threshold, parts read straight from file slices
//! above it. Neither path holds the whole file in memory.

use std::path::Path;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};

use super::config::MIN_PART_SIZE;
use super::errors::{classify, status, HttpStatus};
use super::S3Store;
use crate::storage::direct::DirectUpload;
use crate::storage::StoreError;

/// Parts uploaded at once: enough to fill a link, few enough to bound memory (each part is read from the
/// file as it is sent).
const PART_CONCURRENCY: usize = 4;
/// S3's part-count limit.
const MAX_PARTS: u64 = 10_000;

/// How a conditional upload ended.
pub(super) enum Put {
    /// Stored.
    Stored,
    /// `If-None-Match: *` failed: an object was already there.
    Exists,
}

/// How the last call of a write (`PutObject`, `CompleteMultipartUpload`) ended: with `if_absent`, 412 means an
/// object was already there.
fn put_outcome<T, E, R>(
    op: &str,
    key: &str,
    if_absent: bool,
    sent: Result<T, SdkError<E, R>>,
) -> Result<Put, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: HttpStatus + std::fmt::Debug,
{
    match sent {
        Ok(_) => Ok(Put::Stored),
        Err(e) if if_absent && status(&e) == Some(412) => Ok(Put::Exists),
        Err(e) => Err(classify(op, key, e)),
    }
}

impl S3Store {
    /// Uploads `src` to `key`; with `if_absent`, only when no object exists (`If-None-Match: *`).
    pub(super) async fn upload(
        &self,
        key: &str,
        src: &Path,
        content_type: &str,
        if_absent: bool,
    ) -> Result<Put, StoreError> {
        let size = tokio::fs::metadata(src).await?.len();
        if size < self.cfg.multipart_threshold {
            self.put_single(key, src, content_type, if_absent).await
        } else {
            self.put_multipart(key, src, size, content_type, if_absent)
                .await
        }
    }

    async fn put_single(
        &self,
        key: &str,
        src: &Path,
        content_type: &str,
        if_absent: bool,
    ) -> Result<Put, StoreError> {
        let body = ByteStream::from_path(src)
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .content_type(content_type)
            .body(body);
        if if_absent {
            req = req.if_none_match("*");
        }
        put_outcome("put", key, if_absent, req.send().await)
    }

    async fn put_multipart(
        &self,
        key: &str,
        src: &Path,
        size: u64,
        content_type: &str,
        if_absent: bool,
    ) -> Result<Put, StoreError> {
        // The same call a direct upload starts with.
        let upload_id = self.create_multipart(key, content_type).await?;
        let result = self.send_parts(key, src, size, &upload_id, if_absent).await;
        if !matches!(result, Ok(Put::Stored)) {
            // Parts of a failed or refused upload are billed until aborted.
            let abort = self
                .client
                .abort_multipart_upload()
                .bucket(&self.cfg.bucket)
                .key(key)
                .upload_id(&upload_id);
            if let Err(e) = abort.send().await {
                tracing::warn!(key, error = %classify("abort multipart upload", key, e), "s3: abort failed");
            }
        }
        result
    }

    async fn send_parts(
        &self,
        key: &str,
        src: &Path,
        size: u64,
        upload_id: &str,
        if_absent: bool,
    ) -> Result<Put, StoreError> {
        let part_size = self
            .cfg
            .part_size
            .max(MIN_PART_SIZE)
            .max(size.div_ceil(MAX_PARTS));
        let count = size.div_ceil(part_size).max(1);
        let mut parts: Vec<CompletedPart> = futures::stream::iter(0..count)
            .map(|i| {
                let offset = i * part_size;
                let len = part_size.min(size - offset);
                self.send_part(key, src, upload_id, i as i32 + 1, offset, len)
            })
            .buffer_unordered(PART_CONCURRENCY)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number());
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if if_absent {
            req = req.if_none_match("*");
        }
        put_outcome(
            "complete multipart upload",
            key,
            if_absent,
            req.send().await,
        )
    }

    async fn send_part(
        &self,
        key: &str,
        src: &Path,
        upload_id: &str,
        number: i32,
        offset: u64,
        len: u64,
    ) -> Result<CompletedPart, StoreError> {
        let body = ByteStream::read_from()
            .path(src)
            .offset(offset)
            .length(Length::Exact(len))
            .build()
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        let out = self
            .client
            .upload_part()
            .bucket(&self.cfg.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(len as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| classify(&format!("upload part {number} of"), key, e))?;
        Ok(CompletedPart::builder()
            .set_e_tag(out.e_tag().map(str::to_owned))
            .part_number(number)
            .build())
    }
}
