-- The build a worker runs, reported with its heartbeat, so `mediafleet ops workers` shows which versions are live
-- during a rolling upgrade.
ALTER TABLE worker_presence ADD COLUMN version TEXT;
