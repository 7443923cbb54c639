//! The bench binary: each workload by korm and by raw rusqlite in one run, one line each:
//! `workload<TAB>korm_ops_per_s<TAB>raw_ops_per_s`.
//!
//! `cargo run --release -p korm --example bench`; `KORM_BENCH_QUICK=1` runs a tiny version
//! (to check it works; its figures mean nothing).

#[path = "../benches/workloads/mod.rs"]
mod workloads;

use std::time::Instant;

use workloads::*;

fn per_second(ops: usize, started: Instant) -> f64 {
    ops as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let quick = std::env::var_os("KORM_BENCH_QUICK").is_some();
    let n = if quick { 50 } else { 2_000 };
    let queries = if quick { 3 } else { 50 };
    let dir = tempfile::tempdir().expect("temp dir");

    // korm
    let pool = korm_pool(&dir.path().join("korm.sqlite")).await;
    korm_create(&pool, 0..10).await; // warm-up: table creation and statement cache
    let t = Instant::now();
    let items = korm_create(&pool, 10..10 + n).await;
    let korm_create_ops = per_second(n, t);
    let rns: Vec<_> = items.iter().map(|i| i.rn().clone()).collect();
    let t = Instant::now();
    std::hint::black_box(korm_get(&pool, &rns).await);
    let korm_get_ops = per_second(n, t);
    let t = Instant::now();
    for _ in 0..queries {
        std::hint::black_box(korm_query(&pool).await);
    }
    let korm_query_ops = per_second(queries, t);
    let t = Instant::now();
    let items = korm_update(items).await;
    let korm_update_ops = per_second(n, t);
    drop(items);
    pool.close().await;

    // raw rusqlite
    let conn = raw_conn(&dir.path().join("raw.sqlite"));
    raw_create(&conn, 0..10);
    let t = Instant::now();
    let mut rows = raw_create(&conn, 10..10 + n);
    let raw_create_ops = per_second(n, t);
    let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
    let t = Instant::now();
    std::hint::black_box(raw_get(&conn, &ids));
    let raw_get_ops = per_second(n, t);
    let t = Instant::now();
    for _ in 0..queries {
        std::hint::black_box(raw_query(&conn));
    }
    let raw_query_ops = per_second(queries, t);
    let t = Instant::now();
    raw_update(&conn, &mut rows);
    let raw_update_ops = per_second(n, t);

    for (name, k, r) in [
        ("create", korm_create_ops, raw_create_ops),
        ("get_by_rn", korm_get_ops, raw_get_ops),
        ("query", korm_query_ops, raw_query_ops),
        ("update_commit", korm_update_ops, raw_update_ops),
    ] {
        println!("{name}\t{k:.0}\t{r:.0}");
    }
}
