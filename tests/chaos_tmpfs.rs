//! Scratch on a small tmpfs: `api` and `worker` on RabbitMQ, moto S3 and Postgres, their data directory (the
//! api's upload spool and the worker's job scratch) a 16 MiB tmpfs. A 30 MiB upload (under the 50 MiB image
//! limit, over the space) is refused while 60 small uploads flow; they all end ready, the refused one leaves
//! no media row and no object, and the tmpfs holds no spool file or job directory afterwards. Prints
//! `lost=… duplicated=… orphaned=…`.

mod common;

use std::time::{Duration, Instant};

use common::chaos::{count, leftover_jobs, media_rows, send_uploads, IMAGES};
use common::fleet::{start_fleet_opts, FleetOpts};
use common::host::Tmpfs;
use common::uploads::padded_jpeg;
use common::*;

/// Files whose name starts with `upload-` (the api's spool files) anywhere under `root`.
fn spool_files(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if e.file_name().to_string_lossy().starts_with("upload-") {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_too_large_upload_is_refused_on_a_small_scratch_and_leaves_nothing() {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(&dir.path().join("data"), "16m");
    let big = padded_jpeg(dir.path(), 30 << 20);
    let (bucket, storage) = moto_bucket().await;
    let mut f = start_fleet_opts(FleetOpts {
        storage: Some(storage),
        data_dir: Some(tmpfs.path.clone()),
        ..FleetOpts::on(amqp_url())
    })
    .await;
    let base = f.base.clone();
    let sender =
        tokio::spawn(
            async move { send_uploads(&base, &IMAGES, 60, 2, Duration::from_secs(120)).await },
        );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The api refuses it while it streams; read its answer even if it closes before the body is sent.
    let code = upload_refusable(&f.base, &big, "image/jpeg").await;
    println!("the 30 MiB upload: {code}");
    let (ids, refused) = sender.await.unwrap();
    let c = count(&f, &bucket, &ids, Duration::from_secs(180)).await;
    let rows = media_rows(&f).await;
    // A clean stop removes the worker's own scratch claim.
    assert_eq!(f.worker.terminate(Duration::from_secs(30)), Some(0));
    assert_eq!(f.api.terminate(Duration::from_secs(30)), Some(0));
    let spool = spool_files(&tmpfs.path);
    let jobs = leftover_jobs(&tmpfs.path.join("scratch"));
    let used = tmpfs.used_bytes();
    println!(
        "{c} uploads={} refused_tries={refused} big_upload={code} media_rows={rows} spool_left={} scratch_left={} tmpfs_used={used} wall={:?}",
        ids.len(),
        spool.len(),
        jobs.len(),
        started.elapsed()
    );
    // Larger than the spool's budget (90 % of the tmpfs): refused as too large, not "retry later".
    assert_eq!(code, 413, "a 30 MiB upload on a 16 MiB spool");
    c.assert_zero();
    assert_eq!(
        rows,
        ids.len() as i64,
        "the refused upload left a media row"
    );
    assert!(spool.is_empty(), "{spool:?}");
    assert!(jobs.is_empty(), "{jobs:?}");
    assert!(used < 1 << 20, "{used} bytes left on the tmpfs");
}
