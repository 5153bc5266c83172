//! Smoke runs of the side-by-side benchmarks, so they keep working: tiny inputs, one run, no figures checked
//! (speed is measured in BENCHMARKS.md, never asserted in tests).

mod common;

use common::*;

fn bench(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(bin())
        .arg("bench")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run mediafleet bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bench {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn bench_image_runs_side_by_side_with_vipsthumbnail() {
    assert!(
        std::process::Command::new("vipsthumbnail")
            .arg("--help")
            .output()
            .is_ok(),
        "vipsthumbnail is needed (apt libvips-tools; scripts/ensure-deps.sh installs it)"
    );
    let photo = fixture("photo.jpg");
    let out = bench(&["image", "--runs", "1", photo.to_str().unwrap()], &[]);
    assert!(
        out.contains("photo.jpg") && out.contains("wall ratio"),
        "{out}"
    );
}

#[tokio::test]
async fn bench_queue_runs_on_embedded_and_rabbitmq() {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    let db = pg_database().await;
    let out = bench(
        &[
            "queue",
            "--backends",
            "embedded,rabbitmq",
            "--jobs",
            "40",
            "--amqp",
            &amqp_url(),
            "--pg",
            &db,
        ],
        &[],
    );
    assert!(
        out.contains("embedded") && out.contains("rabbitmq"),
        "{out}"
    );
}

#[test]
fn bench_fleet_runs_uploads_through_serve_beside_the_bare_child() {
    let photo = fixture("photo.jpg");
    let out = bench(
        &[
            "fleet",
            "--uploads",
            "3",
            "--rounds",
            "1",
            "--input",
            photo.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.contains("ratio fleet/bare"), "{out}");
}
