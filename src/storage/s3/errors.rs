//! SDK errors → [`StoreError`]: network, timeouts, 5xx and throttling are transient (`Unavailable`);
//! 404 / `NoSuchKey` is `NotFound`; every other 4xx is `Refused`.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::storage::StoreError;

/// Error codes S3 (and compatible servers) use for throttling, a temporarily sick backend, or a conditional
/// write racing another one (409, "retry the request").
const TRANSIENT_CODES: [&str; 7] = [
    "ConditionalRequestConflict",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
];

/// The HTTP status of a service error, if the request got that far.
pub(super) fn status<E, R>(e: &SdkError<E, R>) -> Option<u16>
where
    R: HttpStatus,
{
    match e {
        SdkError::ServiceError(se) => Some(se.raw().status_u16()),
        SdkError::ResponseError(re) => Some(re.raw().status_u16()),
        _ => None,
    }
}

/// Gives the status code of the SDK's raw response type.
pub(super) trait HttpStatus {
    /// The numeric status.
    fn status_u16(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_u16(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Classifies an SDK error from `op` on `key`.
pub(super) fn classify<E, R>(op: &str, key: &str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: HttpStatus + std::fmt::Debug,
{
    let status = status(&e);
    let code = e.code().map(str::to_owned);
    let msg = format!("{op} {key}: {}", DisplayErrorContext(&e));
    match &e {
        SdkError::ConstructionFailure(_) => StoreError::Refused(msg),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(msg)
        }
        _ => match (status, code.as_deref()) {
            (_, Some("NoSuchBucket")) => StoreError::Refused(msg),
            (Some(404), _) | (_, Some("NoSuchKey" | "NotFound")) => {
                StoreError::NotFound(key.to_owned())
            }
            // Only conditional reads send `If-Match`; conditional writes handle their 412 themselves.
            (Some(412), _) | (_, Some("PreconditionFailed")) => StoreError::Changed(key.to_owned()),
            (Some(s), _) if s >= 500 || s == 429 => StoreError::Unavailable(msg),
            (_, Some(c)) if TRANSIENT_CODES.contains(&c) => StoreError::Unavailable(msg),
            _ => StoreError::Refused(msg),
        },
    }
}

/// A streaming body that broke mid-way: transient.
pub(super) fn body_error(
    key: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Unavailable(format!("reading {key}: {}", DisplayErrorContext(&e)))
}
