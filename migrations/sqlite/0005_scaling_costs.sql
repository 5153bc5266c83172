-- The class (queue) a worker took each job from, so the scaler counts open attempts per class without
-- inverting the routing table: the kind alone cannot tell a video's transcode (video) from its poster stage
-- (image), or audio (video) from an image. NULL on rows written by older workers.
ALTER TABLE job_attempts ADD COLUMN class TEXT;

-- Work whose size the producer knew before enqueueing it (a video's transcode: the probe's duration), so the
-- scaler sums expected seconds per job instead of counting jobs × an average. A row is written before the
-- job is published, marked when a worker starts it, and deleted when the job ends.
CREATE TABLE IF NOT EXISTS queued_work (
    job_id TEXT PRIMARY KEY,
    class TEXT NOT NULL,
    profile TEXT NOT NULL,
    media_seconds REAL NOT NULL,
    enqueued_at INTEGER NOT NULL,
    started_at INTEGER
);
CREATE INDEX IF NOT EXISTS queued_work_class ON queued_work (class);

-- Measured seconds of work per second of media, per class and profile (an EWMA of finished jobs).
CREATE TABLE IF NOT EXISTS media_cost_rates (
    class TEXT NOT NULL,
    profile TEXT NOT NULL,
    ewma_seconds REAL NOT NULL,
    samples INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (class, profile)
);

-- Jobs in flight per worker, written with each heartbeat, so `fleet` drains idle workers before busy ones.
ALTER TABLE worker_presence ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;
