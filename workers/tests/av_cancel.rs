//! Cancellation mid-encode: the work stops promptly, says `timeout`, and leaves no partial files.

mod av_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use av_common::*;
use mediafleet_workers::{process_with, Control, Limits};

#[test]
fn cancel_mid_encode_stops_and_cleans_up() {
    let out = tempfile::tempdir().unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let seen = started.clone();
    // The poster is 5 % of the bar; past 10 % the encodes are running.
    let control = Control::with_progress(move |p| {
        if p > 0.1 {
            seen.store(true, Ordering::SeqCst);
        }
    });
    let canceller = {
        let (control, started) = (control.clone(), started.clone());
        std::thread::spawn(move || {
            while !started.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            control.cancel();
            Instant::now()
        })
    };
    let report = process_with(
        &fixture("av/clip-1080.mp4"),
        &streaming(1),
        &Limits::default(),
        out.path(),
        &control,
    );
    let ended = Instant::now();
    let cancelled_at = canceller.join().unwrap();
    assert_eq!(code(&report), "timeout", "{report:?}");
    assert!(
        ended.duration_since(cancelled_at) < Duration::from_secs(2),
        "stopped {:?} after the cancel",
        ended.duration_since(cancelled_at)
    );
    let mut left: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // The poster and thumb were finished before the cancel; nothing of the encodes remains.
    assert_eq!(left, ["poster.jpg", "thumb.webp"], "left behind: {left:?}");
}
