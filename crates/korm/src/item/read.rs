//! The one read path: queries over a collection and loads by RN.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::{Item, ItemRn, Model};
use crate::error::{Error, Result};
use futures_util::stream::BoxStream;

use crate::layer::Select;
use crate::model::{Cell, Resolved, StoredRow};
use crate::pool::Pool;
use crate::query::dialect::Window;
use crate::query::{FieldPath, Filter, PathStep, SortOrder, memory};
use crate::resolve::{self, ResolveOptions, ResolvePath};
use crate::rn::Rn;

/// A query over one collection, built with [`ItemHandle::query`](super::ItemHandle::query).
///
/// Options are checked when the query runs: giving the same option twice is an error
/// ([`Error::InvalidOption`]), never a silent override.
#[must_use = "a query does nothing until it is run (get(), first(), page(), stream(), count(), ...)"]
pub struct Query<T> {
    pool: Pool,
    rn: Rn<T>,
    filter: Option<Filter>,
    sort: Vec<(String, SortOrder)>,
    stringify_sort: bool,
    resolve: ResolveOptions,
    limit: Option<u64>,
    offset: Option<u64>,
    after: Option<Cursor>,
    problem: Option<Error>,
}

impl<T> fmt::Debug for Query<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("rn", &self.rn)
            .field("filter", &self.filter)
            .field("sort", &self.sort)
            .field("resolve", &self.resolve.paths)
            .field("limit", &self.limit)
            .field("offset", &self.offset)
            .field("after", &self.after)
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
            limit: None,
            offset: None,
            after: None,
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

    /// Keeps the items matching `filter` (see [`crate::query`] for the language). Calling it
    /// again keeps the items matching both (the filters are ANDed), so optional conditions
    /// compose:
    ///
    /// ```no_run
    /// # async fn f(q: korm::Query<serde_json::Value>, tier: Option<&str>) -> korm::Result<()> {
    /// let mut q = q.filter(korm::gt("age", 30));
    /// if let Some(tier) = tier {
    ///     q = q.filter(korm::eq("meta.tier", tier));
    /// }
    /// # let _ = q.get().await?; Ok(()) }
    /// ```
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(match self.filter.take() {
            Some(before) => before.and(filter),
            None => filter,
        });
        self
    }

    /// Returns at most `n` items (the first `n` in the query's order). Giving it twice is an
    /// error.
    pub fn limit(mut self, n: u64) -> Self {
        if self.limit.is_some() {
            self.reject("limit", "given twice");
        }
        self.limit = Some(n);
        self
    }

    /// Skips the first `n` matching items. The items are then ordered by the sort keys and
    /// their id (by id alone without sort keys), so consecutive offsets never repeat or miss
    /// an item of an unchanged collection. Deep offsets read and skip every row before
    /// them: to walk a large collection, page with [`after`](Query::after) instead.
    pub fn offset(mut self, n: u64) -> Self {
        if self.offset.is_some() {
            self.reject("offset", "given twice");
        }
        self.offset = Some(n);
        self
    }

    /// Starts after the item a [`Cursor`] points at (keyset paging): the next page of a
    /// [`page`](Query::page) with the same filter and sort keys. The database finds the
    /// place through the sort keys and id, so a page deep into a collection costs what the
    /// first one costs (with the sort keys indexed, or without sort keys: the id is).
    ///
    /// A cursor made for other sort keys is [`Error::InvalidOption`] when the query runs.
    /// Sort keys through references and [`allow_stringified_sort`](Query::allow_stringified_sort)
    /// can not page this way.
    pub fn after(mut self, cursor: &Cursor) -> Self {
        if self.after.is_some() {
            self.reject("after", "given twice");
        }
        self.after = Some(cursor.clone());
        self
    }

    /// Sorts by the value at `path` (`year`, `meta.rank`, `tags[0]`). Ascending puts nulls
    /// last, descending first. Several calls sort by several keys, in order; the same path
    /// twice is an error, and so are `[*]` wildcards and more than
    /// [`MAX_SORT_KEYS`](crate::query::MAX_SORT_KEYS) keys. Items tie-break by id, so the
    /// order is stable.
    pub fn sort_by(mut self, path: &str, order: SortOrder) -> Self {
        if self.sort.len() >= crate::query::MAX_SORT_KEYS {
            self.reject(
                "sort_by",
                "more sort keys than a query takes (MAX_SORT_KEYS)",
            );
            return self;
        }
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

    /// Runs the query and returns every matching item (or the window
    /// [`limit`](Query::limit) and [`offset`](Query::offset) give).
    ///
    /// # Errors
    /// [`Error::WrongRnForm`] unless the RN is a collection, routing errors, invalid options,
    /// paths or filters, [`Error::NonScalarSort`], [`Error::Decode`] when a stored row does not
    /// fit the model, and database errors.
    pub async fn get(self) -> Result<Vec<Item<T>>> {
        self.run(None).await?.into_iter().collect()
    }

    /// How many items match (the filter, and [`after`](Query::after) when given), counted by
    /// the database (`SELECT COUNT(*)`), without reading them; a filter evaluated in memory
    /// (on an encrypted field) reads the rows to count them. Sort keys do not change a count;
    /// a [`limit`](Query::limit) or [`offset`](Query::offset) is [`Error::InvalidOption`].
    ///
    /// # Errors
    /// As [`get`](Query::get).
    pub async fn count(self) -> Result<u64> {
        if self.limit.is_some() || self.offset.is_some() {
            return Err(Error::InvalidOption {
                option: "count",
                reason: "count counts every match: limit and offset do not apply to it".into(),
            });
        }
        let span = tracing::debug_span!("korm.query", collection = %self.rn, count = true);
        let pool = self.pool.clone();
        let count = async move { self.scan()?.count().await };
        traced_read(span, &pool, count, |_| 1).await
    }

    /// The database's plan for the query's statement, as it describes it (`EXPLAIN QUERY
    /// PLAN` on SQLite, `EXPLAIN` on PostgreSQL and MariaDB), one line per step: to see
    /// whether a filter uses a [declared index](crate::declare_index) or scans. Nothing is
    /// read; the parts of a filter korm evaluates in memory (encrypted fields) are not in it.
    ///
    /// # Errors
    /// As [`get`](Query::get).
    pub async fn explain(self) -> Result<String> {
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        let collection = self.rn.untyped();
        let table = collection_table(&collection)?;
        let layer = self.pool.route(&collection)?.clone();
        let filter = match (self.filter, &self.after) {
            (f, None) => f,
            (f, Some(cursor)) => {
                let (keys, id) = cursor.check(&self.sort)?;
                let after = keyset_filter(&self.sort, &keys, &id);
                Some(match f {
                    Some(f) => f.and(after),
                    None => after,
                })
            }
        };
        if let Some(filter) = &filter {
            filter.validate()?;
        }
        let Some(schema) = layer.table_schema(&table).await? else {
            return Ok(String::new());
        };
        let filter = match filter {
            Some(filter) => {
                let planned = if resolve::touches_reference(&filter, &schema) {
                    let semi_join = !memory::reads_encrypted(&filter, &schema)?;
                    resolve::plan_filter(&self.pool, &layer, &schema, filter, semi_join).await?
                } else {
                    filter
                };
                memory::split(planned, &schema)?.0
            }
            None => None,
        };
        layer
            .explain(
                &table,
                Select {
                    filter,
                    sort: self.sort,
                    limit: self.limit,
                    offset: self.offset,
                    ordered: self.offset.is_some() || self.after.is_some(),
                },
            )
            .await
    }

    /// The first matching item, or `None` when nothing matches.
    ///
    /// # Errors
    /// As [`get`](Query::get).
    pub async fn first_optional(self) -> Result<Option<Item<T>>> {
        self.run(Some(1)).await?.into_iter().next().transpose()
    }

    /// Up to `n` items from the start (or from [`after`](Query::after) a cursor), and the
    /// cursor of the next page: `None` when this page is the last. Pages are ordered by the
    /// sort keys then the id (by id without sort keys), and each page is found by keyset, so
    /// walking a collection page by page costs the same per page however deep.
    ///
    /// ```no_run
    /// # async fn f(q: impl Fn() -> korm::Query<serde_json::Value>) -> korm::Result<()> {
    /// let mut page = q().page(100).await?;
    /// while let Some(next) = page.next.take() {
    ///     page = q().after(&next).page(100).await?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`get`](Query::get); an [`after`](Query::after) cursor made for other sort keys is
    /// [`Error::InvalidOption`].
    pub async fn page(self, n: u64) -> Result<Page<T>> {
        if self.limit.is_some() {
            return Err(Error::InvalidOption {
                option: "limit",
                reason: "page(n) sets the page size; do not give limit too".into(),
            });
        }
        let mut scan = self.scan()?;
        let mut rows = Vec::new();
        // One row more than the page, read in the same statement: whether it exists says
        // whether a next page does, so the last page (a full one too) has no cursor.
        let wanted = if n == 0 { 0 } else { n.saturating_add(1) };
        while (rows.len() as u64) < wanted && !scan.done {
            let want = wanted - rows.len() as u64;
            rows.extend(scan.next_chunk(want).await?);
        }
        let more = rows.len() as u64 > n;
        rows.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        let next = match rows.last() {
            Some(last) if more => {
                let (keys, id) = scan.keys_of(last);
                Some(Cursor::new(scan.sort.clone(), keys, id))
            }
            _ => None,
        };
        let items = scan.items(rows).await?;
        Ok(Page { items, next })
    }

    /// The matching items as a stream, read in chunks of [`STREAM_CHUNK`] rows: memory stays
    /// that of one chunk however many items match. Each chunk is a keyset page (ordered by
    /// the sort keys then the id), so the stream sees every item that matches for its whole
    /// run exactly once; an item changed meanwhile may be seen before or after the change.
    /// [`limit`](Query::limit), [`offset`](Query::offset) and [`after`](Query::after) apply.
    ///
    /// # Errors
    /// The query's errors come as the stream's first item (then it ends); a row that does not
    /// fit the model is an `Err` in its place.
    pub fn stream(self) -> BoxStream<'static, Result<Item<T>>> {
        fn make<T: Model>(
            scan: &Scan<T>,
            rows: Vec<StoredRow>,
        ) -> resolve::BoxFuture<'_, Result<Vec<Result<Item<T>>>>> {
            Box::pin(scan.items_each(rows))
        }
        self.chunks(make::<T>)
    }

    /// [`stream`](Query::stream) for reading only: each [`ReadItem`] holds the RN and the
    /// data, not the stored row an [`Item`] keeps to write it back, so a report or an export
    /// over a large collection holds half the memory per item. Resolved references work as
    /// in [`stream`](Query::stream).
    ///
    /// # Errors
    /// As [`stream`](Query::stream).
    pub fn stream_read_only(self) -> BoxStream<'static, Result<ReadItem<T>>> {
        fn make<T: Model>(
            scan: &Scan<T>,
            rows: Vec<StoredRow>,
        ) -> resolve::BoxFuture<'_, Result<Vec<Result<ReadItem<T>>>>> {
            Box::pin(scan.read_items(rows))
        }
        self.chunks(make::<T>)
    }

    /// A stream of the items made by `make` from each chunk of rows.
    fn chunks<I: Send + 'static>(self, make: MakeItems<T, I>) -> BoxStream<'static, Result<I>> {
        let scan = match self.scan() {
            Ok(scan) => scan,
            Err(e) => return Box::pin(futures_util::stream::once(async move { Err(e) })),
        };
        let state = (scan, std::collections::VecDeque::<Result<I>>::new(), false);
        Box::pin(futures_util::stream::unfold(
            state,
            move |(mut scan, mut buffer, mut failed)| async move {
                loop {
                    if let Some(next) = buffer.pop_front() {
                        return Some((next, (scan, buffer, failed)));
                    }
                    if failed || scan.done {
                        return None;
                    }
                    let step = match scan.next_chunk(STREAM_CHUNK).await {
                        Ok(rows) => make(&scan, rows).await,
                        Err(e) => Err(e),
                    };
                    match step {
                        Ok(items) => buffer.extend(items),
                        Err(e) => {
                            failed = true;
                            buffer.push_back(Err(e));
                        }
                    }
                }
            },
        ))
    }

    /// The query as a keyset scan (for pages, streams and counts).
    fn scan(self) -> Result<Scan<T>> {
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        if !self.rn.is_collection() {
            return Err(Error::WrongRnForm {
                rn: self.rn.to_string(),
                reason: "a query needs a collection rn (namespace:kind:*)".to_owned(),
            });
        }
        if self.stringify_sort && !self.sort.is_empty() {
            return Err(Error::InvalidOption {
                option: "after",
                reason: "pages and streams can not sort by stringified objects and arrays".into(),
            });
        }
        let paths = self.resolve.parse()?;
        let sort_paths = self
            .sort
            .iter()
            .map(|(path, _)| FieldPath::parse(path))
            .collect::<Result<Vec<_>>>()?;
        let after = match self.after {
            Some(cursor) => Some(cursor.check(&self.sort)?),
            None => None,
        };
        Ok(Scan {
            pool: self.pool,
            rn: self.rn,
            filter: self.filter,
            sort: self.sort,
            sort_paths,
            stringify: self.stringify_sort,
            resolve: paths,
            strict: self.resolve.strict,
            resolving: self.resolve.resolving(),
            after,
            pos: 0,
            skip: self.offset.unwrap_or(0),
            left: self.limit,
            done: false,
            sparse: false,
        })
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

    /// The query's items, each read on its own; `limit` is the reader's own (first, first_n),
    /// within the query's. Inside a `korm.query` span (debug level).
    async fn run(self, limit: Option<u64>) -> Result<Vec<Result<Item<T>>>> {
        let span = tracing::debug_span!("korm.query", collection = %self.rn);
        let pool = self.pool.clone();
        traced_read(span, &pool, self.run_query(limit), Vec::len).await
    }

    async fn run_query(mut self, limit: Option<u64>) -> Result<Vec<Result<Item<T>>>> {
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        if !self.rn.is_collection() {
            return Err(Error::WrongRnForm {
                rn: self.rn.to_string(),
                reason: "a query needs a collection rn (namespace:kind:*)".to_owned(),
            });
        }
        let limit = match (limit, self.limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.after.is_some() {
            // A keyset start: the scan's path (sort keys in SQL, the cursor checked).
            self.limit = limit;
            let mut scan = self.scan()?;
            let mut rows = Vec::new();
            while !scan.done {
                rows.extend(scan.next_chunk(STREAM_CHUNK).await?);
            }
            return scan.items_each(rows).await;
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
            Window {
                limit,
                offset: self.offset,
                // A window is taken in id order (ties and no sort keys): which items a
                // limited read or an offset returns is then the same on every backend.
                ordered: self.offset.is_some() || limit.is_some(),
            },
        )
        .await?;
        let resolved = resolve_rows(&self.pool, &rows, &paths, self.resolve.strict).await?;
        let resolve = self.resolve.resolving();
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
            Item::from_stored_resolved(
                self.pool.clone(),
                rn,
                row,
                resolved.as_ref(),
                resolve.as_ref(),
            )
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
    window: Window,
) -> resolve::BoxFuture<'static, Result<Vec<StoredRow>>> {
    Box::pin(async move {
        let selected = select_rows_inner(pool, collection, filter, sort, window, false).await?;
        Ok(selected.rows)
    })
}

/// What [`select_rows_inner`] found.
struct Selected {
    /// The rows kept.
    rows: Vec<StoredRow>,
    /// How many rows the database returned (before an in-memory filter).
    raw: usize,
    /// The last row the database returned, when an in-memory filter dropped it (a scan
    /// continues after it).
    last_dropped: Option<StoredRow>,
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

/// The read path. `raw`: the window applies to the rows the database returns, before an
/// in-memory filter (a keyset scan continues after the last of them), and sort keys through
/// references are refused.
async fn select_rows_inner(
    pool: Pool,
    collection: Rn,
    filter: Option<Filter>,
    (sort, rules): (Vec<(String, SortOrder)>, SortRules),
    window: Window,
    raw: bool,
) -> Result<Selected> {
    let Window {
        limit,
        offset,
        ordered,
    } = window;
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
    if raw && sort_in_memory {
        return Err(Error::InvalidOption {
            option: "after",
            reason: "pages and streams need sort keys in the collection's own fields, not \
                     through references"
                .into(),
        });
    }
    let in_memory_limit = !raw && (residual.is_some() || sort_in_memory);
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
                offset: if in_memory_limit { None } else { offset },
                ordered: ordered || offset.is_some(),
            },
        )
        .await?;
    let raw_count = rows.len();
    let mut last_dropped = None;
    let mut rows = match &residual {
        Some(residual) => {
            let mut kept = Vec::with_capacity(rows.len());
            let last = rows.len().saturating_sub(1);
            for (i, row) in rows.into_iter().enumerate() {
                let rn = format!("{}{}", collection_prefix(&collection), row.id());
                if residual.matches(&rn, &row, pool.ring())? {
                    kept.push(row);
                } else if i == last {
                    last_dropped = Some(row);
                }
            }
            kept
        }
        None => rows,
    };
    if sort_in_memory {
        rows = sort_rows(&pool, rows, &sort, &sort_paths, schema.as_ref(), rules).await?;
    }
    if in_memory_limit {
        if let Some(m) = offset {
            let m = usize::try_from(m).unwrap_or(usize::MAX).min(rows.len());
            rows.drain(..m);
        }
        if let Some(n) = limit {
            rows.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        }
    }
    Ok(Selected {
        rows,
        raw: raw_count,
        last_dropped,
    })
}

/// Turns a chunk of rows of a scan into items (of a stream).
type MakeItems<T, I> =
    for<'a> fn(&'a Scan<T>, Vec<StoredRow>) -> resolve::BoxFuture<'a, Result<Vec<Result<I>>>>;

/// How many rows a stream reads per statement.
pub const STREAM_CHUNK: u64 = 1000;

/// A query run as a sequence of keyset pages: each chunk is the next rows after the last
/// one read, in the order of the sort keys then the id.
struct Scan<T> {
    pool: Pool,
    rn: Rn<T>,
    filter: Option<Filter>,
    sort: Vec<(String, SortOrder)>,
    sort_paths: Vec<FieldPath>,
    stringify: bool,
    resolve: Vec<ResolvePath>,
    strict: bool,
    /// The resolution as given, for the items (see [`Item::retry_on_conflict`]).
    resolving: Option<Arc<ResolveOptions>>,
    /// Where the next chunk starts: the sort-key values and id of the last row read.
    after: Option<(Vec<Value>, String)>,
    /// Rows the database returned after `after` and read already, when the last of them
    /// could not anchor the next chunk (see [`exact_keys`]): the next chunk starts that many
    /// rows on (an offset) instead.
    pos: u64,
    /// Matching rows still to skip (an offset).
    skip: u64,
    /// Items still to return (a limit).
    left: Option<u64>,
    /// No more rows.
    done: bool,
    /// A chunk's rows were filtered in memory (a filter on an encrypted field): from then on
    /// chunks are read whole, since asking for the few rows still wanted would take one
    /// statement per few rows read.
    sparse: bool,
}

impl<T: Model> Scan<T> {
    /// The filter of the next chunk: the query's, and after the last row read.
    fn chunk_filter(&self) -> Option<Filter> {
        let after = self
            .after
            .as_ref()
            .map(|(keys, id)| keyset_filter(&self.sort, keys, id));
        match (self.filter.clone(), after) {
            (Some(f), Some(a)) => Some(f.and(a)),
            (f, a) => f.or(a),
        }
    }

    /// The sort-key values and id of a row (what a cursor holds).
    fn keys_of(&self, row: &StoredRow) -> (Vec<Value>, String) {
        let keys = self
            .sort_paths
            .iter()
            .map(|path| {
                if path.column() == crate::layer::schema::ID_COLUMN && path.steps().is_empty() {
                    Value::String(row.id().to_owned())
                } else {
                    resolve::value_at(row, path).unwrap_or(Value::Null)
                }
            })
            .collect();
        (keys, row.id().to_owned())
    }

    /// Makes `row` where the next chunk starts, when its sort keys can anchor a keyset page
    /// ([`exact_keys`]); `false` (nothing changed) when they can not.
    fn anchor_at(&mut self, row: &StoredRow) -> bool {
        let keys = self.keys_of(row);
        if !exact_keys(&keys.0) {
            return false;
        }
        self.after = Some(keys);
        self.pos = 0;
        true
    }

    /// The next matching rows: at most `want` (and the limit), after the offset. Sets
    /// `done` when the collection has no more.
    async fn next_chunk(&mut self, want: u64) -> Result<Vec<StoredRow>> {
        let mut want = want.max(1);
        if let Some(left) = self.left {
            want = want.min(left);
        }
        if want == 0 || self.done {
            self.done = true;
            return Ok(Vec::new());
        }
        // Skipped rows are read in chunks too, at most STREAM_CHUNK at a time; so are rows
        // filtered in memory, once a chunk shows they are.
        // (No statement takes a limit above i64::MAX: `page(u64::MAX)` asks for one more.)
        let ask = if self.skip > 0 || self.sparse {
            STREAM_CHUNK.max(want)
        } else {
            want
        }
        .min(i64::MAX.unsigned_abs());
        let selected = select_rows_inner(
            self.pool.clone(),
            self.rn.untyped(),
            self.chunk_filter(),
            (
                self.sort.clone(),
                SortRules {
                    stringify: self.stringify,
                    strict: self.strict,
                },
            ),
            Window {
                limit: Some(ask),
                offset: (self.pos > 0).then_some(self.pos),
                ordered: true,
            },
            true,
        )
        .await?;
        if (selected.raw as u64) < ask {
            self.done = true;
        }
        self.sparse |= selected.rows.len() < selected.raw;
        let (after, pos) = (self.after.clone(), self.pos);
        let last = selected.last_dropped.as_ref().or(selected.rows.last());
        if let Some(last) = last
            && !self.anchor_at(last)
        {
            self.pos += selected.raw as u64;
        }
        let mut rows = selected.rows;
        let mut drained = 0;
        if self.skip > 0 {
            let n = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(rows.len());
            rows.drain(..n);
            self.skip -= n as u64;
            drained = n as u64;
        }
        if (rows.len() as u64) > want {
            // After an offset, or a whole chunk read for a filter evaluated in memory: the
            // rest are read again by the next chunk.
            rows.truncate(usize::try_from(want).unwrap_or(usize::MAX));
            if let Some(last) = rows.last()
                && !self.anchor_at(last)
            {
                // Read this chunk again, past what it skipped and returned.
                (self.after, self.pos) = (after, pos);
                self.skip = drained + rows.len() as u64;
            }
            self.done = false;
        }
        if let Some(left) = &mut self.left {
            *left -= (rows.len() as u64).min(*left);
            if *left == 0 {
                self.done = true;
            }
        }
        Ok(rows)
    }

    /// How many items match, counted by the database when it can.
    async fn count(self) -> Result<u64> {
        let filter = self.chunk_filter();
        if let Some(filter) = &filter {
            filter.validate()?;
        }
        let collection = self.rn.untyped();
        let table = collection_table(&collection)?;
        let layer = self.pool.route(&collection)?.clone();
        let Some(filter) = filter else {
            return layer.count(&table, None).await;
        };
        let Some(schema) = layer.table_schema(&table).await? else {
            return Ok(0);
        };
        let planned = if resolve::touches_reference(&filter, &schema) {
            let semi_join = !memory::reads_encrypted(&filter, &schema)?;
            resolve::plan_filter(&self.pool, &layer, &schema, filter, semi_join).await?
        } else {
            filter
        };
        match memory::split(planned, &schema)? {
            (filter, None) => layer.count(&table, filter).await,
            (filter, Some(residual)) => {
                let rows = layer
                    .select(
                        &table,
                        Select {
                            filter,
                            ..Select::default()
                        },
                    )
                    .await?;
                let prefix = collection_prefix(&collection);
                let mut n = 0;
                for row in rows {
                    let rn = format!("{prefix}{}", row.id());
                    if residual.matches(&rn, &row, self.pool.ring())? {
                        n += 1;
                    }
                }
                Ok(n)
            }
        }
    }

    /// The check of a row found, and its RN.
    fn row_rn(&self, row: &StoredRow) -> Result<ItemRn<T>> {
        check_item_id(&self.rn, row.id())?;
        if !self.stringify {
            for path in &self.sort_paths {
                if let Some(found) = non_scalar_at(row, path) {
                    return Err(Error::NonScalarSort {
                        path: path.to_string(),
                        rn: self.rn.with_valid_id(row.id()).to_string(),
                        found,
                    });
                }
            }
        }
        Ok(ItemRn::lazy(self.rn.clone(), row.id()))
    }

    /// Rows as items, each read on its own.
    async fn items_each(&self, rows: Vec<StoredRow>) -> Result<Vec<Result<Item<T>>>> {
        let resolved = resolve_rows(&self.pool, &rows, &self.resolve, self.strict).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let rn = self.row_rn(&row)?;
                Item::from_stored_resolved(
                    self.pool.clone(),
                    rn,
                    row,
                    resolved.as_ref(),
                    self.resolving.as_ref(),
                )
            })
            .collect())
    }

    /// Rows as items.
    async fn items(&self, rows: Vec<StoredRow>) -> Result<Vec<Item<T>>> {
        self.items_each(rows).await?.into_iter().collect()
    }

    /// Rows as read-only items.
    async fn read_items(&self, rows: Vec<StoredRow>) -> Result<Vec<Result<ReadItem<T>>>> {
        let resolved = resolve_rows(&self.pool, &rows, &self.resolve, self.strict).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let rn = self.row_rn(&row)?;
                let data = crate::crypto::at_boundary(self.pool.ring(), || match &resolved {
                    Some(resolved) => {
                        crate::model::with_resolved(resolved, || super::decode::<T>(&rn, &row))
                    }
                    None => super::decode::<T>(&rn, &row),
                })?;
                Ok(ReadItem { rn, data })
            })
            .collect())
    }
}

/// Runs a query or load inside `span` (when a subscriber wants it): at its end an event with
/// the items read, the read statements the pool's layers were sent meanwhile (concurrent
/// reads on the same pool included) and the duration; or the error.
async fn traced_read<R>(
    span: tracing::Span,
    pool: &Pool,
    work: impl std::future::Future<Output = Result<R>>,
    rows: impl FnOnce(&R) -> usize,
) -> Result<R> {
    use tracing::Instrument as _;
    if span.is_disabled() {
        return work.await;
    }
    let started = std::time::Instant::now();
    let statements = pool.read_statements_total();
    let result = work.instrument(span.clone()).await;
    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let statements = pool.read_statements_total().saturating_sub(statements);
    match &result {
        Ok(value) => {
            let rows = rows(value);
            tracing::debug!(parent: &span, rows, statements, duration_us, "read done");
        }
        Err(error) => {
            tracing::debug!(parent: &span, %error, statements, duration_us, "read failed");
        }
    }
    result
}

/// Whether a row's sort-key values can anchor a keyset page: a filter can hold each. Not so
/// a whole number above `i64::MAX` (a stream then continues by offset from the last row
/// that could, rather than end with an error). (Integers and doubles of magnitude 2^53 or
/// more mixed in one path can still disagree at a boundary: see docs/design.md.)
fn exact_keys(keys: &[Value]) -> bool {
    keys.iter().all(|key| match key {
        Value::Number(n) => n.is_i64() || n.is_f64(),
        Value::Array(_) | Value::Object(_) => false,
        _ => true,
    })
}

/// The filter "after the row with these sort-key values and id", in the order
/// [`crate::query`] documents (by type, then value; nulls last ascending, first descending;
/// ties by id), as one OR of ANDs: after on the first key, or equal on it and after on the
/// second, ..., or equal on every key and a greater id. Built from korm's own filters, it
/// means the same on every backend and in memory.
fn keyset_filter(sort: &[(String, SortOrder)], keys: &[Value], id: &str) -> Filter {
    let mut alternatives = Vec::with_capacity(sort.len() + 1);
    let mut equal: Vec<Filter> = Vec::with_capacity(sort.len() + 1);
    for ((path, order), value) in sort.iter().zip(keys) {
        let mut parts = equal.clone();
        parts.push(after_key(path, *order, value));
        alternatives.push(crate::query::and(parts));
        equal.push(crate::query::eq(path, value.clone()));
    }
    equal.push(crate::query::gt(crate::layer::schema::ID_COLUMN, id));
    alternatives.push(crate::query::and(equal));
    crate::query::or(alternatives)
}

/// The rank of a scalar's type in the sort order (booleans, numbers, text).
fn type_rank(value: &Value) -> u8 {
    match value {
        Value::Bool(_) => 0,
        Value::Number(_) => 1,
        _ => 2,
    }
}

/// The values at `path` of the scalar type of rank `rank` (any such value).
fn of_type(path: &str, rank: u8) -> Filter {
    use crate::query::{gte, in_list, lt, or};
    match rank {
        0 => in_list(path, [true, false]),
        1 => or([lt(path, 0), gte(path, 0)]),
        _ => gte(path, ""),
    }
}

/// The values at `path` that sort strictly after `value` in `order`.
fn after_key(path: &str, order: SortOrder, value: &Value) -> Filter {
    use crate::query::{eq, gt, lt, not, or};
    match (order, value) {
        (SortOrder::Asc, Value::Null) => or([]),
        (SortOrder::Desc, Value::Null) => not(eq(path, Value::Null)),
        (SortOrder::Asc, v) => {
            let rank = type_rank(v);
            let mut parts = vec![gt(path, v.clone())];
            parts.extend((rank + 1..3).map(|r| of_type(path, r)));
            parts.push(eq(path, Value::Null));
            or(parts)
        }
        (SortOrder::Desc, v) => {
            let rank = type_rank(v);
            let mut parts = vec![lt(path, v.clone())];
            parts.extend((0..rank).map(|r| of_type(path, r)));
            or(parts)
        }
    }
}

/// A page of a query ([`Query::page`]): its items, and where the next page starts.
#[derive(Debug)]
pub struct Page<T> {
    /// The items, in the query's order.
    pub items: Vec<Item<T>>,
    /// The cursor to pass to [`Query::after`] for the next page; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Where a page ended: an opaque text ([`Display`](fmt::Display) and
/// [`FromStr`](std::str::FromStr) round-trip it, for a web API's `next` link) holding the
/// sort keys and their values and the id of the page's last item. Pass it to
/// [`Query::after`] on a query with the same sort keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Cursor {
    text: String,
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cursor").field(&self.text).finish()
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Cursor {
    type Err = Error;

    /// Reads a cursor's text back.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] (`after`) when the text is not a cursor.
    fn from_str(text: &str) -> Result<Cursor> {
        let cursor = Cursor {
            text: text.to_owned(),
        };
        cursor.parts()?;
        Ok(cursor)
    }
}

/// What a cursor holds: the sort keys, the values of the last item at them, its id.
type CursorParts = (Vec<(String, bool)>, Vec<Value>, String);

impl Cursor {
    fn new(sort: Vec<(String, SortOrder)>, keys: Vec<Value>, id: String) -> Cursor {
        let sort: Vec<(String, bool)> = sort
            .into_iter()
            .map(|(p, o)| (p, o == SortOrder::Desc))
            .collect();
        let json = serde_json::json!([sort, keys, id]).to_string();
        Cursor {
            text: hex::encode(json),
        }
    }

    fn parts(&self) -> Result<CursorParts> {
        let fail = || Error::InvalidOption {
            option: "after",
            reason: "the cursor is not one korm made (Page::next)".into(),
        };
        let bytes = hex::decode(&self.text).map_err(|_| fail())?;
        let (sort, keys, id): CursorParts = serde_json::from_slice(&bytes).map_err(|_| fail())?;
        if sort.len() != keys.len()
            || sort.len() > crate::query::MAX_SORT_KEYS
            || keys.iter().any(|k| k.is_array() || k.is_object())
            || id.is_empty()
        {
            return Err(fail());
        }
        Ok((sort, keys, id))
    }

    /// The cursor's values and id, if it was made for these sort keys.
    fn check(&self, sort: &[(String, SortOrder)]) -> Result<(Vec<Value>, String)> {
        let (made_for, keys, id) = self.parts()?;
        let same = made_for.len() == sort.len()
            && made_for
                .iter()
                .zip(sort)
                .all(|((p, desc), (q, o))| p == q && *desc == (*o == SortOrder::Desc));
        if !same {
            return Err(Error::InvalidOption {
                option: "after",
                reason: "the cursor was made for a query with other sort keys".into(),
            });
        }
        Ok((keys, id))
    }
}

/// An item read for reading only ([`Query::stream_read_only`]): its RN and data, without
/// the stored row an [`Item`] keeps as the before-image of a write.
pub struct ReadItem<T> {
    rn: ItemRn<T>,
    data: T,
}

impl<T: fmt::Debug> fmt::Debug for ReadItem<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadItem")
            .field("rn", self.rn.get())
            .field("data", &self.data)
            .finish()
    }
}

impl<T> ReadItem<T> {
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

    /// A reload of an item, resolving what the read that made it resolved.
    pub(super) fn again(pool: Pool, rn: Rn<T>, resolve: Option<Arc<ResolveOptions>>) -> Self {
        Load {
            resolve: resolve.map(|r| (*r).clone()).unwrap_or_default(),
            ..Load::new(pool, rn)
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
        let span = tracing::debug_span!("korm.load", rn = %self.rn);
        if span.is_disabled() {
            // The hottest read: no pool clone, no wrapping future, when nothing listens.
            return self.load().await;
        }
        let pool = self.pool.clone();
        traced_read(span, &pool, self.load(), |found| {
            usize::from(found.is_some())
        })
        .await
    }

    async fn load(self) -> Result<Option<Item<T>>> {
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
        let resolve = self.resolve.resolving();
        Item::from_stored_resolved(
            self.pool,
            ItemRn::new(self.rn),
            row,
            resolved.as_ref(),
            resolve.as_ref(),
        )
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
