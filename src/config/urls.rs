//! Backend URLs: parsed once, with one-line errors that name the flag and the accepted forms.

use std::path::{Path, PathBuf};

use url::Url;

use super::ConfigError;

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
    /// A memcached pool (`memcached://host:11211[,host2:11211…]`), in the order given: keys are spread with
    /// libmemcached's weighted ketama, like PHP's `Memcached` with `OPT_LIBKETAMA_COMPATIBLE`.
    Memcached(Vec<MemcachedServer>),
}

/// One server of a memcached pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedServer {
    /// Host name or IP address as written (IPv6 without brackets). It is part of the ketama points, so it
    /// must be spelled exactly as the PHP side passes it to `addServer`.
    pub host: String,
    /// TCP port (default 11211).
    pub port: u16,
}

impl MemcachedServer {
    /// `host:port` for connecting (`[v6]:port` for IPv6).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

const QUEUE_FORMS: &str =
    "amqp://user:pass@host:5672/vhost, sqs://?endpoint=http://127.0.0.1:5055&region=us-east-1, embedded";
const STORAGE_FORMS: &str = "s3://BUCKET?endpoint=…&region=…&path_style=true, file:///abs/dir";
const DB_FORMS: &str = "postgres://user@host:5432/db, sqlite:///abs/file.db";
const CACHE_FORMS: &str = "redis://host:6379/0, memcached://host:11211[,host2:11211,…], none";

fn bad(flag: &str, value: &str, forms: &str, why: &str) -> ConfigError {
    ConfigError::new(flag, format!("{why} {value:?}; accepted forms: {forms}"))
}

impl QueueUrl {
    /// Parses `--queue`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
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
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
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
    pub fn parse(flag: &str, s: &str) -> Result<Self, ConfigError> {
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
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let s = s.trim();
        if s == "none" || s.is_empty() {
            return Ok(CacheUrl::None);
        }
        if s.starts_with("redis://") || s.starts_with("rediss://") {
            Url::parse(s).map_err(|_| bad("--cache", s, CACHE_FORMS, "not a URL:"))?;
            return Ok(CacheUrl::Redis(s.to_owned()));
        }
        if let Some(list) = s.strip_prefix("memcached://") {
            return parse_memcached(s, list).map(CacheUrl::Memcached);
        }
        Err(bad("--cache", s, CACHE_FORMS, "unsupported cache URL"))
    }
}

/// `host[:port],host[:port]…` after `memcached://` (an optional trailing `/` is allowed; no user, path or
/// query: memcached has no database numbers and this client no options in the URL).
fn parse_memcached(whole: &str, list: &str) -> Result<Vec<MemcachedServer>, ConfigError> {
    let list = list.strip_suffix('/').unwrap_or(list);
    let mut out: Vec<MemcachedServer> = Vec::new();
    for part in list.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(bad("--cache", whole, CACHE_FORMS, "empty server in"));
        }
        if part.contains(['/', '?', '@', '#']) || part.chars().any(char::is_whitespace) {
            return Err(bad(
                "--cache",
                whole,
                CACHE_FORMS,
                "memcached servers are host:port, got",
            ));
        }
        let (host, port) = if let Some(rest) = part.strip_prefix('[') {
            let (h, tail) = rest
                .split_once(']')
                .ok_or_else(|| bad("--cache", whole, CACHE_FORMS, "unclosed [ in"))?;
            (h, tail.strip_prefix(':'))
        } else {
            match part.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                Some(_) => {
                    return Err(bad(
                        "--cache",
                        whole,
                        CACHE_FORMS,
                        "IPv6 hosts need [brackets] in",
                    ))
                }
                None => (part, None),
            }
        };
        let port = match port {
            None => 11211,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("--cache", whole, CACHE_FORMS, "bad port in"))?,
        };
        if host.is_empty() {
            return Err(bad("--cache", whole, CACHE_FORMS, "host missing in"));
        }
        let server = MemcachedServer {
            host: host.to_owned(),
            port,
        };
        if out.contains(&server) {
            return Err(bad(
                "--cache",
                whole,
                CACHE_FORMS,
                "a server is listed twice in",
            ));
        }
        out.push(server);
    }
    Ok(out)
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
        assert_eq!(err.setting, "--queue");
        let err = err.to_string();
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
            .to_string()
            .starts_with("--storage:"));
        assert!(StorageUrl::parse("ftp://x").is_err());
        assert_eq!(
            DbUrl::parse("--db", "sqlite:///tmp/x.db"),
            Ok(DbUrl::Sqlite("/tmp/x.db".into()))
        );
        assert!(DbUrl::parse("--db", "sqlite://rel.db").is_err());
        assert!(DbUrl::parse("--db", "mysql://x")
            .unwrap_err()
            .to_string()
            .starts_with("--db:"));
        assert_eq!(CacheUrl::parse("none"), Ok(CacheUrl::None));
        assert!(CacheUrl::parse("memcache://x").is_err());
    }

    #[test]
    fn memcached_urls() {
        let m = |h: &str, port| MemcachedServer {
            host: h.into(),
            port,
        };
        assert_eq!(
            CacheUrl::parse("memcached://127.0.0.1:11211"),
            Ok(CacheUrl::Memcached(vec![m("127.0.0.1", 11211)]))
        );
        assert_eq!(
            CacheUrl::parse("memcached://cache-a,cache-b:11212,[::1]:11213/"),
            Ok(CacheUrl::Memcached(vec![
                m("cache-a", 11211),
                m("cache-b", 11212),
                m("::1", 11213)
            ]))
        );
        assert_eq!(m("::1", 11213).addr(), "[::1]:11213");
        for bad in [
            "memcached://",
            "memcached://a,,b",
            "memcached://a:0",
            "memcached://a:x",
            "memcached://a:1,a:1",
            "memcached://u@a:1",
            "memcached://a:1/0",
            "memcached://::1",
        ] {
            let err = CacheUrl::parse(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("--cache:") && err.contains("memcached://") && !err.contains('\n'),
                "{bad}: {err}"
            );
        }
    }
}
