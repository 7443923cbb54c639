//! Cost curves (#17): how korm's costs grow with a collection's size. For each backend
//! (SQLite, and PostgreSQL when `KORM_TEST_PG_URL` names one) and each size (2,000, 20,000,
//! 200,000 items), in a fresh collection:
//!
//! - `create`: one more item created (ops/s over 500 creates);
//! - `get_by_rn`: a load by RN of a random item (2,000 loads);
//! - `query_scan`: a filter on a JSON path selecting 10 items, no index;
//! - `query_indexed`: the same with the path's declared index;
//! - `resolve`: a load of a random item with its reference (`owner`) resolved, into a
//!   collection a tenth the size (1,000 loads).
//!
//! One line per backend, size and workload: `backend<TAB>items<TAB>workload<TAB>ops_per_s`.
//! `cargo run --release -p korm --example cost_curves [max_items]`; docs/design.md has the
//! figures and why each curve has its shape. The collections are dropped at the end.

use std::time::{Duration, Instant};

use korm::{IndexKind, Pool, Ref, eq};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Owner {
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Doc {
    n: i64,
    name: String,
    meta: Meta,
    owner: Ref<Owner>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    code: String,
    tier: String,
}

/// A small deterministic generator (the same picks on every run).
struct Picks(u64);

impl Picks {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

fn per_second(ops: usize, took: Duration) -> f64 {
    ops as f64 / took.as_secs_f64()
}

async fn open(backend: &str, url: &str) -> Pool {
    let pool = korm::pool();
    let pool = match backend {
        "sqlite" => pool.layer(
            "db",
            korm::layers::sqlite(url).with_synchronous(korm::layers::Synchronous::Normal),
        ),
        _ => pool.layer("db", korm::layers::postgres(url.to_owned())),
    };
    pool.open().await.expect("open")
}

/// Measures every workload at `n` items on a fresh pair of collections; prints the lines.
async fn curve(backend: &str, url: &str, n: usize, tag: &str) -> Vec<String> {
    let pool = open(backend, url).await;
    let owners_rn = format!("[rn]:curve:o{tag}n{n}:*");
    let docs_rn = format!("[rn]:curve:d{tag}n{n}:*");
    let owners_n = (n / 10).max(1);
    let codes = (n / 10).max(1);
    let mut owner_rns: Vec<korm::Rn<Owner>> = Vec::with_capacity(owners_n);
    let owners = korm::item::<Owner>(&pool);
    for start in (0..owners_n).step_by(1000) {
        let mut tx = korm::tx(&pool);
        for i in start..(start + 1000).min(owners_n) {
            let item = owners
                .from_data(
                    owners_rn.parse().unwrap(),
                    Owner {
                        name: format!("owner{i}"),
                    },
                )
                .unwrap();
            owner_rns.push(item.rn().clone());
            tx.create(item);
        }
        tx.persist().await.expect("owners");
    }
    let doc = |i: usize| Doc {
        n: i as i64,
        name: format!("doc{i}"),
        meta: Meta {
            code: format!("c{:06}", i % codes),
            tier: ["gold", "silver", "bronze"][i % 3].to_owned(),
        },
        owner: Ref::new(owner_rns[i % owners_n].clone()),
    };
    let docs = korm::item::<Doc>(&pool);
    let mut doc_rns: Vec<korm::Rn<Doc>> = Vec::with_capacity(n);
    for start in (0..n).step_by(1000) {
        let mut tx = korm::tx(&pool);
        for i in start..(start + 1000).min(n) {
            let item = docs.from_data(docs_rn.parse().unwrap(), doc(i)).unwrap();
            doc_rns.push(item.rn().clone());
            tx.create(item);
        }
        tx.persist().await.expect("docs");
    }
    let mut picks = Picks(n as u64);
    let mut lines = Vec::new();
    let mut line = |workload: &str, ops: usize, took: Duration| {
        let text = format!("{backend}\t{n}\t{workload}\t{:.0}", per_second(ops, took));
        println!("{text}");
        lines.push(text);
    };

    let t = Instant::now();
    for i in 0..500 {
        docs.from_data(docs_rn.parse().unwrap(), doc(n + i))
            .unwrap()
            .create()
            .await
            .expect("create");
    }
    line("create", 500, t.elapsed());

    let t = Instant::now();
    for _ in 0..2_000 {
        let rn = doc_rns[picks.next(n)].clone();
        docs.load(rn).get().await.expect("load");
    }
    line("get_by_rn", 2_000, t.elapsed());

    let query = |k: usize| {
        docs.query(docs_rn.parse().unwrap())
            .filter(eq("meta.code", format!("c{:06}", k)))
    };
    let scans = if n >= 200_000 { 5 } else { 20 };
    let t = Instant::now();
    for _ in 0..scans {
        let found = query(picks.next(codes)).get().await.expect("scan");
        assert!(!found.is_empty());
    }
    line("query_scan", scans, t.elapsed());

    let collection: korm::Rn<Doc> = docs_rn.parse().unwrap();
    korm::declare_index(&pool, &collection, "meta.code", IndexKind::Text)
        .await
        .expect("index");
    let t = Instant::now();
    for _ in 0..1_000 {
        let found = query(picks.next(codes)).get().await.expect("indexed");
        assert!(!found.is_empty());
    }
    line("query_indexed", 1_000, t.elapsed());

    let t = Instant::now();
    for _ in 0..1_000 {
        let rn = doc_rns[picks.next(n)].clone();
        let item = docs
            .load(rn)
            .resolve(["owner"])
            .get()
            .await
            .expect("resolve");
        assert!(item.data().owner.resolved().is_some());
    }
    line("resolve", 1_000, t.elapsed());

    pool.close().await;
    if backend == "postgres" {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(url).await {
            for table in [
                format!("__items__curve__o{tag}n{n}"),
                format!("__items__curve__d{tag}n{n}"),
            ] {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP TABLE IF EXISTS \"{table}\""
                )))
                .execute(&mut conn)
                .await;
            }
        }
    }
    lines
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let max: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let sizes: Vec<usize> = [2_000, 20_000, 200_000]
        .into_iter()
        .filter(|s| *s <= max)
        .collect();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let dir = tempfile::tempdir().expect("temp dir");
    println!("backend\titems\tworkload\tops_per_s");
    for &n in &sizes {
        let path = dir.path().join(format!("curve{n}.sqlite"));
        curve("sqlite", &path.display().to_string(), n, tag).await;
    }
    match std::env::var("KORM_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(url) => {
            for &n in &sizes {
                curve("postgres", &url, n, tag).await;
            }
        }
        None => eprintln!("postgres: skipped (KORM_TEST_PG_URL unset)"),
    }
}
