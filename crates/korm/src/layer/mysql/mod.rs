//! The MySQL/MariaDB layer, on sqlx (its `mysql` feature only) with one connection pool.
//!
//! # Storage, as korm 1.5 writes it
//! - Item tables `__items__{namespace}__{kind}`; a name over 64 characters (MySQL's limit)
//!   becomes `__items__` + the first 32 hex characters of SHA-256 of the full name (the
//!   dialect's `physical_table`, the one place that maps the two).
//! - Column types: `rnId VARCHAR(255)` primary key, text `TEXT`, whole numbers `BIGINT`,
//!   doubles `DOUBLE`, booleans `BOOLEAN` (`TINYINT(1)`), objects, arrays and encryption
//!   envelopes `JSON` (MariaDB: `LONGTEXT` with a `json_valid` check), RN references `TEXT`.
//!   korm 1.5 declared whole numbers `INT` (32 bits, shown as `int(11)` in the fixture);
//!   korm-rs reads any integer type but creates `BIGINT`, since an `i64` does not fit `INT`.
//! - `__korm_meta__(table_name, column_name, kind)` holds the kinds a column type can not
//!   tell: `rn` (a reference in a TEXT column) and `encrypted` (an envelope in a JSON
//!   column), keyed by the full table name, exactly the rows korm 1.5 writes.
//! - A unique field's shadow column `__korm_unique__{field}` is `VARCHAR(128)` (a SHA-512
//!   hex fingerprint) with a unique index named as on SQLite (`__korm_u_` + 24 hex).
//!
//! # Writes and DDL
//! MySQL commits implicitly before every DDL statement, so [`Layer::apply`] runs in two
//! phases: first the schema work of every op (tables, columns, meta rows; each statement
//! commits on its own), then every row write inside one transaction. A failure in the second
//! phase rolls back every row write; a table or column created in the first stays (it is
//! empty or NULL, and the next write would create it anyway), and a destructively recreated
//! column stays recreated. `__korm_meta__` is kept truthful at every step (see the dialect's
//! `render_change`).
//!
//! The schema cache never remembers a miss (invariant 7): a missing table or column is read
//! again from the database, and a failed apply forgets what it cached for its tables.

mod backup;
mod dialect;
mod error;
mod locks;
mod meta;
mod options;
mod value;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{Column as _, Executor, MySql, Row as _};

pub use options::{MySqlOptions, mysql, mysql_pool};

use super::schema::{self, ID_COLUMN, ReadColumn, ReadPlan, TableSchema};
use super::server::Source;
use super::server::{self, query};
use super::{Layer, LayerOp, OpKind, Select, committing};
use crate::error::{DbErrorKind, Error, Result, Scrubber};
use crate::model::{Cell, ColumnKind, SqlValue, StoredRow};
use crate::query::dialect::{Dialect, RowSql, Statement, validate_table};
pub(crate) use dialect::MySqlDialect;
use dialect::{META_TABLE, physical_table};
use error::MySqlCodes;

/// Errors a DDL statement may meet when another program made the same change first: a
/// duplicate column or key name, or a column already gone. The schema is read again after.
const TOLERATED_DDL: [&str; 3] = ["1060", "1061", "1091"];

/// The columns of a table in order: name, data type, column type, and whether a unique
/// index has the column alone (1 or 0).
const READ_COLUMNS: &str = "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, EXISTS ( \
    SELECT 1 FROM information_schema.STATISTICS s \
    WHERE s.TABLE_SCHEMA = c.TABLE_SCHEMA AND s.TABLE_NAME = c.TABLE_NAME \
    AND s.COLUMN_NAME = c.COLUMN_NAME AND s.NON_UNIQUE = 0 AND s.SEQ_IN_INDEX = 1 \
    AND NOT EXISTS (SELECT 1 FROM information_schema.STATISTICS t \
    WHERE t.TABLE_SCHEMA = s.TABLE_SCHEMA AND t.TABLE_NAME = s.TABLE_NAME \
    AND t.INDEX_NAME = s.INDEX_NAME AND t.SEQ_IN_INDEX = 2)) \
    FROM information_schema.COLUMNS c \
    WHERE c.TABLE_SCHEMA = DATABASE() AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION";

/// A MySQL or MariaDB database holding items.
pub(crate) struct MySqlLayer {
    ident: String,
    pool: MySqlPool,
    /// Schemas by full table name. Held across the schema phase of a write, so two writes of
    /// this process never race to add one column.
    schemas: tokio::sync::Mutex<HashMap<String, TableSchema>>,
    /// Texts that must never appear in an error (the URL's password, raw and decoded).
    scrubber: Scrubber,
    closed: AtomicBool,
    lock_tables: server::LockTables,
    dialect: MySqlDialect,
}

impl fmt::Debug for MySqlLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::debug_layer(f, "MySqlLayer", &self.ident)
    }
}

impl MySqlLayer {
    /// Connects to the database (one connection is opened now, so a wrong URL or an
    /// unreachable server fails here).
    pub(crate) async fn open(ident: String, options: MySqlOptions) -> Result<MySqlLayer> {
        let (pool, scrubber, shown) = match options.source {
            Source::Pool(pool) => (pool, Scrubber::default(), "<a sqlx pool>".to_owned()),
            Source::Url(url) => {
                let scrubber = url.scrubber();
                let shown = url.redacted();
                let fail = |message: String| {
                    Error::database(&ident, DbErrorKind::Connect, scrubber.scrub(&message))
                };
                let scheme = url.expose().split("://").next().unwrap_or_default();
                if !url.expose().contains("://") || !matches!(scheme, "mysql" | "mariadb") {
                    return Err(fail(format!("{shown} is not a mysql:// or mariadb:// url")));
                }
                // sqlx-mysql reads no password from the query: one there would be ignored.
                url.check_password_placement(&[]).map_err(fail)?;
                let connect: MySqlConnectOptions = url
                    .expose()
                    .parse()
                    .map_err(|e: sqlx::Error| fail(format!("invalid url {shown}: {e}")))?;
                // Statements at trace level, as SQLite's (sqlx shows no bound value).
                let connect =
                    sqlx::ConnectOptions::log_statements(connect, log::LevelFilter::Trace);
                tracing::debug!(layer = %ident, url = %shown, "opening MySQL layer");
                let pool = MySqlPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.connect_timeout)
                    .connect_lazy_with(connect);
                (pool, scrubber, shown)
            }
        };
        let layer = MySqlLayer {
            ident,
            pool,
            schemas: tokio::sync::Mutex::new(HashMap::new()),
            scrubber,
            closed: AtomicBool::new(false),
            lock_tables: server::LockTables::default(),
            dialect: MySqlDialect {
                wide_integers: options.wide_integers,
                binary: dialect::MARIADB_BINARY,
            },
        };
        // One connection now: a wrong URL or a server that is down fails here. It also says
        // which server this is: MariaDB and MySQL 8 name their unpadded binary collations
        // differently.
        let mut layer = layer;
        let version: std::result::Result<String, sqlx::Error> =
            sqlx::query_scalar("SELECT VERSION()")
                .fetch_one(&layer.pool)
                .await;
        match version {
            Ok(version) if !version.to_ascii_lowercase().contains("mariadb") => {
                layer.dialect.binary = dialect::MYSQL_BINARY;
            }
            Ok(_) => {}
            Err(e) => {
                return Err(
                    match server::db_error::<MySqlCodes>(&layer.ident, &layer.scrubber, e, true) {
                        Error::Database {
                            layer,
                            kind,
                            code,
                            message,
                            source,
                        } => Error::Database {
                            layer,
                            kind,
                            code,
                            message: format!("{shown}: {message}"),
                            source,
                        },
                        other => other,
                    },
                );
            }
        }
        Ok(layer)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::PoolClosed);
        }
        Ok(())
    }

    fn error(&self, e: sqlx::Error) -> Error {
        server::db_error::<MySqlCodes>(&self.ident, &self.scrubber, e, false)
    }

    /// Runs a statement that returns no rows; the number of rows it matched (sqlx connects
    /// with `CLIENT_FOUND_ROWS`: an update counts the rows it found, changed or not).
    async fn execute<'e, E>(&self, executor: E, statement: Statement) -> Result<u64>
    where
        E: Executor<'e, Database = MySql>,
    {
        query(statement)
            .execute(executor)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| self.error(e))
    }

    /// Runs a DDL statement (each commits on its own); a failure another program's same
    /// change explains ([`TOLERATED_DDL`]) is success.
    async fn ddl(&self, statement: Statement) -> Result<()> {
        match query(statement).execute(&self.pool).await {
            Ok(_) => Ok(()),
            Err(e) if error::number(&e).is_some_and(|c| TOLERATED_DDL.contains(&c.as_str())) => {
                Ok(())
            }
            Err(e) => Err(self.error(e)),
        }
    }

    async fn fetch_rows(&self, statement: Statement) -> Result<Vec<MySqlRow>> {
        query(statement)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }

    // -----------------------------------------------------------------------------------------
    // Schema

    /// Reads a table's schema from the database; `None` if the table does not exist.
    async fn read_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        let rows = self
            .fetch_rows(Statement {
                sql: READ_COLUMNS.to_owned(),
                params: vec![SqlValue::Text(physical_table(table))],
            })
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let meta = self.read_meta(table).await?;
        let mut schema = TableSchema {
            table: table.to_owned(),
            ..TableSchema::default()
        };
        for row in &rows {
            let name = value::text_at(row, 0)?.unwrap_or_default();
            let data_type = value::text_at(row, 1)?.unwrap_or_default();
            let column_type = value::text_at(row, 2)?.unwrap_or_default();
            // A declared index's invisible column (see `crate::query::index`), not a field.
            if name.starts_with("korm$ix_") {
                schema.indexes.push(name.replacen('$', "_", 1));
                continue;
            }
            let by_type = dialect::kind_of_type(&data_type, &column_type);
            if let Some(bits) = dialect::narrow_integer_bits(&data_type, &column_type) {
                schema.narrow_integers.push((name.clone(), bits));
            }
            let kind = dialect::kind_with_meta(by_type, meta.get(&name).copied());
            let keyed = row.try_get::<i64, _>(3).map_err(|e| self.error(e))? != 0;
            schema.add_read_column(name, kind, keyed);
        }
        Ok(Some(schema))
    }

    /// The `__korm_meta__` kinds of a table's columns (none when the meta table is missing).
    async fn read_meta(&self, table: &str) -> Result<HashMap<String, crate::ColumnKind>> {
        let statement = Statement {
            sql: format!(
                "SELECT `column_name`, `kind` FROM {} WHERE `table_name` = ?",
                self.dialect.quote_identifier(META_TABLE)
            ),
            params: vec![SqlValue::Text(table.to_owned())],
        };
        let rows = match query(statement).fetch_all(&self.pool).await {
            Ok(rows) => rows,
            // ER_NO_SUCH_TABLE: no meta table, no meta rows.
            Err(e) if error::number(&e).as_deref() == Some("1146") => {
                return Ok(HashMap::new());
            }
            Err(e) => return Err(self.error(e)),
        };
        let mut out = HashMap::new();
        for row in &rows {
            if let (Some(column), Some(kind)) = (value::text_at(row, 0)?, value::text_at(row, 1)?)
                && let Some(kind) = dialect::kind_of_meta(&kind)
            {
                out.insert(column, kind);
            }
        }
        Ok(out)
    }

    /// The schema of a table: from the cache, or read (and cached) when the table exists.
    async fn schema_of<'a>(
        &self,
        schemas: &'a mut HashMap<String, TableSchema>,
        table: &str,
    ) -> Result<Option<&'a mut TableSchema>> {
        if !schemas.contains_key(table) {
            match self.read_schema(table).await? {
                Some(schema) => {
                    schemas.insert(table.to_owned(), schema);
                }
                None => return Ok(None),
            }
        }
        Ok(schemas.get_mut(table))
    }

    /// The cached schema of a table (read when missing; `None` if it does not exist).
    async fn cached_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        let mut schemas = self.schemas.lock().await;
        Ok(self.schema_of(&mut schemas, table).await?.cloned())
    }

    /// Makes the table fit the op's fields (the planner's [`schema::diff`]). Each statement
    /// commits on its own, and another program may be changing the table at the same time:
    /// the table is read again after the changes, and planned again if it still does not fit
    /// (another program created it first, with other columns).
    async fn ensure_schema(
        &self,
        schemas: &mut HashMap<String, TableSchema>,
        op: &LayerOp,
    ) -> Result<()> {
        let table = &op.table;
        if schemas.get(table).is_some_and(|s| !s.needs_ddl(&op.fields)) {
            return Ok(());
        }
        let mut existing = self.read_schema(table).await?;
        for _ in 0..3 {
            let limit = self.dialect.identifier_limit();
            let changes =
                schema::diff(table, existing.as_ref(), &op.fields, op.destructive, limit)?;
            if changes.is_empty() {
                break;
            }
            for change in &changes {
                let fill = match change.backfilled_field(existing.as_ref()) {
                    Some((field, kind)) => {
                        let rows = self.unique_values(table, field, kind).await?;
                        let dialect = &self.dialect;
                        schema::backfill_statements(dialect, &self.ident, table, field, rows)?
                    }
                    None => Vec::new(),
                };
                for statement in self.dialect.render_change(table, change) {
                    self.ddl(statement).await?;
                }
                for statement in fill {
                    self.execute(&self.pool, statement).await?;
                }
            }
            existing = self.read_schema(table).await?;
        }
        match existing {
            Some(schema) if !schema.needs_ddl(&op.fields) => {
                schemas.insert(table.clone(), schema);
                Ok(())
            }
            _ => Err(Error::database(
                &self.ident,
                DbErrorKind::Schema,
                format!("table {table} does not take the write's columns after its schema changes"),
            )),
        }
    }

    /// The `(rnId, stored value)` of each item whose `field` is not null, in storage form.
    async fn unique_values(
        &self,
        table: &str,
        field: &str,
        kind: ColumnKind,
    ) -> Result<Vec<(String, serde_json::Value)>> {
        let sql = self.dialect.render_unique_values(table, field);
        let rows = self.fetch_rows(Statement::ddl(sql)).await?;
        let read = ReadColumn::Field(field.into(), Some(kind));
        rows.iter()
            .map(|row| {
                let Cell::Text(id) = value::cell(table, ID_COLUMN, &ReadColumn::Id, row, 0)? else {
                    return Err(Error::Decode {
                        rn: table.to_owned(),
                        reason: "a row's rnId is not text".to_owned(),
                    });
                };
                let value = value::cell(table, field, &read, row, 1)?.for_kind(Some(kind));
                Ok((id.to_owned(), value.to_value()))
            })
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Writes

    async fn apply_ops(&self, ops: &[LayerOp]) -> Result<()> {
        // Phase 1: the schema, outside the transaction (DDL commits implicitly).
        let mut known: HashMap<String, Option<TableSchema>> = HashMap::new();
        {
            let mut schemas = self.schemas.lock().await;
            for (i, op) in ops.iter().enumerate() {
                if matches!(op.kind, OpKind::Insert | OpKind::Update) {
                    self.ensure_schema(&mut schemas, op)
                        .await
                        .map_err(|e| crate::write::op_failed(i, &op.rn, e))?;
                }
            }
            for op in ops {
                if !known.contains_key(&op.table) {
                    let schema = self.schema_of(&mut schemas, &op.table).await?.cloned();
                    known.insert(op.table.clone(), schema);
                }
            }
        }
        // Phase 2: every row write in one transaction; a single write is one statement,
        // atomic by itself, and needs no transaction (one round trip instead of three).
        let fenced = ops.iter().any(|op| op.fence.is_some());
        if fenced {
            self.ensure_fence_table().await?;
        }
        if let [op] = ops
            && !fenced
        {
            let schema = known.get(&op.table).and_then(Option::as_ref);
            let mut conn = self.pool.acquire().await.map_err(|e| self.error(e))?;
            return self
                .apply_op(&mut conn, schema, op)
                .await
                .map_err(|e| committing(&self.ident, &op.rn, e));
        }
        let mut tx = Begun::start(&self.pool).await.map_err(|e| self.error(e))?;
        for run in server::runs(ops) {
            if run.len() > 1 {
                let schema = known.get(&ops[run.start].table).and_then(Option::as_ref);
                match self.insert_rows(&mut tx, schema, &ops[run.clone()]).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        let _ = tx.rollback().await;
                        return Err(e);
                    }
                }
            }
            // One op, or a run whose multi-row INSERT failed: the failing op names itself.
            for i in run {
                let op = &ops[i];
                let schema = known.get(&op.table).and_then(Option::as_ref);
                let fenced = match &op.fence {
                    Some(fence) => self.check_fence(&mut tx, op, fence).await,
                    None => Ok(()),
                };
                let written = match fenced {
                    Ok(()) => self.apply_op(&mut tx, schema, op).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = written.map_err(|e| crate::write::op_failed(i, &op.rn, e)) {
                    // Best effort: a lost connection has rolled back already.
                    let _ = tx.rollback().await;
                    return Err(e);
                }
            }
        }
        let first = ops.first().map_or("", |op| op.rn.as_str());
        tx.commit()
            .await
            .map_err(|e| committing(&self.ident, first, self.error(e)))
    }

    /// Writes a run of plain inserts ([`server::runs`]) as one multi-row INSERT when
    /// their table fits all of them: `false`, nothing written, when it does not or when the
    /// statement fails (the ops then run one by one, and the failing one names its own
    /// error, as without this).
    async fn insert_rows(
        &self,
        conn: &mut sqlx::MySqlConnection,
        schema: Option<&TableSchema>,
        ops: &[LayerOp],
    ) -> Result<bool> {
        let Some(statement) = schema.and_then(|s| server::insert_statement(&self.dialect, s, ops))
        else {
            return Ok(false);
        };
        server::insert_rows::<sqlx::MySql>(conn, statement, ops.len())
            .await
            .map_err(|e| self.error(e))
    }

    async fn apply_op(
        &self,
        conn: &mut sqlx::MySqlConnection,
        schema: Option<&TableSchema>,
        op: &LayerOp,
    ) -> Result<()> {
        let Some(schema) = schema else {
            return match op.kind {
                OpKind::Delete | OpKind::DeleteIfExists => op.outcome(0),
                OpKind::Insert | OpKind::Update => Err(Error::database(
                    &self.ident,
                    DbErrorKind::Schema,
                    format!("table {} vanished while writing", op.table),
                )),
            };
        };
        let failed =
            |e| server::write_error::<MySqlCodes>(&self.ident, &self.scrubber, op, Some(schema), e);
        let changed = match self.dialect.render_op(op, schema)? {
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
            && let Some((probe, names)) = self.dialect.render_probe(op, schema)
        {
            // A conditional write that changed nothing: the item is gone, or changed.
            let row = query(probe)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| self.error(e))?;
            let matched = match row {
                None => None,
                Some(row) => Some(
                    (0..names.len())
                        .map(|i| row.try_get::<i64, _>(i).map(|v| v != 0))
                        .collect::<std::result::Result<Vec<bool>, _>>()
                        .map_err(|e| self.error(e))?,
                ),
            };
            return op.probed(names, matched);
        }
        op.outcome(changed)
    }

    // -----------------------------------------------------------------------------------------
    // Reads

    /// Runs a `SELECT *` on an item table and decodes its rows.
    async fn query_rows(
        &self,
        table: &str,
        mut schema: TableSchema,
        statement: Statement,
    ) -> Result<Vec<StoredRow>> {
        let rows = self.fetch_rows(statement).await?;
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let names = || first.columns().iter().map(|c| c.name());
        // Columns the cache does not know (another process added them): read again, once.
        if schema.lacks_any(names())
            && let Some(fresh) = self.read_schema(table).await?
        {
            self.schemas
                .lock()
                .await
                .insert(table.to_owned(), fresh.clone());
            schema = fresh;
        }
        let plan = ReadPlan::new(names(), Some(&schema));
        rows.iter()
            .map(|row| {
                plan.decode(table, 128, |i| {
                    value::cell(table, &plan.names[i], &plan.columns[i], row, i)
                })
            })
            .collect()
    }
}

/// A transaction korm begins and ends itself on a pooled connection. sqlx-mysql 0.9 counts a
/// transaction only once its `BEGIN` has returned: a future dropped while `pool.begin()` was
/// in flight handed the connection back to the pool inside a transaction sqlx did not know
/// of, and the next single-statement write on that connection ran inside it, reported
/// stored and never committed. A `Begun` not ended by [`commit`](Begun::commit) or
/// [`rollback`](Begun::rollback) (its future dropped anywhere, `BEGIN` included, or a
/// statement of its own failed) closes its connection instead: the server rolls back.
pub(crate) struct Begun {
    conn: Option<sqlx::pool::PoolConnection<MySql>>,
}

impl Begun {
    /// A connection from `pool` inside a new transaction.
    pub(crate) async fn start(pool: &MySqlPool) -> std::result::Result<Begun, sqlx::Error> {
        let mut begun = Begun {
            conn: Some(pool.acquire().await?),
        };
        sqlx::raw_sql("BEGIN").execute(&mut *begun).await?;
        Ok(begun)
    }

    /// Commits; the connection goes back to the pool. On an error it is closed.
    pub(crate) async fn commit(self) -> std::result::Result<(), sqlx::Error> {
        self.end("COMMIT").await
    }

    /// Rolls back; the connection goes back to the pool. On an error it is closed.
    pub(crate) async fn rollback(self) -> std::result::Result<(), sqlx::Error> {
        self.end("ROLLBACK").await
    }

    async fn end(mut self, sql: &'static str) -> std::result::Result<(), sqlx::Error> {
        sqlx::raw_sql(sql).execute(&mut *self).await?;
        // Ended: back to the pool as it is.
        drop(self.conn.take());
        Ok(())
    }
}

impl Drop for Begun {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}

impl std::ops::Deref for Begun {
    type Target = sqlx::MySqlConnection;

    fn deref(&self) -> &sqlx::MySqlConnection {
        self.conn
            .as_deref()
            .unwrap_or_else(|| unreachable!("a Begun holds its connection until it ends"))
    }
}

impl std::ops::DerefMut for Begun {
    fn deref_mut(&mut self) -> &mut sqlx::MySqlConnection {
        self.conn
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("a Begun holds its connection until it ends"))
    }
}

#[async_trait]
impl Layer for MySqlLayer {
    fn ident(&self) -> &str {
        &self.ident
    }

    async fn apply(&self, ops: Vec<LayerOp>) -> Result<()> {
        self.check_open()?;
        for op in &ops {
            validate_table(&op.table)?;
        }
        let result = self.apply_ops(&ops).await;
        if result.as_ref().is_err_and(|e| !e.is_conflict()) {
            // What the cache learnt may not have happened: forget it.
            let mut schemas = self.schemas.lock().await;
            for op in &ops {
                schemas.remove(&op.table);
            }
        }
        result
    }

    async fn ref_prefixes(&self, table: &str, column: &str) -> Result<Vec<String>> {
        self.check_open()?;
        validate_table(table)?;
        match self.cached_schema(table).await? {
            Some(schema) if schema.kind_of(column).is_some() => {}
            _ => return Ok(Vec::new()),
        }
        let rows = self
            .fetch_rows(self.dialect.render_ref_prefixes(table, column))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.extend(value::text_at(row, 0)?);
        }
        Ok(out)
    }

    async fn fetch(&self, table: &str, ids: Vec<String>) -> Result<Vec<StoredRow>> {
        self.check_open()?;
        validate_table(table)?;
        let Some(schema) = self.cached_schema(table).await? else {
            return Ok(Vec::new());
        };
        let statement = self.dialect.render_fetch(table, &ids)?;
        self.query_rows(table, schema, statement).await
    }

    async fn select(&self, table: &str, select: Select) -> Result<Vec<StoredRow>> {
        self.check_open()?;
        validate_table(table)?;
        let Some(schema) = self.cached_schema(table).await? else {
            return Ok(Vec::new());
        };
        // The dialect names the physical (hashed, when too long) table itself.
        let statement = select.statement(&self.dialect, &schema)?;
        self.query_rows(table, schema, statement).await
    }

    async fn create_index(
        &self,
        table: &str,
        path: &crate::query::FieldPath,
        kind: crate::query::IndexKind,
    ) -> Result<()> {
        self.check_open()?;
        validate_table(table)?;
        for statement in self.dialect.render_create_index(table, path, kind) {
            self.ddl(statement).await?;
        }
        self.schemas.lock().await.remove(table);
        Ok(())
    }

    async fn explain(&self, table: &str, select: Select) -> Result<String> {
        self.check_open()?;
        validate_table(table)?;
        let Some(schema) = self.cached_schema(table).await? else {
            return Ok(String::new());
        };
        let statement = select.statement(&self.dialect, &schema)?;
        let rows = self
            .fetch_rows(Statement {
                sql: format!("EXPLAIN {}", statement.sql),
                params: statement.params,
            })
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            // id, select_type, table, type, possible_keys, key, key_len, ref, rows, Extra
            let text = |i| value::text_at(row, i).ok().flatten().unwrap_or_default();
            out.push(format!(
                "table={} type={} key={} extra={}",
                text(2),
                text(3),
                text(5),
                text(9)
            ));
        }
        Ok(out.join("\n"))
    }

    async fn count(&self, table: &str, filter: Option<crate::query::Filter>) -> Result<u64> {
        self.check_open()?;
        validate_table(table)?;
        let Some(schema) = self.cached_schema(table).await? else {
            return Ok(0);
        };
        let statement = self.dialect.render_count(&schema, filter.as_ref())?;
        let row = query(statement)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let n: i64 = row.try_get(0).map_err(|e| self.error(e))?;
        Ok(n.unsigned_abs())
    }

    async fn table_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        self.check_open()?;
        validate_table(table)?;
        self.cached_schema(table).await
    }

    async fn fresh_table_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        self.check_open()?;
        validate_table(table)?;
        self.schemas.lock().await.remove(table);
        self.cached_schema(table).await
    }

    fn backend(&self) -> &'static str {
        "mysql"
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.pool.close().await;
    }
}

impl server::ServerDb for sqlx::MySql {
    fn statement(statement: Statement) -> sqlx::query::Query<'static, Self, Self::Arguments> {
        query(statement)
    }

    fn rows_affected(done: &Self::QueryResult) -> u64 {
        done.rows_affected()
    }
}
