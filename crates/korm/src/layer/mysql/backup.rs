//! Backups of a MySQL or MariaDB layer: its tables listed, their rows streamed from one
//! transaction started `WITH CONSISTENT SNAPSHOT`, and tables emptied for a restore that
//! replaces.

use sqlx::mysql::MySqlRow;

use super::{MySqlLayer, value};
use crate::backup::format::{Sink, raw};
use crate::error::{Error, Result};
use crate::layer::meta::{ITEMS_PREFIX, POOL_TABLE, is_item_table};
use crate::layer::server;
use async_trait::async_trait;

use crate::layer::LayerBackups;
use crate::layer::schema::TableSchema;

/// The tables of the database, oldest first.
const TABLES: &str = "SELECT TABLE_NAME FROM information_schema.TABLES \
    WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' \
    AND (LEFT(TABLE_NAME, 9) = ? OR TABLE_NAME IN ('__korm_pool__', '__korm_meta__')) \
    ORDER BY CREATE_TIME, TABLE_NAME";

/// `name` quoted for MySQL.
fn quoted(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// korm 1.5's schedules table.
const SCHEDULES_DDL: &str = "CREATE TABLE IF NOT EXISTS `__korm_backups__` (schedule_id VARCHAR(255) PRIMARY KEY, layer_ident TEXT NOT NULL, interval_spec TEXT NOT NULL, next_run_at BIGINT NOT NULL, last_run_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)";

#[async_trait]
impl LayerBackups for MySqlLayer {
    async fn backup_tables(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(TABLES)
            .bind(ITEMS_PREFIX)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let mut names = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(name) = value::text_at(row, 0)? {
                names.push(name);
            }
        }
        let mut out: Vec<String> = [POOL_TABLE, "__korm_meta__"]
            .into_iter()
            .filter(|t| names.iter().any(|n| n == t))
            .map(str::to_owned)
            .collect();
        // information_schema compares without case on MariaDB: the exact prefix again.
        out.extend(names.into_iter().filter(|n| is_item_table(n)));
        Ok(out)
    }

    async fn export(
        &self,
        tables: Vec<(String, Option<TableSchema>)>,
        mut sink: Sink,
    ) -> Result<Sink> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.error(e))?;
        sqlx::raw_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .execute(&mut *conn)
            .await
            .map_err(|e| self.error(e))?;
        let read = async {
            for (table, schema) in &tables {
                // The name was listed from the catalog and is quoted.
                let sql = format!("SELECT * FROM {}", quoted(table));
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .persistent(false)
                    .fetch(&mut *conn);
                server::export_rows(
                    &mut sink,
                    table,
                    schema.as_ref(),
                    rows,
                    |row: &MySqlRow, i, name, read| {
                        Ok(raw(value::cell(table, name, read, row, i)?, read.kind()))
                    },
                    |e| match e {
                        // Dropped since it was listed: nothing to back up.
                        sqlx::Error::Database(db) if db.code().as_deref() == Some("42S02") => None,
                        e => Some(self.error(e)),
                    },
                )
                .await?;
            }
            Ok::<(), Error>(())
        }
        .await;
        // A read-only use of the transaction: ending it can not lose anything.
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
        read.map(|()| sink)
    }

    async fn clear_table(&self, table: &str) -> Result<()> {
        match sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {}",
            quoted(table)
        )))
        .execute(&self.pool)
        .await
        {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42S02") => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }
    async fn schedules(&self) -> Result<Vec<crate::backup::schedule::ScheduleRow>> {
        sqlx::raw_sql(SCHEDULES_DDL)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let rows: Vec<(String, String, String, i64, Option<i64>)> = sqlx::query_as("SELECT schedule_id, layer_ident, interval_spec, next_run_at, last_run_at FROM `__korm_backups__` ORDER BY schedule_id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(rows
            .into_iter()
            .map(|(id, layer, spec, next_run_at, last_run_at)| {
                crate::backup::schedule::ScheduleRow {
                    id,
                    layer,
                    spec,
                    next_run_at,
                    last_run_at,
                }
            })
            .collect())
    }

    async fn insert_schedule(
        &self,
        row: &crate::backup::schedule::ScheduleRow,
        now: i64,
    ) -> Result<()> {
        let row = row.clone();
        sqlx::raw_sql(SCHEDULES_DDL)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let insert = sqlx::query("INSERT IGNORE INTO `__korm_backups__` (schedule_id, layer_ident, interval_spec, next_run_at, last_run_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(row.id)
            .bind(row.layer)
            .bind(row.spec)
            .bind(row.next_run_at)
            .bind(row.last_run_at)
            .bind(now);
        insert
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn claim_schedule(&self, id: &str, expected: i64, next: i64, now: i64) -> Result<bool> {
        let id = id.to_owned();
        let done = sqlx::query("UPDATE `__korm_backups__` SET next_run_at = ?, last_run_at = ?, updated_at = ? WHERE schedule_id = ? AND next_run_at = ?")
            .bind(next)
            .bind(now)
            .bind(now)
            .bind(id)
            .bind(expected)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(done.rows_affected() == 1)
    }
}
