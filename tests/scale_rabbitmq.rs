//! Real scale test on RabbitMQ (in-flight counts through the management API) with Postgres; storage is the
//! data dir shared by `api` and the fleet's workers.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_on_rabbitmq_scales_the_fleet_out_and_back_in_without_losing_jobs() {
    common::require_tcp("127.0.0.1:5672", "RabbitMQ");
    common::require_tcp(
        "127.0.0.1:15672",
        "RabbitMQ management API (rabbitmq-plugins enable rabbitmq_management)",
    );
    let env = vec![
        ("MEDIAFLEET_QUEUE".to_owned(), common::amqp_url()),
        ("MEDIAFLEET_DB".to_owned(), common::pg_database().await),
        ("MEDIAFLEET_PREFIX".to_owned(), common::unique("scale")),
    ];
    // The first lines of the extra land in fast_config's [rabbitmq] table.
    common::scale::burst_scenario(
        env,
        "management_url = \"http://guest:guest@127.0.0.1:15672\"",
    )
    .await;
}

/// A compressed trace replayed on RabbitMQ + Postgres, compared with its simulation (`scaler simulate`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_trace_on_rabbitmq_is_close_to_its_simulation() {
    common::require_tcp("127.0.0.1:5672", "RabbitMQ");
    common::require_tcp(
        "127.0.0.1:15672",
        "RabbitMQ management API (rabbitmq-plugins enable rabbitmq_management)",
    );
    let db = common::pg_database().await;
    let prefix = common::unique("replay");
    let env = vec![
        ("MEDIAFLEET_QUEUE".to_owned(), common::amqp_url()),
        ("MEDIAFLEET_DB".to_owned(), db.clone()),
        ("MEDIAFLEET_PREFIX".to_owned(), prefix.clone()),
    ];
    let c = common::replay::replay_scenario(
        "rabbitmq",
        env,
        "management_url = \"http://guest:guest@127.0.0.1:15672\"",
        |_| mediafleet::config::DbUrl::Postgres(db.clone()),
    )
    .await;
    common::drop_rabbit_prefix(&prefix);
    common::replay::assert_sane(&c);
}
