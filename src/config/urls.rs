//! Backend URLs: parsed once, with one-line errors that name the flag and the accepted forms.

use std::path::{Path, PathBuf};

use url::Url;

/// Where jobs go.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueUrl {
    /// SQLite-backed queue under the data dir.
    Embedded,
    /// RabbitMQ (`amqp://` or `amqps://`).
    Amqp(String),
    /// Amazon SQS or a compatible server (`sqs://?endpoint=…&region=…`).
    Sqs(Url),
}

/// Where originals and renditions go.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageUrl {
    /// A local directory.
    Local(PathBuf),
    /// An S3 bucket (`s3://BUCKET?endpoint=…&region=…&path_style=true`).
    S3(Url),
}

/// Which database.
#[derive(Debug, Clone, PartialEq)]
pub enum DbUrl {
    /// PostgreSQL.
    Postgres(String),
    /// A SQLite file.
    Sqlite(PathBuf),
}

/// Which cache.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheUrl {
    /// No cache.
    None,
    /// Redis.
    Redis(String),
}

const QUEUE_FORMS: &str =
    "amqp://user:pass@host:5672/vhost, sqs://?endpoint=http://127.0.0.1:5055&region=us-east-1, embedded";
const STORAGE_FORMS: &str = "s3://BUCKET?endpoint=…&region=…&path_style=true, file:///abs/dir";
const DB_FORMS: &str = "postgres://user@host:5432/db, sqlite:///abs/file.db";
const CACHE_FORMS: &str = "redis://host:6379/0, none";

fn bad(flag: &str, value: &str, forms: &str, why: &str) -> String {
    format!("{flag}: {why} {value:?}; accepted forms: {forms}")
}

impl QueueUrl {
    /// Parses `--queue`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "embedded" {
            return Ok(QueueUrl::Embedded);
        }
        let url = Url::parse(s).map_err(|_| bad("--queue", s, QUEUE_FORMS, "not a URL:"))?;
        match url.scheme() {
            "amqp" | "amqps" if url.host_str().is_some() => Ok(QueueUrl::Amqp(s.to_owned())),
            "sqs" => Ok(QueueUrl::Sqs(url)),
            _ => Err(bad("--queue", s, QUEUE_FORMS, "unsupported queue URL")),
        }
    }
}

impl StorageUrl {
    /// Parses `--storage`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let url = Url::parse(s).map_err(|_| bad("--storage", s, STORAGE_FORMS, "not a URL:"))?;
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|_| bad("--storage", s, STORAGE_FORMS, "not an absolute path:"))?;
                Ok(StorageUrl::Local(path))
            }
            "s3" if url.host_str().is_some_and(|b| b.len() >= 3) => Ok(StorageUrl::S3(url)),
            "s3" => Err(bad(
                "--storage",
                s,
                STORAGE_FORMS,
                "bucket name (3+ characters) missing in",
            )),
            _ => Err(bad(
                "--storage",
                s,
                STORAGE_FORMS,
                "unsupported storage URL",
            )),
        }
    }

    /// The default: `objects/` under the data dir.
    pub fn default_for(data_dir: &Path) -> Self {
        StorageUrl::Local(data_dir.join("objects"))
    }
}

impl DbUrl {
    /// Parses `--db` (or `--db-read`).
    pub fn parse(flag: &str, s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Url::parse(s).map_err(|_| bad(flag, s, DB_FORMS, "not a URL:"))?;
            return Ok(DbUrl::Postgres(s.to_owned()));
        }
        if let Some(path) = s.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.starts_with('/') {
                return Ok(DbUrl::Sqlite(PathBuf::from(path)));
            }
            return Err(bad(flag, s, DB_FORMS, "SQLite needs an absolute path in"));
        }
        Err(bad(flag, s, DB_FORMS, "unsupported database URL"))
    }

    /// The default: `mediafleet.db` under the data dir.
    pub fn default_for(data_dir: &Path) -> Self {
        DbUrl::Sqlite(data_dir.join("mediafleet.db"))
    }

    /// A URL sqlx understands.
    pub fn sqlx_url(&self) -> String {
        match self {
            DbUrl::Postgres(s) => s.clone(),
            DbUrl::Sqlite(p) => format!("sqlite://{}?mode=rwc", p.display()),
        }
    }
}

impl CacheUrl {
    /// Parses `--cache`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "none" || s.is_empty() {
            return Ok(CacheUrl::None);
        }
        if s.starts_with("redis://") || s.starts_with("rediss://") {
            Url::parse(s).map_err(|_| bad("--cache", s, CACHE_FORMS, "not a URL:"))?;
            return Ok(CacheUrl::Redis(s.to_owned()));
        }
        Err(bad("--cache", s, CACHE_FORMS, "unsupported cache URL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls() {
        assert_eq!(QueueUrl::parse("embedded"), Ok(QueueUrl::Embedded));
        assert!(matches!(
            QueueUrl::parse("amqp://guest:guest@127.0.0.1:5672/%2f"),
            Ok(QueueUrl::Amqp(_))
        ));
        assert!(matches!(
            QueueUrl::parse("sqs://?endpoint=http://127.0.0.1:5055&region=us-east-1"),
            Ok(QueueUrl::Sqs(_))
        ));
        let err = QueueUrl::parse("kafka://x").unwrap_err();
        assert!(err.starts_with("--queue:") && err.contains("amqp://") && !err.contains('\n'));
    }

    #[test]
    fn storage_and_db_urls() {
        assert_eq!(
            StorageUrl::parse("file:///srv/media"),
            Ok(StorageUrl::Local("/srv/media".into()))
        );
        assert!(matches!(
            StorageUrl::parse("s3://bucket?endpoint=http://127.0.0.1:5055&path_style=true"),
            Ok(StorageUrl::S3(_))
        ));
        assert!(StorageUrl::parse("s3://b")
            .unwrap_err()
            .starts_with("--storage:"));
        assert!(StorageUrl::parse("ftp://x").is_err());
        assert_eq!(
            DbUrl::parse("--db", "sqlite:///tmp/x.db"),
            Ok(DbUrl::Sqlite("/tmp/x.db".into()))
        );
        assert!(DbUrl::parse("--db", "sqlite://rel.db").is_err());
        assert!(DbUrl::parse("--db", "mysql://x")
            .unwrap_err()
            .starts_with("--db:"));
        assert_eq!(CacheUrl::parse("none"), Ok(CacheUrl::None));
        assert!(CacheUrl::parse("memcache://x").is_err());
    }
}
