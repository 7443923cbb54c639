//! SQLite's SQL for shared locks and fencing tokens (see [`crate::layer::locks`]).

use rusqlite::{Connection, TransactionBehavior, params};

use super::db_error;
use crate::error::{Error, Result};
use crate::layer::{Fence, LayerOp, LockClaim};

/// korm 1.5's DDL for `__korm_locks__`, byte for byte, and korm-rs's fencing table.
const CREATE_TABLES: &str = "CREATE TABLE IF NOT EXISTS \"__korm_locks__\" (
                    \"lock_id\" TEXT PRIMARY KEY,
                    \"owner\" TEXT NOT NULL,
                    \"expires_at\" INTEGER NOT NULL,
                    \"created_at\" INTEGER NOT NULL,
                    \"updated_at\" INTEGER NOT NULL
                );
CREATE TABLE IF NOT EXISTS \"__korm_fence__\" (\"lock_id\" TEXT PRIMARY KEY, \"token\" INTEGER NOT NULL);";

const CREATE_FENCE: &str = "CREATE TABLE IF NOT EXISTS \"__korm_fence__\" (\"lock_id\" TEXT PRIMARY KEY, \"token\" INTEGER NOT NULL)";

/// Takes the row unless another owner holds it unexpired; the claim and the token bump are
/// one transaction (`BEGIN IMMEDIATE`: the write lock is taken up front).
pub(super) fn acquire(
    conn: &mut Connection,
    layer: &str,
    claim: &LockClaim,
) -> Result<Option<i64>> {
    let map = |e| db_error(layer, e);
    conn.execute_batch(CREATE_TABLES).map_err(map)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map)?;
    let taken = tx
        .prepare_cached(
            "INSERT INTO \"__korm_locks__\" (\"lock_id\", \"owner\", \"expires_at\", \"created_at\", \"updated_at\") \
             VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (\"lock_id\") DO UPDATE SET \
             \"owner\" = excluded.\"owner\", \"expires_at\" = excluded.\"expires_at\", \
             \"created_at\" = excluded.\"created_at\", \"updated_at\" = excluded.\"updated_at\" \
             WHERE \"__korm_locks__\".\"expires_at\" <= ?4",
        )
        .map_err(map)?
        .execute(params![claim.lock_id, claim.owner, claim.expires_at, claim.now])
        .map_err(map)?;
    if taken == 0 {
        return Ok(None);
    }
    let token: i64 = tx
        .prepare_cached(
            "INSERT INTO \"__korm_fence__\" (\"lock_id\", \"token\") VALUES (?1, 1) \
             ON CONFLICT (\"lock_id\") DO UPDATE SET \"token\" = \"__korm_fence__\".\"token\" + 1 \
             RETURNING \"token\"",
        )
        .map_err(map)?
        .query_row([&claim.lock_id], |row| row.get(0))
        .map_err(map)?;
    tx.commit().map_err(map)?;
    Ok(Some(token))
}

pub(super) fn refresh(conn: &Connection, layer: &str, claim: &LockClaim) -> Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE \"__korm_locks__\" SET \"expires_at\" = ?1, \"updated_at\" = ?2 \
             WHERE \"lock_id\" = ?3 AND \"owner\" = ?4",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                claim.expires_at,
                claim.now,
                claim.lock_id,
                claim.owner
            ])
        });
    match changed {
        Ok(changed) => Ok(changed == 1),
        Err(e) if missing_table(&e) => Ok(false),
        Err(e) => Err(db_error(layer, e)),
    }
}

pub(super) fn release(conn: &Connection, layer: &str, lock_id: &str, owner: &str) -> Result<()> {
    let deleted = conn
        .prepare_cached("DELETE FROM \"__korm_locks__\" WHERE \"lock_id\" = ?1 AND \"owner\" = ?2")
        .and_then(|mut stmt| stmt.execute([lock_id, owner]));
    match deleted {
        Ok(_) => Ok(()),
        Err(e) if missing_table(&e) => Ok(()),
        Err(e) => Err(db_error(layer, e)),
    }
}

/// Inside the write's transaction: records the op's token as the newest seen for its lock,
/// or refuses the write if a newer one was issued or written already.
pub(super) fn check_fence(
    conn: &Connection,
    layer: &str,
    op: &LayerOp,
    fence: &Fence,
) -> Result<()> {
    let map = |e| db_error(layer, e);
    conn.prepare_cached(CREATE_FENCE)
        .and_then(|mut stmt| stmt.execute([]))
        .map_err(map)?;
    let recorded = conn
        .prepare_cached(
            "INSERT INTO \"__korm_fence__\" (\"lock_id\", \"token\") VALUES (?1, ?2) \
             ON CONFLICT (\"lock_id\") DO UPDATE SET \"token\" = excluded.\"token\" \
             WHERE \"__korm_fence__\".\"token\" <= excluded.\"token\"",
        )
        .map_err(map)?
        .execute(params![fence.lock_id, fence.token])
        .map_err(map)?;
    if recorded == 0 {
        return Err(Error::StaleLock {
            rn: op.rn.clone(),
            token: u64::try_from(fence.token).unwrap_or(0),
        });
    }
    Ok(())
}

fn missing_table(e: &rusqlite::Error) -> bool {
    e.to_string().contains("no such table")
}
