//! Start-up of the upload side of `api` and `serve`: the outbox relay and the auth announcement.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::AppState;
use crate::config::Settings;
use crate::relay::Relay;

/// Says at start-up whether the api needs API keys, and spawns the relay.
pub(super) fn start(
    s: &Settings,
    state: &AppState,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    if state.uploads.require_keys {
        info!(listen = %s.listen, "API keys are required (Authorization: Bearer …); manage them with `mediafleet ops keys`");
    } else {
        warn!(listen = %s.listen, "the api is OPEN (no API keys) because it listens on a loopback address; \
              set [auth] require_keys = true or listen elsewhere to require keys");
    }
    let relay = Relay {
        records: state.records.clone(),
        queue: state.queue.clone(),
        store: state.store.clone(),
        interval: s.uploads.relay_interval,
        wake: Arc::clone(&state.uploads.relay_wake),
        webhook_url: s.uploads.webhook_url.clone(),
        webhooks_enabled: s.uploads.webhook_secret.is_some(),
    };
    tokio::spawn(relay.run(shutdown))
}
