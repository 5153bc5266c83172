//! What the upload, auth and webhook handlers share: settings, the relay's wake-up, the upload slots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::ApiError;
use crate::config::UploadSettings;
use crate::webhook::WebhookPolicy;

/// Shared upload state (one per api process).
#[derive(Debug, Clone)]
pub struct UploadState {
    /// `[uploads]`, `[auth]`, `[webhooks]`.
    pub settings: UploadSettings,
    /// Whether requests need an API key (configured, or because `--listen` is not a loopback address).
    pub require_keys: bool,
    /// Wakes the relay after a commit that wrote outbox rows.
    pub relay_wake: Arc<Notify>,
    /// Caps uploads streamed through the api at once.
    pub slots: Arc<Semaphore>,
    /// Callback URL policy.
    pub webhooks: WebhookPolicy,
    /// Bytes the upload spool may hold, and what it holds.
    pub spool: Arc<SpoolBudget>,
    /// Failed API-key checks per client address.
    pub auth_throttle: Arc<super::auth_throttle::AuthThrottle>,
    /// Test-only fault injection: exit right after the upload's commit, before the relay could publish.
    pub exit_after_commit: bool,
}

impl UploadState {
    /// Builds the state for an api listening on `listen`.
    pub fn new(settings: UploadSettings, listen: &str) -> Self {
        let require_keys = settings.require_keys || !is_loopback(listen);
        UploadState {
            require_keys,
            relay_wake: Arc::new(Notify::new()),
            slots: Arc::new(Semaphore::new(settings.max_concurrent)),
            webhooks: WebhookPolicy::from_settings(&settings),
            spool: Arc::new(SpoolBudget::new(settings.spool_bytes.unwrap_or(u64::MAX))),
            auth_throttle: Arc::new(super::auth_throttle::AuthThrottle::new(
                settings.failed_auth_per_minute,
                settings.trust_forwarded_for,
            )),
            exit_after_commit: std::env::var_os("MEDIAFLEET_FAULT_EXIT_AFTER_COMMIT").is_some(),
            settings,
        }
    }

    /// Sizes the spool budget from the free space under `dir` when none was configured.
    pub fn with_spool_dir(mut self, dir: &std::path::Path) -> Self {
        if self.settings.spool_bytes.is_none() {
            match nix::sys::statvfs::statvfs(dir) {
                Ok(v) => {
                    let free = v.blocks_available() * v.fragment_size();
                    self.spool = Arc::new(SpoolBudget::new(free / 10 * 9));
                }
                Err(e) => {
                    tracing::warn!(error = %e, dir = %dir.display(), "cannot size the upload spool")
                }
            }
        }
        tracing::info!(bytes = self.spool.limit, "upload spool budget");
        self
    }

    /// Takes an upload slot, or answers 503 when every slot is busy.
    pub fn slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::unavailable("too many uploads in progress; retry in a few seconds")
        })
    }

    /// Called after a commit that wrote outbox rows.
    pub fn committed(&self) {
        if self.exit_after_commit {
            tracing::error!("fault injection: exiting between the commit and the publish");
            std::process::exit(86);
        }
        self.relay_wake.notify_one();
    }
}

/// The bytes every upload in flight may hold in the spool together. Each upload reserves its bytes as they
/// arrive, before writing them, and gives them back when its spool file is gone.
#[derive(Debug)]
pub struct SpoolBudget {
    /// The budget.
    pub limit: u64,
    used: AtomicU64,
}

/// Bytes one upload holds in the spool; returned to the budget when dropped.
#[derive(Debug)]
pub struct SpoolShare {
    budget: Arc<SpoolBudget>,
    bytes: u64,
}

impl SpoolBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        SpoolBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty share to grow as an upload's bytes arrive.
    pub fn share(self: &Arc<Self>) -> SpoolShare {
        SpoolShare {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

impl SpoolShare {
    /// Reserves `n` more bytes: 413 when this upload alone would pass the budget, 503 when the uploads in
    /// flight leave no room for it now.
    pub fn grow(&mut self, n: u64) -> Result<(), ApiError> {
        let b = &self.budget;
        if self.bytes + n > b.limit {
            return Err(ApiError::too_large(format!(
                "the upload is larger than the api's {}-byte upload spool",
                b.limit
            )));
        }
        b.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= b.limit).then_some(used + n)
            })
            .map_err(|_| {
                ApiError::unavailable(
                    "the upload spool is full with other uploads; retry in a few seconds",
                )
            })?;
        self.bytes += n;
        Ok(())
    }
}

impl Drop for SpoolShare {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Whether a `host:port` listen address only accepts local connections.
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    host.eq_ignore_ascii_case("localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spool_budget_is_shared_and_given_back() {
        let budget = Arc::new(SpoolBudget::new(100));
        let mut a = budget.share();
        a.grow(60).unwrap();
        let mut b = budget.share();
        assert_eq!(b.grow(50).unwrap_err().code, "unavailable", "no room now");
        assert_eq!(
            b.grow(101).unwrap_err().code,
            "too_large_bytes",
            "never fits"
        );
        b.grow(40).unwrap();
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("127.0.0.1:8080"));
        assert!(is_loopback("[::1]:8080"));
        assert!(is_loopback("localhost:80"));
        assert!(!is_loopback("0.0.0.0:8080"));
        assert!(!is_loopback("[::]:8080"));
        assert!(!is_loopback("10.0.0.5:8080"));
    }
}
