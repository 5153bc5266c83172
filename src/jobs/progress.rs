//! Progress from the sandboxed child to the media row, throttled: the child reports as often as it likes,
//! the row is written at most once per [`WRITE_EVERY`], and only when the value moved.

use std::time::Duration;

use tokio::sync::watch;
use tracing::debug;

use crate::db::Records;

/// The shortest time between two progress writes of one media.
pub const WRITE_EVERY: Duration = Duration::from_secs(2);

/// No progress is written before a job has run this long: a thumbnail is done well within it, and its
/// final state is written by the job anyway, so a progress write would be one more commit a job for nothing.
pub const FIRST_WRITE_AFTER: Duration = Duration::from_millis(500);

/// A task that writes the latest progress of one media.
pub struct ProgressWriter {
    tx: watch::Sender<f64>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressWriter {
    /// Starts writing progress of `id`; a child's 0–1 maps onto `start..start + span` of the media's bar.
    pub fn start(records: Records, id: String, (start, span): (f64, f64)) -> Self {
        let (tx, mut rx) = watch::channel(0.0f64);
        let task = tokio::spawn(async move {
            tokio::time::sleep(FIRST_WRITE_AFTER).await;
            let mut written = -1.0f64;
            while rx.changed().await.is_ok() {
                let p = start + span * rx.borrow_and_update().clamp(0.0, 1.0);
                if p - written >= 0.005 {
                    if let Err(e) = records.set_progress(&id, p).await {
                        debug!(media_id = %id, error = %e, "progress write failed");
                    }
                    written = p;
                }
                tokio::time::sleep(WRITE_EVERY).await;
            }
        });
        ProgressWriter { tx, task }
    }

    /// The callback to hand to the sandbox.
    pub fn sender(&self) -> impl Fn(f64) + Send + Sync + 'static {
        let tx = self.tx.clone();
        move |p| {
            tx.send_replace(p);
        }
    }

    /// Stops writing (the job is about to write its final state itself).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
