//! Criterion benchmarks of the SQLite workloads: korm beside raw rusqlite in each group.

mod workloads;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use workloads::*;

fn sqlite(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = rt.block_on(korm_pool(&dir.path().join("korm.sqlite")));
    let conn = raw_conn(&dir.path().join("raw.sqlite"));
    let items = rt.block_on(korm_create(&pool, 0..2_000));
    let rows = raw_create(&conn, 0..2_000);
    let rns: Vec<_> = items.iter().map(|i| i.rn().clone()).collect();
    let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();

    let mut group = c.benchmark_group("create");
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
            raw_create(&conn, next..next + 1)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("get_by_rn");
    group.bench_function("korm", |b| {
        b.iter(|| rt.block_on(korm_get(&pool, black_box(&rns[..1]))))
    });
    group.bench_function("raw", |b| b.iter(|| raw_get(&conn, black_box(&ids[..1]))));
    group.finish();

    let mut group = c.benchmark_group("query");
    group.bench_function("korm", |b| b.iter(|| rt.block_on(korm_query(&pool))));
    group.bench_function("raw", |b| b.iter(|| raw_query(&conn)));
    group.finish();

    let mut group = c.benchmark_group("update_commit");
    let mut item = Some(items.into_iter().next().expect("one item"));
    let mut row = vec![rows.into_iter().next().expect("one row")];
    group.bench_function("korm", |b| {
        b.iter(|| {
            let updated = rt.block_on(korm_update(vec![item.take().expect("item")]));
            item = updated.into_iter().next();
        })
    });
    group.bench_function("raw", |b| b.iter(|| raw_update(&conn, &mut row)));
    group.finish();
}

criterion_group!(benches, sqlite);
criterion_main!(benches);
