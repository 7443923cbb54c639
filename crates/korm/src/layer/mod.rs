//! Layers: the SQL databases items live in.
//!
//! A layer stores items of every collection in tables `__items__{namespace}__{kind}` and
//! answers three things: apply a batch of writes inside one database transaction, fetch items
//! by id, and run a planned select. The write path ([`crate::write`]) and the read path
//! ([`crate::item`]) are the only callers, so every backend sees the same requests.

pub(crate) mod backup;
pub(crate) mod locks;
pub(crate) mod meta;
#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod schema;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod server;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod url;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use crate::error::{Error, Result};
pub(crate) use crate::layer::backup::LayerBackups;
pub(crate) use crate::layer::locks::{Fence, LockClaim, SharedLockTable};
pub(crate) use crate::layer::meta::KormTables;
use crate::layer::schema::TableSchema;
use crate::model::{Field, StoredRow};
use crate::query::{Filter, SortOrder};

/// A layer ready to be opened: a backend's options, made by the constructors in
/// [`layers`](crate::layers) (`sqlite`, `postgres`, `mysql`, [`from_url`](crate::layers::from_url)),
/// and given to [`PoolBuilder::layer`](crate::PoolBuilder::layer). Nothing connects until the
/// pool opens. `Debug` shows the options with any password replaced by `***`.
#[derive(Clone)]
pub struct LayerSpec {
    /// The options, as `Debug` shows them (secrets redacted by the options' own `Debug`).
    shown: String,
    open: Arc<Opener>,
    /// Where the layer's data lives, for pool metadata; why not, when it can not be said.
    source: std::result::Result<LayerSource, &'static str>,
}

/// Where a layer's data lives, as pool metadata records it (korm 1.5's layer `type` and
/// `config`). `Debug` never shows a URL.
#[derive(Clone)]
pub(crate) enum LayerSource {
    /// A SQLite file by its path as given, or `:memory:` (`"type":"sqlite"`,
    /// `{"mode":"path","path":…}`).
    Sqlite {
        /// The path as given (korm 1.5 records it so too: not made absolute).
        path: String,
    },
    /// A server by its URL (`{"mode":"url","encrypted":…}`).
    Url {
        /// The backend: `pg` or `mysql` in the snapshot.
        kind: ServerKind,
        /// The URL, password included.
        url: secrecy::SecretString,
    },
}

/// A server layer's backend, as pool metadata names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerKind {
    /// PostgreSQL, korm 1.5's `pg`.
    Pg,
    /// MySQL or MariaDB, korm 1.5's `mysql`.
    MySql,
}

impl fmt::Debug for LayerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerSource::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            LayerSource::Url { kind, .. } => f
                .debug_struct("Url")
                .field("kind", kind)
                .field("url", &"<secret>")
                .finish(),
        }
    }
}

/// A layer from a URL, its backend chosen by the scheme:
/// - `sqlite:path/to/cars.sqlite`, `sqlite:///abs/path.sqlite` or `sqlite://path` (a file),
///   `sqlite::memory:` (a private in-memory database);
/// - `postgres://…` or `postgresql://…` (see [`postgres`](crate::layers::postgres));
/// - `mysql://…` or `mariadb://…` (see [`mysql`](crate::layers::mysql)).
///
/// The options are each backend's defaults; build with the backend's constructor to change
/// them. Nothing connects until the pool opens.
///
/// ```
/// let cars = korm::layers::from_url("sqlite::memory:")?;
/// let users = korm::layers::from_url("postgres://korm:s3cret@db.example/app")?;
/// assert!(!format!("{users:?}").contains("s3cret"));
/// assert!(korm::layers::from_url("redis://cache").is_err());
/// # let _ = (cars, users);
/// # Ok::<(), korm::Error>(())
/// ```
///
/// # Errors
/// [`Error::PoolConfig`] for a scheme korm does not know, or one whose backend this build of
/// korm leaves out (its cargo feature, `sqlite`, `postgres` or `mysql`, is off). The error
/// shows the scheme, never the rest of the URL.
pub fn from_url(url: &str) -> Result<LayerSpec> {
    let (scheme, rest) = url.split_once(':').unwrap_or((url, ""));
    let missing = |feature: &str| Error::PoolConfig {
        reason: format!(
            "a {scheme}: url needs korm's `{feature}` cargo feature, which this build leaves out"
        ),
    };
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => {
            #[cfg(feature = "sqlite")]
            return Ok(match rest {
                ":memory:" | "//:memory:" => sqlite::sqlite_memory().into(),
                path => sqlite::sqlite(path.strip_prefix("//").unwrap_or(path)).into(),
            });
            #[cfg(not(feature = "sqlite"))]
            return Err(missing("sqlite"));
        }
        "postgres" | "postgresql" => {
            #[cfg(feature = "postgres")]
            return Ok(postgres::postgres(url).into());
            #[cfg(not(feature = "postgres"))]
            return Err(missing("postgres"));
        }
        "mysql" | "mariadb" => {
            #[cfg(feature = "mysql")]
            return Ok(mysql::mysql(url).into());
            #[cfg(not(feature = "mysql"))]
            return Err(missing("mysql"));
        }
        _ => {
            let _ = (rest, missing);
            // Text that is not a scheme may be anything (a password pasted by mistake).
            let shown = if !rest.is_empty()
                && scheme.len() <= 16
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
            {
                format!("{scheme:?}")
            } else {
                "(none)".to_owned()
            };
            Err(Error::PoolConfig {
                reason: format!(
                    "no layer for the url scheme {shown}: korm knows sqlite:, postgres://, \
                     postgresql://, mysql:// and mariadb://"
                ),
            })
        }
    }
}

/// Opens a layer given its name in the pool.
type Opener = dyn Fn(String) -> BoxFuture<'static, Result<Arc<dyn Layer>>> + Send + Sync;

impl LayerSpec {
    /// A spec from a backend's options and the function that opens a layer from them (given
    /// the layer's name in the pool). Each backend provides its `From<Options>` with this.
    pub(crate) fn new<O, L, F>(options: O, open: fn(String, O) -> F) -> LayerSpec
    where
        O: fmt::Debug + Clone + Send + Sync + 'static,
        L: Layer + 'static,
        F: std::future::Future<Output = Result<L>> + Send + 'static,
    {
        LayerSpec {
            shown: format!("{options:?}"),
            open: Arc::new(move |ident| {
                let opening = open(ident, options.clone());
                Box::pin(async move { Ok(Arc::new(opening.await?) as Arc<dyn Layer>) })
            }),
            source: Err("its options do not say where its data lives"),
        }
    }

    /// Says where the layer's data lives (for pool metadata), or why that can not be said.
    pub(crate) fn with_source(
        mut self,
        source: std::result::Result<LayerSource, &'static str>,
    ) -> LayerSpec {
        self.source = source;
        self
    }

    /// Where the layer's data lives, or why that can not be said.
    pub(crate) fn source(&self) -> std::result::Result<&LayerSource, &'static str> {
        self.source.as_ref().map_err(|reason| *reason)
    }

    /// Opens the layer under its name in the pool.
    pub(crate) async fn open(&self, ident: &str) -> Result<Arc<dyn Layer>> {
        (self.open)(ident.to_owned()).await
    }
}

impl fmt::Debug for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// How many read statements a layer was sent (see [`LayerHandle`]).
#[derive(Debug, Default)]
pub(crate) struct ReadCounter(std::sync::atomic::AtomicU64);

impl ReadCounter {
    /// Counts `statements` more.
    pub(crate) fn add(&self, statements: usize) {
        self.0.fetch_add(
            u64::try_from(statements).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The count so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What a write op does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// Insert a new row; fails if the id exists.
    Insert,
    /// Update the listed columns of an existing row; fails if it does not exist.
    Update,
    /// Delete the row; fails if it does not exist.
    Delete,
    /// Delete the row if it exists (destroy, and the undo of an insert).
    DeleteIfExists,
}

/// One row write, as a layer receives it.
#[derive(Debug, Clone)]
pub(crate) struct LayerOp {
    /// What to do.
    pub(crate) kind: OpKind,
    /// The item's RN as text, for errors.
    pub(crate) rn: String,
    /// The table (`__items__{namespace}__{kind}`).
    pub(crate) table: String,
    /// The row id (the item UUID).
    pub(crate) id: String,
    /// The fields to write (insert and update), shared with the write plan's op (no copy).
    pub(crate) fields: std::sync::Arc<[Field]>,
    /// Whether a column whose kind changed may be dropped and recreated.
    pub(crate) destructive: bool,
    /// The fencing token of the shared lock the write is made under: checked (and recorded)
    /// in `__korm_fence__` inside the write's transaction, refused with
    /// [`Error::StaleLock`](crate::Error::StaleLock) if a newer token was seen.
    pub(crate) fence: Option<Fence>,
    /// The values the row must still hold for the write to apply (an optimistic update or
    /// delete): each a condition of the statement itself. Empty: unconditional.
    pub(crate) expect: Vec<Expect>,
}

/// A value a column held when its item was loaded, as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stored {
    /// A value in storage form, bound as korm writes it.
    Value(serde_json::Value),
    /// A JSON column's text exactly as read back, bound as it is (re-serialized it could
    /// differ from the stored text: key order, spacing, number forms).
    JsonText(String),
}

impl Stored {
    /// The value in storage form (JSON text parsed; text that does not parse stays text).
    pub(crate) fn to_value(&self) -> serde_json::Value {
        match self {
            Stored::Value(v) => v.clone(),
            Stored::JsonText(text) => crate::model::Cell::Json(text).to_value(),
        }
    }
}

/// One condition of an optimistic write: the column `name` still holds `value`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expect {
    /// The column.
    pub(crate) name: String,
    /// What it held when the item was loaded.
    pub(crate) value: Stored,
}

impl LayerOp {
    /// The outcome of a conditional write that changed no row: `matched` is what the probe
    /// of the row found (`None`: no row, the item is gone: [`Error::NotFound`], or done for a
    /// delete-if-exists; else one flag per condition in `names`, whether it still holds: a
    /// [`Error::Conflict`]).
    pub(crate) fn probed(&self, names: Vec<String>, matched: Option<Vec<bool>>) -> Result<()> {
        let Some(matched) = matched else {
            if self.kind == OpKind::DeleteIfExists {
                return Ok(());
            }
            return Err(Error::NotFound {
                rn: self.rn.clone(),
            });
        };
        let changed: Vec<String> = names
            .iter()
            .zip(&matched)
            .filter(|(_, ok)| !**ok)
            .map(|(n, _)| n.clone())
            .collect();
        Err(Error::Conflict {
            rn: self.rn.clone(),
            // All held by the time of the probe (another writer changed the row back, or a
            // statement in autocommit raced): name every condition.
            fields: if changed.is_empty() { names } else { changed },
            item: crate::error::ConflictedItem::none(),
        })
    }

    /// The outcome of the op's statement, which changed (or, for an update with nothing to
    /// write, found) `changed` rows: an update or a delete of a row that is not there is
    /// [`Error::NotFound`].
    pub(crate) fn outcome(&self, changed: u64) -> Result<()> {
        if changed == 0 && matches!(self.kind, OpKind::Update | OpKind::Delete) {
            return Err(Error::NotFound {
                rn: self.rn.clone(),
            });
        }
        Ok(())
    }

    /// What a unique violation on `key` means for this write, `key` being what the database
    /// names: the key column or a unique shadow column (SQLite), or an index (`PRIMARY`,
    /// `<table>_pkey`, or korm 1.5's `__korm_u_…` name of a unique field).
    /// [`Error::AlreadyExists`] for the key, [`Error::UniqueViolation`] naming the field for
    /// a unique field (of the table, or made unique by this write); `None` for a key korm
    /// does not know.
    pub(crate) fn unique_violation(
        &self,
        schema: Option<&TableSchema>,
        key: &str,
    ) -> Option<Error> {
        if key == schema::ID_COLUMN || key == "PRIMARY" || key.ends_with("_pkey") {
            return Some(Error::AlreadyExists {
                rn: self.rn.clone(),
            });
        }
        let field = match key.strip_prefix(schema::UNIQUE_PREFIX) {
            Some(field) => field.to_owned(),
            None => schema
                .map(|s| s.unique.iter())
                .into_iter()
                .flatten()
                .chain(self.fields.iter().filter(|f| f.unique).map(|f| &f.name))
                .find(|f| schema::unique_index_name(&self.table, f) == key)?
                .clone(),
        };
        Some(Error::UniqueViolation {
            table: self.table.clone(),
            field,
            rn: self.rn.clone(),
        })
    }
}

/// The error of a write that was committing (a `COMMIT`, or a statement committing on its
/// own): a connection lost there leaves the outcome unknown ([`Error::OutcomeUnknown`]).
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn committing(layer: &str, rn: &str, e: Error) -> Error {
    match e {
        Error::Database {
            kind: crate::DbErrorKind::ConnectionLost,
            ..
        } => Error::OutcomeUnknown {
            layer: layer.to_owned(),
            rn: rn.to_owned(),
            source: Box::new(e),
        },
        e => e,
    }
}

impl dyn Layer + '_ {
    /// The layer's table of shared locks (`__korm_locks__`).
    pub(crate) fn locks(&self) -> &dyn SharedLockTable {
        self
    }

    /// korm's own tables on the layer: the pool snapshot (`__korm_pool__`) and the drops of
    /// a reset.
    pub(crate) fn korm_tables(&self) -> &dyn KormTables {
        self
    }

    /// The layer's side of backups and their schedules.
    pub(crate) fn backups(&self) -> &dyn LayerBackups {
        self
    }
}

/// A planned read of one table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Select {
    /// The filter, if any.
    pub(crate) filter: Option<Filter>,
    /// Sort keys (paths) and directions.
    pub(crate) sort: Vec<(String, SortOrder)>,
    /// At most this many rows.
    pub(crate) limit: Option<u64>,
    /// Skip this many rows first (the order is then by `rnId` at least, so pages are stable).
    pub(crate) offset: Option<u64>,
    /// Order by `rnId` even without sort keys (paging and streaming need a total order).
    pub(crate) ordered: bool,
}

/// The `Debug` form of a layer: its type and its ident (its connections and caches say
/// nothing useful, and a server's options hold a password).
pub(crate) fn debug_layer(f: &mut fmt::Formatter<'_>, name: &str, ident: &str) -> fmt::Result {
    f.debug_struct(name)
        .field("ident", &ident)
        .finish_non_exhaustive()
}

impl Select {
    /// The select's statement on a table of `schema` in `dialect`: its filter, sort keys and
    /// window ([`Dialect::render_select_window`](crate::query::dialect::Dialect::render_select_window)).
    pub(crate) fn statement(
        &self,
        dialect: &impl crate::query::dialect::Dialect,
        schema: &TableSchema,
    ) -> Result<crate::query::dialect::Statement> {
        dialect.render_select_window(schema, self.filter.as_ref(), &self.sort, self.window())
    }

    /// The rows the select keeps, for [`Dialect::render_select_window`](crate::query::dialect::Dialect::render_select_window).
    pub(crate) fn window(&self) -> crate::query::dialect::Window {
        crate::query::dialect::Window {
            limit: self.limit,
            offset: self.offset,
            ordered: self.ordered,
        }
    }
}

/// A SQL database that stores items: storage only. Chunking of long id lists and the count
/// of read statements are the pool's ([`LayerHandle`]); shared locks are a table the layer
/// keeps ([`SharedLockTable`]).
#[async_trait]
pub(crate) trait Layer: SharedLockTable + KormTables + LayerBackups + fmt::Debug {
    /// The layer's name in the pool.
    fn ident(&self) -> &str;

    /// Applies the ops in order inside one database transaction, creating tables and columns
    /// as needed: either all of them are applied or none is.
    async fn apply(&self, ops: Vec<LayerOp>) -> Result<()>;

    /// Fetches the rows with these ids (at most [`FETCH_CHUNK`], one statement) from one
    /// table; missing ids are simply absent.
    async fn fetch(&self, table: &str, ids: Vec<String>) -> Result<Vec<StoredRow>>;

    /// An optional capability, for the hottest read: the row with this id, if the layer can
    /// answer at once without waiting (SQLite, with its connection free), without a boxed
    /// future. `None` when the caller must await [`fetch`](Layer::fetch).
    fn fetch_one_now(&self, table: &str, id: &str) -> Option<Result<Option<StoredRow>>> {
        let _ = (table, id);
        None
    }

    /// Runs a select on one table (one statement). A table that does not exist yet gives no
    /// rows.
    async fn select(&self, table: &str, select: Select) -> Result<Vec<StoredRow>>;

    /// Creates a declared index on `path` of `table` for `kind` (see
    /// [`crate::query::index`]), if it does not exist, and lets the table's cached schema
    /// know it.
    async fn create_index(
        &self,
        table: &str,
        path: &crate::query::FieldPath,
        kind: crate::query::IndexKind,
    ) -> Result<()>;

    /// The database's plan for the select (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN`
    /// elsewhere), one line per step; empty when the table does not exist.
    async fn explain(&self, table: &str, select: Select) -> Result<String>;

    /// How many rows of one table match `filter` (one statement, `SELECT COUNT(*)`). A table
    /// that does not exist yet has none.
    async fn count(&self, table: &str, filter: Option<Filter>) -> Result<u64>;

    /// The distinct prefixes (the RN text before the 36-character item id) of the RN strings
    /// in `column`, for planning filters and sorts through references. A missing table or
    /// column gives none. One statement.
    async fn ref_prefixes(&self, table: &str, column: &str) -> Result<Vec<String>>;

    /// The table's columns and kinds (`None` when it does not exist), for the read planner:
    /// filters on encrypted columns are evaluated in memory, not in SQL.
    async fn table_schema(&self, table: &str) -> Result<Option<TableSchema>>;

    /// The table's columns and kinds read from the database, not from the layer's cache
    /// (which may be behind another process's change to the table); the cache takes it.
    async fn fresh_table_schema(&self, table: &str) -> Result<Option<TableSchema>>;

    /// The backend, as korm 1.5 names it in pool metadata and backups (`sqlite`, `pg`,
    /// `mysql`).
    fn backend(&self) -> &'static str;

    /// Closes the layer: later calls fail with [`Error::PoolClosed`](crate::Error::PoolClosed).
    async fn close(&self);
}

/// How many ids one fetch statement carries at most (they are one JSON array parameter past
/// a few, so the limit is the size of a statement, not a count of parameters).
pub(crate) const FETCH_CHUNK: usize = 500;

/// Runs one layer call inside a `korm.layer` span (trace level): the layer, the call, the
/// table, how many ops or ids went in, and at its end how many rows came back (or the error)
/// and how long it took. Values never appear: statements bind them.
async fn traced<R>(
    layer: &str,
    call: &'static str,
    table: &str,
    sent: usize,
    work: impl std::future::Future<Output = Result<R>>,
    rows: impl FnOnce(&R) -> usize,
) -> Result<R> {
    use tracing::Instrument as _;
    let span = tracing::trace_span!("korm.layer", layer, call, table, sent);
    if span.is_disabled() {
        return work.await;
    }
    let started = std::time::Instant::now();
    let result = work.instrument(span.clone()).await;
    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match &result {
        Ok(value) => {
            tracing::trace!(parent: &span, rows = rows(value), duration_us, "layer call done")
        }
        Err(error) => tracing::trace!(parent: &span, %error, duration_us, "layer call failed"),
    }
    result
}

/// A layer as the pool holds it: the backend, and the count of read statements sent to it
/// (what [`Pool::read_statements`](crate::Pool::read_statements) shows). Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct LayerHandle {
    layer: Arc<dyn Layer>,
    reads: Arc<ReadCounter>,
}

impl LayerHandle {
    pub(crate) fn new(layer: Arc<dyn Layer>) -> LayerHandle {
        LayerHandle {
            layer,
            reads: Arc::default(),
        }
    }

    /// The layer's name in the pool.
    pub(crate) fn ident(&self) -> &str {
        self.layer.ident()
    }

    /// Whether `other` is a handle on the same layer.
    pub(crate) fn same_as(&self, other: &LayerHandle) -> bool {
        Arc::ptr_eq(&self.layer, &other.layer)
    }

    /// See [`Layer::apply`].
    pub(crate) async fn apply(&self, ops: Vec<LayerOp>) -> Result<()> {
        let count = ops.len();
        traced(
            self.ident(),
            "apply",
            "",
            count,
            self.layer.apply(ops),
            |()| count,
        )
        .await
    }

    /// The rows with these ids in one table, one statement per [`FETCH_CHUNK`] ids.
    pub(crate) async fn fetch(&self, table: &str, ids: Vec<String>) -> Result<Vec<StoredRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.reads.add(ids.len().div_ceil(FETCH_CHUNK));
        let count = ids.len();
        traced(
            self.ident(),
            "fetch",
            table,
            count,
            self.fetch_chunks(table, ids),
            Vec::len,
        )
        .await
    }

    async fn fetch_chunks(&self, table: &str, ids: Vec<String>) -> Result<Vec<StoredRow>> {
        if ids.len() <= FETCH_CHUNK {
            return self.layer.fetch(table, ids).await;
        }
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(FETCH_CHUNK) {
            out.extend(self.layer.fetch(table, chunk.to_vec()).await?);
        }
        Ok(out)
    }

    /// The row with this id, when the layer can answer at once (see
    /// [`Layer::fetch_one_now`]); `None` when the caller must await [`LayerHandle::fetch`].
    /// Synchronous, so the hottest read (a load) costs no future when answered in place.
    pub(crate) fn fetch_one_now(&self, table: &str, id: &str) -> Option<Result<Option<StoredRow>>> {
        let found = self.layer.fetch_one_now(table, id)?;
        self.reads.add(1);
        Some(found)
    }

    /// See [`Layer::select`].
    pub(crate) async fn select(&self, table: &str, select: Select) -> Result<Vec<StoredRow>> {
        self.reads.add(1);
        traced(
            self.ident(),
            "select",
            table,
            0,
            self.layer.select(table, select),
            Vec::len,
        )
        .await
    }

    /// See [`Layer::create_index`].
    pub(crate) async fn create_index(
        &self,
        table: &str,
        path: &crate::query::FieldPath,
        kind: crate::query::IndexKind,
    ) -> Result<()> {
        self.layer.create_index(table, path, kind).await
    }

    /// See [`Layer::explain`].
    pub(crate) async fn explain(&self, table: &str, select: Select) -> Result<String> {
        self.layer.explain(table, select).await
    }

    /// See [`Layer::count`].
    pub(crate) async fn count(&self, table: &str, filter: Option<Filter>) -> Result<u64> {
        self.reads.add(1);
        self.layer.count(table, filter).await
    }

    /// See [`Layer::ref_prefixes`].
    pub(crate) async fn ref_prefixes(&self, table: &str, column: &str) -> Result<Vec<String>> {
        self.reads.add(1);
        self.layer.ref_prefixes(table, column).await
    }

    /// See [`Layer::table_schema`].
    pub(crate) async fn table_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        self.layer.table_schema(table).await
    }

    /// The layer's table of shared locks (`__korm_locks__`).
    pub(crate) fn locks(&self) -> &dyn SharedLockTable {
        self.layer.locks()
    }

    /// korm's own tables on the layer (see [`KormTables`]).
    pub(crate) fn korm_tables(&self) -> &dyn KormTables {
        self.layer.korm_tables()
    }

    /// How many read statements the layer was sent since the pool opened.
    pub(crate) fn read_statements(&self) -> u64 {
        self.reads.get()
    }

    /// The layer itself (backups use its table listing, export and clearing).
    pub(crate) fn layer(&self) -> &dyn Layer {
        &*self.layer
    }

    /// See [`Layer::close`].
    pub(crate) async fn close(&self) {
        self.layer.close().await;
    }
}
