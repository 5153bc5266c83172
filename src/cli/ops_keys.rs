//! `mediafleet ops keys create|list|revoke`: API keys. The key is printed once, at creation; only its
//! SHA-256 is stored. Output is JSON on stdout.

use anyhow::Context;
use clap::Subcommand;

use crate::config::Settings;

/// `ops keys` actions.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key; prints it once (store it in the app's secrets).
    Create {
        /// A label, e.g. the app that uses it.
        #[arg(long)]
        name: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id or name; it stops working at once.
    Revoke {
        /// Key id or name.
        id_or_name: String,
    },
}

/// Runs an `ops keys` action.
pub async fn run(settings: Settings, action: KeysAction) -> anyhow::Result<()> {
    let records = crate::connect::records(&settings).await?;
    let out = match action {
        KeysAction::Create { name } => {
            let (key, secret) = records.create_key(&name).await?;
            serde_json::json!({"id": key.id, "name": key.name, "key": secret, "hint": key.hint})
        }
        KeysAction::List => serde_json::json!({"keys": records.list_keys().await?}),
        KeysAction::Revoke { id_or_name } => {
            let n = records.revoke_key(&id_or_name).await?;
            if n == 0 {
                anyhow::bail!("no live key has the id or name {id_or_name:?}");
            }
            serde_json::json!({"revoked": n})
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&out).context("serialising the answer")?
    );
    Ok(())
}
