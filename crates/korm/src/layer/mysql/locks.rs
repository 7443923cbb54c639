//! MySQL/MariaDB's SQL for shared locks and fencing tokens (see [`crate::layer::locks`]).
//!
//! The lock id is a `VARCHAR(512)` primary key (a `TEXT` column can not be one; 512
//! characters hold the longest item RN korm makes). DDL commits implicitly here, so the tables
//! are created before any transaction that uses them.

use std::sync::atomic::Ordering;

use sqlx::Row as _;

use async_trait::async_trait;

use super::MySqlLayer;
use crate::error::{Error, Result};
use crate::layer::server::query;
use crate::layer::{Fence, LayerOp, LockClaim, SharedLockTable};
use crate::model::SqlValue;
use crate::query::dialect::Statement;

const CREATE_LOCKS: &str = "CREATE TABLE IF NOT EXISTS `__korm_locks__` (\
    `lock_id` VARCHAR(512) NOT NULL PRIMARY KEY, `owner` VARCHAR(255) NOT NULL, \
    `expires_at` BIGINT NOT NULL, `created_at` BIGINT NOT NULL, `updated_at` BIGINT NOT NULL) \
    DEFAULT CHARSET=utf8mb4";

const CREATE_FENCE: &str = "CREATE TABLE IF NOT EXISTS `__korm_fence__` (\
    `lock_id` VARCHAR(512) NOT NULL PRIMARY KEY, `token` BIGINT NOT NULL) DEFAULT CHARSET=utf8mb4";

/// Takes the row if it is missing or expired, in one statement. Assignments run left to
/// right, so `expires_at` goes last: every condition sees the old expiry.
const CLAIM: &str = "INSERT INTO `__korm_locks__` (`lock_id`, `owner`, `expires_at`, `created_at`, `updated_at`) \
    VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
    `owner` = IF(`expires_at` <= ?, VALUES(`owner`), `owner`), \
    `created_at` = IF(`expires_at` <= ?, VALUES(`created_at`), `created_at`), \
    `updated_at` = IF(`expires_at` <= ?, VALUES(`updated_at`), `updated_at`), \
    `expires_at` = IF(`expires_at` <= ?, VALUES(`expires_at`), `expires_at`)";

impl MySqlLayer {
    pub(super) async fn ensure_fence_table(&self) -> Result<()> {
        if !self.lock_tables.fence.load(Ordering::Acquire) {
            self.ddl(Statement::ddl(CREATE_FENCE.to_owned())).await?;
            self.lock_tables.fence.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Inside the write's transaction: records the op's token as the newest seen for its
    /// lock, or refuses the write if a newer one was issued or written already. The update
    /// takes the row lock, which orders concurrent fenced writes of one lock.
    pub(super) async fn check_fence(
        &self,
        conn: &mut sqlx::MySqlConnection,
        op: &LayerOp,
        fence: &Fence,
    ) -> Result<()> {
        self.execute(
            &mut *conn,
            Statement {
                sql: "INSERT IGNORE INTO `__korm_fence__` (`lock_id`, `token`) VALUES (?, 0)"
                    .to_owned(),
                params: vec![SqlValue::Text(fence.lock_id.clone())],
            },
        )
        .await?;
        let recorded = self
            .execute(
                &mut *conn,
                Statement {
                    sql: "UPDATE `__korm_fence__` SET `token` = ? WHERE `lock_id` = ? AND `token` <= ?"
                        .to_owned(),
                    params: vec![
                        SqlValue::Integer(fence.token),
                        SqlValue::Text(fence.lock_id.clone()),
                        SqlValue::Integer(fence.token),
                    ],
                },
            )
            .await?;
        if recorded == 0 {
            return Err(Error::StaleLock {
                rn: op.rn.clone(),
                token: u64::try_from(fence.token).unwrap_or(0),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl SharedLockTable for MySqlLayer {
    async fn acquire(&self, claim: &LockClaim) -> Result<Option<i64>> {
        self.check_open()?;
        if !self.lock_tables.locks.load(Ordering::Acquire) {
            self.ddl(Statement::ddl(CREATE_LOCKS.to_owned())).await?;
            self.lock_tables.locks.store(true, Ordering::Release);
        }
        self.ensure_fence_table().await?;
        let map = |e| self.error(e);
        let mut tx = super::Begun::start(&self.pool).await.map_err(map)?;
        let now = claim.now;
        let params = vec![
            SqlValue::Text(claim.lock_id.clone()),
            SqlValue::Text(claim.owner.clone()),
            SqlValue::Integer(claim.expires_at),
            SqlValue::Integer(now),
            SqlValue::Integer(now),
            SqlValue::Integer(now),
            SqlValue::Integer(now),
            SqlValue::Integer(now),
            SqlValue::Integer(now),
        ];
        self.execute(
            &mut *tx,
            Statement {
                sql: CLAIM.to_owned(),
                params,
            },
        )
        .await?;
        // Affected-row counts can not tell "took it" from "left it" here (found rows): read
        // the row back, under the lock the upsert holds.
        let row = query(Statement {
            sql:
                "SELECT `owner`, `expires_at` FROM `__korm_locks__` WHERE `lock_id` = ? FOR UPDATE"
                    .to_owned(),
            params: vec![SqlValue::Text(claim.lock_id.clone())],
        })
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
        let taken = row.is_some_and(|row| {
            row.try_get::<String, _>(0).is_ok_and(|o| o == claim.owner)
                && row
                    .try_get::<i64, _>(1)
                    .is_ok_and(|e| e == claim.expires_at)
        });
        if !taken {
            let _ = tx.rollback().await;
            return Ok(None);
        }
        self.execute(
            &mut *tx,
            Statement {
                sql: "INSERT INTO `__korm_fence__` (`lock_id`, `token`) VALUES (?, 1) \
                      ON DUPLICATE KEY UPDATE `token` = `token` + 1"
                    .to_owned(),
                params: vec![SqlValue::Text(claim.lock_id.clone())],
            },
        )
        .await?;
        let token: i64 = query(Statement {
            sql: "SELECT `token` FROM `__korm_fence__` WHERE `lock_id` = ?".to_owned(),
            params: vec![SqlValue::Text(claim.lock_id.clone())],
        })
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(Some(token))
    }

    async fn refresh(&self, claim: &LockClaim) -> Result<bool> {
        self.check_open()?;
        // Found rows: the row counts even when no value changed.
        let changed = self
            .execute(
                &self.pool,
                Statement {
                    sql: "UPDATE `__korm_locks__` SET `expires_at` = ?, `updated_at` = ? \
                          WHERE `lock_id` = ? AND `owner` = ?"
                        .to_owned(),
                    params: vec![
                        SqlValue::Integer(claim.expires_at),
                        SqlValue::Integer(claim.now),
                        SqlValue::Text(claim.lock_id.clone()),
                        SqlValue::Text(claim.owner.clone()),
                    ],
                },
            )
            .await?;
        Ok(changed == 1)
    }

    async fn release(&self, lock_id: &str, owner: &str) -> Result<()> {
        self.check_open()?;
        self.execute(
            &self.pool,
            Statement {
                sql: "DELETE FROM `__korm_locks__` WHERE `lock_id` = ? AND `owner` = ?".to_owned(),
                params: vec![
                    SqlValue::Text(lock_id.to_owned()),
                    SqlValue::Text(owner.to_owned()),
                ],
            },
        )
        .await?;
        Ok(())
    }
}
