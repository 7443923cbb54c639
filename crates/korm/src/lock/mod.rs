//! Locks on RNs: in-process (L1, L2) and, with
//! [`PoolBuilder::with_locks`](crate::PoolBuilder::with_locks), shared across processes (L3).
//!
//! Every write (create, commit, delete, restore, destroy, tx) locks each RN it touches, in
//! sorted order, for as long as it runs; [`Locker`] lets a program hold the same locks around
//! its own read-modify-write cycles. A lock is keyed by the item it protects, not by how its RN
//! is spelled: `[rn][from::db]:users:free:<id>` with the layer the pool routes it to, so
//! `[rn]:users:free:<id>` in a single-layer pool is the same lock. RNs that are not items
//! (collections, depot files) lock as written.
//!
//! With shared locks, acquiring takes the in-process lock first and then the row in
//! `__korm_locks__`; each shared acquire gets a fencing token (see [`LockGuard::token`]).

mod local;
mod shared;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use shared::LockOptions;

use local::{LocalGuard, LockTable};
use shared::{Lease, SharedLocks};

use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::rn::Rn;

/// How long a lock is awaited unless the pool says otherwise.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The lock id of an item in `layer`: its RN with the layer always named.
pub(crate) fn item_lock_key<T>(layer: &str, rn: &Rn<T>) -> Arc<str> {
    match (rn.namespace(), rn.kind(), rn.id()) {
        (Some(namespace), Some(kind), Some(id)) if rn.is_item() => {
            let mut key =
                String::with_capacity(20 + layer.len() + namespace.len() + kind.len() + id.len());
            key.push_str("[rn][from::");
            key.push_str(layer);
            key.push_str("]:");
            key.push_str(namespace);
            key.push(':');
            key.push_str(kind);
            key.push(':');
            key.push_str(id);
            key.into()
        }
        _ => rn.as_str().into(),
    }
}

/// The locks of a pool.
#[derive(Debug)]
pub(crate) struct Locks {
    table: Arc<LockTable>,
    shared: Option<SharedLocks>,
    wait: Duration,
}

impl Locks {
    pub(crate) fn new(
        shared: Option<(crate::layer::LayerHandle, LockOptions)>,
        wait: Duration,
    ) -> Self {
        Locks {
            table: LockTable::new(),
            shared: shared.map(|(layer, options)| SharedLocks::new(layer, options)),
            wait,
        }
    }

    /// The default wait for a lock.
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }

    /// Takes one lock: in-process, then (with shared locks) its row. `once` tries once
    /// instead of waiting. `Ok(None)` when the deadline passed or the try failed.
    async fn acquire_one(
        &self,
        key: Arc<str>,
        deadline: Instant,
        once: bool,
    ) -> Result<Option<LockGuard>> {
        let local = if once {
            self.table.try_acquire(Arc::clone(&key))
        } else {
            let wait = deadline.saturating_duration_since(Instant::now());
            self.table.acquire(Arc::clone(&key), wait).await
        };
        let Some(local) = local else {
            return Ok(None);
        };
        let lease = match &self.shared {
            Some(shared) => match shared.acquire(&key, deadline, once).await? {
                Some(lease) => Some(lease),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some(LockGuard {
            lease,
            local: Some(local),
            key,
            table: Arc::as_ptr(&self.table) as usize,
        }))
    }

    /// Takes the locks on `keys` (sorted and deduplicated here) in order, within `wait` in
    /// all; on failure the locks already taken are released.
    ///
    /// # Errors
    /// [`Error::LockTimeout`] naming the first RN not acquired in time, and the lock layer's
    /// errors.
    pub(crate) async fn acquire_all(
        &self,
        mut keys: Vec<Arc<str>>,
        wait: Duration,
    ) -> Result<Vec<LockGuard>> {
        keys.sort_unstable();
        keys.dedup();
        let started = Instant::now();
        // A wait too long to add (Duration::MAX) means no deadline in practice: about a
        // century, never an overflow panic.
        let deadline = started
            .checked_add(wait)
            .unwrap_or_else(|| started + Duration::from_secs(100 * 365 * 24 * 3600));
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            match self.acquire_one(Arc::clone(&key), deadline, false).await {
                Ok(Some(guard)) => guards.push(guard),
                Ok(None) => {
                    release_all(guards).await;
                    return Err(Error::LockTimeout {
                        rn: key.to_string(),
                        waited: wait,
                    });
                }
                Err(e) => {
                    release_all(guards).await;
                    return Err(e);
                }
            }
        }
        Ok(guards)
    }

    /// Stops the refreshers of shared locks and deletes their rows.
    pub(crate) async fn close(&self) {
        if let Some(shared) = &self.shared {
            shared.close().await;
        }
    }

    /// Whether `guard` was taken from this pool's locks.
    pub(crate) fn owns(&self, guard: &LockGuard) -> bool {
        guard.table == Arc::as_ptr(&self.table) as usize
    }
}

/// Releases guards, newest first; a failed row delete only costs the TTL.
pub(crate) async fn release_all(guards: Vec<LockGuard>) {
    for guard in guards.into_iter().rev() {
        let key = Arc::clone(&guard.key);
        if let Err(e) = guard.release().await {
            tracing::debug!(lock = %key, error = %e, "shared lock not released; it expires after its ttl");
        }
    }
}

/// A held lock on one RN. Dropping it releases the lock (a shared row is then deleted by a
/// background task); [`release`](LockGuard::release) does it and waits.
pub struct LockGuard {
    // The row goes before the in-process lock lets the next task in (see `Drop`).
    lease: Option<Lease>,
    local: Option<LocalGuard>,
    key: Arc<str>,
    table: usize,
}

impl Drop for LockGuard {
    /// A guard dropped without [`release`](LockGuard::release) deletes its row in a task;
    /// the in-process lock goes with that task, only once the row is gone. Let go at once,
    /// it let the next task of this process claim the row (expired meanwhile, say) and then
    /// lose it to the late delete, while another process took the lock too.
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.abandon(self.local.take());
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("rn", &self.key)
            .field("token", &self.token())
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// The lock's id: the RN, with its layer named for an item.
    pub fn rn(&self) -> &str {
        &self.key
    }

    /// The fencing token of a shared lock: strictly greater than every token issued before
    /// for this RN. Writes made under the guard carry it, and a write whose token is older
    /// than one already seen for the RN is refused with [`Error::StaleLock`]. `None` for an
    /// in-process lock.
    pub fn token(&self) -> Option<u64> {
        self.lease
            .as_ref()
            .map(|l| u64::try_from(l.token()).unwrap_or(0))
    }

    /// Whether the background refresh found the shared lock taken over by another owner
    /// (it expired: the process was paused longer than the TTL). Writes under a lost guard
    /// are refused. Always `false` for an in-process lock.
    pub fn is_lost(&self) -> bool {
        self.lease.as_ref().is_some_and(Lease::is_lost)
    }

    pub(crate) fn key(&self) -> &Arc<str> {
        &self.key
    }

    pub(crate) fn fence_token(&self) -> Option<i64> {
        self.lease.as_ref().map(Lease::token)
    }

    /// Releases the lock, deleting the shared row (only if this pool still owns it) before
    /// the next task of this process may take the lock.
    ///
    /// # Errors
    /// The lock layer's error when the row could not be deleted; the lock is released in this
    /// process anyway, and the row expires after its TTL.
    pub async fn release(mut self) -> Result<()> {
        let result = match self.lease.take() {
            Some(lease) => lease.release().await,
            None => Ok(()),
        };
        drop(self);
        result
    }
}

/// Locks on RNs, to hold around a read-modify-write; made by [`Pool::locker`].
///
/// The writes of the pool take the same locks, so while a task holds a guard on an RN, other
/// tasks' writes to that RN wait for it. A write of the holder itself must say it runs under
/// the guard ([`UncommittedItem::commit_under`](crate::UncommittedItem::commit_under),
/// [`Tx::under`](crate::Tx::under)), or it waits for its own lock until the timeout.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Counter { n: i64 }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> korm::Result<()> {
/// let pool = korm::pool().layer("db", korm::layers::sqlite_memory()).open().await?;
/// let counters = korm::item::<Counter>(&pool);
/// let made = counters.from_data("[rn]:stats:counter:*".parse()?, Counter { n: 0 })?.create().await?;
///
/// let guard = pool.locker().acquire(made.rn()).await?;
/// assert!(pool.locker().is_locked(made.rn()));
/// let current = counters.load(made.rn().clone()).get().await?;
/// let n = current.data().n;
/// current.update(|c| c.n = n + 1).commit_under(&guard).await?;
/// guard.release().await?;
/// assert!(!pool.locker().is_locked(made.rn()));
/// # pool.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Locker {
    pool: Pool,
}

impl fmt::Debug for Locker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locker").field("pool", &self.pool).finish()
    }
}

impl Locker {
    pub(crate) fn new(pool: Pool) -> Self {
        Locker { pool }
    }

    fn key<T>(&self, rn: &Rn<T>) -> Result<Arc<str>> {
        if rn.is_item() {
            let layer = self.pool.route(rn)?;
            Ok(item_lock_key(layer.ident(), rn))
        } else if self.pool.is_closed() {
            Err(Error::PoolClosed)
        } else if rn.form() == crate::rn::RnForm::DepotFile {
            crate::depot::file_lock_key(rn)
        } else {
            Ok(rn.as_str().into())
        }
    }

    /// Takes the lock on `rn`, waiting up to the pool's lock timeout (30 s by default).
    ///
    /// # Errors
    /// [`Error::LockTimeout`] naming the RN, routing errors for an item RN, and the lock
    /// layer's errors with shared locks.
    ///
    /// # Cancel safety
    /// Dropping the future leaves no in-process lock behind; a shared row it had just taken
    /// stays until its TTL.
    pub async fn acquire<T>(&self, rn: &Rn<T>) -> Result<LockGuard> {
        self.acquire_within(rn, self.pool.locks().wait()).await
    }

    /// [`acquire`](Locker::acquire) with its own wait.
    ///
    /// # Errors
    /// As [`acquire`](Locker::acquire).
    pub async fn acquire_within<T>(&self, rn: &Rn<T>, wait: Duration) -> Result<LockGuard> {
        let key = self.key(rn)?;
        let mut guards = self.pool.locks().acquire_all(vec![key], wait).await?;
        guards.pop().ok_or(Error::PoolClosed)
    }

    /// Takes the lock on `rn` if nobody holds it, without waiting (one try at the shared
    /// row too).
    ///
    /// # Errors
    /// Routing errors for an item RN and the lock layer's errors.
    pub async fn try_acquire<T>(&self, rn: &Rn<T>) -> Result<Option<LockGuard>> {
        let key = self.key(rn)?;
        self.pool
            .locks()
            .acquire_one(key, Instant::now(), true)
            .await
    }

    /// Takes the locks on several RNs, in sorted order (so two tasks locking overlapping sets
    /// never deadlock), each RN once; waits up to the pool's lock timeout in all. On failure
    /// none is held.
    ///
    /// # Errors
    /// As [`acquire`](Locker::acquire).
    pub async fn acquire_multiple<'a, T: 'a>(
        &self,
        rns: impl IntoIterator<Item = &'a Rn<T>>,
    ) -> Result<Vec<LockGuard>> {
        let keys = rns
            .into_iter()
            .map(|rn| self.key(rn))
            .collect::<Result<Vec<_>>>()?;
        let locks = self.pool.locks();
        locks.acquire_all(keys, locks.wait()).await
    }

    /// Whether a task of this process holds the lock on `rn` (a shared row held by another
    /// process is not seen here).
    pub fn is_locked<T>(&self, rn: &Rn<T>) -> bool {
        self.key(rn)
            .is_ok_and(|key| self.pool.locks().table.is_locked(&key))
    }

    /// The owner id this pool writes to shared lock rows; `None` without shared locks.
    pub fn owner_id(&self) -> Option<&str> {
        self.pool.locks().shared.as_ref().map(SharedLocks::owner)
    }
}
