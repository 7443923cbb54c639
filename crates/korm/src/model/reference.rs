//! [`Ref<T>`]: a field that references another item, stored as the item's RN string.
//!
//! Two pieces of thread-local context connect a `Ref` to korm while serde runs, so that models
//! stay plain serde types:
//!
//! - while korm decodes an item with resolve paths, the rows the resolution fetched are in
//!   scope ([`with_resolved`]); a `Ref` whose RN was resolved at its depth decodes the
//!   referenced item's row into its `T`;
//! - while korm encodes an item for a write, a cascade collector is in scope
//!   ([`collect_cascades`]); a resolved `Ref` whose data was changed through
//!   [`Ref::resolved_mut`] adds an update of the referenced item to the same write plan.
//!
//! Outside korm (serde_json in a program's own API, say) a `Ref` is just its RN string.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Field, StoredRow, encode};
use crate::rn::Rn;
use crate::write::BeforeImage;

/// A reference to another item, in a model field: stored as the referenced item's RN string
/// (an `RN_REF_TEXT` column at the top level, a string inside JSON), and, once a query or load
/// resolved it ([`Query::resolve`](crate::Query::resolve)), holding the referenced item's data
/// as a typed `T`.
///
/// ```
/// use korm::Ref;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct User { username: String }
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Car { make: String, owner: Ref<User> }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> korm::Result<()> {
/// let pool = korm::pool()
///     .layer("userdb", korm::layers::sqlite_memory())
///     .layer("cardb", korm::layers::sqlite_memory())
///     .open()
///     .await?;
/// let fred = korm::item::<User>(&pool)
///     .from_data("[rn][from::userdb]:users:free:*".parse()?, User { username: "fred".into() })?
///     .create()
///     .await?;
/// let cars = korm::item::<Car>(&pool);
/// cars.from_data(
///     "[rn][from::cardb]:cars:suv:*".parse()?,
///     Car { make: "Bedrock".into(), owner: Ref::new(fred.rn().clone()) },
/// )?
/// .create()
/// .await?;
///
/// let found = cars.query("[rn][from::cardb]:cars:suv:*".parse()?).resolve(["owner"]).get().await?;
/// let owner = &found[0].data().owner;
/// assert_eq!(owner.rn(), fred.rn());
/// assert_eq!(owner.resolved().unwrap().username, "fred");
/// # pool.close().await;
/// # Ok(()) }
/// ```
///
/// Changing the referenced data through [`resolved_mut`](Ref::resolved_mut) and committing the
/// item that holds the reference updates the referenced item too, in its own layer, in the
/// same write (a cascade); the holder keeps storing the RN string.
pub struct Ref<T> {
    rn: Rn<T>,
    /// Boxed, so that a model may reference its own type (`friend: Ref<Person>`).
    target: Option<Box<Target<T>>>,
}

struct Target<T> {
    data: T,
    state: Arc<RefState>,
}

/// What a resolved reference knows of its referenced item as stored.
#[derive(Debug)]
pub(crate) struct RefState {
    /// Whether the data was handed out mutably since it was stored.
    changed: AtomicBool,
    /// The referenced item as stored: the before-image of a cascaded update.
    stored: Mutex<BeforeImage>,
}

impl<T> Ref<T> {
    /// An unresolved reference to the item at `rn`.
    pub fn new(rn: Rn<T>) -> Self {
        Ref { rn, target: None }
    }

    /// The referenced item's RN.
    pub fn rn(&self) -> &Rn<T> {
        &self.rn
    }

    /// Whether the referenced item's data is here (a query or load resolved it).
    pub fn is_resolved(&self) -> bool {
        self.target.is_some()
    }

    /// The referenced item's data, if it was resolved.
    pub fn resolved(&self) -> Option<&T> {
        self.target.as_ref().map(|t| &t.data)
    }

    /// The referenced item's data, to change: committing the item that holds this reference
    /// also stores the change in the referenced item (a cascade). `None` if not resolved.
    pub fn resolved_mut(&mut self) -> Option<&mut T> {
        self.target.as_mut().map(|t| {
            t.state.changed.store(true, Ordering::Relaxed);
            &mut t.data
        })
    }

    /// The referenced item's data, or [`Error::NotResolved`](crate::Error::NotResolved)
    /// naming the RN when the read did not resolve it.
    ///
    /// # Errors
    /// [`Error::NotResolved`](crate::Error::NotResolved).
    pub fn get(&self) -> crate::Result<&T> {
        self.resolved().ok_or_else(|| self.not_resolved())
    }

    /// The referenced item's data, to change (as [`resolved_mut`](Ref::resolved_mut): the
    /// commit of the item holding the reference stores the change in the referenced item),
    /// or [`Error::NotResolved`](crate::Error::NotResolved). With `?` inside
    /// [`Item::try_update`](crate::Item::try_update), an edit two references deep is one line:
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Company { name: String }
    /// # #[derive(Serialize, Deserialize)] struct Person { name: String, employer: korm::Ref<Company> }
    /// # #[derive(Serialize, Deserialize)] struct Car { make: String, owner: korm::Ref<Person> }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> korm::Result<()> {
    /// # let pool = korm::pool()
    /// #     .layer("cardb", korm::layers::sqlite_memory())
    /// #     .layer("userdb", korm::layers::sqlite_memory())
    /// #     .open().await?;
    /// # let slate = korm::item::<Company>(&pool)
    /// #     .from_data("[rn][from::userdb]:companies:all:*".parse()?, Company { name: "Slate".into() })?
    /// #     .create().await?;
    /// # let fred = korm::item::<Person>(&pool)
    /// #     .from_data("[rn][from::userdb]:people:all:*".parse()?,
    /// #         Person { name: "fred".into(), employer: slate.rn().into() })?
    /// #     .create().await?;
    /// # let car = korm::item::<Car>(&pool)
    /// #     .from_data("[rn][from::cardb]:cars:suv:*".parse()?,
    /// #         Car { make: "Bedrock".into(), owner: fred.rn().into() })?
    /// #     .create().await?;
    /// let car = korm::item::<Car>(&pool)
    ///     .load(car.rn().clone())
    ///     .resolve(["owner", "owner.employer"])
    ///     .get()
    ///     .await?;
    /// car.try_update(|car| {
    ///     car.owner.get_mut()?.employer.get_mut()?.name = "Slate Rock and Gravel".into();
    ///     Ok(())
    /// })?
    /// .commit()
    /// .await?;
    /// let slate = korm::item::<Company>(&pool).load(slate.rn().clone()).get().await?;
    /// assert_eq!(slate.data().name, "Slate Rock and Gravel");
    /// # pool.close().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotResolved`](crate::Error::NotResolved).
    pub fn get_mut(&mut self) -> crate::Result<&mut T> {
        let rn = self.rn.to_string();
        self.resolved_mut().ok_or(crate::Error::NotResolved { rn })
    }

    fn not_resolved(&self) -> crate::Error {
        crate::Error::NotResolved {
            rn: self.rn.to_string(),
        }
    }

    /// The referenced item's data, if it was resolved, taken out.
    pub fn into_resolved(self) -> Option<T> {
        self.target.map(|t| t.data)
    }

    /// Forgets the resolved data (and any change to it), keeping the RN.
    pub fn unresolve(&mut self) {
        self.target = None;
    }
}

impl<T> From<Rn<T>> for Ref<T> {
    fn from(rn: Rn<T>) -> Self {
        Ref::new(rn)
    }
}

impl<T> From<&Rn<T>> for Ref<T> {
    fn from(rn: &Rn<T>) -> Self {
        Ref::new(rn.clone())
    }
}

impl<T: Clone> Clone for Ref<T> {
    fn clone(&self) -> Self {
        Ref {
            rn: self.rn.clone(),
            target: self.target.as_ref().map(|t| {
                Box::new(Target {
                    data: t.data.clone(),
                    state: Arc::new(RefState {
                        changed: AtomicBool::new(t.state.changed.load(Ordering::Relaxed)),
                        stored: Mutex::new(t.state.stored_image()),
                    }),
                })
            }),
        }
    }
}

/// References are equal when they reference the same RN, resolved or not.
impl<T> PartialEq for Ref<T> {
    fn eq(&self, other: &Self) -> bool {
        self.rn == other.rn
    }
}

impl<T> Eq for Ref<T> {}

impl<T: fmt::Debug> fmt::Debug for Ref<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Ref");
        s.field("rn", &self.rn.as_str());
        match &self.target {
            Some(target) => s.field("resolved", &target.data),
            None => s.field("resolved", &None::<()>),
        };
        s.finish()
    }
}

impl RefState {
    fn new(stored: BeforeImage) -> Self {
        RefState {
            changed: AtomicBool::new(false),
            stored: Mutex::new(stored),
        }
    }

    fn stored_image(&self) -> BeforeImage {
        match self.stored.lock() {
            Ok(stored) => stored.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

// ---- encoding: cascades -------------------------------------------------------------------

/// An update of a referenced item, found while encoding the item that holds the reference.
#[derive(Debug)]
pub(crate) struct Cascade {
    /// The referenced item.
    pub(crate) rn: Rn,
    /// Its new data.
    pub(crate) fields: Arc<[Field]>,
    /// Its data as stored before.
    pub(crate) before: BeforeImage,
    state: Arc<RefState>,
}

impl Cascade {
    /// Records that the cascade was stored: the reference is unchanged again, and what was
    /// written is the before-image of its next cascade.
    pub(crate) fn settle(self) {
        let written = BeforeImage::Fields(self.fields);
        match self.state.stored.lock() {
            Ok(mut stored) => *stored = written,
            Err(poisoned) => *poisoned.into_inner() = written,
        }
        self.state.changed.store(false, Ordering::Relaxed);
    }
}

thread_local! {
    static CASCADES: super::collect::Slot<Cascade> = const { RefCell::new(None) };
}

/// Runs `encode` with a cascade collector in scope and returns what it collected: every
/// resolved, changed reference met while serializing (nested ones too, inner first).
pub(crate) fn collect_cascades<R>(encode: impl FnOnce() -> R) -> (R, Vec<Cascade>) {
    super::collect::collect(&CASCADES, encode)
}

impl<T: Serialize> Serialize for Ref<T> {
    /// Serializes as the RN string (an RN reference column to korm's encoder). Inside a korm
    /// write, a resolved reference changed through [`Ref::resolved_mut`] also records a
    /// cascaded update of the referenced item.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(target) = &self.target
            && target.state.changed.load(Ordering::Relaxed)
            && super::collect::collecting(&CASCADES)
        {
            let fields = encode(&target.data)
                .map_err(|e| S::Error::custom(format!("the referenced item {} : {e}", self.rn)))?;
            let cascade = Cascade {
                rn: self.rn.untyped(),
                fields: fields.into(),
                before: target.state.stored_image(),
                state: Arc::clone(&target.state),
            };
            super::collect::report(&CASCADES, |found| found.push(cascade));
        }
        self.rn.serialize(serializer)
    }
}

// ---- decoding: resolution ------------------------------------------------------------------

/// A map keyed by RN text, hashed with foldhash (seeded per process): resolving references
/// looks RNs up a few times per reference.
pub(crate) type RnMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// The rows a resolution fetched: `levels[d]` holds the items referenced `d + 1` hops away
/// from the items being decoded, by RN text.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    pub(crate) levels: Vec<RnMap<(Rn, Arc<StoredRow>)>>,
}

impl Resolved {
    /// Whether nothing was resolved.
    pub(crate) fn is_empty(&self) -> bool {
        self.levels.iter().all(RnMap::is_empty)
    }
}

struct DecodeScope {
    resolved: Arc<Resolved>,
    depth: usize,
    /// Referenced rows decoded so far for this item, and their text: see [`spend`].
    decoded: usize,
    bytes: usize,
}

/// How many referenced rows one item's decode may decode, and how much of their text: each
/// occurrence of a resolved reference decodes its row (and its references, down the paths),
/// so an item holding k references to one item over d levels decodes k^d rows; a hostile
/// graph (an item listing itself a thousand times, resolved three levels deep) would run for
/// hours and exhaust memory.
const MAX_RESOLVED_DECODES: usize = 100_000;
/// See [`MAX_RESOLVED_DECODES`].
const MAX_RESOLVED_BYTES: usize = 64 << 20;

/// Counts one more referenced row of `bytes` of text against the item's budget; `Err` says
/// what was exceeded.
fn spend(bytes: usize) -> Result<(), String> {
    RESOLVING.with(|r| {
        let mut scope = r.borrow_mut();
        let Some(scope) = scope.as_mut() else {
            return Ok(());
        };
        scope.decoded += 1;
        scope.bytes = scope.bytes.saturating_add(bytes);
        if scope.decoded > MAX_RESOLVED_DECODES || scope.bytes > MAX_RESOLVED_BYTES {
            return Err(format!(
                "its resolved references decode more than {MAX_RESOLVED_DECODES} items or \
                 {} MiB (each occurrence of a reference decodes its item again: resolve \
                 fewer levels of a graph whose items repeat)",
                MAX_RESOLVED_BYTES >> 20
            ));
        }
        Ok(())
    })
}

thread_local! {
    static RESOLVING: RefCell<Option<DecodeScope>> = const { RefCell::new(None) };
}

/// Runs `decode` with `resolved` in scope: references met at the top level of the decoded
/// item whose RNs are in `resolved.levels[0]` decode their referenced row, and so on down.
pub(crate) fn with_resolved<R>(resolved: &Arc<Resolved>, decode: impl FnOnce() -> R) -> R {
    struct Restore(Option<DecodeScope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            RESOLVING.with(|r| *r.borrow_mut() = outer);
        }
    }
    let scope = DecodeScope {
        resolved: Arc::clone(resolved),
        depth: 0,
        decoded: 0,
        bytes: 0,
    };
    let _restore = Restore(RESOLVING.with(|r| r.borrow_mut().replace(scope)));
    decode()
}

/// The RN and row resolved for `rn` at the current depth, and that depth.
fn resolved_row(rn: &str) -> Option<(Rn, Arc<StoredRow>, usize)> {
    RESOLVING.with(|r| {
        let scope = r.borrow();
        let scope = scope.as_ref()?;
        let (parsed, row) = scope.resolved.levels.get(scope.depth)?.get(rn)?;
        Some((parsed.clone(), Arc::clone(row), scope.depth))
    })
}

fn set_depth(depth: usize) {
    RESOLVING.with(|r| {
        if let Some(scope) = r.borrow_mut().as_mut() {
            scope.depth = depth;
        }
    });
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Ref<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(RefVisitor(std::marker::PhantomData))
    }
}

/// Reads a reference from its RN string: one the resolution fetched reuses the RN parsed
/// then, and decodes the row.
struct RefVisitor<T>(std::marker::PhantomData<fn() -> T>);

impl<T: DeserializeOwned> serde::de::Visitor<'_> for RefVisitor<T> {
    type Value = Ref<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an rn string such as [rn]:users:freetier:<uuid>")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Ref<T>, E> {
        match resolved_row(text) {
            Some((rn, row, depth)) => resolve_ref(rn.cast(), &row, depth),
            None => Rn::parse(text).map(Ref::new).map_err(E::custom),
        }
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Ref<T>, E> {
        match resolved_row(&text) {
            Some((rn, row, depth)) => resolve_ref(rn.cast(), &row, depth),
            None => Rn::parse_owned(text).map(Ref::new).map_err(E::custom),
        }
    }
}

fn resolve_ref<T: DeserializeOwned, E: serde::de::Error>(
    rn: Rn<T>,
    row: &Arc<StoredRow>,
    depth: usize,
) -> Result<Ref<T>, E> {
    {
        spend(row.text_len()).map_err(E::custom)?;
        let row = Arc::clone(row);
        set_depth(depth + 1);
        let data = row.read::<T>();
        set_depth(depth);
        let data = data.map_err(|e| {
            E::custom(format!(
                "the referenced item {rn} does not fit its model: {e}"
            ))
        })?;
        Ok(Ref {
            rn,
            target: Some(Box::new(Target {
                data,
                state: Arc::new(RefState::new(BeforeImage::Shared(row))),
            })),
        })
    }
}
