//! Typed collections: a model bound to its place (layer, namespace, kind), so items are
//! created, loaded and queried without writing RN strings.

use std::fmt;

use super::{FloatingItem, Item, Load, Model, Query, item};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::rn::Rn;

/// A model that knows its collection: implement it once, and
/// [`collection`](crate::collection) gives a handle without RN strings.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct User { username: String }
///
/// impl korm::Collected for User {
///     const LAYER: &'static str = "userdb";
///     const NAMESPACE: &'static str = "users";
///     const KIND: &'static str = "freetier";
/// }
/// ```
pub trait Collected: Model {
    /// The layer the items live in (a name given to
    /// [`PoolBuilder::layer`](crate::PoolBuilder::layer)).
    const LAYER: &'static str;
    /// The namespace (`[a-z][a-z0-9]*`).
    const NAMESPACE: &'static str;
    /// The kind (`[a-z][a-z0-9]*`).
    const KIND: &'static str;
}

/// Items of model `T` in one collection of one layer (see [`collection`](crate::collection)
/// and [`collection_at`](crate::collection_at)). Cheap to clone.
pub struct Collection<T> {
    pool: Pool,
    rn: Rn<T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection {
            pool: self.pool.clone(),
            rn: self.rn.clone(),
        }
    }
}

impl<T> fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Collection")
            .field(&self.rn.as_str())
            .finish()
    }
}

/// The collection of a [`Collected`] model in `pool`.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Car { make: String, year: i64 }
///
/// impl korm::Collected for Car {
///     const LAYER: &'static str = "cardb";
///     const NAMESPACE: &'static str = "cars";
///     const KIND: &'static str = "suv";
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> korm::Result<()> {
/// let pool = korm::pool().layer("cardb", korm::layers::sqlite_memory()).open().await?;
/// let cars = korm::collection::<Car>(&pool)?;
/// let car = cars.create(Car { make: "Citroen".into(), year: 2015 }).await?;
/// let again = cars.load(car.rn().id().unwrap())?.get().await?;
/// assert_eq!(again.data().make, "Citroen");
/// let recent = cars.query().filter(korm::gt("year", 2010)).get().await?;
/// assert_eq!(recent.len(), 1);
/// assert_eq!(cars.rn(), "[rn][from::cardb]:cars:suv:*");
/// # pool.close().await;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidRn`] when the namespace or kind break the naming rule, and
/// [`Error::UnknownLayer`] when the pool has no layer of that name: a typo fails here, at
/// once, instead of creating a new table.
pub fn collection<T: Collected>(pool: &Pool) -> Result<Collection<T>> {
    collection_at(pool, T::LAYER, T::NAMESPACE, T::KIND)
}

/// The collection `namespace:kind` of layer `layer`, for items of model `T`, without
/// implementing [`Collected`] (the same model stored in several places, say).
///
/// # Errors
/// As [`collection`].
pub fn collection_at<T: Model>(
    pool: &Pool,
    layer: &str,
    namespace: &str,
    kind: &str,
) -> Result<Collection<T>> {
    let rn: Rn<T> = Rn::collection_of(namespace, kind)?
        .with_layer(layer)?
        .cast();
    pool.route(&rn)?;
    Ok(Collection {
        pool: pool.clone(),
        rn,
    })
}

impl<T: Model> Collection<T> {
    /// The collection's RN (`[rn][from::layer]:namespace:kind:*`).
    pub fn rn(&self) -> &Rn<T> {
        &self.rn
    }

    /// A new item with a fresh id, not stored yet (create it, or add it to a
    /// [`tx`](crate::tx)).
    pub fn new_item(&self, data: T) -> FloatingItem<T> {
        FloatingItem {
            pool: self.pool.clone(),
            rn: self.rn.with_valid_id(&crate::rn::new_id().to_string()),
            data,
        }
    }

    /// A new item with a fresh id, stored.
    ///
    /// # Errors
    /// As [`FloatingItem::create`].
    pub async fn create(&self, data: T) -> Result<Item<T>> {
        self.new_item(data).create().await
    }

    /// Loads the item with this id (a UUID, as text or as [`uuid::Uuid`]).
    ///
    /// # Errors
    /// [`Error::InvalidRn`] when `id` is not a UUIDv4.
    pub fn load(&self, id: impl fmt::Display) -> Result<Load<T>> {
        let id = id.to_string();
        let uuid = uuid::Uuid::parse_str(&id).map_err(|_| Error::InvalidRn {
            input: crate::error::clip(&id),
            part: "id".to_owned(),
            reason: "an item id is a UUID".to_owned(),
        })?;
        Ok(item::<T>(&self.pool).load(self.rn.with_id(uuid)?))
    }

    /// A query over the collection.
    pub fn query(&self) -> Query<T> {
        item::<T>(&self.pool).query(self.rn.clone())
    }

    /// Declares an index on a JSON path of the collection's items; see
    /// [`declare_index`](crate::declare_index).
    ///
    /// # Errors
    /// As [`declare_index`](crate::declare_index).
    pub async fn declare_index(&self, path: &str, kind: crate::IndexKind) -> Result<()> {
        crate::declare_index(&self.pool, &self.rn, path, kind).await
    }
}
