//! Byte budgets on the api's upload spool and a worker's job scratch (`serve` on the embedded defaults): an
//! upload that can never fit the spool is refused with 413, an original whose work cannot fit the scratch
//! budget fails `too_large_bytes` before a byte is downloaded, other jobs finish, and nothing is left behind.

mod common;

use std::time::Duration;

use common::uploads::padded_jpeg;
use common::*;

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != ".lock") {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn uploads_and_jobs_stay_within_their_byte_budgets() {
    let dir = tempfile::tempdir().unwrap();
    // Spool: 4 MB in all. Scratch: 7 MB, so a job needs 4 × its original + 1 MiB to fit.
    let cfg = fast_config_with(
        dir.path(),
        "scratch_bytes = 7000000",
        "[uploads]\nspool_bytes = 4000000\n",
    );
    let (_serve, base) = serve_embedded(dir.path(), &cfg).await;
    let files = tempfile::tempdir().unwrap();

    // 5 MB can never fit the 4 MB spool: 413 while it streams, and its spool file is gone.
    let big = padded_jpeg(files.path(), 5_000_000);
    assert_eq!(upload_refusable(&base, &big, "image/jpeg").await, 413);

    // 2 MB fits the spool, but its job would need 9 MB of scratch: failed, too_large_bytes.
    let (status, body) = upload(&base, &padded_jpeg(files.path(), 2_000_000), "wide.jpg").await;
    assert_eq!(status, 202, "{body}");
    let too_big = body["id"].as_str().unwrap().to_owned();
    // An ordinary photo still goes through.
    let (status, body) = upload(&base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(status, 202, "{body}");
    let photo = body["id"].as_str().unwrap().to_owned();

    let m = wait_final(&base, &too_big, Duration::from_secs(60)).await;
    assert_eq!(m["status"], "failed", "{m}");
    assert_eq!(m["error"]["code"], "too_large_bytes", "{m}");
    assert!(
        m["error"]["message"].as_str().unwrap().contains("scratch"),
        "{m}"
    );
    let m = wait_final(&base, &photo, Duration::from_secs(60)).await;
    assert_eq!(m["status"], "ready", "{m}");

    // A media shows `ready` from inside its job; the job's scratch directory goes when the job has ended
    // (after its attempt is recorded), a moment later.
    let data = dir.path().join("data");
    for sub in ["spool", "scratch"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut left = files_under(&data.join(sub));
        while !left.is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = files_under(&data.join(sub));
        }
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
}
