-- Outbox rows that keep failing for a reason of their own (not a broker outage) are parked with their last
-- error instead of being retried forever; `ops` and the metrics show them.
ALTER TABLE outbox ADD COLUMN parked_at INTEGER;
-- The stage a processing video has reached: `transcode` once its poster stage handed over (in the same
-- transaction as the transcode job's outbox row), so a redelivered poster job enqueues nothing twice.
ALTER TABLE media ADD COLUMN stage TEXT;
