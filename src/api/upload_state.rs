//! What the upload, auth and webhook handlers share: settings, the relay's wake-up, the upload slots.

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
            exit_after_commit: std::env::var_os("MEDIAFLEET_FAULT_EXIT_AFTER_COMMIT").is_some(),
            settings,
        }
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
    use super::is_loopback;

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
