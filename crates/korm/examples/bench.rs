//! The bench binary: each workload by korm and by the raw driver in one run, one line each:
//! `workload<TAB>korm_ops_per_s<TAB>raw_ops_per_s`.
//!
//! `cargo run --release -p korm --example bench [sqlite|refs|servers]`. Each SQLite round runs
//! every workload on fresh files in blocks, korm and raw blocks alternating, so a noisy
//! neighbour slows both sides alike. Each line is the round with the median korm/raw ratio. `KORM_BENCH_QUICK=1` runs a tiny version (to check it works; its
//! figures mean nothing).
//!
//! SQLite runs with `synchronous = NORMAL` in WAL mode on both sides (the fast setting; with
//! the default `FULL` every commit waits for the disk and both sides measure the disk).
//! PostgreSQL and MariaDB lines (`pg.create`, `mysql.query`, ...) compare korm with raw sqlx
//! doing the same SQL on the same schema, each side in a fresh database on the local server.
//! `KORM_BENCH_SQLITE_ONLY=1` stops after the SQLite lines; `KORM_BENCH_ROUNDS=n` runs n
//! SQLite rounds instead of 15 (more rounds, a steadier median on a noisy machine);
//! `KORM_BENCH_DETAIL=1` prints every SQLite round on stderr.
//!
//! `durable.create` and `durable.create_x16` run SQLite with `synchronous = FULL` (korm's
//! default) on both sides, where every commit waits for the disk: one task creating items one
//! after another beside raw autocommit inserts, then 16 concurrent tasks beside 16 OS threads
//! each inserting on a connection of its own (see [`durable_lines`]; korm group-commits).
//! `query.200k` and `query_indexed.200k` (section `scale`) query 200,000 SQLite items by a JSON
//! path, without and with a declared index (see [`scale_lines`]).
//!
//! `wal.create` and `wal.create.fsync` are the exception to `korm<TAB>raw`: korm with a
//! write-ahead log, then korm without one (see [`wal_lines`]).

#[path = "../benches/workloads/mod.rs"]
mod workloads;

use std::time::{Duration, Instant};

use workloads::server::{self, Database, Raw, Server};
use workloads::*;

fn per_second(ops: usize, started: Instant) -> f64 {
    ops as f64 / started.elapsed().as_secs_f64()
}

/// How many blocks a round splits each SQLite workload into (see [`sqlite_round`]).
const BLOCKS: usize = 10;

/// One round: each workload by korm and by raw rusqlite on fresh files, as ops per second
/// `[create, get_by_rn, query, update_commit]` of each side. A workload runs in blocks, the
/// korm and raw blocks alternating (which side goes first alternates too), and each side's
/// blocks are timed and added up: a slow spell of the machine lands on both sides alike.
async fn sqlite_round(n: usize, queries: usize) -> ([f64; 4], [f64; 4]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = korm_pool(&dir.path().join("korm.sqlite")).await;
    let conn = raw_conn(&dir.path().join("raw.sqlite"));
    // Table creation and statement caches.
    korm_create(&pool, 0..10).await;
    raw_create(&conn, 0..10);
    let (mut korm, mut raw) = ([Duration::ZERO; 4], [Duration::ZERO; 4]);
    let block = |b: usize, total: usize| (total * b / BLOCKS)..(total * (b + 1) / BLOCKS);

    let mut items = Vec::with_capacity(n);
    let mut rows = Vec::with_capacity(n);
    for b in 0..BLOCKS {
        let range = block(b, n);
        let range = 10 + range.start..10 + range.end;
        for korm_side in sides(b) {
            let t = Instant::now();
            if korm_side {
                items.extend(korm_create(&pool, range.clone()).await);
                korm[0] += t.elapsed();
            } else {
                rows.extend(raw_create(&conn, range.clone()));
                raw[0] += t.elapsed();
            }
        }
    }
    let rns: Vec<_> = items.iter().map(|i| i.rn().clone()).collect();
    let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
    for b in 0..BLOCKS {
        let range = block(b, n);
        for korm_side in sides(b) {
            let t = Instant::now();
            if korm_side {
                std::hint::black_box(korm_get(&pool, &rns[range.clone()]).await);
                korm[1] += t.elapsed();
            } else {
                std::hint::black_box(raw_get(&conn, &ids[range.clone()]));
                raw[1] += t.elapsed();
            }
        }
    }
    for b in 0..BLOCKS {
        let count = block(b, queries).len();
        for korm_side in sides(b) {
            let t = Instant::now();
            if korm_side {
                for _ in 0..count {
                    std::hint::black_box(korm_query(&pool).await);
                }
                korm[2] += t.elapsed();
            } else {
                for _ in 0..count {
                    std::hint::black_box(raw_query(&conn));
                }
                raw[2] += t.elapsed();
            }
        }
    }
    let mut updated = Vec::with_capacity(n);
    let mut items = items.into_iter();
    for b in 0..BLOCKS {
        let range = block(b, n);
        for korm_side in sides(b) {
            let t = Instant::now();
            if korm_side {
                let these: Vec<_> = items.by_ref().take(range.len()).collect();
                updated.extend(korm_update(these).await);
                korm[3] += t.elapsed();
            } else {
                raw_update(&conn, &mut rows[range.clone()]);
                raw[3] += t.elapsed();
            }
        }
    }
    std::hint::black_box(updated);
    pool.close().await;
    let ops = [n, n, queries, n];
    let rate =
        |times: [Duration; 4]| std::array::from_fn(|i| ops[i] as f64 / times[i].as_secs_f64());
    (rate(korm), rate(raw))
}

/// The order of the two sides in block `b`: `true` is korm.
fn sides(b: usize) -> [bool; 2] {
    let korm_first = b.is_multiple_of(2);
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
            let (k, r) = sqlite_round(n, queries).await;
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
    if runs("durable") {
        durable_lines(quick, rounds).await;
    }
    if runs("wal") {
        wal_lines(quick, rounds).await;
    }
    if runs("scale") {
        scale_lines(quick).await;
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

/// How many writers `durable.create_x16` runs at once.
const WRITERS: usize = 16;

/// `durable.create` and `durable.create_x16`: creates on SQLite files with
/// `synchronous = FULL` on both sides, where each commit syncs. One task creating items one
/// after another beside raw rusqlite autocommit inserts; then [`WRITERS`] tokio tasks on one
/// pool beside [`WRITERS`] OS threads, each with its own rusqlite connection and committing
/// its own inserts (they queue for SQLite's write lock). Each writer makes 100 creates: with
/// 25, starting the tasks and the first, smaller batch were a fifth of korm's x16 time. Each
/// round uses fresh files; which side goes first alternates; each line is the round with the
/// median korm/raw ratio.
async fn durable_lines(quick: bool, rounds: usize) {
    let (single, per_writer, rounds) = if quick {
        (10, 2, 1)
    } else {
        (150, 100, rounds.min(5))
    };
    let mut korm_rounds: Vec<[f64; 2]> = Vec::new();
    let mut raw_rounds: Vec<[f64; 2]> = Vec::new();
    for round in 0..rounds {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = korm::pool()
            .layer(
                "bench",
                korm::layers::sqlite(dir.path().join("korm.sqlite")),
            )
            .open()
            .await
            .expect("open korm pool");
        let raw_path = dir.path().join("raw.sqlite");
        let durable_conn = || {
            let conn = raw_conn(&raw_path);
            conn.execute_batch("PRAGMA synchronous = FULL;")
                .expect("synchronous FULL");
            conn
        };
        let conn = durable_conn();
        // Table creation and statement caches.
        korm_create(&pool, 0..10).await;
        raw_create(&conn, 0..10);
        let (mut korm, mut raw) = ([0.0; 2], [0.0; 2]);
        for korm_side in sides(round) {
            let t = Instant::now();
            if korm_side {
                std::hint::black_box(korm_create(&pool, 10..10 + single).await);
                korm[0] = per_second(single, t);
            } else {
                std::hint::black_box(raw_create(&conn, 10..10 + single));
                raw[0] = per_second(single, t);
            }
        }
        let conns: Vec<_> = (0..WRITERS).map(|_| durable_conn()).collect();
        let total = WRITERS * per_writer;
        let range = move |w: usize| {
            let start = 1_000 + w * per_writer;
            start..start + per_writer
        };
        let mut conns = Some(conns);
        for korm_side in sides(round) {
            let t = Instant::now();
            if korm_side {
                let made = korm_create_writers(&pool, WRITERS, per_writer).await;
                assert_eq!(std::hint::black_box(made), total);
                korm[1] = per_second(total, t);
            } else {
                let threads: Vec<_> = conns
                    .take()
                    .expect("raw connections")
                    .into_iter()
                    .enumerate()
                    .map(|(w, conn)| {
                        let range = range(w);
                        std::thread::spawn(move || raw_create(&conn, range).len())
                    })
                    .collect();
                for thread in threads {
                    std::hint::black_box(thread.join().expect("writer thread"));
                }
                raw[1] = per_second(total, t);
            }
        }
        pool.close().await;
        korm_rounds.push(korm);
        raw_rounds.push(raw);
    }
    for (i, name) in ["durable.create", "durable.create_x16"].iter().enumerate() {
        let (k, r) = median_round(&korm_rounds, &raw_rounds, i);
        println!("{name}\t{k:.0}\t{r:.0}");
    }
}

/// `query.200k` and `query_indexed.200k`: a filter selecting 10 of 200,000 items by a JSON
/// path (`meta.code`), by korm and by raw rusqlite running the same SQL, first without an
/// index (a scan), then with the declared index (raw: the same index). Queries alternate
/// sides in blocks, each block asking for other codes.
async fn scale_lines(quick: bool) {
    use workloads::scale;
    // `KORM_BENCH_SCALE_N` sets another size (for profiling; the line keeps its name).
    let n = std::env::var("KORM_BENCH_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 2_000 } else { 200_000 });
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = scale::korm_seed(&dir.path().join("korm.sqlite"), n).await;
    let conn = scale::raw_seed(&dir.path().join("raw.sqlite"), n);
    // Both files checkpointed before any query: korm checkpoints every 1,000 commits, so the
    // 200 seeding transactions left the whole table in its WAL, where every page read costs
    // a WAL-index lookup; rusqlite's auto-checkpoint had moved the raw side's into its file.
    // The lines compare queries, not checkpoint policies.
    scale::checkpoint(&dir.path().join("korm.sqlite"));
    scale::checkpoint(&dir.path().join("raw.sqlite"));
    let codes = n / scale::PER_CODE;
    for indexed in [false, true] {
        if indexed {
            scale::korm_index(&pool).await;
            scale::raw_index(&conn);
        }
        // Warm-up: statement caches, the schema, the pages.
        assert_eq!(scale::korm_query(&pool, 1).await, scale::PER_CODE);
        assert_eq!(scale::raw_query(&conn, 1, indexed), scale::PER_CODE);
        let per_block = match (quick, indexed) {
            (true, _) => 2,
            (false, false) => 3,
            (false, true) => 2_000,
        };
        let (mut korm, mut raw) = (Duration::ZERO, Duration::ZERO);
        let mut k = 7;
        for b in 0..BLOCKS {
            for korm_side in sides(b) {
                let t = Instant::now();
                for _ in 0..per_block {
                    k = (k * 7919 + 13) % codes;
                    if korm_side {
                        assert_eq!(scale::korm_query(&pool, k).await, scale::PER_CODE);
                    } else {
                        assert_eq!(scale::raw_query(&conn, k, indexed), scale::PER_CODE);
                    }
                }
                if korm_side {
                    korm += t.elapsed();
                } else {
                    raw += t.elapsed();
                }
            }
        }
        let ops = (per_block * BLOCKS) as f64;
        let name = if indexed {
            "query_indexed.200k"
        } else {
            "query.200k"
        };
        println!(
            "{name}\t{:.0}\t{:.0}",
            ops / korm.as_secs_f64(),
            ops / raw.as_secs_f64()
        );
    }
    pool.close().await;
}

/// `wal.create`: creates by korm with a write-ahead log on a local depot beside creates
/// without one, both on SQLite. Two lines, each with the WAL as durable as the layer:
/// `wal.create` with SQLite `synchronous = NORMAL` and records not synced (both survive a
/// crash of the process, not of the machine), `wal.create.fsync` with SQLite `FULL` and
/// every record synced (both survive a power loss; fewer ops, each waits for the disk).
async fn wal_lines(quick: bool, rounds: usize) {
    use korm::layers::Synchronous;
    // An encryption key for the WAL's MACs (the bench's own; never a real one).
    korm::crypto::install(korm::crypto::KeyRing::new(
        korm::crypto::EncryptionKey::from_hex(&"5e".repeat(32)).expect("key"),
    ));
    for (name, sync, n, rounds) in [
        (
            "wal.create",
            Synchronous::Normal,
            if quick { 50 } else { 2_000 },
            rounds,
        ),
        (
            "wal.create.fsync",
            Synchronous::Full,
            if quick { 10 } else { 200 },
            rounds.min(5),
        ),
    ] {
        let mut with = Vec::new();
        let mut without = Vec::new();
        for _ in 0..rounds {
            let dir = tempfile::tempdir().expect("temp dir");
            let open = |file: &str, wal: bool| {
                let mut builder = korm::pool().layer(
                    "bench",
                    korm::layers::sqlite(dir.path().join(file)).with_synchronous(sync),
                );
                if wal {
                    builder = builder
                        .depot("wal", korm::depots::local(dir.path().join("wal")))
                        .with_wal(
                            "wal",
                            korm::WalOptions::new("bench").with_fsync(sync == Synchronous::Full),
                        );
                }
                builder.open()
            };
            let logged = open("with.sqlite", true).await.expect("open with WAL");
            let plain = open("without.sqlite", false).await.expect("open");
            korm_create(&logged, 0..10).await;
            korm_create(&plain, 0..10).await;
            let (mut t_with, mut t_without) = (Duration::ZERO, Duration::ZERO);
            for b in 0..BLOCKS {
                let range = (n * b / BLOCKS + 10)..(n * (b + 1) / BLOCKS + 10);
                for wal_side in sides(b) {
                    let t = Instant::now();
                    if wal_side {
                        std::hint::black_box(korm_create(&logged, range.clone()).await);
                        t_with += t.elapsed();
                    } else {
                        std::hint::black_box(korm_create(&plain, range.clone()).await);
                        t_without += t.elapsed();
                    }
                }
            }
            logged.close().await;
            plain.close().await;
            with.push([n as f64 / t_with.as_secs_f64()]);
            without.push([n as f64 / t_without.as_secs_f64()]);
        }
        let (w, wo) = median_round(&with, &without, 0);
        println!("{name}\t{w:.0}\t{wo:.0}");
    }
}

/// The reference workloads (`query_resolve`, `query_ref_filter`), with the users in the
/// cars' database and in another one (`.other_layer`).
async fn references(quick: bool) {
    use workloads::refs::{self, Placement, RawConns};
    let (users, cars, queries, rounds) = if quick {
        (20, 200, 2, 1)
    } else {
        (200, 2_000, 50, 9)
    };
    for (placement, suffix) in [(Placement::Same, ""), (Placement::Other, ".other_layer")] {
        let setup = refs::setup(placement, users, cars).await;
        let raw_conns = RawConns::open(&setup);
        let name = format!("user{}", users / 2);
        // Both sides must give the same answer before they are timed.
        assert_eq!(
            refs::korm_query_resolve(&setup.pool).await,
            refs::raw_query_resolve(&raw_conns)
        );
        assert_eq!(
            refs::korm_query_ref_filter(&setup.pool, &name).await,
            refs::raw_query_ref_filter(&raw_conns, &name)
        );
        // Per round: [resolve, ref_filter] ops per second of each side, korm and raw blocks
        // alternating as in the SQLite rounds.
        let mut korm_rounds: Vec<[f64; 2]> = Vec::new();
        let mut raw_rounds: Vec<[f64; 2]> = Vec::new();
        for _ in 0..rounds {
            let (mut korm, mut raw) = ([Duration::ZERO; 2], [Duration::ZERO; 2]);
            for b in 0..BLOCKS {
                let count = (queries * (b + 1) / BLOCKS) - (queries * b / BLOCKS);
                for korm_side in sides(b) {
                    let t = Instant::now();
                    for _ in 0..count {
                        if korm_side {
                            std::hint::black_box(refs::korm_query_resolve(&setup.pool).await);
                        } else {
                            std::hint::black_box(refs::raw_query_resolve(&raw_conns));
                        }
                    }
                    let spent = t.elapsed();
                    if korm_side {
                        korm[0] += spent;
                    } else {
                        raw[0] += spent;
                    }
                    let t = Instant::now();
                    for _ in 0..count {
                        if korm_side {
                            std::hint::black_box(
                                refs::korm_query_ref_filter(&setup.pool, &name).await,
                            );
                        } else {
                            std::hint::black_box(refs::raw_query_ref_filter(&raw_conns, &name));
                        }
                    }
                    let spent = t.elapsed();
                    if korm_side {
                        korm[1] += spent;
                    } else {
                        raw[1] += spent;
                    }
                }
            }
            let rate = |times: [Duration; 2]| times.map(|t| queries as f64 / t.as_secs_f64());
            korm_rounds.push(rate(korm));
            raw_rounds.push(rate(raw));
        }
        for (i, name) in ["query_resolve", "query_ref_filter"].iter().enumerate() {
            let (k, r) = median_round(&korm_rounds, &raw_rounds, i);
            println!("{name}{suffix}\t{k:.0}\t{r:.0}");
        }
        setup.pool.close().await;
    }
}

/// One line per workload: the round whose korm/raw ratio is the median of the rounds (both
/// figures of a line come from the same round).
fn print_rows(prefix: &str, korm: &[[f64; 4]], raw: &[[f64; 4]]) {
    for (i, name) in ["create", "get_by_rn", "query", "update_commit"]
        .iter()
        .enumerate()
    {
        let (k, r) = median_round(korm, raw, i);
        println!("{prefix}{name}\t{k:.0}\t{r:.0}");
    }
}

/// Workload `i`'s korm and raw ops per second in the round with the median korm/raw ratio.
fn median_round<const N: usize>(korm: &[[f64; N]], raw: &[[f64; N]], i: usize) -> (f64, f64) {
    let mut rounds: Vec<usize> = (0..korm.len()).collect();
    rounds.sort_by(|&a, &b| (raw[a][i] / korm[a][i]).total_cmp(&(raw[b][i] / korm[b][i])));
    let m = rounds[rounds.len() / 2];
    (korm[m][i], raw[m][i])
}
