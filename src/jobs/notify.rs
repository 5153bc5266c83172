//! `notify.webhook`: POSTs the media object to the callback URL, signed with
//! `Mediafleet-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`.
//!
//! The URL is checked again at delivery (allow-list, then every resolved address must be public unless
//! allowed), and the request is pinned to the checked address with redirects off (see [`crate::webhook`]).
//! A non-2xx answer or a network error retries from the queue with backoff and dead-letters after the
//! configured attempts; a URL the policy refuses dead-letters at once. A webhook never changes its media.

use mediafleet_proto::envelope::NotifyWebhook;
use mediafleet_proto::{Envelope, ErrorCode};
use tracing::info;

use super::{Done, JobContext, JobError};
use crate::media_object::media_json;
use crate::webhook::{signature, WebhookError};

pub(super) async fn notify(
    ctx: &JobContext,
    env: &Envelope,
    job: &NotifyWebhook,
) -> Result<Done, JobError> {
    let policy = &ctx.webhooks;
    let secret = policy.secret.as_deref().ok_or_else(|| {
        JobError::Invalid("webhooks are not configured on this worker ([webhooks] secret)".into())
    })?;
    let (url, addr) = policy.resolve(&job.url).await.map_err(|e| match e {
        WebhookError::Refused(m) => JobError::Invalid(format!("callback_url refused: {m}")),
        WebhookError::Resolve(m) => JobError::transient(ErrorCode::Internal, m),
    })?;
    let id = env.media_id.to_string();
    let Some(row) = ctx.records.media_primary(&id).await? else {
        return Ok(Done::Skipped);
    };
    let renditions = ctx.records.renditions(&id).await?;
    let body = media_json(&row, &renditions, ctx.public_url.as_deref()).to_string();
    let now = chrono::Utc::now().timestamp();
    let host = url.host_str().unwrap_or_default().to_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(policy.timeout)
        .resolve(&host, addr)
        .build()
        .map_err(|e| JobError::transient(ErrorCode::Internal, e))?;
    let mut req = client.post(url.clone());
    if let Some(tp) = crate::trace::current() {
        req = req.header(crate::trace::TRACEPARENT, crate::trace::next_hop(&tp));
    }
    let res = req
        .header("content-type", "application/json")
        .header("user-agent", "mediafleet-webhook/1")
        .header(
            "mediafleet-signature",
            signature(secret, now, body.as_bytes()),
        )
        .header("mediafleet-event", format!("media.{}", job.status))
        .header("mediafleet-delivery", env.job_id.to_string())
        .body(body)
        .send()
        .await
        .map_err(|e| JobError::transient(ErrorCode::Internal, format!("webhook POST: {e}")))?;
    let status = res.status();
    if !status.is_success() {
        return Err(JobError::transient(
            ErrorCode::Internal,
            format!("webhook answered {status}"),
        ));
    }
    info!(media_id = %id, %host, %status, "webhook delivered");
    Ok(Done::Completed)
}
