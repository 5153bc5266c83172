//! `mediafleet bench fleet`: what the fleet adds to the work itself. N photos uploaded to a real
//! `mediafleet serve` (the embedded defaults: SQLite queue and DB, local storage), timed from the first upload
//! to the last media `ready`, against the same N files through the bare still-image child (`mediafleet-image
//! process`, what the worker's sandbox runs), as many at a time as the worker's image concurrency. Side by
//! side in one run, alternating, so both see the same machine.
//!
//! With `--queue`/`--db`/`--storage` the fleet side runs on those backends instead; with `--split` it runs
//! as two processes, `api` and `worker` (e.g. RabbitMQ + Postgres), as a deployment would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use futures::{stream, StreamExt, TryStreamExt};

/// Arguments of `bench fleet`.
#[derive(Debug, clap::Args)]
pub struct BenchFleetArgs {
    /// The photo to upload (each upload gets its own copy, made unique by trailing bytes after the image).
    #[arg(long, default_value = "fixtures/photo.jpg")]
    input: PathBuf,
    /// Uploads per round.
    #[arg(long, default_value_t = 100)]
    uploads: usize,
    /// Timed rounds per side (after one untimed warm-up of the fleet); the sides take turns going first.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Jobs at a time on the bare side; default: the worker's image concurrency (the number of cores).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Queue URL for the fleet side (default: embedded).
    #[arg(long)]
    queue: Option<String>,
    /// Database URL for the fleet side (default: SQLite in the fleet's data dir).
    #[arg(long)]
    db: Option<String>,
    /// Storage URL for the fleet side (default: the fleet's data dir).
    #[arg(long)]
    storage: Option<String>,
    /// Run the fleet as `api` + `worker` processes instead of one `serve`.
    #[arg(long)]
    split: bool,
    /// Where both sides work (the fleet's data dir, the bare side's outputs, the input copies): a new
    /// directory under this one. Default: the system's temp directory.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Runs the benchmark; prints the figures on stdout.
pub async fn run(args: BenchFleetArgs) -> anyhow::Result<()> {
    ensure!(
        args.input.is_file(),
        "{} is not a file (run from the repository root or pass --input)",
        args.input.display()
    );
    ensure!(
        args.uploads >= 1 && args.rounds >= 1,
        "--uploads and --rounds must be at least 1"
    );
    let exe = crate::mediafleet_exe()?;
    let child = exe.with_file_name(mediafleet::sandbox::IMAGE_CHILD);
    let (child, child_args): (PathBuf, Vec<&str>) = if child.is_file() {
        (child, vec!["process"])
    } else {
        (exe.clone(), vec!["process"])
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let concurrency = args.concurrency.unwrap_or(cores).max(1);
    let work = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let files = copies(&args.input, args.uploads, work.path())?;
    let tag = format!("bench-{}", uuid::Uuid::now_v7().simple());

    let fleet = Fleet::start(&args, &exe, work.path()).await?;
    // Warm-up: the first media of a fresh fleet also pays for migrations, pools and the first child.
    fleet
        .round(&files[..files.len().min(4)], &format!("{tag}-w"))
        .await?;
    bare(
        &child,
        &child_args,
        &files[..files.len().min(4)],
        concurrency,
        work.path(),
        "w",
    )
    .await?;

    let (mut fleet_t, mut bare_t) = (Vec::new(), Vec::new());
    let (mut fleet_cpu, mut bare_cpu) = (Cpu::default(), Cpu::default());
    // The sides take turns going first (bare, fleet; fleet, bare; …). On a machine that slows down under
    // sustained load (seen here: every round of both sides slower than the one before, by a few per cent,
    // on disk and on tmpfs alike), a fixed order would charge the side that always runs second for it.
    for r in 0..args.rounds {
        let (round, fleet_tag) = (r.to_string(), format!("{tag}-{r}"));
        let run_bare = || {
            bare(
                &child,
                &child_args,
                &files,
                concurrency,
                work.path(),
                &round,
            )
        };
        let run_fleet = || fleet.round(&files, &fleet_tag);
        let t0 = Cpu::now(&fleet.pids());
        if r % 2 == 0 {
            bare_t.push(run_bare().await?);
            let t1 = Cpu::now(&fleet.pids());
            fleet_t.push(run_fleet().await?);
            bare_cpu.add(&t1.since(&t0));
            fleet_cpu.add(&Cpu::now(&fleet.pids()).since(&t1));
        } else {
            fleet_t.push(run_fleet().await?);
            let t1 = Cpu::now(&fleet.pids());
            bare_t.push(run_bare().await?);
            fleet_cpu.add(&t1.since(&t0));
            bare_cpu.add(&Cpu::now(&fleet.pids()).since(&t1));
        }
    }
    let described = fleet.describe().to_owned();
    fleet.stop();
    let (f, b) = (median(&mut fleet_t), median(&mut bare_t));
    println!(
        "input: {}  uploads per round: {}  rounds: {}  bare child: {} at a time ({})",
        args.input.display(),
        args.uploads,
        args.rounds,
        concurrency,
        child.file_name().unwrap_or_default().to_string_lossy()
    );
    println!("fleet: {described}");
    println!("work dir: {}", work.path().display());
    println!("{:<10} {:>12} {:>14}", "side", "median s", "per upload ms");
    for (name, t) in [("fleet", f), ("bare", b)] {
        println!(
            "{:<10} {:>12.3} {:>14.1}",
            name,
            t.as_secs_f64(),
            t.as_secs_f64() * 1000.0 / args.uploads as f64
        );
    }
    println!(
        "ratio fleet/bare: {:.2}  (every round: fleet {:?} s, bare {:?} s)",
        f.as_secs_f64() / b.as_secs_f64(),
        secs(&fleet_t),
        secs(&bare_t)
    );
    // Where the CPU went (from /proc, 10 ms ticks), per upload over every timed round.
    let per = |s: f64| s * 1000.0 / (args.uploads * args.rounds) as f64;
    println!(
        "cpu per upload ms: fleet side: fleet processes {:.1} + their media children {:.1} + this client {:.1}; \
         bare side: children {:.1} + this process {:.1}",
        per(fleet_cpu.fleet),
        per(fleet_cpu.fleet_children),
        per(fleet_cpu.client),
        per(bare_cpu.client_children),
        per(bare_cpu.client),
    );
    Ok(())
}

/// CPU seconds so far (user + system) of the fleet's processes, their reaped children, and this process and
/// its reaped children.
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    fleet: f64,
    fleet_children: f64,
    client: f64,
    client_children: f64,
}

impl Cpu {
    fn now(fleet: &[u32]) -> Cpu {
        let mut c = Cpu::default();
        for pid in fleet {
            let (own, children) = proc_cpu(&pid.to_string());
            c.fleet += own;
            c.fleet_children += children;
        }
        (c.client, c.client_children) = proc_cpu("self");
        c
    }

    fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            fleet: self.fleet - earlier.fleet,
            fleet_children: self.fleet_children - earlier.fleet_children,
            client: self.client - earlier.client,
            client_children: self.client_children - earlier.client_children,
        }
    }

    fn add(&mut self, d: &Cpu) {
        self.fleet += d.fleet;
        self.fleet_children += d.fleet_children;
        self.client += d.client;
        self.client_children += d.client_children;
    }
}

/// (own, reaped children) CPU seconds of a process from `/proc/PID/stat` (utime + stime, cutime + cstime, in
/// USER_HZ = 100 ticks a second); zeros when it cannot be read.
fn proc_cpu(pid: &str) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0.0, 0.0);
    };
    // Fields after the `(comm)`, which may hold spaces; the first of them is field 3 (state).
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return (0.0, 0.0);
    };
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let field = |n: usize| f.get(n - 3).copied().unwrap_or(0.0) / 100.0;
    (field(14) + field(15), field(16) + field(17))
}

fn secs(v: &[Duration]) -> Vec<f64> {
    v.iter()
        .map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
        .collect()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `n` copies of `input`, each with different trailing bytes (decoders stop at the image's end), so no two
/// uploads are the same file.
fn copies(input: &Path, n: usize, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let bytes = std::fs::read(input)?;
    let ext = input.extension().and_then(|e| e.to_str()).unwrap_or("bin");
    (0..n)
        .map(|i| {
            let p = dir.join(format!("in-{i:05}.{ext}"));
            let mut b = bytes.clone();
            b.extend_from_slice(format!("\nbench copy {i}\n").as_bytes());
            std::fs::write(&p, b)?;
            Ok(p)
        })
        .collect()
}

/// The bare side: every file through the child, `concurrency` at a time. Returns the wall time.
///
/// Like the fleet, which keeps every rendition it makes, the bare side keeps its outputs until the run ends
/// (each round in directories of its own, `round`). Removing them while the other side is timed would make
/// that side pay for the freed inodes: an ext4 without a journal scans past every inode freed in the last
/// minutes for each one it allocates.
async fn bare(
    child: &Path,
    args: &[&str],
    files: &[PathBuf],
    concurrency: usize,
    dir: &Path,
    round: &str,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    stream::iter(files.iter().enumerate())
        .map(|(i, f)| async move {
            let out = dir.join(format!("bare-{round}-{i}"));
            std::fs::create_dir_all(&out)?;
            let status = tokio::process::Command::new(child)
                .args(args)
                .arg(f)
                .arg("--out")
                .arg(&out)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await?;
            ensure!(
                status.success(),
                "{} failed on {}: {status}",
                child.display(),
                f.display()
            );
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(t.elapsed())
}

/// The fleet side: one `serve`, or `api` + `worker`.
struct Fleet {
    base: String,
    procs: Vec<tokio::process::Child>,
    client: reqwest::Client,
    describe: String,
    /// The fleet's own DB, read to see how far a round has got (connected once the fleet is ready).
    records: Option<mediafleet::db::Records>,
}

impl Fleet {
    async fn start(args: &BenchFleetArgs, exe: &Path, dir: &Path) -> anyhow::Result<Fleet> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let listen = listener.local_addr()?.to_string();
        drop(listener);
        let data = dir.join("fleet-data");
        let mut common: Vec<String> = vec![
            "--data-dir".into(),
            data.display().to_string(),
            "--listen".into(),
            listen.clone(),
            "--prefix".into(),
            format!("bench{}", std::process::id()),
        ];
        for (flag, v) in [
            ("--queue", &args.queue),
            ("--db", &args.db),
            ("--storage", &args.storage),
        ] {
            if let Some(v) = v {
                common.extend([flag.to_owned(), v.clone()]);
            }
        }
        let commands: &[&str] = if args.split {
            &["api", "worker"]
        } else {
            &["serve"]
        };
        let mut procs = Vec::new();
        for cmd in commands {
            let log = std::fs::File::create(dir.join(format!("{cmd}.log")))?;
            procs.push(
                tokio::process::Command::new(exe)
                    .args(&common)
                    .arg(cmd)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("starting mediafleet {cmd}"))?,
            );
        }
        let db = match &args.db {
            Some(url) => mediafleet::config::DbUrl::parse("--db", url)?,
            None => mediafleet::config::DbUrl::default_for(&data),
        };
        let mut fleet = Fleet {
            base: format!("http://{listen}"),
            procs,
            client: reqwest::Client::new(),
            records: None,
            describe: format!(
                "{} (queue {}, db {}, storage {})",
                commands.join(" + "),
                args.queue.as_deref().unwrap_or("embedded"),
                args.db.as_deref().unwrap_or("sqlite in the data dir"),
                args.storage.as_deref().unwrap_or("the data dir")
            ),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = fleet
                .client
                .get(format!("{}/readyz", fleet.base))
                .send()
                .await
            {
                if r.status().is_success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the fleet did not become ready within 60 s (see {}/*.log)",
                    dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fleet.records = Some(mediafleet::db::Records::connect(&db, None).await?);
        Ok(fleet)
    }

    fn pids(&self) -> Vec<u32> {
        self.procs
            .iter()
            .filter_map(tokio::process::Child::id)
            .collect()
    }

    fn describe(&self) -> &str {
        &self.describe
    }

    /// Uploads every file (tagged with `tag` as their external id) and waits until all are `ready`.
    /// Returns the time from the first upload to the last `ready`.
    async fn round(&self, files: &[PathBuf], tag: &str) -> anyhow::Result<Duration> {
        let t = Instant::now();
        // Four uploads in flight: a web app's handful of request workers.
        stream::iter(files)
            .map(|f| async move {
                let body = tokio::fs::read(f).await?;
                let r = self
                    .client
                    .post(format!("{}/v1/uploads?external_id={tag}", self.base))
                    .header("content-type", "image/jpeg")
                    .body(body)
                    .send()
                    .await?;
                ensure!(
                    r.status().as_u16() == 202,
                    "upload answered {}: {}",
                    r.status(),
                    r.text().await?
                );
                Ok::<_, anyhow::Error>(())
            })
            .buffer_unordered(4)
            .try_collect::<Vec<_>>()
            .await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        let records = self
            .records
            .as_ref()
            .context("the fleet's DB is not connected")?;
        loop {
            // Counted in the fleet's DB (an index lookup), not through `GET /v1/media`: listing would make the
            // api assemble every media already ready, on each poll, on the cores the fleet is measured on.
            let counts = records.status_counts(tag).await?;
            let n = |s: &str| counts.iter().find(|(st, _)| st == s).map_or(0, |c| c.1);
            let failed = n("failed");
            ensure!(failed == 0, "{failed} media failed (see the fleet's log)");
            if n("ready") >= files.len() as i64 {
                return Ok(t.elapsed());
            }
            ensure!(
                Instant::now() < deadline,
                "the fleet did not finish within 600 s"
            );
            // Every 20 ms: at most 0.02 s added to a round.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(mut self) {
        for p in &mut self.procs {
            if let Some(pid) = p.id() {
                // SIGTERM: a clean drain, so the next run's data dir is not left locked.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }
}
