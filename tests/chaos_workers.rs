//! Four worker processes, killed at random: `api` and four `worker`s on RabbitMQ, moto S3 and Postgres, 300
//! mixed jobs (stills of seven formats and one video in ten, whose poster and transcode are two jobs), and a
//! random worker SIGKILLed every 0.5–3 s, 20 times, each restarted a moment later. Then: every media ready with
//! one rendition set, no media child outliving its worker, no scratch left after a clean restart. Prints
//! `lost=… duplicated=… orphaned=…`. The load is 300 uploads (`CHAOS_UPLOADS` overrides).

mod common;

use std::time::{Duration, Instant};

use common::chaos::{
    attempts_spent, busy_children, count, leftover_jobs, load, outliving, send_uploads,
};
use common::fleet::{refs, start_fleet_with};
use common::*;

const MIXED: [&str; 10] = [
    "photo.jpg",
    "orientation-6.jpg",
    "palette.png",
    "alpha.png",
    "cmyk.jpg",
    "clip.mp4",
    "lossy.webp",
    "animated.gif",
    "gps.jpg",
    "lossless.webp",
];

const KILLS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_killed_at_random_lose_and_leave_nothing() {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    let started = Instant::now();
    let (bucket, storage) = moto_bucket().await;
    // Crashes count as deliveries (that is what stops a crash-looping file), so this test allows many.
    let mut f = start_fleet_with(amqp_url(), Some(storage), vec![], "max_attempts = 50").await;
    let spawn = |env: &[(String, String)]| {
        Proc::spawn("worker", &["worker", "--concurrency", "2"], &refs(env))
    };
    let mut workers: Vec<Proc> = (0..3).map(|_| spawn(&f.env)).collect();
    let n = load(300);
    let base = f.base.clone();
    let sender =
        tokio::spawn(
            async move { send_uploads(&base, &MIXED, n, 4, Duration::from_secs(180)).await },
        );
    let needle = f.dir.path().join("data").display().to_string();
    let mut seed: u64 = 0x4b1d;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let (mut stray, mut mid_job) = (0, 0);
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(500 + next() % 2500)).await;
        let which = (next() % 4) as usize;
        let children = busy_children(&needle).len();
        mid_job += usize::from(children > 0);
        let pid = {
            let victim = pick(&mut f.worker, &mut workers, which);
            victim.kill();
            victim.child.id()
        };
        // Media children die with their worker (PR_SET_PDEATHSIG): one whose parent is no live worker a few
        // seconds after the kill is a stray.
        let live: Vec<u32> = workers
            .iter()
            .chain(std::iter::once(&f.worker))
            .map(|w| w.child.id())
            .filter(|p| *p != pid)
            .collect();
        let orphans = outliving(&needle, |pp| live.contains(&pp), Duration::from_secs(5)).await;
        if !orphans.is_empty() {
            eprintln!("kill {kill}: media children outlived worker {pid}: {orphans:?}");
        }
        stray += orphans.len();
        eprintln!("kill {kill}: worker {which} (pid {pid}), {children} media children running in the fleet");
        let fresh = spawn(&f.env);
        *pick(&mut f.worker, &mut workers, which) = fresh;
    }
    let (ids, refused) = sender.await.unwrap();
    let c = count(&f, &bucket, &ids, Duration::from_secs(300)).await;
    // Clean stops, then one start that sweeps what the killed workers left, then a clean stop.
    for w in workers.iter_mut().chain(std::iter::once(&mut f.worker)) {
        assert_eq!(w.terminate(Duration::from_secs(30)), Some(0));
    }
    f.worker = spawn(&f.env);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(f.worker.terminate(Duration::from_secs(30)), Some(0));
    let leftovers = leftover_jobs(&f.dir.path().join("data").join("scratch"));
    println!(
        "{c} stray_children={stray} scratch_left={} uploads={} refused_tries={refused} kills={KILLS} mid_job={mid_job} attempts_spent={} wall={:?}",
        leftovers.len(),
        ids.len(),
        attempts_spent(&f).await,
        started.elapsed()
    );
    c.assert_zero();
    assert_eq!(stray, 0);
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Worker `which`: 0 is the fleet's own, 1..=3 the extra ones.
fn pick<'a>(first: &'a mut Proc, rest: &'a mut [Proc], which: usize) -> &'a mut Proc {
    if which == 0 {
        first
    } else {
        &mut rest[which - 1]
    }
}
