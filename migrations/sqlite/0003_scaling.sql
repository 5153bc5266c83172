-- Scaling: the measured cost of one job per class (an EWMA of finished jobs' wall-clock seconds), and which
-- workers are alive for which class (heartbeats), so a scaler without its own children can tell
-- current_workers and capability routing can tell whether any capable worker exists.
CREATE TABLE IF NOT EXISTS class_throughput (
    class TEXT PRIMARY KEY,
    ewma_seconds REAL NOT NULL,
    samples INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS worker_presence (
    worker_id TEXT NOT NULL,
    class TEXT NOT NULL,
    capabilities TEXT NOT NULL DEFAULT '',
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (worker_id, class)
);
CREATE INDEX IF NOT EXISTS worker_presence_class ON worker_presence (class, seen_at);
