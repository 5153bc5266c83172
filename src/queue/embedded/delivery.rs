//! A leased embedded message and how it ends: every operation is guarded by the lease token.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::SqlitePool;

use super::{err, ms, now_ms};
use crate::queue::{Delivery, QueueError};

/// A leased embedded message.
pub(super) struct EmbeddedDelivery {
    pub(super) pool: SqlitePool,
    pub(super) id: i64,
    pub(super) body: Vec<u8>,
    pub(super) receive_count: i64,
    pub(super) token: String,
    /// The message's class (whose receivers a release wakes).
    pub(super) class: String,
    pub(super) published: super::Wakers,
}

impl EmbeddedDelivery {
    /// Runs a lease-guarded update; a lost lease is an error, so the caller knows its outcome did not count.
    async fn guarded<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<(), QueueError> {
        let n = q.execute(&self.pool).await.map_err(err)?.rows_affected();
        if n == 0 {
            return Err(QueueError::Backend(format!(
                "lease of message {} was lost (expired and taken by another consumer)",
                self.id
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Delivery for EmbeddedDelivery {
    fn body(&self) -> &[u8] {
        &self.body
    }

    fn delivery_count(&self) -> u32 {
        u32::try_from(self.receive_count).unwrap_or(u32::MAX)
    }

    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        let q = sqlx::query("DELETE FROM queue_messages WHERE id = $1 AND lease_token = $2")
            .bind(self.id)
            .bind(&self.token);
        self.guarded(q).await
    }

    async fn retry_after(
        self: Box<Self>,
        delay: Duration,
        body: Vec<u8>,
    ) -> Result<(), QueueError> {
        // Our own attempt count lives in the new body, so the broker-side receive count starts over.
        let q = sqlx::query(
            "UPDATE queue_messages SET body = $3, visible_at = $4, lease_token = NULL, delayed = 1, \
             receive_count = 0 WHERE id = $1 AND lease_token = $2",
        )
        .bind(self.id)
        .bind(&self.token)
        .bind(body)
        .bind(now_ms() + ms(delay));
        self.guarded(q).await
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), QueueError> {
        let q = sqlx::query(
            "UPDATE queue_messages SET state = 'dead', dead_reason = $3, dead_at = $4, lease_token = NULL \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(self.id)
        .bind(&self.token)
        .bind(reason)
        .bind(now_ms());
        self.guarded(q).await
    }

    async fn release(self: Box<Self>) -> Result<(), QueueError> {
        let q = sqlx::query(
            // A hand-back is not a failed delivery: the receive count goes back to what it was.
            "UPDATE queue_messages SET visible_at = $3, lease_token = NULL, \
             receive_count = MAX(receive_count - 1, 0) WHERE id = $1 AND lease_token = $2",
        )
        .bind(self.id)
        .bind(&self.token)
        .bind(now_ms());
        self.guarded(q).await?;
        self.published.wake(&self.class);
        Ok(())
    }

    async fn extend_lease(&self, lease: Duration) -> Result<(), QueueError> {
        let q = sqlx::query(
            "UPDATE queue_messages SET visible_at = $3 WHERE id = $1 AND lease_token = $2",
        )
        .bind(self.id)
        .bind(&self.token)
        .bind(now_ms() + ms(lease));
        self.guarded(q).await
    }
}
