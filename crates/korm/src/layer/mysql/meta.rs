//! MySQL/MariaDB's SQL for the pool snapshot and for reset (see [`crate::layer::meta`]).
//!
//! `__korm_pool__` is korm 1.5's table (`id VARCHAR(64)` key, `config JSON`, `BIGINT`
//! times). DDL commits implicitly here, so the table is created before the row is written,
//! and a reset's drops are one statement each: a reset that fails midway leaves the tables
//! not yet reached (`__korm_pool__` is the last).

use async_trait::async_trait;
use sqlx::Row as _;

use super::{MySqlLayer, value};
use crate::error::Result;
use crate::layer::meta::{ITEMS_PREFIX, KormTables, POOL_ROW, PoolRow};
use crate::layer::meta::{check_droppable, korm_tables_to_drop};
use crate::layer::server;
use crate::model::SqlValue;
use crate::query::dialect::{Dialect, Statement};

const CREATE_POOL: &str = "CREATE TABLE IF NOT EXISTS `__korm_pool__` (\
    `id` VARCHAR(64) PRIMARY KEY, `config` JSON NOT NULL, \
    `created_at` BIGINT NOT NULL, `updated_at` BIGINT NOT NULL) DEFAULT CHARSET=utf8mb4";

/// ER_NO_SUCH_TABLE.
fn no_such_table(e: &sqlx::Error) -> bool {
    super::error::number(e).as_deref() == Some("1146")
}

/// ER_DUP_ENTRY.
fn duplicate(e: &sqlx::Error) -> bool {
    super::error::number(e).as_deref() == Some("1062")
}

impl MySqlLayer {
    /// Whether a table of this name is in the layer's database.
    async fn table_exists(&self, name: &str) -> Result<bool> {
        let rows = self
            .fetch_rows(Statement {
                sql: "SELECT 1 FROM information_schema.TABLES \
                      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?"
                    .to_owned(),
                params: vec![SqlValue::Text(name.to_owned())],
            })
            .await?;
        Ok(!rows.is_empty())
    }
}

#[async_trait]
impl KormTables for MySqlLayer {
    /// Drops the tables one statement each (MySQL's DDL commits on its own), holding the
    /// schema cache so no write of this process plans against a table being dropped, then
    /// forgets every cached schema and which lock tables exist.
    async fn drop_named(&self, names: Vec<String>) -> Result<Vec<String>> {
        self.check_open()?;
        let mut schemas = self.schemas.lock().await;
        let mut dropped = Vec::new();
        let mut outcome = Ok(());
        for name in names {
            if let Err(e) = check_droppable(&name) {
                outcome = Err(e);
                break;
            }
            let existed = match self.table_exists(&name).await {
                Ok(existed) => existed,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            if existed {
                let sql = format!(
                    "DROP TABLE IF EXISTS {}",
                    self.dialect.quote_identifier(&name)
                );
                if let Err(e) = self.ddl(Statement::ddl(sql)).await {
                    outcome = Err(e);
                    break;
                }
                dropped.push(name);
            }
        }
        // What was dropped is gone whatever failed after it.
        schemas.clear();
        self.lock_tables.forget();
        outcome.map(|()| dropped)
    }

    async fn read_pool_row(&self) -> Result<Option<PoolRow>> {
        self.check_open()?;
        let row = sqlx::query(
            "SELECT CAST(`config` AS CHAR), CAST(`created_at` AS SIGNED), \
             CAST(`updated_at` AS SIGNED) FROM `__korm_pool__` WHERE `id` = ?",
        )
        .bind(POOL_ROW)
        .fetch_optional(&self.pool)
        .await;
        let row = server::unless_missing(row, no_such_table).map_err(|e| self.error(e))?;
        let Some(row) = row.flatten() else {
            return Ok(None);
        };
        let time = |i: usize| {
            row.try_get::<Option<i64>, _>(i)
                .map(Option::unwrap_or_default)
                .map_err(|e| self.error(e))
        };
        Ok(Some(PoolRow {
            config: value::text_at(&row, 0)?.unwrap_or_default(),
            created_at: time(1)?,
            updated_at: time(2)?,
        }))
    }

    async fn insert_pool_row(&self, config: &str, now: i64) -> Result<bool> {
        self.check_open()?;
        self.ddl(Statement::ddl(CREATE_POOL.to_owned())).await?;
        let inserted = sqlx::query(
            "INSERT INTO `__korm_pool__` (`id`, `config`, `created_at`, `updated_at`) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(POOL_ROW)
        .bind(config)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if duplicate(&e) => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn update_pool_row(&self, config: &str, now: i64) -> Result<()> {
        self.check_open()?;
        server::update_pool_row(self, config, now).await
    }

    async fn drop_korm_tables(&self) -> Result<Vec<String>> {
        self.check_open()?;
        // information_schema compares names without case on MariaDB: the exact prefix is
        // checked again below.
        let rows = self
            .fetch_rows(Statement {
                sql: "SELECT TABLE_NAME FROM information_schema.TABLES \
                      WHERE TABLE_SCHEMA = DATABASE() AND LEFT(TABLE_NAME, 9) = ? \
                      ORDER BY TABLE_NAME"
                    .to_owned(),
                params: vec![SqlValue::Text(ITEMS_PREFIX.to_owned())],
            })
            .await?;
        let mut names = Vec::with_capacity(rows.len());
        for row in &rows {
            names.extend(value::text_at(row, 0)?);
        }
        self.drop_named(korm_tables_to_drop(names)).await
    }
}
