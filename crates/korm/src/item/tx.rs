//! Transactions (T1, T2): several item changes persisted together, across layers.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use super::commit_op;
use super::{DeletedItem, FloatingItem, Item, ItemRn, Model, UncommittedItem, WriteOptions};
use crate::error::{Error, Result};
use crate::lock::LockGuard;
use crate::pool::Pool;
use crate::write::BeforeImage;
use crate::write::{HeldLock, WriteOp, WritePlan, execute};

/// Starts a transaction on `pool`: add changes, then [`persist`](Tx::persist) them together.
///
/// Persisting runs one write plan: every touched RN is locked in sorted order; each layer's
/// part runs inside that database's own transaction; if a part fails, what other layers had
/// applied is undone from the before-images, and the error
/// ([`Error::WriteFailed`]) names the failing op by its index (the order the changes were
/// added) and RN. Items of different models go in one transaction; each change returns a
/// typed handle to take the stored state back from the [`TxOutcome`].
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct User { name: String }
/// # #[derive(Serialize, Deserialize)] struct Car { make: String }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> korm::Result<()> {
/// let pool = korm::pool()
///     .layer("userdb", korm::layers::sqlite_memory())
///     .layer("cardb", korm::layers::sqlite_memory())
///     .open()
///     .await?;
/// let fred = korm::item::<User>(&pool)
///     .from_data("[rn][from::userdb]:users:free:*".parse()?, User { name: "fred".into() })?;
/// let car = korm::item::<Car>(&pool)
///     .from_data("[rn][from::cardb]:cars:suv:*".parse()?, Car { make: "Bedrock".into() })?;
///
/// let mut tx = korm::tx(&pool);
/// let fred = tx.create(fred);
/// let car = tx.create(car);
/// let mut done = tx.persist().await?;
/// let fred: korm::Item<User> = done.take(fred)?;
/// let car = done.take(car)?;
/// assert_eq!(fred.data().name, "fred");
/// assert_eq!(car.data().make, "Bedrock");
/// # pool.close().await;
/// # Ok(()) }
/// ```
pub fn tx(pool: &Pool) -> Tx<'static> {
    Tx {
        pool: pool.clone(),
        id: NEXT_TX.fetch_add(1, Ordering::Relaxed),
        changes: Vec::new(),
        held: Vec::new(),
        error: None,
    }
}

static NEXT_TX: AtomicU64 = AtomicU64::new(1);

type Finish = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

struct Change {
    op: WriteOp,
    /// Cascaded updates of changed resolved references (run after every change's own op,
    /// so op indexes in errors stay the order changes were added).
    cascades: Vec<crate::model::Cascade>,
    finish: Finish,
}

/// A transaction being built (see [`tx`]). `'g` is the lifetime of the lock guards it runs
/// under ([`under`](Tx::under)).
#[must_use = "a transaction does nothing until persist() is awaited"]
pub struct Tx<'g> {
    pool: Pool,
    id: u64,
    changes: Vec<Change>,
    held: Vec<&'g LockGuard>,
    /// The first change that could not be prepared; persist reports it.
    error: Option<Error>,
}

impl fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field(
                "ops",
                &self
                    .changes
                    .iter()
                    .map(|c| c.op.rn.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("under", &self.held.len())
            .finish_non_exhaustive()
    }
}

/// Takes the stored state of one change back from a [`TxOutcome`].
pub struct TxHandle<S> {
    tx: u64,
    index: usize,
    _state: PhantomData<fn() -> S>,
}

impl<S> fmt::Debug for TxHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxHandle")
            .field("op", &self.index)
            .field("state", &std::any::type_name::<S>())
            .finish()
    }
}

impl<'g> Tx<'g> {
    fn push<S: Send + 'static>(
        &mut self,
        pool: &Pool,
        op: Result<(WriteOp, Vec<crate::model::Cascade>)>,
        finish: impl FnOnce() -> S + Send + 'static,
    ) -> TxHandle<S> {
        let index = self.changes.len();
        let op = op.and_then(|(op, cascades)| {
            if pool.same_as(&self.pool) {
                Ok((op, cascades))
            } else {
                Err(Error::InvalidOption {
                    option: "tx",
                    reason: format!("{} belongs to another pool than the transaction", op.rn),
                })
            }
        });
        match op {
            Ok((op, cascades)) => self.changes.push(Change {
                op,
                cascades,
                finish: Box::new(move || Box::new(finish()) as Box<dyn Any + Send>),
            }),
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
        }
        TxHandle {
            tx: self.id,
            index,
            _state: PhantomData,
        }
    }

    /// Creates a floating item.
    pub fn create<T: Model>(&mut self, item: FloatingItem<T>) -> TxHandle<Item<T>> {
        let prepared = item.create_op(WriteOptions::default());
        let (op, stored) = match prepared {
            Ok(p) => (Ok((p.op, p.cascades)), Some(p.stored)),
            Err(e) => (Err(e), None),
        };
        let FloatingItem { pool, rn, data } = item;
        let owner = pool.clone();
        self.push(&owner, op, move || Item {
            pool,
            rn: ItemRn::new(rn),
            data,
            stored: stored.unwrap_or_else(|| BeforeImage::Written(Default::default())),
            resolve: None,
        })
    }

    /// Commits an item's changes.
    pub fn commit<T: Model>(&mut self, item: UncommittedItem<T>) -> TxHandle<Item<T>> {
        let Item {
            pool,
            rn,
            data,
            stored,
            resolve,
        } = item.item;
        let prepared = commit_op(
            pool.ring(),
            rn.get(),
            &data,
            stored,
            WriteOptions::default(),
        );
        let (op, new_stored) = match prepared {
            Ok(p) => (Ok((p.op, p.cascades)), Some(p.stored)),
            Err(e) => (Err(e), None),
        };
        let owner = pool.clone();
        self.push(&owner, op, move || Item {
            pool,
            rn,
            data,
            stored: new_stored.unwrap_or_else(|| BeforeImage::Written(Default::default())),
            resolve,
        })
    }

    /// Deletes an item (it can be restored from the [`DeletedItem`] taken back).
    pub fn delete<T: Model>(&mut self, item: Item<T>) -> TxHandle<DeletedItem<T>> {
        let op = item.delete_op(WriteOptions::default());
        let owner = item.pool.clone();
        self.push(&owner, Ok((op, Vec::new())), move || DeletedItem { item })
    }

    /// Stores a deleted item's snapshot again.
    pub fn restore<T: Model>(&mut self, item: DeletedItem<T>) -> TxHandle<Item<T>> {
        let Item { pool, rn, data, .. } = item.item;
        self.create(FloatingItem {
            pool,
            rn: rn.into_rn(),
            data,
        })
    }

    /// Creates every floating item of `items` (korm 1.5's `tx(a, b, c)`); the handles come
    /// back in the same order, for [`TxOutcome::take_all`].
    pub fn create_all<T: Model>(
        &mut self,
        items: impl IntoIterator<Item = FloatingItem<T>>,
    ) -> Vec<TxHandle<Item<T>>> {
        items.into_iter().map(|item| self.create(item)).collect()
    }

    /// Commits every item of `items`; the handles come back in the same order.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Account { balance: i64 }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> korm::Result<()> {
    /// # let pool = korm::pool().layer("bank", korm::layers::sqlite_memory()).open().await?;
    /// # let rn = || "[rn][from::bank]:accounts:open:*".parse().unwrap();
    /// # let accounts = korm::item::<Account>(&pool);
    /// # let a = accounts.from_data(rn(), Account { balance: 10 })?.create().await?;
    /// # let b = accounts.from_data(rn(), Account { balance: 10 })?.create().await?;
    /// let mut tx = korm::tx(&pool);
    /// let handles = tx.commit_all([a, b].map(|acc| acc.update(|a| a.balance += 5)));
    /// let accounts = tx.persist().await?.take_all(handles)?;
    /// assert!(accounts.iter().all(|a| a.data().balance == 15));
    /// # pool.close().await;
    /// # Ok(()) }
    /// ```
    pub fn commit_all<T: Model>(
        &mut self,
        items: impl IntoIterator<Item = UncommittedItem<T>>,
    ) -> Vec<TxHandle<Item<T>>> {
        items.into_iter().map(|item| self.commit(item)).collect()
    }

    /// Deletes every item of `items`; the handles come back in the same order.
    pub fn delete_all<T: Model>(
        &mut self,
        items: impl IntoIterator<Item = Item<T>>,
    ) -> Vec<TxHandle<DeletedItem<T>>> {
        items.into_iter().map(|item| self.delete(item)).collect()
    }

    /// Runs the transaction under a lock the caller holds (from [`Pool::locker`]): its RN is
    /// not locked again, and with shared locks the writes to it carry the guard's fencing
    /// token, so they are refused with [`Error::StaleLock`] if the lock was lost meanwhile.
    pub fn under(&mut self, guard: &'g LockGuard) -> &mut Self {
        self.held.push(guard);
        self
    }

    /// The number of changes added.
    pub fn len(&self) -> usize {
        self.changes.len() + usize::from(self.error.is_some())
    }

    /// Whether no change was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Persists every change together (see [`tx`]).
    ///
    /// # Errors
    /// The first change that could not be prepared (an [`Error::Encode`], an item of another
    /// pool); [`Error::LockTimeout`]; [`Error::WriteFailed`] naming the failing op (index and
    /// RN) with its cause ([`Error::Conflict`] when an item was changed by another writer
    /// since it was loaded, [`Error::SchemaMismatch`], [`Error::AlreadyExists`],
    /// [`Error::NotFound`], [`Error::StaleLock`], ...) after what was applied was undone; and
    /// [`Error::UndoFailed`] if that undo failed too. A transaction of one change fails with
    /// that change's own error, as the single-item call would. On error the items are
    /// dropped: load them again to retry.
    ///
    /// # Cancel safety
    /// As for every write: a layer's part, once sent, is applied entirely or not at all; a
    /// transaction dropped between two layers leaves the earlier ones applied. With a WAL,
    /// one dropped after its record was written is brought forward by the next recovery:
    /// treat a dropped transaction as one of unknown outcome.
    pub async fn persist(self) -> Result<TxOutcome> {
        self.persist_with(WriteOptions::default()).await
    }

    /// [`persist`](Tx::persist) with options: `destructive` lets every change recreate
    /// columns whose kind changed (T2), `last_writer_wins` writes every commit and delete
    /// without conflict detection.
    ///
    /// # Errors
    /// As [`persist`](Tx::persist).
    pub async fn persist_with(self, options: WriteOptions) -> Result<TxOutcome> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let mut cascades = Vec::new();
        let (mut ops, finishes): (Vec<WriteOp>, Vec<Finish>) = self
            .changes
            .into_iter()
            .map(|mut change| {
                change.op.destructive |= options.destructive;
                if options.last_writer_wins {
                    change.op.check = false;
                }
                cascades.append(&mut change.cascades);
                (change.op, change.finish)
            })
            .unzip();
        let cascaded = super::cascade_ops(&ops, &cascades, options)?;
        ops.extend(cascaded);
        let held = self
            .held
            .iter()
            .filter_map(|guard| HeldLock::of(&self.pool, guard))
            .collect();
        if !ops.is_empty() {
            execute(
                &self.pool,
                WritePlan {
                    ops,
                    held,
                    depot_ops: Vec::new(),
                },
            )
            .await?;
        }
        for cascade in cascades {
            cascade.settle();
        }
        Ok(TxOutcome {
            tx: self.id,
            states: finishes.into_iter().map(|finish| Some(finish())).collect(),
        })
    }
}

/// The stored states of a persisted transaction, taken back by handle.
pub struct TxOutcome {
    tx: u64,
    states: Vec<Option<Box<dyn Any + Send>>>,
}

impl fmt::Debug for TxOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxOutcome")
            .field("left", &self.states.iter().filter(|s| s.is_some()).count())
            .finish()
    }
}

impl TxOutcome {
    /// Takes the stored state of the change `handle` was returned for.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a handle of another transaction.
    pub fn take<S: 'static>(&mut self, handle: TxHandle<S>) -> Result<S> {
        let wrong = || Error::InvalidOption {
            option: "tx handle",
            reason: "the handle belongs to another transaction".to_owned(),
        };
        if handle.tx != self.tx {
            return Err(wrong());
        }
        let state = self
            .states
            .get_mut(handle.index)
            .and_then(Option::take)
            .ok_or_else(wrong)?;
        state.downcast::<S>().map(|s| *s).map_err(|_| wrong())
    }

    /// Takes the stored states of several changes, in the order of `handles` (as returned by
    /// [`Tx::commit_all`] and its siblings).
    ///
    /// # Errors
    /// As [`take`](TxOutcome::take).
    pub fn take_all<S: 'static>(
        &mut self,
        handles: impl IntoIterator<Item = TxHandle<S>>,
    ) -> Result<Vec<S>> {
        handles.into_iter().map(|h| self.take(h)).collect()
    }
}

impl<T: Model> UncommittedItem<T> {
    /// [`commit`](UncommittedItem::commit) under a lock the caller holds (see
    /// [`Tx::under`]): the RN is not locked again, and with shared locks the write carries the
    /// guard's fencing token.
    ///
    /// # Errors
    /// As [`commit`](UncommittedItem::commit), and [`Error::StaleLock`] when the shared lock
    /// was lost (the write is refused, nothing is written).
    pub async fn commit_under(self, guard: &LockGuard) -> Result<Item<T>> {
        let pool = self.item.pool.clone();
        let mut tx = tx(&pool);
        let handle = tx.commit(self);
        tx.under(guard);
        tx.persist().await?.take(handle)
    }
}

impl<T: Model> FloatingItem<T> {
    /// [`create`](FloatingItem::create) under a lock the caller holds (see [`Tx::under`]).
    ///
    /// # Errors
    /// As [`create`](FloatingItem::create), and [`Error::StaleLock`] when the shared lock
    /// was lost.
    pub async fn create_under(self, guard: &LockGuard) -> Result<Item<T>> {
        let pool = self.pool.clone();
        let mut tx = tx(&pool);
        let handle = tx.create(self);
        tx.under(guard);
        tx.persist().await?.take(handle)
    }
}

impl<T: Model> Item<T> {
    /// [`delete`](Item::delete) under a lock the caller holds (see [`Tx::under`]).
    ///
    /// # Errors
    /// As [`delete`](Item::delete), and [`Error::StaleLock`] when the shared lock was lost.
    pub async fn delete_under(self, guard: &LockGuard) -> Result<DeletedItem<T>> {
        let pool = self.pool.clone();
        let mut tx = tx(&pool);
        let handle = tx.delete(self);
        tx.under(guard);
        tx.persist().await?.take(handle)
    }
}
