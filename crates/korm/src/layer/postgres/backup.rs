//! Backups of a PostgreSQL layer: its tables listed, their rows streamed from one
//! `REPEATABLE READ` read-only transaction (a consistent snapshot), and tables emptied for a
//! restore that replaces.

use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::PgDialect;
use super::{PgLayer, value};
use crate::backup::format::{Sink, raw};
use crate::error::{Error, Result};
use crate::layer::backup::backup_order;
use crate::layer::meta::ITEMS_PREFIX;
use crate::layer::server;
use crate::query::dialect::Dialect as _;
use async_trait::async_trait;

use crate::layer::LayerBackups;
use crate::layer::schema::TableSchema;

/// The tables of the current schema, oldest first (by their catalog id).
const TABLES: &str = "SELECT c.relname::text FROM pg_catalog.pg_class c \
    WHERE c.relnamespace = to_regnamespace(quote_ident(current_schema())) AND c.relkind IN ('r', 'p') \
    AND (left(c.relname, 9) = $1 OR c.relname IN ('__korm_pool__', '__korm_meta__')) \
    ORDER BY c.oid";

/// `name` quoted for PostgreSQL.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// korm 1.5's schedules table. Two instances creating it at once race on the catalog: the
/// loser's duplicate error means the table is there. A null is bound as text: the insert casts
/// the last run.
const SCHEDULES: server::ScheduleSql = server::ScheduleSql {
    create: "CREATE TABLE IF NOT EXISTS \"__korm_backups__\" (schedule_id TEXT PRIMARY KEY, layer_ident TEXT NOT NULL, interval_spec TEXT NOT NULL, next_run_at BIGINT NOT NULL, last_run_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
    created_meanwhile: &["23505", "42P07"],
    select: "SELECT schedule_id, layer_ident, interval_spec, next_run_at, last_run_at FROM \"__korm_backups__\" ORDER BY schedule_id",
    insert: "INSERT INTO \"__korm_backups__\" (schedule_id, layer_ident, interval_spec, next_run_at, last_run_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5::bigint, $6, $7) ON CONFLICT (schedule_id) DO NOTHING",
    claim: "UPDATE \"__korm_backups__\" SET next_run_at = $1, last_run_at = $2, updated_at = $3 WHERE schedule_id = $4 AND next_run_at = $5",
};

#[async_trait]
impl LayerBackups for PgLayer {
    async fn backup_tables(&self) -> Result<Vec<String>> {
        let names: Vec<String> = sqlx::query_scalar(TABLES)
            .bind(ITEMS_PREFIX)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
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
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *conn)
            .await
            .map_err(|e| self.error(e))?;
        let read = async {
            for (table, schema) in &tables {
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT to_regclass(quote_ident($1))::text")
                        .bind(table)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(|e| self.error(e))?;
                if exists.is_none() {
                    continue;
                }
                // The name was listed from the catalog and is quoted.
                let sql = format!("SELECT * FROM {}", quoted(table));
                // Not a prepared statement of the connection's cache: a table's columns may
                // change between two backups.
                let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch(&mut *conn);
                server::export_rows(
                    &mut sink,
                    table,
                    schema.as_ref(),
                    rows,
                    |row: &PgRow, i, name, read| {
                        let v = row.try_get_raw(i).map_err(|_| Error::Decode {
                            rn: table.clone(),
                            reason: format!("column {name:?} is missing from the result"),
                        })?;
                        Ok(raw(value::cell(table, name, read.kind(), v)?, read.kind()))
                    },
                    |e| Some(self.error(e)),
                )
                .await?;
            }
            Ok::<(), Error>(())
        }
        .await;
        // A read-only transaction: ending it can not lose anything.
        let _ = sqlx::query("COMMIT").execute(&mut *conn).await;
        read.map(|()| sink)
    }

    /// `table` is the collection's name (a snapshot of another backend holds the full one):
    /// the table emptied is the one PostgreSQL stores it in (cut to 63 bytes), and only when
    /// that table is this collection's ([`super::claim_cut_name`]).
    async fn clear_table(&self, table: &str) -> Result<()> {
        let physical = PgDialect::default().physical_table(table).into_owned();
        if physical.len() != table.len() {
            let mut conn = self.pool.acquire().await.map_err(|e| self.error(e))?;
            super::claim_cut_name(self, &mut conn, table, false).await?;
        }
        server::clear_table(&self.pool, quoted(&physical), "42P01")
            .await
            .map_err(|e| self.error(e))
    }
}

impl server::ServerLayer for PgLayer {
    type Db = sqlx::Postgres;

    const SCHEDULES: server::ScheduleSql = SCHEDULES;

    const UPDATE_POOL: &'static str = "UPDATE \"__korm_pool__\" SET \"config\" = \
        to_jsonb($1::text), \"updated_at\" = $2 WHERE \"id\" = $3";

    fn pool(&self) -> &sqlx::Pool<sqlx::Postgres> {
        &self.pool
    }

    fn error(&self, e: sqlx::Error) -> Error {
        self.error(e)
    }
}
