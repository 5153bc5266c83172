//! The one HTTPS client both AWS SDK clients (S3 and SQS) use: hyper 1 and rustls 0.23 on ring, the same
//! stack and crypto library as sqlx and reqwest. The SDK crates are built without a client of their own
//! (see Cargo.toml), so a loader without this one fails at its first request instead of silently building a
//! second TLS stack.

use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::Builder;
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// A new connection-pooling HTTPS client (also speaks plain HTTP, as moto and MinIO endpoints do).
pub fn https_client() -> SharedHttpClient {
    Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}
