//! `GET /metrics` on the api: HTTP requests counted by route template (never a media id), method and status,
//! with a duration histogram; open on a loopback api without keys, behind an API key when keys are required.

mod common;

use std::time::Duration;

use common::*;

async fn scrape(base: &str, key: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the sample whose line starts with `name{` and holds every label pair in `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn requests_are_counted_by_route_template_method_and_status() {
    let s = serve_with("").await;
    let (status, v) = upload(&s.base, &fixture("photo.jpg"), "photo.jpg").await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap();
    assert_eq!(
        wait_final(&s.base, id, Duration::from_secs(60)).await["status"],
        "ready"
    );
    let missing = reqwest::get(format!("{}/v1/media/{}", s.base, uuid::Uuid::now_v7()))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let (code, text) = scrape(&s.base, None).await;
    assert_eq!(code, 200, "{text}");
    let uploads = [
        r#"route="/v1/uploads""#,
        r#"method="POST""#,
        r#"status="202""#,
    ];
    assert_eq!(
        sample(&text, "mediafleet_http_requests_total", &uploads),
        Some(1.0),
        "{text}"
    );
    let shown = [
        r#"route="/v1/media/{id}""#,
        r#"method="GET""#,
        r#"status="200""#,
    ];
    assert!(
        sample(&text, "mediafleet_http_requests_total", &shown).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    let not_found = [r#"route="/v1/media/{id}""#, r#"status="404""#];
    assert_eq!(
        sample(&text, "mediafleet_http_requests_total", &not_found),
        Some(1.0),
        "{text}"
    );
    let timed = [r#"route="/v1/uploads""#, r#"method="POST""#];
    assert_eq!(
        sample(
            &text,
            "mediafleet_http_request_duration_seconds_count",
            &timed
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains(id), "a media id became a label value");
    assert!(
        text.contains("# HELP mediafleet_http_requests_total "),
        "{text}"
    );
    assert!(text.contains("# TYPE mediafleet_http_request_duration_seconds histogram"));
}

#[tokio::test]
async fn with_keys_required_metrics_need_a_key() {
    let s = serve_with("[auth]\nrequire_keys = true\n").await;
    let (code, _) = scrape(&s.base, None).await;
    assert_eq!(code, 401);
    let key = s.create_key("prometheus");
    let (code, text) = scrape(&s.base, Some(&key)).await;
    assert_eq!(code, 200, "{text}");
    // The refused scrape was counted too.
    let refused = [r#"route="/metrics""#, r#"status="401""#];
    assert_eq!(
        sample(&text, "mediafleet_http_requests_total", &refused),
        Some(1.0),
        "{text}"
    );
}
