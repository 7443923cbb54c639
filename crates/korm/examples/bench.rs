//! The bench binary: each workload by korm and by the raw driver in one run, one line each:
//! `workload<TAB>korm_ops_per_s<TAB>raw_ops_per_s`.
//!
//! `cargo run --release -p korm --example bench [sqlite|refs|servers]`. Each round runs every
//! workload on fresh files, the korm and raw sides of each workload back to back, and the
//! median of the rounds is printed, so a noisy neighbour moves both sides alike. `KORM_BENCH_QUICK=1` runs a tiny version (to check it works; its
//! figures mean nothing).
//!
//! SQLite runs with `synchronous = NORMAL` in WAL mode on both sides (the fast setting; with
//! the default `FULL` every commit waits for the disk and both sides measure the disk).
//! PostgreSQL and MariaDB lines (`pg.create`, `mysql.query`, ...) compare korm with raw sqlx
//! doing the same SQL on the same schema, each side in a fresh database on the local server.
//! `KORM_BENCH_SQLITE_ONLY=1` stops after the SQLite lines; `KORM_BENCH_ROUNDS=n` runs n
//! SQLite rounds instead of 15 (more rounds, a steadier median on a noisy machine);
//! `KORM_BENCH_DETAIL=1` prints every SQLite round on stderr.

#[path = "../benches/workloads/mod.rs"]
mod workloads;

use std::time::Instant;

use workloads::server::{self, Database, Raw, Server};
use workloads::*;

fn per_second(ops: usize, started: Instant) -> f64 {
    ops as f64 / started.elapsed().as_secs_f64()
}

/// One round: each workload by korm and by raw rusqlite back to back, on fresh files, as
/// ops per second `[create, get_by_rn, query, update_commit]` of each side. The two sides of a
/// workload run one right after the other (korm first in even rounds, raw first in odd ones),
/// so a slow spell of the machine lands on both alike.
async fn sqlite_round(round: usize, n: usize, queries: usize) -> ([f64; 4], [f64; 4]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = korm_pool(&dir.path().join("korm.sqlite")).await;
    let conn = raw_conn(&dir.path().join("raw.sqlite"));
    // Table creation and statement caches.
    korm_create(&pool, 0..10).await;
    raw_create(&conn, 0..10);
    let korm_first = round.is_multiple_of(2);
    let (mut korm, mut raw) = ([0.0; 4], [0.0; 4]);

    let mut items = Vec::new();
    let mut rows = Vec::new();
    for side in sides(korm_first) {
        let t = Instant::now();
        if side {
            items = korm_create(&pool, 10..10 + n).await;
            korm[0] = per_second(n, t);
        } else {
            rows = raw_create(&conn, 10..10 + n);
            raw[0] = per_second(n, t);
        }
    }
    let rns: Vec<_> = items.iter().map(|i| i.rn().clone()).collect();
    let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
    for side in sides(korm_first) {
        let t = Instant::now();
        if side {
            std::hint::black_box(korm_get(&pool, &rns).await);
            korm[1] = per_second(n, t);
        } else {
            std::hint::black_box(raw_get(&conn, &ids));
            raw[1] = per_second(n, t);
        }
    }
    for side in sides(korm_first) {
        let t = Instant::now();
        if side {
            for _ in 0..queries {
                std::hint::black_box(korm_query(&pool).await);
            }
            korm[2] = per_second(queries, t);
        } else {
            for _ in 0..queries {
                std::hint::black_box(raw_query(&conn));
            }
            raw[2] = per_second(queries, t);
        }
    }
    for side in sides(korm_first) {
        let t = Instant::now();
        if side {
            items = std::hint::black_box(korm_update(std::mem::take(&mut items)).await);
            korm[3] = per_second(n, t);
        } else {
            raw_update(&conn, &mut rows);
            raw[3] = per_second(n, t);
        }
    }
    pool.close().await;
    (korm, raw)
}

/// The order of the two sides of a workload: `true` is korm.
fn sides(korm_first: bool) -> [bool; 2] {
    [korm_first, !korm_first]
}

/// One round on a server: korm and raw sqlx, each in a fresh database.
async fn server_round(
    server: Server,
    n: usize,
    queries: usize,
) -> Result<([f64; 4], [f64; 4]), String> {
    let korm_db = Database::create(server).await.map_err(|e| e.to_string())?;
    let pool = server::korm_pool(&korm_db).await;
    korm_create(&pool, 0..10).await;
    let t = Instant::now();
    let items = korm_create(&pool, 10..10 + n).await;
    let create = per_second(n, t);
    let rns: Vec<_> = items.iter().map(|i| i.rn().clone()).collect();
    let t = Instant::now();
    std::hint::black_box(korm_get(&pool, &rns).await);
    let get = per_second(n, t);
    let t = Instant::now();
    for _ in 0..queries {
        std::hint::black_box(korm_query(&pool).await);
    }
    let query = per_second(queries, t);
    let t = Instant::now();
    std::hint::black_box(korm_update(items).await);
    let update = per_second(n, t);
    pool.close().await;
    korm_db.drop_now().await;
    let korm = [create, get, query, update];

    let raw_db = Database::create(server).await.map_err(|e| e.to_string())?;
    let raw = Raw::open(&raw_db).await;
    raw.create(0..10).await;
    let t = Instant::now();
    let mut rows = raw.create(10..10 + n).await;
    let create = per_second(n, t);
    let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
    let t = Instant::now();
    std::hint::black_box(raw.get(&ids).await);
    let get = per_second(n, t);
    let t = Instant::now();
    for _ in 0..queries {
        std::hint::black_box(raw.query().await);
    }
    let query = per_second(queries, t);
    let t = Instant::now();
    raw.update(&mut rows).await;
    let update = per_second(n, t);
    raw.close().await;
    raw_db.drop_now().await;
    Ok((korm, [create, get, query, update]))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let quick = std::env::var_os("KORM_BENCH_QUICK").is_some();
    // `bench sqlite|refs|servers` runs one section only.
    let only = std::env::args().nth(1);
    let runs = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let (n, queries, mut rounds) = if quick { (50, 3, 1) } else { (2_000, 50, 15) };
    if let Some(r) = std::env::var("KORM_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        rounds = r;
    }
    if runs("sqlite") {
        let mut korm = Vec::new();
        let mut raw = Vec::new();
        let detail = std::env::var_os("KORM_BENCH_DETAIL").is_some();
        for round in 0..rounds {
            let (k, r) = sqlite_round(round, n, queries).await;
            korm.push(k);
            raw.push(r);
            if detail {
                // Each round on stderr: korm and raw ops/s of the four workloads.
                eprintln!(
                    "round {round}: korm {:.0?} raw {:.0?}",
                    korm[round], raw[round]
                );
            }
        }
        print_rows("", &korm, &raw);
    }
    if std::env::var_os("KORM_BENCH_SQLITE_ONLY").is_some() {
        return;
    }
    if runs("refs") {
        references(quick).await;
    }
    if !runs("servers") {
        return;
    }

    // The servers: PostgreSQL and MariaDB beside raw sqlx (fewer ops: each is a round trip).
    let (n, queries, rounds) = if quick { (20, 2, 1) } else { (1_000, 50, 3) };
    for server in [Server::Pg, Server::My] {
        let mut korm = Vec::new();
        let mut raw = Vec::new();
        for _ in 0..rounds {
            match server_round(server, n, queries).await {
                Ok((k, r)) => {
                    korm.push(k);
                    raw.push(r);
                }
                Err(e) => {
                    eprintln!(
                        "!!!! {}: not benchmarked, the server is unreachable ({e}); scripts/test starts it",
                        server.prefix()
                    );
                    if std::env::var_os("KORM_TEST_RUN").is_some() {
                        std::process::exit(1);
                    }
                    break;
                }
            }
        }
        if !korm.is_empty() {
            print_rows(&format!("{}.", server.prefix()), &korm, &raw);
        }
    }
}

/// The reference workloads (`query_resolve`, `query_ref_filter`), with the users in the
/// cars' database and in another one (`.other_layer`).
async fn references(quick: bool) {
    use workloads::refs::{self, Placement, RawConns};
    let (users, cars, queries, rounds) = if quick {
        (20, 200, 2, 1)
    } else {
        (200, 2_000, 50, 5)
    };
    for (placement, suffix) in [(Placement::Same, ""), (Placement::Other, ".other_layer")] {
        let setup = refs::setup(placement, users, cars).await;
        let raw = RawConns::open(&setup);
        let name = format!("user{}", users / 2);
        // Both sides must give the same answer before they are timed.
        assert_eq!(
            refs::korm_query_resolve(&setup.pool).await,
            refs::raw_query_resolve(&raw)
        );
        assert_eq!(
            refs::korm_query_ref_filter(&setup.pool, &name).await,
            refs::raw_query_ref_filter(&raw, &name)
        );
        let mut results: [Vec<f64>; 4] = Default::default();
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..queries {
                std::hint::black_box(refs::korm_query_resolve(&setup.pool).await);
            }
            results[0].push(per_second(queries, t));
            let t = Instant::now();
            for _ in 0..queries {
                std::hint::black_box(refs::raw_query_resolve(&raw));
            }
            results[1].push(per_second(queries, t));
            let t = Instant::now();
            for _ in 0..queries {
                std::hint::black_box(refs::korm_query_ref_filter(&setup.pool, &name).await);
            }
            results[2].push(per_second(queries, t));
            let t = Instant::now();
            for _ in 0..queries {
                std::hint::black_box(refs::raw_query_ref_filter(&raw, &name));
            }
            results[3].push(per_second(queries, t));
        }
        let [a, b, c, d] = results.map(median);
        println!("query_resolve{suffix}\t{a:.0}\t{b:.0}");
        println!("query_ref_filter{suffix}\t{c:.0}\t{d:.0}");
        setup.pool.close().await;
    }
}

fn print_rows(prefix: &str, korm: &[[f64; 4]], raw: &[[f64; 4]]) {
    for (i, name) in ["create", "get_by_rn", "query", "update_commit"]
        .iter()
        .enumerate()
    {
        let k = median(korm.iter().map(|r| r[i]).collect());
        let r = median(raw.iter().map(|r| r[i]).collect());
        println!("{prefix}{name}\t{k:.0}\t{r:.0}");
    }
}
