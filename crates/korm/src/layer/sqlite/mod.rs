//! The SQLite layer, on rusqlite with SQLite bundled.
//!
//! Each layer owns one connection on its own thread ([`worker`]); async callers send it jobs,
//! so a slow disk or a lock held by another process never blocks a tokio worker. Statements
//! are prepared once and cached. The schema cache lives on that thread too and never
//! remembers a missing table or column: a miss is always read again from the database, so a
//! table another process creates later is seen (K8).

mod backup;
mod dialect;
mod error;
mod locks;
mod meta;
mod options;
mod worker;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::{Value as SqlParam, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

pub(crate) use options::MEMORY_PATH;
use options::Target;
pub use options::{SqliteOptions, Synchronous, sqlite, sqlite_memory};
use worker::{State, Worker};

use super::meta::PoolRow;
use super::schema::{self, ReadPlan, TableSchema};
use super::{KormTables, Layer, LayerOp, LockClaim, OpKind, Select, SharedLockTable};
use crate::error::{DbErrorKind, Error, Result};
use crate::model::{Cell, ColumnKind, SqlValue, StoredRow};
use crate::query::dialect::{Dialect, RowSql};
pub(crate) use dialect::SqliteDialect;
use error::{db_error, write_error};

/// Lookups of at most this many ids are short enough to run in place (see [`worker`]).
const INLINE_FETCH: usize = 16;

/// How many SQLite VM instructions a select may run in place, on the caller's thread, before
/// it is interrupted and run again on the connection thread (see [`worker`]). A scan costs
/// about ten per row, so a query over several thousand rows (well under a millisecond) runs
/// within it and costs no thread hop; a longer one costs at most this much extra.
const SELECT_IN_PLACE: u32 = 100_000;

/// A SQLite database holding items.
pub(crate) struct SqliteLayer {
    ident: String,
    worker: Worker,
    writes_in_place: bool,
    /// The database file (absolute), which a backup reads on a connection of its own;
    /// `None` in memory.
    file: Option<std::path::PathBuf>,
    /// Reference prefixes by (table, column), valid while the connection's change count and
    /// the file's `data_version` (commits of other connections) are what they were.
    prefixes: Arc<std::sync::Mutex<PrefixCache>>,
}

type PrefixCache = std::collections::HashMap<(String, String), ((i64, i64), Vec<String>)>;

/// Commits between two checkpoints when korm runs them (about 1,000 WAL pages for small
/// writes, SQLite's own default).
const CHECKPOINT_EVERY: u32 = 1000;

impl fmt::Debug for SqliteLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::debug_layer(f, "SqliteLayer", &self.ident)
    }
}

impl SqliteLayer {
    /// A table's schema: the cached one (or one PRAGMA read), or with `fresh` read again. Short
    /// enough to run in place.
    async fn schema_in_place(&self, table: &str, fresh: bool) -> Result<Option<TableSchema>> {
        let table = table.to_owned();
        self.worker
            .in_place(move |state| {
                let State {
                    conn,
                    schemas,
                    ident,
                    ..
                } = state;
                if fresh {
                    schemas.remove(&table);
                }
                Ok(schema_of(conn, schemas, ident, &table)?.cloned())
            })
            .await
    }

    /// Opens (or creates) the database.
    pub(crate) async fn open(ident: String, options: SqliteOptions) -> Result<SqliteLayer> {
        let ident = ident.as_str();
        let layer = ident.to_owned();
        let busy_timeout = options.busy_timeout;
        let fast_commits = options.synchronous != Synchronous::Full;
        let memory = options.target == Target::Memory;
        let wal = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let wal_seen = Arc::clone(&wal);
        let file = match &options.target {
            Target::File(path) => Some(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
            Target::Memory => None,
        };
        let checkpoints = match &options.target {
            // Made absolute now: the process may change its working folder before the
            // first checkpoint opens the file again.
            Target::File(path) => Some(worker::CheckpointFile {
                path: std::path::absolute(path).unwrap_or_else(|_| path.clone()),
                synchronous: options.synchronous.pragma(),
            }),
            Target::Memory => None,
        };
        let worker = Worker::start(ident, busy_timeout, checkpoints, move || {
            open_connection(&layer, &options, &wal_seen)
        })
        .await?;
        let wal = wal.load(std::sync::atomic::Ordering::SeqCst);
        // Writes run in place only when a commit never syncs to disk: memory, or a file that
        // really is in WAL mode (the switch can fail when another process holds the file) with
        // synchronous NORMAL or OFF. In rollback-journal mode a NORMAL commit still syncs.
        // Checkpoints (which do sync) then move to the connection thread, every
        // CHECKPOINT_EVERY commits, and SQLite's own checkpoint-on-commit is turned off.
        let writes_in_place = fast_commits && (memory || wal);
        if writes_in_place && wal {
            worker
                .call(|state| {
                    state
                        .conn
                        .execute_batch("PRAGMA wal_autocheckpoint = 0;")
                        .map_err(|e| db_error(&state.ident, e))?;
                    state.set_checkpoint_every(Some(CHECKPOINT_EVERY));
                    Ok(())
                })
                .await?;
        }
        Ok(SqliteLayer {
            ident: ident.to_owned(),
            worker,
            writes_in_place,
            file,
            prefixes: Arc::default(),
        })
    }
}

fn open_connection(
    layer: &str,
    options: &SqliteOptions,
    wal: &std::sync::atomic::AtomicBool,
) -> Result<Connection> {
    let conn = match &options.target {
        Target::File(path) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
        Target::Memory => Connection::open_in_memory(),
    }
    .map_err(|e| Error::database(layer.to_owned(), DbErrorKind::Connect, e.to_string()))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| db_error(layer, e))?;
    conn.set_prepared_statement_cache_capacity(256);
    // Statements at trace level (target `korm::sql`): the SQL text with its placeholders,
    // never a value (values are bound). Registered only when a subscriber wants them, since
    // SQLite then calls back for every statement.
    if tracing::enabled!(target: "korm::sql", tracing::Level::TRACE) {
        conn.trace_v2(
            rusqlite::trace::TraceEventCodes::SQLITE_TRACE_PROFILE,
            Some(trace_statement),
        );
    }
    if options.wal_journal && options.target != Target::Memory {
        // Another process holding the database locked must not make opening fail (K7): the
        // journal mode is an optimisation, so a failure to switch is only a warning.
        if let Err(e) = conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        }) {
            tracing::warn!(layer, error = %e, "could not switch SQLite to WAL journal mode; continuing");
        }
    }
    let in_wal = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0))
        .is_ok_and(|mode| mode.eq_ignore_ascii_case("wal"));
    wal.store(in_wal, std::sync::atomic::Ordering::SeqCst);
    if let Err(e) = conn.execute_batch(&format!(
        "PRAGMA synchronous = {};",
        options.synchronous.pragma()
    )) {
        tracing::warn!(layer, error = %e, "could not set SQLite synchronous mode; continuing");
    }
    Ok(conn)
}

/// One statement SQLite ran, for `tracing` (see [`open_connection`]).
fn trace_statement(event: rusqlite::trace::TraceEvent<'_>) {
    if let rusqlite::trace::TraceEvent::Profile(statement, took) = event {
        let duration_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        tracing::trace!(target: "korm::sql", sql = %statement.sql(), duration_us, "statement");
    }
}

#[async_trait]
impl Layer for SqliteLayer {
    fn ident(&self) -> &str {
        &self.ident
    }

    async fn apply(&self, ops: Vec<LayerOp>) -> Result<()> {
        if self.writes_in_place {
            self.worker.in_place(move |state| apply(state, &ops)).await
        } else {
            // Group-committed with the writes of other callers (see `apply_arriving`).
            self.worker.write(ops).await
        }
    }

    async fn fetch(&self, table: &str, ids: Vec<String>) -> Result<Vec<StoredRow>> {
        // A few ids run in place; more run in place within the read budget, as a select does
        // (a batched reference lookup of a few hundred ids stays well inside it).
        let budget = (ids.len() > INLINE_FETCH).then_some(SELECT_IN_PLACE);
        if let Some(done) = self
            .worker
            .try_in_place(budget, |state| fetch(state, table, &ids))
        {
            return done;
        }
        let table = table.to_owned();
        self.worker
            .call(move |state| fetch(state, &table, &ids))
            .await
    }

    fn fetch_one_now(&self, table: &str, id: &str) -> Option<Result<Option<StoredRow>>> {
        // Its own path, not `fetch` of one id: a load is the hottest read, and the lists
        // and chunk loop of `fetch` cost it 1.7% more instructions (measured).
        let done = self
            .worker
            .try_in_place(None, |state| fetch_one(state, table, id))?;
        Some(done)
    }

    async fn select(&self, table: &str, select: Select) -> Result<Vec<StoredRow>> {
        if let Some(done) = self.worker.try_in_place(Some(SELECT_IN_PLACE), |state| {
            run_select(state, table, &select)
        }) {
            return done;
        }
        let table = table.to_owned();
        self.worker
            .call(move |state| run_select(state, &table, &select))
            .await
    }

    async fn create_index(
        &self,
        table: &str,
        path: &crate::query::FieldPath,
        kind: crate::query::IndexKind,
    ) -> Result<()> {
        let (table, path) = (table.to_owned(), path.clone());
        self.worker
            .call(move |state| create_index(state, &table, &path, kind))
            .await
    }

    async fn explain(&self, table: &str, select: Select) -> Result<String> {
        let table = table.to_owned();
        self.worker
            .call(move |state| run_explain(state, &table, &select))
            .await
    }

    async fn count(&self, table: &str, filter: Option<crate::query::Filter>) -> Result<u64> {
        if let Some(done) = self.worker.try_in_place(Some(SELECT_IN_PLACE), |state| {
            run_count(state, table, filter.as_ref())
        }) {
            return done;
        }
        let table = table.to_owned();
        self.worker
            .call(move |state| run_count(state, &table, filter.as_ref()))
            .await
    }

    async fn ref_prefixes(&self, table: &str, column: &str) -> Result<Vec<String>> {
        // With the prefixes cached, one cheap statement: in place, within the read budget.
        if let Some(done) = self.worker.try_in_place(Some(SELECT_IN_PLACE), |state| {
            ref_prefixes(state, &self.prefixes, table, column)
        }) {
            return done;
        }
        let (table, column) = (table.to_owned(), column.to_owned());
        let cache = Arc::clone(&self.prefixes);
        self.worker
            .call(move |state| ref_prefixes(state, &cache, &table, &column))
            .await
    }

    async fn table_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        self.schema_in_place(table, false).await
    }

    async fn fresh_table_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        self.schema_in_place(table, true).await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn close(&self) {
        self.worker.close().await;
    }
}

#[async_trait]
impl KormTables for SqliteLayer {
    async fn read_pool_row(&self) -> Result<Option<PoolRow>> {
        self.worker.call(|state| meta::read_pool_row(state)).await
    }

    async fn insert_pool_row(&self, config: &str, now: i64) -> Result<bool> {
        let config = config.to_owned();
        self.worker
            .call(move |state| meta::insert_pool_row(state, &config, now))
            .await
    }

    async fn update_pool_row(&self, config: &str, now: i64) -> Result<()> {
        let config = config.to_owned();
        self.worker
            .call(move |state| meta::update_pool_row(state, &config, now))
            .await
    }

    async fn drop_named(&self, names: Vec<String>) -> Result<Vec<String>> {
        let dropped = self
            .worker
            .call(move |state| meta::drop_tables(state, &names))
            .await;
        self.forget_prefixes();
        dropped
    }

    async fn drop_korm_tables(&self) -> Result<Vec<String>> {
        let dropped = self
            .worker
            .call(|state| {
                let names = super::meta::korm_tables_to_drop(meta::item_tables(state)?);
                meta::drop_tables(state, &names)
            })
            .await;
        self.forget_prefixes();
        dropped
    }
}

impl SqliteLayer {
    /// Forgets the cached reference prefixes (after tables were dropped: DDL changes neither
    /// counter the cache is keyed by).
    fn forget_prefixes(&self) {
        self.prefixes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

#[async_trait]
impl SharedLockTable for SqliteLayer {
    async fn acquire(&self, claim: &LockClaim) -> Result<Option<i64>> {
        let claim = claim.clone();
        self.worker
            .call(move |state| locks::acquire(&mut state.conn, &state.ident, &claim))
            .await
    }

    async fn refresh(&self, claim: &LockClaim) -> Result<bool> {
        let claim = claim.clone();
        self.worker
            .call(move |state| locks::refresh(&state.conn, &state.ident, &claim))
            .await
    }

    async fn release(&self, lock_id: &str, owner: &str) -> Result<()> {
        let (lock_id, owner) = (lock_id.to_owned(), owner.to_owned());
        self.worker
            .call(move |state| locks::release(&state.conn, &state.ident, &lock_id, &owner))
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// Schema

/// The column kind of a declared type; types korm did not write are mapped by SQLite's
/// affinity rules.
fn kind_of_declared(declared: &str) -> ColumnKind {
    let upper = declared.trim().to_ascii_uppercase();
    let first = upper
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    match first {
        "TEXT" => ColumnKind::Text,
        "INTEGER" => ColumnKind::Integer,
        "REAL" => ColumnKind::Double,
        "BOOLEAN" => ColumnKind::Boolean,
        "JSON_TEXT" => ColumnKind::Json,
        "RN_REF_TEXT" => ColumnKind::RnRef,
        "ENCRYPTED_JSON" => ColumnKind::Encrypted,
        _ if upper.contains("INT") => ColumnKind::Integer,
        _ if upper.contains("REAL") || upper.contains("FLOA") || upper.contains("DOUB") => {
            ColumnKind::Double
        }
        _ => ColumnKind::Text,
    }
}

/// Reads a table's schema from the database; `None` if the table does not exist.
fn read_schema(conn: &Connection, layer: &str, table: &str) -> Result<Option<TableSchema>> {
    let map = |e| db_error(layer, e);
    let mut schema = TableSchema {
        table: table.to_owned(),
        ..TableSchema::default()
    };
    // Each index: its name, and the column a one-column unique index keys (else null).
    let mut stmt = conn
        .prepare_cached(
            "SELECT il.name, CASE WHEN il.\"unique\" AND il.partial = 0 \
             AND (SELECT count(*) FROM pragma_index_info(il.name)) = 1 \
             THEN (SELECT name FROM pragma_index_info(il.name)) END \
             FROM pragma_index_list(?1) AS il",
        )
        .map_err(map)?;
    let mut keyed = Vec::new();
    let mut rows = stmt.query([table]).map_err(map)?;
    while let Some(row) = rows.next().map_err(map)? {
        let name: String = row.get(0).map_err(map)?;
        if let Some(column) = row.get::<_, Option<String>>(1).map_err(map)? {
            keyed.push(column);
        }
        if name.starts_with("korm_ix_") {
            schema.indexes.push(name);
        }
    }
    drop(rows);
    let mut stmt = conn
        .prepare_cached("SELECT name, type FROM pragma_table_info(?1)")
        .map_err(map)?;
    let mut rows = stmt.query([table]).map_err(map)?;
    let mut any = false;
    while let Some(row) = rows.next().map_err(map)? {
        any = true;
        let name: String = row.get(0).map_err(map)?;
        let declared: String = row.get(1).map_err(map)?;
        let is_keyed = keyed.contains(&name);
        schema.add_read_column(name, kind_of_declared(&declared), is_keyed);
    }
    Ok(any.then_some(schema))
}

/// Creates a declared index (see [`crate::query::index`]) and reads the table's schema
/// again, so the next filter on the path uses it.
fn create_index(
    state: &mut State,
    table: &str,
    path: &crate::query::FieldPath,
    kind: crate::query::IndexKind,
) -> Result<()> {
    let State {
        conn,
        schemas,
        ident,
        ..
    } = state;
    for statement in SqliteDialect.render_create_index(table, path, kind) {
        conn.execute_batch(&statement.sql)
            .map_err(|e| db_error(ident, e))?;
    }
    match read_schema(conn, ident, table)? {
        Some(schema) => {
            schemas.insert(table.to_owned(), schema);
        }
        None => {
            schemas.remove(table);
        }
    }
    Ok(())
}

/// The schema of a table: from the cache, or read (and cached) when the table exists.
fn schema_of<'a>(
    conn: &Connection,
    schemas: &'a mut worker::TableMap<TableSchema>,
    layer: &str,
    table: &str,
) -> Result<Option<&'a mut TableSchema>> {
    if !schemas.contains_key(table) {
        match read_schema(conn, layer, table)? {
            Some(schema) => {
                schemas.insert(table.to_owned(), schema);
            }
            None => return Ok(None),
        }
    }
    Ok(schemas.get_mut(table))
}

/// Makes the table fit the op's fields (the planner's [`schema::diff`]), inside the write's
/// transaction: its `BEGIN IMMEDIATE` holds the write lock, so no other connection changes
/// the table meanwhile.
fn ensure_schema(
    conn: &Connection,
    schemas: &mut worker::TableMap<TableSchema>,
    layer: &str,
    op: &LayerOp,
) -> Result<()> {
    if schemas
        .get(&op.table)
        .is_some_and(|schema| !schema.needs_ddl(&op.fields))
    {
        return Ok(());
    }
    // The cache may be behind another process (it never remembers a miss): read again.
    let existing = read_schema(conn, layer, &op.table)?;
    let changes = schema::diff(
        &op.table,
        existing.as_ref(),
        &op.fields,
        op.destructive,
        SqliteDialect.identifier_limit(),
    )?;
    for change in &changes {
        let fill = match change.backfilled_field(existing.as_ref()) {
            Some((field, kind)) => {
                let rows = unique_values(conn, layer, &op.table, field, kind)?;
                schema::backfill_statements(&SqliteDialect, layer, &op.table, field, rows)?
            }
            None => Vec::new(),
        };
        for statement in SqliteDialect.render_change(&op.table, change) {
            conn.execute_batch(&statement.sql)
                .map_err(|e| db_error(layer, e))?;
        }
        for statement in fill {
            conn.prepare(&statement.sql)
                .and_then(|mut stmt| stmt.execute(params(statement.params)))
                .map_err(|e| db_error(layer, e))?;
        }
    }
    schemas.insert(
        op.table.clone(),
        schema::after(&op.table, existing, &changes),
    );
    Ok(())
}

/// The `(rnId, stored value)` of each item whose `field` is not null, in storage form.
fn unique_values(
    conn: &Connection,
    layer: &str,
    table: &str,
    field: &str,
    kind: ColumnKind,
) -> Result<Vec<(String, serde_json::Value)>> {
    let sql = SqliteDialect.render_unique_values(table, field);
    let mut stmt = conn.prepare(&sql).map_err(|e| db_error(layer, e))?;
    let mut rows = stmt.query([]).map_err(|e| db_error(layer, e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| db_error(layer, e))? {
        let id = row.get::<_, String>(0).map_err(|e| db_error(layer, e))?;
        let value = row.get_ref(1).map_err(|e| db_error(layer, e))?;
        let value = cell(table, field, value)?.for_kind(Some(kind)).to_value();
        out.push((id, value));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Writes

/// The op of a plan that is one statement: a single write, without a fence, whose table
/// already fits it (no DDL). SQLite applies such a statement whole or not at all.
fn one_statement<'p>(
    schemas: &worker::TableMap<TableSchema>,
    ops: &'p [LayerOp],
) -> Option<&'p LayerOp> {
    match ops {
        [op] if op.fence.is_none()
            && schemas
                .get(&op.table)
                .is_some_and(|schema| !schema.needs_ddl(&op.fields)) =>
        {
            Some(op)
        }
        _ => None,
    }
}

/// Runs [`one_statement`]'s op. A failure other than a conflict (which says nothing about the
/// table) forgets the table's cached schema: it may be why the write failed.
fn apply_one(
    conn: &Connection,
    schemas: &mut worker::TableMap<TableSchema>,
    ident: &str,
    op: &LayerOp,
) -> Result<()> {
    let result = apply_op(conn, schemas, ident, op);
    if result.as_ref().is_err_and(|e| !e.is_conflict()) {
        schemas.remove(&op.table);
    }
    result
}

fn apply(state: &mut State, ops: &[LayerOp]) -> Result<()> {
    let State {
        conn,
        schemas,
        plans,
        ident,
        ..
    } = &mut *state;
    // One statement is atomic by itself: it runs in autocommit, without BEGIN and COMMIT
    // around it.
    if let Some(op) = one_statement(schemas, ops) {
        let result = apply_one(conn, schemas, ident, op);
        if result.is_ok() {
            state.committed();
        }
        return result;
    }
    // This path may change tables (DDL): their read plans are rebuilt on the next read.
    for op in ops {
        plans.remove(&op.table);
    }
    let result = (|| {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(ident, e))?;
        apply_ops(&tx, schemas, ident, ops)?;
        tx.commit().map_err(|e| db_error(ident, e))
    })();
    if result.is_err() {
        // The transaction rolled back, DDL included: forget what the cache learnt from it.
        for op in ops {
            schemas.remove(&op.table);
        }
    } else {
        state.committed();
    }
    result
}

/// A plan's ops, one after the other, inside a transaction the caller opened; the first
/// failure names its op.
fn apply_ops(
    conn: &Connection,
    schemas: &mut worker::TableMap<TableSchema>,
    ident: &str,
    ops: &[LayerOp],
) -> Result<()> {
    for (i, op) in ops.iter().enumerate() {
        if let Some(fence) = &op.fence {
            locks::check_fence(conn, ident, op, fence)
                .map_err(|e| crate::write::op_failed(i, &op.rn, e))?;
        }
        apply_op(conn, schemas, ident, op).map_err(|e| crate::write::op_failed(i, &op.rn, e))?;
    }
    Ok(())
}

/// Group commit: applies the plans of a batch in one transaction and one sync, each plan's
/// ops in a savepoint of their own, and returns the plans and each one's outcome (after the
/// COMMIT), in the same order.
///
/// The batch is `first`, then each plan `next` gives (it may wait for the next writer) until
/// it gives none. Each plan is applied as soon as it is taken, so the thread applies one
/// writer's plan while the next writer is still preparing its own. When `next` has nothing
/// at once, `first` runs alone through [`apply`].
///
/// A plan that fails is rolled back to its savepoint and gets its own error; the others go
/// on and commit. When the COMMIT (or the BEGIN) fails, every plan gets that error and none is
/// applied. A failure that makes SQLite roll the whole transaction back by itself (a full
/// disk, an I/O error) fails the plan it hit, and the batch taken so far runs again without
/// it. Plans run in their queue order, so the outcome of each is the one it would have had
/// alone, in that order.
pub(super) fn apply_arriving<P: AsRef<[LayerOp]>>(
    state: &mut State,
    first: P,
    mut next: impl FnMut() -> Option<P>,
) -> (Vec<P>, Vec<Result<()>>) {
    let Some(second) = next() else {
        let outcome = apply(state, first.as_ref());
        return (vec![first], vec![outcome]);
    };
    let mut batch = vec![first, second];
    let mut outcomes: Vec<Option<Result<()>>> = vec![None, None];
    // The first round takes plans as they arrive; after a lost transaction the plans taken
    // so far run again, without the one that lost it, and no new plan is taken.
    let mut arriving = Some(&mut next as &mut dyn FnMut() -> Option<P>);
    while let Round::Lost = group_round(state, &mut batch, &mut outcomes, arriving.take()) {
        if outcomes.iter().all(Option::is_some) {
            break;
        }
    }
    let outcomes = outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                Err(Error::database(
                    String::new(),
                    DbErrorKind::Other,
                    "the group commit gave this write no outcome (internal error)".to_owned(),
                ))
            })
        })
        .collect();
    (batch, outcomes)
}

/// How a round of [`group_round`] ended.
enum Round {
    /// Every plan of the round has its outcome.
    Done,
    /// A plan failed and SQLite rolled the whole transaction back: the plans without an
    /// outcome must run again.
    Lost,
}

/// What one plan's turn in a group transaction did.
enum Turn {
    /// Applied, released into the transaction.
    Applied,
    /// Failed and rolled back to its savepoint: the transaction goes on without it.
    Failed(Error),
    /// Failed, and the transaction is gone (SQLite rolled it back, or a savepoint could not
    /// be released or rolled back to).
    Lost(Error),
}

/// Runs a statement of the group commit (`BEGIN`, `SAVEPOINT korm_plan`, `RELEASE`,
/// `COMMIT`; each plan runs in the savepoint `korm_plan`) from the prepared-statement cache:
/// a batch runs them once or twice per plan.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Forgets what the caches know of the plans' tables: their DDL may have rolled back, and
/// their read plans are rebuilt on the next read.
fn forget_tables<P: AsRef<[LayerOp]>>(state: &mut State, plans: &[P]) {
    for op in plans.iter().flat_map(|plan| plan.as_ref()) {
        state.schemas.remove(&op.table);
        state.plans.remove(&op.table);
    }
}

/// One plan's turn inside the open group transaction, in the savepoint `korm_plan`.
fn plan_turn(state: &mut State, plan: &[LayerOp]) -> Turn {
    let State {
        conn,
        schemas,
        plans: read_plans,
        ident,
        ..
    } = &mut *state;
    // One statement needs no savepoint (a failing statement is backed out, the transaction
    // goes on); the savepoint would cost a third of the plan's work on this thread.
    if let Some(op) = one_statement(schemas, plan) {
        return match apply_one(conn, schemas, ident, op) {
            Ok(()) => Turn::Applied,
            Err(error) => {
                let error = crate::write::op_failed(0, &op.rn, error);
                if conn.is_autocommit() {
                    // SQLite rolled the whole transaction back (a full disk, an I/O error).
                    Turn::Lost(error)
                } else {
                    Turn::Failed(error)
                }
            }
        };
    }
    // This path may change tables (DDL): their read plans are rebuilt on the next read.
    for op in plan {
        read_plans.remove(&op.table);
    }
    let result = run_cached(conn, "SAVEPOINT korm_plan")
        .map_err(|e| db_error(ident, e))
        .and_then(|()| apply_ops(conn, schemas, ident, plan));
    let lose = |conn: &Connection, error: Error| {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        Turn::Lost(error)
    };
    match result {
        Ok(()) => match run_cached(conn, "RELEASE korm_plan") {
            Ok(()) => Turn::Applied,
            // Can not happen (the savepoint is open); if it did, the transaction is in an
            // unknown state: give it up.
            Err(e) => lose(conn, db_error(ident, e)),
        },
        Err(error) => {
            // The plan's DDL rolls back with it: forget what the cache learnt from it.
            for op in plan {
                schemas.remove(&op.table);
            }
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back (a full disk, an I/O error).
                return Turn::Lost(error);
            }
            match conn.execute_batch("ROLLBACK TO korm_plan; RELEASE korm_plan") {
                Ok(()) => Turn::Failed(error),
                Err(e) => {
                    tracing::warn!(layer = %ident, error = %e, "could not roll a failed write back to its savepoint; its batch runs again without it");
                    lose(conn, error)
                }
            }
        }
    }
}

/// One transaction over the plans of `batch` without an outcome yet, then over each plan
/// `arriving` gives, filling in their outcomes (see [`apply_arriving`]).
fn group_round<P: AsRef<[LayerOp]>>(
    state: &mut State,
    batch: &mut Vec<P>,
    outcomes: &mut Vec<Option<Result<()>>>,
    mut arriving: Option<&mut dyn FnMut() -> Option<P>>,
) -> Round {
    // The plans that already have their outcome (one lost an earlier round's transaction).
    let settled: Vec<bool> = outcomes.iter().map(Option::is_some).collect();
    if let Err(e) = run_cached(&state.conn, "BEGIN IMMEDIATE") {
        let e = db_error(&state.ident, e);
        for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
            *outcome = Some(Err(shared_failure(&state.ident, &e, "BEGIN")));
        }
        return Round::Done;
    }
    let mut applied = Vec::with_capacity(batch.len());
    let mut i = 0;
    loop {
        if i == batch.len() {
            match arriving.as_mut().and_then(|next| next()) {
                Some(plan) => {
                    batch.push(plan);
                    outcomes.push(None);
                }
                None => break,
            }
        }
        if settled.get(i).copied().unwrap_or(false) {
            i += 1;
            continue;
        }
        match plan_turn(state, batch[i].as_ref()) {
            Turn::Applied => applied.push(i),
            Turn::Failed(e) => outcomes[i] = Some(Err(e)),
            Turn::Lost(e) => {
                // The transaction is gone, and with it what the plans before `i` applied:
                // `i` keeps its error, the others of the round run again.
                forget_tables(state, batch);
                for (j, outcome) in outcomes.iter_mut().enumerate() {
                    if !settled.get(j).copied().unwrap_or(false) {
                        *outcome = None;
                    }
                }
                outcomes[i] = Some(Err(e));
                return Round::Lost;
            }
        }
        i += 1;
    }
    commit_group(state, batch, &applied, outcomes);
    Round::Done
}

/// Commits the open group transaction: the `applied` plans succeed together, or all get the
/// COMMIT's error.
fn commit_group<P: AsRef<[LayerOp]>>(
    state: &mut State,
    plans: &[P],
    applied: &[usize],
    outcomes: &mut [Option<Result<()>>],
) {
    if let Err(e) = run_cached(&state.conn, "COMMIT") {
        let e = db_error(&state.ident, e);
        if !state.conn.is_autocommit() {
            let _ = state.conn.execute_batch("ROLLBACK");
        }
        forget_tables(state, plans);
        for &i in applied {
            outcomes[i] = Some(Err(shared_failure(&state.ident, &e, "COMMIT")));
        }
        return;
    }
    for &i in applied {
        outcomes[i] = Some(Ok(()));
    }
    if !applied.is_empty() {
        state.committed();
    }
}

/// The error each plan of a group commit gets when the shared `statement` failed with `e`.
fn shared_failure(ident: &str, e: &Error, statement: &str) -> Error {
    match e {
        Error::Database {
            kind,
            code,
            message,
            ..
        } => Error::Database {
            layer: ident.to_owned(),
            kind: *kind,
            code: code.clone(),
            message: format!("{statement} of a group commit failed: {message}"),
            source: None,
        },
        other => Error::database(
            ident,
            DbErrorKind::Other,
            format!("{statement} of a group commit failed: {other}"),
        ),
    }
}

fn apply_op(
    conn: &Connection,
    schemas: &mut worker::TableMap<TableSchema>,
    layer: &str,
    op: &LayerOp,
) -> Result<()> {
    let sql = match op.kind {
        OpKind::Insert | OpKind::Update => {
            ensure_schema(conn, schemas, layer, op)?;
            let schema = schemas.get(&op.table).ok_or_else(|| {
                Error::database(
                    layer,
                    DbErrorKind::Schema,
                    format!("table {} vanished while writing", op.table),
                )
            })?;
            SqliteDialect.render_op(op, schema)?
        }
        OpKind::Delete | OpKind::DeleteIfExists => {
            let Some(schema) = schema_of(conn, schemas, layer, &op.table)? else {
                return op.outcome(0);
            };
            SqliteDialect.render_op(op, schema)?
        }
    };
    let failed = |e| write_error(layer, op, schemas.get(&op.table), e);
    let changed = match sql {
        RowSql::Execute(statement) => conn
            .prepare_cached(&statement.sql)
            .and_then(|mut stmt| stmt.execute(params(statement.params)))
            .map_err(failed)?,
        RowSql::Exists(statement) => conn
            .prepare_cached(&statement.sql)
            .and_then(|mut stmt| stmt.exists(params(statement.params)))
            .map(usize::from)
            .map_err(failed)?,
    };
    if changed == 0
        && let Some(schema) = schemas.get(&op.table)
        && let Some((probe, names)) = SqliteDialect.render_probe(op, schema)
    {
        // A conditional write that changed nothing: the item is gone, or changed.
        let width = names.len();
        let matched = conn
            .prepare_cached(&probe.sql)
            .and_then(|mut stmt| {
                stmt.query_row(params(probe.params), |row| {
                    (0..width)
                        .map(|i| row.get::<_, i64>(i).map(|v| v != 0))
                        .collect::<rusqlite::Result<Vec<bool>>>()
                })
                .optional()
            })
            .map_err(|e| db_error(layer, e))?;
        return op.probed(names, matched);
    }
    op.outcome(changed as u64)
}

/// A value as SQLite binds it: booleans as 0/1 (the dialect binds them so already), JSON
/// as text.
fn param(value: SqlValue) -> SqlParam {
    match value {
        SqlValue::Null => SqlParam::Null,
        SqlValue::Integer(i) => SqlParam::Integer(i),
        SqlValue::Double(f) => SqlParam::Real(f),
        SqlValue::Boolean(b) => SqlParam::Integer(i64::from(b)),
        SqlValue::Text(s) | SqlValue::Json(s) => SqlParam::Text(s),
    }
}

/// Binds a statement's values.
fn params(values: Vec<SqlValue>) -> rusqlite::ParamsFromIter<impl Iterator<Item = SqlParam>> {
    rusqlite::params_from_iter(values.into_iter().map(param))
}

// ---------------------------------------------------------------------------------------------
// Reads

/// The row of one id, if any: [`fetch`] of one id, without its lists.
fn fetch_one(state: &mut State, table: &str, id: &str) -> Result<Option<StoredRow>> {
    let State {
        conn,
        schemas,
        plans,
        ident,
        sql,
        ..
    } = state;
    sql.clear();
    SqliteDialect.push_fetch_one(sql, table);
    let mut found = None;
    let read = query_rows(
        conn,
        (schemas, plans),
        ident,
        table,
        sql,
        [id],
        Some(1),
        &mut |row| found = Some(row),
    );
    table_read(read, conn, schemas, ident, table)?;
    Ok(found)
}

/// The outcome of a read of `table`: `Ok(true)` when it ran, `Ok(false)` when it failed
/// because the table does not exist (yet, or any more: another connection dropped it, so
/// the cached schema is read again), else its error. The table is looked up only when the
/// read failed, so a read of an existing table costs no schema lookup.
fn table_read(
    read: Result<()>,
    conn: &Connection,
    schemas: &mut worker::TableMap<TableSchema>,
    ident: &str,
    table: &str,
) -> Result<bool> {
    match read {
        Ok(()) => Ok(true),
        Err(e) => {
            schemas.remove(table);
            match schema_of(conn, schemas, ident, table)? {
                None => Ok(false),
                Some(_) => Err(e),
            }
        }
    }
}

fn fetch(state: &mut State, table: &str, ids: &[String]) -> Result<Vec<StoredRow>> {
    let State {
        conn,
        schemas,
        plans,
        ident,
        ..
    } = state;
    let statement = SqliteDialect.render_fetch(table, ids)?;
    let mut out = Vec::with_capacity(ids.len());
    let read = query_rows(
        conn,
        (schemas, plans),
        ident,
        table,
        &statement.sql,
        statement.params.into_iter().map(param),
        // Ids are the primary key: once every id was found there is no other row.
        Some(ids.len()),
        &mut |row| out.push(row),
    );
    if !table_read(read, conn, schemas, ident, table)? {
        return Ok(Vec::new());
    }
    Ok(out)
}

/// See [`Layer::ref_prefixes`]. The scan is cached until this connection changes a row or
/// another connection commits (`total_changes()` and `PRAGMA data_version`, read in one
/// cheap statement), so repeated filters through a reference cost no extra table scan.
fn ref_prefixes(
    state: &mut State,
    cache: &std::sync::Mutex<PrefixCache>,
    table: &str,
    column: &str,
) -> Result<Vec<String>> {
    let State {
        conn,
        schemas,
        ident,
        ..
    } = state;
    match schema_of(conn, schemas, ident, table)? {
        Some(schema) if schema.kind_of(column).is_some() => {}
        _ => return Ok(Vec::new()),
    }
    let version: (i64, i64) = conn
        .prepare_cached("SELECT total_changes(), (SELECT data_version FROM pragma_data_version)")
        .and_then(|mut s| s.query_row([], |row| Ok((row.get(0)?, row.get(1)?))))
        .map_err(|e| db_error(ident, e))?;
    let mut cache = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let key = (table.to_owned(), column.to_owned());
    if let Some((seen, prefixes)) = cache.get(&key)
        && *seen == version
    {
        return Ok(prefixes.clone());
    }
    let sql = SqliteDialect.render_ref_prefixes(&key.0, &key.1).sql;
    let mut statement = conn.prepare_cached(&sql).map_err(|e| db_error(ident, e))?;
    let rows = statement
        .query_map([], |row| row.get::<_, Option<String>>(0))
        .map_err(|e| db_error(ident, e))?;
    let mut out = Vec::new();
    for row in rows {
        if let Some(prefix) = row.map_err(|e| db_error(ident, e))? {
            out.push(prefix);
        }
    }
    drop(statement);
    cache.insert(key, (version, out.clone()));
    Ok(out)
}

/// The statement `render` makes from a table's schema; `None` when the table does not
/// exist.
fn statement_on(
    state: &mut State,
    table: &str,
    render: impl FnOnce(&TableSchema) -> Result<crate::query::dialect::Statement>,
) -> Result<Option<crate::query::dialect::Statement>> {
    let State {
        conn,
        schemas,
        ident,
        ..
    } = state;
    match schema_of(conn, schemas, ident, table)? {
        Some(schema) => render(schema).map(Some),
        None => Ok(None),
    }
}

fn run_select(state: &mut State, table: &str, select: &Select) -> Result<Vec<StoredRow>> {
    let Some(statement) = statement_on(state, table, |schema| {
        select.statement(&SqliteDialect, schema)
    })?
    else {
        return Ok(Vec::new());
    };
    let State {
        conn,
        schemas,
        plans,
        ident,
        ..
    } = state;
    let params = statement.params.into_iter().map(param);
    let mut out = Vec::with_capacity(16);
    let read = query_rows(
        conn,
        (schemas, plans),
        ident,
        table,
        &statement.sql,
        params,
        None,
        &mut |row| out.push(row),
    );
    if !table_read(read.map(|_| ()), conn, schemas, ident, table)? {
        return Ok(Vec::new());
    }
    Ok(out)
}

fn run_explain(state: &mut State, table: &str, select: &Select) -> Result<String> {
    let Some(statement) = statement_on(state, table, |schema| {
        select.statement(&SqliteDialect, schema)
    })?
    else {
        return Ok(String::new());
    };
    let (conn, ident) = (&state.conn, &state.ident);
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", statement.sql))
        .map_err(|e| db_error(ident, e))?;
    let lines = stmt
        .query_map(
            rusqlite::params_from_iter(statement.params.into_iter().map(param)),
            |row| row.get::<_, String>(3),
        )
        .map_err(|e| db_error(ident, e))?;
    let mut out = Vec::new();
    for line in lines {
        out.push(line.map_err(|e| db_error(ident, e))?);
    }
    Ok(out.join("\n"))
}

fn run_count(state: &mut State, table: &str, filter: Option<&crate::query::Filter>) -> Result<u64> {
    let Some(statement) = statement_on(state, table, |schema| {
        SqliteDialect.render_count(schema, filter)
    })?
    else {
        return Ok(0);
    };
    let (conn, ident) = (&state.conn, &state.ident);
    let mut stmt = conn
        .prepare_cached(&statement.sql)
        .map_err(|e| db_error(ident, e))?;
    let n: i64 = stmt
        .query_row(
            rusqlite::params_from_iter(statement.params.into_iter().map(param)),
            |row| row.get(0),
        )
        .map_err(|e| db_error(ident, e))?;
    Ok(n.unsigned_abs())
}

/// Runs a `SELECT *` on an item table and decodes its rows.
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of State a read needs, borrowed apart"
)]
fn query_rows(
    conn: &Connection,
    (schemas, plans): (
        &mut worker::TableMap<TableSchema>,
        &mut worker::TableMap<PlanEntry>,
    ),
    layer: &str,
    table: &str,
    sql: &str,
    params: impl IntoIterator<Item: rusqlite::ToSql>,
    max_rows: Option<usize>,
    out: &mut dyn FnMut(StoredRow),
) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| db_error(layer, e))?;
    let mut found = 0usize;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(|e| db_error(layer, e))?;
    // The column list is read from the first row, not before: SQLite re-prepares a cached
    // `SELECT *` after the table changed, and only then does it list the new columns.
    let mut plan: Option<Arc<ReadPlan>> = None;
    // Room for a row's text: the longest row so far.
    let mut text_hint = 128;
    while max_rows.is_none_or(|max| found < max)
        && let Some(row) = rows.next().map_err(|e| db_error(layer, e))?
    {
        found += 1;
        let plan = match &mut plan {
            Some(plan) => plan,
            None => plan.insert(column_plan(
                conn,
                schemas,
                plans,
                layer,
                table,
                sql,
                row.as_ref(),
            )?),
        };
        let row = plan.decode(table, text_hint, |i| {
            let value = row.get_ref(i).map_err(|e| db_error(layer, e))?;
            cell(table, &plan.names[i], value)
        })?;
        text_hint = row.text_len().max(text_hint);
        out(row);
    }
    if plan.is_none() {
        // A run that returned no row is counted too (see `Fitting`).
        drop(rows);
        if let Some(fitting) = plans
            .get_mut(table)
            .and_then(|entry| entry.fitting.iter_mut().find(|f| &*f.sql == sql))
        {
            fitting.runs = stmt.get_status(rusqlite::StatementStatus::Run);
        }
    }
    Ok(())
}

/// Whether the statement still returns the columns `plan` was built for.
fn fits(plan: &ReadPlan, stmt: &rusqlite::Statement<'_>) -> bool {
    stmt.column_count() == plan.names.len()
        && plan
            .names
            .iter()
            .enumerate()
            .all(|(i, name)| stmt.column_name(i).is_ok_and(|n| n == &**name))
}

/// A table's read plan, with the statements known to fit it.
#[derive(Debug)]
pub(crate) struct PlanEntry {
    plan: Arc<ReadPlan>,
    /// Statements whose columns were checked against the plan (see [`Fitting`]).
    fitting: Vec<Fitting>,
}

/// A statement (by SQL text) whose columns were checked against its table's plan, with its
/// run and re-prepare counts when last seen. A statement seen again with one more run and no
/// re-prepare is the same prepared statement, unchanged: its columns need no new check. A
/// statement prepared afresh, after leaving the statement cache, counts from zero, so it is
/// never mistaken for the one it replaces: its first run counts 1, and every run is noted
/// here, those that return no row too (before they were, a statement finalized after `r`
/// noted runs and prepared again could reach run `r + 1` through runs returning nothing,
/// and read by an old plan after another connection had reordered the table's columns).
#[derive(Debug)]
struct Fitting {
    sql: Box<str>,
    runs: i32,
    reprepares: i32,
}

/// How many statements per table [`PlanEntry`] remembers.
const FITTING_MAX: usize = 16;

/// The read plan of a table: the cached one while the statement's columns still match it,
/// else a new one. Columns the schema cache does not know (another process added them) make
/// it read the schema again, once.
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of State a read needs, borrowed apart"
)]
fn column_plan(
    conn: &Connection,
    schemas: &mut worker::TableMap<TableSchema>,
    plans: &mut worker::TableMap<PlanEntry>,
    layer: &str,
    table: &str,
    sql: &str,
    stmt: &rusqlite::Statement<'_>,
) -> Result<Arc<ReadPlan>> {
    use rusqlite::StatementStatus;
    // Read after the statement's first step: this run is counted, and a re-prepare (after
    // the schema changed) has happened.
    let runs = stmt.get_status(StatementStatus::Run);
    let reprepares = stmt.get_status(StatementStatus::RePrepare);
    if let Some(entry) = plans.get_mut(table) {
        let seen = entry.fitting.iter().position(|f| &*f.sql == sql);
        if let Some(i) = seen {
            let fitting = &mut entry.fitting[i];
            if fitting.runs.wrapping_add(1) == runs && fitting.reprepares == reprepares {
                fitting.runs = runs;
                return Ok(Arc::clone(&entry.plan));
            }
        }
        if fits(&entry.plan, stmt) {
            match seen {
                Some(i) => {
                    let fitting = &mut entry.fitting[i];
                    (fitting.runs, fitting.reprepares) = (runs, reprepares);
                }
                None => {
                    if entry.fitting.len() == FITTING_MAX {
                        entry.fitting.remove(0);
                    }
                    entry.fitting.push(Fitting {
                        sql: sql.into(),
                        runs,
                        reprepares,
                    });
                }
            }
            return Ok(Arc::clone(&entry.plan));
        }
    }
    let names: Vec<&str> = stmt.column_names();
    let stale = schemas
        .get(table)
        .is_none_or(|s| s.lacks_any(names.iter().copied()));
    if stale && let Some(fresh) = read_schema(conn, layer, table)? {
        schemas.insert(table.to_owned(), fresh);
    }
    let plan = Arc::new(ReadPlan::new(names, schemas.get(table)));
    plans.insert(
        table.to_owned(),
        PlanEntry {
            plan: Arc::clone(&plan),
            fitting: vec![Fitting {
                sql: sql.into(),
                runs,
                reprepares,
            }],
        },
    );
    Ok(plan)
}

/// A stored value as SQLite holds it (its kind then comes from the column). JSON stays text:
/// it is parsed only when a model reads the field.
fn cell<'a>(table: &str, column: &str, value: ValueRef<'a>) -> Result<Cell<'a>> {
    let bad = |what: &str| Error::Decode {
        rn: table.to_owned(),
        reason: format!("column {column:?} holds {what}"),
    };
    Ok(match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Integer(i),
        ValueRef::Real(f) => Cell::Double(f),
        ValueRef::Text(bytes) => {
            Cell::Text(std::str::from_utf8(bytes).map_err(|_| bad("text that is not UTF-8"))?)
        }
        ValueRef::Blob(_) => return Err(bad("a blob, which korm does not store")),
    })
}
