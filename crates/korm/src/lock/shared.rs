//! Shared locks across processes: rows of `__korm_locks__` on the pool's lock layer, with a
//! TTL, a retry interval while another owner holds the row, and a background refresh per held
//! lock. Each acquire also gets the lock's next fencing token.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::AbortHandle;

use crate::error::{Error, Result};
use crate::layer::{LayerHandle, LockClaim};

/// Settings of shared locks (see [`PoolBuilder::with_locks`](crate::PoolBuilder::with_locks)).
///
/// The defaults are korm 1.5's: a 60 s TTL, a retry every 50 ms while another owner holds
/// the lock, a refresh every 30 s, and a random owner id per pool.
///
/// ```
/// use std::time::Duration;
/// let options = korm::LockOptions::new()
///     .with_ttl(Duration::from_secs(10))
///     .with_refresh(Duration::from_secs(3))
///     .with_owner_id("billing-worker-1");
/// assert_eq!(options.ttl, Duration::from_secs(10));
/// // A ttl alone keeps the refresh below it.
/// let short = korm::LockOptions::new().with_ttl(Duration::from_secs(10));
/// assert_eq!(short.refresh, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOptions {
    /// How long a lock lasts unless refreshed; an expired lock may be taken over.
    pub ttl: Duration,
    /// How long to wait before trying again while another owner holds the lock.
    pub retry: Duration,
    /// How often a held lock is extended to a full TTL again (keep it well below `ttl`).
    pub refresh: Duration,
    /// The owner written to the lock rows; `None` draws a random one when the pool opens.
    /// Two pools must never share an owner id.
    pub owner_id: Option<String>,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: Duration::from_millis(60_000),
            retry: Duration::from_millis(50),
            refresh: Duration::from_millis(30_000),
            owner_id: None,
        }
    }
}

impl LockOptions {
    /// korm 1.5's defaults (see the type's doc).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the TTL. A refresh interval not below the new TTL (the default 30 s, with a TTL
    /// of 10 s) becomes half the TTL, so a held lock is extended before it expires; a
    /// [`with_refresh`](LockOptions::with_refresh) after this call sets what it is given.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        if self.refresh >= ttl {
            self.refresh = ttl / 2;
        }
        self
    }

    /// Sets the retry interval.
    pub fn with_retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the refresh interval.
    pub fn with_refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// Sets the owner id.
    pub fn with_owner_id(mut self, owner_id: impl Into<String>) -> Self {
        self.owner_id = Some(owner_id.into());
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |reason: &str| {
            Err(Error::PoolConfig {
                reason: format!("lock options: {reason}"),
            })
        };
        if self.ttl < Duration::from_millis(1) || self.ttl > Duration::from_secs(86_400 * 365) {
            return bad("ttl must be between 1 ms and a year");
        }
        if self.retry.is_zero() {
            return bad("retry must be above zero");
        }
        if self.refresh.is_zero() {
            return bad("refresh must be above zero");
        }
        if self.refresh >= self.ttl {
            tracing::warn!(
                ttl_ms = self.ttl.as_millis(),
                refresh_ms = self.refresh.as_millis(),
                "korm: shared locks are refreshed no sooner than they expire: a lock held longer than its ttl can be taken over by another process"
            );
        }
        if let Some(owner) = &self.owner_id
            && (owner.is_empty() || owner.len() > 255 || owner.chars().any(char::is_control))
        {
            return bad("owner id must be 1 to 255 characters without control characters");
        }
        Ok(())
    }
}

/// The current time in epoch milliseconds (korm 1.5 keeps lock times this way).
fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The shared-lock side of a pool.
pub(crate) struct SharedLocks {
    inner: Arc<SharedInner>,
}

struct SharedInner {
    layer: LayerHandle,
    ttl: Duration,
    retry: Duration,
    refresh: Duration,
    owner: String,
    /// Held leases: their refreshers (stopped at close) and lock ids (released at close).
    held: Mutex<HashMap<u64, (Arc<str>, AbortHandle)>>,
    next: AtomicU64,
}

impl fmt::Debug for SharedLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLocks")
            .field("layer", &self.inner.layer.ident())
            .field("owner", &self.inner.owner)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

impl SharedLocks {
    pub(crate) fn new(layer: LayerHandle, options: LockOptions) -> Self {
        let owner = options
            .owner_id
            .unwrap_or_else(|| format!("korm-rs-{}", uuid::Uuid::new_v4().simple()));
        SharedLocks {
            inner: Arc::new(SharedInner {
                layer,
                ttl: options.ttl,
                retry: options.retry,
                refresh: options.refresh,
                owner,
                held: Mutex::new(HashMap::new()),
                next: AtomicU64::new(0),
            }),
        }
    }

    /// The owner id written to this pool's lock rows.
    pub(crate) fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Takes the shared lock `lock_id`, trying again every retry interval until `deadline`;
    /// `Ok(None)` when the deadline passed (or, with `once`, after the first try).
    ///
    /// # Cancel safety
    /// A row taken by a claim whose future is dropped before it returns stays until its TTL.
    pub(crate) async fn acquire(
        &self,
        lock_id: &Arc<str>,
        deadline: Instant,
        once: bool,
    ) -> Result<Option<Lease>> {
        let inner = &self.inner;
        loop {
            let sent = Instant::now();
            let now = epoch_ms();
            let claim = LockClaim {
                lock_id: lock_id.to_string(),
                owner: inner.owner.clone(),
                now,
                expires_at: now.saturating_add(millis(inner.ttl)),
            };
            if let Some(token) = inner.layer.locks().acquire(&claim).await? {
                return Ok(Some(self.start_lease(lock_id, token, sent)));
            }
            if once
                || Instant::now()
                    .checked_add(inner.retry)
                    .is_none_or(|next| next > deadline)
            {
                return Ok(None);
            }
            tokio::time::sleep(inner.retry).await;
        }
    }

    fn start_lease(&self, lock_id: &Arc<str>, token: i64, sent: Instant) -> Lease {
        let inner = &self.inner;
        let held = Arc::new(Held::new(sent, inner.ttl));
        let id = inner.next.fetch_add(1, Ordering::Relaxed);
        let refresher = tokio::spawn(refresh_loop(
            inner.layer.clone(),
            inner.owner.clone(),
            Arc::clone(lock_id),
            (inner.ttl, inner.refresh, inner.retry),
            Arc::clone(&held),
        ))
        .abort_handle();
        inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (Arc::clone(lock_id), refresher.clone()));
        Lease {
            inner: Arc::clone(inner),
            id,
            lock_id: Arc::clone(lock_id),
            token,
            held,
            refresher,
            released: false,
        }
    }

    /// Stops every refresher and deletes this pool's rows (before the layers close).
    pub(crate) async fn close(&self) {
        let held: Vec<(Arc<str>, AbortHandle)> = self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, v)| v)
            .collect();
        for (lock_id, refresher) in held {
            refresher.abort();
            if let Err(e) = self
                .inner
                .layer
                .locks()
                .release(&lock_id, &self.inner.owner)
                .await
            {
                tracing::warn!(lock = %lock_id, error = %e, "could not release a shared lock at close; it expires after its ttl");
            }
        }
    }
}

impl SharedInner {
    fn forget(&self, id: u64) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

/// Whether a lease still holds its row, as far as this process can tell: not found taken
/// over by a refresh, and within the TTL of the last claim or refresh the database confirmed
/// (timed from when it was sent, by this process's monotonic clock: the row's `expires_at` is
/// at least that late). A lease whose refreshes keep failing (the lock layer unreachable) is
/// lost once its TTL has passed, when another process may take the row; the holder learns it
/// before it writes, instead of never.
#[derive(Debug)]
struct Held {
    lost: AtomicBool,
    since: Instant,
    /// Milliseconds after `since` until which the row is surely this lease's.
    until: AtomicU64,
}

impl Held {
    fn new(sent: Instant, ttl: Duration) -> Self {
        Held {
            lost: AtomicBool::new(false),
            since: sent,
            until: AtomicU64::new(ms(ttl)),
        }
    }

    /// A refresh sent at `sent` was confirmed: held for `ttl` from then.
    fn extend(&self, sent: Instant, ttl: Duration) {
        let until = ms(sent
            .saturating_duration_since(self.since)
            .saturating_add(ttl));
        self.until.fetch_max(until, Ordering::SeqCst);
    }

    fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
            || ms(self.since.elapsed()) >= self.until.load(Ordering::SeqCst)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Extends the lock every `refresh` until it is released (the task is aborted) or lost. A
/// refresh that fails is tried again every `retry` (the row expires at its TTL), until the TTL
/// of the last confirmed one has passed: the lease is lost then.
async fn refresh_loop(
    layer: LayerHandle,
    owner: String,
    lock_id: Arc<str>,
    (ttl, refresh, retry): (Duration, Duration, Duration),
    held: Arc<Held>,
) {
    let mut wait = refresh;
    loop {
        tokio::time::sleep(wait).await;
        let sent = Instant::now();
        let now = epoch_ms();
        let claim = LockClaim {
            lock_id: lock_id.to_string(),
            owner: owner.clone(),
            now,
            expires_at: now.saturating_add(millis(ttl)),
        };
        let why = match layer.locks().refresh(&claim).await {
            // Confirmed only after the TTL of the last confirmation passed: the holder may
            // have been told it was lost meanwhile, and lost stays lost.
            Ok(true) if held.is_lost() => "its refresh came after its ttl".to_owned(),
            Ok(true) => {
                held.extend(sent, ttl);
                wait = refresh;
                continue;
            }
            Ok(false) => "it expired and was taken over".to_owned(),
            Err(Error::PoolClosed) => return,
            Err(e) if held.is_lost() => format!("it could not be refreshed within its ttl ({e})"),
            Err(e) => {
                tracing::warn!(lock = %lock_id, error = %e, "could not refresh a shared lock; trying again");
                wait = retry.min(refresh);
                continue;
            }
        };
        tracing::warn!(lock = %lock_id, "a shared lock was lost: {why}");
        held.lost.store(true, Ordering::SeqCst);
        return;
    }
}

/// A held shared lock: its row, its fencing token and its refresher.
pub(crate) struct Lease {
    inner: Arc<SharedInner>,
    id: u64,
    lock_id: Arc<str>,
    token: i64,
    held: Arc<Held>,
    refresher: AbortHandle,
    released: bool,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("lock_id", &self.lock_id)
            .field("token", &self.token)
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

impl Lease {
    pub(crate) fn token(&self) -> i64 {
        self.token
    }

    /// Whether the refresher found the lock taken over, or could not refresh it within its
    /// TTL (see [`Held`]).
    pub(crate) fn is_lost(&self) -> bool {
        self.held.is_lost()
    }

    /// Stops the refresher and deletes the row (if this owner still holds it).
    pub(crate) async fn release(mut self) -> Result<()> {
        self.released = true;
        self.refresher.abort();
        let result = self
            .inner
            .layer
            .locks()
            .release(&self.lock_id, &self.inner.owner)
            .await;
        self.inner.forget(self.id);
        result
    }

    /// Lets go of the lease without awaiting (see [`let_go`]), holding `keep` (the
    /// in-process lock) until the row is gone.
    pub(crate) fn abandon<K: Send + 'static>(mut self, keep: Option<K>) {
        self.released = true;
        self.refresher.abort();
        let_go(&self.inner, self.id, &self.lock_id, keep);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Dropped outside a guard (an acquire given up): nothing local to hold.
        self.refresher.abort();
        let_go(&self.inner, self.id, &self.lock_id, None::<()>);
    }
}

/// Deletes a lease's row in a task when a runtime is at hand (it expires after its TTL
/// otherwise), then drops `keep`. The lease stays registered until then, so a pool closed
/// meanwhile deletes the row itself.
fn let_go<K: Send + 'static>(
    inner: &Arc<SharedInner>,
    id: u64,
    lock_id: &Arc<str>,
    keep: Option<K>,
) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let inner = Arc::clone(inner);
        let lock_id = Arc::clone(lock_id);
        runtime.spawn(async move {
            if let Err(e) = inner.layer.locks().release(&lock_id, &inner.owner).await {
                tracing::debug!(lock = %lock_id, error = %e, "shared lock not released; it expires after its ttl");
            }
            inner.forget(id);
            drop(keep);
        });
    } else {
        inner.forget(id);
    }
}
