//! In-process locks: one tokio mutex per locked key, in a sharded map, removed when unused.
//!
//! An uncontended acquire is a shard lookup (a std mutex held for a map operation, never
//! across an await) and a `try_lock` on the key's mutex; waiting, when the key is held, is a
//! FIFO wait on that mutex alone. An entry lives while someone holds or waits for it: the last
//! [`Ticket`] to drop removes it, whether its holder released the lock or its acquiring
//! future was cancelled.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

/// Shards of the map (a power of two).
const SHARDS: usize = 64;

type Entry = Arc<tokio::sync::Mutex<()>>;

/// One shard: the entries of the keys that hash to it. Keys are RN texts, hashed with foldhash
/// (seeded per process, as the resolver's maps): SipHash, hashing each key twice (shard and
/// map), was a twentieth of a create's instructions.
type Shard = Mutex<HashMap<Arc<str>, Entry, foldhash::fast::RandomState>>;

/// The in-process lock table of a pool.
#[derive(Debug)]
pub(crate) struct LockTable {
    shards: Box<[Shard]>,
    hasher: foldhash::fast::RandomState,
}

impl LockTable {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(LockTable {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            hasher: Default::default(),
        })
    }

    fn shard(&self, key: &str) -> &Shard {
        let hash = self.hasher.hash_one(key) as usize;
        &self.shards[hash & (SHARDS - 1)]
    }

    /// A place in the queue for `key` (the entry is made if missing).
    fn ticket(self: &Arc<Self>, key: Arc<str>) -> Ticket {
        let mut shard = self
            .shard(&key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = Arc::clone(shard.entry(Arc::clone(&key)).or_default());
        drop(shard);
        Ticket {
            table: Arc::clone(self),
            key,
            entry,
        }
    }

    /// Takes the lock on `key` if it is free.
    pub(crate) fn try_acquire(self: &Arc<Self>, key: Arc<str>) -> Option<LocalGuard> {
        let ticket = self.ticket(key);
        let guard = Arc::clone(&ticket.entry).try_lock_owned().ok()?;
        Some(LocalGuard {
            guard: Some(guard),
            _ticket: ticket,
        })
    }

    /// Takes the lock on `key`, waiting at most `wait`; `None` when the wait ran out.
    ///
    /// # Cancel safety
    /// Dropping the future gives up the place in the queue and leaves nothing behind.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        key: Arc<str>,
        wait: Duration,
    ) -> Option<LocalGuard> {
        let ticket = self.ticket(key);
        // The uncontended case needs no timer.
        if let Ok(guard) = Arc::clone(&ticket.entry).try_lock_owned() {
            return Some(LocalGuard {
                guard: Some(guard),
                _ticket: ticket,
            });
        }
        let guard = tokio::time::timeout(wait, Arc::clone(&ticket.entry).lock_owned())
            .await
            .ok()?;
        Some(LocalGuard {
            guard: Some(guard),
            _ticket: ticket,
        })
    }

    /// Whether someone in this process holds the lock on `key`.
    pub(crate) fn is_locked(&self, key: &str) -> bool {
        let shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .get(key)
            .is_some_and(|entry| entry.try_lock().is_err())
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// A holder's or waiter's claim on an entry; the last one to drop removes the entry.
#[derive(Debug)]
struct Ticket {
    table: Arc<LockTable>,
    key: Arc<str>,
    entry: Entry,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut shard = self
            .table
            .shard(&self.key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Clones are made only under the shard lock, which is held: the count can not grow
        // meanwhile. Two references are the map's and this ticket's: nobody else waits.
        if Arc::strong_count(&self.entry) == 2 {
            shard.remove(&self.key);
        }
    }
}

/// A held in-process lock; released when dropped.
#[derive(Debug)]
pub(crate) struct LocalGuard {
    // Dropped first (fields drop in order), so the ticket sees only its own reference.
    guard: Option<OwnedMutexGuard<()>>,
    _ticket: Ticket,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        self.guard.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_vanish_when_unused_and_cancelled_waits_leave_nothing() {
        let table = LockTable::new();
        let held = table.try_acquire("a".into()).expect("free");
        assert!(table.is_locked("a"));
        assert!(table.try_acquire("a".into()).is_none());
        // A wait that runs out, and one that is cancelled, leave nothing behind.
        assert!(
            table
                .acquire("a".into(), Duration::from_millis(10))
                .await
                .is_none()
        );
        {
            let wait = table.acquire("a".into(), Duration::from_secs(10));
            let _ = tokio::time::timeout(Duration::from_millis(10), wait).await;
        }
        assert_eq!(table.entries(), 1);
        drop(held);
        assert!(!table.is_locked("a"));
        assert_eq!(table.entries(), 0);
        let again = table
            .acquire("a".into(), Duration::from_millis(10))
            .await
            .expect("free again");
        drop(again);
        assert_eq!(table.entries(), 0);
    }
}
