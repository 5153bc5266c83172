//! The media rules of `MediaHandler`, called in-process the way the runtime calls it (SQLite and a local
//! store in a temp dir, no queue, no child process): a job that keeps failing retries with a growing delay
//! and a bumped attempt, then at the last attempt is dead-lettered and its media fails `retries_exhausted`;
//! an unreadable `media.process` fails its media; a job stopped by the runtime records its attempt.

use std::sync::Arc;
use std::time::Duration;

use mediafleet::config::DbUrl;
use mediafleet::db::{NewMedia, Records};
use mediafleet::jobs::{JobContext, MediaHandler, RetryPolicy};
use mediafleet::queue::JobClass;
use mediafleet::runtime::budget::ByteBudget;
use mediafleet::runtime::{Handler, Outcome, Stopped, Work};
use mediafleet::sandbox::Sandbox;
use mediafleet_proto::envelope::MediaProcess;
use mediafleet_proto::{Envelope, Job, MediaStatus};

struct Setup {
    handler: MediaHandler,
    records: Records,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = DbUrl::parse(
        "--db",
        &format!("sqlite://{}", dir.path().join("m.db").display()),
    )
    .unwrap();
    let records = Records::connect(&db, None).await.unwrap();
    records.migrate().await.unwrap();
    let inner = mediafleet::queue::embedded::EmbeddedQueue::open(
        &dir.path().join("q.db"),
        Default::default(),
    )
    .await
    .unwrap();
    let store = mediafleet::storage::local::LocalStore::open(&dir.path().join("store")).unwrap();
    let ctx = Arc::new(JobContext {
        records: records.clone(),
        store: Arc::new(store),
        queue: Arc::new(inner),
        sandbox: Sandbox::in_process(1 << 30),
        prefix: "t".into(),
        profiles: Default::default(),
        limits: Default::default(),
        job_timeout: Duration::from_secs(10),
        cache: None,
        public_url: None,
        webhooks: Default::default(),
        scratch: ByteBudget::new(u64::MAX),
        media_slots: Default::default(),
    });
    let policy = RetryPolicy {
        max_attempts: 3,
        retry_base: Duration::from_secs(2),
        retry_max: Duration::from_secs(60),
        outage_budget: Duration::from_secs(3600),
    };
    Setup {
        handler: MediaHandler::new(ctx, policy, "test:1".into()),
        records,
        dir,
    }
}

async fn queued_image(records: &Records) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    records
        .insert_media(&NewMedia {
            id: id.to_string(),
            kind: "image".into(),
            profile: "default".into(),
            source_key: format!("t/originals/{id}"),
            filename: None,
            content_type: "image/png".into(),
            bytes: 10,
            sha256: "ab".into(),
            external_id: None,
        })
        .await
        .unwrap();
    id
}

fn work(s: &Setup, body: Vec<u8>, delivery_count: u32) -> Work {
    Work {
        class: JobClass::new("image").unwrap(),
        body,
        delivery_count,
        scratch: s.dir.path().to_path_buf(),
    }
}

fn process(id: uuid::Uuid, attempt: u32) -> Vec<u8> {
    let mut env = Envelope::new(
        id,
        &Job::MediaProcess(MediaProcess {
            source_key: format!("t/originals/{id}"),
            profile: "default".into(),
            stage: None,
        }),
    );
    env.attempt = attempt;
    env.to_bytes()
}

#[tokio::test]
async fn failures_retry_with_a_bumped_attempt_until_the_last_then_the_media_fails() {
    let s = setup().await;
    let id = queued_image(&s.records).await;
    // Attempt 1 of 3 panicked: retried, 2–4 s later (base 2 s, jittered), as attempt 2.
    let first = s.handler.panicked(&work(&s, process(id, 1), 1)).await;
    let Outcome::Retry { delay, body } = first else {
        panic!("{first:?}")
    };
    assert!(
        delay >= Duration::from_secs(2) && delay <= Duration::from_secs(4),
        "{delay:?}"
    );
    assert_eq!(Envelope::parse(&body).unwrap().attempt, 2);
    assert_eq!(
        s.records
            .media(&id.to_string())
            .await
            .unwrap()
            .unwrap()
            .status,
        MediaStatus::Queued
    );

    // A delivery the broker lost counts too: envelope attempt 2, delivered twice → attempt 3 = the last.
    let last = s
        .handler
        .timed_out(&work(&s, process(id, 2), 2), Duration::from_secs(70))
        .await;
    let Outcome::DeadLetter { reason } = last else {
        panic!("{last:?}")
    };
    assert!(
        reason.contains("retries exhausted after 3 attempts"),
        "{reason}"
    );
    assert!(reason.contains("timeout"), "{reason}");
    let media = s.records.media(&id.to_string()).await.unwrap().unwrap();
    assert_eq!(media.status, MediaStatus::Failed);
    assert_eq!(media.error_code.as_deref(), Some("retries_exhausted"));
    assert_eq!(
        media.error_message.as_deref(),
        Some("gave up after 3 attempts; the last one failed with timeout"),
        "clients get one stable line"
    );
}

#[tokio::test]
async fn an_unreadable_media_process_is_dead_lettered_and_fails_its_media() {
    let s = setup().await;
    let id = queued_image(&s.records).await;
    let mut env: serde_json::Value = serde_json::from_slice(&process(id, 1)).unwrap();
    env["payload"] = serde_json::json!({"profile": 7});
    let out = s
        .handler
        .handle(&work(&s, serde_json::to_vec(&env).unwrap(), 1))
        .await;
    assert!(matches!(out, Outcome::DeadLetter { .. }), "{out:?}");
    let media = s.records.media(&id.to_string()).await.unwrap().unwrap();
    assert_eq!(media.status, MediaStatus::Failed);
    assert_eq!(media.error_code.as_deref(), Some("invalid_message"));

    let garbage = s.handler.handle(&work(&s, b"{not json".to_vec(), 1)).await;
    assert!(matches!(garbage, Outcome::DeadLetter { .. }), "{garbage:?}");
}

#[tokio::test]
async fn a_job_stopped_by_the_runtime_records_how_its_attempt_ended() {
    let s = setup().await;
    let id = queued_image(&s.records).await;
    let w = work(&s, process(id, 1), 1);
    let env = Envelope::parse(&w.body).unwrap();
    s.records
        .start_attempt(
            &env.job_id.to_string(),
            1,
            &id.to_string(),
            &env.kind,
            "image",
            "test:1",
        )
        .await
        .unwrap();
    s.handler.stopped(&w, &Stopped::Released).await;
    let attempts = s.records.attempts(&id.to_string()).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome.as_deref(), Some("released"));
    // A release is not the media's fault: it stays queued for the next delivery.
    assert_eq!(
        s.records
            .media(&id.to_string())
            .await
            .unwrap()
            .unwrap()
            .status,
        MediaStatus::Queued
    );
}

#[test]
fn the_time_limit_covers_the_longest_transcode_a_media_may_need() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(setup());
    let id = uuid::Uuid::now_v7();
    let limit = s.handler.time_limit(&work(&s, process(id, 1), 1)).unwrap();
    let limits = mediafleet_workers::Limits::default();
    let longest = Duration::from_secs(10)
        + Duration::from_secs_f64(
            limits.video_seconds * mediafleet::jobs::TRANSCODE_SECONDS_PER_MEDIA_SECOND,
        );
    assert!(limit > longest, "{limit:?} ≤ {longest:?}");
    // Other kinds: their own timeout and a little slack.
    let warm = Envelope::new(
        id,
        &Job::CacheWarm(mediafleet_proto::envelope::CacheWarm { version: 1 }),
    );
    let w = s.handler.time_limit(&work(&s, warm.to_bytes(), 1)).unwrap();
    assert!(
        w > Duration::from_secs(10) && w <= Duration::from_secs(120),
        "{w:?}"
    );
}
