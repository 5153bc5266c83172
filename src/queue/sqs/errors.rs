//! SDK errors → [`QueueError`]: network, timeouts, 5xx and throttling are transient (`Unavailable`); a missing
//! queue or refused credentials are `Config`; everything else is `Backend`.

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::queue::QueueError;

/// Codes SQS uses when a queue is missing.
const MISSING: [&str; 3] = [
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "NonExistentQueue",
];

/// Codes that mean "try again later".
const TRANSIENT: [&str; 5] = [
    "ThrottlingException",
    "RequestThrottled",
    "ServiceUnavailable",
    "InternalError",
    "KmsThrottled",
];

/// Codes that retrying will not fix.
const CONFIG: [&str; 5] = [
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
];

/// Whether `e` says the queue does not exist.
pub(super) fn is_missing<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    matches!(e.code(), Some(c) if MISSING.contains(&c))
}

/// Classifies an SDK error from `op` (which names the queue).
pub(super) fn classify<E>(op: &str, e: SdkError<E, HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().map(str::to_owned);
    let status = match &e {
        SdkError::ServiceError(se) => Some(se.raw().status().as_u16()),
        SdkError::ResponseError(re) => Some(re.raw().status().as_u16()),
        _ => None,
    };
    let msg = format!("SQS {op}: {}", DisplayErrorContext(&e));
    match &e {
        SdkError::ConstructionFailure(_) => QueueError::Config(msg),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            QueueError::Unavailable(msg)
        }
        _ => match (status, code.as_deref()) {
            (_, Some(c)) if MISSING.contains(&c) => QueueError::Config(format!(
                "{msg}; create the queues with `mediafleet queues setup`"
            )),
            (_, Some(c)) if CONFIG.contains(&c) => QueueError::Config(msg),
            (_, Some(c)) if TRANSIENT.contains(&c) => QueueError::Unavailable(msg),
            (Some(s), _) if s >= 500 || s == 429 => QueueError::Unavailable(msg),
            (Some(401 | 403), _) => QueueError::Config(msg),
            _ => QueueError::Backend(msg),
        },
    }
}
