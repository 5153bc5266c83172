//! End to end on SQS: `mediafleet queues setup` against moto, then `api` and `worker` as two OS processes on
//! SQS + moto S3 + Postgres. Each test has its own queue prefix, bucket and database.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use common::fleet::{sqs_url, start_fleet_on};
use common::*;
use mediafleet::queue::sqs::{SqsConfig, SqsQueue};
use mediafleet::queue::{JobClass, JobQueue, QueueAdmin};

async fn sqs_queue(prefix: &str) -> SqsQueue {
    let url = url::Url::parse(&sqs_url()).unwrap();
    SqsQueue::connect(SqsConfig::from_url(&url, prefix).unwrap())
        .await
        .unwrap()
}

fn require_moto() {
    require_tcp(
        s3_endpoint().trim_start_matches("http://"),
        "moto_server (SQS and S3)",
    );
}

#[tokio::test]
async fn upload_to_ready_on_sqs_with_api_and_worker_processes() {
    require_moto();
    let f = start_fleet_on(sqs_url(), None).await;

    // `queues setup` made a work queue and a DLQ per class, joined by a redrive policy.
    let q = sqs_queue(&f.prefix).await;
    for class in ["image", "video", "cache", "notify"] {
        let work = q
            .client()
            .get_queue_url()
            .queue_name(format!("{}-{class}", f.prefix))
            .send()
            .await
            .expect("work queue exists");
        let attrs = q
            .client()
            .get_queue_attributes()
            .queue_url(work.queue_url().unwrap())
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let attrs = attrs.attributes().unwrap();
        let policy = &attrs[&QueueAttributeName::RedrivePolicy];
        assert!(
            policy.contains(&format!("{}-{class}-dlq", f.prefix)),
            "{policy}"
        );
        assert!(policy.contains("30"), "maxReceiveCount 30: {policy}");
        assert_eq!(
            attrs[&QueueAttributeName::VisibilityTimeout],
            "3",
            "the lease"
        );
    }

    let (status, b) = upload(&f.base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(status, 202, "{b}");
    let media = wait_final(&f.base, b["id"].as_str().unwrap(), Duration::from_secs(90)).await;
    assert_eq!(media["status"], "ready", "{media}");
    let thumb = rendition(&media, "thumb");
    assert!(thumb["width"].as_u64().unwrap() <= 256, "{media}");

    // A corrupt file fails with a code; the job is acked, not retried.
    let (_, t) = upload(&f.base, &fixture("truncated.jpg"), "t.jpg").await;
    let t = wait_final(&f.base, t["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(t["error"]["code"], "corrupt_media", "{t}");

    // Poison messages reach the DLQ with their reasons, and the worker lives on.
    let image = JobClass::new("image").unwrap();
    q.publish(&image, b"{this is not json").await.unwrap();
    q.publish(&image, br#"{"version":99,"job_id":"x"}"#)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dead = q.dead_letters(&image, 10).await.unwrap();
        let reasons: Vec<_> = dead.iter().map(|d| d.reason.clone()).collect();
        if reasons.iter().any(|r| r.contains("invalid envelope"))
            && reasons.iter().any(|r| r.contains("version 99"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "poison never reached the DLQ: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, b) = upload(&f.base, &fixture("alpha.png"), "a.png").await;
    let m = wait_final(&f.base, b["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(m["status"], "ready", "{m}");

    // The queues are empty again: nothing left behind in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = q.depth(&image).await.unwrap();
        if d.ready == 0 && d.in_flight == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "{d:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn worker_refuses_to_start_without_the_queues() {
    require_moto();
    aws_env();
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("nq");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(common::bin())
            .args(["worker", "--classes", "image"])
            .env("MEDIAFLEET_QUEUE", sqs_url())
            .env("MEDIAFLEET_PREFIX", &prefix)
            .env("MEDIAFLEET_DATA_DIR", dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the worker exits instead of waiting for queues")
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{prefix}-image")) && stderr.contains("queues setup"),
        "the error names the queue and the fix: {stderr}"
    );
}

#[tokio::test]
async fn startup_refuses_a_queue_without_redrive() {
    require_moto();
    aws_env();
    let prefix = unique("nr");
    let q = sqs_queue(&prefix).await;
    for name in [format!("{prefix}-image"), format!("{prefix}-image-dlq")] {
        q.client()
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap();
    }
    let image = JobClass::new("image").unwrap();
    let err = q.declare(std::slice::from_ref(&image)).await.unwrap_err();
    assert!(err.to_string().contains("no redrive policy"), "{err}");
    // `queues setup` converges the existing queues.
    q.setup(std::slice::from_ref(&image)).await.expect("setup");
    q.declare(std::slice::from_ref(&image))
        .await
        .expect("verified after setup");
}
