//! S3 backend (aws-sdk-s3), for AWS and S3-compatible servers (moto, MinIO, R2).
//!
//! # Layout
//! - `config`: [`S3Config`] and its `s3://` URL form.
//! - `errors`: SDK errors → [`StoreError`] (transient vs refused).
//! - `upload`: single and multipart uploads from files.
//!
//! Downloads stream the response body to the destination file chunk by chunk. The SDK retries single
//! requests (standard mode: throttling, 5xx, timeouts); `get_to_file` adds a short `backon` retry around a
//! body that breaks mid-stream, which the SDK cannot retry.

mod config;
mod errors;
mod presign;
mod upload;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use backon::{ExponentialBuilder, Retryable};
use tokio::io::AsyncWriteExt;

pub use self::config::{S3Config, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE};
use self::errors::{body_error, classify};
use self::upload::Put;
use crate::storage::{validate_key, ObjectMeta, ObjectStore, StoreError};

/// The size a `HeadObject` reported (0 when it reported none).
fn length_of(out: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> u64 {
    out.content_length()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// An S3 bucket as an [`ObjectStore`].
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    cfg: S3Config,
}

impl S3Store {
    /// Builds the client from the standard AWS chain plus `cfg`'s endpoint, region and addressing. Makes no
    /// request: use [`ObjectStore::ping`] or [`S3Store::ensure_bucket`] to check the bucket.
    pub async fn connect(cfg: S3Config) -> Result<Self, StoreError> {
        if cfg.bucket.len() < 3 {
            return Err(StoreError::Refused(format!(
                "bucket name {:?} is too short",
                cfg.bucket
            )));
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(crate::aws_http::https_client())
            .retry_config(RetryConfig::standard().with_max_attempts(4))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(cfg.stall_timeout)
                    .operation_attempt_timeout(cfg.timeout)
                    .build(),
            );
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(region) = &cfg.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared).force_path_style(cfg.path_style);
        if shared.region().is_none() {
            s3 = s3.region(Region::new("us-east-1"));
        }
        Ok(S3Store {
            client: Client::from_conf(s3.build()),
            cfg,
        })
    }

    /// The configuration this store was built from.
    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    /// Creates the bucket if it does not exist (for `queues setup` and tests; production buckets are
    /// usually made by infrastructure code).
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        let bucket = &self.cfg.bucket;
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) => match classify("head bucket", bucket, e) {
                StoreError::NotFound(_) => {}
                other => return Err(other),
            },
        }
        let mut req = self.client.create_bucket().bucket(bucket);
        let region = self.client.config().region().map(|r| r.as_ref().to_owned());
        if let Some(r) = region.filter(|r| r != "us-east-1") {
            use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
            let cfg = CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(r.as_str()))
                .build();
            req = req.create_bucket_configuration(cfg);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    aws_sdk_s3::error::ProvideErrorMetadata::code(&e),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(classify("create bucket", bucket, e)),
        }
    }

    /// One download attempt: stream the body into `dest`, chunk by chunk.
    pub(super) async fn get_once(
        &self,
        key: &str,
        dest: &Path,
        if_match: Option<&str>,
    ) -> Result<u64, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .set_if_match(if_match.map(str::to_owned))
            .send()
            .await
            .map_err(|e| classify("get", key, e))?;
        let mut body = out.body;
        let mut file = tokio::fs::File::create(dest).await?;
        let mut n = 0u64;
        // The SDK's timeouts end at the response; the body is guarded here, per read.
        loop {
            let next = tokio::time::timeout(self.cfg.stall_timeout, body.try_next())
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!(
                        "get {key}: no bytes for {:?} in the middle of the body",
                        self.cfg.stall_timeout
                    ))
                })?;
            let Some(chunk) = next.map_err(|e| body_error(key, e))? else {
                break;
            };
            file.write_all(&chunk).await?;
            n += chunk.len() as u64;
        }
        file.flush().await?;
        Ok(n)
    }

    /// `HeadObject` of `key`, with the stored checksums when `checksums` is set.
    pub(super) async fn head_object(
        &self,
        key: &str,
        checksums: bool,
    ) -> Result<aws_sdk_s3::operation::head_object::HeadObjectOutput, StoreError> {
        validate_key(key)?;
        self.client
            .head_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .set_checksum_mode(checksums.then_some(aws_sdk_s3::types::ChecksumMode::Enabled))
            .send()
            .await
            .map_err(|e| classify("head", key, e))
    }

    /// `get_to_file`, with `If-Match` when `if_match` is given; transient failures are retried twice.
    pub(super) async fn get_to_file_if(
        &self,
        key: &str,
        dest: &Path,
        if_match: Option<&str>,
    ) -> Result<u64, StoreError> {
        validate_key(key)?;
        let result = (|| self.get_once(key, dest, if_match))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_times(2),
            )
            .when(|e| matches!(e, StoreError::Unavailable(_)))
            .await;
        if result.is_err() {
            // Leave no partial file that a caller could mistake for the object.
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn backend(&self) -> &'static str {
        "s3"
    }

    async fn get_to_file(&self, key: &str, dest: &Path) -> Result<u64, StoreError> {
        self.get_to_file_if(key, dest, None).await
    }

    async fn put_file(&self, key: &str, src: &Path, content_type: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.upload(key, src, content_type, false).await.map(|_| ())
    }

    /// `If-None-Match: *` on the `PutObject` (or the `CompleteMultipartUpload`), so on S3 two racing writers
    /// cannot both store; a large file is checked with `HEAD` first to skip uploading parts in vain.
    /// moto honours the header on both calls, but two *concurrent* multipart completes can both win there
    /// (it does not lock between its check and its write); with content-derived keys that only rewrites
    /// identical bytes.
    async fn put_if_absent(
        &self,
        key: &str,
        src: &Path,
        content_type: &str,
    ) -> Result<bool, StoreError> {
        validate_key(key)?;
        let size = tokio::fs::metadata(src).await?.len();
        if size >= self.cfg.multipart_threshold && self.exists(key).await? {
            return Ok(false);
        }
        match self.upload(key, src, content_type, true).await? {
            Put::Stored => {
                crate::scale::metrics::rendition_bytes(size);
                Ok(true)
            }
            Put::Exists => Ok(false),
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let out = self.head_object(key, false).await?;
        Ok(ObjectMeta {
            bytes: length_of(&out),
            content_type: out.content_type().map(str::to_owned),
            etag: out.e_tag().map(str::to_owned),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify("delete", key, e) {
                StoreError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        // An empty prefix would mean "the whole bucket": refuse it like any invalid key.
        validate_key(prefix.trim_end_matches('/'))?;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.cfg.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| classify("list", prefix, e))?;
            let ids: Vec<ObjectIdentifier> = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            if !ids.is_empty() {
                let delete = Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(|e| StoreError::Refused(format!("delete {prefix}: {e}")))?;
                let out = self
                    .client
                    .delete_objects()
                    .bucket(&self.cfg.bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| classify("delete under", prefix, e))?;
                if let Some(err) = out.errors().first() {
                    return Err(StoreError::Unavailable(format!(
                        "delete {}: {} {}",
                        err.key().unwrap_or(prefix),
                        err.code().unwrap_or("error"),
                        err.message().unwrap_or("")
                    )));
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(()),
            }
        }
    }

    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        validate_key(key)?;
        let cfg = PresigningConfig::expires_in(ttl)
            .map_err(|e| StoreError::Refused(format!("presign {key}: {e}")))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .presigned(cfg)
            .await
            .map_err(|e| classify("presign", key, e))?;
        Ok(Some(req.uri().to_owned()))
    }

    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }

    fn direct_uploads(&self) -> Option<&dyn crate::storage::direct::DirectUpload> {
        Some(self)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.cfg.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("head bucket", &self.cfg.bucket, e))
    }
}
