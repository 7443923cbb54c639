//! Criterion benchmarks of the server workloads: korm beside raw sqlx on PostgreSQL and
//! MariaDB, each in a database of its own on the local servers (see `workloads/server.rs`).

mod workloads;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use workloads::server::{self, Database, Raw, Server};
use workloads::*;

fn servers(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    for server in [Server::Pg, Server::My] {
        let (Ok(korm_db), Ok(raw_db)) = rt.block_on(async {
            (
                Database::create(server).await,
                Database::create(server).await,
            )
        }) else {
            eprintln!(
                "!!!! {}: server unreachable, not benchmarked (scripts/test starts it)",
                server.prefix()
            );
            continue;
        };
        let pool = rt.block_on(server::korm_pool(&korm_db));
        let raw = rt.block_on(Raw::open(&raw_db));
        let items = rt.block_on(korm_create(&pool, 0..500));
        let rows = rt.block_on(raw.create(0..500));
        let rns: Vec<_> = items.iter().map(|i| i.rn().clone()).collect();
        let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
        let prefix = server.prefix();

        let mut group = c.benchmark_group(format!("{prefix}.create"));
        let mut next = 10_000;
        group.bench_function("korm", |b| {
            b.iter(|| {
                next += 1;
                rt.block_on(korm_create(&pool, next..next + 1))
            })
        });
        group.bench_function("raw", |b| {
            b.iter(|| {
                next += 1;
                rt.block_on(raw.create(next..next + 1))
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("{prefix}.get_by_rn"));
        group.bench_function("korm", |b| {
            b.iter(|| rt.block_on(korm_get(&pool, black_box(&rns[..1]))))
        });
        group.bench_function("raw", |b| {
            b.iter(|| rt.block_on(raw.get(black_box(&ids[..1]))))
        });
        group.finish();

        let mut group = c.benchmark_group(format!("{prefix}.query"));
        group.bench_function("korm", |b| b.iter(|| rt.block_on(korm_query(&pool))));
        group.bench_function("raw", |b| b.iter(|| rt.block_on(raw.query())));
        group.finish();

        let mut group = c.benchmark_group(format!("{prefix}.update_commit"));
        let mut item = items.into_iter().next();
        let mut row = vec![rows.into_iter().next().expect("one row")];
        group.bench_function("korm", |b| {
            b.iter(|| {
                let updated = rt.block_on(korm_update(vec![item.take().expect("item")]));
                item = updated.into_iter().next();
            })
        });
        group.bench_function("raw", |b| b.iter(|| rt.block_on(raw.update(&mut row))));
        group.finish();

        rt.block_on(async {
            pool.close().await;
            raw.close().await;
            korm_db.drop_now().await;
            raw_db.drop_now().await;
        });
    }
}

criterion_group!(benches, servers);
criterion_main!(benches);
