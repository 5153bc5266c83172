//! End to end on real servers: `api` and `worker` as two OS processes, on RabbitMQ, moto S3 and Postgres.
//! Each test gets its own queue prefix, bucket and database.

mod common;

use std::time::Duration;

use common::fleet::start_fleet;
use common::*;
use mediafleet::queue::rabbitmq::{RabbitConfig, RabbitQueue};
use mediafleet::queue::{JobClass, JobQueue, QueueAdmin};

#[tokio::test]
async fn upload_to_ready_with_api_and_worker_processes() {
    let f = start_fleet(None).await;
    let (status, b) = upload(&f.base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(status, 202, "{b}");
    let media = wait_final(&f.base, b["id"].as_str().unwrap(), Duration::from_secs(90)).await;
    assert_eq!(media["status"], "ready", "{media}");
    // On S3 the stable route redirects to a short-lived presigned URL.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!(
        "{}{}",
        f.base,
        rendition(&media, "thumb")["url"].as_str().unwrap()
    );
    let r = client.get(&url).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature"), "{location}");
    let bytes = reqwest::get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let img = image::load_from_memory(&bytes).expect("thumb decodes");
    assert!(img.width().max(img.height()) <= 256);

    let (s415, _) = upload(&f.base, &fixture("text.jpg"), "text.jpg").await;
    assert_eq!(s415, 415);
    let (_, t) = upload(&f.base, &fixture("truncated.jpg"), "t.jpg").await;
    let t = wait_final(&f.base, t["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(t["error"]["code"], "corrupt_media", "{t}");
}

#[tokio::test]
async fn bad_json_reaches_the_dlq_with_its_reason() {
    let f = start_fleet(None).await;
    let q = RabbitQueue::connect(RabbitConfig {
        url: amqp_url(),
        prefix: f.prefix.clone(),
        prefetch: 1,
        class_prefetch: Default::default(),
        retry_tiers: vec![Duration::from_secs(1)],
        delivery_limit: 20,
        management_url: None,
    })
    .await
    .unwrap();
    let image = JobClass::new("image").unwrap();
    q.publish(&image, b"{this is not json").await.unwrap();
    q.publish(&image, br#"{"version":99,"job_id":"x"}"#)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let dead = q.dead_letters(&image, 10).await.unwrap();
        if dead.len() >= 2 {
            let reasons: Vec<_> = dead.iter().map(|d| d.reason.as_str()).collect();
            assert!(
                reasons.iter().any(|r| r.contains("invalid envelope")),
                "{reasons:?}"
            );
            assert!(
                reasons.iter().any(|r| r.contains("version 99")),
                "{reasons:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "poison messages never reached the DLQ: {dead:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The worker survived them.
    let (_, b) = upload(&f.base, &fixture("alpha.png"), "a.png").await;
    let m = wait_final(&f.base, b["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(m["status"], "ready", "{m}");
}
