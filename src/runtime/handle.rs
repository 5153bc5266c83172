//! One delivery, from parse to outcome.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use mediafleet_proto::{Envelope, ErrorCode, JobKind};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use super::RuntimeOptions;
use crate::jobs::{self, Done, JobContext, JobError};
use crate::queue::{Delivery, JobClass, QueueError};

/// The delay before retry number `attempt` (1-based): exponential from `base`, capped at `max`, jittered.
pub fn retry_delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    let n = attempt.max(1) as usize;
    ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(n)
        .build()
        .nth(n - 1)
        .unwrap_or(max)
}

pub(super) async fn handle(
    ctx: Arc<JobContext>,
    opts: Arc<RuntimeOptions>,
    class: &JobClass,
    delivery: Box<dyn Delivery>,
    abort: CancellationToken,
) {
    let env = match Envelope::parse(delivery.body()).and_then(|e| e.job().map(|_| e)) {
        Ok(env) => env,
        Err(reason) => {
            let reason = reason.to_string();
            warn!(%reason, "dead-lettering a message that cannot be understood");
            // A media.process with a bad payload would leave its media queued forever: fail it visibly.
            if let Ok(env) = serde_json::from_slice::<Envelope>(delivery.body()) {
                if JobKind::parse(&env.kind) == Some(JobKind::MediaProcess) {
                    let id = env.media_id.to_string();
                    if let Ok(true) = ctx
                        .records
                        .fail(&id, ErrorCode::InvalidMessage.as_str(), &reason)
                        .await
                    {
                        jobs::enqueue_warm(&ctx, &id).await;
                    }
                }
            }
            if let Err(e) = delivery.dead_letter(&reason).await {
                error!(error = %e, "could not dead-letter; the broker will redeliver it");
            }
            return;
        }
    };
    // Our attempt counts scheduled retries; the broker's count adds deliveries lost to crashes.
    let attempt = env
        .attempt
        .saturating_add(delivery.delivery_count().saturating_sub(1));
    let span = tracing::info_span!("job", job_id = %env.job_id, media_id = %env.media_id, kind = %env.kind, attempt);
    run_one(ctx, opts, class, delivery, abort, env, attempt)
        .instrument(span)
        .await;
}

async fn run_one(
    ctx: Arc<JobContext>,
    opts: Arc<RuntimeOptions>,
    class: &JobClass,
    delivery: Box<dyn Delivery>,
    abort: CancellationToken,
    env: Envelope,
    attempt: u32,
) {
    let _busy = crate::scale::observe::busy();
    let job_id = env.job_id.to_string();
    let media_id = env.media_id.to_string();
    let sized = crate::scale::observe::sized(&env);
    let bookkeeping = async {
        if let Err(e) = ctx
            .records
            .start_attempt(
                &job_id,
                attempt,
                &media_id,
                &env.kind,
                class.as_str(),
                &opts.worker_id,
            )
            .await
        {
            warn!(error = %e, "could not record attempt start");
        }
        if sized {
            if let Err(e) = ctx.records.start_queued_work(&job_id).await {
                warn!(error = %e, "could not mark the job's known work started");
            }
        }
    };
    // The lease is not heartbeated yet: in a database outage these writes would wait for the pool's acquire
    // timeout while the lease runs out, and the broker would give the message to another worker (a second
    // delivery, an attempt spent). Past half the lease the job goes on without them; the job itself then meets
    // the outage and waits it out without spending an attempt.
    if tokio::time::timeout(opts.lease / 2, bookkeeping)
        .await
        .is_err()
    {
        warn!("recording the attempt's start took over half the lease; going on without it");
    }
    let started = std::time::Instant::now();
    let result = match tempfile::Builder::new()
        .prefix("job-")
        .tempdir_in(&opts.scratch_dir)
    {
        Err(e) => Err(JobError::transient(
            ErrorCode::Internal,
            format!("scratch dir: {e}"),
        )),
        Ok(scratch) => {
            let task = {
                let (ctx, env, dir) = (ctx.clone(), env.clone(), scratch.path().to_path_buf());
                // A task of its own is the panic boundary: a panic ends this job, not the worker.
                tokio::spawn(async move { jobs::run(&ctx, &env, &dir).await }.in_current_span())
            };
            let outcome = supervise(task, delivery.as_ref(), &opts, &abort).await;
            drop(scratch); // always removed, whatever happened
            match outcome {
                Supervised::Drained => {
                    info!("drain deadline passed: handing the job back");
                    if let Err(e) = delivery.release().await {
                        warn!(error = %e, "release failed; the lease will expire instead");
                    }
                    let _ = ctx
                        .records
                        .finish_attempt(&job_id, attempt, "released", None)
                        .await;
                    return;
                }
                Supervised::LeaseLost(why) => {
                    // The message is, or will be, another worker's: no outcome of ours may count. The job's
                    // writes are guarded, so the work it did is either kept or repeated, never doubled.
                    warn!(reason = %why, "lease lost: job stopped, the message is left to the broker");
                    drop(delivery);
                    let _ = ctx
                        .records
                        .finish_attempt(
                            &job_id,
                            attempt,
                            "lease_lost",
                            Some((ErrorCode::Internal.as_str(), why.as_str())),
                        )
                        .await;
                    return;
                }
                Supervised::Finished(r) => r,
            }
        }
    };
    let elapsed = started.elapsed();
    let completed = matches!(result, Ok(Done::Completed));
    let outcome = match result {
        Ok(done) => {
            info!(?elapsed, skipped = (done == Done::Skipped), "job done");
            ack(delivery).await;
            ("ok", None)
        }
        Err(JobError::Permanent(err)) => {
            info!(code = %err.code, message = %err.message, "media failed permanently");
            match ctx
                .records
                .fail(&media_id, err.code.as_str(), &err.message)
                .await
            {
                Ok(changed) => {
                    if changed {
                        jobs::enqueue_warm(&ctx, &media_id).await;
                    }
                    ack(delivery).await;
                    ("failed", Some((err.code.as_str().to_owned(), err.message)))
                }
                Err(e) => {
                    let msg = format!("could not record failure: {e}");
                    retry_or_exhaust(
                        &ctx,
                        &opts,
                        delivery,
                        &env,
                        attempt,
                        ErrorCode::Internal,
                        &msg,
                    )
                    .await
                }
            }
        }
        Err(JobError::Invalid(reason)) => {
            if jobs::changes_media_status(&env)
                && ctx
                    .records
                    .fail(&media_id, ErrorCode::InvalidMessage.as_str(), &reason)
                    .await
                    .unwrap_or(false)
            {
                jobs::enqueue_warm(&ctx, &media_id).await;
            }
            if let Err(e) = delivery.dead_letter(&reason).await {
                error!(error = %e, "could not dead-letter");
            }
            (
                "dead_letter",
                Some((ErrorCode::InvalidMessage.as_str().to_owned(), reason)),
            )
        }
        Err(JobError::Transient { code, message }) => {
            retry_or_exhaust(&ctx, &opts, delivery, &env, attempt, code, &message).await
        }
        Err(JobError::Outage {
            code,
            message,
            what,
        }) => wait_out_outage(&ctx, &opts, delivery, &env, code, &message, what).await,
    };
    let err = outcome.1.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
    if let Err(e) = ctx
        .records
        .finish_attempt(&job_id, attempt, outcome.0, err)
        .await
    {
        warn!(error = %e, "could not record attempt end");
    }
    crate::scale::observe::job_finished(
        &ctx.records,
        class,
        outcome.0,
        elapsed,
        completed,
        sized.then_some(job_id.as_str()),
    );
}

/// How a supervised job ended.
enum Supervised {
    /// The job returned (or panicked).
    Finished(Result<Done, JobError>),
    /// The drain deadline cancelled it.
    Drained,
    /// Its lease could not be kept: stopped, so two workers never run one delivery side by side.
    LeaseLost(String),
}

/// Waits for the job while heartbeating its lease. A heartbeat the broker refuses (the lease was taken
/// over), or heartbeats failing until the lease has run out, stop the job: by then the message is visible
/// to other workers, and finishing would only race them.
async fn supervise(
    mut task: tokio::task::JoinHandle<Result<Done, JobError>>,
    delivery: &dyn Delivery,
    opts: &RuntimeOptions,
    abort: &CancellationToken,
) -> Supervised {
    let mut beat = tokio::time::interval(opts.lease / 2);
    beat.tick().await; // the first tick is immediate; the lease is fresh
    let mut held_until = tokio::time::Instant::now() + opts.lease;
    loop {
        tokio::select! {
            r = &mut task => {
                return Supervised::Finished(match r {
                    Ok(r) => r,
                    Err(e) if e.is_panic() => {
                        error!("job panicked");
                        Err(JobError::transient(ErrorCode::Internal, "job panicked (see worker log)"))
                    }
                    Err(e) => Err(JobError::transient(ErrorCode::Internal, e)),
                });
            }
            _ = beat.tick() => {
                let now = tokio::time::Instant::now();
                match delivery.extend_lease(opts.lease).await {
                    Ok(()) => held_until = now + opts.lease,
                    Err(QueueError::Unavailable(e)) if now < held_until => {
                        warn!(error = %e, left = ?(held_until - now), "lease heartbeat failed; the lease still holds");
                    }
                    Err(e) => {
                        task.abort(); // drops the sandbox child, which kills it
                        let _ = (&mut task).await;
                        return Supervised::LeaseLost(format!("lease heartbeat failed: {e}"));
                    }
                }
            }
            _ = abort.cancelled() => {
                task.abort(); // drops the sandbox child, which kills it
                let _ = task.await;
                return Supervised::Drained;
            }
        }
    }
}

async fn ack(delivery: Box<dyn Delivery>) {
    if let Err(e) = delivery.ack().await {
        warn!(error = %e, "ack failed; the message will be redelivered and the job is safe to repeat");
    }
}

async fn retry_or_exhaust(
    ctx: &JobContext,
    opts: &RuntimeOptions,
    delivery: Box<dyn Delivery>,
    env: &Envelope,
    attempt: u32,
    code: ErrorCode,
    message: &str,
) -> (&'static str, Option<(String, String)>) {
    let media_id = env.media_id.to_string();
    if attempt >= opts.max_attempts {
        let reason =
            format!("retries exhausted after {attempt} attempts; last error: {code}: {message}");
        warn!(%reason, "dead-lettering");
        // Clients see one stable line; the error chain is in this log line and the dead letter's reason.
        let line = format!("gave up after {attempt} attempts; the last one failed with {code}");
        if jobs::changes_media_status(env) {
            match ctx
                .records
                .fail(&media_id, ErrorCode::RetriesExhausted.as_str(), &line)
                .await
            {
                Ok(true) => jobs::enqueue_warm(ctx, &media_id).await,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "could not mark the media failed; the reaper will"),
            }
        }
        if let Err(e) = delivery.dead_letter(&reason).await {
            error!(error = %e, "could not dead-letter; the broker will redeliver it");
        }
        return (
            "dead_letter",
            Some((ErrorCode::RetriesExhausted.as_str().into(), reason)),
        );
    }
    let delay = retry_delay(opts.retry_base, opts.retry_max, attempt);
    warn!(%code, %message, ?delay, "transient failure; retrying from the queue");
    if let Err(e) = delivery
        .retry_after(delay, env.next_attempt().to_bytes())
        .await
    {
        warn!(error = %e, "could not schedule the retry; the lease will expire and redeliver it");
    }
    ("retry", Some((code.as_str().into(), message.into())))
}

/// An infrastructure failure: the job goes back to the queue with the same attempt, carrying when the outage
/// began, and backs off (base doubling to max, jittered) until the outage budget is spent. Only then does the
/// media fail, with the outage's code and one readable line; the error chain stays in the logs.
async fn wait_out_outage(
    ctx: &JobContext,
    opts: &RuntimeOptions,
    delivery: Box<dyn Delivery>,
    env: &Envelope,
    code: ErrorCode,
    message: &str,
    what: &str,
) -> (&'static str, Option<(String, String)>) {
    let now = chrono::Utc::now();
    let since = env.outage_since().unwrap_or(now);
    let lasted = (now - since).to_std().unwrap_or_default();
    if lasted >= opts.outage_budget {
        let line = format!(
            "{what} was unavailable for {} (the outage budget); see the worker log",
            humantime::format_duration(Duration::from_secs(lasted.as_secs()))
        );
        let reason = format!("{line}; last error: {code}: {message}");
        warn!(%reason, "outage outlasted its budget; dead-lettering");
        if jobs::changes_media_status(env) {
            match ctx
                .records
                .fail(&env.media_id.to_string(), code.as_str(), &line)
                .await
            {
                Ok(true) => jobs::enqueue_warm(ctx, &env.media_id.to_string()).await,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "could not mark the media failed"),
            }
        }
        if let Err(e) = delivery.dead_letter(&reason).await {
            error!(error = %e, "could not dead-letter; the broker will redeliver it");
        }
        return ("dead_letter", Some((code.as_str().into(), line)));
    }
    let next = env.waiting_out_outage(since);
    let delay = retry_delay(opts.retry_base, opts.retry_max, next.outage_retries());
    warn!(%code, %what, error = %message, lasted = ?lasted, ?delay, "infrastructure unavailable; waiting it out without spending an attempt");
    if let Err(e) = delivery.retry_after(delay, next.to_bytes()).await {
        warn!(error = %e, "could not send the job back; the lease will expire and redeliver it");
    }
    (
        "outage",
        Some((code.as_str().into(), format!("{what} unavailable"))),
    )
}

#[cfg(test)]
mod tests {
    use super::retry_delay;
    use std::time::Duration;

    #[test]
    fn delays_grow_and_cap() {
        let base = Duration::from_secs(5);
        let max = Duration::from_secs(300);
        let d1 = retry_delay(base, max, 1);
        let d3 = retry_delay(base, max, 3);
        assert!(d1 >= base && d1 <= base * 2, "{d1:?}");
        assert!(d3 >= base * 4, "{d3:?}");
        assert!(retry_delay(base, max, 30) <= max * 2);
    }
}
