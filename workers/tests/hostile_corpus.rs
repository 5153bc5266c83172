//! The hostile corpus (`fixtures/hostile/`, made by `fixtures/make/make_hostile.py`, listed with the code each
//! must end in by `expect.tsv`): every file through the whole pipeline ends `failed` with its code, quickly,
//! and the process never holds the memory a bomb asks for. nextest runs this test in a process of its own, so
//! the peak resident size read at the end is this test's.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fixture;
use mediafleet_proto::Profile;
use mediafleet_workers::{process, Limits};

/// Peak resident set of this process, from /proc (kB → bytes).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn every_hostile_file_fails_with_its_code() {
    let list = std::fs::read_to_string(fixture("hostile/expect.tsv")).unwrap();
    let mut wrong = Vec::new();
    let mut n = 0;
    for line in list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut cols = line.split('\t');
        let (name, want) = (cols.next().unwrap(), cols.next().unwrap());
        let out = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let report = process(
            &fixture(&format!("hostile/{name}")),
            &Profile::default_profile(),
            &Limits::default(),
            out.path(),
        );
        let took = started.elapsed();
        let got = report
            .error
            .as_ref()
            .map_or(report.status.as_str(), |e| e.code.as_str());
        println!("{name}: {got} in {took:?}");
        if got != want {
            wrong.push(format!("{name}: wanted {want}, got {got}: {report:?}"));
        }
        // Generous: these fail from headers in milliseconds; only a decode of the bomb would take seconds.
        if took > Duration::from_secs(20) {
            wrong.push(format!("{name}: took {took:?}"));
        }
        if got != "ready" && !empty(out.path()) {
            wrong.push(format!(
                "{name}: a failed job left files in its output directory"
            ));
        }
        n += 1;
    }
    assert!(n >= 20, "only {n} files listed");
    let peak = peak_rss();
    println!("{n} hostile files; peak RSS {} MiB", peak >> 20);
    // A 300 MiB metadata bomb or a 1.2 GB pixel bomb, decoded, would be far above this.
    assert!(peak < 200 << 20, "peak RSS {} MiB", peak >> 20);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}
