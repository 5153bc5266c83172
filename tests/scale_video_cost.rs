//! A video's transcode is counted by its media duration: the poster stage notes the job's size before it
//! enqueues the transcode, the worker removes the note when the transcode ends, and the measured seconds of
//! work per media-second of its profile are learned (embedded backends, one `serve` process).

mod common;

use std::time::Duration;

use common::*;
use mediafleet::config::DbUrl;
use mediafleet::db::Records;

#[tokio::test]
async fn a_transcode_teaches_the_seconds_per_media_second_of_its_profile() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fast_config(dir.path(), "");
    let (_serve, base) = serve_embedded(dir.path(), &cfg).await;
    let data = dir.path().join("data");
    let (status, body) = upload(&base, &fixture("clip.mp4"), "clip.mp4").await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap();
    let media = wait_final(&base, id, Duration::from_secs(180)).await;
    assert_eq!(media["status"], "ready", "{media}");
    let duration = media["metadata"]["duration_seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("no duration in {media}"));

    let r = Records::connect(&DbUrl::Sqlite(data.join("mediafleet.db")), None)
        .await
        .unwrap();
    // The rate is folded in by a task the worker spawns after the job ends: give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rates = loop {
        let rates = r.media_rates().await.unwrap();
        if !rates.is_empty() || std::time::Instant::now() > deadline {
            break rates;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rates.len(), 1, "{rates:?}");
    assert_eq!(
        (rates[0].class.as_str(), rates[0].profile.as_str()),
        ("video", "default")
    );
    assert!(
        rates[0].seconds_per_media_second > 0.0 && rates[0].samples == 1,
        "{rates:?} for a {duration} s clip"
    );
    let since = mediafleet::db::now_ms() - 3_600_000;
    assert!(
        r.known_work(since).await.unwrap().is_empty(),
        "the note is removed when the transcode ends"
    );
    // Its attempts were recorded on the classes they ran on: the poster on image, the transcode on video.
    let attempts = r.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
}
