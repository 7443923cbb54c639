//! PostgreSQL's SQL for the pool snapshot and for reset (see [`crate::layer::meta`]).
//!
//! korm 1.5 declares `config` as `jsonb`, and its driver stores the snapshot's JSON text as a
//! jsonb *string* (`"{\"version\":1,…}"`, as `postgres.sql` shows): korm-rs writes the same
//! (`to_jsonb($1::text)`), and reads the column as text (a string or an object; the caller
//! unwraps a string, as korm 1.5 does).

use async_trait::async_trait;
use sqlx::Row as _;

use super::{LOCK_CLASS, PgDialect, PgLayer};
use crate::error::Result;
use crate::layer::meta::{ITEMS_PREFIX, KormTables, POOL_ROW, POOL_TABLE, PoolRow, is_item_table};
use crate::layer::meta::{check_droppable, korm_tables_to_drop};
use crate::layer::server;
use crate::layer::server::query;
use crate::query::dialect::{Dialect, Statement};

/// korm 1.5's columns for `__korm_pool__`.
const CREATE_POOL: &str = "CREATE TABLE IF NOT EXISTS \"__korm_pool__\" (\
    \"id\" TEXT PRIMARY KEY, \"config\" JSONB NOT NULL, \
    \"created_at\" BIGINT NOT NULL, \"updated_at\" BIGINT NOT NULL)";

/// The tables of the schema new tables go to (where korm creates its tables) whose name
/// starts with korm's item prefix; filtered again exactly by the caller.
const ITEM_TABLES: &str = "SELECT tablename::text FROM pg_catalog.pg_tables \
    WHERE schemaname = current_schema() AND left(tablename, 9) = $1 ORDER BY tablename";

fn undefined_table(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01"))
}

#[async_trait]
impl KormTables for PgLayer {
    /// Drops the tables (each `IF EXISTS`; item tables `CASCADE`, as korm 1.5 drops them) in
    /// one transaction:
    /// PostgreSQL's DDL is transactional, so either all go or none. Then forgets every cached
    /// schema and which lock tables exist.
    async fn drop_named(&self, names: Vec<String>) -> Result<Vec<String>> {
        let map = |e| self.error(e);
        let mut tx = self.pool.begin().await.map_err(map)?;
        let mut dropped = Vec::new();
        for name in names {
            check_droppable(&name)?;
            let existed: bool =
                sqlx::query_scalar("SELECT to_regclass(quote_ident($1)) IS NOT NULL")
                    .bind(&name)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map)?;
            if existed {
                // CASCADE for item tables, as korm 1.5 drops them (views on them go too);
                // korm's own tables never have dependents.
                let sql = format!(
                    "DROP TABLE IF EXISTS {}{}",
                    PgDialect::default().quote_identifier(&name),
                    if is_item_table(&name) { " CASCADE" } else { "" }
                );
                query(Statement::ddl(sql))
                    .execute(&mut *tx)
                    .await
                    .map_err(map)?;
                dropped.push(name);
            }
        }
        tx.commit().await.map_err(map)?;
        self.schemas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.lock_tables.forget();
        Ok(dropped)
    }

    async fn read_pool_row(&self) -> Result<Option<PoolRow>> {
        let row = sqlx::query(
            "SELECT \"config\"::text, \"created_at\"::bigint, \"updated_at\"::bigint \
             FROM \"__korm_pool__\" WHERE \"id\" = $1",
        )
        .bind(POOL_ROW)
        .fetch_optional(&self.pool)
        .await;
        let row = server::unless_missing(row, undefined_table).map_err(|e| self.error(e))?;
        let Some(row) = row.flatten() else {
            return Ok(None);
        };
        let map = |e| self.error(e);
        Ok(Some(PoolRow {
            config: row
                .try_get::<Option<String>, _>(0)
                .map_err(map)?
                .unwrap_or_default(),
            created_at: row.try_get::<Option<i64>, _>(1).map_err(map)?.unwrap_or(0),
            updated_at: row.try_get::<Option<i64>, _>(2).map_err(map)?.unwrap_or(0),
        }))
    }

    async fn insert_pool_row(&self, config: &str, now: i64) -> Result<bool> {
        let map = |e| self.error(e);
        let mut tx = self.pool.begin().await.map_err(map)?;
        // Two processes creating the table at once would collide in the catalog.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(LOCK_CLASS)
            .bind(POOL_TABLE)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        sqlx::query(CREATE_POOL)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        let inserted = sqlx::query(
            "INSERT INTO \"__korm_pool__\" (\"id\", \"config\", \"created_at\", \"updated_at\") \
             VALUES ($1, to_jsonb($2::text), $3, $3) ON CONFLICT (\"id\") DO NOTHING",
        )
        .bind(POOL_ROW)
        .bind(config)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map)?
        .rows_affected();
        tx.commit().await.map_err(map)?;
        Ok(inserted == 1)
    }

    async fn update_pool_row(&self, config: &str, now: i64) -> Result<()> {
        server::update_pool_row(self, config, now).await
    }

    async fn drop_korm_tables(&self) -> Result<Vec<String>> {
        let names: Vec<String> = sqlx::query_scalar(ITEM_TABLES)
            .bind(ITEMS_PREFIX)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        self.drop_named(korm_tables_to_drop(names)).await
    }
}
