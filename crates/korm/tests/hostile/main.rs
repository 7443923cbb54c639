//! Hostile tests: bad input (malformed RNs, unsafe identifiers, SQL in values and paths,
//! models that are not JSON, tampered rows) must give a typed error or a literal value: never
//! executed SQL, never a panic, never a half-written row, never a stored value in an error.
//!
//! Each test checks the database with rusqlite directly, beside korm's own connection.

mod crypto;
mod encoding;
mod identifiers;
mod injection;
mod references;
mod rns;
mod routing;
mod secrets;
mod tampered;
mod transactions;

use std::path::PathBuf;
use std::time::Duration;

use korm::{Pool, Rn};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The table of the `[rn]:users:freetier:*` collection.
pub const USERS_TABLE: &str = "__items__users__freetier";
/// The users collection.
pub const USERS: &str = "[rn]:users:freetier:*";

/// A pool over one SQLite file, and the file's path for rusqlite.
pub struct Db {
    pub pool: Pool,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

/// A fresh SQLite file in a temp dir, opened as the single layer `db`.
pub async fn file_db() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db.sqlite");
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite(&path))
        .open()
        .await
        .expect("open sqlite file");
    Db {
        pool,
        path,
        _dir: dir,
    }
}

impl Db {
    /// A second, plain rusqlite connection to the file.
    pub fn sql(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(&self.path).expect("open with rusqlite");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        conn
    }

    /// Every table in the file, sorted.
    pub fn tables(&self) -> Vec<String> {
        let conn = self.sql();
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .expect("prepare sqlite_master");
        stmt.query_map([], |r| r.get::<_, String>(0))
            .expect("query sqlite_master")
            .collect::<Result<_, _>>()
            .expect("read sqlite_master")
    }

    /// The columns of a table, in table order.
    pub fn columns(&self, table: &str) -> Vec<String> {
        let conn = self.sql();
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .expect("prepare table_info");
        stmt.query_map([table], |r| r.get::<_, String>(0))
            .expect("query table_info")
            .collect::<Result<_, _>>()
            .expect("read table_info")
    }

    /// How many rows a table has.
    pub fn count(&self, table: &str) -> i64 {
        self.sql()
            .query_row(
                &format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\"")),
                [],
                |r| r.get(0),
            )
            .expect("count rows")
    }

    /// Runs SQL on the rusqlite connection (to tamper with rows).
    pub fn exec(&self, sql: &str, params: impl rusqlite::Params) {
        self.sql().execute(sql, params).expect("tamper with sql");
    }
}

/// Parses an RN that the test knows to be valid.
pub fn rn<T>(s: &str) -> Rn<T> {
    s.parse().expect("valid rn")
}

/// Creates an item that must be created.
pub async fn create<T>(pool: &Pool, collection: &str, data: T) -> korm::Item<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    korm::item::<T>(pool)
        .from_data(rn(collection), data)
        .expect("floating item")
        .create()
        .await
        .expect("create")
}

/// Creates an item that must fail, returning the error.
pub async fn create_err<T>(pool: &Pool, collection: &str, data: T) -> korm::Error
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    match korm::item::<T>(pool)
        .from_data(rn(collection), data)
        .expect("floating item")
        .create()
        .await
    {
        Ok(item) => panic!("create succeeded at {}, expected an error", item.rn()),
        Err(e) => e,
    }
}

/// Every text an error shows: Display, Debug and the Display of its sources.
pub fn all_text(error: &korm::Error) -> String {
    let mut text = format!("{error}\n{error:?}");
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text.push_str(&format!("\n{e}\n{e:?}"));
        source = e.source();
    }
    text
}
