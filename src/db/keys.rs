//! API keys. Only a SHA-256 of each key is stored: the keys are 256-bit random strings, so a fast hash is
//! enough (a slow password hash protects low-entropy secrets, which these are not) and lookups stay one
//! indexed read.

use super::bind::BindExt;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{now_ms, DbError, Records};

/// A stored key, as `ops keys list` shows it (never the key itself).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiKey {
    /// Key id (also the idempotency scope of its requests).
    pub id: String,
    /// Operator's label.
    pub name: String,
    /// First characters of the key, to tell keys apart.
    pub hint: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms of the last authenticated request, if any.
    pub last_used_at: Option<i64>,
    /// Unix ms; revoked keys authenticate nothing.
    pub revoked_at: Option<i64>,
}

/// The stored form of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn row_to_key(r: &sqlx::any::AnyRow) -> Result<ApiKey, sqlx::Error> {
    Ok(ApiKey {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        hint: r.try_get("hint")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

impl Records {
    /// Creates a key named `name`; returns its record and the key itself (shown once, never stored).
    pub async fn create_key(&self, name: &str) -> Result<(ApiKey, String), DbError> {
        use rand::RngCore;
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let secret = format!("mfk_{}", hex::encode(raw));
        let key = ApiKey {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            hint: secret[..12].to_owned(),
            created_at: now_ms(),
            last_used_at: None,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, name, hash, hint, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .arg(&key.id)
        .arg(&key.name)
        .arg(hash_key(&secret))
        .arg(&key.hint)
        .arg(key.created_at)
        .execute(&self.write)
        .await?;
        Ok((key, secret))
    }

    /// Every key, newest first.
    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, DbError> {
        let rows = sqlx::query(
            "SELECT id, name, hint, created_at, last_used_at, revoked_at FROM api_keys \
             ORDER BY created_at DESC",
        )
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(row_to_key)
            .collect::<Result<_, _>>()
            .map_err(DbError::from)
    }

    /// Revokes a key by id or name; returns how many keys were revoked.
    pub async fn revoke_key(&self, id_or_name: &str) -> Result<u64, DbError> {
        Ok(sqlx::query(
            "UPDATE api_keys SET revoked_at = $2 WHERE (id = $1 OR name = $1) AND revoked_at IS NULL",
        )
        .arg(id_or_name)
        .arg(now_ms())
        .execute(&self.write)
        .await?
        .rows_affected())
    }

    /// The live key whose secret is `secret`, if any.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>, DbError> {
        let row = sqlx::query(
            "SELECT id, name, hint, created_at, last_used_at, revoked_at FROM api_keys \
             WHERE hash = $1 AND revoked_at IS NULL",
        )
        .arg(hash_key(secret))
        // The primary, so a revocation takes effect at once even with a lagging replica.
        .fetch_optional(&self.write)
        .await?;
        let key = row.as_ref().map(row_to_key).transpose()?;
        if let Some(k) = &key {
            // Coarse last-use stamp (at most one write a minute per key), best effort.
            let now = now_ms();
            if k.last_used_at.is_none_or(|t| now - t > 60_000) {
                let _ = sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
                    .arg(&k.id)
                    .arg(now)
                    .execute(&self.write)
                    .await;
            }
        }
        Ok(key)
    }
}
