//! SQLite's SQL for the pool snapshot and for reset (see [`crate::layer::meta`]).

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::db_error;
use super::worker::State;
use crate::error::Result;
use crate::layer::meta::check_droppable;
use crate::layer::meta::{POOL_ROW, PoolRow, is_item_table};
use crate::query::dialect::Dialect;

/// korm 1.5's DDL for `__korm_pool__`, byte for byte (as `cardb.sqlite` holds it).
const CREATE_POOL: &str = "CREATE TABLE IF NOT EXISTS \"__korm_pool__\" (
                    \"id\" TEXT PRIMARY KEY,
                    \"config\" TEXT NOT NULL,
                    \"created_at\" INTEGER NOT NULL,
                    \"updated_at\" INTEGER NOT NULL
                )";

pub(super) fn read_pool_row(state: &State) -> Result<Option<PoolRow>> {
    let map = |e| db_error(&state.ident, e);
    let exists = state
        .conn
        .prepare_cached(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '__korm_pool__'",
        )
        .and_then(|mut stmt| stmt.exists([]))
        .map_err(map)?;
    if !exists {
        return Ok(None);
    }
    let mut stmt = state
        .conn
        .prepare_cached(
            "SELECT \"config\", \"created_at\", \"updated_at\" FROM \"__korm_pool__\" WHERE \"id\" = ?1",
        )
        .map_err(map)?;
    stmt.query_row([POOL_ROW], |row| {
        // Written by another program, the row may hold anything: a config that is not text
        // is reported by the caller as an unreadable snapshot, never a panic.
        let config = match row.get_ref(0)? {
            ValueRef::Text(text) | ValueRef::Blob(text) => {
                String::from_utf8_lossy(text).into_owned()
            }
            _ => String::new(),
        };
        let time = |i: usize| -> rusqlite::Result<i64> {
            Ok(match row.get_ref(i)? {
                ValueRef::Integer(n) => n,
                #[allow(clippy::cast_possible_truncation)]
                ValueRef::Real(f) => f as i64,
                _ => 0,
            })
        };
        Ok(PoolRow {
            config,
            created_at: time(1)?,
            updated_at: time(2)?,
        })
    })
    .optional()
    .map_err(map)
}

pub(super) fn insert_pool_row(state: &mut State, config: &str, now: i64) -> Result<bool> {
    let map = |e| db_error(&state.ident, e);
    let tx = state
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map)?;
    tx.execute_batch(CREATE_POOL).map_err(map)?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO \"__korm_pool__\" (\"id\", \"config\", \"created_at\", \"updated_at\") \
             VALUES (?1, ?2, ?3, ?3) ON CONFLICT (\"id\") DO NOTHING",
        )
        .and_then(|mut stmt| stmt.execute(params![POOL_ROW, config, now]))
        .map_err(map)?;
    tx.commit().map_err(map)?;
    Ok(inserted == 1)
}

pub(super) fn update_pool_row(state: &State, config: &str, now: i64) -> Result<()> {
    state
        .conn
        .prepare_cached(
            "UPDATE \"__korm_pool__\" SET \"config\" = ?1, \"updated_at\" = ?2 WHERE \"id\" = ?3",
        )
        .and_then(|mut stmt| stmt.execute(params![config, now, POOL_ROW]))
        .map_err(|e| db_error(&state.ident, e))?;
    Ok(())
}

/// Drops the tables in one transaction (SQLite's DDL is transactional: all or none) and
/// forgets what the connection cached of every table.
pub(super) fn drop_tables(state: &mut State, names: &[String]) -> Result<Vec<String>> {
    let ident = state.ident.clone();
    let map = |e| db_error(&ident, e);
    let tx = state
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map)?;
    let mut dropped = Vec::new();
    for name in names {
        check_droppable(name)?;
        let existed = tx
            .prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")
            .and_then(|mut stmt| stmt.exists([name]))
            .map_err(map)?;
        if existed {
            let sql = format!(
                "DROP TABLE IF EXISTS {}",
                super::SqliteDialect.quote_identifier(name)
            );
            tx.execute_batch(&sql).map_err(map)?;
            dropped.push(name.clone());
        }
    }
    tx.commit().map_err(map)?;
    state.schemas.clear();
    state.plans.clear();
    // Statements prepared against a dropped table are prepared again when next used.
    state.conn.flush_prepared_statement_cache();
    Ok(dropped)
}

/// The item tables of the database (korm's, by their exact prefix).
pub(super) fn item_tables(state: &State) -> Result<Vec<String>> {
    let names = table_names(
        &state.conn,
        &state.ident,
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
    )?;
    Ok(names.into_iter().filter(|n| is_item_table(n)).collect())
}

/// The table names `sql` lists from `sqlite_master`.
pub(super) fn table_names(conn: &Connection, ident: &str, sql: &str) -> Result<Vec<String>> {
    let map = |e| db_error(ident, e);
    let mut stmt = conn.prepare_cached(sql).map_err(map)?;
    stmt.query_map([], |row| row.get::<_, String>(0))
        .map_err(map)?
        .collect::<rusqlite::Result<Vec<String>>>()
        .map_err(map)
}
