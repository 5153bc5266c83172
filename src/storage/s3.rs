//! S3 backend (aws-sdk-s3). Being written.
