//! `mediafleet bench cache`: the media cache on memcached against Redis, on the same seeded media.
//!
//! 1. Seeds `--media` ready media (two renditions each, the rows `scripts/bench-warm.sh` makes) into a
//!    throwaway Postgres database.
//! 2. Runs the real `mediafleet ops warm --all` (this binary, as a child) into each backend, alternating which
//!    goes first for `--rounds` rounds, each run under a fresh key prefix (so every run writes into empty
//!    keys), and keeps each backend's best objects/s.
//! 3. Times `--gets` sequential `MediaCache::get` round trips of warmed objects from this process (a client
//!    on the same host as the servers), reporting mean, p50 and p99 in µs.
//!
//! Prints a table and the ratios memcached ÷ Redis; removes its keys and database afterwards.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use sqlx::Executor;

use mediafleet::cache::MediaCache;
use mediafleet::config::{CacheSettings, CacheUrl, DbUrl};

/// Arguments of `bench cache`.
#[derive(Debug, clap::Args)]
pub struct BenchCacheArgs {
    /// Media to seed and warm.
    #[arg(long, default_value_t = 20_000)]
    media: usize,
    /// Sequential GET round trips per backend.
    #[arg(long, default_value_t = 20_000)]
    gets: usize,
    /// Rounds of `ops warm --all` per backend (alternating which goes first); the best is kept.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// `ops warm --batch`.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// The Redis side.
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    redis: String,
    /// The memcached side (one server or a pool).
    #[arg(long, default_value = "memcached://127.0.0.1:11211")]
    memcached: String,
    /// Postgres server (a throwaway database is created on it and dropped after).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pg: String,
}

async fn seed(pg: &str, db: &str, n: usize) -> anyhow::Result<String> {
    let admin = format!("{pg}/postgres");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .with_context(|| format!("connect to {admin}"))?;
    conn.execute(format!("CREATE DATABASE {db}").as_str())
        .await?;
    let url = format!("{pg}/{db}");
    let records = mediafleet::db::Records::connect(&DbUrl::Postgres(url.clone()), None).await?;
    records.migrate().await?;
    let pool = sqlx::PgPool::connect(&url).await?;
    pool.execute(
        format!(
            r#"INSERT INTO media (id, kind, status, profile, source_key, filename, content_type, bytes, sha256,
                                  external_id, metadata, blurhash, progress, version, created_at, updated_at)
               SELECT gen_random_uuid()::text, 'image', 'ready', 'default', 'k/' || i, 'photo-' || i || '.jpg',
                      'image/jpeg', 123456, md5(i::text) || md5(i::text), 'ext-' || i,
                      '{{"width":4032,"height":3024,"format":"jpeg"}}', 'LEHV6nWB2yk8pyo0adR*.7kCMdnj', 1, 3,
                      1700000000000 + i, 1700000000000 + i
               FROM generate_series(1, {n}) AS i"#
        )
        .as_str(),
    )
    .await?;
    pool.execute(
        r#"INSERT INTO renditions (media_id, name, key, content_type, width, height, bytes, sha256)
           SELECT id, r.name, 'k/' || id || '/' || r.name, r.ct, r.w, r.h, 20000, md5(id) || md5(id)
           FROM media, (VALUES ('thumb', 'image/webp', 256, 192), ('preview', 'image/jpeg', 1280, 960))
                AS r(name, ct, w, h)"#,
    )
    .await?;
    pool.close().await;
    Ok(url)
}

async fn drop_db(pg: &str, db: &str) {
    if let Ok(mut c) =
        <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{pg}/postgres")).await
    {
        let _ = c
            .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
            .await;
    }
}

/// One `ops warm --all` child run; returns objects/s.
fn warm(
    db: &str,
    cache: &str,
    prefix: &str,
    batch: usize,
    data: &std::path::Path,
) -> anyhow::Result<f64> {
    let out = Command::new(crate::mediafleet_exe()?)
        .args([
            "ops",
            "warm",
            "--all",
            "--restart",
            "--batch",
            &batch.to_string(),
        ])
        .env("MEDIAFLEET_DB", db)
        .env("MEDIAFLEET_CACHE", cache)
        .env("MEDIAFLEET_CACHE_TTL", "1h")
        .env("MEDIAFLEET_PREFIX", prefix)
        .env("MEDIAFLEET_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "ops warm on {cache} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["objects_per_second"]
        .as_f64()
        .context("no objects_per_second in the ops warm summary")
}

fn cache(url: &str, prefix: &str) -> anyhow::Result<MediaCache> {
    let settings = CacheSettings {
        op_timeout: Duration::from_secs(5),
        ..CacheSettings::default()
    };
    MediaCache::from_url(
        &CacheUrl::parse(url).map_err(anyhow::Error::msg)?,
        prefix,
        settings,
    )?
    .context("no cache")
}

struct Gets {
    mean: f64,
    p50: f64,
    p99: f64,
}

async fn time_gets(c: &MediaCache, ids: &[String], n: usize) -> anyhow::Result<Gets> {
    // Warm the connection first.
    for id in ids.iter().take(100) {
        c.get(id).await?;
    }
    let mut us = Vec::with_capacity(n);
    for i in 0..n {
        let id = &ids[(i * 7919) % ids.len()];
        let t = Instant::now();
        let got = c.get(id).await?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            got.is_some(),
            "{id} missing from the {} cache",
            c.backend_name()
        );
    }
    us.sort_by(f64::total_cmp);
    Ok(Gets {
        mean: us.iter().sum::<f64>() / us.len() as f64,
        p50: us[us.len() / 2],
        p99: us[(us.len() * 99 / 100).min(us.len() - 1)],
    })
}

async fn forget(c: &MediaCache, ids: &[String]) {
    futures::stream::iter(ids)
        .for_each_concurrent(64, |id| async move {
            let _ = c.delete(id).await;
        })
        .await;
}

/// Runs `bench cache`.
pub async fn run(a: BenchCacheArgs) -> anyhow::Result<()> {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let db = format!("benchcache{tag}");
    eprintln!("bench cache: seeding {} media into {}/{db}", a.media, a.pg);
    let url = seed(&a.pg, &db, a.media).await?;
    let data = tempfile::tempdir()?;
    let r = bench(&a, &url, &tag, data.path()).await;
    drop_db(&a.pg, &db).await;
    r
}

async fn bench(
    a: &BenchCacheArgs,
    db: &str,
    tag: &str,
    data: &std::path::Path,
) -> anyhow::Result<()> {
    let records = mediafleet::db::Records::connect(&DbUrl::Postgres(db.to_owned()), None).await?;
    let mut ids = Vec::with_capacity(a.media);
    let mut after: Option<String> = None;
    loop {
        let page = records
            .scope_page(&mediafleet::db::WarmScope::All, after.as_deref(), 5000)
            .await?;
        let Some(next) = page.next else { break };
        ids.extend(page.rows.iter().map(|(r, _)| r.id.clone()));
        after = Some(next);
    }
    let sides = [
        ("memcached", a.memcached.as_str()),
        ("Redis", a.redis.as_str()),
    ];
    let mut best = [0f64; 2];
    let mut prefixes: Vec<(usize, String)> = Vec::new();
    for round in 0..a.rounds.max(1) {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for s in order {
            let prefix = format!("bc{tag}r{round}s{s}");
            let rate = warm(db, sides[s].1, &prefix, a.batch, data)?;
            eprintln!(
                "bench cache: round {round} {}: ops warm --all {rate:.0} objects/s",
                sides[s].0
            );
            best[s] = best[s].max(rate);
            prefixes.push((s, prefix));
        }
    }
    // GETs from the last run's keys of each side.
    let mut gets = Vec::new();
    for (s, (_, url)) in sides.iter().enumerate() {
        let prefix = &prefixes
            .iter()
            .rev()
            .find(|(i, _)| *i == s)
            .expect("a run")
            .1;
        let c = cache(url, prefix)?;
        gets.push(time_gets(&c, &ids, a.gets).await?);
    }
    for (s, prefix) in &prefixes {
        forget(&cache(sides[*s].1, prefix)?, &ids).await;
    }
    println!(
        "media: {}  batch: {}  rounds: {}  GET round trips: {} (sequential, one client on this host)",
        ids.len(),
        a.batch,
        a.rounds,
        a.gets
    );
    println!("| backend | ops warm --all objects/s | GET mean µs | GET p50 µs | GET p99 µs |");
    println!("|---|---|---|---|---|");
    for s in 0..2 {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.1} |",
            sides[s].0, best[s], gets[s].mean, gets[s].p50, gets[s].p99
        );
    }
    println!(
        "ratio memcached / Redis: ops warm {:.2}x (higher is faster), GET mean {:.2}x, p50 {:.2}x (lower is faster)",
        best[0] / best[1].max(1e-9),
        gets[0].mean / gets[1].mean,
        gets[0].p50 / gets[1].p50
    );
    Ok(())
}
