//! The PostgreSQL layer, on sqlx with only its `postgres` feature.
//!
//! One sqlx connection pool per layer. Every `apply` runs inside one transaction, DDL
//! included (PostgreSQL's DDL is transactional, so a failed batch leaves no half-made table).
//! Schema changes take a transaction-scoped advisory lock on the table and read the schema
//! again under it, so two processes adding the same table or column at once do not collide.
//!
//! Storage is korm 1.5's: the domains `public.korm_rn_ref_text` (over `text`) and
//! `public.korm_encrypted_json` (over `jsonb`) mark RN and encrypted columns, objects and
//! arrays are `jsonb`, the key is `"rnId" text PRIMARY KEY` (see the [`dialect`]).
//!
//! The schema cache never remembers a missing table or column: a miss is read again from the
//! database, so a table another process creates later is seen (K8). What a transaction
//! learns is cached only once it commits.

mod backup;
mod dialect;
mod error;
mod locks;
mod meta;
mod options;
mod value;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Column as _, Connection as _, Row as _};

pub use options::{PgOptions, postgres, postgres_pool};

use super::schema::{self, ReadPlan, TableSchema};
use super::server::Source;
use super::server::{self, query};
use super::{Layer, LayerOp, OpKind, Select, committing};
use crate::error::{DbErrorKind, Error, Result, Scrubber};
use crate::model::{ColumnKind, StoredRow};
use crate::query::dialect::{Dialect, RowSql, Statement, validate_table};
pub(crate) use dialect::PgDialect;
use error::PgCodes;

/// The first key of korm's advisory locks (`'korm'` in ASCII); the second is the table's hash.
const LOCK_CLASS: i32 = 0x6b6f_726d;

/// Creates korm 1.5's domains when missing. Two processes may run it at once: the loser of
/// the race gets `duplicate_object` or `unique_violation`, which is swallowed.
const CREATE_DOMAINS: &str = "DO $korm$ BEGIN \
    IF to_regtype('public.korm_rn_ref_text') IS NULL THEN \
        BEGIN CREATE DOMAIN public.korm_rn_ref_text AS text; \
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END; \
    END IF; \
    IF to_regtype('public.korm_encrypted_json') IS NULL THEN \
        BEGIN CREATE DOMAIN public.korm_encrypted_json AS jsonb; \
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END; \
    END IF; \
END $korm$";

/// The columns of a table, with their type, (for a domain) its base type, and whether a
/// unique index has the column alone; no rows when the table does not exist. The table is
/// found through the search path, as every other statement finds it.
const READ_SCHEMA: &str = "SELECT a.attname::text, t.typname::text, \
    coalesce(b.typname, t.typname)::text, \
    EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = a.attrelid \
    AND i.indisunique AND i.indnatts = 1 AND i.indkey[0] = a.attnum) \
    FROM pg_catalog.pg_attribute a \
    JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
    LEFT JOIN pg_catalog.pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype \
    WHERE a.attrelid = to_regclass(quote_ident($1)) AND a.attnum > 0 AND NOT a.attisdropped \
    ORDER BY a.attnum";

/// The names of korm's declared indexes on a table (see [`crate::query::index`]).
const READ_INDEXES: &str = "SELECT c.relname::text FROM pg_catalog.pg_index i \
    JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
    WHERE i.indrelid = to_regclass(quote_ident($1)) AND c.relname LIKE 'korm\\_ix\\_%'";

/// A PostgreSQL database holding items.
pub(crate) struct PgLayer {
    ident: String,
    pool: PgPool,
    /// The URL's passwords, as written and percent-decoded, scrubbed from every message.
    scrubber: Scrubber,
    schemas: Mutex<HashMap<String, TableSchema>>,
    lock_tables: server::LockTables,
    dialect: PgDialect,
}

impl fmt::Debug for PgLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::debug_layer(f, "PgLayer", &self.ident)
    }
}

impl PgLayer {
    /// Connects once (so a wrong URL or an unreachable server fails here, with the driver's
    /// reason; a pool handed over is asked for a connection), creates korm's domains when
    /// missing, and sets up the pool.
    pub(crate) async fn open(ident: String, options: PgOptions) -> Result<PgLayer> {
        let dialect = PgDialect {
            wide_integers: options.wide_integers,
        };
        let (pool, scrubber, conn) = match options.source {
            Source::Pool(pool) => {
                let layer = PgLayer::new(ident, pool, Scrubber::default(), dialect);
                let mut conn = layer
                    .pool
                    .acquire()
                    .await
                    .map_err(|e| layer.connect_error(e))?;
                let domains = sqlx::raw_sql(CREATE_DOMAINS).execute(&mut *conn).await;
                domains.map_err(|e| layer.error(e))?;
                return Ok(layer);
            }
            Source::Url(url) => {
                let scrubber = url.scrubber();
                let fail = |message: String| {
                    Error::database(&ident, DbErrorKind::Connect, scrubber.scrub(&message))
                };
                url.check_password_placement(&["password"]).map_err(fail)?;
                let connect = PgConnectOptions::from_str(url.expose())
                    .map_err(|e| fail(format!("invalid url {}: {e}", url.redacted())))?
                    .application_name("korm");
                // Statements at trace level, as SQLite's (sqlx shows no bound value).
                let connect =
                    sqlx::ConnectOptions::log_statements(connect, log::LevelFilter::Trace);
                let conn = match tokio::time::timeout(
                    options.connect_timeout,
                    PgConnection::connect_with(&connect),
                )
                .await
                {
                    Ok(conn) => conn,
                    Err(_) => {
                        return Err(fail(format!(
                            "no answer from {} within {:?}",
                            url.redacted(),
                            options.connect_timeout
                        )));
                    }
                };
                tracing::debug!(layer = %ident, url = %url.redacted(), "postgres layer open");
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.connect_timeout)
                    .connect_lazy_with(connect);
                (pool, scrubber, conn)
            }
        };
        let layer = PgLayer::new(ident, pool, scrubber, dialect);
        let mut conn = conn.map_err(|e| layer.connect_error(e))?;
        let domains = sqlx::raw_sql(CREATE_DOMAINS).execute(&mut conn).await;
        let _ = conn.close().await;
        domains.map_err(|e| layer.error(e))?;
        Ok(layer)
    }

    fn new(ident: String, pool: PgPool, scrubber: Scrubber, dialect: PgDialect) -> PgLayer {
        PgLayer {
            ident,
            pool,
            scrubber,
            schemas: Mutex::new(HashMap::new()),
            lock_tables: server::LockTables::default(),
            dialect,
        }
    }

    fn error(&self, e: sqlx::Error) -> Error {
        server::db_error::<PgCodes>(&self.ident, &self.scrubber, e, false)
    }

    fn connect_error(&self, e: sqlx::Error) -> Error {
        server::db_error::<PgCodes>(&self.ident, &self.scrubber, e, true)
    }

    fn cached(&self, table: &str) -> Option<TableSchema> {
        self.schemas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(table)
            .cloned()
    }

    fn remember(&self, schema: TableSchema) {
        self.schemas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(schema.table.clone(), schema);
    }

    fn forget(&self, table: &str) {
        self.schemas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(table);
    }

    /// The schema of a table outside a transaction: cached, or read (and cached) when the
    /// table exists.
    async fn schema(&self, table: &str) -> Result<Option<TableSchema>> {
        if let Some(schema) = self.cached(table) {
            return Ok(Some(schema));
        }
        let mut conn = self.pool.acquire().await.map_err(|e| self.error(e))?;
        let schema = read_schema(&mut conn, table)
            .await
            .map_err(|e| self.error(e))?;
        if let Some(schema) = &schema {
            claim_cut_name(self, &mut conn, table, false).await?;
            self.remember(schema.clone());
        }
        Ok(schema)
    }
}

/// Checks an item table name: korm's pattern. A name over PostgreSQL's 63 bytes is cut as
/// the server (and so korm 1.5) cuts it (see [`claim_cut_name`]).
fn check_table(table: &str) -> Result<()> {
    validate_table(table)
}

/// The comment that records which collection a table with a cut name holds.
fn name_comment(table: &str) -> String {
    format!("korm collection {table}")
}

/// For a collection whose table name PostgreSQL cuts to 63 bytes: the collection the table
/// was made for, as its comment records it, must be this one (two collections whose names
/// share the first 63 bytes would otherwise share one table). A table without the comment
/// (korm 1.5 made it) is taken as this collection's, and with `claim` the comment is written
/// then, so a later collection of the same cut name is refused.
async fn claim_cut_name(
    layer: &PgLayer,
    conn: &mut PgConnection,
    table: &str,
    claim: bool,
) -> Result<()> {
    let physical = PgDialect::default().physical_table(table).into_owned();
    if physical.len() == table.len() {
        return Ok(());
    }
    let comment: Option<String> =
        sqlx::query_scalar("SELECT obj_description(to_regclass(quote_ident($1)), 'pg_class')")
            .bind(&physical)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| layer.error(e))?;
    match comment {
        Some(comment) if comment == name_comment(table) => Ok(()),
        Some(comment) => Err(Error::InvalidIdentifier {
            what: "table",
            name: crate::error::clip(table),
            reason: format!(
                "PostgreSQL cuts names to 63 bytes, and table {physical} holds another \
                 collection ({}): the two collections' names must differ in their first 63 \
                 bytes",
                crate::error::clip(comment.trim_start_matches("korm collection "))
            ),
        }),
        None if claim => {
            // The name is korm's (validated), so it can be a literal: COMMENT takes no
            // parameters.
            let sql = format!(
                "COMMENT ON TABLE {} IS '{}'",
                PgDialect::default().quote_identifier(&physical),
                name_comment(table)
            );
            query(Statement::ddl(sql))
                .execute(&mut *conn)
                .await
                .map(|_| ())
                .map_err(|e| layer.error(e))
        }
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Schema

/// Reads a table's schema; `None` if the table does not exist.
async fn read_schema(
    conn: &mut PgConnection,
    table: &str,
) -> std::result::Result<Option<TableSchema>, sqlx::Error> {
    let rows: Vec<(String, String, String, bool)> = sqlx::query_as(READ_SCHEMA)
        .bind(PgDialect::default().physical_table(table).as_ref())
        .fetch_all(&mut *conn)
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut schema = TableSchema {
        table: table.to_owned(),
        ..TableSchema::default()
    };
    for (name, type_name, base, keyed) in rows {
        match base.as_str() {
            "int2" => schema.narrow_integers.push((name.clone(), 16)),
            "int4" => schema.narrow_integers.push((name.clone(), 32)),
            _ => {}
        }
        schema.add_read_column(name, dialect::kind_of_type(&type_name, &base), keyed);
    }
    schema.indexes = sqlx::query_scalar(READ_INDEXES)
        .bind(PgDialect::default().physical_table(table).as_ref())
        .fetch_all(&mut *conn)
        .await?;
    Ok(Some(schema))
}

/// What one `apply` knows of the tables it touches: read inside its transaction, cached
/// for everyone only after it commits.
struct Working<'a> {
    layer: &'a PgLayer,
    tables: HashMap<String, TableSchema>,
}

impl Working<'_> {
    async fn schema(
        &mut self,
        conn: &mut PgConnection,
        table: &str,
    ) -> Result<Option<TableSchema>> {
        if let Some(schema) = self.tables.get(table) {
            return Ok(Some(schema.clone()));
        }
        let schema = match self.layer.cached(table) {
            Some(schema) => Some(schema),
            None => {
                let read = read_schema(conn, table)
                    .await
                    .map_err(|e| self.layer.error(e))?;
                if read.is_some() {
                    // A table found by a cut name must hold this collection, DDL or not.
                    claim_cut_name(self.layer, conn, table, false).await?;
                }
                read
            }
        };
        if let Some(schema) = &schema {
            self.tables.insert(table.to_owned(), schema.clone());
        }
        Ok(schema)
    }

    /// Makes the table fit the op's fields (the planner's [`schema::diff`]). The cache may
    /// be behind another process: the table is read again under its advisory lock first.
    async fn ensure_schema(
        &mut self,
        conn: &mut PgConnection,
        op: &LayerOp,
    ) -> Result<TableSchema> {
        let table = &op.table;
        if let Some(schema) = self.schema(conn, table).await?
            && !schema.needs_ddl(&op.fields)
        {
            return Ok(schema);
        }
        let map = |e| self.layer.error(e);
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(LOCK_CLASS)
            .bind(table)
            .execute(&mut *conn)
            .await
            .map_err(map)?;
        let existing = read_schema(conn, table).await.map_err(map)?;
        if existing.is_some() {
            claim_cut_name(self.layer, conn, table, true).await?;
        }
        let dialect = self.layer.dialect;
        let limit = dialect.identifier_limit();
        let changes = schema::diff(table, existing.as_ref(), &op.fields, op.destructive, limit)?;
        for change in &changes {
            let fill = match change.backfilled_field(existing.as_ref()) {
                Some((field, kind)) => {
                    let rows = unique_values(conn, &dialect, (table, field, kind), map).await?;
                    let layer = &self.layer.ident;
                    schema::backfill_statements(&dialect, layer, table, field, rows)?
                }
                None => Vec::new(),
            };
            for statement in dialect.render_change(table, change).into_iter().chain(fill) {
                query(statement).execute(&mut *conn).await.map_err(map)?;
            }
        }
        if existing.is_none() {
            claim_cut_name(self.layer, conn, table, true).await?;
        }
        // Read back (under the lock): the catalog says what the planner can not, such as
        // the width of an integer column.
        let schema = read_schema(conn, table)
            .await
            .map_err(map)?
            .unwrap_or_else(|| schema::after(table, existing, &changes));
        self.tables.insert(table.clone(), schema.clone());
        Ok(schema)
    }

    /// Writes a run of plain inserts ([`server::runs`]) as one multi-row INSERT when
    /// their table fits all of them already: `false`, nothing written, when it does not or
    /// when the statement fails (the ops then run one by one, and the failing one names its
    /// own error, as without this).
    async fn insert_rows(&mut self, conn: &mut PgConnection, ops: &[LayerOp]) -> Result<bool> {
        let Some(schema) = self.schema(conn, &ops[0].table).await? else {
            return Ok(false);
        };
        let Some(statement) = server::insert_statement(&self.layer.dialect, &schema, ops) else {
            return Ok(false);
        };
        server::insert_rows::<sqlx::Postgres>(conn, statement, ops.len())
            .await
            .map_err(|e| self.layer.error(e))
    }

    async fn apply_op(&mut self, conn: &mut PgConnection, op: &LayerOp) -> Result<()> {
        let (sql, schema) = match op.kind {
            OpKind::Insert | OpKind::Update => {
                let schema = self.ensure_schema(conn, op).await?;
                (self.layer.dialect.render_op(op, &schema)?, schema)
            }
            OpKind::Delete | OpKind::DeleteIfExists => {
                let Some(schema) = self.schema(conn, &op.table).await? else {
                    return op.outcome(0);
                };
                (self.layer.dialect.render_op(op, &schema)?, schema)
            }
        };
        let layer = self.layer;
        let failed =
            |e| server::write_error::<PgCodes>(&layer.ident, &layer.scrubber, op, Some(&schema), e);
        let changed = match sql {
            RowSql::Execute(statement) => query(statement)
                .execute(&mut *conn)
                .await
                .map_err(failed)?
                .rows_affected(),
            RowSql::Exists(statement) => query(statement)
                .fetch_optional(&mut *conn)
                .await
                .map_err(failed)?
                .map_or(0, |_| 1),
        };
        if changed == 0
            && let Some((probe, names)) = self.layer.dialect.render_probe(op, &schema)
        {
            // A conditional write that changed nothing: the item is gone, or changed.
            let row = query(probe)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| self.layer.error(e))?;
            let matched = match row {
                None => None,
                Some(row) => Some(
                    (0..names.len())
                        .map(|i| row.try_get::<i32, _>(i).map(|v| v != 0))
                        .collect::<std::result::Result<Vec<bool>, _>>()
                        .map_err(|e| self.layer.error(e))?,
                ),
            };
            return op.probed(names, matched);
        }
        op.outcome(changed)
    }
}

// ---------------------------------------------------------------------------------------------
// The layer

#[async_trait]
impl Layer for PgLayer {
    fn ident(&self) -> &str {
        &self.ident
    }

    async fn apply(&self, ops: Vec<LayerOp>) -> Result<()> {
        for op in &ops {
            check_table(&op.table)?;
        }
        let mut working = Working {
            layer: self,
            tables: HashMap::new(),
        };
        // A single write whose table already fits it (as far as the cache knows) is one
        // statement, atomic by itself: no transaction, one round trip instead of three.
        if let [op] = ops.as_slice()
            && op.fence.is_none()
            && self
                .cached(&op.table)
                .is_some_and(|schema| !schema.needs_ddl(&op.fields))
        {
            let mut conn = self.pool.acquire().await.map_err(|e| self.error(e))?;
            let result = working.apply_op(&mut conn, op).await;
            if result.as_ref().is_err_and(|e| !e.is_conflict()) {
                self.forget(&op.table);
            }
            return result.map_err(|e| committing(&self.ident, &op.rn, e));
        }
        if ops.iter().any(|op| op.fence.is_some()) {
            self.ensure_fence_table().await?;
        }
        let result = async {
            let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
            for run in server::runs(&ops) {
                if run.len() > 1 && working.insert_rows(&mut tx, &ops[run.clone()]).await? {
                    continue;
                }
                // One op, or a run whose multi-row INSERT failed: the failing op names itself.
                for i in run {
                    let op = &ops[i];
                    let at = |e| crate::write::op_failed(i, &op.rn, e);
                    if let Some(fence) = &op.fence {
                        locks::check_fence(self, &mut tx, op, fence)
                            .await
                            .map_err(at)?;
                    }
                    working.apply_op(&mut tx, op).await.map_err(at)?;
                }
            }
            let first = ops.first().map_or("", |op| op.rn.as_str());
            tx.commit()
                .await
                .map_err(|e| committing(&self.ident, first, self.error(e)))
        }
        .await;
        match &result {
            Ok(()) => {
                for (_, schema) in working.tables {
                    self.remember(schema);
                }
            }
            Err(_) => {
                // The transaction rolled back, DDL included: forget what the cache knew of
                // these tables (it may be why the write failed).
                for op in &ops {
                    self.forget(&op.table);
                }
            }
        }
        result
    }

    async fn fetch(&self, table: &str, ids: Vec<String>) -> Result<Vec<StoredRow>> {
        check_table(table)?;
        if self.schema(table).await?.is_none() {
            return Ok(Vec::new());
        }
        let statement = self.dialect.render_fetch(table, &ids)?;
        self.query_rows(table, statement).await
    }

    async fn select(&self, table: &str, select: Select) -> Result<Vec<StoredRow>> {
        check_table(table)?;
        let Some(schema) = self.schema(table).await? else {
            return Ok(Vec::new());
        };
        let rewritten = match &select.filter {
            Some(filter) => dialect::without_nul(filter)?,
            None => None,
        };
        let select = Select {
            filter: rewritten.or(select.filter),
            ..select
        };
        let statement = select.statement(&self.dialect, &schema)?;
        self.query_rows(table, statement).await
    }

    async fn create_index(
        &self,
        table: &str,
        path: &crate::query::FieldPath,
        kind: crate::query::IndexKind,
    ) -> Result<()> {
        check_table(table)?;
        let physical = self.dialect.physical_table(table).into_owned();
        let analyze = format!("ANALYZE {}", self.dialect.quote_identifier(&physical));
        // The new expression's statistics at once: without them the planner guesses its
        // selectivity and may keep scanning a large table.
        let statements = self
            .dialect
            .render_create_index(table, path, kind)
            .into_iter()
            .map(|s| s.sql)
            .chain([analyze]);
        for sql in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
        }
        self.forget(table);
        Ok(())
    }

    async fn explain(&self, table: &str, select: Select) -> Result<String> {
        check_table(table)?;
        let Some(schema) = self.schema(table).await? else {
            return Ok(String::new());
        };
        let statement = select.statement(&self.dialect, &schema)?;
        let statement = Statement {
            sql: format!("EXPLAIN {}", statement.sql),
            params: statement.params,
        };
        let rows = query(statement)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.try_get::<String, _>(0).map_err(|e| self.error(e))?);
        }
        Ok(out.join("\n"))
    }

    async fn count(&self, table: &str, filter: Option<crate::query::Filter>) -> Result<u64> {
        check_table(table)?;
        let Some(schema) = self.schema(table).await? else {
            return Ok(0);
        };
        let rewritten = match &filter {
            Some(filter) => dialect::without_nul(filter)?,
            None => None,
        };
        let statement = self
            .dialect
            .render_count(&schema, rewritten.as_ref().or(filter.as_ref()))?;
        match query(statement).fetch_one(&self.pool).await {
            Ok(row) => {
                let n: i64 = row.try_get(0).map_err(|e| self.error(e))?;
                Ok(n.unsigned_abs())
            }
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
                self.forget(table);
                Ok(0)
            }
            Err(e) => Err(self.error(e)),
        }
    }

    async fn table_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        check_table(table)?;
        self.schema(table).await
    }

    async fn fresh_table_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        check_table(table)?;
        self.forget(table);
        self.schema(table).await
    }

    async fn ref_prefixes(&self, table: &str, column: &str) -> Result<Vec<String>> {
        check_table(table)?;
        match self.schema(table).await? {
            Some(schema) if schema.kind_of(column).is_some() => {}
            _ => return Ok(Vec::new()),
        }
        let rows: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(
            self.dialect.render_ref_prefixes(table, column).sql,
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        Ok(rows.into_iter().flatten().collect())
    }

    fn backend(&self) -> &'static str {
        "pg"
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Reads

impl PgLayer {
    /// Runs a `SELECT *` on an item table and decodes its rows. A table dropped since its
    /// schema was read gives no rows.
    async fn query_rows(&self, table: &str, statement: Statement) -> Result<Vec<StoredRow>> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.error(e))?;
        let mut result = query(statement.clone()).fetch_all(&mut *conn).await;
        if let Err(sqlx::Error::Database(db)) = &result
            && db.code().as_deref() == Some("0A000")
        {
            // "cached plan must not change result type": the table gained or lost a column
            // since this connection prepared the `SELECT *`. Prepare again, once.
            conn.clear_cached_statements()
                .await
                .map_err(|e| self.error(e))?;
            result = query(statement).fetch_all(&mut *conn).await;
        }
        drop(conn);
        let rows = match result {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
                self.forget(table);
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.error(e)),
        };
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let plan = self.read_plan(table, first).await?;
        rows.iter()
            .map(|row| {
                plan.decode(table, 128, |i| {
                    let value = row.try_get_raw(i).map_err(|_| Error::Decode {
                        rn: table.to_owned(),
                        reason: format!("column {i} is missing from the result"),
                    })?;
                    value::cell(table, &plan.names[i], plan.columns[i].kind(), value)
                })
            })
            .collect()
    }

    /// How to read a result; columns the cache does not know (another process added them)
    /// make it read the schema again, once.
    async fn read_plan(&self, table: &str, row: &PgRow) -> Result<ReadPlan> {
        let names = || row.columns().iter().map(|c| c.name());
        let mut schema = self.cached(table);
        if schema.as_ref().is_none_or(|s| s.lacks_any(names())) {
            self.forget(table);
            schema = self.schema(table).await?;
        }
        Ok(ReadPlan::new(names(), schema.as_ref()))
    }
}

impl server::ServerDb for sqlx::Postgres {
    fn statement(statement: Statement) -> sqlx::query::Query<'static, Self, Self::Arguments> {
        query(statement)
    }

    fn rows_affected(done: &Self::QueryResult) -> u64 {
        done.rows_affected()
    }
}

/// The `(rnId, stored value)` of each item whose `field` is not null, in storage form;
/// `map` maps the driver's errors.
async fn unique_values(
    conn: &mut PgConnection,
    dialect: &PgDialect,
    (table, field, kind): (&str, &str, ColumnKind),
    map: impl Fn(sqlx::Error) -> Error,
) -> Result<Vec<(String, serde_json::Value)>> {
    let sql = dialect.render_unique_values(table, field);
    let rows = query(Statement::ddl(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(&map)?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get(0).map_err(&map)?;
            let raw = row.try_get_raw(1).map_err(&map)?;
            let value = value::cell(table, field, Some(kind), raw)?.for_kind(Some(kind));
            Ok((id, value.to_value()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_tables_are_cut_as_the_server_cuts_them() {
        let long = format!("__items__{}__k", "a".repeat(60));
        check_table(&long).unwrap();
        let cut = PgDialect::default().physical_table(&long).into_owned();
        assert_eq!((cut.len(), cut.as_str()), (63, &long[..63]));
        check_table("__items__users__freetier").unwrap();
    }
}
