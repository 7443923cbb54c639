//! PostgreSQL's SQL for shared locks and fencing tokens (see [`crate::layer::locks`]).

use std::sync::atomic::Ordering;

use sqlx::postgres::PgConnection;

use super::{LOCK_CLASS, PgLayer};
use crate::error::{Error, Result};
use async_trait::async_trait;

use crate::layer::{Fence, LayerOp, LockClaim, SharedLockTable};

/// korm 1.5's columns for `__korm_locks__` (epoch milliseconds need `bigint`).
const CREATE_LOCKS: &str = "CREATE TABLE IF NOT EXISTS \"__korm_locks__\" (\
    \"lock_id\" TEXT PRIMARY KEY, \"owner\" TEXT NOT NULL, \"expires_at\" BIGINT NOT NULL, \
    \"created_at\" BIGINT NOT NULL, \"updated_at\" BIGINT NOT NULL)";

const CREATE_FENCE: &str = "CREATE TABLE IF NOT EXISTS \"__korm_fence__\" (\
    \"lock_id\" TEXT PRIMARY KEY, \"token\" BIGINT NOT NULL)";

/// The claim and the token bump in one statement (so one atomic step): the fence row is
/// bumped only if the claim took the lock row.
const ACQUIRE: &str = "WITH claimed AS (\
    INSERT INTO \"__korm_locks__\" AS l (\"lock_id\", \"owner\", \"expires_at\", \"created_at\", \"updated_at\") \
    VALUES ($1, $2, $3, $4, $4) ON CONFLICT (\"lock_id\") DO UPDATE SET \
    \"owner\" = EXCLUDED.\"owner\", \"expires_at\" = EXCLUDED.\"expires_at\", \
    \"created_at\" = EXCLUDED.\"created_at\", \"updated_at\" = EXCLUDED.\"updated_at\" \
    WHERE l.\"expires_at\" <= $4 RETURNING l.\"lock_id\") \
    INSERT INTO \"__korm_fence__\" AS f (\"lock_id\", \"token\") SELECT \"lock_id\", 1 FROM claimed \
    ON CONFLICT (\"lock_id\") DO UPDATE SET \"token\" = f.\"token\" + 1 RETURNING f.\"token\"";

impl PgLayer {
    /// Creates the tables under an advisory lock (two processes creating one table at once
    /// would otherwise collide in the catalog).
    async fn create_lock_tables(&self, with_locks: bool) -> Result<()> {
        let ready = &self.lock_tables;
        if ready.fence.load(Ordering::Acquire)
            && (!with_locks || ready.locks.load(Ordering::Acquire))
        {
            return Ok(());
        }
        let map = |e| self.error(e);
        let mut tx = self.pool.begin().await.map_err(map)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext('__korm_locks__'))")
            .bind(LOCK_CLASS)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        if with_locks {
            sqlx::query(CREATE_LOCKS)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
        }
        sqlx::query(CREATE_FENCE)
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)?;
        if with_locks {
            ready.locks.store(true, Ordering::Release);
        }
        ready.fence.store(true, Ordering::Release);
        Ok(())
    }

    pub(super) async fn ensure_fence_table(&self) -> Result<()> {
        self.create_lock_tables(false).await
    }
}

#[async_trait]
impl SharedLockTable for PgLayer {
    async fn acquire(&self, claim: &LockClaim) -> Result<Option<i64>> {
        self.create_lock_tables(true).await?;
        sqlx::query_scalar::<_, i64>(ACQUIRE)
            .bind(&claim.lock_id)
            .bind(&claim.owner)
            .bind(claim.expires_at)
            .bind(claim.now)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    async fn refresh(&self, claim: &LockClaim) -> Result<bool> {
        let result = sqlx::query(
            "UPDATE \"__korm_locks__\" SET \"expires_at\" = $1, \"updated_at\" = $2 \
             WHERE \"lock_id\" = $3 AND \"owner\" = $4",
        )
        .bind(claim.expires_at)
        .bind(claim.now)
        .bind(&claim.lock_id)
        .bind(&claim.owner)
        .execute(&self.pool)
        .await;
        match result {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) if undefined_table(&e) => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn release(&self, lock_id: &str, owner: &str) -> Result<()> {
        let result =
            sqlx::query("DELETE FROM \"__korm_locks__\" WHERE \"lock_id\" = $1 AND \"owner\" = $2")
                .bind(lock_id)
                .bind(owner)
                .execute(&self.pool)
                .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if undefined_table(&e) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }
}

/// Inside the write's transaction: records the op's token as the newest seen for its lock,
/// or refuses the write if a newer one was issued or written already. The row lock the
/// upsert takes orders concurrent fenced writes of one lock.
pub(super) async fn check_fence(
    layer: &PgLayer,
    conn: &mut PgConnection,
    op: &LayerOp,
    fence: &Fence,
) -> Result<()> {
    let recorded = sqlx::query(
        "INSERT INTO \"__korm_fence__\" AS f (\"lock_id\", \"token\") VALUES ($1, $2) \
         ON CONFLICT (\"lock_id\") DO UPDATE SET \"token\" = EXCLUDED.\"token\" \
         WHERE f.\"token\" <= EXCLUDED.\"token\"",
    )
    .bind(&fence.lock_id)
    .bind(fence.token)
    .execute(&mut *conn)
    .await
    .map_err(|e| layer.error(e))?
    .rows_affected();
    if recorded == 0 {
        return Err(Error::StaleLock {
            rn: op.rn.clone(),
            token: u64::try_from(fence.token).unwrap_or(0),
        });
    }
    Ok(())
}

fn undefined_table(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01"))
}
