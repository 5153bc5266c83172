-- Uploads for real apps: transactional outbox, direct-to-S3 uploads, API keys, idempotency, webhooks.

-- Jobs waiting to be published. A row is written in the same transaction as the state change it announces;
-- the relay publishes it (with confirms), then sets `sent_at`. `claimed_until` is a lease, so a relay that
-- dies mid-publish hands its rows back, and several relays can run at once.
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    class TEXT NOT NULL,
    body TEXT NOT NULL,
    media_id TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    available_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (available_at) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- Direct-to-S3 uploads, webhooks and the notify sweep.
ALTER TABLE media ADD COLUMN callback_url TEXT;
ALTER TABLE media ADD COLUMN upload_id TEXT;
ALTER TABLE media ADD COLUMN upload_expires_at BIGINT;
ALTER TABLE media ADD COLUMN upload_completed_at BIGINT;
ALTER TABLE media ADD COLUMN notified_version BIGINT NOT NULL DEFAULT 0;
-- Media that existed before webhooks were announced already.
UPDATE media SET notified_version = version;
CREATE INDEX IF NOT EXISTS media_notify_pending ON media (updated_at)
    WHERE notified_version < version AND status IN ('ready', 'failed');
CREATE INDEX IF NOT EXISTS media_upload_expiry ON media (upload_expires_at) WHERE status = 'uploading';

-- API keys: only a SHA-256 of the (high-entropy, random) key is stored.
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

-- Idempotency-Key: one row per (caller, key), written in the transaction that creates the media.
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    media_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
