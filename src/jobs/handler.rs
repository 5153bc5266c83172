//! The media rules of a delivery: parse the envelope once, record the attempt, run the job, and turn its
//! result into an [`Outcome`] for the runtime — failing the media (and warming its cache entry) where the
//! job ends for good, retrying with backoff, or waiting out an outage without spending an attempt.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use mediafleet_proto::{Envelope, ErrorCode, JobKind};
use tracing::{info, warn, Instrument};

use super::{Done, JobContext, JobError};
use crate::runtime::{Handler, Outcome, Stopped, Work};

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

/// When jobs are retried, and for how long outages are waited out.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts before the DLQ.
    pub max_attempts: u32,
    /// First retry delay.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How long a job waits out an infrastructure outage (storage, DB, broker) before its media fails;
    /// waiting spends no attempt.
    pub outage_budget: Duration,
}

/// Slack over a job's own time limit before the runtime stops it: the sandbox enforces the limit on media
/// work; this catches a job wedged anywhere else.
const TIME_LIMIT_SLACK: Duration = Duration::from_secs(60);

/// Runs the jobs of this crate (`media.process`, `media.validate`, `cache.warm`, `notify.webhook`).
pub struct MediaHandler {
    ctx: Arc<JobContext>,
    policy: RetryPolicy,
    worker_id: String,
}

impl MediaHandler {
    /// A handler recording its attempts as `worker_id` (host:pid).
    pub fn new(ctx: Arc<JobContext>, policy: RetryPolicy, worker_id: String) -> Self {
        MediaHandler {
            ctx,
            policy,
            worker_id,
        }
    }

    /// The jobs' context.
    pub fn context(&self) -> &Arc<JobContext> {
        &self.ctx
    }
}

/// A delivery's envelope and the attempt it is: our count of scheduled retries plus the deliveries the
/// broker made and lost (crashes, dropped connections).
fn parse(work: &Work) -> Result<(Envelope, u32), String> {
    let env = Envelope::parse(&work.body)
        .and_then(|e| e.job().map(|_| e))
        .map_err(|e| e.to_string())?;
    let attempt = env
        .attempt
        .saturating_add(work.delivery_count.saturating_sub(1));
    Ok((env, attempt))
}

#[async_trait]
impl Handler for MediaHandler {
    fn starting(&self, scratch: &Path) {
        // The first jobs' media children are started now, not when those jobs arrive.
        self.ctx.sandbox.prewarm(Some(scratch));
    }

    fn time_limit(&self, work: &Work) -> Option<Duration> {
        let (env, _) = parse(work).ok()?;
        let own = match JobKind::parse(&env.kind) {
            // Plus one job's time: a prefetched delivery may wait that long for a media slot.
            Some(JobKind::MediaProcess) => {
                super::longest_media_job(&self.ctx) + self.ctx.job_timeout
            }
            _ => self.ctx.job_timeout,
        };
        Some(own + TIME_LIMIT_SLACK)
    }

    async fn handle(&self, work: &Work) -> Outcome {
        let (env, attempt) = match parse(work) {
            Ok(parsed) => parsed,
            Err(reason) => return self.unreadable(work, reason).await,
        };
        // The job runs under the trace context its producer sent (or a new one): its log lines carry the
        // trace id, and the jobs it enqueues carry the context on.
        let tp = crate::trace::of(&env)
            .map(str::to_owned)
            .unwrap_or_else(crate::trace::start);
        let trace_id = crate::trace::trace_id(&tp).unwrap_or_default().to_owned();
        let span = tracing::info_span!("job", otel.name = %format_args!("job {}", env.kind), otel.kind = "consumer", job_id = %env.job_id, media_id = %env.media_id, kind = %env.kind, attempt, trace_id);
        crate::trace::link(&span, &tp);
        crate::trace::scope(tp, self.run(work, env, attempt).instrument(span)).await
    }

    async fn panicked(&self, work: &Work) -> Outcome {
        self.abnormal_end(work, ErrorCode::Internal, "job panicked (see worker log)")
            .await
    }

    async fn timed_out(&self, work: &Work, limit: Duration) -> Outcome {
        let message = format!(
            "job ran past its time limit of {} and was stopped",
            humantime::format_duration(Duration::from_secs(limit.as_secs()))
        );
        self.abnormal_end(work, ErrorCode::Timeout, &message).await
    }

    async fn stopped(&self, work: &Work, why: &Stopped) {
        let Ok((env, attempt)) = parse(work) else {
            return;
        };
        let (label, err) = match why {
            Stopped::Released => ("released", None),
            Stopped::LeaseLost(why) => ("lease_lost", Some((ErrorCode::Internal, why.as_str()))),
        };
        let err = err.map(|(c, m)| (c.as_str(), m));
        crate::scale::observe::attempt_ended(&work.class, &env.kind, label, err.map(|e| e.0));
        let _ = self
            .ctx
            .records
            .finish_attempt(&env.job_id.to_string(), attempt, label, err)
            .await;
    }
}

/// What an attempt record says about how it ended.
struct Ending {
    outcome: Outcome,
    error: Option<(ErrorCode, String)>,
}

impl Ending {
    fn ok(outcome: Outcome) -> Self {
        Ending {
            outcome,
            error: None,
        }
    }
}

impl MediaHandler {
    /// A message that cannot be understood is dead-lettered; a `media.process` among them fails its media
    /// visibly (it would otherwise stay `queued` with no message that moves it).
    async fn unreadable(&self, work: &Work, reason: String) -> Outcome {
        warn!(%reason, "dead-lettering a message that cannot be understood");
        if let Ok(env) = serde_json::from_slice::<Envelope>(&work.body) {
            if JobKind::parse(&env.kind) == Some(JobKind::MediaProcess) {
                self.fail_media(&env, ErrorCode::InvalidMessage, &reason)
                    .await;
            }
        }
        Outcome::DeadLetter { reason }
    }

    async fn run(&self, work: &Work, env: Envelope, attempt: u32) -> Outcome {
        let ctx = &self.ctx;
        let job_id = env.job_id.to_string();
        let sized = crate::scale::observe::sized(&env);
        let bookkeeping = async {
            if let Err(e) = ctx
                .records
                .start_attempt(
                    &job_id,
                    attempt,
                    &env.media_id.to_string(),
                    &env.kind,
                    work.class.as_str(),
                    &self.worker_id,
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
        // In a database outage these writes would wait for the pool's acquire timeout; the job goes on
        // without them after a while, meets the outage itself and waits it out without spending an attempt.
        if tokio::time::timeout(ctx.job_timeout.min(Duration::from_secs(10)), bookkeeping)
            .await
            .is_err()
        {
            warn!("recording the attempt's start is slow; going on without it");
        }
        let started = Instant::now();
        let result = super::run(ctx, &work.class, &env, &work.scratch).await;
        let elapsed = started.elapsed();
        let completed = matches!(result, Ok(Done::Completed));
        let ending = match result {
            Ok(done) => {
                info!(?elapsed, skipped = (done == Done::Skipped), "job done");
                Ending::ok(Outcome::Ack)
            }
            Err(JobError::Permanent(err)) => {
                info!(code = %err.code, message = %err.message, "job failed permanently");
                // Only a media job may fail its media; a warm or a webhook that fails for good leaves it.
                let recorded = if super::changes_media_status(&env) {
                    ctx.records
                        .fail(&env.media_id.to_string(), err.code.as_str(), &err.message)
                        .await
                } else {
                    Ok(false)
                };
                match recorded {
                    Ok(changed) => {
                        if changed {
                            super::enqueue_warm(ctx, &env.media_id.to_string(), env.lane).await;
                        }
                        Ending {
                            outcome: Outcome::Fail,
                            error: Some((err.code, err.message)),
                        }
                    }
                    Err(e) => {
                        let msg = format!("could not record failure: {e}");
                        self.retry_or_exhaust(&env, attempt, ErrorCode::Internal, &msg)
                            .await
                    }
                }
            }
            Err(JobError::Invalid(reason)) => {
                if super::changes_media_status(&env) {
                    self.fail_media(&env, ErrorCode::InvalidMessage, &reason)
                        .await;
                }
                Ending {
                    outcome: Outcome::DeadLetter {
                        reason: reason.clone(),
                    },
                    error: Some((ErrorCode::InvalidMessage, reason)),
                }
            }
            Err(JobError::Transient { code, message }) => {
                self.retry_or_exhaust(&env, attempt, code, &message).await
            }
            Err(JobError::Outage {
                code,
                message,
                what,
            }) => self.wait_out_outage(&env, code, &message, what).await,
        };
        let label = ending.outcome.label();
        let err = ending.error.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
        crate::scale::observe::attempt_ended(&work.class, &env.kind, label, err.map(|e| e.0));
        if let Err(e) = ctx
            .records
            .finish_attempt(&job_id, attempt, label, err)
            .await
        {
            warn!(error = %e, "could not record attempt end");
        }
        crate::scale::observe::job_cost(
            &ctx.records,
            &work.class,
            label,
            elapsed,
            completed,
            sized.then_some(job_id.as_str()),
        );
        ending.outcome
    }

    /// A job that panicked or ran out of time: a transient failure of the attempt it was.
    async fn abnormal_end(&self, work: &Work, code: ErrorCode, message: &str) -> Outcome {
        let Ok((env, attempt)) = parse(work) else {
            return Outcome::DeadLetter {
                reason: message.to_owned(),
            };
        };
        let ending = self.retry_or_exhaust(&env, attempt, code, message).await;
        let err = ending.error.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
        crate::scale::observe::attempt_ended(
            &work.class,
            &env.kind,
            ending.outcome.label(),
            err.map(|e| e.0),
        );
        let _ = self
            .ctx
            .records
            .finish_attempt(
                &env.job_id.to_string(),
                attempt,
                ending.outcome.label(),
                err,
            )
            .await;
        ending.outcome
    }

    /// Fails the media (when the job may change its status) and enqueues its cache warm if it changed.
    async fn fail_media(&self, env: &Envelope, code: ErrorCode, line: &str) {
        let id = env.media_id.to_string();
        match self.ctx.records.fail(&id, code.as_str(), line).await {
            Ok(true) => super::enqueue_warm(&self.ctx, &id, env.lane).await,
            Ok(false) => {}
            Err(e) => warn!(error = %e, "could not mark the media failed; the reaper will"),
        }
    }

    async fn retry_or_exhaust(
        &self,
        env: &Envelope,
        attempt: u32,
        code: ErrorCode,
        message: &str,
    ) -> Ending {
        let p = &self.policy;
        if attempt >= p.max_attempts {
            let reason = format!(
                "retries exhausted after {attempt} attempts; last error: {code}: {message}"
            );
            warn!(%reason, "dead-lettering");
            // Clients see one stable line; the error chain is in this log line and the dead letter's reason.
            let line = format!("gave up after {attempt} attempts; the last one failed with {code}");
            if super::changes_media_status(env) {
                self.fail_media(env, ErrorCode::RetriesExhausted, &line)
                    .await;
            }
            return Ending {
                outcome: Outcome::DeadLetter {
                    reason: reason.clone(),
                },
                error: Some((ErrorCode::RetriesExhausted, reason)),
            };
        }
        let delay = retry_delay(p.retry_base, p.retry_max, attempt);
        warn!(%code, %message, ?delay, "transient failure; retrying from the queue");
        Ending {
            outcome: Outcome::Retry {
                delay,
                body: env.next_attempt().to_bytes(),
            },
            error: Some((code, message.into())),
        }
    }

    /// An infrastructure failure: the job goes back to the queue with the same attempt, carrying when the
    /// outage began, and backs off (base doubling to max, jittered) until the outage budget is spent. Only
    /// then does the media fail, with the outage's code and one readable line; the chain stays in the logs.
    async fn wait_out_outage(
        &self,
        env: &Envelope,
        code: ErrorCode,
        message: &str,
        what: &str,
    ) -> Ending {
        let p = &self.policy;
        let now = chrono::Utc::now();
        let since = env.outage_since().unwrap_or(now);
        let lasted = (now - since).to_std().unwrap_or_default();
        if lasted >= p.outage_budget {
            let line = format!(
                "{what} was unavailable for {} (the outage budget); see the worker log",
                humantime::format_duration(Duration::from_secs(lasted.as_secs()))
            );
            let reason = format!("{line}; last error: {code}: {message}");
            warn!(%reason, "outage outlasted its budget; dead-lettering");
            if super::changes_media_status(env) {
                self.fail_media(env, code, &line).await;
            }
            return Ending {
                outcome: Outcome::DeadLetter { reason },
                error: Some((code, line)),
            };
        }
        let next = env.waiting_out_outage(since);
        let delay = retry_delay(p.retry_base, p.retry_max, next.outage_retries());
        warn!(%code, %what, error = %message, lasted = ?lasted, ?delay, "infrastructure unavailable; waiting it out without spending an attempt");
        Ending {
            outcome: Outcome::WaitOut {
                delay,
                body: next.to_bytes(),
            },
            error: Some((code, format!("{what} unavailable"))),
        }
    }
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
