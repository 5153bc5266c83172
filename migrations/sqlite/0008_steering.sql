-- Operators steer the fleet: a paused class is not taken by any worker until it is resumed (`mediafleet ops
-- pause|resume`), and what operators and API keys change (deletes, replays, redrives, purges, pauses) is kept
-- in an audit log with the calling key or user.
CREATE TABLE IF NOT EXISTS class_pauses (
    class TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL,
    paused_by TEXT NOT NULL,
    reason TEXT
);

CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
