-- Media: one row per upload. `version` grows with every write, so caches and racing writers can tell
-- newer from older. Times are Unix milliseconds (portable between Postgres and SQLite).
CREATE TABLE IF NOT EXISTS media (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    profile TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    source_key TEXT NOT NULL,
    filename TEXT,
    content_type TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    external_id TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    blurhash TEXT,
    thumbhash TEXT,
    progress REAL NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 1,
    processing_deadline INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS media_status_deadline ON media (status, processing_deadline);
CREATE INDEX IF NOT EXISTS media_external_id ON media (external_id);
CREATE INDEX IF NOT EXISTS media_created ON media (created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS renditions (
    media_id TEXT NOT NULL REFERENCES media(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    bytes INTEGER NOT NULL,
    duration_seconds REAL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (media_id, name)
);

CREATE TABLE IF NOT EXISTS job_attempts (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    media_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    worker TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    outcome TEXT,
    error_code TEXT,
    error_message TEXT,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX IF NOT EXISTS job_attempts_media ON job_attempts (media_id);
