//! Backups of a SQLite layer: its tables listed, their rows read inside one read transaction
//! (a consistent snapshot, on a connection of its own for a file), and tables emptied for a
//! restore that replaces.

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::SqliteLayer;
use super::error::db_error;
use crate::backup::format::{Raw, Sink};
use crate::backup::schedule::ScheduleRow;
use crate::error::{DbErrorKind, Error, Result};
use async_trait::async_trait;

use crate::layer::LayerBackups;
use crate::layer::backup::LayerSchedules;
use crate::layer::backup::backup_order;
use crate::layer::schema::TableSchema;
use crate::query::dialect::Dialect;

/// The tables a backup holds, in creation order: `__korm_pool__` and `__korm_meta__` first.
fn backup_tables(conn: &Connection, ident: &str) -> Result<Vec<String>> {
    let sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid";
    Ok(backup_order(super::meta::table_names(conn, ident, sql)?))
}

/// Reads `tables` into `sink` inside one read transaction.
fn export_on(
    conn: &Connection,
    ident: &str,
    tables: &[(String, Option<TableSchema>)],
    sink: &mut Sink,
) -> Result<()> {
    let map = |e| db_error(ident, e);
    conn.execute_batch("BEGIN").map_err(map)?;
    let read = (|| {
        for (table, schema) in tables {
            let sql = format!(
                "SELECT * FROM {}",
                super::SqliteDialect.quote_identifier(table)
            );
            let mut stmt = match conn.prepare(&sql) {
                Ok(stmt) => stmt,
                // Dropped since it was listed: nothing to back up.
                Err(e) if e.to_string().contains("no such table") => continue,
                Err(e) => return Err(map(e)),
            };
            let names: Vec<String> = stmt
                .column_names()
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            sink.begin_table(table, &names, schema.as_ref());
            let mut rows = stmt.query([]).map_err(map)?;
            while let Some(row) = rows.next().map_err(map)? {
                let mut values = Vec::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    values.push(match row.get_ref(i).map_err(map)? {
                        ValueRef::Null => Raw::Null,
                        ValueRef::Integer(n) => Raw::Integer(n),
                        ValueRef::Real(f) => Raw::Double(f),
                        ValueRef::Text(t) => {
                            Raw::Text(std::str::from_utf8(t).map_err(|_| Error::Decode {
                                rn: table.clone(),
                                reason: format!("column {name:?} holds text that is not UTF-8"),
                            })?)
                        }
                        ValueRef::Blob(_) => {
                            return Err(Error::Decode {
                                rn: table.clone(),
                                reason: format!(
                                    "column {name:?} holds a blob, which a snapshot can not hold"
                                ),
                            });
                        }
                    });
                }
                sink.row(values)?;
                if sink.is_full() {
                    sink.flush_blocking()?;
                }
            }
            sink.end_table();
        }
        Ok(())
    })();
    // A read transaction: ending it can not lose anything.
    let _ = conn.execute_batch("COMMIT");
    read
}

/// korm 1.5's schedules table.
const SCHEDULES_DDL: &str = "CREATE TABLE IF NOT EXISTS \"__korm_backups__\" (\
    \"schedule_id\" TEXT PRIMARY KEY, \"layer_ident\" TEXT NOT NULL, \
    \"interval_spec\" TEXT NOT NULL, \"next_run_at\" INTEGER NOT NULL, \"last_run_at\" INTEGER, \
    \"created_at\" INTEGER NOT NULL, \"updated_at\" INTEGER NOT NULL)";

#[async_trait]
impl LayerBackups for SqliteLayer {
    async fn backup_tables(&self) -> Result<Vec<String>> {
        self.worker
            .call(|state| backup_tables(&state.conn, &state.ident))
            .await
    }

    // A file is read on a connection of its own (the layer's stays free for the pool), an
    // in-memory database on the layer's.
    async fn export(
        &self,
        tables: Vec<(String, Option<TableSchema>)>,
        mut sink: Sink,
    ) -> Result<Sink> {
        let ident = self.ident.clone();
        match self.file.clone() {
            Some(path) => tokio::task::spawn_blocking(move || {
                let conn = Connection::open_with_flags(
                    &path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| Error::database(&ident, DbErrorKind::Connect, e.to_string()))?;
                conn.busy_timeout(std::time::Duration::from_secs(30))
                    .map_err(|e| db_error(&ident, e))?;
                export_on(&conn, &ident, &tables, &mut sink).map(|()| sink)
            })
            .await
            .map_err(|e| Error::database(&self.ident, DbErrorKind::Other, e.to_string()))?,
            None => {
                self.worker
                    .call(move |state| {
                        export_on(&state.conn, &state.ident, &tables, &mut sink).map(|()| sink)
                    })
                    .await
            }
        }
    }

    async fn clear_table(&self, table: &str) -> Result<()> {
        let table = table.to_owned();
        self.worker
            .call(move |state| {
                let sql = format!(
                    "DELETE FROM {}",
                    super::SqliteDialect.quote_identifier(&table)
                );
                match state.conn.execute(&sql, []) {
                    Ok(_) => Ok(()),
                    Err(e) if e.to_string().contains("no such table") => Ok(()),
                    Err(e) => Err(db_error(&state.ident, e)),
                }
            })
            .await
    }
}

#[async_trait]
impl LayerSchedules for SqliteLayer {
    async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.worker
            .call(|state| {
                let map = |e| db_error(&state.ident, e);
                state.conn.execute_batch(SCHEDULES_DDL).map_err(map)?;
                let mut stmt = state
                    .conn
                    .prepare(
                        "SELECT \"schedule_id\", \"layer_ident\", \"interval_spec\", \
                         \"next_run_at\", \"last_run_at\" FROM \"__korm_backups__\" \
                         ORDER BY \"schedule_id\"",
                    )
                    .map_err(map)?;
                stmt.query_map([], |row| {
                    Ok(ScheduleRow {
                        id: row.get(0)?,
                        layer: row.get(1)?,
                        spec: row.get(2)?,
                        next_run_at: row.get(3)?,
                        last_run_at: row.get(4)?,
                    })
                })
                .map_err(map)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(map)
            })
            .await
    }

    async fn insert_schedule(&self, row: &ScheduleRow, now: i64) -> Result<()> {
        let row = row.clone();
        self.worker
            .call(move |state| {
                let map = |e| db_error(&state.ident, e);
                state.conn.execute_batch(SCHEDULES_DDL).map_err(map)?;
                state
                    .conn
                    .execute(
                        "INSERT INTO \"__korm_backups__\" (\"schedule_id\", \"layer_ident\", \
                         \"interval_spec\", \"next_run_at\", \"last_run_at\", \"created_at\", \
                         \"updated_at\") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
                         ON CONFLICT (\"schedule_id\") DO NOTHING",
                        rusqlite::params![
                            row.id,
                            row.layer,
                            row.spec,
                            row.next_run_at,
                            row.last_run_at,
                            now
                        ],
                    )
                    .map_err(map)?;
                Ok(())
            })
            .await
    }

    async fn claim_schedule(&self, id: &str, expected: i64, next: i64, now: i64) -> Result<bool> {
        let id = id.to_owned();
        self.worker
            .call(move |state| {
                let changed = state
                    .conn
                    .execute(
                        "UPDATE \"__korm_backups__\" SET \"next_run_at\" = ?1, \
                         \"last_run_at\" = ?2, \"updated_at\" = ?2 \
                         WHERE \"schedule_id\" = ?3 AND \"next_run_at\" = ?4",
                        rusqlite::params![next, now, id, expected],
                    )
                    .map_err(|e| db_error(&state.ident, e))?;
                Ok(changed == 1)
            })
            .await
    }
}
