//! Capability routing. `video-gpu` jobs are taken only by workers whose encoder check found NVENC; when no
//! such worker has been alive for `fallback_after` while jobs wait, the scaler moves them to `video`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::signal::ClassSignal;
use crate::config::ClassScaling;
use crate::queue::{JobClass, JobQueue, QueueError};

/// The class only NVENC-capable workers take.
pub const GPU_CLASS: &str = "video-gpu";

/// Whether an NVENC H.264 encoder opens on this machine: encodes a tenth of a second of a test pattern with
/// `h264_nvenc`. FFmpeg builds list the encoder even without a GPU, so listing is not enough.
/// `MEDIAFLEET_NVENC=1` or `=0` overrides the probe (containers without the ffmpeg CLI).
pub async fn nvenc_available() -> bool {
    match std::env::var("MEDIAFLEET_NVENC").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        _ => {}
    }
    let probe = tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=256x256:rate=10:duration=0.1",
            "-c:v",
            "h264_nvenc",
            "-f",
            "null",
            "-",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(tokio::time::timeout(Duration::from_secs(20), probe).await, Ok(Ok(s)) if s.success())
}

/// Since when each class has had waiting jobs and no live worker.
#[derive(Debug, Default)]
pub struct Fallback {
    unserved_since: BTreeMap<String, Instant>,
}

/// Most jobs moved per class per poll, so one poll stays short.
const MOVE_BATCH: usize = 100;

impl Fallback {
    /// Moves ready jobs of unserved classes that have a `fallback_to`, once they waited `fallback_after`
    /// (by the oldest job's age where the backend tells it, else by how long the scaler has seen them wait).
    pub async fn run(
        &mut self,
        queue: &dyn JobQueue,
        cfgs: &BTreeMap<String, ClassScaling>,
        signals: &[ClassSignal],
        live: &BTreeMap<String, u32>,
    ) -> Result<(), QueueError> {
        let now = Instant::now();
        for s in signals {
            let Some(cfg) = cfgs.get(&s.class) else {
                continue;
            };
            let Some(target) = cfg.fallback_to.as_deref() else {
                continue;
            };
            let served = live.get(&s.class).copied().unwrap_or(0) > 0;
            if served || s.ready == 0 {
                self.unserved_since.remove(&s.class);
                continue;
            }
            let since = *self.unserved_since.entry(s.class.clone()).or_insert(now);
            let waited = s
                .oldest_age_seconds
                .map(Duration::from_secs_f64)
                .unwrap_or_else(|| now.duration_since(since));
            if waited < cfg.fallback_after {
                continue;
            }
            let from = JobClass::new(&s.class)?;
            let to = JobClass::new(target)?;
            let moved = move_ready(queue, &from, &to, MOVE_BATCH).await?;
            if moved > 0 {
                info!(from = %from, to = %to, moved, waited = ?waited, fallback_after = ?cfg.fallback_after,
                    "no capable worker: jobs fall back");
            }
        }
        Ok(())
    }
}

/// Publishes up to `max` ready jobs of `from` to `to` (confirmed) and acks them. A crash in between
/// duplicates a job, never loses one; jobs are idempotent.
pub async fn move_ready(
    queue: &dyn JobQueue,
    from: &JobClass,
    to: &JobClass,
    max: usize,
) -> Result<usize, QueueError> {
    let got = queue.receive(from, max, Duration::from_millis(100)).await?;
    let mut moved = 0;
    for d in got {
        match queue.publish(to, d.body()).await {
            Ok(()) => {
                if let Err(e) = d.ack().await {
                    warn!(error = %e, "moved job not acked; it may run twice (safe)");
                }
                moved += 1;
            }
            Err(e) => {
                let _ = d.release().await;
                return Err(e);
            }
        }
    }
    Ok(moved)
}
