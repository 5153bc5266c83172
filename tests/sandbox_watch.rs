//! A test that watches the media child work on hostile files: under `strace`, once the child has confined
//! itself (the `mediafleet-sandbox …` line it writes to stderr), it opens no file outside its input and its
//! output directory, and makes no socket or connection, whatever the file asks for. The corpus is
//! `fixtures/hostile/` (bombs, header lies, playlists, concat lists, SDP, SVG with external entities) and the
//! hostile video files of `fixtures/av/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// One traced syscall that breaks the promise: the file, and strace's line.
type Breach = (String, String);

/// The path argument of an `openat`/`open`/`creat` line, and whether the call succeeded.
fn opened(line: &str) -> Option<(String, bool)> {
    let call = ["openat(", "open(", "creat("]
        .iter()
        .find_map(|c| line.find(c).map(|i| &line[i..]))?;
    let start = call.find('"')? + 1;
    let end = start + call[start..].find('"')?;
    let ok = line
        .rsplit_once(" = ")
        .is_some_and(|(_, r)| !r.trim_start().starts_with('-'));
    Some((call[start..end].to_owned(), ok))
}

/// Runs `mediafleet process FILE --out OUT --sandboxed` under strace; returns what broke the promise, the
/// opens after confinement, and how many of those the sandbox refused.
fn watch(file: &Path, scratch: &Path) -> (Vec<Breach>, usize, usize) {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let job = scratch.join(&name);
    let out = job.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let input = job.join("original");
    std::fs::copy(file, &input).unwrap();
    let trace = job.join("trace");
    let status = Command::new("strace")
        .args(["-f", "-qq", "-s", "256", "-e", "signal=none"])
        .args([
            "-e",
            "trace=openat,open,creat,socket,connect,bind,write",
            "-o",
        ])
        .arg(&trace)
        .arg(bin())
        .arg("process")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .arg("--sandboxed")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("strace (apt install strace; scripts/ensure-deps.sh --services installs it)");
    assert!(
        matches!(status.status.code(), Some(0) | Some(2)),
        "{name}: the child ended with {:?}: {}",
        status.status,
        String::from_utf8_lossy(&status.stderr)
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    let confined_at = text
        .lines()
        .position(|l| l.contains("write(2, \"mediafleet-sandbox "))
        .unwrap_or_else(|| panic!("{name}: the child never reported its sandbox layers"));
    let (inside, outside) = (input.display().to_string(), out.display().to_string());
    let mut breaches = Vec::new();
    let (mut opens, mut denied) = (0, 0);
    for line in text.lines().skip(confined_at + 1) {
        if line.contains("socket(") || line.contains("connect(") || line.contains("bind(") {
            let ok = line
                .rsplit_once(" = ")
                .is_some_and(|(_, r)| !r.trim_start().starts_with('-'));
            if ok {
                breaches.push((name.clone(), line.to_owned()));
            }
            continue;
        }
        let Some((path, ok)) = opened(line) else {
            continue;
        };
        opens += 1;
        if !ok {
            denied += 1;
        } else if !(path == inside || path.starts_with(&outside)) {
            breaches.push((name.clone(), line.to_owned()));
        }
    }
    (breaches, opens, denied)
}

fn corpus() -> Vec<PathBuf> {
    let hostile = fixture("hostile");
    let mut files: Vec<PathBuf> = std::fs::read_to_string(hostile.join("expect.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| hostile.join(l.split('\t').next().unwrap()))
        .collect();
    for av in [
        "absurd-dimensions.mov",
        "absurd-duration.mp4",
        "truncated.mp4",
    ] {
        files.push(fixture("av").join(av));
    }
    files
}

#[test]
fn a_confined_child_opens_nothing_else_and_connects_nowhere() {
    let scratch = tempfile::tempdir().unwrap();
    let files = corpus();
    assert!(files.len() >= 20, "corpus: {files:?}");
    let (mut breaches, mut opens, mut denied) = (Vec::new(), 0, 0);
    for f in &files {
        let (b, n, d) = watch(f, scratch.path());
        breaches.extend(b);
        opens += n;
        denied += d;
    }
    eprintln!(
        "files={} opens_after_confinement={opens} refused_by_the_sandbox={denied} breaches={}",
        files.len(),
        breaches.len()
    );
    assert!(breaches.is_empty(), "{breaches:#?}");
}

#[test]
fn the_watch_sees_an_open_outside() {
    // The watcher itself: an unconfined child's start-up opens (libraries, /proc) are all outside, so the
    // parser finds them when they come after the marker. A sanity check on `opened`.
    assert_eq!(
        opened(r#"123 openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3"#),
        Some(("/etc/passwd".into(), true))
    );
    assert_eq!(
        opened(r#"123 openat(AT_FDCWD, "/etc/passwd", O_RDONLY) = -1 EACCES (Permission denied)"#),
        Some(("/etc/passwd".into(), false))
    );
    assert_eq!(opened(r#"123 write(2, "x", 1) = 1"#), None);
}
