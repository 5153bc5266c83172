//! Every nullable column keeps one SQL type whether it holds a value or NULL, on Postgres and SQLite.
//!
//! Postgres prepares a statement per connection with the parameter types of its first run and sqlx caches
//! it, so a write that binds NULL first and a value second on one connection is the test. A pool used
//! sequentially keeps one connection, which makes the order deterministic.

mod common;

use mediafleet::config::DbUrl;
use mediafleet::db::{DbError, NewMedia, OutboxJob, Records, RenditionRow};

async fn records(url: DbUrl) -> Records {
    let r = Records::connect(&url, None).await.expect("connect");
    r.migrate().await.expect("migrate");
    r
}

fn media(id: &str) -> NewMedia {
    NewMedia {
        id: id.into(),
        kind: "video".into(),
        profile: "default".into(),
        source_key: format!("originals/{id}"),
        filename: None,
        content_type: "video/mp4".into(),
        bytes: 1,
        sha256: "00".into(),
        external_id: None,
    }
}

fn rendition(id: &str, name: &str, duration: Option<f64>) -> RenditionRow {
    RenditionRow {
        media_id: id.into(),
        name: name.into(),
        key: format!("renditions/{id}/{name}"),
        content_type: "video/mp4".into(),
        width: duration.map(|_| 1280),
        height: None,
        bytes: 10,
        duration_seconds: duration,
        sha256: "ab".into(),
    }
}

/// Two videos through the poster stage (NULL durations) and the transcode stage (real durations), in both
/// orders, then the same rows read back.
async fn nullable_binds_round_trip(r: &Records) {
    let meta = serde_json::json!({"width": 1280});
    for (i, order) in [[None, Some(12.5)], [Some(3600.04), None]]
        .iter()
        .enumerate()
    {
        let id = format!("0193aaaa-0000-7000-8000-00000000000{i}");
        r.insert_media(&media(&id)).await.unwrap();
        r.start_processing(&id, i64::MAX, true)
            .await
            .unwrap()
            .unwrap();
        let first = rendition(&id, "poster", order[0]);
        let follow = OutboxJob::transcode(uuid::Uuid::parse_str(&id).unwrap(), "k", "default");
        assert!(r
            .keep_partial(
                &id,
                &meta,
                Some("bh"),
                None,
                std::slice::from_ref(&first),
                &follow
            )
            .await
            .unwrap());
        // A redelivered poster job: it cannot start the poster stage again, nor hand over a second time.
        assert!(r
            .start_processing(&id, i64::MAX, true)
            .await
            .unwrap()
            .is_none());
        assert!(!r
            .keep_partial(&id, &meta, Some("bh"), None, &[first], &follow)
            .await
            .unwrap());
        assert_eq!(
            r.outbox_pending().await.unwrap(),
            i as i64 + 1,
            "one transcode job per video"
        );
        r.start_processing(&id, i64::MAX, false)
            .await
            .unwrap()
            .expect("the transcode stage starts");
        let second = rendition(&id, "mp4-720", order[1]);
        let again = rendition(&id, "poster", order[0]);
        assert!(r
            .finish_ready(&id, &meta, None, Some("th"), &[again, second])
            .await
            .unwrap());
        let rows = r.renditions(&id).await.unwrap();
        let durations: Vec<_> = rows
            .iter()
            .map(|x| (x.name.as_str(), x.duration_seconds))
            .collect();
        assert_eq!(durations, [("mp4-720", order[1]), ("poster", order[0])]);
    }
}

#[tokio::test]
async fn postgres_nullable_float_then_value_on_one_connection() {
    let r = records(DbUrl::Postgres(common::pg_database().await)).await;
    nullable_binds_round_trip(&r).await;
}

#[tokio::test]
async fn sqlite_nullable_float_then_value() {
    let dir = tempfile::tempdir().unwrap();
    let r = records(DbUrl::Sqlite(dir.path().join("t.db"))).await;
    nullable_binds_round_trip(&r).await;
}

#[tokio::test]
async fn a_refused_statement_is_not_an_outage() {
    let r = records(DbUrl::Postgres(common::pg_database().await)).await;
    let bad = sqlx::query("SELECT no_such_column FROM media")
        .execute(r.write_pool())
        .await
        .map_err(DbError::from)
        .unwrap_err();
    assert!(matches!(bad, DbError::Rejected(_)), "{bad:?}");
    assert!(!bad.is_transient());
    // A duplicate primary key is a constraint violation: also the statement's fault, not the server's.
    r.insert_media(&media("0193bbbb-0000-7000-8000-000000000000"))
        .await
        .unwrap();
    let dup = sqlx::query("INSERT INTO media (id, kind, status, profile, source_key, content_type, bytes, sha256, metadata, progress, version, created_at, updated_at) SELECT id, kind, status, profile, source_key, content_type, bytes, sha256, metadata, progress, version, created_at, updated_at FROM media")
        .execute(r.write_pool())
        .await
        .map_err(DbError::from)
        .unwrap_err();
    assert!(matches!(dup, DbError::Rejected(_)), "{dup:?}");
    // A server that is not there is an outage.
    let down = Records::connect(
        &DbUrl::Postgres("postgres://postgres@127.0.0.1:1/none".into()),
        None,
    )
    .await
    .unwrap_err();
    assert!(down.is_transient(), "{down:?}");
}
