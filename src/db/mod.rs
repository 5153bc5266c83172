//! The database: media, renditions and job attempts, on Postgres or SQLite through one sqlx `Any` pool.
//!
//! SQL here is written once for both engines: `$N` placeholders, `ON CONFLICT … DO UPDATE`, `RETURNING`,
//! integers as BIGINT and times as Unix milliseconds. Every write is an idempotent upsert or a guarded
//! update (status may only move forward; `version` grows with every change).

mod attempts;
pub(crate) mod bind;
mod keys;
mod media;
mod migrations;
mod objects;
mod ops;
mod outbox;
mod overrides;
mod reprocess;
mod retention;
mod row;
mod steer;
mod uploads;
mod work;

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

pub use attempts::Attempt;
pub use keys::{hash_key, ApiKey};
pub use media::{MediaRow, NewMedia, RenditionRow};
pub use objects::{ScopePage, WarmScope};
pub use ops::{FailedCursor, FailedFilter, FailedMedia};
pub use outbox::{OutboxJob, OutboxRow};
pub use overrides::ScaleOverride;
pub use retention::Purged;
pub use steer::{cli_actor, AuditEntry, Pause};
pub use uploads::{IdempotencyClaim, Inserted, UploadExtra};
pub use work::{KnownWork, MediaRate};

use crate::config::DbUrl;

/// Database errors.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Connection lost, pool timed out, the server is down or shedding load: retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused the statement itself (bad SQL, a type or binary-format mismatch, a constraint):
    /// repeating it would fail the same way, so it is a bug to surface, never an outage to wait out.
    #[error("database rejected the statement: {0}")]
    Rejected(String),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(String),
    /// A row held something this build cannot read.
    #[error("database row invalid: {0}")]
    Invalid(String),
}

impl DbError {
    /// True when waiting and repeating the call may succeed (the database, not the statement, failed).
    pub fn is_transient(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if !server_side_transient(db.as_ref()) => {
                crate::scale::metrics::METRICS.db_rejected.inc();
                DbError::Rejected(e.to_string())
            }
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::Encode(_)
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnNotFound(_) => {
                crate::scale::metrics::METRICS.db_rejected.inc();
                DbError::Invalid(e.to_string())
            }
            _ => DbError::Unavailable(e.to_string()),
        }
    }
}

/// Whether an error the server sent is about its state (retry later) rather than the statement.
///
/// Postgres: SQLSTATE classes 08 (connection), 40 (serialization failure, deadlock), 53 (insufficient
/// resources), 57 (operator intervention: shutdown, cancel), 58 (system error), plus `55P03` (lock not
/// available) and `25006` (read-only transaction, as on a replica promoted away mid-failover). SQLite: the
/// primary result codes BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN and PROTOCOL.
fn server_side_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else {
        return false;
    };
    if let Ok(n) = code.parse::<i64>() {
        // SQLite reports its (extended) result code as a number; the low byte is the primary code.
        return matches!(n & 0xff, 5 | 6 | 7 | 10 | 13 | 14 | 15);
    }
    matches!(&code[..code.len().min(2)], "08" | "40" | "53" | "57" | "58")
        || code == "55P03"
        || code == "25006"
}

/// How much of a SQLite file (the records and the embedded queue) each connection maps instead of reading it
/// a page at a time.
pub const SQLITE_MMAP_BYTES: u64 = 256 * 1024 * 1024;

/// Waits for the exclusive lock that serialises the switch to WAL and the migrations of the SQLite file `db`
/// across processes; held until dropped.
async fn migration_lock(db: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>, DbError> {
    let mut name = db.as_os_str().to_owned();
    name.push(".migrate-lock");
    let failed =
        |e: String| DbError::Migrate(format!("migration lock {}: {e}", name.to_string_lossy()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .map_err(|e| failed(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e)
    })
    .await
    .map_err(|e| failed(e.to_string()))?
    .map_err(|e| failed(e.to_string()))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The database handle: a write pool and an optional read pool.
#[derive(Clone, Debug)]
pub struct Records {
    write: AnyPool,
    read: AnyPool,
    postgres: bool,
    /// The SQLite file, when the records are one (see [`Records::migrate`]).
    sqlite_file: Option<std::path::PathBuf>,
}

impl Records {
    /// Connects the write pool (and the read pool, if given).
    pub async fn connect(url: &DbUrl, read: Option<&DbUrl>) -> Result<Records, DbError> {
        sqlx::any::install_default_drivers();
        if let DbUrl::Sqlite(path) = url {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| DbError::Unavailable(e.to_string()))?;
            }
        }
        let write = Self::pool(url).await?;
        if let DbUrl::Sqlite(path) = url {
            // WAL lets api, worker and fleet processes share one file; busy_timeout makes writers queue.
            // Switching a new file to WAL takes an exclusive lock for which SQLite does not wait (two
            // processes starting together on a new data dir saw "database is locked"), so the switch is
            // made under the same file lock as the migrations; on a file already in WAL mode it is a no-op.
            let _lock = migration_lock(path).await?;
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&write)
                .await?;
        }
        let read = match read {
            Some(r) => Self::pool(r).await?,
            None => write.clone(),
        };
        Ok(Records {
            write,
            read,
            postgres: matches!(url, DbUrl::Postgres(_)),
            sqlite_file: match url {
                DbUrl::Sqlite(path) => Some(path.clone()),
                _ => None,
            },
        })
    }

    async fn pool(url: &DbUrl) -> Result<AnyPool, DbError> {
        let mut opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if let DbUrl::Sqlite(_) = url {
            // A connection to a local file cannot go stale the way a socket can, so the ping that sqlx
            // sends before handing out a pooled connection is a round trip to the connection's thread for
            // nothing: about one statement's cost on every query (Postgres keeps the check).
            opts = opts.test_before_acquire(false);
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    // Pages of the database file read through a shared mapping instead of a pread(2) each:
                    // in WAL mode every write by another connection empties this connection's page cache,
                    // and a job's dozen statements would read the same pages again and again.
                    sqlx::query(&format!("PRAGMA mmap_size = {SQLITE_MMAP_BYTES}"))
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        opts.max_connections(16)
            .connect(&url.sqlx_url())
            .await
            .map_err(|e| DbError::Unavailable(format!("cannot connect: {e}")))
    }

    /// Applies pending migrations. sqlx serialises migrators with an advisory lock on Postgres but takes none
    /// on SQLite, where processes sharing a data dir (`api` and `worker` started together) would both apply
    /// the same migration and one would fail; there an exclusive `flock` on `<file>.migrate-lock` does it.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let _lock = match &self.sqlite_file {
            Some(file) => Some(migration_lock(file).await?),
            None => None,
        };
        migrations::migrator(self.postgres)
            .run(&self.write)
            .await
            .map_err(|e| DbError::Migrate(e.to_string()))
    }

    /// Cheap check for readiness probes.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.write).await?;
        Ok(())
    }

    /// The write pool (for tests and ops).
    pub fn write_pool(&self) -> &AnyPool {
        &self.write
    }
}
