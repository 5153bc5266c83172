//! `mediafleet bench sandbox`: what the sandbox costs per job. The same still image through the default
//! profile, alternately in this process (`workers::process`, no isolation) and through the sandbox a worker
//! uses (the `mediafleet-image` child: its own process group, a cleared environment, rlimits, a network
//! namespace or a socket-denying seccomp filter, landlock), so the difference per job is the isolation's price.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use mediafleet_proto::Profile;
use mediafleet_workers::Limits;

use crate::sandbox::Sandbox;

/// Arguments of `bench sandbox`.
#[derive(Debug, clap::Args)]
pub struct BenchSandboxArgs {
    /// The image to process (default: fixtures/photo.jpg).
    #[arg(long, default_value = "fixtures/photo.jpg")]
    input: PathBuf,
    /// Timed jobs per side (after one untimed warm-up each).
    #[arg(long, default_value_t = 40)]
    runs: usize,
}

/// Runs the benchmark; prints per-job figures on stdout.
pub async fn run(args: BenchSandboxArgs) -> anyhow::Result<()> {
    let args = &args;
    anyhow::ensure!(
        args.input.is_file(),
        "{} is not a file (run from the repository root or pass --input)",
        args.input.display()
    );
    let memory = 4 << 30;
    let child = Sandbox::current_exe(memory).context("locating the mediafleet binary")?;
    let inline = Sandbox::in_process(memory);
    let profile = Profile::default_profile();
    let limits = Limits::default();
    let work = tempfile::tempdir()?;
    let once = |sandbox: &Sandbox, i: usize| {
        let out = work.path().join(format!("out-{i}"));
        let (sandbox, profile, input) = (sandbox.clone(), profile.clone(), args.input.clone());
        async move {
            std::fs::create_dir_all(&out)?;
            let t = Instant::now();
            let report = sandbox
                .run(&input, &profile, &limits, &out, Duration::from_secs(60))
                .await?;
            let took = t.elapsed();
            anyhow::ensure!(report.is_ready(), "the job failed: {:?}", report.error);
            std::fs::remove_dir_all(&out)?;
            Ok::<_, anyhow::Error>(took)
        }
    };
    once(&child, 0).await?;
    once(&inline, 0).await?;
    let (mut sandboxed, mut in_process) = (Vec::new(), Vec::new());
    for i in 0..args.runs {
        // Alternating, so both sides see the same machine.
        sandboxed.push(once(&child, i).await?);
        in_process.push(once(&inline, i).await?);
    }
    let (s, p) = (median(&mut sandboxed), median(&mut in_process));
    println!(
        "input: {}  jobs per side: {}  layers: {}",
        args.input.display(),
        args.runs,
        crate::sandbox::last_layers().unwrap_or_else(|| "(not reported)".into())
    );
    println!("{:<28} {:>12} {:>12}", "side", "median ms", "mean ms");
    println!(
        "{:<28} {:>12.2} {:>12.2}",
        "sandboxed child",
        ms(s),
        ms(mean(&sandboxed))
    );
    println!(
        "{:<28} {:>12.2} {:>12.2}",
        "in process (no isolation)",
        ms(p),
        ms(mean(&in_process))
    );
    println!(
        "overhead per job: {:.2} ms (median), ratio {:.2}×",
        ms(s) - ms(p),
        s.as_secs_f64() / p.as_secs_f64()
    );
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / u32::try_from(v.len().max(1)).unwrap_or(u32::MAX)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
