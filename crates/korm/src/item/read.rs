//! The one read path: queries over a collection and loads by RN.

use std::fmt;

use serde_json::Value;

use super::{Item, Model};
use crate::error::{Error, Result};
use crate::layer::Select;
use crate::model::{Cell, StoredRow};
use crate::pool::Pool;
use crate::query::{FieldPath, Filter, PathStep, SortOrder, memory};
use crate::rn::Rn;

/// A query over one collection, built with [`ItemHandle::query`](super::ItemHandle::query).
///
/// Options are checked when the query runs: giving the same option twice is an error
/// ([`Error::InvalidOption`]), never a silent override.
#[must_use = "a query does nothing until get(), first() or first_n() is awaited"]
pub struct Query<T> {
    pool: Pool,
    rn: Rn<T>,
    filter: Option<Filter>,
    sort: Vec<(String, SortOrder)>,
    stringify_sort: bool,
    problem: Option<Error>,
}

impl<T> fmt::Debug for Query<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("rn", &self.rn)
            .field("filter", &self.filter)
            .field("sort", &self.sort)
            .finish_non_exhaustive()
    }
}

impl<T: Model> Query<T> {
    pub(super) fn new(pool: Pool, rn: Rn<T>) -> Self {
        Query {
            pool,
            rn,
            filter: None,
            sort: Vec::new(),
            stringify_sort: false,
            problem: None,
        }
    }

    fn reject(&mut self, option: &'static str, reason: &str) {
        if self.problem.is_none() {
            self.problem = Some(Error::InvalidOption {
                option,
                reason: reason.to_owned(),
            });
        }
    }

    /// Keeps the items matching `filter` (see [`crate::query`] for the language). One filter
    /// per query: combine several with [`and`](crate::and).
    pub fn filter(mut self, filter: Filter) -> Self {
        if self.filter.is_some() {
            self.reject("filter", "given twice; combine filters with and(...)");
        }
        self.filter = Some(filter);
        self
    }

    /// Sorts by the value at `path` (`year`, `meta.rank`, `tags[0]`). Ascending puts nulls
    /// last, descending first. Several calls sort by several keys, in order; the same path
    /// twice is an error, and so are `[*]` wildcards. Items tie-break by id, so the order is
    /// stable.
    pub fn sort_by(mut self, path: &str, order: SortOrder) -> Self {
        if self.sort.iter().any(|(p, _)| p == path) {
            self.reject("sort_by", "the same path is given twice");
        }
        self.sort.push((path.to_owned(), order));
        self
    }

    /// Lets sort keys that hold objects or arrays sort by their JSON text. Without it such a
    /// key is [`Error::NonScalarSort`].
    pub fn allow_stringified_sort(mut self) -> Self {
        if self.stringify_sort {
            self.reject("allow_stringified_sort", "given twice");
        }
        self.stringify_sort = true;
        self
    }

    /// Runs the query and returns every matching item.
    ///
    /// # Errors
    /// [`Error::WrongRnForm`] unless the RN is a collection, routing errors, invalid options,
    /// paths or filters, [`Error::NonScalarSort`], [`Error::Decode`] when a stored row does not
    /// fit the model, and database errors.
    pub async fn get(self) -> Result<Vec<Item<T>>> {
        self.run(None).await
    }

    /// The first matching item.
    ///
    /// # Errors
    /// [`Error::NoMatch`] when nothing matches, and those of [`get`](Query::get).
    pub async fn first(self) -> Result<Item<T>> {
        let rn = self.rn.to_string();
        self.run(Some(1))
            .await?
            .into_iter()
            .next()
            .ok_or(Error::NoMatch { rn })
    }

    /// Up to `n` matching items.
    ///
    /// # Errors
    /// As [`get`](Query::get).
    pub async fn first_n(self, n: u64) -> Result<Vec<Item<T>>> {
        self.run(Some(n)).await
    }

    async fn run(self, limit: Option<u64>) -> Result<Vec<Item<T>>> {
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        if !self.rn.is_collection() {
            return Err(Error::WrongRnForm {
                rn: self.rn.to_string(),
                reason: "a query needs a collection rn (namespace:kind:*)".to_owned(),
            });
        }
        if let Some(filter) = &self.filter {
            filter.validate()?;
        }
        let table = collection_table(&self.rn)?;
        let layer = self.pool.route(&self.rn)?;
        let sort_paths = self
            .sort
            .iter()
            .map(|(path, _)| FieldPath::parse(path))
            .collect::<Result<Vec<_>>>()?;
        // Filters on encrypted fields are evaluated in memory after decryption (see
        // query::memory); then the limit applies after them, not in SQL.
        let (filter, residual) = match self.filter {
            Some(filter) => match layer.table_schema(&table).await? {
                Some(schema) => memory::split(filter, &schema)?,
                None => (Some(filter), None),
            },
            None => (None, None),
        };
        let rows = layer
            .select(
                &table,
                Select {
                    filter,
                    sort: self.sort,
                    limit: if residual.is_some() { None } else { limit },
                },
            )
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            if limit.is_some_and(|n| items.len() as u64 >= n) {
                break;
            }
            let rn = item_rn(&self.rn, &row.id)?;
            if let Some(residual) = &residual
                && !residual.matches(rn.as_str(), &row)?
            {
                continue;
            }
            if !self.stringify_sort {
                for path in &sort_paths {
                    if let Some(found) = non_scalar_at(&row, path) {
                        return Err(Error::NonScalarSort {
                            path: path.to_string(),
                            rn: rn.to_string(),
                            found,
                        });
                    }
                }
            }
            items.push(Item::from_stored(self.pool.clone(), rn, row)?);
        }
        Ok(items)
    }
}

/// A load of one item by RN, built with [`ItemHandle::load`](super::ItemHandle::load). Only
/// options that make sense for one item exist on it, so query-only options are type errors.
#[must_use = "a load does nothing until get() or get_optional() is awaited"]
pub struct Load<T> {
    pool: Pool,
    rn: Rn<T>,
}

impl<T> fmt::Debug for Load<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Load")
            .field("rn", &self.rn)
            .finish_non_exhaustive()
    }
}

impl<T: Model> Load<T> {
    pub(super) fn new(pool: Pool, rn: Rn<T>) -> Self {
        Load { pool, rn }
    }

    /// The item.
    ///
    /// # Errors
    /// [`Error::NotFound`] when nothing is stored at the RN, [`Error::WrongRnForm`] unless it
    /// is an item RN, routing errors, [`Error::Decode`] and database errors.
    pub async fn get(self) -> Result<Item<T>> {
        let rn = self.rn.clone();
        self.get_optional()
            .await?
            .ok_or_else(|| Error::NotFound { rn: rn.to_string() })
    }

    /// The item, or `None` when nothing is stored at the RN.
    ///
    /// # Errors
    /// As [`get`](Load::get), without `NotFound`.
    pub async fn get_optional(self) -> Result<Option<Item<T>>> {
        let (table, id) = match (self.rn.table_name(), self.rn.id()) {
            (Some(table), Some(id)) if self.rn.is_item() => (table, id.to_owned()),
            _ => {
                return Err(Error::WrongRnForm {
                    rn: self.rn.to_string(),
                    reason: "loading needs an item rn (namespace:kind:<uuid>)".to_owned(),
                });
            }
        };
        let layer = self.pool.route(&self.rn)?;
        let row = layer.fetch(&table, vec![id]).await?.into_iter().next();
        row.map(|row| Item::from_stored(self.pool, self.rn, row))
            .transpose()
    }
}

fn collection_table<T>(rn: &Rn<T>) -> Result<String> {
    rn.table_name().ok_or_else(|| Error::WrongRnForm {
        rn: rn.to_string(),
        reason: "a query needs a collection rn (namespace:kind:*)".to_owned(),
    })
}

/// The RN of a row found in a collection: the collection's RN (mods kept) with the row's id
/// exactly as stored, so it loads and commits under the RN it was written with.
fn item_rn<T>(collection: &Rn<T>, id: &str) -> Result<Rn<T>> {
    collection.with_id_text(id).map_err(|_| Error::Decode {
        rn: collection.to_string(),
        reason: "a stored rnId is not a UUIDv4".to_owned(),
    })
}

/// If the value at `path` is an object or an array, what it is. Only JSON columns can hold
/// one; a key into one is parsed only here, for sort paths.
fn non_scalar_at(row: &StoredRow, path: &FieldPath) -> Option<&'static str> {
    let Some(Cell::Json(text)) = row.cell(path.column()) else {
        return None;
    };
    let kind = |value: &Value| match value {
        Value::Object(_) => Some("an object"),
        Value::Array(_) => Some("an array"),
        _ => None,
    };
    if path.steps().is_empty() {
        return match text.trim_start().as_bytes().first() {
            Some(b'{') => Some("an object"),
            Some(b'[') => Some("an array"),
            _ => None,
        };
    }
    let root: Value = serde_json::from_str(text).ok()?;
    let mut value = &root;
    for step in path.steps() {
        value = match (step, value) {
            (PathStep::Key(key), Value::Object(map)) => map.get(key)?,
            (PathStep::Index(i), Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    kind(value)
}
