//! kill -9 under load: `api` + `worker` on RabbitMQ, moto S3 and Postgres; rounds of ten uploads (photos, PNGs,
//! a GIF and two videos whose transcodes run in media children), and the worker killed with SIGKILL ten times
//! while a media child runs, restarted each time. Then: no media child outlives its worker, every media is ready with one rendition set
//! (no object in storage that no rendition row points at), and no scratch is left behind. Prints
//! `lost=… duplicated=… orphaned=… stray_children=…`.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use common::fleet::{refs, start_fleet_with};
use common::*;

const UPLOADS: [&str; 10] = [
    "photo.jpg",
    "orientation-6.jpg",
    "palette.png",
    "alpha.png",
    "cmyk.jpg",
    "gps.jpg",
    "lossless.webp",
    "animated.gif",
    "clip.mp4",
    "av/clip-1080.mp4",
];

/// Processes (other than this test) whose command line mentions `needle`: media children of a worker of
/// this test carry paths under its data directory.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
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

/// Job scratch directories left under `root`.
fn leftover_jobs(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(owners) = std::fs::read_dir(root) else {
        return out;
    };
    for owner in owners.flatten() {
        if let Ok(jobs) = std::fs::read_dir(owner.path()) {
            out.extend(
                jobs.flatten()
                    .map(|j| j.path().display().to_string())
                    .filter(|p| p.contains("job-")),
            );
        }
    }
    out
}

async fn s3_keys(bucket: &str, prefix: &str) -> Vec<String> {
    aws_env();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_kill_minus_nine_under_load_lose_and_leave_nothing() {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    let (bucket, storage) = moto_bucket().await;
    // Crashes count as deliveries (that is what stops a crash-looping file), so this test allows many.
    let mut f = start_fleet_with(amqp_url(), Some(storage), vec![], "max_attempts = 50").await;
    let data_dir = f.dir.path().join("data");
    let mut ids = Vec::new();
    let mut round = 0;
    let base = f.base.clone();
    let upload_round = |round: usize| {
        let base = base.clone();
        async move {
            let mut out = Vec::new();
            for name in UPLOADS {
                let (code, b) = upload(&base, &fixture(name), &format!("{round}-{name}")).await;
                assert_eq!(code, 202, "{name}: {b}");
                out.push(b["id"].as_str().unwrap().to_owned());
            }
            out
        }
    };
    for _ in 0..3 {
        ids.extend(upload_round(round).await);
        round += 1;
    }
    let needle = data_dir.display().to_string();
    let (mut stray, mut mid_job) = (0, 0);
    let mut seed: u64 = 0x5eed;
    for kill in 0..10 {
        // Kill while a media child runs: wait for one (uploading more when the queue ran dry).
        let mut waited = Duration::ZERO;
        let busy = || {
            processes_mentioning(&needle)
                .into_iter()
                .filter(|(pid, cmd)| busy_media_child(*pid, cmd, &data_dir))
                .count()
        };
        while busy() == 0 && waited < Duration::from_secs(15) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
            if waited == Duration::from_secs(5) {
                ids.extend(upload_round(round).await);
                round += 1;
            }
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis((seed >> 33) % 300)).await;
        let children = busy();
        mid_job += usize::from(children > 0);
        f.worker.kill(); // SIGKILL, and reaped
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let left = processes_mentioning(&needle);
        if !left.is_empty() {
            eprintln!("kill {kill}: media children outlived their worker: {left:?}");
        }
        stray += left.len();
        eprintln!("kill {kill}: {children} media children were running");
        f.worker = Proc::spawn("worker", &["worker", "--concurrency", "2"], &refs(&f.env));
    }
    let mut lost = 0;
    for id in &ids {
        let m = wait_final(&f.base, id, Duration::from_secs(240)).await;
        if m["status"] != "ready" {
            lost += 1;
            eprintln!("not ready: {m}");
        }
    }
    // One rendition set: every object under a media's prefix belongs to a version its rows point at.
    let db = f
        .env
        .iter()
        .find(|(k, _)| k == "MEDIAFLEET_DB")
        .unwrap()
        .1
        .clone();
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
    let mut orphaned = 0;
    let mut duplicated = 0;
    for id in &ids {
        let keys = s3_keys(&bucket, &format!("{prefix}/media/{id}/")).await;
        let stored: BTreeSet<_> = keys.iter().filter_map(|k| version_of(k, id)).collect();
        let want = served.get(id.as_str()).cloned().unwrap_or_default();
        orphaned += stored.difference(&want).count();
        let names: BTreeSet<_> = stored.iter().map(|(n, _)| n.clone()).collect();
        duplicated += stored.len() - names.len();
        if stored != want {
            eprintln!("{id}: stored {stored:?}, served {want:?}");
        }
    }
    // A clean stop, then a start that sweeps what the killed workers left, then a clean stop.
    assert_eq!(f.worker.terminate(Duration::from_secs(30)), Some(0));
    f.worker = Proc::spawn("worker", &["worker", "--concurrency", "2"], &refs(&f.env));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(f.worker.terminate(Duration::from_secs(30)), Some(0));
    let leftovers = leftover_jobs(&data_dir.join("scratch"));
    println!(
        "lost={lost} duplicated={duplicated} orphaned={orphaned} stray_children={stray} scratch_left={} media={} kills=10 mid_job={mid_job}",
        leftovers.len(),
        ids.len()
    );
    assert_eq!(lost, 0);
    assert_eq!(stray, 0);
    assert_eq!(duplicated, 0);
    assert_eq!(orphaned, 0);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        mid_job >= 8,
        "only {mid_job} of 10 kills hit a running media child"
    );
}
