//! The MySQL/MariaDB layer, on sqlx (its `mysql` feature only) with one connection pool.
//!
//! # Storage, as korm 1.5 writes it
//! - Item tables `__items__{namespace}__{kind}`; a name over 64 characters (MySQL's limit)
//!   becomes `__items__` + the first 32 hex characters of SHA-256 of the full name
//!   ([`physical_table`], the one place that maps the two).
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
//! column stays recreated. `__korm_meta__` is kept truthful at every step: a meta row is
//! written (committed) before the DDL that creates its column, and removed or replaced only
//! after the DDL that drops its column. A crash between two steps can leave a meta row for a
//! column that does not exist (readers ignore it, the next create overwrites it), never a
//! column whose meta row is missing or wrong.
//!
//! The schema cache never remembers a miss (invariant 7): a missing table or column is read
//! again from the database, and a failed apply forgets what it cached for its tables.

mod locks;
mod options;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use serde_json::Value;
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{Arguments, AssertSqlSafe, Column as _, Row, ValueRef as _};

pub use options::{MySqlOptions, mysql};

use super::schema::{ID_COLUMN, ReadColumn, TableSchema, UNIQUE_PREFIX, unique_index_name};
use super::{Layer, LayerOp, LockClaim, OpKind, Select, redact_url};
use super::{scrub, secrets_of};
use crate::error::{DbErrorKind, Error, Result};
use crate::model::{Cell, ColumnKind, RowBuilder, SqlValue, StoredRow, fingerprint};
use crate::query::dialect::validate_table;
use crate::query::{self, MySqlDialect};

/// How many ids one `IN (...)` lookup carries.
const FETCH_CHUNK: usize = 500;

/// MySQL's longest identifier.
const MAX_IDENTIFIER: usize = 64;

/// The table of column kinds korm 1.5 keeps on MySQL.
const META_TABLE: &str = "__korm_meta__";

/// A MySQL or MariaDB database holding items.
pub(crate) struct MySqlLayer {
    ident: String,
    pool: MySqlPool,
    /// Schemas by full table name. Held across the schema phase of a write, so two writes of
    /// this process never race to add one column.
    schemas: tokio::sync::Mutex<HashMap<String, TableSchema>>,
    /// Whether `__korm_meta__` is known to exist (a hit, never a miss, is remembered).
    meta_ready: AtomicBool,
    /// Texts that must never appear in an error (the URL's password, raw and decoded).
    secrets: Arc<[String]>,
    closed: AtomicBool,
    lock_tables: locks::LockTables,
    /// Read statements sent (see [`Layer::read_statements`]).
    reads: super::ReadCounter,
}

impl fmt::Debug for MySqlLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlLayer")
            .field("ident", &self.ident)
            .finish_non_exhaustive()
    }
}

/// A value bound to a statement.
enum Param {
    Null,
    Integer(i64),
    Double(f64),
    Text(String),
}

/// The one place generated SQL becomes sqlx's safe string. Every identifier in `sql` was
/// validated (table names by [`validate_table`], field names by the encoder or the path
/// parser) and quoted by [`quote`]; every value is a bound parameter.
fn safe(sql: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(sql)
}

/// Quotes a validated identifier with backticks (doubling any backtick, which validated
/// names never contain: a second line of defence).
fn quote(ident: &str) -> String {
    use crate::query::dialect::Dialect;
    crate::query::MySqlDialect.quote_identifier(ident)
}

/// The table that stores a collection: its full name, or, over MySQL's 64 characters,
/// `__items__` + the first 32 hex characters of SHA-256 of the full name (korm 1.5's rule).
pub(crate) fn physical_table(table: &str) -> String {
    if table.len() <= MAX_IDENTIFIER {
        return table.to_owned();
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(table.as_bytes());
    format!("__items__{}", &hex::encode(digest)[..32])
}

/// The declared MySQL type of a column kind.
fn declared_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Text | ColumnKind::RnRef => "TEXT",
        ColumnKind::Integer => "BIGINT",
        ColumnKind::Double => "DOUBLE",
        ColumnKind::Boolean => "BOOLEAN",
        ColumnKind::Json | ColumnKind::Encrypted => "JSON",
    }
}

/// The `__korm_meta__` name of a kind its column type can not tell (korm 1.5's names).
fn meta_kind(kind: ColumnKind) -> Option<&'static str> {
    match kind {
        ColumnKind::RnRef => Some("rn"),
        ColumnKind::Encrypted => Some("encrypted"),
        _ => None,
    }
}

/// The kind a `__korm_meta__` row names.
fn kind_of_meta(name: &str) -> Option<ColumnKind> {
    Some(match name.to_ascii_lowercase().as_str() {
        "rn" | "rn_ref" => ColumnKind::RnRef,
        "encrypted" => ColumnKind::Encrypted,
        "json" => ColumnKind::Json,
        "text" => ColumnKind::Text,
        "integer" => ColumnKind::Integer,
        "double" => ColumnKind::Double,
        "boolean" => ColumnKind::Boolean,
        _ => return None,
    })
}

/// The kind of a column by its type (`DATA_TYPE`, `COLUMN_TYPE` of information_schema).
/// MariaDB's JSON is LONGTEXT; korm's text columns are TEXT.
fn kind_of_type(data_type: &str, column_type: &str) -> ColumnKind {
    let data_type = data_type.to_ascii_lowercase();
    let column_type = column_type.to_ascii_lowercase();
    match data_type.as_str() {
        "tinyint" if column_type.starts_with("tinyint(1)") => ColumnKind::Boolean,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => ColumnKind::Integer,
        "double" | "float" | "real" | "decimal" => ColumnKind::Double,
        "bool" | "boolean" => ColumnKind::Boolean,
        "json" | "longtext" => ColumnKind::Json,
        _ => ColumnKind::Text,
    }
}

impl MySqlLayer {
    /// Connects to the database (one connection is opened now, so a wrong URL or an
    /// unreachable server fails here).
    pub(crate) async fn open(ident: &str, options: MySqlOptions) -> Result<MySqlLayer> {
        let secrets: Arc<[String]> = secrets_of(&options.url).into();
        let shown = redact_url(&options.url);
        let connect_error = |message: String| Error::Database {
            layer: ident.to_owned(),
            kind: DbErrorKind::Connect,
            message: scrub(&secrets, &message),
        };
        let scheme = options.url.split("://").next().unwrap_or_default();
        if !options.url.contains("://") || !matches!(scheme, "mysql" | "mariadb") {
            return Err(connect_error(format!(
                "{shown} is not a mysql:// or mariadb:// url"
            )));
        }
        let connect: MySqlConnectOptions = options
            .url
            .parse()
            .map_err(|e: sqlx::Error| connect_error(format!("invalid url {shown}: {e}")))?;
        tracing::debug!(layer = ident, url = %shown, "opening MySQL layer");
        let pool = MySqlPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| {
                let (_, message) = classify(&secrets, &e);
                connect_error(format!("{shown}: {message}"))
            })?;
        Ok(MySqlLayer {
            ident: ident.to_owned(),
            pool,
            schemas: tokio::sync::Mutex::new(HashMap::new()),
            meta_ready: AtomicBool::new(false),
            secrets,
            closed: AtomicBool::new(false),
            lock_tables: locks::LockTables::default(),
            reads: super::ReadCounter::default(),
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::PoolClosed);
        }
        Ok(())
    }

    fn db_error(&self, e: sqlx::Error) -> Error {
        if matches!(e, sqlx::Error::PoolClosed) {
            return Error::PoolClosed;
        }
        let (kind, message) = classify(&self.secrets, &e);
        Error::Database {
            layer: self.ident.clone(),
            kind,
            message,
        }
    }

    /// Runs a statement that returns no rows; the number of rows it matched.
    async fn execute<'e, E>(&self, executor: E, sql: String, params: Vec<Param>) -> Result<u64>
    where
        E: sqlx::Executor<'e, Database = sqlx::MySql>,
    {
        let args = arguments(params).map_err(|e| self.db_error(e))?;
        sqlx::query_with(safe(sql), args)
            .execute(executor)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| self.db_error(e))
    }

    /// Runs a DDL statement; a failure whose number is in `tolerated` (the object already
    /// exists, or is already gone: another process got there first) is success.
    async fn ddl(&self, sql: String, tolerated: &[u16]) -> Result<()> {
        match sqlx::query(safe(sql)).execute(&self.pool).await {
            Ok(_) => Ok(()),
            Err(e) if error_number(&e).is_some_and(|n| tolerated.contains(&n)) => Ok(()),
            Err(e) => Err(self.db_error(e)),
        }
    }

    async fn fetch_rows(&self, sql: String, params: Vec<Param>) -> Result<Vec<MySqlRow>> {
        let args = arguments(params).map_err(|e| self.db_error(e))?;
        sqlx::query_with(safe(sql), args)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_error(e))
    }

    // -----------------------------------------------------------------------------------------
    // Schema

    /// Reads a table's schema from the database; `None` if the table does not exist.
    async fn read_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        let rows = self
            .fetch_rows(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION"
                    .to_owned(),
                vec![Param::Text(physical_table(table))],
            )
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
            let name = text_at(row, 0)?.unwrap_or_default();
            let data_type = text_at(row, 1)?.unwrap_or_default();
            let column_type = text_at(row, 2)?.unwrap_or_default();
            if name == ID_COLUMN {
                continue;
            }
            if let Some(field) = name.strip_prefix(UNIQUE_PREFIX) {
                schema.unique.push(field.to_owned());
                continue;
            }
            let by_type = kind_of_type(&data_type, &column_type);
            let kind = match meta.get(&name) {
                // A meta kind counts only where the column type can hold it.
                Some(ColumnKind::RnRef) if by_type == ColumnKind::Text => ColumnKind::RnRef,
                Some(ColumnKind::Encrypted) if by_type == ColumnKind::Json => ColumnKind::Encrypted,
                _ => by_type,
            };
            schema.columns.push((name, kind));
        }
        Ok(Some(schema))
    }

    /// The `__korm_meta__` kinds of a table's columns (none when the meta table is missing).
    async fn read_meta(&self, table: &str) -> Result<HashMap<String, ColumnKind>> {
        let sql = format!(
            "SELECT `column_name`, `kind` FROM {} WHERE `table_name` = ?",
            quote(META_TABLE)
        );
        let args = arguments(vec![Param::Text(table.to_owned())]).map_err(|e| self.db_error(e))?;
        let rows = match sqlx::query_with(safe(sql), args)
            .fetch_all(&self.pool)
            .await
        {
            Ok(rows) => rows,
            // ER_NO_SUCH_TABLE: no meta table, no meta rows.
            Err(e) if error_number(&e) == Some(1146) => return Ok(HashMap::new()),
            Err(e) => return Err(self.db_error(e)),
        };
        let mut out = HashMap::new();
        for row in &rows {
            if let (Some(column), Some(kind)) = (text_at(row, 0)?, text_at(row, 1)?)
                && let Some(kind) = kind_of_meta(&kind)
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

    /// Creates `__korm_meta__` if it is missing, with korm 1.5's DDL.
    async fn ensure_meta_table(&self) -> Result<()> {
        if self.meta_ready.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.ddl(
            format!(
                "CREATE TABLE IF NOT EXISTS {} (`table_name` VARCHAR(255) NOT NULL, \
                 `column_name` VARCHAR(255) NOT NULL, `kind` VARCHAR(32) NOT NULL, \
                 PRIMARY KEY (`table_name`, `column_name`)) DEFAULT CHARSET=utf8mb4",
                quote(META_TABLE)
            ),
            &[],
        )
        .await?;
        self.meta_ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Makes `__korm_meta__` say `kind` for a column: a row for the kinds its type can not
    /// tell, no row otherwise. Runs before the DDL that creates the column.
    async fn write_meta(&self, table: &str, column: &str, kind: ColumnKind) -> Result<()> {
        match meta_kind(kind) {
            Some(name) => {
                self.ensure_meta_table().await?;
                let sql = format!(
                    "INSERT INTO {} (`table_name`, `column_name`, `kind`) VALUES (?, ?, ?) \
                     ON DUPLICATE KEY UPDATE `kind` = VALUES(`kind`)",
                    quote(META_TABLE)
                );
                let params = vec![
                    Param::Text(table.to_owned()),
                    Param::Text(column.to_owned()),
                    Param::Text(name.to_owned()),
                ];
                self.execute(&self.pool, sql, params).await?;
            }
            None => self.forget_meta(table, column).await?,
        }
        Ok(())
    }

    /// Removes a column's meta row (after the DDL that dropped the column).
    async fn forget_meta(&self, table: &str, column: &str) -> Result<()> {
        let sql = format!(
            "DELETE FROM {} WHERE `table_name` = ? AND `column_name` = ?",
            quote(META_TABLE)
        );
        let params = vec![
            Param::Text(table.to_owned()),
            Param::Text(column.to_owned()),
        ];
        let args = arguments(params).map_err(|e| self.db_error(e))?;
        match sqlx::query_with(safe(sql), args).execute(&self.pool).await {
            Ok(_) => Ok(()),
            Err(e) if error_number(&e) == Some(1146) => Ok(()),
            Err(e) => Err(self.db_error(e)),
        }
    }

    /// Makes the table fit the op's fields: creates it, adds missing columns and unique
    /// shadows, and checks (or, destructively, recreates) columns whose kind changed. Each
    /// statement commits on its own (see the module doc for the order).
    async fn ensure_schema(
        &self,
        schemas: &mut HashMap<String, TableSchema>,
        op: &LayerOp,
    ) -> Result<()> {
        let table = &op.table;
        let physical = physical_table(table);
        if self.schema_of(schemas, table).await?.is_none() {
            let mut columns = vec![format!("{} VARCHAR(255) NOT NULL", quote(ID_COLUMN))];
            let mut keys = vec![format!("PRIMARY KEY ({})", quote(ID_COLUMN))];
            for field in op.fields.iter() {
                let kind = field.kind.unwrap_or(ColumnKind::Text);
                self.write_meta(table, &field.name, kind).await?;
                columns.push(format!(
                    "{} {} NULL",
                    quote(&field.name),
                    declared_type(kind)
                ));
                if field.unique {
                    let shadow = format!("{UNIQUE_PREFIX}{}", field.name);
                    columns.push(format!("{} VARCHAR(128) NULL", quote(&shadow)));
                    keys.push(format!(
                        "UNIQUE KEY {} ({})",
                        quote(&unique_index_name(table, &field.name)),
                        quote(&shadow)
                    ));
                }
            }
            columns.extend(keys);
            self.ddl(
                format!(
                    "CREATE TABLE IF NOT EXISTS {} ({}) DEFAULT CHARSET=utf8mb4",
                    quote(&physical),
                    columns.join(", ")
                ),
                &[],
            )
            .await?;
            // Read back what exists: another process may have created the table first, and
            // the loop below then evolves it like any other.
            match self.read_schema(table).await? {
                Some(schema) => {
                    schemas.insert(table.clone(), schema);
                }
                None => {
                    return Err(Error::Database {
                        layer: self.ident.clone(),
                        kind: DbErrorKind::Schema,
                        message: format!("table {table} vanished right after it was created"),
                    });
                }
            }
        }

        // A column the cache does not know may have been added by another process: read
        // again before adding it (the cache never remembers a miss).
        let stale = schemas.get(table).is_some_and(|s| {
            op.fields
                .iter()
                .any(|f| s.kind_of(&f.name).is_none() || (f.unique && !s.is_unique(&f.name)))
        });
        if stale && let Some(fresh) = self.read_schema(table).await? {
            schemas.insert(table.clone(), fresh);
        }
        let Some(schema) = schemas.get_mut(table) else {
            return Ok(());
        };
        for field in op.fields.iter() {
            match (schema.kind_of(&field.name), field.kind) {
                (None, kind) => {
                    let kind = kind.unwrap_or(ColumnKind::Text);
                    self.write_meta(table, &field.name, kind).await?;
                    self.ddl(
                        format!(
                            "ALTER TABLE {} ADD COLUMN {} {} NULL",
                            quote(&physical),
                            quote(&field.name),
                            declared_type(kind)
                        ),
                        &[ER_DUP_FIELDNAME],
                    )
                    .await?;
                    schema.columns.push((field.name.clone(), kind));
                }
                (Some(stored), Some(found)) if !stored.accepts(found) => {
                    if !op.destructive {
                        return Err(Error::SchemaMismatch {
                            table: table.clone(),
                            column: field.name.clone(),
                            stored,
                            found,
                        });
                    }
                    // Destructive: drop the column (and its unique shadow), then say the new
                    // kind, then add it back; the values other items held in it are lost.
                    if schema.is_unique(&field.name) {
                        self.ddl(
                            format!(
                                "ALTER TABLE {} DROP COLUMN {}",
                                quote(&physical),
                                quote(&format!("{UNIQUE_PREFIX}{}", field.name))
                            ),
                            &[ER_CANT_DROP_FIELD_OR_KEY],
                        )
                        .await?;
                        schema.unique.retain(|u| u != &field.name);
                    }
                    self.ddl(
                        format!(
                            "ALTER TABLE {} DROP COLUMN {}",
                            quote(&physical),
                            quote(&field.name)
                        ),
                        &[ER_CANT_DROP_FIELD_OR_KEY],
                    )
                    .await?;
                    schema.columns.retain(|(name, _)| name != &field.name);
                    self.write_meta(table, &field.name, found).await?;
                    self.ddl(
                        format!(
                            "ALTER TABLE {} ADD COLUMN {} {} NULL",
                            quote(&physical),
                            quote(&field.name),
                            declared_type(found)
                        ),
                        &[],
                    )
                    .await?;
                    schema.columns.push((field.name.clone(), found));
                }
                _ => {}
            }
            if field.unique && !schema.is_unique(&field.name) {
                let shadow = format!("{UNIQUE_PREFIX}{}", field.name);
                self.ddl(
                    format!(
                        "ALTER TABLE {} ADD COLUMN {} VARCHAR(128) NULL, ADD UNIQUE KEY {} ({})",
                        quote(&physical),
                        quote(&shadow),
                        quote(&unique_index_name(table, &field.name)),
                        quote(&shadow)
                    ),
                    &[ER_DUP_FIELDNAME, ER_DUP_KEYNAME],
                )
                .await?;
                schema.unique.push(field.name.clone());
            }
        }
        Ok(())
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
            let mut conn = self.pool.acquire().await.map_err(|e| self.db_error(e))?;
            return self.apply_op(&mut conn, schema, op).await;
        }
        let mut tx = self.pool.begin().await.map_err(|e| self.db_error(e))?;
        for (i, op) in ops.iter().enumerate() {
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
        tx.commit().await.map_err(|e| self.db_error(e))
    }

    async fn apply_op(
        &self,
        conn: &mut sqlx::MySqlConnection,
        schema: Option<&TableSchema>,
        op: &LayerOp,
    ) -> Result<()> {
        let physical = quote(&physical_table(&op.table));
        let map_err = |e: Error| write_error(op, schema, e);
        match op.kind {
            OpKind::Insert | OpKind::Update => {
                let schema = schema.ok_or_else(|| Error::Database {
                    layer: self.ident.clone(),
                    kind: DbErrorKind::Schema,
                    message: format!("table {} vanished while writing", op.table),
                })?;
                let mut columns = Vec::with_capacity(op.fields.len() * 2);
                let mut params = Vec::with_capacity(op.fields.len() * 2 + 1);
                for field in op.fields.iter() {
                    let kind = schema.kind_of(&field.name).unwrap_or(ColumnKind::Text);
                    columns.push(quote(&field.name));
                    params.push(to_param(&field.value, kind));
                    if schema.is_unique(&field.name) {
                        columns.push(quote(&format!("{UNIQUE_PREFIX}{}", field.name)));
                        params.push(if field.value.is_null() {
                            Param::Null
                        } else {
                            Param::Text(fingerprint(&field.value))
                        });
                    }
                }
                if op.kind == OpKind::Insert {
                    let mut sql = format!("INSERT INTO {physical} ({}", quote(ID_COLUMN));
                    for c in &columns {
                        sql.push_str(", ");
                        sql.push_str(c);
                    }
                    sql.push_str(") VALUES (?");
                    sql.push_str(&", ?".repeat(columns.len()));
                    sql.push(')');
                    params.insert(0, Param::Text(op.id.clone()));
                    self.execute(&mut *conn, sql, params)
                        .await
                        .map_err(map_err)?;
                } else {
                    let changed = if columns.is_empty() {
                        let sql =
                            format!("SELECT 1 FROM {physical} WHERE {} = ?", quote(ID_COLUMN));
                        let args = arguments(vec![Param::Text(op.id.clone())])
                            .map_err(|e| self.db_error(e))?;
                        let row = sqlx::query_with(safe(sql), args)
                            .fetch_optional(&mut *conn)
                            .await
                            .map_err(|e| self.db_error(e))?;
                        u64::from(row.is_some())
                    } else {
                        let sets: Vec<String> =
                            columns.iter().map(|c| format!("{c} = ?")).collect();
                        let sql = format!(
                            "UPDATE {physical} SET {} WHERE {} = ?",
                            sets.join(", "),
                            quote(ID_COLUMN)
                        );
                        params.push(Param::Text(op.id.clone()));
                        // sqlx connects with CLIENT_FOUND_ROWS: this counts the matched row
                        // even when no value changed.
                        self.execute(&mut *conn, sql, params)
                            .await
                            .map_err(map_err)?
                    };
                    if changed == 0 {
                        return Err(Error::NotFound { rn: op.rn.clone() });
                    }
                }
            }
            OpKind::Delete | OpKind::DeleteIfExists => {
                if schema.is_none() {
                    return match op.kind {
                        OpKind::Delete => Err(Error::NotFound { rn: op.rn.clone() }),
                        _ => Ok(()),
                    };
                }
                let sql = format!("DELETE FROM {physical} WHERE {} = ?", quote(ID_COLUMN));
                let changed = self
                    .execute(&mut *conn, sql, vec![Param::Text(op.id.clone())])
                    .await
                    .map_err(map_err)?;
                if changed == 0 && op.kind == OpKind::Delete {
                    return Err(Error::NotFound { rn: op.rn.clone() });
                }
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Reads

    /// The cached schema of a table (read when missing; `None` if it does not exist).
    async fn cached_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        let mut schemas = self.schemas.lock().await;
        Ok(self.schema_of(&mut schemas, table).await?.cloned())
    }

    /// Decodes rows of `SELECT *` on an item table.
    async fn decode_rows(
        &self,
        table: &str,
        mut schema: TableSchema,
        rows: Vec<MySqlRow>,
    ) -> Result<Vec<StoredRow>> {
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let names: Vec<String> = first
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let unknown = names.iter().any(|n| {
            n != ID_COLUMN && !n.starts_with(UNIQUE_PREFIX) && schema.kind_of(n).is_none()
        });
        if unknown && let Some(fresh) = self.read_schema(table).await? {
            self.schemas
                .lock()
                .await
                .insert(table.to_owned(), fresh.clone());
            schema = fresh;
        }
        let plan: Vec<ReadColumn> = names
            .iter()
            .map(|n| ReadColumn::of(n, Some(&schema)))
            .collect();
        let names = crate::model::field_names(&plan);
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut built = RowBuilder::new(names.len(), 128);
            for (i, column) in plan.iter().enumerate() {
                match column {
                    ReadColumn::Skip => {}
                    ReadColumn::Id => {
                        if let Some(id) = text_at(row, i).ok().flatten() {
                            built.id(&id);
                        }
                    }
                    ReadColumn::Field(name, kind) => {
                        decode_cell(table, name, *kind, (row, i), &mut built)?;
                    }
                }
            }
            out.push(built.finish(&names).ok_or_else(|| Error::Decode {
                rn: table.to_owned(),
                reason: "a row has no rnId".to_owned(),
            })?);
        }
        Ok(out)
    }
}

/// MySQL error numbers korm reacts to.
const ER_DUP_FIELDNAME: u16 = 1060;
const ER_DUP_KEYNAME: u16 = 1061;
const ER_DUP_ENTRY: u16 = 1062;
const ER_CANT_DROP_FIELD_OR_KEY: u16 = 1091;

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
        if result.is_err() {
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
        self.reads.add(1);
        let column = quote(column);
        let sql = format!(
            "SELECT DISTINCT LEFT({column}, CHAR_LENGTH({column}) - 36) FROM {} \
             WHERE CHAR_LENGTH({column}) > 36 AND {column} LIKE '[rn]%' LIMIT 1001",
            quote(&physical_table(table))
        );
        let rows = self.fetch_rows(sql, Vec::new()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let prefix: Option<String> =
                sqlx::Row::try_get(&row, 0).map_err(|e| self.db_error(e))?;
            out.extend(prefix);
        }
        Ok(out)
    }

    fn read_statements(&self) -> u64 {
        self.reads.get()
    }

    async fn fetch(&self, table: &str, ids: Vec<String>) -> Result<Vec<StoredRow>> {
        self.check_open()?;
        validate_table(table)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let Some(schema) = self.cached_schema(table).await? else {
            return Ok(Vec::new());
        };
        let physical = quote(&physical_table(table));
        self.reads.add(ids.len().div_ceil(FETCH_CHUNK));
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(FETCH_CHUNK) {
            let sql = format!(
                "SELECT * FROM {physical} WHERE {} IN (?{})",
                quote(ID_COLUMN),
                ", ?".repeat(chunk.len() - 1)
            );
            let params = chunk.iter().map(|id| Param::Text(id.clone())).collect();
            let rows = self.fetch_rows(sql, params).await?;
            out.extend(self.decode_rows(table, schema.clone(), rows).await?);
        }
        Ok(out)
    }

    async fn select(&self, table: &str, select: Select) -> Result<Vec<StoredRow>> {
        self.check_open()?;
        validate_table(table)?;
        let Some(schema) = self.cached_schema(table).await? else {
            return Ok(Vec::new());
        };
        self.reads.add(1);
        let statement = query::render_select(
            &MySqlDialect,
            &schema,
            select.filter.as_ref(),
            &select.sort,
            select.limit,
        )?;
        // The dialect names the physical (hashed, when too long) table itself.
        let sql = statement.sql;
        let params = statement
            .params
            .into_iter()
            .map(|v| match v {
                SqlValue::Null => Param::Null,
                SqlValue::Integer(i) => Param::Integer(i),
                SqlValue::Double(f) => Param::Double(f),
                SqlValue::Boolean(b) => Param::Integer(i64::from(b)),
                SqlValue::Text(s) => Param::Text(s),
            })
            .collect();
        let rows = self.fetch_rows(sql, params).await?;
        self.decode_rows(table, schema, rows).await
    }

    async fn table_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        self.check_open()?;
        validate_table(table)?;
        self.cached_schema(table).await
    }

    async fn lock_acquire(&self, claim: &LockClaim) -> Result<Option<i64>> {
        self.acquire_lock(claim).await
    }

    async fn lock_refresh(&self, claim: &LockClaim) -> Result<bool> {
        self.refresh_lock(claim).await
    }

    async fn lock_release(&self, lock_id: &str, owner: &str) -> Result<()> {
        self.release_lock(lock_id, owner).await
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.pool.close().await;
    }
}

/// Binds parameters in order.
fn arguments(params: Vec<Param>) -> std::result::Result<MySqlArguments, sqlx::Error> {
    let mut args = MySqlArguments::default();
    for param in params {
        let bound = match param {
            Param::Null => args.add(Option::<String>::None),
            Param::Integer(i) => args.add(i),
            Param::Double(f) => args.add(f),
            Param::Text(s) => args.add(s),
        };
        bound.map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// Converts a storage-form value to the parameter for a column of `kind`.
fn to_param(value: &Value, kind: ColumnKind) -> Param {
    match (value, kind) {
        (Value::Null, _) => Param::Null,
        (Value::Bool(b), _) => Param::Integer(i64::from(*b)),
        (Value::Number(n), ColumnKind::Double) => Param::Double(n.as_f64().unwrap_or(f64::NAN)),
        (Value::Number(n), _) => match n.as_i64() {
            Some(i) => Param::Integer(i),
            None => Param::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        (Value::String(s), _) => Param::Text(s.clone()),
        (other, _) => Param::Text(other.to_string()),
    }
}

/// A text column of a row (information_schema and JSON columns may come as binary strings).
fn text_at(row: &MySqlRow, i: usize) -> Result<Option<String>> {
    let bad = || Error::Decode {
        rn: "information_schema".to_owned(),
        reason: format!("column {i} is not text"),
    };
    if let Ok(text) = row.try_get::<Option<String>, _>(i) {
        return Ok(text);
    }
    match row.try_get_unchecked::<Option<Vec<u8>>, _>(i) {
        Ok(Some(bytes)) => String::from_utf8(bytes).map(Some).map_err(|_| bad()),
        Ok(None) => Ok(None),
        Err(_) => Err(bad()),
    }
}

/// Reads one stored value back as a cell, by its column's kind. JSON stays text.
fn decode_cell(
    table: &str,
    column: &str,
    kind: Option<ColumnKind>,
    (row, i): (&MySqlRow, usize),
    built: &mut RowBuilder,
) -> Result<()> {
    let bad = |what: &str| Error::Decode {
        rn: table.to_owned(),
        reason: format!("column {column:?} holds {what}"),
    };
    let is_null = row
        .try_get_raw(i)
        .map(|v| v.is_null())
        .map_err(|_| bad("a value the driver can not read"))?;
    if is_null {
        built.push(Cell::Null);
        return Ok(());
    }
    let text = || -> Result<String> {
        text_at(row, i)
            .ok()
            .flatten()
            .ok_or_else(|| bad("a value that is not UTF-8 text"))
    };
    let owned;
    let cell = match kind {
        Some(ColumnKind::Integer) => match row.try_get::<i64, _>(i) {
            Ok(v) => Cell::Integer(v),
            Err(_) => Cell::Double(
                row.try_get::<f64, _>(i)
                    .map_err(|_| bad("a value that is not a number"))?,
            ),
        },
        Some(ColumnKind::Double) => match row.try_get::<f64, _>(i) {
            Ok(v) => Cell::Double(v),
            Err(_) => Cell::Double(
                row.try_get::<i64, _>(i)
                    .map_err(|_| bad("a value that is not a number"))? as f64,
            ),
        },
        Some(ColumnKind::Boolean) => match row.try_get::<i64, _>(i) {
            Ok(v) => Cell::Boolean(v != 0),
            Err(_) => Cell::Boolean(
                row.try_get::<bool, _>(i)
                    .map_err(|_| bad("a value that is not a boolean"))?,
            ),
        },
        Some(ColumnKind::Json | ColumnKind::Encrypted) => {
            owned = text()?;
            Cell::Json(&owned)
        }
        Some(ColumnKind::Text | ColumnKind::RnRef) => {
            owned = text()?;
            Cell::Text(&owned)
        }
        None => {
            if let Ok(v) = row.try_get::<i64, _>(i) {
                Cell::Integer(v)
            } else if let Ok(v) = row.try_get::<f64, _>(i) {
                Cell::Double(v)
            } else {
                owned = text()?;
                Cell::Text(&owned)
            }
        }
    };
    built.push(cell);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The MySQL error number of a database error.
fn error_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()
        .and_then(|db| db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|db| db.number())
}

/// Replaces every single-quoted part of a server message: MySQL quotes values there
/// (`Duplicate entry 'x' for key ...`, `Incorrect integer value: 'x'`), and a message must
/// never carry a value.
fn without_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '\'' {
            if inside {
                out.push_str("...'");
            } else {
                out.push('\'');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// The kind of a driver error and a message safe to show (no value, no secret).
fn classify(secrets: &[String], e: &sqlx::Error) -> (DbErrorKind, String) {
    let (kind, message) = match e {
        sqlx::Error::Database(db) => {
            let number = error_number(e).unwrap_or_default();
            let kind = match number {
                ER_DUP_ENTRY | 1586 => DbErrorKind::UniqueViolation,
                // not null, check constraints (MySQL 3819, MariaDB 4025), foreign keys,
                // out of range, wrong value for the column type.
                1048 | 3819 | 4025 | 1451 | 1452 | 1264 | 1366 | 1406 => {
                    DbErrorKind::ConstraintViolation
                }
                // server gone, connection killed or aborted, server shutting down.
                1053 | 1152 | 1153 | 1927 | 2006 | 2013 => DbErrorKind::ConnectionLost,
                // access denied, unknown database, too many connections.
                1040 | 1044 | 1045 | 1049 | 1129 | 1130 => DbErrorKind::Connect,
                // lock wait timeout, deadlock.
                1205 | 1213 => DbErrorKind::Busy,
                // missing table or column, identifier too long, DDL refused.
                1054 | 1059 | 1060 | 1061 | 1091 | 1146 | 1118 | 1071 => DbErrorKind::Schema,
                _ => DbErrorKind::Other,
            };
            let message = if number == ER_DUP_ENTRY {
                match duplicate_key(db.message()) {
                    Some(key) => format!("error 1062: duplicate entry for key {key}"),
                    None => "error 1062: duplicate entry".to_owned(),
                }
            } else {
                format!("error {number}: {}", without_quoted(db.message()))
            };
            (kind, message)
        }
        sqlx::Error::Io(io) => (DbErrorKind::ConnectionLost, format!("i/o error: {io}")),
        sqlx::Error::Tls(tls) => (DbErrorKind::Connect, format!("tls error: {tls}")),
        sqlx::Error::PoolTimedOut => (
            DbErrorKind::Connect,
            "no connection could be opened or freed in time".to_owned(),
        ),
        sqlx::Error::Configuration(c) => (DbErrorKind::Connect, format!("configuration: {c}")),
        sqlx::Error::Protocol(p) => (DbErrorKind::ConnectionLost, format!("protocol: {p}")),
        other => (DbErrorKind::Other, other.to_string()),
    };
    (kind, scrub(secrets, &message))
}

/// The key name of an `ER_DUP_ENTRY` message (`... for key 'name'`, MySQL 8:
/// `'table.name'`).
fn duplicate_key(message: &str) -> Option<String> {
    let start = message.rfind("for key '")? + "for key '".len();
    let key = &message[start..];
    let key = &key[..key.find('\'')?];
    let key = key.rsplit('.').next().unwrap_or(key);
    key.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then(|| key.to_owned())
}

/// Maps an error of a row write: a duplicate primary key is [`Error::AlreadyExists`], a
/// duplicate in a unique index [`Error::UniqueViolation`] naming the field.
fn write_error(op: &LayerOp, schema: Option<&TableSchema>, e: Error) -> Error {
    let Error::Database {
        kind: DbErrorKind::UniqueViolation,
        message,
        ..
    } = &e
    else {
        return e;
    };
    let key = message
        .strip_prefix("error 1062: duplicate entry for key ")
        .unwrap_or_default();
    if key == "PRIMARY" {
        return Error::AlreadyExists { rn: op.rn.clone() };
    }
    let fields = schema.map(|s| s.unique.clone()).unwrap_or_default();
    let field = fields
        .iter()
        .chain(op.fields.iter().filter(|f| f.unique).map(|f| &f.name))
        .find(|f| unique_index_name(&op.table, f) == key);
    match field {
        Some(field) => Error::UniqueViolation {
            table: op.table.clone(),
            field: field.clone(),
            rn: op.rn.clone(),
        },
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_table_names_hash_as_korm_1_5_does() {
        // The fixture's table (shared/fixtures/korm-ts-1.5/mysql.sql).
        let full = "__items__documents__contractsforlongtermrentalofheavyquarryequipment";
        assert!(full.len() > 64);
        assert_eq!(
            physical_table(full),
            "__items__ac35fe619eb2c9da1c17d9bb08e63d8d"
        );
        assert_eq!(
            physical_table("__items__users__freetier"),
            "__items__users__freetier"
        );
        let exactly = format!("__items__a__{}", "b".repeat(64 - 12));
        assert_eq!(exactly.len(), 64);
        assert_eq!(physical_table(&exactly), exactly);
    }

    #[test]
    fn duplicate_messages_give_the_key_and_never_the_value() {
        let msg = "Duplicate entry 'fred@x.example' for key '__korm_u_0123456789abcdef01234567'";
        assert_eq!(
            duplicate_key(msg).as_deref(),
            Some("__korm_u_0123456789abcdef01234567")
        );
        assert_eq!(
            duplicate_key("Duplicate entry 'x' for key 'items.PRIMARY'").as_deref(),
            Some("PRIMARY")
        );
        assert_eq!(duplicate_key("Duplicate entry 'a' for key 'x OR 1'"), None);
        let shown = without_quoted("Incorrect integer value: 'TOPSECRET' for column `age`");
        assert!(!shown.contains("TOPSECRET"), "{shown}");
    }

    #[test]
    fn types_map_to_kinds() {
        assert_eq!(kind_of_type("tinyint", "tinyint(1)"), ColumnKind::Boolean);
        assert_eq!(kind_of_type("int", "int(11)"), ColumnKind::Integer);
        assert_eq!(kind_of_type("bigint", "bigint(20)"), ColumnKind::Integer);
        assert_eq!(kind_of_type("double", "double"), ColumnKind::Double);
        assert_eq!(kind_of_type("longtext", "longtext"), ColumnKind::Json);
        assert_eq!(kind_of_type("text", "text"), ColumnKind::Text);
        assert_eq!(kind_of_type("varchar", "varchar(255)"), ColumnKind::Text);
    }
}
