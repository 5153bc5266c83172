//! The schema migrations, embedded in the binary.
//!
//! sqlx's `migrate!` macro would embed the same files, but it comes with `sqlx-macros`, which compiles a
//! second copy of sqlx, both drivers and the bundled SQLite for the build host: minutes of a cold release
//! build (BENCHMARKS.md, "Cold build"). The list below is what the macro would generate: each file's SQL,
//! its version and its description, with the checksum sqlx computes from the SQL, so databases migrated by
//! earlier builds see the same checksums. A test checks the list against the `migrations/` directories.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

/// `(file name, SQL)` of one engine's migrations, in version order.
type Files = &'static [(&'static str, &'static str)];

/// Both engines carry the same versions under the same file names.
macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        const POSTGRES: Files = &[$(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/", $name)))),*];
        const SQLITE: Files = &[$(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite/", $name)))),*];
    };
}

embed!(
    "0001_init.sql",
    "0002_uploads.sql",
    "0003_scaling.sql",
    "0004_reliability.sql",
    "0005_scaling_costs.sql",
    "0006_source_etag.sql",
    "0007_worker_version.sql",
    "0008_steering.sql",
    "0009_overrides_and_traces.sql",
);

/// The migrator of one engine.
pub fn migrator(postgres: bool) -> Migrator {
    let files = if postgres { POSTGRES } else { SQLITE };
    Migrator {
        migrations: Cow::Owned(
            files
                .iter()
                .map(|(name, sql)| migration(name, sql))
                .collect(),
        ),
        ..Migrator::DEFAULT
    }
}

/// One migration, read as sqlx reads a `<VERSION>_<DESCRIPTION>.sql` file.
fn migration(name: &str, sql: &'static str) -> Migration {
    let (version, rest) = name
        .split_once('_')
        .expect("migration file names are VERSION_DESCRIPTION.sql");
    let version: i64 = version.parse().expect("migration versions are integers");
    let description = rest.trim_end_matches(".sql").replace('_', " ");
    let no_tx = sql.starts_with("-- no-transaction");
    Migration::new(
        version,
        Cow::Owned(description),
        MigrationType::Simple,
        Cow::Borrowed(sql),
        no_tx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_disk(engine: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(engine);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        for (engine, files) in [("postgres", POSTGRES), ("sqlite", SQLITE)] {
            let embedded: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
            assert_eq!(
                embedded,
                on_disk(engine),
                "{engine}: add new files to src/db/migrations.rs"
            );
        }
    }

    #[test]
    fn migrations_read_as_sqlx_reads_files() {
        let m = migrator(false);
        let first = &m.migrations[0];
        assert_eq!(first.version, 1);
        assert_eq!(first.description, "init");
        assert_eq!(m.migrations[8].description, "overrides and traces");
        assert!(m.migrations.windows(2).all(|w| w[0].version < w[1].version));
        assert!(m.locking);
    }

    #[tokio::test]
    async fn processes_starting_together_on_a_fresh_sqlite_file_both_migrate() {
        // api and worker started at once on a new data dir: each has its own pool, as two processes would.
        for round in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            let url = crate::config::DbUrl::Sqlite(dir.path().join(format!("r{round}.db")));
            let (a, b) = tokio::join!(
                crate::db::Records::connect(&url, None),
                crate::db::Records::connect(&url, None)
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
            ra.unwrap();
            rb.unwrap();
        }
    }
}
