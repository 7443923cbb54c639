//! Peak memory of a large query: a collection of 200,000 items is read once with
//! `Query::stream_read_only()` and once with `Query::get()`, each in a fresh child process, on
//! SQLite, and on PostgreSQL and MariaDB when `KORM_TEST_PG_URL` / `KORM_TEST_MYSQL_URL` name
//! them. For each backend it prints how far the peak resident set (`VmHWM` in
//! `/proc/self/status`) rose above the child's baseline, in MiB:
//!
//! ```text
//! backend<TAB>stream_peak_growth_mib<TAB>collect_peak_growth_mib
//! ```
//!
//! The target is a stream under 32 MiB on every backend. Linux only. Run:
//! `cargo run --release -p korm --example query_rss` (`KORM_QUERY_RSS_ITEMS` sets another
//! size). The collections it makes are dropped at the end.

use std::process::Command;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// The items read by default.
const ITEMS: usize = 200_000;
/// The target for a stream's growth, in MiB.
const STREAM_TARGET_MIB: f64 = 32.0;

/// An item of the collection: about 300 bytes of data.
#[derive(Debug, Serialize, Deserialize)]
struct Thing {
    n: i64,
    name: String,
    note: String,
    meta: Meta,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    tier: String,
    score: i64,
    tags: Vec<String>,
}

fn thing(n: usize) -> Thing {
    Thing {
        n: n as i64,
        name: format!("name-{n:07}"),
        note: format!("{n:07} ").repeat(20),
        meta: Meta {
            tier: ["gold", "silver", "bronze"][n % 3].to_owned(),
            score: (n % 1000) as i64,
            tags: vec![format!("t{}", n % 7), format!("u{}", n % 11)],
        },
    }
}

#[path = "../tests/support/peak.rs"]
mod peak;
use peak::{reset_peak, status_bytes};

fn fail(reason: impl ToString) -> korm::Error {
    korm::Error::PoolConfig {
        reason: reason.to_string(),
    }
}

/// Where a backend's collection lives: the backend, its URL (a file for SQLite), and the
/// collection's RN.
struct Target {
    backend: &'static str,
    url: String,
    collection: String,
}

fn layer(backend: &str, url: &str) -> korm::LayerSpec {
    match backend {
        "sqlite" => korm::layers::sqlite(url).into(),
        "postgres" => korm::layers::postgres(url.to_owned()).into(),
        _ => korm::layers::mysql(url.to_owned()).into(),
    }
}

async fn open(backend: &str, url: &str) -> korm::Result<korm::Pool> {
    korm::pool().layer("db", layer(backend, url)).open().await
}

/// The child: reads the collection one way and prints `growth <bytes> <items>`.
async fn child(backend: &str, url: &str, collection: &str, mode: &str) -> korm::Result<()> {
    let pool = open(backend, url).await?;
    let rn: korm::Rn<Thing> = collection.parse()?;
    // Warm up the connection and the statement cache outside the measurement.
    let _ = korm::item::<Thing>(&pool)
        .query(rn.clone())
        .first_optional()
        .await?;
    reset_peak();
    let baseline = status_bytes("VmHWM");
    let mut count = 0u64;
    let mut sum = 0i64;
    if mode == "stream" {
        let mut stream = korm::item::<Thing>(&pool).query(rn).stream_read_only();
        while let Some(item) = stream.next().await {
            let item = item?;
            count += 1;
            sum += item.data().n;
        }
    } else {
        let items = korm::item::<Thing>(&pool).query(rn).get().await?;
        for item in &items {
            count += 1;
            sum += item.data().n;
        }
    }
    let growth = status_bytes("VmHWM").saturating_sub(baseline);
    pool.close().await;
    println!("growth {growth} {count} {sum}");
    Ok(())
}

/// Runs a child and returns its growth in bytes, checking it read every item.
fn run_child(target: &Target, mode: &str, items: usize) -> korm::Result<u64> {
    let exe = std::env::current_exe().map_err(fail)?;
    let output = Command::new(exe)
        .args([
            "--child",
            target.backend,
            &target.url,
            &target.collection,
            mode,
        ])
        .output()
        .map_err(fail)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(fail(format!(
            "{} {mode} child failed: {stdout}{}",
            target.backend,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("growth "))
        .ok_or_else(|| fail(format!("no figures from the child: {stdout}")))?;
    let figures: Vec<i64> = line
        .split_whitespace()
        .map(|n| n.parse().unwrap_or(-1))
        .collect();
    let expected_sum: i64 = (0..items as i64).sum();
    if figures.get(1) != Some(&(items as i64)) || figures.get(2) != Some(&expected_sum) {
        return Err(fail(format!(
            "{} {mode}: the child read {line}, not the {items} items",
            target.backend
        )));
    }
    Ok(figures[0].unsigned_abs())
}

/// Creates the collection's `items` items in transactions of 1,000.
async fn seed(target: &Target, items: usize) -> korm::Result<()> {
    let pool = korm::pool()
        .layer("db", layer(target.backend, &target.url))
        .open()
        .await?;
    let handle = korm::item::<Thing>(&pool);
    let mut n = 0;
    while n < items {
        let mut tx = korm::tx(&pool);
        for i in n..(n + 1000).min(items) {
            tx.create(handle.from_data(target.collection.parse()?, thing(i))?);
        }
        tx.persist().await?;
        n += 1000;
    }
    pool.close().await;
    Ok(())
}

/// Drops the collection's table on a server (a SQLite file goes with its folder).
async fn drop_table(target: &Target) {
    let kind = target
        .collection
        .trim_end_matches(":*")
        .rsplit(':')
        .next()
        .unwrap_or_default();
    let table = format!("__items__rss__{kind}");
    let result = match target.backend {
        "postgres" => {
            use sqlx::Connection;
            match sqlx::PgConnection::connect(&target.url).await {
                Ok(mut conn) => sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP TABLE IF EXISTS \"{table}\""
                )))
                .execute(&mut conn)
                .await
                .map(|_| ()),
                Err(e) => Err(e),
            }
        }
        "mysql" => {
            use sqlx::Connection;
            match sqlx::MySqlConnection::connect(&target.url).await {
                Ok(mut conn) => sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP TABLE IF EXISTS `{table}`"
                )))
                .execute(&mut conn)
                .await
                .map(|_| ()),
                Err(e) => Err(e),
            }
        }
        _ => Ok(()),
    };
    if let Err(e) = result {
        eprintln!("could not drop {table}: {e}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> korm::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, backend, url, collection, mode] = args.as_slice()
        && flag == "--child"
    {
        return child(backend, url, collection, mode).await;
    }
    let items = std::env::var("KORM_QUERY_RSS_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ITEMS);
    let dir = tempfile::tempdir().map_err(fail)?;
    let kind = format!("q{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let collection = format!("[rn]:rss:{kind}:*");
    let mut targets = vec![Target {
        backend: "sqlite",
        url: dir.path().join("rss.sqlite").display().to_string(),
        collection: collection.clone(),
    }];
    for (backend, var) in [
        ("postgres", "KORM_TEST_PG_URL"),
        ("mysql", "KORM_TEST_MYSQL_URL"),
    ] {
        match std::env::var(var).ok().filter(|v| !v.is_empty()) {
            Some(url) => targets.push(Target {
                backend,
                url,
                collection: collection.clone(),
            }),
            None => eprintln!("{backend}: skipped ({var} unset)"),
        }
    }
    eprintln!(
        "{items} items; peak reset: {}",
        if reset_peak() { "yes" } else { "no" }
    );
    println!("backend\tstream_peak_growth_mib\tcollect_peak_growth_mib");
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let mut over = Vec::new();
    for target in &targets {
        let figures = async {
            seed(target, items).await?;
            let stream = run_child(target, "stream", items)?;
            let collect = run_child(target, "collect", items)?;
            Ok::<_, korm::Error>((stream, collect))
        }
        .await;
        drop_table(target).await;
        let (stream, collect) = figures?;
        println!(
            "{}\t{:.1}\t{:.1}",
            target.backend,
            mib(stream),
            mib(collect)
        );
        if mib(stream) >= STREAM_TARGET_MIB {
            over.push(target.backend);
        }
    }
    if !over.is_empty() {
        return Err(fail(format!(
            "a stream grew the peak by {STREAM_TARGET_MIB} MiB or more on {over:?}"
        )));
    }
    Ok(())
}
