-- An operator's override of the scaler for one class (`mediafleet ops scale --class C --workers N [--for D]`):
-- every scaler (the `fleet` supervisor, the KEDA-facing `scaler`, `serve`) wants exactly `workers` for the
-- class until `until_ms` (NULL: until `ops scale --class C --auto` removes the row), within its max.
CREATE TABLE IF NOT EXISTS scale_overrides (
    class TEXT PRIMARY KEY,
    workers INTEGER NOT NULL,
    until_ms INTEGER,
    set_at INTEGER NOT NULL,
    set_by TEXT NOT NULL
);

-- The W3C trace context of the request that created a media, so the webhooks the relay announces for it later
-- join the upload's trace.
ALTER TABLE media ADD COLUMN traceparent TEXT;
