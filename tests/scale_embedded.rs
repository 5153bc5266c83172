//! Real scale test on the embedded backend: `api`, `fleet` and the fleet's workers share one data dir
//! (SQLite queue and DB in WAL mode, local storage).

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_scales_the_fleet_out_and_back_in_without_losing_jobs() {
    common::scale::burst_scenario(Vec::new(), "").await;
}

/// A compressed trace replayed on the embedded backend, compared with its simulation (`scaler simulate`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_trace_on_embedded_is_close_to_its_simulation() {
    let c = common::replay::replay_scenario("embedded", Vec::new(), "", |data| {
        mediafleet::config::DbUrl::Sqlite(data.join("mediafleet.db"))
    })
    .await;
    common::replay::assert_sane(&c);
}
