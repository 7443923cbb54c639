//! The scale workloads (#17): a selective filter on a JSON path over a large SQLite
//! collection, without and with a declared index, by korm and by raw rusqlite running the
//! same SQL (and, indexed, the same index) on the same schema.

use std::path::Path;

use korm::{IndexKind, Pool, eq};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

/// The model: `meta.code` has one value per 10 items.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Doc {
    pub name: String,
    pub n: i64,
    pub meta: DocMeta,
}

/// The JSON field filtered on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocMeta {
    pub code: String,
    pub tier: String,
}

/// Items per `meta.code` value.
pub const PER_CODE: usize = 10;

pub fn doc(i: usize, n: usize) -> Doc {
    Doc {
        name: format!("doc{i}"),
        n: i as i64,
        meta: DocMeta {
            code: code(i % (n / PER_CODE).max(1)),
            tier: ["gold", "silver", "bronze"][i % 3].to_owned(),
        },
    }
}

/// The `k`th code value.
pub fn code(k: usize) -> String {
    format!("c{k:06}")
}

pub const COLLECTION: &str = "[rn]:scale:docs:*";
pub const TABLE: &str = "__items__scale__docs";

/// A korm pool on `path` holding `n` docs (created in transactions of 1,000).
pub async fn korm_seed(path: &Path, n: usize) -> Pool {
    let pool = korm::pool()
        .layer(
            "bench",
            korm::layers::sqlite(path).with_synchronous(korm::layers::Synchronous::Normal),
        )
        .open()
        .await
        .expect("open korm pool");
    let docs = korm::item::<Doc>(&pool);
    for start in (0..n).step_by(1000) {
        let mut tx = korm::tx(&pool);
        for i in start..(start + 1000).min(n) {
            tx.create(
                docs.from_data(COLLECTION.parse().unwrap(), doc(i, n))
                    .unwrap(),
            );
        }
        tx.persist().await.expect("seed");
    }
    pool
}

/// Declares the index on `meta.code`.
pub async fn korm_index(pool: &Pool) {
    let rn: korm::Rn<Doc> = COLLECTION.parse().unwrap();
    korm::declare_index(pool, &rn, "meta.code", IndexKind::Text)
        .await
        .expect("declare index");
}

/// The docs with code `k`.
pub async fn korm_query(pool: &Pool, k: usize) -> usize {
    korm::item::<Doc>(pool)
        .query(COLLECTION.parse().unwrap())
        .filter(eq("meta.code", code(k)))
        .get()
        .await
        .unwrap()
        .len()
}

/// A raw connection on `path` holding `n` docs in korm's schema.
pub fn raw_seed(path: &Path, n: usize) -> Connection {
    let mut conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .unwrap();
    conn.execute_batch("PRAGMA synchronous = NORMAL;").unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{TABLE}\" ( \"rnId\" ID_TEXT PRIMARY KEY, \"name\" TEXT, \
         \"n\" INTEGER, \"meta\" JSON_TEXT )"
    ))
    .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx
            .prepare(&format!(
                "INSERT INTO \"{TABLE}\" (\"rnId\", \"name\", \"n\", \"meta\") VALUES (?, ?, ?, ?)"
            ))
            .unwrap();
        for i in 0..n {
            let d = doc(i, n);
            stmt.execute(params![
                korm::rn::new_id().to_string(),
                d.name,
                d.n,
                serde_json::to_string(&d.meta).unwrap()
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
    conn
}

/// The index korm declares, on the raw side: the same expression (korm's name for it does
/// not matter to SQLite).
pub fn raw_index(conn: &Connection) {
    conn.execute_batch(&format!(
        "CREATE INDEX IF NOT EXISTS \"raw_code\" ON \"{TABLE}\" ((json_extract(\"meta\", '$.code')))"
    ))
    .unwrap();
}

fn raw_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, Doc)> {
    let meta: String = row.get(3)?;
    Ok((
        row.get(0)?,
        Doc {
            name: row.get(1)?,
            n: row.get(2)?,
            meta: serde_json::from_str(&meta).unwrap(),
        },
    ))
}

/// The docs with code `k`, by the SQL korm renders: the path bound without an index, the
/// index's literal expression with one.
pub fn raw_query(conn: &Connection, k: usize, indexed: bool) -> usize {
    let docs: Vec<(String, Doc)> = if indexed {
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT * FROM \"{TABLE}\" WHERE json_extract(\"meta\", '$.code') = ?"
            ))
            .unwrap();
        stmt.query_map([code(k)], raw_row)
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    } else {
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT * FROM \"{TABLE}\" WHERE json_extract(\"meta\", ?) = ?"
            ))
            .unwrap();
        stmt.query_map(params!["$.code", code(k)], raw_row)
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    docs.len()
}

/// Checkpoints the SQLite file at `path` (from a connection of its own), so its pages are read
/// from the database file rather than looked up in the WAL.
pub fn checkpoint(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}
