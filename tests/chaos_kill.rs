//! kill -9 under load: `api` + `worker` on RabbitMQ, moto S3 and Postgres; rounds of ten uploads (photos, PNGs,
//! a GIF and two videos whose transcodes run in media children), and the worker killed with SIGKILL ten times
//! while a media child runs, restarted each time. Then: no media child outlives its worker, every media is ready with one rendition set
//! (no object in storage that no rendition row points at), and no scratch is left behind. Prints
//! `lost=… duplicated=… orphaned=… stray_children=…`.

mod common;

use std::time::Duration;

use common::chaos::{busy_children, count, leftover_jobs, outliving};
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
        let busy = || busy_children(&needle).len();
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
        let left = outliving(&needle, |_| false, Duration::from_secs(5)).await;
        if !left.is_empty() {
            eprintln!("kill {kill}: media children outlived their worker: {left:?}");
        }
        stray += left.len();
        eprintln!("kill {kill}: {children} media children were running");
        f.worker = Proc::spawn("worker", &["worker", "--concurrency", "2"], &refs(&f.env));
    }
    let c = count(&f, &bucket, &ids, Duration::from_secs(240)).await;
    // A clean stop, then a start that sweeps what the killed workers left, then a clean stop.
    assert_eq!(f.worker.terminate(Duration::from_secs(30)), Some(0));
    f.worker = Proc::spawn("worker", &["worker", "--concurrency", "2"], &refs(&f.env));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(f.worker.terminate(Duration::from_secs(30)), Some(0));
    let leftovers = leftover_jobs(&data_dir.join("scratch"));
    println!(
        "{c} stray_children={stray} scratch_left={} media={} kills=10 mid_job={mid_job}",
        leftovers.len(),
        ids.len()
    );
    c.assert_zero();
    assert_eq!(stray, 0);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        mid_job >= 8,
        "only {mid_job} of 10 kills hit a running media child"
    );
}
