//! Progress and cancellation for long media work.
//!
//! A transcode can run for an hour. The caller (the `process` CLI in the sandboxed child, or a test) hands a
//! [`Control`] in; the pipelines call [`Control::check`] between packets, so a cancel stops the encode within
//! one packet, and [`Control::progress`] as frames go by. Throttling is the receiver's business: the callback
//! sees every update.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mediafleet_proto::ErrorCode;

use crate::MediaError;

/// A progress callback: the fraction of the work done, 0.0–1.0.
pub type ProgressFn = dyn Fn(f64) + Send + Sync;

/// Cancellation flag and progress sink, cheap to clone and share with another thread.
#[derive(Clone, Default)]
pub struct Control {
    cancel: Arc<AtomicBool>,
    progress: Option<Arc<ProgressFn>>,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("cancelled", &self.is_cancelled())
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Control {
    /// A control nobody watches and nothing cancels.
    pub fn new() -> Self {
        Control::default()
    }

    /// A control that reports progress to `f`.
    pub fn with_progress(f: impl Fn(f64) + Send + Sync + 'static) -> Self {
        Control {
            cancel: Arc::default(),
            progress: Some(Arc::new(f)),
        }
    }

    /// Asks the work to stop; it ends with a `timeout` failure and removes its partial files.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Whether [`Control::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// `Err` once cancelled: the pipelines call this between packets.
    pub fn check(&self) -> Result<(), MediaError> {
        if self.is_cancelled() {
            Err(MediaError::new(
                ErrorCode::Timeout,
                "media work was cancelled (deadline or shutdown)",
            ))
        } else {
            Ok(())
        }
    }

    /// Reports the fraction done (clamped to 0.0–1.0).
    pub fn progress(&self, fraction: f64) {
        if let Some(f) = &self.progress {
            let x = if fraction.is_finite() { fraction } else { 0.0 };
            f(x.clamp(0.0, 1.0));
        }
    }

    /// A control whose progress maps 0–1 onto `start..start + span` of this one (same cancel flag).
    pub fn part(&self, start: f64, span: f64) -> Control {
        let Some(parent) = self.progress.clone() else {
            return self.clone();
        };
        Control {
            cancel: self.cancel.clone(),
            progress: Some(Arc::new(move |x| parent(start + span * x))),
        }
    }
}
