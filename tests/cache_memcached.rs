//! memcached pools as PHP sees them: three memcached processes started by this test on free ports,
//! `mediafleet ops warm --all` writing into them, and PHP's `Memcached` extension (libmemcached, with
//! `OPT_LIBKETAMA_COMPATIBLE`) reading them back: the README snippet finds every warmed object, and
//! libmemcached's own `getServerByKey` agrees with our ketama on every key. Also: a server of the pool going
//! down only degrades the keys it held, and a server with a smaller `-I` than configured is handled.
//! A missing `php` or `php-memcached` fails (scripts/ensure-deps.sh --services installs them).

mod common;
#[path = "cache_contract/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use harness::*;
use mediafleet::cache::memcached::Memcached;
use mediafleet::cache::Put;
use mediafleet::config::{CacheSettings, CacheUrl};

/// The PHP block under "## Reading media from memcached (PHP)" in the README.
fn readme_php() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("## Reading media from memcached (PHP)")
        .nth(1)
        .expect("README has a memcached PHP section");
    let block = section.split("```php\n").nth(1).expect("a ```php block");
    block.split("\n```").next().unwrap().to_owned()
}

fn php(script: &str, args: &[String], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script.php");
    std::fs::write(&file, script).unwrap();
    let out = Command::new("php")
        .arg(&file)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run php: {e} (scripts/ensure-deps.sh --services installs php-cli)")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "php failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn require_php_memcached() {
    let out = Command::new("php")
        .arg("-m")
        .output()
        .expect("php is not installed");
    let mods = String::from_utf8_lossy(&out.stdout);
    assert!(
        mods.lines().any(|l| l.trim() == "memcached"),
        "PHP's memcached extension is missing (apt install php-memcached)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn php_finds_every_object_ops_warm_wrote_to_a_three_server_pool() {
    require_php_memcached();
    let pool = MemcachedPool::start(3, &[]);
    let (db, ids) = seeded_database(600).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("p");
    let env: Vec<(String, String)> = vec![
        ("MEDIAFLEET_DB".into(), db),
        ("MEDIAFLEET_CACHE".into(), pool.url()),
        ("MEDIAFLEET_PREFIX".into(), prefix.clone()),
        (
            "MEDIAFLEET_DATA_DIR".into(),
            dir.path().display().to_string(),
        ),
    ];
    let sum = ops_warm(&env, &["--all", "--batch", "200"]);
    assert_eq!(sum["objects"], 600, "{sum}");
    assert_eq!(sum["written"], 600, "{sum}");

    // Every server holds a share, and each key is on exactly one of them.
    let ports = pool.ports.clone();
    let keys: Vec<String> = ids
        .iter()
        .map(|id| format!("{prefix}:media:{id}"))
        .collect();
    let (per, holders) = tokio::task::spawn_blocking(move || {
        let mut per = vec![0usize; ports.len()];
        let mut holders = HashMap::new();
        for k in &keys {
            let on: Vec<usize> = ports
                .iter()
                .enumerate()
                .filter(|(_, p)| memcached_raw_get(&format!("127.0.0.1:{p}"), k).is_some())
                .map(|(i, _)| i)
                .collect();
            assert_eq!(on.len(), 1, "{k} on servers {on:?}");
            per[on[0]] += 1;
            holders.insert(k.clone(), on[0]);
        }
        (per, holders)
    })
    .await
    .unwrap();
    assert!(per.iter().all(|n| *n > 100), "uneven spread: {per:?}");

    // The README snippet, as a PHP app would run it: every object is a cache hit.
    let out = php(
        &readme_php(),
        &ids,
        &[
            ("MEMCACHED_SERVERS", &pool.list()),
            ("MEDIAFLEET_PREFIX", &prefix),
            ("MEDIAFLEET_URL", "http://127.0.0.1:9"),
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), ids.len(), "{out}");
    for (id, line) in ids.iter().zip(&lines) {
        assert_eq!(*line, format!("{id} ready v3 from memcached"), "{out}");
    }

    // libmemcached's server choice for every key we wrote is the one that holds it, and matches our ketama
    // on 5000 more keys.
    let ours = Memcached::new(
        match &CacheUrl::parse(&pool.url()).unwrap() {
            CacheUrl::Memcached(s) => s,
            _ => unreachable!(),
        },
        &CacheSettings::default(),
    )
    .unwrap();
    let mut probe: Vec<String> = holders.keys().cloned().collect();
    probe.extend((0..5000).map(|_| format!("{prefix}:media:{}", uuid::Uuid::new_v4())));
    probe.extend((0..200).map(|i| format!("k{i}")));
    let list = dir.path().join("keys.txt");
    std::fs::write(&list, probe.join("\n")).unwrap();
    let script = r#"<?php
$mc = new Memcached();
$mc->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
foreach (explode(',', getenv('MEMCACHED_SERVERS')) as $s) { [$h, $p] = explode(':', $s); $mc->addServer($h, (int) $p); }
foreach (file($argv[1], FILE_IGNORE_NEW_LINES) as $k) { $s = $mc->getServerByKey($k); echo $s['port'], "\n"; }
"#;
    let out = php(
        script,
        &[list.display().to_string()],
        &[("MEMCACHED_SERVERS", &pool.list())],
    );
    let php_ports: Vec<u16> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(php_ports.len(), probe.len());
    let mut disagree = Vec::new();
    for (k, p) in probe.iter().zip(&php_ports) {
        let i = ours.server_index(k);
        if pool.ports[i] != *p {
            disagree.push((k.clone(), pool.ports[i], *p));
        }
        if let Some(h) = holders.get(k) {
            assert_eq!(
                pool.ports[*h], *p,
                "{k}: PHP looks on another server than the one holding it"
            );
        }
    }
    assert!(
        disagree.is_empty(),
        "{} of {} keys disagree, e.g. {:?}",
        disagree.len(),
        probe.len(),
        &disagree[..disagree.len().min(5)]
    );

    // And the other way: what PHP writes (a plain string) our client reads.
    let php_id = uuid::Uuid::now_v7().to_string();
    let script = r#"<?php
$mc = new Memcached();
$mc->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
foreach (explode(',', getenv('MEMCACHED_SERVERS')) as $s) { [$h, $p] = explode(':', $s); $mc->addServer($h, (int) $p); }
var_dump($mc->set($argv[1], '{"id":"php","version":9}', 60));
"#;
    php(
        script,
        &[format!("{prefix}:media:{php_id}")],
        &[("MEMCACHED_SERVERS", &pool.list())],
    );
    let cache = cache_on(&pool.url(), &prefix, settings());
    assert_eq!(
        cache.get(&php_id).await.unwrap().as_deref(),
        Some(r#"{"id":"php","version":9}"#)
    );
    assert_eq!(
        cache.put(&php_id, "{}", 8, true).await.unwrap(),
        Put::KeptNewer
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_server_down_degrades_only_its_keys_and_the_batch_reports_it() {
    let mut pool = MemcachedPool::start(3, &[]);
    let prefix = unique("d");
    let s = CacheSettings {
        op_timeout: Duration::from_millis(300),
        ..settings()
    };
    let cache = cache_on(&pool.url(), &prefix, s);
    let ring = Memcached::new(
        match &CacheUrl::parse(&pool.url()).unwrap() {
            CacheUrl::Memcached(s) => s,
            _ => unreachable!(),
        },
        &s,
    )
    .unwrap();
    let ids: Vec<String> = (0..60).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for id in &ids {
        cache
            .put(id, &format!(r#"{{"version":1,"id":"{id}"}}"#), 1, true)
            .await
            .unwrap();
    }
    pool.kill(0);
    cache
        .ping()
        .await
        .expect_err("a pool with a dead server is not healthy");
    let mut up = 0;
    for id in &ids {
        let r = cache.get(id).await;
        if ring.server_index(&cache.key(id)) == 0 {
            assert!(r.is_err(), "{id} lives on the dead server");
        } else {
            assert!(r.unwrap().is_some());
            up += 1;
        }
    }
    assert!(up > 20, "{up}");
    let jsons: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"version":2,"id":"{id}"}}"#))
        .collect();
    let items: Vec<(&str, &str, i64, bool)> = ids
        .iter()
        .zip(&jsons)
        .map(|(i, j)| (i.as_str(), j.as_str(), 2, true))
        .collect();
    assert!(
        cache.put_many(&items).await.is_err(),
        "a batch touching a dead server fails (the warm retries)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_with_a_smaller_item_limit_than_configured_refuses_and_we_count_it() {
    // The server allows 1 MiB items at most... configured as 2 MiB on our side by mistake.
    let pool = MemcachedPool::start(1, &["-I", "1m"]);
    let prefix = unique("i");
    let s = CacheSettings {
        max_item_bytes: 2 * 1024 * 1024,
        ..settings()
    };
    let cache = cache_on(&pool.url(), &prefix, s);
    let id = uuid::Uuid::now_v7().to_string();
    let big = format!(r#"{{"version":1,"pad":"{}"}}"#, "x".repeat(1_500_000));
    let before = mediafleet::cache::NOT_CACHED
        .with_label_values(&["too_large"])
        .get();
    assert_eq!(cache.put(&id, &big, 1, true).await.unwrap(), Put::NotCached);
    assert_eq!(
        mediafleet::cache::NOT_CACHED
            .with_label_values(&["too_large"])
            .get(),
        before + 1
    );
    assert_eq!(cache.get(&id).await.unwrap(), None);
    // The connection is still in step after the refusal.
    assert_eq!(
        cache.put(&id, r#"{"version":1}"#, 1, true).await.unwrap(),
        Put::Written
    );
    assert!(cache.degraded().is_none());
}
