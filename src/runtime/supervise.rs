//! One delivery, from its scratch directory to its settled message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use super::{Handler, Observer, Outcome, RuntimeOptions, Stopped, Work};
use crate::queue::{Delivery, JobClass, QueueError};

/// How long a message waits when no scratch directory could be made for it.
const NO_SCRATCH_PAUSE: Duration = Duration::from_secs(5);

/// What one delivery needs from its puller.
pub(super) struct One<H: Handler> {
    pub handler: Arc<H>,
    pub observer: Arc<dyn Observer>,
    pub opts: Arc<RuntimeOptions>,
    pub dirs: Arc<super::jobdirs::JobDirs>,
    pub class: JobClass,
    pub abort: CancellationToken,
}

/// How a supervised job ended.
enum Ended {
    /// The handler returned (or panicked, or ran out of time, and then decided).
    Outcome(Outcome),
    /// Stopped by the runtime: nothing to settle.
    Stopped(Stopped),
}

impl<H: Handler> One<H> {
    pub async fn run(self, delivery: Box<dyn Delivery>) {
        let _busy = self.observer.started(&self.class);
        let started = Instant::now();
        let scratch = match self.dirs.take() {
            Ok(dir) => dir,
            Err(e) => {
                // Without a scratch directory nothing can run. Not the message's fault: it goes back unchanged
                // (no attempt spent) and is delivered again after a pause, here or on another worker.
                error!(error = %e, dir = %self.opts.scratch_dir.display(), "cannot make a job scratch dir; sending the message back");
                let body = delivery.body().to_vec();
                let outcome = Outcome::WaitOut {
                    delay: NO_SCRATCH_PAUSE,
                    body,
                };
                let label = outcome.label();
                settle(delivery, outcome).await;
                self.observer
                    .finished(&self.class, label, started.elapsed());
                return;
            }
        };
        let work = Arc::new(Work {
            class: self.class.clone(),
            body: delivery.body().to_vec(),
            delivery_count: delivery.delivery_count(),
            scratch: scratch.path().to_path_buf(),
        });
        let limit = self.handler.time_limit(&work);
        let task = {
            let (handler, work) = (self.handler.clone(), work.clone());
            // A task of its own is the panic boundary: a panic ends this job, not the worker.
            tokio::spawn(async move { handler.handle(&work).await }.in_current_span())
        };
        let ended = self.supervise(task, delivery.as_ref(), &work, limit).await;
        drop(scratch); // always emptied (or removed), whatever happened
        let label = match ended {
            Ended::Stopped(why) => {
                match &why {
                    Stopped::Released => {
                        info!("drain deadline passed: handing the job back");
                        if let Err(e) = delivery.release().await {
                            warn!(error = %e, "release failed; the lease will expire instead");
                        }
                    }
                    Stopped::LeaseLost(reason) => {
                        // The message is, or will be, another worker's: no outcome of ours may count.
                        warn!(%reason, "lease lost: job stopped, the message is left to the broker");
                        drop(delivery);
                    }
                }
                self.handler.stopped(&work, &why).await;
                match why {
                    Stopped::Released => "released",
                    Stopped::LeaseLost(_) => "lease_lost",
                }
            }
            Ended::Outcome(outcome) => {
                let label = outcome.label();
                settle(delivery, outcome).await;
                label
            }
        };
        self.observer
            .finished(&self.class, label, started.elapsed());
    }

    /// Waits for the job while heartbeating its lease. A heartbeat the broker refuses (the lease was taken
    /// over), or heartbeats failing until the lease has run out, stop the job: by then the message is visible
    /// to other workers, and finishing would only race them.
    async fn supervise(
        &self,
        mut task: tokio::task::JoinHandle<Outcome>,
        delivery: &dyn Delivery,
        work: &Work,
        limit: Option<Duration>,
    ) -> Ended {
        let lease = self.opts.lease;
        let mut beat = tokio::time::interval(lease / 2);
        beat.tick().await; // the first tick is immediate; the lease is fresh
        let mut held_until = tokio::time::Instant::now() + lease;
        // Far enough in the future to mean "never" without overflowing an Instant.
        let deadline = tokio::time::Instant::now()
            + limit.unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
        loop {
            tokio::select! {
                r = &mut task => {
                    return Ended::Outcome(match r {
                        Ok(outcome) => outcome,
                        Err(e) if e.is_panic() => {
                            error!("job panicked");
                            self.handler.panicked(work).await
                        }
                        // Only an abort cancels the task, and only this function aborts it.
                        Err(e) => {
                            error!(error = %e, "job task ended without an outcome");
                            self.handler.panicked(work).await
                        }
                    });
                }
                _ = beat.tick() => {
                    let now = tokio::time::Instant::now();
                    match delivery.extend_lease(lease).await {
                        Ok(()) => held_until = now + lease,
                        Err(QueueError::Unavailable(e)) if now < held_until => {
                            warn!(error = %e, left = ?(held_until - now), "lease heartbeat failed; the lease still holds");
                        }
                        Err(e) => {
                            stop(&mut task).await;
                            return Ended::Stopped(Stopped::LeaseLost(format!("lease heartbeat failed: {e}")));
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let limit = limit.unwrap_or_default();
                    warn!(?limit, "job ran past its time limit: stopped");
                    stop(&mut task).await;
                    return Ended::Outcome(self.handler.timed_out(work, limit).await);
                }
                _ = self.abort.cancelled() => {
                    stop(&mut task).await;
                    return Ended::Stopped(Stopped::Released);
                }
            }
        }
    }
}

/// Aborts the job's task and waits for it to be gone (dropping its state kills any media child it held).
async fn stop(task: &mut tokio::task::JoinHandle<Outcome>) {
    task.abort();
    let _ = task.await;
}

/// Applies an outcome to the delivery. A failure to settle leaves the message to its lease: it is
/// delivered again, and the job is safe to repeat.
async fn settle(delivery: Box<dyn Delivery>, outcome: Outcome) {
    let result = match outcome {
        Outcome::Ack | Outcome::Fail => delivery.ack().await,
        Outcome::Retry { delay, body } | Outcome::WaitOut { delay, body } => {
            delivery.retry_after(delay, body).await
        }
        Outcome::DeadLetter { reason } => delivery.dead_letter(&reason).await,
    };
    if let Err(e) = result {
        warn!(error = %e, "could not settle the message; its lease will expire and it is delivered again");
    }
}
