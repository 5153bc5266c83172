//! `mediafleet bench sandbox`: what the sandbox costs per job. The same still image through the default
//! profile, alternately in this process (`workers::process`, no isolation) and through the sandbox a worker
//! uses (the `mediafleet-image` child: its own process group, a cleared environment, rlimits, a network
//! namespace or a socket-denying seccomp filter, landlock), so the difference per job is the isolation's price.
//! The child side runs twice: started with its job, and warm (started ahead, as a worker does by default).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mediafleet_proto::Profile;
use mediafleet_workers::Limits;

use mediafleet::sandbox::Sandbox;

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
    let cold = Sandbox::with_exe(crate::mediafleet_exe()?, memory).with_warm_children(0);
    let warm = Sandbox::with_exe(crate::mediafleet_exe()?, memory).with_warm_children(1);
    warm.prewarm(None);
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
    for side in [&cold, &warm, &inline] {
        once(side, 0).await?;
    }
    let (mut cold_t, mut warm_t, mut in_process) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.runs {
        // Alternating, so every side sees the same machine. The warm side's next child starts while the
        // job runs, as in a worker; a short pause lets it settle, as a worker's queue wait would.
        cold_t.push(once(&cold, i).await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
        warm_t.push(once(&warm, i).await?);
        in_process.push(once(&inline, i).await?);
    }
    let (c, w, p) = (
        median(&mut cold_t),
        median(&mut warm_t),
        median(&mut in_process),
    );
    println!(
        "input: {}  jobs per side: {}  layers: {}",
        args.input.display(),
        args.runs,
        mediafleet::sandbox::last_layers().unwrap_or_else(|| "(not reported)".into())
    );
    println!(
        "{:<36} {:>10} {:>10} {:>14}",
        "side", "median ms", "mean ms", "overhead ms"
    );
    for (name, m, all) in [
        ("sandboxed child, started per job", c, &cold_t),
        ("sandboxed child, warm (default)", w, &warm_t),
        ("in process (no isolation)", p, &in_process),
    ] {
        println!(
            "{:<36} {:>10.2} {:>10.2} {:>14.2}",
            name,
            ms(m),
            ms(mean(all)),
            ms(m) - ms(p)
        );
    }
    println!(
        "overhead per job (median): warm {:.2} ms, started per job {:.2} ms; ratio warm/in-process {:.2}×",
        ms(w) - ms(p),
        ms(c) - ms(p),
        w.as_secs_f64() / p.as_secs_f64()
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
