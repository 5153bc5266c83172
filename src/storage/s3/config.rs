//! `s3://BUCKET?endpoint=…&region=…&path_style=true` → [`S3Config`].

/// 16 MiB: at or above this, `put_file` uploads in parts.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// 8 MiB parts.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// S3's smallest part (all but the last).
pub(super) const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// What [`super::S3Store::connect`] needs. Credentials are not here: they come from the standard AWS chain
/// (env, profile, SSO, instance role).
#[derive(Debug, Clone, PartialEq)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint override (`http://127.0.0.1:5055` for moto, MinIO, R2…); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region; `None` takes the AWS chain's, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub path_style: bool,
    /// Files of at least this many bytes are uploaded in parts.
    pub multipart_threshold: u64,
    /// Part size for multipart uploads (at least 5 MiB; raised when a file would need over 10,000 parts).
    pub part_size: u64,
    /// Longest one request attempt may take until its response (a `PutObject` or one part's upload
    /// included); a hung S3 call fails as unavailable after this instead of holding a job slot forever.
    pub timeout: std::time::Duration,
    /// Longest wait for the next bytes of a download body once the response has begun.
    pub stall_timeout: std::time::Duration,
}

/// Default [`S3Config::timeout`]: an 8 MiB part at 1 MiB/s with room to spare.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Default [`S3Config::stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl S3Config {
    /// Defaults for `bucket`: AWS endpoint and region chain, virtual-host addressing, 16 MiB / 8 MiB.
    pub fn new(bucket: &str) -> Self {
        S3Config {
            bucket: bucket.to_owned(),
            endpoint: None,
            region: None,
            path_style: false,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            timeout: DEFAULT_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }

    /// Parses `s3://BUCKET?endpoint=…&region=…&path_style=true[&multipart_threshold=N&part_size=N]`.
    /// With an `endpoint` and no `path_style`, path style is on (S3-compatible servers rarely resolve
    /// bucket subdomains).
    pub fn from_url(url: &url::Url) -> Result<S3Config, String> {
        if url.scheme() != "s3" {
            return Err(format!("storage url {url}: expected s3://BUCKET?…"));
        }
        let bucket = url.host_str().unwrap_or_default();
        if bucket.len() < 3 || !url.path().trim_matches('/').is_empty() {
            return Err(format!(
                "storage url {url}: expected s3://BUCKET (3+ characters, no path)"
            ));
        }
        let mut cfg = S3Config::new(bucket);
        let mut path_style = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "endpoint" => {
                    url::Url::parse(&v).map_err(|e| format!("storage url: endpoint {v:?}: {e}"))?;
                    cfg.endpoint = Some(v.into_owned());
                }
                "region" => cfg.region = Some(v.into_owned()),
                "path_style" => path_style = Some(parse_bool(&v)?),
                "multipart_threshold" => cfg.multipart_threshold = parse_bytes(&k, &v)?,
                "part_size" => cfg.part_size = parse_bytes(&k, &v)?,
                "timeout" => cfg.timeout = parse_duration(&k, &v)?,
                "stall_timeout" => cfg.stall_timeout = parse_duration(&k, &v)?,
                other => {
                    return Err(format!(
                        "storage url: unknown parameter {other:?} (known: endpoint, region, path_style, \
                         multipart_threshold, part_size, timeout, stall_timeout)"
                    ))
                }
            }
        }
        cfg.path_style = path_style.unwrap_or(cfg.endpoint.is_some());
        Ok(cfg)
    }
}

fn parse_duration(k: &str, v: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(v)
        .map_err(|e| format!("storage url: {k}={v:?}: expected a duration like 30s or 2m: {e}"))?;
    if d.is_zero() {
        return Err(format!("storage url: {k} must be more than zero"));
    }
    Ok(d)
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!(
            "storage url: path_style={v:?}: expected true or false"
        )),
    }
}

fn parse_bytes(k: &str, v: &str) -> Result<u64, String> {
    v.parse()
        .map_err(|_| format!("storage url: {k}={v:?}: expected a byte count"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<S3Config, String> {
        S3Config::from_url(&url::Url::parse(s).unwrap())
    }

    #[test]
    fn parses_bucket_and_options() {
        let c = parse("s3://media-bucket?endpoint=http://127.0.0.1:5055&region=eu-west-1").unwrap();
        assert_eq!(c.bucket, "media-bucket");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5055"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert!(
            c.path_style,
            "an endpoint implies path style unless told otherwise"
        );
        let c = parse("s3://media-bucket").unwrap();
        assert!(!c.path_style);
        assert_eq!(
            (c.multipart_threshold, c.part_size),
            (DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE)
        );
        let c = parse("s3://bkt?endpoint=http://h:1&path_style=false&part_size=6000000").unwrap();
        assert!(!c.path_style);
        assert_eq!(c.part_size, 6_000_000);
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "file:///x",
            "s3://ab",
            "s3://bucket/path",
            "s3://bucket?colour=red",
            "s3://bucket?path_style=maybe",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
