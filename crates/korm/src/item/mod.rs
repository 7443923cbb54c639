//! Items: typed data at an RN, in one of four states that are distinct types.
//!
//! ```text
//!   FloatingItem --create--> Item --update--> UncommittedItem --commit--> Item
//!                             |
//!                           delete --> DeletedItem --restore--> Item
//!                                           \--destroy (through korm::danger)--> gone
//! ```
//!
//! Each transition consumes the value it starts from, so a stale state can not be written
//! again, and a transition that makes no sense (committing an unchanged item, restoring a live
//! one) does not compile.

mod collection;
mod read;
pub use collection::{Collected, Collection, collection, collection_at};
pub(crate) use read::{SortRules, select_rows};
mod show;
mod tx;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use read::{Cursor, Load, Page, Query, ReadItem, STREAM_CHUNK};
pub use show::ShowOptions;
pub use tx::{Tx, TxHandle, TxOutcome, tx};

use crate::danger::Danger;
use crate::depot::collect_uploads;
use crate::error::{Error, Result};
use crate::layer::OpKind;
use crate::model::{Cascade, StoredRow, collect_cascades, encode};
use crate::pool::Pool;
use crate::resolve::ResolveOptions;
use crate::rn::Rn;
use crate::write::{BeforeImage, FieldDiff, WriteOp, WritePlan, diff, execute};

/// What a model needs to be stored by korm: serde both ways, and safe to move between tasks.
pub trait Model: Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Model for T {}

/// Options of a write.
///
/// By default a write is optimistic: a commit writes only the fields it changed, each on the
/// condition (checked in the same statement) that the stored value is still the one the item
/// was loaded with, and a delete only while the stored row is still the one loaded; when
/// another writer got there first the write is refused with [`Error::Conflict`] and nothing
/// is written. [`last_writer_wins`](WriteOptions::last_writer_wins) drops the conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// Allow dropping and recreating a column whose kind changed (the values other items held
    /// in that column are lost). Without it, a changed kind is
    /// [`Error::SchemaMismatch`].
    pub destructive: bool,
    /// Write without conditions: the changed fields (or the delete) overwrite whatever another
    /// writer stored since the item was loaded, as korm 1.5 always does. Never
    /// [`Error::Conflict`].
    pub last_writer_wins: bool,
}

impl WriteOptions {
    /// Default options: nothing destructive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows recreating columns whose kind changed.
    pub fn destructive(mut self, destructive: bool) -> Self {
        self.destructive = destructive;
        self
    }

    /// Writes without conflict detection (see [`WriteOptions::last_writer_wins`]).
    pub fn last_writer_wins(mut self, last_writer_wins: bool) -> Self {
        self.last_writer_wins = last_writer_wins;
        self
    }
}

/// The entry point for items of one model in one pool; made by [`item`].
pub struct ItemHandle<T> {
    pool: Pool,
    _model: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for ItemHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemHandle")
            .field("model", &std::any::type_name::<T>())
            .field("pool", &self.pool)
            .finish()
    }
}

impl<T> Clone for ItemHandle<T> {
    fn clone(&self) -> Self {
        ItemHandle {
            pool: self.pool.clone(),
            _model: PhantomData,
        }
    }
}

/// Items of model `T` in `pool`: create, query or load them.
pub fn item<T>(pool: &Pool) -> ItemHandle<T> {
    ItemHandle {
        pool: pool.clone(),
        _model: PhantomData,
    }
}

impl<T: Model> ItemHandle<T> {
    /// A new item that is not stored yet. `rn` is either a collection RN
    /// (`[rn][from::cardb]:cars:suv:*`, a fresh id is drawn: [`rn::new_id`](crate::rn::new_id)) or an item RN with the id
    /// to use.
    ///
    /// # Errors
    /// [`Error::WrongRnForm`] for a depot RN, and the routing errors of the pool (a missing
    /// `from` mod with several layers, an unknown layer).
    pub fn from_data(&self, rn: Rn<T>, data: T) -> Result<FloatingItem<T>> {
        let rn = if rn.is_collection() {
            rn.with_id(crate::rn::new_id())?
        } else if rn.is_item() {
            rn
        } else {
            return Err(Error::WrongRnForm {
                rn: rn.to_string(),
                reason: "an item needs a collection rn (namespace:kind:*) or an item rn".to_owned(),
            });
        };
        self.pool.route(&rn)?;
        Ok(FloatingItem {
            pool: self.pool.clone(),
            rn,
            data,
        })
    }

    /// An uncommitted item made from its RN and data, without loading it (korm 1.5's
    /// `new UncommittedItem(pool, rn, data)`): its [`commit`](UncommittedItem::commit)
    /// writes every field of `data`, last writer wins (there is no loaded state to check
    /// against). The write path reads the stored row under the item's lock first, for the
    /// undo and the WAL record. In a [`tx`](crate::tx) it saves a load per item:
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Account { balance: i64 }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> korm::Result<()> {
    /// # let pool = korm::pool().layer("bank", korm::layers::sqlite_memory()).open().await?;
    /// let accounts = korm::item::<Account>(&pool);
    /// # let a = accounts.from_data("[rn]:accounts:open:*".parse()?, Account { balance: 1 })?.create().await?;
    /// # let b = accounts.from_data("[rn]:accounts:open:*".parse()?, Account { balance: 1 })?.create().await?;
    /// # let (a, b) = (a.rn().clone(), b.rn().clone());
    /// // Known RNs and new balances, from a ledger say:
    /// let mut tx = korm::tx(&pool);
    /// tx.commit_all([
    ///     accounts.uncommitted(a.clone(), Account { balance: 70 })?,
    ///     accounts.uncommitted(b, Account { balance: 30 })?,
    /// ]);
    /// tx.persist().await?;
    /// assert_eq!(accounts.load(a).get().await?.data().balance, 70);
    /// # pool.close().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::WrongRnForm`] unless `rn` is an item RN, and the routing errors of the pool.
    /// Committing an item nothing is stored at is [`Error::NotFound`].
    pub fn uncommitted(&self, rn: Rn<T>, data: T) -> Result<UncommittedItem<T>> {
        if !rn.is_item() {
            return Err(Error::WrongRnForm {
                rn: rn.to_string(),
                reason: "an uncommitted item needs an item rn (namespace:kind:<uuid>)".to_owned(),
            });
        }
        self.pool.route(&rn)?;
        Ok(UncommittedItem {
            item: Item {
                pool: self.pool.clone(),
                rn: ItemRn::new(rn),
                data,
                stored: BeforeImage::Unknown,
                resolve: None,
            },
        })
    }

    /// A query over the collection `rn` (`[rn][from::cardb]:cars:suv:*`).
    pub fn query(&self, rn: Rn<T>) -> Query<T> {
        Query::new(self.pool.clone(), rn)
    }

    /// Loads the item at `rn`.
    pub fn load(&self, rn: Rn<T>) -> Load<T> {
        Load::new(self.pool.clone(), rn)
    }

    /// An empty placeholder: no RN, no data, nothing stored.
    pub fn empty(&self) -> EmptyItem<T> {
        EmptyItem {
            _model: PhantomData,
        }
    }
}

/// A placeholder that holds no item, for code that needs an item-shaped value before it has
/// one. [`is_empty`](EmptyItem::is_empty) is always true.
pub struct EmptyItem<T> {
    _model: PhantomData<fn() -> T>,
}

impl<T> EmptyItem<T> {
    /// Always `true`.
    pub fn is_empty(&self) -> bool {
        true
    }
}

impl<T> fmt::Debug for EmptyItem<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmptyItem<{}>", std::any::type_name::<T>())
    }
}

/// An item that exists only in memory; [`create`](FloatingItem::create) stores it.
pub struct FloatingItem<T> {
    pool: Pool,
    rn: Rn<T>,
    data: T,
}

impl<T: Model> FloatingItem<T> {
    /// The RN the item will have.
    pub fn rn(&self) -> &Rn<T> {
        &self.rn
    }

    /// The data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The data, to change before creating.
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.data
    }

    /// Always `false`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Stores the item, creating its table and columns if needed.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if an item has this RN, [`Error::UniqueViolation`] naming the
    /// field, [`Error::SchemaMismatch`] if a field's kind changed, [`Error::Encode`] or
    /// [`Error::InvalidIdentifier`] for a model korm can not store, and database errors. On
    /// error nothing is written.
    pub async fn create(self) -> Result<Item<T>> {
        self.create_with(WriteOptions::default()).await
    }

    /// [`create`](FloatingItem::create) with options.
    ///
    /// # Errors
    /// As [`create`](FloatingItem::create).
    pub async fn create_with(self, options: WriteOptions) -> Result<Item<T>> {
        self.try_create_with(options)
            .await
            .map_err(|failed| failed.error)
    }

    /// [`create`](FloatingItem::create) that gives the item back with any error (a unique
    /// value taken, an id in use), to change and create again.
    ///
    /// # Errors
    /// As [`create`](FloatingItem::create), inside a [`Failed`] holding this item.
    pub async fn try_create(self) -> std::result::Result<Item<T>, Failed<FloatingItem<T>>> {
        self.try_create_with(WriteOptions::default()).await
    }

    /// [`try_create`](FloatingItem::try_create) with options.
    ///
    /// # Errors
    /// As [`try_create`](FloatingItem::try_create).
    pub async fn try_create_with(
        self,
        options: WriteOptions,
    ) -> std::result::Result<Item<T>, Failed<FloatingItem<T>>> {
        let result = match self.create_op(options) {
            Ok(prepared) => prepared.run(&self.pool, options).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(stored) => Ok(Item {
                pool: self.pool,
                rn: ItemRn::new(self.rn),
                data: self.data,
                stored,
                resolve: None,
            }),
            Err(error) => Err(Failed { error, item: self }),
        }
    }
}

impl<T: Model> FloatingItem<T> {
    /// The op that stores the item, and its data as it will be stored (the before-image of
    /// the item's next write).
    fn create_op(&self, options: WriteOptions) -> Result<Prepared> {
        // Depot files in the data are uploaded by the same write (D3); changed resolved
        // references are updated by it (X3).
        let ((fields, uploads), cascades) = crate::crypto::at_boundary(self.pool.ring(), || {
            collect_cascades(|| collect_uploads(|| encode(&self.data)))
        });
        let fields: Arc<[crate::model::Field]> = fields?.into();
        let stored = BeforeImage::Fields(Arc::clone(&fields));
        let op = WriteOp {
            kind: OpKind::Insert,
            rn: self.rn.untyped(),
            fields,
            before: None,
            destructive: options.destructive,
            uploads,
            check: false,
        };
        Ok(Prepared {
            op,
            stored,
            cascades,
        })
    }
}

/// Whether two RNs name the same item: the same table and id (ids compared without case),
/// and the same layer where both name one (an RN without a `from` mod routes to the only
/// layer, or is refused, so it may be any).
pub(crate) fn same_item(a: &crate::rn::Rn, b: &crate::rn::Rn) -> bool {
    a.table_name() == b.table_name()
        && match (a.id(), b.id()) {
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
            _ => false,
        }
        && match (a.layer(), b.layer()) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
}

/// A create or commit ready to run: its op, the data as it will be stored, and the cascaded
/// updates of changed resolved references (X3).
pub(crate) struct Prepared {
    pub(crate) op: WriteOp,
    pub(crate) stored: BeforeImage,
    pub(crate) cascades: Vec<Cascade>,
}

impl Prepared {
    /// Runs the op and its cascades as one write plan; returns the data as stored.
    async fn run(self, pool: &Pool, options: WriteOptions) -> Result<BeforeImage> {
        let mut ops = vec![self.op];
        ops.extend(cascade_ops(&ops, &self.cascades, options)?);
        execute(
            pool,
            WritePlan {
                ops,
                ..WritePlan::default()
            },
        )
        .await?;
        for cascade in self.cascades {
            cascade.settle();
        }
        Ok(self.stored)
    }
}

/// The update ops of `cascades`, to run in one plan with `ops`. No item may be changed twice:
/// an op's item through a changed resolved reference to it, or one referenced item through
/// two changed copies, is [`Error::CascadeConflict`]. A cascade writes the referenced item's
/// whole data, each field (unless last writer wins) on the condition that it still holds
/// what the resolution read.
pub(crate) fn cascade_ops(
    ops: &[WriteOp],
    cascades: &[Cascade],
    options: WriteOptions,
) -> Result<Vec<WriteOp>> {
    let conflict = |cascade: &Cascade, reason: &str| Error::CascadeConflict {
        rn: cascade.rn.to_string(),
        reason: reason.to_owned(),
    };
    for (i, cascade) in cascades.iter().enumerate() {
        if ops.iter().any(|op| same_item(&op.rn, &cascade.rn)) {
            return Err(conflict(
                cascade,
                "a changed resolved reference points at an item the write changes itself",
            ));
        }
        if cascades[..i]
            .iter()
            .any(|other| same_item(&other.rn, &cascade.rn))
        {
            return Err(conflict(
                cascade,
                "two changed resolved references hold copies of the same item",
            ));
        }
    }
    Ok(cascades
        .iter()
        .map(|cascade| WriteOp {
            kind: OpKind::Update,
            rn: cascade.rn.clone(),
            fields: Arc::clone(&cascade.fields),
            before: Some(cascade.before.clone()),
            destructive: options.destructive,
            uploads: Vec::new(),
            check: !options.last_writer_wins,
        })
        .collect())
}

/// The op that stores an item's changed `data` over `stored`, and the data as it will be
/// stored. Only the top-level fields that differ from `stored` are written (see
/// [`crate::write::diff`]), each on the condition that it still holds its `stored` value
/// unless last writer wins.
fn commit_op<T: Model>(
    ring: &crate::crypto::RingChoice,
    rn: &Rn<T>,
    data: &T,
    stored: BeforeImage,
    options: WriteOptions,
) -> Result<Prepared> {
    let ((fields, uploads), cascades) = crate::crypto::at_boundary(ring, || {
        collect_cascades(|| collect_uploads(|| encode(data)))
    });
    let fields = fields?;
    let FieldDiff { changed, after } = crate::crypto::at_boundary(ring, || diff(fields, &stored));
    // An item made from data has no before-image: the write path reads it under the lock,
    // and the write is last writer wins.
    let known = !matches!(stored, BeforeImage::Unknown);
    let op = WriteOp {
        kind: OpKind::Update,
        rn: rn.untyped(),
        fields: changed.into(),
        before: known.then_some(stored),
        destructive: options.destructive,
        uploads,
        check: known && !options.last_writer_wins,
    };
    Ok(Prepared {
        op,
        stored: after,
        cascades,
    })
}

/// An item's RN. The items a query reads get theirs made on first use, from the collection's
/// RN and the stored id: most are never asked for it, and making one costs two allocations
/// per row read.
pub(crate) enum ItemRn<T> {
    /// Made already.
    Made(Rn<T>),
    /// Made on first use from the collection's RN and the item's id (checked: a UUID, 36
    /// ASCII characters, kept in place).
    Lazy {
        made: std::sync::OnceLock<Rn<T>>,
        collection: Rn<T>,
        id: [u8; 36],
    },
}

impl<T> ItemRn<T> {
    /// An RN already made.
    pub(crate) fn new(rn: Rn<T>) -> Self {
        ItemRn::Made(rn)
    }

    /// The RN of the item `id` of `collection`, made on first use. The id must have passed
    /// [`Rn::check_id_text`].
    pub(crate) fn lazy(collection: Rn<T>, id: &str) -> Self {
        match <[u8; 36]>::try_from(id.as_bytes()) {
            Ok(id) => ItemRn::Lazy {
                made: std::sync::OnceLock::new(),
                collection,
                id,
            },
            Err(_) => ItemRn::Made(collection.with_valid_id(id)),
        }
    }

    /// The RN.
    pub(crate) fn get(&self) -> &Rn<T> {
        match self {
            ItemRn::Made(rn) => rn,
            ItemRn::Lazy {
                made,
                collection,
                id,
            } => made.get_or_init(|| collection.with_valid_id(id_text(id))),
        }
    }

    /// The RN, taken out.
    pub(crate) fn into_rn(self) -> Rn<T> {
        match self {
            ItemRn::Made(rn) => rn,
            lazy => lazy.get().clone(),
        }
    }
}

/// A lazy RN's id as text (always ASCII: it passed [`Rn::check_id_text`]).
fn id_text(id: &[u8; 36]) -> &str {
    std::str::from_utf8(id).unwrap_or_default()
}

/// A stored item whose data matches what is stored.
pub struct Item<T> {
    pool: Pool,
    rn: ItemRn<T>,
    data: T,
    /// The data as stored: the before-image of the next write.
    stored: BeforeImage,
    /// The references the read that made it resolved: a reload (a retry after a conflict,
    /// a rebase) resolves them again, so a change through a resolved `Ref` is not lost.
    resolve: Option<Arc<ResolveOptions>>,
}

impl<T: Model> Item<T> {
    /// An item read back from its layer. With the rows a resolution fetched in scope, the
    /// model's [`Ref`](crate::Ref) fields decode their referenced data.
    pub(crate) fn from_stored_resolved(
        pool: Pool,
        rn: ItemRn<T>,
        row: StoredRow,
        resolved: Option<&std::sync::Arc<crate::model::Resolved>>,
        resolve: Option<&Arc<ResolveOptions>>,
    ) -> Result<Self> {
        let data = crate::crypto::at_boundary(pool.ring(), || match resolved {
            Some(resolved) => crate::model::with_resolved(resolved, || decode::<T>(&rn, &row)),
            None => decode::<T>(&rn, &row),
        })?;
        Ok(Item {
            pool,
            rn,
            data,
            stored: BeforeImage::Read(row),
            resolve: resolve.cloned(),
        })
    }

    /// The item's RN.
    pub fn rn(&self) -> &Rn<T> {
        self.rn.get()
    }

    /// The data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// Takes the data out.
    pub fn into_data(self) -> T {
        self.data
    }

    /// Always `false`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Changes the data in memory; [`commit`](UncommittedItem::commit) stores the change.
    pub fn update(mut self, change: impl FnOnce(&mut T)) -> UncommittedItem<T> {
        change(&mut self.data);
        UncommittedItem { item: self }
    }

    /// [`update`](Item::update) with a change that can fail, so `?` works inside it (e.g. on
    /// [`Ref::get_mut`](crate::Ref::get_mut) to edit resolved references; see there).
    ///
    /// # Errors
    /// The change's own error; the item is dropped then (what the change did before failing
    /// is not stored): load it again to retry.
    pub fn try_update(
        mut self,
        change: impl FnOnce(&mut T) -> Result<()>,
    ) -> Result<UncommittedItem<T>> {
        change(&mut self.data)?;
        Ok(UncommittedItem { item: self })
    }

    /// Replaces the data in memory; [`commit`](UncommittedItem::commit) stores it.
    pub fn replace(mut self, data: T) -> UncommittedItem<T> {
        self.data = data;
        UncommittedItem { item: self }
    }

    /// Deletes the item, if it is still stored as it was loaded. The returned
    /// [`DeletedItem`] keeps a snapshot, so it can be [`restore`](DeletedItem::restore)d.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the item is no longer stored, [`Error::Conflict`] (handing the
    /// item back, see [`Error::take_conflicted`]) if another writer changed it since it was
    /// loaded, and database errors.
    pub async fn delete(self) -> Result<DeletedItem<T>> {
        self.delete_with(WriteOptions::default()).await
    }

    /// [`delete`](Item::delete) with options: with
    /// [`last_writer_wins`](WriteOptions::last_writer_wins) the item is deleted whatever
    /// another writer stored meanwhile.
    ///
    /// # Errors
    /// As [`delete`](Item::delete).
    pub async fn delete_with(self, options: WriteOptions) -> Result<DeletedItem<T>> {
        let Item {
            pool,
            rn,
            data,
            stored,
            resolve,
        } = self;
        let this = Item {
            pool,
            rn,
            data,
            stored: stored.shared(),
            resolve,
        };
        match execute(&this.pool, WritePlan::single(this.delete_op(options))).await {
            Ok(()) => Ok(DeletedItem { item: this }),
            Err(e) => Err(hand_back(e, this)),
        }
    }

    /// The op that deletes the item, with its stored data as the before-image.
    fn delete_op(&self, options: WriteOptions) -> WriteOp {
        WriteOp {
            kind: OpKind::Delete,
            rn: self.rn.get().untyped(),
            fields: Arc::from(Vec::new()),
            before: Some(self.stored.clone()),
            destructive: false,
            uploads: Vec::new(),
            check: !options.last_writer_wins,
        }
    }

    /// A readable rendering of the item, secrets redacted (see [`ShowOptions`]).
    pub fn show(&self, options: ShowOptions) -> String {
        show::render(self.rn.get().as_str(), &self.stored.to_map(), options)
    }
}

impl<T: fmt::Debug> fmt::Debug for Item<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Item")
            .field("rn", self.rn.get())
            .field("data", &self.data)
            .finish()
    }
}

/// A stored item with changes not yet stored; [`commit`](UncommittedItem::commit) stores them.
pub struct UncommittedItem<T> {
    item: Item<T>,
}

impl<T: Model> UncommittedItem<T> {
    /// The item's RN.
    pub fn rn(&self) -> &Rn<T> {
        self.item.rn.get()
    }

    /// The changed data.
    pub fn data(&self) -> &T {
        &self.item.data
    }

    /// The changed data, to change further.
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.item.data
    }

    /// Always `false`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Stores the changes: only the top-level fields whose value differs from the item as
    /// loaded are written, each on the condition that the stored value is still the loaded
    /// one (checked in the same statement). A field that is new to the table adds a column.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another writer changed one of those fields since the item was
    /// loaded (nothing is written; the error hands this item back, see
    /// [`Error::take_conflicted`]; [`Item::retry_on_conflict`] reloads and applies a change
    /// again), [`Error::NotFound`] if the item was deleted meanwhile,
    /// [`Error::UniqueViolation`], [`Error::SchemaMismatch`] (see
    /// [`commit_with`](UncommittedItem::commit_with)), and database errors. On error nothing
    /// is written.
    pub async fn commit(self) -> Result<Item<T>> {
        self.commit_with(WriteOptions::default()).await
    }

    /// [`commit`](UncommittedItem::commit) with options; `destructive` recreates columns
    /// whose kind changed, `last_writer_wins` writes the changed fields whatever another
    /// writer stored meanwhile.
    ///
    /// # Errors
    /// As [`commit`](UncommittedItem::commit).
    pub async fn commit_with(self, options: WriteOptions) -> Result<Item<T>> {
        self.try_commit_with(options)
            .await
            .map_err(|failed| hand_back(failed.error, failed.item))
    }

    /// [`commit`](UncommittedItem::commit) that gives the item back with any error, as it
    /// was, to change and commit again (`?` turns the [`Failed`] into its [`Error`]).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct User { name: korm::Unique<String> }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> korm::Result<()> {
    /// # let pool = korm::pool().layer("db", korm::layers::sqlite_memory()).open().await?;
    /// # let users = korm::item::<User>(&pool);
    /// # let rn = || "[rn]:users:all:*".parse().unwrap();
    /// # users.from_data(rn(), User { name: korm::Unique::new("fred".into()) })?.create().await?;
    /// let barney = users.from_data(rn(), User { name: korm::Unique::new("barney".into()) })?.create().await?;
    /// let taken = barney.update(|u| u.name = korm::Unique::new("fred".into())).try_commit().await;
    /// let failed = taken.err().expect("fred is taken");
    /// assert!(matches!(failed.error, korm::Error::UniqueViolation { .. }));
    /// let mut again = failed.item;
    /// again.data_mut().name = korm::Unique::new("fred2".into());
    /// let stored = again.commit().await?;
    /// assert_eq!(*stored.data().name, "fred2");
    /// // The same for a create.
    /// let failed = users.from_data(rn(), User { name: korm::Unique::new("fred".into()) })?.try_create().await;
    /// let mut floating = failed.err().expect("fred is taken").item;
    /// floating.data_mut().name = korm::Unique::new("wilma".into());
    /// assert_eq!(*floating.create().await?.data().name, "wilma");
    /// # pool.close().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`commit`](UncommittedItem::commit), inside a [`Failed`] holding this item.
    pub async fn try_commit(self) -> std::result::Result<Item<T>, Failed<UncommittedItem<T>>> {
        self.try_commit_with(WriteOptions::default()).await
    }

    /// [`try_commit`](UncommittedItem::try_commit) with options.
    ///
    /// # Errors
    /// As [`try_commit`](UncommittedItem::try_commit).
    pub async fn try_commit_with(
        self,
        options: WriteOptions,
    ) -> std::result::Result<Item<T>, Failed<UncommittedItem<T>>> {
        let Item {
            pool,
            rn,
            data,
            stored,
            resolve,
        } = self.item;
        let stored = stored.shared();
        let prepared = commit_op(pool.ring(), rn.get(), &data, stored.clone(), options);
        let result = match prepared {
            Ok(prepared) => prepared.run(&pool, options).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(new_stored) => Ok(Item {
                pool,
                rn,
                data,
                stored: new_stored,
                resolve,
            }),
            Err(error) => Err(Failed {
                error,
                item: UncommittedItem {
                    item: Item {
                        pool,
                        rn,
                        data,
                        stored,
                        resolve,
                    },
                },
            }),
        }
    }

    /// Moves the change onto the item as stored now, after an [`Error::Conflict`]: the item
    /// is loaded again and the top-level fields this item changed (against the data it was
    /// loaded with) are set on it; the fields other writers changed meanwhile keep their new
    /// values. Commit the result to store it.
    ///
    /// A change computed from the old value (an increment) would be computed again from the
    /// new one: apply such changes again to the reloaded item instead
    /// ([`Item::retry_on_conflict`] does, resolving the references the item's read resolved).
    /// Only the item's own fields move: changes made through resolved references (cascades)
    /// do not, and the rebased item's references come back unresolved.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the item was deleted, [`Error::Decode`] if the merged data does
    /// not fit the model, and the errors of a load.
    pub async fn rebase(self) -> Result<UncommittedItem<T>> {
        let Item {
            pool,
            rn,
            data,
            stored,
            ..
        } = self.item;
        let ring = pool.ring().clone();
        let changed = crate::crypto::at_boundary(&ring, || {
            encode(&data).map(|fields| diff(fields, &stored).changed)
        })?;
        let fresh = Load::new(pool, rn.into_rn()).get().await?;
        let mut merged = fresh.stored.to_map();
        for field in changed {
            merged.insert(field.name, field.value);
        }
        let data = crate::crypto::at_boundary(&ring, || crate::model::read_map::<T>(&merged))
            .map_err(|e| Error::Decode {
                rn: fresh.rn.get().to_string(),
                reason: redact_values(&e.to_string()),
            })?;
        Ok(UncommittedItem {
            item: Item { data, ..fresh },
        })
    }
}

/// A write that failed ([`FloatingItem::try_create`], [`UncommittedItem::try_commit`]), with
/// the item it was given, unchanged, to fix and write again. `?` turns it into its
/// [`Error`]; `Debug` and `Display` show the error only (never the item's data).
pub struct Failed<I> {
    /// Why the write failed; nothing was written.
    pub error: Error,
    /// The item, as it was given.
    pub item: I,
}

impl<I> fmt::Debug for Failed<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failed")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<I> fmt::Display for Failed<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<I> std::error::Error for Failed<I> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<I> From<Failed<I>> for Error {
    fn from(failed: Failed<I>) -> Error {
        failed.error
    }
}

/// The error of a refused write, holding `item` when it is a conflict (directly, or as the
/// cause of the failed op of a commit's plan with cascades).
fn hand_back<S: Send + Sync + 'static>(error: Error, item: S) -> Error {
    match error {
        Error::Conflict { rn, fields, .. } => Error::Conflict {
            rn,
            fields,
            item: crate::error::ConflictedItem::new(item),
        },
        // A commit with cascades is a plan of several ops.
        Error::WriteFailed { op, rn, source } if source.is_conflict() => Error::WriteFailed {
            op,
            rn,
            source: Box::new(hand_back(*source, item)),
        },
        other => other,
    }
}

impl<T: Model> Item<T> {
    /// Applies `change` to the item and commits it; when another writer changed the item
    /// first ([`Error::Conflict`]), loads it again and applies `change` to the fresh data,
    /// until a commit lands (at most 100 attempts, with a short random pause
    /// growing between them). `change` may run several times: compute the new value from
    /// the data it is given.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Counter { hits: i64 }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> korm::Result<()> {
    /// # let pool = korm::pool().layer("db", korm::layers::sqlite_memory()).open().await?;
    /// let counter = korm::item::<Counter>(&pool)
    ///     .from_data("[rn]:stats:hits:*".parse()?, Counter { hits: 0 })?
    ///     .create()
    ///     .await?;
    /// let counter = counter.retry_on_conflict(|c| c.hits += 1).await?;
    /// assert_eq!(counter.data().hits, 1);
    /// # pool.close().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The last [`Error::Conflict`] when every attempt lost its race, and any other error of
    /// a commit or a load at once.
    pub async fn retry_on_conflict(self, mut change: impl FnMut(&mut T)) -> Result<Item<T>> {
        let mut item = self;
        let mut attempt: u32 = 0;
        loop {
            let pool = item.pool.clone();
            let rn = item.rn.get().clone();
            let resolve = item.resolve.clone();
            match item.update(&mut change).commit().await {
                Ok(done) => return Ok(done),
                Err(e) if e.is_conflict() && attempt + 1 < RETRY_ATTEMPTS => {
                    attempt += 1;
                    // A random pause, up to 1, 2, 4 ... 64 ms: racing writers spread out.
                    let cap = 1u128 << attempt.min(6);
                    let micros = uuid::Uuid::new_v4().as_u128() % (cap * 1000);
                    tokio::time::sleep(std::time::Duration::from_micros(
                        u64::try_from(micros).unwrap_or(0),
                    ))
                    .await;
                    item = Load::again(pool, rn, resolve).get().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// How many times [`Item::retry_on_conflict`] commits at most.
const RETRY_ATTEMPTS: u32 = 100;

impl<T: Model> ItemHandle<T> {
    /// Loads the item at `rn` and applies `change` to it with
    /// [`Item::retry_on_conflict`]: the read-modify-write loop without a lock.
    ///
    /// # Errors
    /// As [`Item::retry_on_conflict`], and the errors of a load.
    pub async fn retry_on_conflict(
        &self,
        rn: Rn<T>,
        change: impl FnMut(&mut T),
    ) -> Result<Item<T>> {
        self.load(rn).get().await?.retry_on_conflict(change).await
    }
}

impl<T: fmt::Debug> fmt::Debug for UncommittedItem<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UncommittedItem")
            .field("rn", self.item.rn.get())
            .field("data", &self.item.data)
            .finish()
    }
}

/// A deleted item: no longer stored, but its snapshot is kept in memory so it can be restored.
pub struct DeletedItem<T> {
    item: Item<T>,
}

impl<T: Model> DeletedItem<T> {
    /// The RN the item had.
    pub fn rn(&self) -> &Rn<T> {
        self.item.rn.get()
    }

    /// The snapshot of the data.
    pub fn data(&self) -> &T {
        &self.item.data
    }

    /// Always `false`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Stores the snapshot again at the same RN.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if something was stored at the RN meanwhile,
    /// [`Error::UniqueViolation`] if another item took a unique value, and database errors.
    pub async fn restore(self) -> Result<Item<T>> {
        let Item { pool, rn, data, .. } = self.item;
        FloatingItem {
            pool,
            rn: rn.into_rn(),
            data,
        }
        .create()
        .await
    }

    /// Gives up the snapshot for good and makes sure nothing is stored at the RN; it runs only
    /// through [`danger`](crate::danger).
    pub fn destroy(self) -> Danger<()> {
        let Item { pool, rn, .. } = self.item;
        Danger::new("destroy a deleted item", async move {
            execute(
                &pool,
                WritePlan::single(WriteOp {
                    kind: OpKind::DeleteIfExists,
                    rn: rn.get().untyped(),
                    fields: Arc::from(Vec::new()),
                    before: None,
                    destructive: false,
                    uploads: Vec::new(),
                    check: false,
                }),
            )
            .await
        })
    }
}

impl<T: fmt::Debug> fmt::Debug for DeletedItem<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeletedItem")
            .field("rn", self.item.rn.get())
            .field("data", &self.item.data)
            .finish()
    }
}

impl<T: fmt::Debug> fmt::Debug for FloatingItem<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FloatingItem")
            .field("rn", &self.rn)
            .field("data", &self.data)
            .finish()
    }
}

/// Reads a stored row into a model. serde's messages quote the offending value; those quotes
/// are redacted, so a stored value never reaches an error or a log line.
fn decode<T: DeserializeOwned>(rn: &ItemRn<T>, row: &StoredRow) -> Result<T> {
    row.read::<T>().map_err(|e| Error::Decode {
        rn: rn.get().to_string(),
        reason: redact_values(&e.to_string()),
    })
}

fn redact_values(message: &str) -> String {
    // serde prints an unexpected string as a Debug-quoted "..." (with \-escapes), and other
    // values and unknown enum variants in back-ticks after a fixed word. Both are replaced by
    // an ellipsis; everything else (type names, field names, expectations) is kept.
    const TICKED: [&str; 5] = [
        "integer ",
        "floating point ",
        "character ",
        "boolean ",
        "unknown variant ",
    ];
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push_str("\"…\"");
                let mut escaped = false;
                for c in chars.by_ref() {
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => {}
                    }
                }
            }
            '`' if TICKED.iter().any(|word| out.ends_with(word)) => {
                out.push_str("`…`");
                for c in chars.by_ref() {
                    if c == '`' {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_values;

    #[test]
    fn escaped_quotes_and_variants_are_redacted_too() {
        let m = redact_values(r#"invalid type: string "x\"SECRET \\ \"more", expected i64"#);
        assert!(!m.contains("SECRET") && !m.contains("more"), "{m}");
        assert!(m.ends_with("expected i64"), "{m}");
        let m = redact_values("unknown variant `SECRET-SSN`, expected `Gold` or `Silver`");
        assert!(!m.contains("SECRET"), "{m}");
        assert!(m.contains("`Gold`"), "{m}");
    }

    #[test]
    fn serde_messages_lose_their_values() {
        let m = redact_values(r#"invalid type: string "078-05-1120", expected i64 at line 1"#);
        assert!(!m.contains("078"), "{m}");
        let m = redact_values("invalid value: integer `-5`, expected u8");
        assert!(!m.contains("-5"), "{m}");
        assert!(redact_values("missing field `username`").contains("username"));
    }
}
