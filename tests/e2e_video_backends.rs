//! The video and audio pipeline on the production backends: `api` and `worker` processes on RabbitMQ or
//! SQS, moto S3 and Postgres, and `serve` on SQLite. Every path (poster, transcode, remux, HLS ladder,
//! audio-only) must reach `ready`, and every job must succeed on its first attempt: a retry here means a
//! statement or a stage that only works the second time, which on a busy fleet is a dead letter.

mod common;

use std::path::Path;
use std::time::Duration;

use common::fleet::{refs, sqs_url, start_fleet_on};
use common::*;
use serde_json::Value;

/// (fixture, profile, renditions that must exist).
const CASES: [(&str, &str, &[&str]); 4] = [
    // H.264 1080p with AAC: transcoded to 720p, and the streaming profile adds the HLS ladder.
    (
        "av/clip-1080.mp4",
        "streaming",
        &["poster", "thumb", "mp4-720", "hls"],
    ),
    // Already 720p-compatible H.264/AAC: the remux (stream copy) path.
    (
        "av/compatible.mp4",
        "default",
        &["poster", "thumb", "mp4-720"],
    ),
    // Video without audio.
    ("av/noaudio.mp4", "default", &["poster", "thumb", "mp4-720"]),
    // Audio only.
    ("av/tone.flac", "default", &["audio", "peaks"]),
];

async fn upload_with_profile(base: &str, path: &Path, profile: &str) -> String {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let form = reqwest::multipart::Form::new()
        .text("profile", profile.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/uploads"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Uploads every case, waits for each, checks its renditions; returns the media ids.
async fn run_cases(base: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (file, profile, _) in CASES {
        ids.push(upload_with_profile(base, &fixture(file), profile).await);
    }
    for (id, (file, _, want)) in ids.iter().zip(CASES) {
        let media = wait_final(base, id, Duration::from_secs(300)).await;
        assert_eq!(media["status"], "ready", "{file}: {media}");
        for name in want {
            let r = rendition(&media, name);
            if ["mp4-720", "audio"].contains(name) {
                assert!(
                    r["duration_seconds"].as_f64().is_some_and(|d| d > 0.5),
                    "{file} {name}: {r}"
                );
            }
        }
    }
    ids
}

/// A media's attempts, on either engine (cache warms aside: they are not media work).
const ATTEMPTS_SQL: &str = "SELECT kind, attempt, outcome, error_message FROM job_attempts \
    WHERE media_id = $1 AND kind <> 'cache.warm' ORDER BY started_at";

/// Every attempt row of these media: (kind, attempt, outcome, error).
type AttemptRow = (String, i64, Option<String>, Option<String>);

fn assert_first_attempts(rows: &[AttemptRow], media: usize) {
    // One job per still stage; a video has two (poster, then transcode), audio one.
    assert!(
        rows.len() > media,
        "expected a job per stage of every media, got {rows:?}"
    );
    let first = rows.iter().map(|r| r.1).min().unwrap();
    let bad: Vec<_> = rows
        .iter()
        .filter(|(_, attempt, outcome, _)| *attempt != first || outcome.as_deref() != Some("ok"))
        .collect();
    assert!(
        bad.is_empty(),
        "jobs that needed more than one attempt: {bad:?}"
    );
}

async fn pg_attempts(db: &str, ids: &[String]) -> Vec<AttemptRow> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(db).await.unwrap();
    let mut out = Vec::new();
    for id in ids {
        let rows: Vec<AttemptRow> = sqlx::query_as(ATTEMPTS_SQL)
            .bind(id)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        out.extend(rows);
    }
    out
}

/// The attempt of the job that made each media ready is written just after the media turns ready.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}

async fn on_postgres(queue: String) {
    let f = start_fleet_on(queue, None).await;
    let ids = run_cases(&f.base).await;
    settle().await;
    let db = f
        .env
        .iter()
        .find(|(k, _)| k == "MEDIAFLEET_DB")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_first_attempts(&pg_attempts(&db, &ids).await, ids.len());
}

#[tokio::test]
async fn video_on_rabbitmq_s3_postgres_every_job_first_attempt() {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    on_postgres(amqp_url()).await;
}

#[tokio::test]
async fn video_on_sqs_s3_postgres_every_job_first_attempt() {
    require_tcp("127.0.0.1:5055", "moto_server");
    on_postgres(sqs_url()).await;
}

#[tokio::test]
async fn video_on_embedded_sqlite_every_job_first_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fast_config(dir.path(), "");
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let env: Vec<(String, String)> = vec![
        ("MEDIAFLEET_CONFIG".into(), cfg.display().to_string()),
        ("MEDIAFLEET_DATA_DIR".into(), data.display().to_string()),
        ("MEDIAFLEET_LISTEN".into(), listen.clone()),
    ];
    let _serve = Proc::spawn("serve", &["serve"], &refs(&env));
    let base = format!("http://{listen}");
    wait_healthy(&base, Duration::from_secs(30)).await;
    let ids = run_cases(&base).await;
    settle().await;
    use sqlx::Connection;
    let url = format!("sqlite://{}", data.join("mediafleet.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut rows = Vec::new();
    for id in &ids {
        let r: Vec<AttemptRow> = sqlx::query_as(ATTEMPTS_SQL)
            .bind(id)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        rows.extend(r);
    }
    assert_first_attempts(&rows, ids.len());
}
