//! What the upload, auth and webhook handlers share: settings, the relay's wake-up, the upload slots.

use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::ApiError;
use crate::config::UploadSettings;
use crate::runtime::budget::{ByteBudget, Refusal, Share};
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
    pub spool: Arc<ByteBudget>,
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
            spool: ByteBudget::new(settings.spool_bytes.unwrap_or(u64::MAX)),
            auth_throttle: Arc::new(super::auth_throttle::AuthThrottle::new(
                settings.failed_auth_per_minute,
                settings.trust_forwarded_for,
            )),
            exit_after_commit: cfg!(feature = "fault-injection")
                && std::env::var_os("MEDIAFLEET_FAULT_EXIT_AFTER_COMMIT").is_some(),
            settings,
        }
    }

    /// Sizes the spool budget from the free space under `dir` when none was configured.
    pub fn with_spool_dir(mut self, dir: &std::path::Path) -> Self {
        self.spool = ByteBudget::for_dir(self.settings.spool_bytes, dir);
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
        #[cfg(feature = "fault-injection")]
        if self.exit_after_commit {
            tracing::error!("fault injection: exiting between the commit and the publish");
            std::process::exit(86);
        }
        self.relay_wake.notify_one();
    }
}

/// Reserves `n` more spool bytes for an upload: 413 when it alone would pass the budget, 503 when the uploads
/// in flight leave no room for it now.
pub fn grow_spool(share: &mut Share, n: u64) -> Result<(), ApiError> {
    share.grow(n).map_err(|r| match r {
        Refusal::NeverFits => ApiError::too_large(format!(
            "the upload is larger than the api's {}-byte upload spool",
            share.limit()
        )),
        Refusal::Full => ApiError::unavailable(
            "the upload spool is full with other uploads; retry in a few seconds",
        ),
    })
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
    fn spool_refusals_map_to_413_and_503() {
        let budget = ByteBudget::new(100);
        let mut a = budget.share();
        grow_spool(&mut a, 60).unwrap();
        let mut b = budget.share();
        assert_eq!(grow_spool(&mut b, 50).unwrap_err().code, "unavailable");
        assert_eq!(grow_spool(&mut b, 101).unwrap_err().code, "too_large_bytes");
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
