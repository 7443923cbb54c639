//! The benchmark workloads of the SQLite layer, each done by korm and by raw rusqlite running
//! the same SQL on the same schema, with the same serde work on each side (the raw side
//! serializes `meta` to JSON text and parses it back, as any user of the raw driver must).
//! The raw side's rows get their ids as korm's do ([`korm::rn::new_id`]: time-prefixed), so
//! both sides' inserts touch the same index pages.
//!
//! Shared by the bench binary (`examples/bench.rs`) and the criterion bench
//! (`benches/sqlite.rs`).

#![allow(dead_code, unreachable_pub)]

pub mod refs;
pub mod scale;
pub mod server;

use std::path::Path;

use korm::{Item, Pool, and, eq, gt};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

/// The benchmark model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub username: String,
    pub age: i64,
    pub meta: Meta,
}

/// Nested data, stored as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub tier: String,
    pub flags: Flags,
}

/// Nested deeper.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Flags {
    pub hot: bool,
}

/// The i-th user of a run.
pub fn user(i: usize) -> User {
    User {
        username: format!("user{i}"),
        age: (i % 100) as i64,
        meta: Meta {
            tier: ["gold", "silver", "bronze"][i % 3].to_owned(),
            flags: Flags {
                hot: i.is_multiple_of(2),
            },
        },
    }
}

pub const COLLECTION: &str = "[rn]:users:freetier:*";
pub const TABLE: &str = "__items__users__freetier";

/// Opens a korm pool on a file, with the settings the raw side uses.
pub async fn korm_pool(path: &Path) -> Pool {
    korm::pool()
        .layer(
            "bench",
            korm::layers::sqlite(path).with_synchronous(korm::layers::Synchronous::Normal),
        )
        .open()
        .await
        .expect("open korm pool")
}

pub async fn korm_create(pool: &Pool, range: std::ops::Range<usize>) -> Vec<Item<User>> {
    let users = korm::item::<User>(pool);
    let mut out = Vec::with_capacity(range.len());
    for i in range {
        let item = users
            .from_data(COLLECTION.parse().unwrap(), user(i))
            .unwrap()
            .create()
            .await
            .unwrap();
        out.push(item);
    }
    out
}

/// `writers` tasks at once, each making `per_writer` creates one after another (writer `w`
/// numbers its users from `1_000 + w * per_writer`); the number of items made.
pub async fn korm_create_writers(pool: &Pool, writers: usize, per_writer: usize) -> usize {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let pool = pool.clone();
            let start = 1_000 + w * per_writer;
            tokio::spawn(async move { korm_create(&pool, start..start + per_writer).await.len() })
        })
        .collect();
    let mut made = 0;
    for task in tasks {
        made += task.await.expect("writer task");
    }
    made
}

pub async fn korm_get(pool: &Pool, rns: &[korm::Rn<User>]) -> usize {
    let users = korm::item::<User>(pool);
    let mut total = 0;
    for rn in rns {
        total += users.load(rn.clone()).get().await.unwrap().data().age as usize;
    }
    total
}

pub async fn korm_query(pool: &Pool) -> usize {
    korm::item::<User>(pool)
        .query(COLLECTION.parse().unwrap())
        .filter(and([gt("age", 80), eq("meta.tier", "gold")]))
        .get()
        .await
        .unwrap()
        .len()
}

pub async fn korm_update(items: Vec<Item<User>>) -> Vec<Item<User>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(item.update(|u| u.age += 1).commit().await.unwrap());
    }
    out
}

/// Opens a raw connection with the settings korm uses.
pub fn raw_conn(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .unwrap();
    conn.execute_batch("PRAGMA synchronous = NORMAL;").unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{TABLE}\" ( \"rnId\" ID_TEXT PRIMARY KEY, \"username\" TEXT, \
         \"age\" INTEGER, \"meta\" JSON_TEXT )"
    ))
    .unwrap();
    conn
}

pub fn raw_create(conn: &Connection, range: std::ops::Range<usize>) -> Vec<(String, User)> {
    let mut out = Vec::with_capacity(range.len());
    for i in range {
        let id = korm::rn::new_id().to_string();
        let u = user(i);
        let mut stmt = conn
            .prepare_cached(&format!(
                "INSERT INTO \"{TABLE}\" (\"rnId\", \"username\", \"age\", \"meta\") VALUES (?, ?, ?, ?)"
            ))
            .unwrap();
        stmt.execute(params![
            id,
            u.username,
            u.age,
            serde_json::to_string(&u.meta).unwrap()
        ])
        .unwrap();
        out.push((id, u));
    }
    out
}

fn raw_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let meta: String = row.get(3)?;
    Ok(User {
        username: row.get(1)?,
        age: row.get(2)?,
        meta: serde_json::from_str(&meta).unwrap(),
    })
}

pub fn raw_get(conn: &Connection, ids: &[String]) -> usize {
    let mut total = 0;
    for id in ids {
        let mut stmt = conn
            .prepare_cached(&format!("SELECT * FROM \"{TABLE}\" WHERE \"rnId\" = ?"))
            .unwrap();
        let user = stmt.query_row([id], raw_row).unwrap();
        total += user.age as usize;
    }
    total
}

/// The matching users with their ids: a query's caller needs to know which rows it got (korm
/// gives every item its RN, so it reads the id of each row too).
pub fn raw_query(conn: &Connection) -> usize {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT * FROM \"{TABLE}\" WHERE (\"age\" > ? AND json_extract(\"meta\", ?) = ?)"
        ))
        .unwrap();
    let users: Vec<(String, User)> = stmt
        .query_map(params![80, "$.tier", "gold"], |row| {
            Ok((row.get(0)?, raw_row(row)?))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    users.len()
}

pub fn raw_update(conn: &Connection, rows: &mut [(String, User)]) {
    for (id, u) in rows.iter_mut() {
        u.age += 1;
        let mut stmt = conn
            .prepare_cached(&format!(
                "UPDATE \"{TABLE}\" SET \"username\" = ?, \"age\" = ?, \"meta\" = ? WHERE \"rnId\" = ?"
            ))
            .unwrap();
        stmt.execute(params![
            u.username,
            u.age,
            serde_json::to_string(&u.meta).unwrap(),
            &*id
        ])
        .unwrap();
    }
}
