//! A RabbitMQ connection drop while jobs are in flight loses no job: the worker reconnects by itself, the
//! broker redelivers what was unacked, and repeated effects are no-ops.

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_drop_during_processing_loses_nothing() {
    require_tcp("127.0.0.1:5672", "RabbitMQ");
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let via_proxy = amqp_url().replace("127.0.0.1:5672", &format!("127.0.0.1:{}", proxy.port));
    let f = common::fleet::start_fleet(Some(via_proxy)).await;
    let mut ids = vec![];
    for i in 0..8 {
        let (status, b) = upload(&f.base, &fixture("photo.jpg"), &format!("p{i}.jpg")).await;
        assert_eq!(status, 202, "{b}");
        ids.push(b["id"].as_str().unwrap().to_owned());
    }
    // Cut the worker's broker connection a few times while it works through the backlog.
    let mut cut = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cut += proxy.cut_all();
    }
    assert!(cut > 0, "the worker never connected through the proxy");
    for id in &ids {
        let m = wait_final(&f.base, id, Duration::from_secs(120)).await;
        assert_eq!(m["status"], "ready", "{m}");
    }
}
