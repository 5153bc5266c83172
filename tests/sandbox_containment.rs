//! The media child is contained: it sees none of the worker's secrets, lives in its own process group (a
//! signal to the worker's group does not reach it), never outlives the worker, and a stop of the whole group
//! fails no job. `serve` on the embedded defaults, as systemd or a terminal would run it.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// (pid, ppid, pgrp, state) of every process.
fn processes() -> Vec<(u32, u32, u32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces: parse after the last ')'.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        out.push((
            pid,
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[0].chars().next().unwrap(),
        ));
    }
    out
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Live media children working on a job under `data`.
fn busy_children(data: &Path) -> Vec<(u32, u32, u32)> {
    media_children(data)
        .into_iter()
        .filter(|c| busy_media_child(c.0, &cmdline(c.0), data))
        .collect()
}

/// Live (not zombie) media children of a worker under `data` (working or waiting), wherever they were
/// reparented.
fn media_children(data: &Path) -> Vec<(u32, u32, u32)> {
    let marker = data.display().to_string();
    processes()
        .into_iter()
        .filter(|p| p.3 != 'Z')
        .filter(|p| {
            let c = cmdline(p.0);
            c.contains("--sandboxed") && c.contains(&marker)
        })
        .map(|p| (p.0, p.1, p.2))
        .collect()
}

/// Waits for a media child that has been running for at least `settled` (a transcode, not a quick probe).
async fn wait_busy_child(data: &Path, settled: Duration) -> (u32, u32, u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut first_seen: Option<(u32, Instant)> = None;
    while Instant::now() < deadline {
        let kids = busy_children(data);
        match (first_seen, kids.first()) {
            (Some((pid, at)), _) if kids.iter().any(|k| k.0 == pid) => {
                if at.elapsed() >= settled {
                    return *kids.iter().find(|k| k.0 == pid).unwrap();
                }
            }
            (_, Some(k)) => first_seen = Some((k.0, Instant::now())),
            _ => first_seen = None,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no media child ran for {settled:?} within 120 s");
}

struct Serve {
    child: std::process::Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` in a process group of its own (as `setsid`, systemd or a shell job would start it).
async fn serve(dir: &Path, listen: &str, env: &[(&str, &str)]) -> Serve {
    let cfg = fast_config(dir, "");
    let mut cmd = Command::new(bin());
    cmd.args(["serve"])
        .env("MEDIAFLEET_CONFIG", &cfg)
        .env("MEDIAFLEET_DATA_DIR", dir.join("data"))
        .env("MEDIAFLEET_LISTEN", listen)
        .env("RUST_LOG", "info,sqlx=warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0);
    let child = cmd.spawn().unwrap();
    let base = format!("http://{listen}");
    wait_healthy(&base, Duration::from_secs(30)).await;
    Serve { child, base }
}

async fn upload_with_profile(base: &str, file: &str, profile: &str) -> String {
    let path = fixture(file);
    let form = reqwest::multipart::Form::new()
        .text("profile", profile.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(std::fs::read(&path).unwrap()).file_name("upload"),
        );
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/uploads"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn gone_within(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !processes().iter().any(|p| p.0 == pid && p.3 != 'Z') {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test]
async fn the_media_child_has_no_secrets_and_its_own_group_and_dies_with_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let canaries = [
        ("AWS_SECRET_ACCESS_KEY", "canary-aws-8f3e1"),
        ("AWS_ACCESS_KEY_ID", "canary-akid-8f3e1"),
        ("DATABASE_URL", "postgres://app:canary-db-8f3e1@db/prod"),
        ("MEDIAFLEET_SIGNING_SECRET", "canary-sign-8f3e1"),
        ("MEDIAFLEET_CANARY", "canary-plain-8f3e1"),
    ];
    let mut s = serve(dir.path(), &listen, &canaries).await;
    upload_with_profile(&s.base, "av/clip-1080.mp4", "streaming").await;
    let (pid, ppid, pgrp) = wait_busy_child(&data, Duration::from_millis(300)).await;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ).replace('\0', "\n");
    assert!(
        !environ.contains("8f3e1"),
        "secrets reached the child:\n{environ}"
    );
    let names: Vec<&str> = environ
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    let allowed = mediafleet::sandbox::ENV_ALLOW;
    assert!(
        names.iter().all(|n| allowed.contains(n)
            || *n == "MALLOC_ARENA_MAX"
            || *n == mediafleet::sandbox::netns::ENTERED),
        "unexpected variables in the child: {names:?}"
    );
    let worker = s.child.id();
    assert_eq!(ppid, worker);
    assert_ne!(pgrp, worker, "the child shares the worker's process group");
    assert_eq!(pgrp, pid, "the child leads a process group of its own");

    // SIGKILL of the worker (OOM kill, node loss): the kernel kills the child with it.
    s.child.kill().unwrap();
    let _ = s.child.wait();
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "media child {pid} outlived its worker: {}",
        cmdline(pid)
    );
    assert!(
        media_children(&data).is_empty(),
        "{:?}",
        media_children(&data)
    );
    let left: Vec<_> = std::fs::read_dir(data.join("scratch"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(left.len(), 1, "the killed worker's scratch dir");

    // The next process to start sweeps the scratch the killed one left, and keeps only its own.
    let s = serve(dir.path(), &listen, &[]).await;
    let dirs: Vec<_> = std::fs::read_dir(data.join("scratch"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(
        dirs[0]
            .display()
            .to_string()
            .contains(&format!("p-{}-", s.child.id())),
        "{dirs:?}"
    );
}

#[tokio::test]
async fn a_stop_signal_to_the_whole_group_fails_no_job() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let s = serve(dir.path(), &listen, &[]).await;
    let mut ids = vec![
        upload_with_profile(&s.base, "av/clip-1080.mp4", "streaming").await,
        upload_with_profile(&s.base, "av/compatible.mp4", "default").await,
    ];
    for photo in ["photo.jpg", "alpha.png", "photo.jpg"] {
        ids.push(upload_with_profile(&s.base, photo, "default").await);
    }
    // A transcode is running: stop the whole process group, as systemd (KillMode=control-group) and Ctrl-C do.
    let (child, _, _) = wait_busy_child(&data, Duration::from_millis(300)).await;
    let mut s = s;
    let pgid = s.child.id();
    let status = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    assert!(status.success());
    // systemd's default KillMode=control-group signals every process of the unit, the child included.
    let _ = Command::new("kill")
        .args(["-TERM", &child.to_string()])
        .status();
    // The worker drains (5 s in the test config), hands back what is unfinished and exits 0.
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st.code();
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, Some(0), "serve did not exit cleanly");
    assert!(
        gone_within(child, Duration::from_secs(5)),
        "media child outlived serve"
    );
    assert!(
        media_children(&data).is_empty(),
        "{:?}",
        media_children(&data)
    );
    drop(s);

    // Nothing failed; after a restart every media reaches ready.
    let s = serve(dir.path(), &listen, &[]).await;
    let mut failed = Vec::new();
    for id in &ids {
        let m = wait_final(&s.base, id, Duration::from_secs(300)).await;
        if m["status"] != "ready" {
            failed.push(m);
        }
    }
    assert!(
        failed.is_empty(),
        "media failed after a group SIGTERM: {failed:#?}"
    );
}
