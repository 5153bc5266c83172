//! The SQL state guards against the one state machine, `MediaStatus::can_move_to`, on SQLite and on
//! Postgres: every status change the DB layer makes is tried from every status, and
//! - a move the guard lets through is one `can_move_to` allows (operator replays and reprocessing, which
//!   `can_move_to` leaves out on purpose, are checked to be exactly `ready|failed → queued`);
//! - the statuses each guard accepts are exactly the documented ones (some guards are stricter than the
//!   state machine: a media is finished only from `processing`).

mod common;

use std::collections::BTreeSet;

use mediafleet::config::DbUrl;
use mediafleet::db::{NewMedia, OutboxJob, Records};
use mediafleet_proto::MediaStatus::{self, *};
use mediafleet_proto::{ErrorCode, MediaKind};
use sqlx::any::AnyPoolOptions;

const ALL: [MediaStatus; 6] = [Uploading, Queued, Processing, Ready, Failed, Deleted];

/// A status change the DB layer makes, and the status it moves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    StartProcessing,
    FinishReady,
    Fail,
    UploadValidated,
    MarkDeleted,
    ClaimExpiredUpload,
    ReapStuck,
    Requeue,
}

impl Change {
    fn target(self) -> MediaStatus {
        match self {
            Change::StartProcessing => Processing,
            Change::FinishReady => Ready,
            Change::Fail | Change::ReapStuck => Failed,
            Change::UploadValidated | Change::Requeue => Queued,
            Change::MarkDeleted | Change::ClaimExpiredUpload => Deleted,
        }
    }

    /// The statuses the guard accepts (documented on each `Records` method).
    fn accepts(self) -> BTreeSet<&'static str> {
        let s: &[MediaStatus] = match self {
            Change::StartProcessing => &[Queued, Processing],
            Change::FinishReady | Change::ReapStuck => &[Processing],
            Change::Fail => &[Uploading, Queued, Processing],
            Change::UploadValidated | Change::ClaimExpiredUpload => &[Uploading],
            Change::MarkDeleted => &[Uploading, Queued, Processing, Ready, Failed],
            Change::Requeue => &[Ready, Failed],
        };
        s.iter().map(|s| s.as_str()).collect()
    }

    const EVERY: [Change; 8] = [
        Change::StartProcessing,
        Change::FinishReady,
        Change::Fail,
        Change::UploadValidated,
        Change::MarkDeleted,
        Change::ClaimExpiredUpload,
        Change::ReapStuck,
        Change::Requeue,
    ];
}

struct Db {
    records: Records,
    raw: sqlx::AnyPool,
}

async fn open(url: &str) -> Db {
    let records = Records::connect(&DbUrl::parse("--db", url).unwrap(), None)
        .await
        .unwrap();
    records.migrate().await.unwrap();
    sqlx::any::install_default_drivers();
    let raw_url = match url.strip_prefix("sqlite://") {
        Some(path) => format!("sqlite://{path}"),
        None => url.to_owned(),
    };
    let raw = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&raw_url)
        .await
        .unwrap();
    Db { records, raw }
}

/// A media put straight into `from` (past its processing deadline and its upload expiry, so the reaper and
/// the expiry sweep would take it).
async fn media_in(db: &Db, from: MediaStatus) -> (String, i64) {
    let id = uuid::Uuid::now_v7().to_string();
    db.records
        .insert_media(&NewMedia {
            id: id.clone(),
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
    sqlx::query(
        "UPDATE media SET status = $2, processing_deadline = 1, upload_expires_at = 1, \
         upload_completed_at = NULL, stage = NULL WHERE id = $1",
    )
    .bind(&id)
    .bind(from.as_str())
    .execute(&db.raw)
    .await
    .unwrap();
    let row = db.records.media_primary(&id).await.unwrap().unwrap();
    assert_eq!(row.status, from);
    (id, row.version)
}

/// Applies `change` to media `id`.
async fn apply(db: &Db, change: Change, id: &str) {
    let uuid = uuid::Uuid::parse_str(id).unwrap();
    let job = OutboxJob::media_process(uuid, "k", "default", MediaKind::Image);
    let r = &db.records;
    match change {
        Change::StartProcessing => {
            r.start_processing(id, i64::MAX, false).await.unwrap();
        }
        Change::FinishReady => {
            r.finish_ready(id, &serde_json::json!({}), None, None, &[])
                .await
                .unwrap();
        }
        Change::Fail => {
            r.fail(id, ErrorCode::Internal.as_str(), "x").await.unwrap();
        }
        Change::UploadValidated => {
            r.upload_validated(id, "image", "image/png", 10, &job)
                .await
                .unwrap();
        }
        Change::MarkDeleted => {
            r.mark_deleted(id, None).await.unwrap();
        }
        Change::ClaimExpiredUpload => {
            r.claim_expired_upload(id, "expired").await.unwrap();
        }
        Change::ReapStuck => {
            r.reap_stuck().await.unwrap();
        }
        Change::Requeue => {
            let before = r.media_primary(id).await.unwrap().unwrap();
            r.requeue(&before, "default", &job).await.unwrap();
        }
    }
}

async fn guards_agree_with_the_state_machine(url: &str) {
    let db = open(url).await;
    for change in Change::EVERY {
        let mut accepted = BTreeSet::new();
        for from in ALL {
            let (id, version) = media_in(&db, from).await;
            apply(&db, change, &id).await;
            let after = db.records.media_primary(&id).await.unwrap().unwrap();
            let moved = after.version > version;
            if !moved {
                assert_eq!(
                    after.status, from,
                    "{change:?} from {from} changed the status without a version"
                );
                continue;
            }
            assert_eq!(after.status, change.target(), "{change:?} from {from}");
            accepted.insert(from.as_str());
            if change == Change::Requeue {
                assert!(
                    !from.can_move_to(Queued),
                    "requeue is an operator action outside the state machine"
                );
            } else {
                assert!(
                    from.can_move_to(change.target()),
                    "the {change:?} guard lets {from} → {} through, which MediaStatus::can_move_to forbids",
                    change.target()
                );
            }
        }
        assert_eq!(
            accepted,
            change.accepts(),
            "{change:?}: the statuses its guard accepts"
        );
    }
}

#[tokio::test]
async fn sqlite_guards_agree_with_the_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    guards_agree_with_the_state_machine(&url).await;
}

#[tokio::test]
async fn postgres_guards_agree_with_the_state_machine() {
    common::require_tcp("127.0.0.1:5432", "PostgreSQL");
    let url = common::pg_database().await;
    guards_agree_with_the_state_machine(&url).await;
}
