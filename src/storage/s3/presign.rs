//! [`DirectUpload`] on S3: presigned `PutObject` and `UploadPart` URLs, and the multipart calls around them.
//!
//! The presigned single PUT signs `Content-Type`, `Content-Length` and, when the client declared one, the
//! SHA-256 (`x-amz-checksum-sha256`, which S3 checks against the body): the URL uploads exactly the file that
//! was declared, and nothing else. After `complete`, reads of the original carry `If-Match` with the entity
//! tag seen then, so an object replaced through a still-valid URL is never processed.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart as S3Part};

use super::errors::classify;
use super::{length_of, S3Store};
use crate::storage::direct::{CompletedPart, DirectUpload, Uploaded};
use crate::storage::{validate_key, Presigned, StoreError};

fn presigning(key: &str, ttl: Duration) -> Result<PresigningConfig, StoreError> {
    PresigningConfig::expires_in(ttl)
        .map_err(|e| StoreError::Refused(format!("presign {key}: {e}")))
}

#[async_trait]
impl DirectUpload for S3Store {
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        bytes: u64,
        sha256: Option<&[u8; 32]>,
        ttl: Duration,
    ) -> Result<Presigned, StoreError> {
        validate_key(key)?;
        let req = self
            .client
            .put_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(i64::try_from(bytes).unwrap_or(i64::MAX))
            .set_checksum_sha256(sha256.map(aws_smithy_types::base64::encode))
            // Names the algorithm too (`x-amz-sdk-checksum-algorithm`), which some S3-compatible stores
            // need before they keep the checksum for `HEAD` to report.
            .set_checksum_algorithm(sha256.map(|_| aws_sdk_s3::types::ChecksumAlgorithm::Sha256))
            .presigned(presigning(key, ttl)?)
            .await
            .map_err(|e| classify("presign put", key, e))?;
        let headers = req
            .headers()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        Ok(Presigned {
            method: "PUT".into(),
            url: req.uri().to_owned(),
            headers,
        })
    }

    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        validate_key(key)?;
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| classify("create multipart", key, e))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Unavailable(format!("create multipart {key}: no upload id")))
    }

    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        ttl: Duration,
    ) -> Result<String, StoreError> {
        validate_key(key)?;
        let req = self
            .client
            .upload_part()
            .bucket(&self.cfg.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .presigned(presigning(key, ttl)?)
            .await
            .map_err(|e| classify("presign part", key, e))?;
        Ok(req.uri().to_owned())
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<(), StoreError> {
        validate_key(key)?;
        let parts = parts
            .iter()
            .map(|p| {
                S3Part::builder()
                    .part_number(p.number)
                    .e_tag(&p.etag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("complete multipart", key, e))?;
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.cfg.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify("abort multipart", key, e) {
                StoreError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn uploaded(&self, key: &str) -> Result<Uploaded, StoreError> {
        let out = self.head_object(key, true).await?;
        Ok(Uploaded {
            bytes: length_of(&out),
            etag: out.e_tag().map(str::to_owned),
            sha256: out
                .checksum_sha256()
                .and_then(|b| aws_smithy_types::base64::decode(b).ok())
                .map(hex::encode),
        })
    }

    async fn get_matching(
        &self,
        key: &str,
        dest: &std::path::Path,
        etag: &str,
    ) -> Result<u64, StoreError> {
        self.get_to_file_if(key, dest, Some(etag)).await
    }

    async fn read_head(
        &self,
        key: &str,
        len: u64,
        if_match: Option<&str>,
    ) -> Result<Vec<u8>, StoreError> {
        validate_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .set_if_match(if_match.map(str::to_owned))
            .range(format!("bytes=0-{}", len.saturating_sub(1)))
            .send()
            .await
            .map_err(|e| classify("read head of", key, e))?;
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| super::errors::body_error(key, e))?;
        let mut v = data.into_bytes().to_vec();
        v.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(v)
    }
}
