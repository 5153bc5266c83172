//! The dead-letter side of the contract (`QueueAdmin`): peek, show, redrive and purge, on every backend, and
//! the body a retry carries.
//!
//! On RabbitMQ and SQS every one of these operations scans the DLQ (RabbitMQ: `basic_get` held until the
//! channel closes; SQS: receives under a short visibility timeout, handed back at the end), so the tests
//! also check that what a scan did not remove is back, and counted by `depth`, when the call returns.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mediafleet::queue::{dead_letter_id, DeadLetter};
use mediafleet_proto::Envelope;

use super::harness::*;

/// Publishes each body, receives them all and dead-letters each with `reason: <n>`. Returns the time just
/// before the first dead-lettering. (Received a few at a time: on RabbitMQ the consumer's prefetch is 3.)
async fn dead_letter_all(ns: &Ns, bodies: &[Vec<u8>], reason: &str) -> DateTime<Utc> {
    for body in bodies {
        ns.first.publish(&ns.class, body).await.expect("publish");
    }
    // Whole seconds: a broker may keep the time to the second.
    let t0 = DateTime::from_timestamp(Utc::now().timestamp() - 1, 0).unwrap();
    let mut n = 0;
    while n < bodies.len() {
        let want = (bodies.len() - n).min(3);
        let got = receive_n(&*ns.first, &ns.class, want, Duration::from_secs(10)).await;
        assert!(
            !got.is_empty(),
            "{:?}: {n} of {} delivered",
            ns.backend,
            bodies.len()
        );
        for d in got {
            d.dead_letter(&format!("{reason}: {n}"))
                .await
                .expect("dead_letter");
            n += 1;
        }
    }
    t0
}

/// Waits until the DLQ of the namespace's class reads `n` and the work queue nothing ready.
async fn dlq_reads(ns: &Ns, n: u64) {
    let d = depth_until(&*ns.admin, &ns.class, Duration::from_secs(10), |d| {
        d.dlq == n
    })
    .await;
    assert_eq!(d.dlq, n, "{:?}: {d:?}", ns.backend);
}

fn ids(dead: &[DeadLetter]) -> Vec<String> {
    let mut ids: Vec<String> = dead.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    ids
}

fn job_ids(envs: &[Envelope]) -> Vec<String> {
    let mut ids: Vec<String> = envs.iter().map(|e| e.job_id.to_string()).collect();
    ids.sort();
    ids
}

pub(crate) async fn dlq_peek_leaves_the_dlq_as_it_was(b: Backend) {
    let ns = Ns::new(b).await;
    let envs: Vec<Envelope> = (0..3).map(|_| envelope()).collect();
    let bodies: Vec<Vec<u8>> = envs.iter().map(Envelope::to_bytes).collect();
    let t0 = dead_letter_all(&ns, &bodies, "retries exhausted; last error: s3 down").await;
    dlq_reads(&ns, 3).await;

    let some = ns.admin.dead_letters(&ns.class, 2).await.expect("peek");
    assert_eq!(some.len(), 2, "{b:?}: the limit holds: {some:?}");
    dlq_reads(&ns, 3).await;
    let all = ns.admin.dead_letters(&ns.class, 10).await.expect("peek");
    assert_eq!(ids(&all), job_ids(&envs), "{b:?}: a peek removes nothing");
    dlq_reads(&ns, 3).await;

    for d in &all {
        let env = envs.iter().find(|e| e.job_id.to_string() == d.id).unwrap();
        assert_eq!(d.media_id, Some(env.media_id.to_string()), "{b:?}");
        assert_eq!(d.kind.as_deref(), Some("cache.warm"), "{b:?}");
        assert_eq!(d.attempts, 1, "{b:?}");
        assert!(
            d.reason
                .starts_with("retries exhausted; last error: s3 down: "),
            "{b:?}: the reason and last error are kept: {:?}",
            d.reason
        );
        let at = d
            .dead_lettered_at
            .unwrap_or_else(|| panic!("{b:?}: no dead-letter time: {d:?}"));
        assert!(
            at >= t0 && at <= Utc::now() + chrono::Duration::seconds(1),
            "{b:?}: dead-lettered at {at}, test began dead-lettering at {t0}"
        );
        assert_eq!(d.body.as_bytes(), env.to_bytes(), "{b:?}");
    }
    // Nothing went back to the work queue.
    assert!(ns
        .first
        .receive(&ns.class, 10, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    ns.cleanup().await;
}

pub(crate) async fn dlq_show_finds_one_by_id(b: Backend) {
    let ns = Ns::new(b).await;
    let envs: Vec<Envelope> = (0..3).map(|_| envelope()).collect();
    let bodies: Vec<Vec<u8>> = envs.iter().map(Envelope::to_bytes).collect();
    dead_letter_all(&ns, &bodies, "corrupt_media").await;
    let want = &envs[1];
    let shown = ns
        .admin
        .dead_letter(&ns.class, &want.job_id.to_string())
        .await
        .expect("show")
        .unwrap_or_else(|| panic!("{b:?}: the dead letter was not found"));
    assert_eq!(shown.id, want.job_id.to_string());
    assert_eq!(shown.media_id, Some(want.media_id.to_string()));
    assert_eq!(shown.body.as_bytes(), want.to_bytes());
    assert!(shown.reason.starts_with("corrupt_media: "), "{shown:?}");
    let missing = ns
        .admin
        .dead_letter(&ns.class, &uuid::Uuid::now_v7().to_string())
        .await
        .expect("show an unknown id");
    assert_eq!(missing, None, "{b:?}");
    dlq_reads(&ns, 3).await;
    ns.cleanup().await;
}

pub(crate) async fn dlq_redrive_resets_the_attempt_and_keeps_the_rest(b: Backend) {
    let ns = Ns::new(b).await;
    // A job on its third attempt, waiting out an outage, from a newer producer (a field this build does not
    // know), dead-lettered; and two ordinary ones.
    let mut tired = envelope();
    tired.attempt = 3;
    tired
        .extra
        .insert("priority".into(), serde_json::json!("bulk"));
    let tired = tired.waiting_out_outage("2026-12-02T07:00:00Z".parse().unwrap());
    let others: Vec<Envelope> = (0..2).map(|_| envelope()).collect();
    let mut bodies = vec![tired.to_bytes()];
    bodies.extend(others.iter().map(Envelope::to_bytes));
    dead_letter_all(&ns, &bodies, "retries exhausted").await;
    dlq_reads(&ns, 3).await;
    let listed = ns
        .admin
        .dead_letter(&ns.class, &tired.job_id.to_string())
        .await
        .unwrap()
        .expect("listed");
    assert_eq!(listed.attempts, 3, "{b:?}");

    // By id: exactly that one goes back, with a full retry budget and nothing else changed.
    let id = tired.job_id.to_string();
    let r = ns
        .admin
        .redrive(&ns.class, Some(std::slice::from_ref(&id)), usize::MAX)
        .await
        .expect("redrive");
    assert_eq!(
        (r.moved.as_slice(), r.skipped.len(), r.duplicates),
        (std::slice::from_ref(&id), 0, 0),
        "{b:?}"
    );
    let d = receive_n(&*ns.first, &ns.class, 1, Duration::from_secs(10))
        .await
        .pop()
        .unwrap_or_else(|| panic!("{b:?}: the redriven job never arrived"));
    assert_eq!(
        d.body(),
        tired.redriven().to_bytes(),
        "{b:?}: the envelope is kept but for attempt and outage"
    );
    let back = Envelope::parse(d.body()).unwrap();
    assert_eq!(
        (back.attempt, back.outage_since(), back.outage_retries()),
        (1, None, 0)
    );
    assert_eq!(back.extra.get("priority"), Some(&serde_json::json!("bulk")));
    assert_eq!(
        (back.job_id, back.media_id, back.enqueued_at, &back.payload),
        (
            tired.job_id,
            tired.media_id,
            tired.enqueued_at,
            &tired.payload
        )
    );
    assert_eq!(
        d.delivery_count(),
        1,
        "{b:?}: a redriven job is a fresh message"
    );
    assert_eq!(attempt_of(&*d), 1, "{b:?}");
    d.ack().await.unwrap();
    dlq_reads(&ns, 2).await;

    // Without ids: up to the limit.
    let r = ns
        .admin
        .redrive(&ns.class, None, 1)
        .await
        .expect("redrive one");
    assert_eq!(r.moved.len(), 1, "{b:?}: {r:?}");
    dlq_reads(&ns, 1).await;
    let r = ns
        .admin
        .redrive(&ns.class, None, usize::MAX)
        .await
        .expect("redrive the rest");
    assert_eq!(r.moved.len(), 1, "{b:?}: {r:?}");
    dlq_reads(&ns, 0).await;
    let got = receive_n(&*ns.first, &ns.class, 2, Duration::from_secs(10)).await;
    let mut got_ids: Vec<String> = got
        .iter()
        .map(|d| Envelope::parse(d.body()).unwrap().job_id.to_string())
        .collect();
    got_ids.sort();
    assert_eq!(got_ids, job_ids(&others), "{b:?}");
    for d in got {
        d.ack().await.unwrap();
    }
    ns.cleanup().await;
}

pub(crate) async fn dlq_redrive_twice_moves_once(b: Backend) {
    let ns = Ns::new(b).await;
    let env = envelope();
    dead_letter_all(&ns, &[env.to_bytes()], "bad").await;
    let id = env.job_id.to_string();
    let ids = std::slice::from_ref(&id);
    let first = ns
        .admin
        .redrive(&ns.class, Some(ids), usize::MAX)
        .await
        .unwrap();
    let second = ns
        .admin
        .redrive(&ns.class, Some(ids), usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        (first.moved.as_slice(), first.skipped.len()),
        (ids, 0),
        "{b:?}"
    );
    assert_eq!(
        (second.moved.len(), second.skipped.as_slice()),
        (0, ids),
        "{b:?}: the second redrive finds nothing to move"
    );
    let d = receive_n(&*ns.first, &ns.class, 1, Duration::from_secs(10))
        .await
        .pop()
        .unwrap_or_else(|| panic!("{b:?}: the redriven job never arrived"));
    d.ack().await.unwrap();
    let more = ns
        .first
        .receive(&ns.class, 1, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(more.is_empty(), "{b:?}: the job was delivered twice");
    dlq_reads(&ns, 0).await;
    ns.cleanup().await;
}

pub(crate) async fn dlq_redrive_of_an_unknown_id_is_skipped(b: Backend) {
    let ns = Ns::new(b).await;
    let env = envelope();
    dead_letter_all(&ns, &[env.to_bytes()], "bad").await;
    let unknown = vec![uuid::Uuid::now_v7().to_string(), "sha256-00".to_owned()];
    let r = ns
        .admin
        .redrive(&ns.class, Some(&unknown), usize::MAX)
        .await
        .expect("an unknown id is not an error");
    assert!(r.moved.is_empty(), "{b:?}: {r:?}");
    assert_eq!(r.skipped, unknown, "{b:?}");
    dlq_reads(&ns, 1).await;
    assert!(ns
        .first
        .receive(&ns.class, 1, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    ns.cleanup().await;
}

pub(crate) async fn dlq_purge_empties_it(b: Backend) {
    let ns = Ns::new(b).await;
    let bodies: Vec<Vec<u8>> = (0..4).map(|_| envelope().to_bytes()).collect();
    dead_letter_all(&ns, &bodies, "bad").await;
    dlq_reads(&ns, 4).await;
    let n = ns.admin.purge(&ns.class, 1).await.expect("purge one");
    assert_eq!(n, 1, "{b:?}");
    dlq_reads(&ns, 3).await;
    let n = ns
        .admin
        .purge(&ns.class, usize::MAX)
        .await
        .expect("purge all");
    assert_eq!(n, 3, "{b:?}");
    dlq_reads(&ns, 0).await;
    assert!(ns
        .admin
        .dead_letters(&ns.class, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(ns.admin.purge(&ns.class, usize::MAX).await.unwrap(), 0);
    ns.cleanup().await;
}

pub(crate) async fn dlq_a_body_that_is_not_an_envelope_is_listed_and_redriven_unchanged(
    b: Backend,
) {
    let ns = Ns::new(b).await;
    let junk = b"{\"version\": 1, this is not json".to_vec();
    let reason = Envelope::parse(&junk).unwrap_err().to_string();
    dead_letter_all(&ns, std::slice::from_ref(&junk), &reason).await;
    let dead = ns.admin.dead_letters(&ns.class, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{b:?}");
    let d = &dead[0];
    assert_eq!(d.id, dead_letter_id(&junk));
    assert!(d.id.starts_with("sha256-"), "{}", d.id);
    assert_eq!(
        (d.media_id.as_ref(), d.kind.as_ref(), d.attempts),
        (None, None, 0)
    );
    assert!(
        d.reason.starts_with("invalid envelope"),
        "{b:?}: {:?}",
        d.reason
    );
    let shown = ns.admin.dead_letter(&ns.class, &d.id).await.unwrap();
    assert_eq!(shown.as_ref(), Some(d), "{b:?}");

    let r = ns
        .admin
        .redrive(&ns.class, Some(std::slice::from_ref(&d.id)), usize::MAX)
        .await
        .unwrap();
    assert_eq!(r.moved, std::slice::from_ref(&d.id), "{b:?}");
    let back = receive_n(&*ns.first, &ns.class, 1, Duration::from_secs(10))
        .await
        .pop()
        .expect("redriven");
    assert_eq!(back.body(), junk, "{b:?}: moved unchanged");
    back.ack().await.unwrap();
    dlq_reads(&ns, 0).await;
    ns.cleanup().await;
}

/// `retry_after(delay, body)` delivers `body` as given on every backend (SQS included, where a retry is a new
/// message): here a body whose outage clock and unknown field a worker added.
pub(crate) async fn retry_after_delivers_the_body_it_is_given(b: Backend) {
    let ns = Ns::new(b).await;
    let env = envelope();
    ns.first.publish(&ns.class, &env.to_bytes()).await.unwrap();
    let d = receive_n(&*ns.first, &ns.class, 1, Duration::from_secs(10))
        .await
        .pop()
        .expect("delivered");
    let mut next = env.waiting_out_outage("2026-12-02T07:00:00Z".parse().unwrap());
    next.extra
        .insert("hint".into(), serde_json::json!({"n": 1.5}));
    d.retry_after(Duration::from_millis(200), next.to_bytes())
        .await
        .expect("retry_after");
    let d = receive_n(&*ns.first, &ns.class, 1, Duration::from_secs(15))
        .await
        .pop()
        .expect("redelivered");
    assert_eq!(d.body(), next.to_bytes(), "{b:?}: the new body travelled");
    assert_eq!(d.delivery_count(), 1, "{b:?}");
    d.ack().await.unwrap();
    ns.cleanup().await;
}
