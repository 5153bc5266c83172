//! `mediafleet bench image [PHOTOS…] [--runs N]`: our image pipeline against `vipsthumbnail`, side by side.
//!
//! For every JPEG (files, or the `*.jpg`/`*.jpeg` in directories; default `benches/photos/`, filled by
//! `benches/fetch-photos.sh`) and every run, it times in turn:
//! - ours: one child making `thumb` (256 px WebP q80) and `preview` (1280 px JPEG q82) from one decode: the
//!   child the worker's sandbox runs for a JPEG, `mediafleet-image process` (no FFmpeg linked), or
//!   `mediafleet process` when `mediafleet-image` is not installed beside this binary (or with `--full`);
//! - vips: `vipsthumbnail -s 256` (WebP q80) and `vipsthumbnail -s 1280` (JPEG q82), one run per size, as a
//!   user without mediafleet would.
//!
//! Both sides are child processes under GNU `time`, so wall time includes process start for both and peak RSS
//! (`%M`) is measured the same way. It prints the median wall time per file, the peak RSS, and the ratios.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Arguments of `bench image`.
#[derive(Debug, clap::Args)]
pub struct BenchImageArgs {
    /// JPEG files or directories of them (default: benches/photos).
    photos: Vec<PathBuf>,
    /// Timed runs per file and side (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Time `mediafleet process` (the full binary, FFmpeg linked) instead of the image child.
    #[arg(long)]
    full: bool,
}

/// One side's result on one file.
#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    wall: Duration,
    rss_kib: u64,
}

/// Runs the benchmark; prints a table on stdout.
pub fn run(args: &BenchImageArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_inner(args: &BenchImageArgs) -> anyhow::Result<()> {
    let photos = collect(&args.photos)?;
    let full = crate::mediafleet_exe()?;
    let lean = full.with_file_name(mediafleet::sandbox::IMAGE_CHILD);
    let exe = if !args.full && lean.is_file() {
        lean
    } else {
        full
    };
    eprintln!("ours: {} process", exe.display());
    let work = tempfile::tempdir()?;
    let profile = serde_json::json!({"image": [
        {"name": "thumb", "max_width": 256, "max_height": 256, "format": "webp", "quality": 80},
        {"name": "preview", "max_width": 1280, "max_height": 1280, "format": "jpeg", "quality": 82}
    ]})
    .to_string();
    println!(
        "{:<34} {:>11} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7}",
        "file", "pixels", "ours_s", "vips_s", "wall_x", "ours_MiB", "vips_MiB", "rss_x"
    );
    let (mut ours_total, mut vips_total) = (Duration::ZERO, Duration::ZERO);
    for photo in &photos {
        let (mut ours, mut vips) = (Vec::new(), Vec::new());
        // One untimed warm-up per side so both read the file from the page cache.
        for i in 0..=args.runs {
            let o = ours_once(&exe, photo, &profile, work.path())?;
            let v = vips_once(photo, work.path())?;
            if i > 0 {
                ours.push(o);
                vips.push(v);
            }
        }
        let (o, v) = (median(&ours), median(&vips));
        ours_total += o.wall;
        vips_total += v.wall;
        println!(
            "{:<34} {:>11} {:>10.3} {:>10.3} {:>7.2} {:>10.1} {:>10.1} {:>7.2}",
            name(photo),
            pixels(photo),
            o.wall.as_secs_f64(),
            v.wall.as_secs_f64(),
            o.wall.as_secs_f64() / v.wall.as_secs_f64(),
            o.rss_kib as f64 / 1024.0,
            v.rss_kib as f64 / 1024.0,
            o.rss_kib as f64 / v.rss_kib.max(1) as f64,
        );
    }
    println!(
        "total: ours {:.3} s, vipsthumbnail ×2 {:.3} s, wall ratio {:.2} (median of {} runs per file)",
        ours_total.as_secs_f64(),
        vips_total.as_secs_f64(),
        ours_total.as_secs_f64() / vips_total.as_secs_f64(),
        args.runs
    );
    Ok(())
}

fn collect(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let default = [PathBuf::from("benches/photos")];
    let inputs = if inputs.is_empty() {
        &default[..]
    } else {
        inputs
    };
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg"))
                })
                .collect();
            files.sort();
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            bail!(
                "{}: no such file or directory (run benches/fetch-photos.sh for sample photos)",
                p.display()
            );
        }
    }
    if out.is_empty() {
        bail!("no JPEG files to benchmark (run benches/fetch-photos.sh, or pass files)");
    }
    Ok(out)
}

fn ours_once(exe: &Path, photo: &Path, profile: &str, work: &Path) -> anyhow::Result<Measure> {
    let out = work.join("ours");
    let mut cmd = Command::new(exe);
    cmd.arg("process")
        .arg(photo)
        .arg("--out")
        .arg(&out)
        .arg("--profile-json")
        .arg(profile)
        .env("RUST_LOG", "warn");
    timed(cmd, work)
}

fn vips_once(photo: &Path, work: &Path) -> anyhow::Result<Measure> {
    let out = work.join("vips");
    std::fs::create_dir_all(&out)?;
    let mut total = Measure::default();
    for (size, target) in [
        ("256", "thumb.webp[Q=80,strip]"),
        ("1280", "preview.jpg[Q=82,strip]"),
    ] {
        let mut cmd = Command::new("vipsthumbnail");
        cmd.arg(photo)
            .arg("-s")
            .arg(size)
            .arg("-o")
            .arg(out.join(target));
        let m = timed(cmd, work)?;
        total.wall += m.wall;
        total.rss_kib = total.rss_kib.max(m.rss_kib);
    }
    Ok(total)
}

/// Runs `cmd` under GNU `time -f %M` and returns wall time and peak RSS.
fn timed(cmd: Command, work: &Path) -> anyhow::Result<Measure> {
    let rss_file = work.join("rss");
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let output = wrapped
        .output()
        .with_context(|| format!("running {:?} (is GNU time installed?)", cmd.get_program()))?;
    let wall = started.elapsed();
    if !output.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let rss = std::fs::read_to_string(&rss_file)?;
    let rss_kib = rss
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    Ok(Measure { wall, rss_kib })
}

fn median(v: &[Measure]) -> Measure {
    let mut walls: Vec<Duration> = v.iter().map(|m| m.wall).collect();
    walls.sort();
    Measure {
        wall: walls[walls.len() / 2],
        rss_kib: v.iter().map(|m| m.rss_kib).max().unwrap_or(0),
    }
}

fn name(p: &Path) -> String {
    let n = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if n.len() > 34 {
        format!("…{}", &n[n.len() - 33..])
    } else {
        n
    }
}

fn pixels(p: &Path) -> String {
    std::fs::read(p)
        .ok()
        .and_then(|d| image_size(&d))
        .map(|(w, h)| format!("{w}×{h}"))
        .unwrap_or_else(|| "?".into())
}

/// Width and height from a JPEG's SOF marker.
fn image_size(d: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 < d.len() && d[i] == 0xFF {
        let m = d[i + 1];
        let len = usize::from(u16::from_be_bytes([d[i + 2], d[i + 3]]));
        if matches!(m, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            let h = u32::from(u16::from_be_bytes([d[i + 5], d[i + 6]]));
            let w = u32::from(u16::from_be_bytes([d[i + 7], d[i + 8]]));
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}
