//! Backups of a MySQL or MariaDB layer: its tables listed, their rows streamed from one
//! transaction started `WITH CONSISTENT SNAPSHOT`, and tables emptied for a restore that
//! replaces.

use sqlx::mysql::MySqlRow;

use super::{MySqlLayer, value};
use crate::backup::format::{Sink, raw};
use crate::error::{Error, Result};
use crate::layer::backup::backup_order;
use crate::layer::meta::ITEMS_PREFIX;
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
const SCHEDULES: server::ScheduleSql = server::ScheduleSql {
    create: "CREATE TABLE IF NOT EXISTS `__korm_backups__` (schedule_id VARCHAR(255) PRIMARY KEY, layer_ident TEXT NOT NULL, interval_spec TEXT NOT NULL, next_run_at BIGINT NOT NULL, last_run_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
    created_meanwhile: &[],
    select: "SELECT schedule_id, layer_ident, interval_spec, next_run_at, last_run_at FROM `__korm_backups__` ORDER BY schedule_id",
    insert: "INSERT IGNORE INTO `__korm_backups__` (schedule_id, layer_ident, interval_spec, next_run_at, last_run_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    claim: "UPDATE `__korm_backups__` SET next_run_at = ?, last_run_at = ?, updated_at = ? WHERE schedule_id = ? AND next_run_at = ?",
};

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
        // information_schema compares without case on MariaDB: the exact prefix again.
        Ok(backup_order(names))
    }

    async fn export(
        &self,
        tables: Vec<(String, Option<TableSchema>)>,
        mut sink: Sink,
    ) -> Result<Sink> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.error(e))?;
        // The transaction below is opened by hand (sqlx does not track it): an export cut
        // short (its future dropped) would hand the connection back still inside it, and the
        // pool's next user would read the old snapshot and hold its locks. The connection is
        // closed when the export ends, cut short or not (a backup is worth a reconnect).
        conn.close_on_drop();
        // A consistent snapshot needs REPEATABLE READ: under a server's READ COMMITTED the
        // snapshot clause is ignored (a warning) and each table would be read at its own time.
        sqlx::raw_sql(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
             START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        )
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
                    // Dropped since it was listed: nothing to back up.
                    |e| (!server::has_code(&e, &["42S02"])).then(|| self.error(e)),
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

    /// `table` is the collection's name (a snapshot of another backend holds the full one):
    /// the table emptied is the one it is stored in (hashed when over 64 characters).
    async fn clear_table(&self, table: &str) -> Result<()> {
        server::clear_table(
            &self.pool,
            quoted(&super::dialect::physical_table(table)),
            "42S02",
        )
        .await
        .map_err(|e| self.error(e))
    }
}

impl server::ServerLayer for MySqlLayer {
    type Db = sqlx::MySql;

    const SCHEDULES: server::ScheduleSql = SCHEDULES;

    const UPDATE_POOL: &'static str =
        "UPDATE `__korm_pool__` SET `config` = ?, `updated_at` = ? WHERE `id` = ?";

    fn pool(&self) -> &sqlx::Pool<sqlx::MySql> {
        &self.pool
    }

    fn error(&self, e: sqlx::Error) -> Error {
        self.error(e)
    }
}
