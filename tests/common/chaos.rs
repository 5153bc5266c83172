//! What the chaos tests count after a fault, and how their load is sent: uploads retried under one
//! `Idempotency-Key` until they are accepted, then **lost** (accepted, not ready), **duplicated** (a second
//! rendition set of one media) and **orphaned** (a stored version no rendition row points at), from the
//! fleet's database and its bucket.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use super::fleet::Fleet;
use super::*;

/// The chaos load's size: `CHAOS_UPLOADS` when set (to keep a run short), else the figure.
pub fn load(default: usize) -> usize {
    std::env::var("CHAOS_UPLOADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A value of the fleet's shared environment.
pub fn env_of(f: &Fleet, key: &str) -> String {
    f.env.iter().find(|(k, _)| k == key).unwrap().1.clone()
}

/// Processes (other than this test) whose command line mentions `needle`: media children of a worker of
/// this test carry paths under its data directory.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push((pid, cmd));
            }
        }
    }
    out
}

/// Media children under `needle` whose parent is not `alive` and that are not dying: a worker's death sends its
/// children SIGKILL (`PR_SET_PDEATHSIG`) as it exits, but on a loaded machine a killed child can take a moment
/// to be scheduled and torn down, and until then it still shows its command line. So an orphan counts when,
/// at the first look, it has no SIGKILL pending (nothing will end it), or when it is still there `grace`
/// later. Each one counted is printed with its state and pending signals.
pub async fn outliving(
    needle: &str,
    alive: impl Fn(u32) -> bool,
    grace: Duration,
) -> Vec<(u32, String)> {
    let orphans = || {
        processes_mentioning(needle)
            .into_iter()
            .filter(|(p, _)| parent_of(*p).is_none_or(|pp| !alive(pp)))
            .collect::<Vec<_>>()
    };
    let mut counted: Vec<(u32, String)> = orphans()
        .into_iter()
        .filter(|(pid, _)| !dying(*pid))
        .collect();
    let until = Instant::now() + grace;
    loop {
        let left = orphans();
        if left.is_empty() || Instant::now() >= until {
            for o in left {
                if !counted.iter().any(|(p, _)| *p == o.0) {
                    counted.push(o);
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (pid, _) in &counted {
        eprintln!(
            "media child {pid} outlived its worker: {}",
            status_line(*pid)
        );
    }
    counted
}

/// `State`, `PPid`, `SigPnd` and `ShdPnd` of `/proc/PID/status`, on one line.
fn status_line(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter(|l| {
            ["State:", "PPid:", "SigPnd:", "ShdPnd:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `pid` is gone, a zombie, or has SIGKILL pending (for itself or its thread group).
fn dying(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    };
    let kill_pending =
        |mask: String| u64::from_str_radix(&mask, 16).is_ok_and(|m| m & (1 << 8) != 0);
    field("State:").starts_with(['Z', 'X'])
        || kill_pending(field("SigPnd:"))
        || kill_pending(field("ShdPnd:"))
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Media children under data directory `needle` that are working on a job (not warm children waiting for
/// one; see `common::busy_media_child`).
pub fn busy_children(needle: &str) -> Vec<(u32, String)> {
    processes_mentioning(needle)
        .into_iter()
        .filter(|(pid, cmd)| super::busy_media_child(*pid, cmd, Path::new(needle)))
        .collect()
}

/// Job scratch directories under `root` (a worker's `scratch/`) that still hold a file. A worker keeps the
/// emptied directories of finished jobs for its next jobs (`runtime::jobdirs`); only files are a job's
/// leftovers.
pub fn leftover_jobs(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(owners) = std::fs::read_dir(root) else {
        return out;
    };
    for owner in owners.flatten() {
        if let Ok(jobs) = std::fs::read_dir(owner.path()) {
            out.extend(
                jobs.flatten()
                    .map(|j| j.path())
                    .filter(|p| p.display().to_string().contains("job-") && holds_a_file(p))
                    .map(|p| p.display().to_string()),
            );
        }
    }
    out
}

fn holds_a_file(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| match e.file_type() {
        Ok(t) if t.is_dir() => holds_a_file(&e.path()),
        _ => true,
    })
}

/// Every key under `prefix` in `bucket` on moto.
pub async fn s3_keys(bucket: &str, prefix: &str) -> Vec<String> {
    aws_env();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(mediafleet::aws_http::https_client())
        .endpoint_url(s3_endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = out.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return keys;
        }
    }
}

/// Posts `path` as an upload with `Idempotency-Key: key`, again while the answer is not 202 (a server
/// restarting, an outage) until `within` has passed. Returns the media id and how many tries were refused.
pub async fn upload_until_accepted(
    base: &str,
    path: &Path,
    name: &str,
    key: &str,
    within: Duration,
) -> (String, usize) {
    let bytes = std::fs::read(path).unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let deadline = Instant::now() + within;
    let mut refused = 0;
    loop {
        let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        let answer = client
            .post(format!("{base}/v1/uploads"))
            .header("idempotency-key", key)
            .multipart(form)
            .send()
            .await;
        let last = match answer {
            Ok(r) if r.status().as_u16() == 202 => {
                let b: serde_json::Value = r.json().await.unwrap();
                return (b["id"].as_str().unwrap().to_owned(), refused);
            }
            Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => e.to_string(),
        };
        refused += 1;
        assert!(
            Instant::now() < deadline,
            "{name} was not accepted within {within:?}; last answer: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sends `n` uploads of `files` (round robin) from `senders` concurrent clients, each retried until accepted.
/// Returns the media ids and how many tries were refused.
pub async fn send_uploads(
    base: &str,
    files: &[&str],
    n: usize,
    senders: usize,
    within: Duration,
) -> (Vec<String>, usize) {
    let run = unique("k");
    let mut set = tokio::task::JoinSet::new();
    for s in 0..senders {
        let base = base.to_owned();
        let files: Vec<String> = files.iter().map(|f| (*f).to_owned()).collect();
        let run = run.clone();
        set.spawn(async move {
            let mut out = (Vec::new(), 0);
            for i in (s..n).step_by(senders) {
                let name = &files[i % files.len()];
                let file_name = format!("{i}-{}", name.replace('/', "-"));
                let (id, refused) = upload_until_accepted(
                    &base,
                    &fixture(name),
                    &file_name,
                    &format!("{run}-{i}"),
                    within,
                )
                .await;
                out.0.push(id);
                out.1 += refused;
            }
            out
        });
    }
    let (mut ids, mut refused) = (Vec::new(), 0);
    while let Some(r) = set.join_next().await {
        let (i, n) = r.unwrap();
        ids.extend(i);
        refused += n;
    }
    (ids, refused)
}

/// The chaos counts of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub lost: usize,
    pub duplicated: usize,
    pub orphaned: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lost={} duplicated={} orphaned={}",
            self.lost, self.duplicated, self.orphaned
        )
    }
}

impl Counts {
    /// Asserts all three are zero.
    pub fn assert_zero(&self) {
        assert_eq!(*self, Counts::default(), "{self}");
    }
}

/// Waits up to `within` for each of `ids` to end, and counts: not `ready` is lost; under each media's prefix in
/// `bucket`, a stored version no rendition row points at is orphaned, and a second version of one rendition
/// name is duplicated.
pub async fn count(f: &Fleet, bucket: &str, ids: &[String], within: Duration) -> Counts {
    let mut c = Counts::default();
    let deadline = Instant::now() + within;
    for id in ids {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let m = wait_final(&f.base, id, left).await;
        if m["status"] != "ready" {
            c.lost += 1;
            eprintln!("not ready: {m}");
        }
    }
    let db = env_of(f, "MEDIAFLEET_DB");
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&db)
        .await
        .unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT media_id, key FROM renditions")
        .fetch_all(&mut pg)
        .await
        .unwrap();
    let prefix = f.prefix.clone();
    let version_of = |key: &str, id: &str| -> Option<(String, String)> {
        let rest = key.strip_prefix(&format!("{prefix}/media/{id}/"))?;
        let mut seg = rest.split('/');
        Some((seg.next()?.to_owned(), seg.next()?.to_owned()))
    };
    let mut served: HashMap<&str, BTreeSet<(String, String)>> = HashMap::new();
    for (id, key) in &rows {
        if let Some(v) = version_of(key, id) {
            served.entry(id.as_str()).or_default().insert(v);
        }
    }
    // One listing of the whole media prefix, split per media.
    let keys = s3_keys(bucket, &format!("{prefix}/media/")).await;
    for id in ids {
        let stored: BTreeSet<_> = keys.iter().filter_map(|k| version_of(k, id)).collect();
        let want = served.get(id.as_str()).cloned().unwrap_or_default();
        c.orphaned += stored.difference(&want).count();
        let names: BTreeSet<_> = stored.iter().map(|(n, _)| n.clone()).collect();
        c.duplicated += stored.len() - names.len();
        if stored != want {
            eprintln!("{id}: stored {stored:?}, served {want:?}");
        }
    }
    c
}

/// Still images of several formats, the chaos tests' usual load.
pub const IMAGES: [&str; 7] = [
    "photo.jpg",
    "orientation-6.jpg",
    "palette.png",
    "alpha.png",
    "cmyk.jpg",
    "lossy.webp",
    "animated.gif",
];

/// Rows of the fleet's `media` table: how many uploads the api has accepted so far.
pub async fn media_rows(f: &Fleet) -> i64 {
    let db = env_of(f, "MEDIAFLEET_DB");
    let Ok(mut pg) = <sqlx::PgConnection as sqlx::Connection>::connect(&db).await else {
        return 0;
    };
    sqlx::query_scalar("SELECT COUNT(*) FROM media")
        .fetch_one(&mut pg)
        .await
        .unwrap_or(0)
}

/// Waits until the api has accepted `n` uploads (the moment to strike), at most `within`.
pub async fn wait_accepted(f: &Fleet, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while media_rows(f).await < n as i64 {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} uploads accepted within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `media.process` attempts past the first, per the fleet's `job_attempts`: what the fault cost the media.
pub async fn attempts_spent(f: &Fleet) -> i64 {
    let db = env_of(f, "MEDIAFLEET_DB");
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&db)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_attempts WHERE kind = 'media.process' AND attempt > 1",
    )
    .fetch_one(&mut pg)
    .await
    .unwrap()
}
