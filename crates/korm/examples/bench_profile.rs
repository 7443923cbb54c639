//! One SQLite read workload of the bench binary, by korm or by raw rusqlite, for instruction
//! counts under callgrind (repeatable on a loaded machine, unlike wall-clock time):
//!
//! ```text
//! cargo build --release -p korm --example bench_profile
//! valgrind --tool=callgrind --zero-before='*profile_start*' --dump-before='*profile_end*' \
//!     target/release/examples/bench_profile korm_get
//! ```
//!
//! The workload (`korm_get`, `raw_get`, `korm_query`, `raw_query`, `korm_update`,
//! `raw_update`, and `korm_resolve`, `raw_resolve` for references across databases) runs
//! between the two marker
//! functions, after the 2,000 users were created, so the dump counts only its instructions.
//! Divide by the ops (2,000 loads; 50 queries) for a cost per op. `wal_create` and
//! `korm_create` time 2,000 creates with and without a write-ahead log; `korm_create_x16`
//! runs 16 tasks of 100 durable creates each (`durable.create_x16`'s korm side).

#[path = "../benches/workloads/mod.rs"]
mod workloads;

use std::hint::black_box;

use workloads::*;

#[inline(never)]
fn profile_start() {
    black_box(1);
}

#[inline(never)]
fn profile_end() {
    black_box(2);
}

/// The reference workload `query_resolve` with the users in another database: `korm_resolve`
/// or `raw_resolve`, 50 queries.
async fn resolve(mode: &str) {
    use workloads::refs::{self, Placement, RawConns};
    let setup = refs::setup(Placement::Other, 200, 2_000).await;
    let raw = RawConns::open(&setup);
    black_box(refs::korm_query_resolve(&setup.pool).await);
    black_box(refs::raw_query_resolve(&raw));
    std::thread::sleep(std::time::Duration::from_millis(500));
    profile_start();
    for _ in 0..50 {
        if mode == "korm_resolve" {
            black_box(refs::korm_query_resolve(&setup.pool).await);
        } else {
            black_box(refs::raw_query_resolve(&raw));
        }
    }
    profile_end();
    setup.pool.close().await;
}

/// 2,000 creates, with a write-ahead log on a local depot (`wal_create`, records not synced)
/// or without (`korm_create`).
async fn create(wal: bool) {
    korm::crypto::install(korm::crypto::KeyRing::new(
        korm::crypto::EncryptionKey::from_hex(&"5e".repeat(32)).expect("key"),
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut builder = korm::pool().layer(
        "bench",
        korm::layers::sqlite(dir.path().join("korm.sqlite"))
            .with_synchronous(korm::layers::Synchronous::Normal),
    );
    if wal {
        builder = builder
            .depot("wal", korm::depots::local(dir.path().join("wal")))
            .with_wal("wal", korm::WalOptions::new("bench").with_fsync(false));
    }
    let pool = builder.open().await.expect("open");
    black_box(korm_create(&pool, 0..10).await);
    profile_start();
    black_box(korm_create(&pool, 10..2_010).await);
    profile_end();
    pool.close().await;
}

/// `durable.create_x16`'s korm side: 16 tasks making 100 creates each on one SQLite layer
/// with `synchronous = FULL`, group-committed.
async fn create_x16() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = korm::pool()
        .layer(
            "bench",
            korm::layers::sqlite(dir.path().join("korm.sqlite")),
        )
        .open()
        .await
        .expect("open");
    black_box(korm_create(&pool, 0..10).await);
    profile_start();
    black_box(korm_create_writers(&pool, 16, 100).await);
    profile_end();
    pool.close().await;
}

#[tokio::main]
async fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode.ends_with("_resolve") {
        resolve(&mode).await;
        return;
    }
    if mode == "korm_create_x16" {
        create_x16().await;
        return;
    }
    if mode == "wal_create" || mode == "korm_create" {
        create(mode == "wal_create").await;
        return;
    }
    let n = 2_000;
    let queries = 50;
    let dir = tempfile::tempdir().expect("temp dir");
    if mode.starts_with("korm") {
        let pool = korm_pool(&dir.path().join("korm.sqlite")).await;
        let mut items = korm_create(&pool, 0..n).await;
        let rns: Vec<_> = items.iter().map(|i| i.rn().clone()).collect();
        // Warm the caches (statements, schema, plans) as the bench binary's earlier
        // workloads do.
        black_box(korm_get(&pool, &rns[..10]).await);
        black_box(korm_query(&pool).await);
        // The creates end with a checkpoint due, which the connection thread runs on its own:
        // let it finish, so the reads are counted without it.
        std::thread::sleep(std::time::Duration::from_millis(500));
        profile_start();
        match mode.as_str() {
            "korm_get" => black_box(korm_get(&pool, &rns).await),
            "korm_query" => {
                let mut total = 0;
                for _ in 0..queries {
                    total += black_box(korm_query(&pool).await);
                }
                total
            }
            "korm_update" => {
                items = korm_update(std::mem::take(&mut items)).await;
                items.len()
            }
            _ => panic!("unknown mode {mode}"),
        };
        profile_end();
        pool.close().await;
    } else {
        let conn = raw_conn(&dir.path().join("raw.sqlite"));
        let mut rows = raw_create(&conn, 0..n);
        let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
        black_box(raw_get(&conn, &ids[..10]));
        black_box(raw_query(&conn));
        profile_start();
        match mode.as_str() {
            "raw_get" => black_box(raw_get(&conn, &ids)),
            "raw_query" => {
                let mut total = 0;
                for _ in 0..queries {
                    total += black_box(raw_query(&conn));
                }
                total
            }
            "raw_update" => {
                raw_update(&conn, &mut rows);
                rows.len()
            }
            _ => panic!(
                "unknown mode {mode}; one of korm_get raw_get korm_query raw_query korm_update \
                 raw_update"
            ),
        };
        profile_end();
    }
}
