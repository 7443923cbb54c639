//! What every layer needs for shared locks and fencing tokens; each backend's SQL lives in
//! its own `locks.rs`.
//!
//! - `__korm_locks__(lock_id, owner, expires_at, created_at, updated_at)` (korm 1.5's table,
//!   times in epoch milliseconds) on the pool's lock layer: one row per held lock.
//! - `__korm_fence__(lock_id, token)` (korm-rs only; korm 1.5 never reads it) on the lock
//!   layer, where it counts the tokens issued per lock, and on every layer a fenced write
//!   reaches, where it holds the newest token a write has carried. See `docs/design.md`.

use async_trait::async_trait;

use crate::error::Result;

/// The table of shared locks a layer keeps (`__korm_locks__`, with `__korm_fence__`).
#[async_trait]
pub(crate) trait SharedLockTable: Send + Sync {
    /// Takes the shared lock `claim.lock_id` if no row holds it or its row expired at or
    /// before `claim.now` (atomically: of two claims racing, one wins), and issues the lock's
    /// next fencing token in `__korm_fence__`, in the same transaction. Creates both tables
    /// when missing. `None` when another owner holds the lock.
    async fn acquire(&self, claim: &LockClaim) -> Result<Option<i64>>;

    /// Extends a lock this owner holds to `claim.expires_at`; `false` if the row is gone or
    /// has another owner (the lock was lost).
    async fn refresh(&self, claim: &LockClaim) -> Result<bool>;

    /// Deletes the lock's row if `owner` holds it (never another owner's row).
    async fn release(&self, lock_id: &str, owner: &str) -> Result<()>;
}

/// A claim on a shared lock: who wants it, and until when.
#[derive(Debug, Clone)]
pub(crate) struct LockClaim {
    /// The lock's id (the normalized RN, see [`crate::lock`]).
    pub(crate) lock_id: String,
    /// The owner id of the pool that claims it.
    pub(crate) owner: String,
    /// The current time, epoch milliseconds: a row that expired at or before it may be taken.
    pub(crate) now: i64,
    /// When the claim lapses unless refreshed, epoch milliseconds.
    pub(crate) expires_at: i64,
}

/// The fencing token a write carries: refused if a newer token was seen for `lock_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    /// The lock's id.
    pub(crate) lock_id: String,
    /// The token of the lease the write was made under.
    pub(crate) token: i64,
}
