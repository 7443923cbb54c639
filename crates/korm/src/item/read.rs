//! The one read path: queries over a collection and loads by RN.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::{Item, ItemRn, Model};
use crate::error::{Error, Result};
use crate::layer::Select;
use crate::model::{Cell, Resolved, StoredRow};
use crate::pool::Pool;
use crate::query::{FieldPath, Filter, PathStep, SortOrder, memory};
use crate::resolve::{self, ResolveOptions, ResolvePath};
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
    resolve: ResolveOptions,
    problem: Option<Error>,
}

impl<T> fmt::Debug for Query<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("rn", &self.rn)
            .field("filter", &self.filter)
            .field("sort", &self.sort)
            .field("resolve", &self.resolve.paths)
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
            resolve: ResolveOptions::default(),
            problem: None,
        }
    }

    /// Resolves references in the items found, along these paths (X1): `owner` (the
    /// reference in field `owner`), `owner.*` (every direct reference of the owner),
    /// `owner.*.*` (two levels), `owner.addresses[*].city`, `previousOwners[*]`,
    /// `previousOwners[0]`. A resolved [`Ref`](crate::Ref) gives the referenced data.
    ///
    /// Each hop is batched: the references of all items found are fetched with one
    /// statement per layer and table (per chunk of ids), never one per item. Keys are
    /// `[A-Za-z_][A-Za-z0-9_]*` or `*`; a wildcard skips keys in the data that are not such
    /// names. A missing referenced item is left unresolved unless [`strict`](Query::strict).
    pub fn resolve<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        set_paths(&mut self.resolve, &mut self.problem, paths);
        self
    }

    /// Makes a missing referenced item (or a reference to a layer the pool does not have) an
    /// [`Error::MissingReference`] naming its RN, instead of a reference left unresolved
    /// (K3).
    pub fn strict(mut self) -> Self {
        set_strict(&mut self.resolve, &mut self.problem);
        self
    }

    fn reject(&mut self, option: &'static str, reason: &str) {
        reject(&mut self.problem, option, reason);
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
        self.run(None).await?.into_iter().collect()
    }

    /// The matching items, each read on its own: an item whose stored data can not be read
    /// (written by another program, tampered with) is an `Err` naming its RN in its place,
    /// and every other item is `Ok`. What [`get`](Query::get) reports as one error, this
    /// reports per item, so one bad row does not hide a collection.
    ///
    /// # Errors
    /// The query's own errors (invalid options, routing, database errors); per item,
    /// [`Error::Decode`] and [`Error::NonScalarSort`].
    pub async fn get_each(self) -> Result<Vec<Result<Item<T>>>> {
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
            .ok_or(Error::NoMatch { rn })?
    }

    /// Up to `n` matching items.
    ///
    /// # Errors
    /// As [`get`](Query::get).
    pub async fn first_n(self, n: u64) -> Result<Vec<Item<T>>> {
        self.run(Some(n)).await?.into_iter().collect()
    }

    /// The query's items, each read on its own.
    async fn run(self, limit: Option<u64>) -> Result<Vec<Result<Item<T>>>> {
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        if !self.rn.is_collection() {
            return Err(Error::WrongRnForm {
                rn: self.rn.to_string(),
                reason: "a query needs a collection rn (namespace:kind:*)".to_owned(),
            });
        }
        let paths = self.resolve.parse()?;
        let sort_paths = self
            .sort
            .iter()
            .map(|(path, _)| FieldPath::parse(path))
            .collect::<Result<Vec<_>>>()?;
        let rows = select_rows(
            self.pool.clone(),
            self.rn.untyped(),
            self.filter,
            (
                self.sort,
                SortRules {
                    stringify: self.stringify_sort,
                    strict: self.resolve.strict,
                },
            ),
            limit,
        )
        .await?;
        let resolved = resolve_rows(&self.pool, &rows, &paths, self.resolve.strict).await?;
        let item = |row: StoredRow| {
            check_item_id(&self.rn, row.id())?;
            if !self.stringify_sort {
                for path in &sort_paths {
                    if let Some(found) = non_scalar_at(&row, path) {
                        return Err(Error::NonScalarSort {
                            path: path.to_string(),
                            rn: self.rn.with_valid_id(row.id()).to_string(),
                            found,
                        });
                    }
                }
            }
            let rn = ItemRn::lazy(self.rn.clone(), row.id());
            Item::from_stored_resolved(self.pool.clone(), rn, row, resolved.as_ref())
        };
        Ok(rows.into_iter().map(item).collect())
    }
}

/// Keeps the first invalid option of a query or load, reported when it runs.
fn reject(problem: &mut Option<Error>, option: &'static str, reason: &str) {
    if problem.is_none() {
        *problem = Some(Error::InvalidOption {
            option,
            reason: reason.to_owned(),
        });
    }
}

/// Sets the resolve paths of a query or a load (once).
fn set_paths<S: Into<String>>(
    options: &mut ResolveOptions,
    problem: &mut Option<Error>,
    paths: impl IntoIterator<Item = S>,
) {
    if !options.paths.is_empty() {
        reject(
            problem,
            "resolve",
            "given twice; pass every path in one call",
        );
    }
    options.paths = paths.into_iter().map(Into::into).collect();
}

/// Makes a query or a load strict (once).
fn set_strict(options: &mut ResolveOptions, problem: &mut Option<Error>) {
    if options.strict {
        reject(problem, "strict", "given twice");
    }
    options.strict = true;
}

/// Resolves `paths` from `rows`; `None` when there is nothing to resolve.
async fn resolve_rows(
    pool: &Pool,
    rows: &[StoredRow],
    paths: &[ResolvePath],
    strict: bool,
) -> Result<Option<Arc<Resolved>>> {
    if paths.is_empty() || rows.is_empty() {
        return Ok(None);
    }
    let roots: Vec<&StoredRow> = rows.iter().collect();
    let resolved = resolve::resolve(pool, &roots, paths, strict).await?;
    Ok((!resolved.is_empty()).then(|| Arc::new(resolved)))
}

/// The read path below the typed API: the rows of `collection` matching `filter`, sorted,
/// limited. Filters through references are planned into SQL (a semi-join in the same
/// database, a list of matching RNs from another), filters on encrypted fields are evaluated
/// in memory, and sorts through references are done in memory after one batched fetch of
/// the referenced items.
///
/// `sort` is the sort keys, and how they read values: see [`SortRules`].
pub(crate) fn select_rows(
    pool: Pool,
    collection: Rn,
    filter: Option<Filter>,
    sort: (Vec<(String, SortOrder)>, SortRules),
    limit: Option<u64>,
) -> resolve::BoxFuture<'static, Result<Vec<StoredRow>>> {
    Box::pin(select_rows_inner(pool, collection, filter, sort, limit))
}

/// How sort keys read values.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SortRules {
    /// Objects and arrays sort as their JSON text (else they are an error).
    pub(crate) stringify: bool,
    /// A sort key through a reference that is missing is [`Error::MissingReference`] (else
    /// it sorts as null).
    pub(crate) strict: bool,
}

async fn select_rows_inner(
    pool: Pool,
    collection: Rn,
    filter: Option<Filter>,
    (sort, rules): (Vec<(String, SortOrder)>, SortRules),
    limit: Option<u64>,
) -> Result<Vec<StoredRow>> {
    if let Some(filter) = &filter {
        filter.validate()?;
    }
    let table = collection_table(&collection)?;
    let layer = pool.route(&collection)?.clone();
    let sort_paths = sort
        .iter()
        .map(|(path, _)| FieldPath::parse(path))
        .collect::<Result<Vec<_>>>()?;
    let needs_schema = filter.is_some() || sort_paths.iter().any(|p| !p.steps().is_empty());
    let schema = if needs_schema {
        layer.table_schema(&table).await?
    } else {
        None
    };
    let (filter, residual) = match (filter, &schema) {
        (Some(filter), Some(schema)) => {
            let planned = if resolve::touches_reference(&filter, schema) {
                // A filter evaluated (partly) in memory gets RN lists, which memory can test;
                // otherwise references into the same database become semi-joins.
                let semi_join = !memory::reads_encrypted(&filter, schema)?;
                resolve::plan_filter(&pool, &layer, schema, filter, semi_join).await?
            } else {
                filter
            };
            memory::split(planned, schema)?
        }
        (filter, _) => (filter, None),
    };
    let sort_in_memory = schema.as_ref().is_some_and(|schema| {
        sort_paths
            .iter()
            .any(|p| resolve::through_reference(schema, p))
    });
    let in_memory_limit = residual.is_some() || sort_in_memory;
    let rows = layer
        .select(
            &table,
            Select {
                filter,
                sort: if sort_in_memory {
                    Vec::new()
                } else {
                    sort.clone()
                },
                limit: if in_memory_limit { None } else { limit },
            },
        )
        .await?;
    let mut rows = match &residual {
        Some(residual) => {
            let mut kept = Vec::with_capacity(rows.len());
            for row in rows {
                let rn = format!("{}{}", collection_prefix(&collection), row.id());
                if crate::crypto::at_boundary(pool.ring(), || residual.matches(&rn, &row))? {
                    kept.push(row);
                }
            }
            kept
        }
        None => rows,
    };
    if sort_in_memory {
        rows = sort_rows(&pool, rows, &sort, &sort_paths, schema.as_ref(), rules).await?;
    }
    if let Some(n) = limit
        && in_memory_limit
    {
        rows.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    Ok(rows)
}

/// The RN text of a collection without its final `*`.
fn collection_prefix(collection: &Rn) -> &str {
    let text = collection.as_str();
    text.strip_suffix('*').unwrap_or(text)
}

/// Sorts rows in memory by keys some of which go through references, with the order SQL
/// gives: by type (booleans, numbers, text, objects and arrays), nulls last ascending and
/// first descending, ties by id.
async fn sort_rows(
    pool: &Pool,
    rows: Vec<StoredRow>,
    sort: &[(String, SortOrder)],
    paths: &[FieldPath],
    schema: Option<&crate::layer::schema::TableSchema>,
    rules: SortRules,
) -> Result<Vec<StoredRow>> {
    let mut keys: Vec<Vec<Option<Value>>> = Vec::with_capacity(paths.len());
    for path in paths {
        if schema.is_some_and(|s| resolve::through_reference(s, path)) {
            let all: Vec<&StoredRow> = rows.iter().collect();
            keys.push(resolve::sort_keys_through_reference(pool, all, path, rules).await?);
        } else {
            keys.push(
                rows.iter()
                    .map(|row| resolve::value_at(row, path))
                    .collect(),
            );
        }
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        for (k, (_, direction)) in sort.iter().enumerate() {
            let ordering = compare_keys(keys[k][a].as_ref(), keys[k][b].as_ref(), *direction);
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        rows[a].id().cmp(rows[b].id())
    });
    let mut slots: Vec<Option<StoredRow>> = rows.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

fn compare_keys(a: Option<&Value>, b: Option<&Value>, direction: SortOrder) -> Ordering {
    let a = a.filter(|v| !v.is_null());
    let b = b.filter(|v| !v.is_null());
    let (a, b) = match (a, b) {
        (None, None) => return Ordering::Equal,
        // Nulls last ascending, first descending: the same place either way round.
        (None, Some(_)) => {
            return match direction {
                SortOrder::Asc => Ordering::Greater,
                SortOrder::Desc => Ordering::Less,
            };
        }
        (Some(_), None) => {
            return match direction {
                SortOrder::Asc => Ordering::Less,
                SortOrder::Desc => Ordering::Greater,
            };
        }
        (Some(a), Some(b)) => (a, b),
    };
    let rank = |v: &Value| match v {
        Value::Bool(_) => 0,
        Value::Number(_) => 1,
        Value::String(_) => 2,
        _ => 3,
    };
    let ordering = rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x
                .as_f64()
                .zip(y.as_f64())
                .and_then(|(x, y)| x.partial_cmp(&y))
                .unwrap_or(Ordering::Equal),
        },
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (x, y) => x.to_string().cmp(&y.to_string()),
    });
    match direction {
        SortOrder::Asc => ordering,
        SortOrder::Desc => ordering.reverse(),
    }
}

/// A load of one item by RN, built with [`ItemHandle::load`](super::ItemHandle::load). Only
/// options that make sense for one item exist on it, so query-only options are type errors.
#[must_use = "a load does nothing until get() or get_optional() is awaited"]
pub struct Load<T> {
    pool: Pool,
    rn: Rn<T>,
    resolve: ResolveOptions,
    problem: Option<Error>,
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
        Load {
            pool,
            rn,
            resolve: ResolveOptions::default(),
            problem: None,
        }
    }

    /// Resolves references of the item along these paths; see
    /// [`Query::resolve`](crate::Query::resolve).
    pub fn resolve<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        set_paths(&mut self.resolve, &mut self.problem, paths);
        self
    }

    /// Makes a missing referenced item an error; see [`Query::strict`](crate::Query::strict).
    pub fn strict(mut self) -> Self {
        set_strict(&mut self.resolve, &mut self.problem);
        self
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
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        let paths = self.resolve.parse()?;
        let (table, id) = match (self.rn.table_name_shared(), self.rn.id()) {
            (Some(table), Some(id)) if self.rn.is_item() => (table, id),
            _ => {
                return Err(Error::WrongRnForm {
                    rn: self.rn.to_string(),
                    reason: "loading needs an item rn (namespace:kind:<uuid>)".to_owned(),
                });
            }
        };
        let layer = self.pool.route(&self.rn)?;
        let found = match layer.fetch_one_now(&table, id) {
            Some(found) => found?,
            None => layer
                .fetch(&table, vec![id.to_owned()])
                .await?
                .into_iter()
                .next(),
        };
        let Some(row) = found else {
            return Ok(None);
        };
        let rows = [row];
        let resolved = resolve_rows(&self.pool, &rows, &paths, self.resolve.strict).await?;
        let [row] = rows;
        Item::from_stored_resolved(self.pool, ItemRn::new(self.rn), row, resolved.as_ref())
            .map(Some)
    }
}

fn collection_table(rn: &Rn) -> Result<String> {
    rn.table_name().ok_or_else(|| Error::WrongRnForm {
        rn: rn.to_string(),
        reason: "a query needs a collection rn (namespace:kind:*)".to_owned(),
    })
}

/// Checks the id of a row found in a collection. Its RN is the collection's RN (mods kept)
/// with the row's id exactly as stored, so it loads and commits under the RN it was written
/// with.
fn check_item_id<T>(collection: &Rn<T>, id: &str) -> Result<()> {
    collection.check_id_text(id).map_err(|_| Error::Decode {
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
