//! `mediafleet bench video [--source F] [--seconds S] [--runs N]`: our video pipeline against the `ffmpeg` CLI,
//! side by side in one run.
//!
//! - `mp4-720`: `mediafleet process SRC --only mp4-720` against
//!   `ffmpeg -i SRC -vf scale=-2:720 -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -profile:v high
//!   -c:a aac -b:a 128k -movflags +faststart` (the same output: same scale, profile and faststart pass).
//! - the 3-rung HLS ladder: `mediafleet process SRC --profile streaming --only hls` against three CLI runs,
//!   one per rung, and against one CLI command that decodes once and `split`s to three encoders.
//! - the poster at 50 % of a long clip against the CLI decoding the video up to that point (`-t`).
//!
//! Every side is a child process timed by wall clock, so process start counts for both. Sources are made with
//! the CLI (`testsrc2` with temporal noise, so x264 has real work, plus a sine) unless `--source` is given.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Arguments of `bench video`.
#[derive(Debug, clap::Args)]
pub struct BenchVideoArgs {
    /// A 1080p source (default: generated).
    #[arg(long)]
    source: Option<PathBuf>,
    /// Length of the generated 1080p source in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    /// Length of the generated long clip for the poster benchmark, in seconds.
    #[arg(long, default_value_t = 300)]
    long_seconds: u32,
    /// Timed runs per side (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Runs the benchmark; prints a table on stdout.
pub fn run(args: &BenchVideoArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

const RUNGS: [(u32, u32); 3] = [(1920, 1080), (1280, 720), (854, 480)];

fn run_inner(args: &BenchVideoArgs) -> anyhow::Result<()> {
    let exe = crate::mediafleet_exe()?;
    let work = tempfile::tempdir()?;
    let w = work.path();
    let src = match &args.source {
        Some(s) => s.clone(),
        None => {
            let p = w.join("src-1080.mp4");
            eprintln!("making a {} s 1080p source…", args.seconds);
            make_source(&p, args.seconds, 250)?;
            p
        }
    };
    let long = w.join("long.mp4");
    eprintln!("making a {} s long clip…", args.long_seconds);
    make_long(&long, args.long_seconds)?;

    println!(
        "{:<44} {:>9} {:>9} {:>8}",
        "benchmark", "ours_s", "cli_s", "ratio"
    );
    // mp4-720
    let out = w.join("ours-mp4");
    let ours = median(args.runs, || {
        cmd(
            &exe,
            &["process"],
            &src,
            &["--out", &s(&out), "--only", "mp4-720"],
        )
    })?;
    let cli_out = w.join("cli.mp4");
    let cli = median(args.runs, || {
        ffmpeg(&[
            "-i",
            &s(&src),
            "-vf",
            "scale=-2:720",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "23",
            "-pix_fmt",
            "yuv420p",
            "-profile:v",
            "high",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-movflags",
            "+faststart",
            &s(&cli_out),
        ])
    })?;
    row("mp4-720 vs ffmpeg (same scale)", ours, cli);

    // HLS ladder
    let out = w.join("ours-hls");
    let ours = median(args.runs, || {
        cmd(
            &exe,
            &["process"],
            &src,
            &["--out", &s(&out), "--profile", "streaming", "--only", "hls"],
        )
    })?;
    let three = median(args.runs, || {
        let mut total = Duration::ZERO;
        for (i, &(rw, rh)) in RUNGS.iter().enumerate() {
            let dir = w.join(format!("cli-hls-{i}"));
            std::fs::create_dir_all(&dir)?;
            let mut a = vec![
                "-i".to_owned(),
                s(&src),
                "-vf".into(),
                format!("scale={rw}:{rh}"),
            ];
            a.extend(hls_args(&dir));
            total += ffmpeg(&a.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(total)
    })?;
    let split = median(args.runs, || {
        let mut a = vec![
            "-i".to_owned(),
            s(&src),
            "-filter_complex".into(),
            "[0:v]split=3[a][b][c];[a]scale=1920:1080[v0];[b]scale=1280:720[v1];[c]scale=854:480[v2]".into(),
        ];
        for i in 0..3 {
            let dir = w.join(format!("cli-split-{i}"));
            std::fs::create_dir_all(&dir)?;
            a.extend([
                "-map".into(),
                format!("[v{i}]"),
                "-map".into(),
                "0:a".into(),
            ]);
            a.extend(hls_args(&dir));
        }
        ffmpeg(&a.iter().map(String::as_str).collect::<Vec<_>>())
    })?;
    row("hls ladder vs 3 ffmpeg runs", ours, three);
    row("hls ladder vs 1 ffmpeg split command", ours, split);
    row("(ffmpeg split vs 3 runs)", split, three);

    // Poster at 50 % of a long clip.
    let out = w.join("ours-poster");
    let profile = serde_json::json!({
        "image": [],
        "video": {"poster": {"at": 0.5}, "mp4": null, "hls": null}
    })
    .to_string();
    let ours = median(args.runs, || {
        cmd(
            &exe,
            &["process"],
            &long,
            &["--out", &s(&out), "--profile-json", &profile],
        )
    })?;
    let half = (f64::from(args.long_seconds) / 2.0).to_string();
    let cli = median(args.runs, || {
        ffmpeg(&["-i", &s(&long), "-t", &half, "-an", "-f", "null", "-"])
    })?;
    row("poster at 50% vs ffmpeg decoding to 50%", ours, cli);
    Ok(())
}

fn hls_args(dir: &Path) -> Vec<String> {
    [
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        "-pix_fmt",
        "yuv420p",
        "-profile:v",
        "high",
        "-force_key_frames",
        "expr:gte(t,n_forced*6)",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-f",
        "hls",
        "-hls_time",
        "6",
        "-hls_playlist_type",
        "vod",
        "-hls_segment_filename",
    ]
    .iter()
    .map(|x| x.to_string())
    .chain([s(&dir.join("seg_%04d.ts")), s(&dir.join("index.m3u8"))])
    .collect()
}

fn row(name: &str, ours: Duration, cli: Duration) {
    println!(
        "{name:<44} {:>9.2} {:>9.2} {:>8.3}",
        ours.as_secs_f64(),
        cli.as_secs_f64(),
        ours.as_secs_f64() / cli.as_secs_f64()
    );
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn median(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Duration> {
    let mut v = (0..runs.max(1))
        .map(|_| f())
        .collect::<anyhow::Result<Vec<_>>>()?;
    v.sort();
    Ok(v[v.len() / 2])
}

fn timed(c: &mut Command) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let status = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {c:?}"))?;
    let took = t.elapsed();
    if !status.success() {
        bail!("{c:?} failed with {status}");
    }
    Ok(took)
}

fn cmd(exe: &Path, head: &[&str], input: &Path, tail: &[&str]) -> anyhow::Result<Duration> {
    timed(Command::new(exe).args(head).arg(input).args(tail))
}

fn ffmpeg(args: &[&str]) -> anyhow::Result<Duration> {
    timed(
        Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-threads", "0"])
            .args(args),
    )
}

fn make_source(path: &Path, seconds: u32, keyint: u32) -> anyhow::Result<()> {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1920x1080:rate=30,noise=alls=12:allf=t",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &seconds.to_string(),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "18",
        "-g",
        &keyint.to_string(),
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        &s(path),
    ])
    .map(|_| ())
}

fn make_long(path: &Path, seconds: u32) -> anyhow::Result<()> {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1920x1080:rate=30",
        "-t",
        &seconds.to_string(),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "23",
        "-g",
        "250",
        "-pix_fmt",
        "yuv420p",
        &s(path),
    ])
    .map(|_| ())
}
