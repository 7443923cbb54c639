//! The PostgreSQL layer, on sqlx with only its `postgres` feature.
//!
//! One sqlx connection pool per layer. Every `apply` runs inside one transaction, DDL
//! included (PostgreSQL's DDL is transactional, so a failed batch leaves no half-made table).
//! Schema changes take a transaction-scoped advisory lock on the table and read the schema
//! again under it, so two processes adding the same table or column at once do not collide.
//!
//! Storage is korm 1.5's: the domains `public.korm_rn_ref_text` (over `text`) and
//! `public.korm_encrypted_json` (over `jsonb`) mark RN and encrypted columns, objects and
//! arrays are `jsonb`, the key is `"rnId" text PRIMARY KEY`. New integer columns are `bigint`
//! (korm-rs integers are 64-bit; korm 1.5 wrote `integer`, which is read as an integer too).
//!
//! The schema cache never remembers a missing table or column: a miss is read again from the
//! database, so a table another process creates later is seen (K7). What a transaction
//! learns is cached only once it commits.

mod locks;
mod options;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, PgValueFormat,
    PgValueRef, Postgres,
};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Column as _, Connection as _, Row as _, ValueRef as _};

pub use options::{PgOptions, postgres};

use super::schema::{ID_COLUMN, ReadColumn, TableSchema, UNIQUE_PREFIX, unique_index_name};
use super::{Layer, LayerOp, LockClaim, OpKind, Select, redact_url};
use super::{scrub, secrets_of};
use crate::error::{DbErrorKind, Error, Result, clip};
use crate::model::{Cell, ColumnKind, RowBuilder, SqlValue, StoredRow, fingerprint};
use crate::query::{self, PgDialect};

/// How many ids one `= ANY($1)` lookup carries.
const FETCH_CHUNK: usize = 1000;

/// PostgreSQL truncates longer identifiers silently; korm refuses them instead.
const MAX_IDENTIFIER: usize = 63;

/// The first key of korm's advisory locks (`'korm'` in ASCII); the second is the table's hash.
const LOCK_CLASS: i32 = 0x6b6f_726d;

/// The domain marking RN columns.
const RN_DOMAIN: &str = "korm_rn_ref_text";
/// The domain marking encrypted columns.
const ENCRYPTED_DOMAIN: &str = "korm_encrypted_json";

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

/// The columns of a table, with their type and (for a domain) its base type; no rows when
/// the table does not exist. The table is found through the search path, as every other
/// statement finds it.
const READ_SCHEMA: &str = "SELECT a.attname::text, t.typname::text, \
    coalesce(b.typname, t.typname)::text \
    FROM pg_catalog.pg_attribute a \
    JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
    LEFT JOIN pg_catalog.pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype \
    WHERE a.attrelid = to_regclass(quote_ident($1)) AND a.attnum > 0 AND NOT a.attisdropped \
    ORDER BY a.attnum";

/// A PostgreSQL database holding items.
pub(crate) struct PgLayer {
    ident: String,
    pool: PgPool,
    connect_timeout: Duration,
    /// The URL's password, scrubbed from every message that leaves the layer.
    /// The URL's passwords, as written and percent-decoded, scrubbed from every message.
    secrets: Arc<[String]>,
    schemas: Mutex<HashMap<String, TableSchema>>,
    lock_tables: locks::LockTables,
    /// Read statements sent (see [`Layer::read_statements`]).
    reads: super::ReadCounter,
}

impl fmt::Debug for PgLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgLayer")
            .field("ident", &self.ident)
            .finish_non_exhaustive()
    }
}

/// Whether an error happened while connecting (everything is a connect failure then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connect,
    Run,
}

impl PgLayer {
    /// Connects once (so a wrong URL or an unreachable server fails here, with the driver's
    /// reason), creates korm's domains when missing, and sets up the pool.
    pub(crate) async fn open(ident: &str, options: PgOptions) -> Result<PgLayer> {
        let secrets: Arc<[String]> = secrets_of(&options.url).into();
        let fail = |message: String| Error::Database {
            layer: ident.to_owned(),
            kind: DbErrorKind::Connect,
            message: scrub(&secrets, &message),
        };
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(|e| fail(format!("invalid url {}: {e}", redact_url(&options.url))))?
            .application_name("korm");
        let layer = PgLayer {
            ident: ident.to_owned(),
            pool: PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.connect_timeout)
                .connect_lazy_with(connect.clone()),
            connect_timeout: options.connect_timeout,
            secrets: Arc::clone(&secrets),
            schemas: Mutex::new(HashMap::new()),
            lock_tables: locks::LockTables::default(),
            reads: super::ReadCounter::default(),
        };
        let mut conn = match tokio::time::timeout(
            options.connect_timeout,
            PgConnection::connect_with(&connect),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(layer.error(e, Phase::Connect)),
            Err(_) => {
                return Err(fail(format!(
                    "no answer from {} within {:?}",
                    redact_url(&options.url),
                    options.connect_timeout
                )));
            }
        };
        let domains = sqlx::raw_sql(CREATE_DOMAINS).execute(&mut conn).await;
        let _ = conn.close().await;
        domains.map_err(|e| layer.error(e, Phase::Run))?;
        tracing::debug!(layer = ident, url = %redact_url(&options.url), "postgres layer open");
        Ok(layer)
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
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.error(e, Phase::Run))?;
        let schema = read_schema(&mut conn, table)
            .await
            .map_err(|e| self.error(e, Phase::Run))?;
        if let Some(schema) = &schema {
            self.remember(schema.clone());
        }
        Ok(schema)
    }

    /// Maps a driver error: the kind from the SQLSTATE or the failure, a message without
    /// bound values (only the server's primary message, never its detail) or the password.
    fn error(&self, e: sqlx::Error, phase: Phase) -> Error {
        let lost = match phase {
            Phase::Connect => DbErrorKind::Connect,
            Phase::Run => DbErrorKind::ConnectionLost,
        };
        let (kind, message) = match &e {
            sqlx::Error::PoolClosed => return Error::PoolClosed,
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let kind = match code.as_str() {
                    _ if phase == Phase::Connect => DbErrorKind::Connect,
                    "23505" => DbErrorKind::UniqueViolation,
                    "23502" | "23503" | "23514" | "23P01" => DbErrorKind::ConstraintViolation,
                    "40001" | "40P01" | "55P03" | "57014" => DbErrorKind::Busy,
                    "57P01" | "57P02" => DbErrorKind::ConnectionLost,
                    "57P03" | "28000" | "28P01" | "3D000" => DbErrorKind::Connect,
                    "42P01" | "42703" | "42701" | "42P07" | "42804" | "42704" => {
                        DbErrorKind::Schema
                    }
                    c if c.starts_with("08") => lost,
                    _ => DbErrorKind::Other,
                };
                let mut message = db.message().to_owned();
                // Data exceptions may quote the offending value after a colon
                // ("invalid input syntax for type integer: \"...\""): keep only the reason.
                if code.starts_with("22")
                    && let Some((reason, _)) = message.split_once(':')
                {
                    message = reason.to_owned();
                }
                (kind, format!("{message} (SQLSTATE {code})"))
            }
            sqlx::Error::Io(io) => (lost, format!("i/o error: {io}")),
            sqlx::Error::Tls(tls) => (DbErrorKind::Connect, format!("tls error: {tls}")),
            sqlx::Error::Configuration(c) => (DbErrorKind::Connect, format!("configuration: {c}")),
            sqlx::Error::PoolTimedOut => (
                DbErrorKind::Connect,
                format!(
                    "no connection within {:?}: the server is unreachable or every connection is busy",
                    self.connect_timeout
                ),
            ),
            sqlx::Error::WorkerCrashed => (lost, e.to_string()),
            sqlx::Error::Protocol(_) if phase == Phase::Connect => {
                (DbErrorKind::Connect, e.to_string())
            }
            _ => (DbErrorKind::Other, e.to_string()),
        };
        Error::Database {
            layer: self.ident.clone(),
            kind,
            message: scrub(&self.secrets, &message),
        }
    }

    /// Maps an error of a row write: unique violations become [`Error::UniqueViolation`]
    /// (naming the field, found from the index name) or [`Error::AlreadyExists`] (the key).
    fn write_error(&self, op: &LayerOp, unique: &[String], e: sqlx::Error) -> Error {
        if let sqlx::Error::Database(db) = &e
            && db.code().as_deref() == Some("23505")
        {
            let constraint = db.constraint().unwrap_or_default();
            if let Some(field) = unique
                .iter()
                .find(|f| unique_index_name(&op.table, f) == constraint)
            {
                return Error::UniqueViolation {
                    table: op.table.clone(),
                    field: field.clone(),
                    rn: op.rn.clone(),
                };
            }
            if constraint.ends_with("_pkey") {
                return Error::AlreadyExists { rn: op.rn.clone() };
            }
        }
        self.error(e, Phase::Run)
    }
}

// ---------------------------------------------------------------------------------------------
// SQL text

/// The one place generated SQL becomes a statement. Every identifier in `sql` was validated
/// ([`check_table`], the field-name rules of the encoder, the path parser) and quoted, and
/// every value is a bound parameter.
fn statement(sql: String) -> Query<'static, Postgres, PgArguments> {
    sqlx::query(AssertSqlSafe(sql))
}

/// Quotes an identifier (validated before; doubling quotes is a second line of defence).
fn quote(ident: &str) -> String {
    use crate::query::dialect::Dialect;
    crate::query::PgDialect.quote_identifier(ident)
}

/// Checks an item table name: korm's pattern, and short enough for PostgreSQL.
fn check_table(table: &str) -> Result<()> {
    query::dialect::validate_table(table)?;
    if table.len() > MAX_IDENTIFIER {
        return Err(Error::InvalidIdentifier {
            what: "table",
            name: clip(table),
            reason: format!(
                "is longer than {MAX_IDENTIFIER} bytes, PostgreSQL's limit for a name (it would be cut short)"
            ),
        });
    }
    Ok(())
}

/// The declared PostgreSQL type of a column kind (korm 1.5's, with `bigint` for integers).
fn declared_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Text => "text",
        ColumnKind::Integer => "bigint",
        ColumnKind::Double => "double precision",
        ColumnKind::Boolean => "boolean",
        ColumnKind::Json => "jsonb",
        ColumnKind::RnRef => "public.korm_rn_ref_text",
        ColumnKind::Encrypted => "public.korm_encrypted_json",
        // ColumnKind is non-exhaustive only for users; every kind is listed above.
    }
}

/// The column kind of a PostgreSQL type (`typname`, and for a domain its base type):
/// korm's domains by name, other types by what they hold.
fn kind_of_type(name: &str, base: &str) -> ColumnKind {
    match name {
        RN_DOMAIN => return ColumnKind::RnRef,
        ENCRYPTED_DOMAIN => return ColumnKind::Encrypted,
        _ => {}
    }
    match base {
        "int2" | "int4" | "int8" => ColumnKind::Integer,
        "float4" | "float8" | "numeric" => ColumnKind::Double,
        "bool" => ColumnKind::Boolean,
        "json" | "jsonb" => ColumnKind::Json,
        _ => ColumnKind::Text,
    }
}

fn unique_column(field: &str) -> String {
    quote(&format!("{UNIQUE_PREFIX}{field}"))
}

fn unique_index_ddl(table: &str, field: &str) -> String {
    format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})",
        quote(&unique_index_name(table, field)),
        quote(table),
        unique_column(field)
    )
}

// ---------------------------------------------------------------------------------------------
// Schema

/// Reads a table's schema; `None` if the table does not exist.
async fn read_schema(
    conn: &mut PgConnection,
    table: &str,
) -> std::result::Result<Option<TableSchema>, sqlx::Error> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(READ_SCHEMA)
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut schema = TableSchema {
        table: table.to_owned(),
        ..TableSchema::default()
    };
    for (name, type_name, base) in rows {
        if name == ID_COLUMN {
            continue;
        }
        if let Some(field) = name.strip_prefix(UNIQUE_PREFIX) {
            schema.unique.push(field.to_owned());
            continue;
        }
        schema.columns.push((name, kind_of_type(&type_name, &base)));
    }
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
            None => read_schema(conn, table)
                .await
                .map_err(|e| self.layer.error(e, Phase::Run))?,
        };
        if let Some(schema) = &schema {
            self.tables.insert(table.to_owned(), schema.clone());
        }
        Ok(schema)
    }

    /// Reads the table again under the table's advisory lock, before changing its shape.
    async fn lock_and_read(
        &mut self,
        conn: &mut PgConnection,
        table: &str,
    ) -> Result<Option<TableSchema>> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(LOCK_CLASS)
            .bind(table)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.layer.error(e, Phase::Run))?;
        let schema = read_schema(conn, table)
            .await
            .map_err(|e| self.layer.error(e, Phase::Run))?;
        match &schema {
            Some(schema) => self.tables.insert(table.to_owned(), schema.clone()),
            None => self.tables.remove(table),
        };
        Ok(schema)
    }

    async fn ddl(&self, conn: &mut PgConnection, sql: String) -> Result<()> {
        statement(sql)
            .execute(&mut *conn)
            .await
            .map_err(|e| self.layer.error(e, Phase::Run))?;
        Ok(())
    }

    /// Makes the table fit the op's fields: creates it, adds missing columns and unique
    /// shadows, and checks (or, destructively, recreates) columns whose kind changed.
    async fn ensure_schema(
        &mut self,
        conn: &mut PgConnection,
        op: &LayerOp,
    ) -> Result<TableSchema> {
        let table = &op.table;
        let mut schema = match self.schema(conn, table).await? {
            Some(schema) if !schema.needs_ddl(&op.fields) => return Ok(schema),
            // The cache may be behind another process: read again, under the lock.
            _ => self.lock_and_read(conn, table).await?,
        };
        let Some(schema) = schema.as_mut() else {
            return self.create_table(conn, op).await;
        };
        for field in op.fields.iter() {
            match (schema.kind_of(&field.name), field.kind) {
                (None, kind) => {
                    let kind = kind.unwrap_or(ColumnKind::Text);
                    self.ddl(
                        conn,
                        format!(
                            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
                            quote(table),
                            quote(&field.name),
                            declared_type(kind)
                        ),
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
                    // Destructive: the column (and its unique shadow, whose index goes with
                    // it) is dropped and recreated; the values other items held are lost.
                    if schema.is_unique(&field.name) {
                        self.ddl(
                            conn,
                            format!(
                                "ALTER TABLE {} DROP COLUMN IF EXISTS {}",
                                quote(table),
                                unique_column(&field.name)
                            ),
                        )
                        .await?;
                        schema.unique.retain(|u| u != &field.name);
                    }
                    self.ddl(
                        conn,
                        format!(
                            "ALTER TABLE {t} DROP COLUMN {c}, ADD COLUMN {c} {d}",
                            t = quote(table),
                            c = quote(&field.name),
                            d = declared_type(found)
                        ),
                    )
                    .await?;
                    schema.columns.retain(|(name, _)| name != &field.name);
                    schema.columns.push((field.name.clone(), found));
                }
                _ => {}
            }
            if field.unique && !schema.is_unique(&field.name) {
                self.ddl(
                    conn,
                    format!(
                        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} text",
                        quote(table),
                        unique_column(&field.name)
                    ),
                )
                .await?;
                self.ddl(conn, unique_index_ddl(table, &field.name)).await?;
                schema.unique.push(field.name.clone());
            }
        }
        self.tables.insert(table.clone(), schema.clone());
        Ok(schema.clone())
    }

    async fn create_table(&mut self, conn: &mut PgConnection, op: &LayerOp) -> Result<TableSchema> {
        let table = &op.table;
        let mut columns = vec![format!("{} text PRIMARY KEY", quote(ID_COLUMN))];
        let mut schema = TableSchema {
            table: table.clone(),
            ..TableSchema::default()
        };
        for field in op.fields.iter() {
            let kind = field.kind.unwrap_or(ColumnKind::Text);
            columns.push(format!("{} {}", quote(&field.name), declared_type(kind)));
            schema.columns.push((field.name.clone(), kind));
            if field.unique {
                columns.push(format!("{} text", unique_column(&field.name)));
                schema.unique.push(field.name.clone());
            }
        }
        self.ddl(
            conn,
            format!(
                "CREATE TABLE IF NOT EXISTS {} ({})",
                quote(table),
                columns.join(", ")
            ),
        )
        .await?;
        for field in op.fields.iter().filter(|f| f.unique) {
            self.ddl(conn, unique_index_ddl(table, &field.name)).await?;
        }
        self.tables.insert(table.clone(), schema.clone());
        Ok(schema)
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// A bound value, typed by its column (a NULL too: PostgreSQL refuses a `text` NULL for a
/// `bigint` column).
#[derive(Debug, Clone)]
enum Param {
    Text(Option<String>),
    Integer(Option<i64>),
    Double(Option<f64>),
    Boolean(Option<bool>),
    Json(Option<Value>),
    Texts(Vec<String>),
}

impl Param {
    /// The explicit cast written after the parameter's placeholder in write statements. It
    /// makes the statement text say the parameter's type, so a cached prepared statement is
    /// never reused with a value of another type (after a destructive column recreation the
    /// same `INSERT` would otherwise send text where the server expects a bigint).
    fn cast(&self) -> &'static str {
        match self {
            Param::Text(_) => "::text",
            Param::Integer(_) => "::int8",
            Param::Double(_) => "::float8",
            Param::Boolean(_) => "::bool",
            Param::Json(_) => "::jsonb",
            Param::Texts(_) => "::text[]",
        }
    }
}

fn bind(
    mut q: Query<'static, Postgres, PgArguments>,
    params: Vec<Param>,
) -> Query<'static, Postgres, PgArguments> {
    for param in params {
        q = match param {
            Param::Text(v) => q.bind(v),
            Param::Integer(v) => q.bind(v),
            Param::Double(v) => q.bind(v),
            Param::Boolean(v) => q.bind(v),
            Param::Json(v) => q.bind(v.map(sqlx::types::Json)),
            Param::Texts(v) => q.bind(v),
        };
    }
    q
}

/// A storage-form value as the parameter for a column of `kind`.
fn to_param(value: &Value, kind: ColumnKind) -> Param {
    match (kind, value) {
        (ColumnKind::Json | ColumnKind::Encrypted, Value::Null) => Param::Json(None),
        (ColumnKind::Json | ColumnKind::Encrypted, v) => Param::Json(Some(v.clone())),
        (ColumnKind::Integer, Value::Null) => Param::Integer(None),
        (ColumnKind::Double, Value::Null) => Param::Double(None),
        (ColumnKind::Boolean, Value::Null) => Param::Boolean(None),
        (_, Value::Null) => Param::Text(None),
        (ColumnKind::Double, Value::Number(n)) => Param::Double(n.as_f64()),
        (_, Value::Number(n)) => match n.as_i64() {
            Some(i) => Param::Integer(Some(i)),
            None => Param::Double(n.as_f64()),
        },
        (_, Value::Bool(b)) => Param::Boolean(Some(*b)),
        (_, Value::String(s)) => Param::Text(Some(s.clone())),
        (_, other) => Param::Text(Some(other.to_string())),
    }
}

fn from_sql_value(value: SqlValue) -> Param {
    match value {
        SqlValue::Null => Param::Text(None),
        SqlValue::Integer(i) => Param::Integer(Some(i)),
        SqlValue::Double(f) => Param::Double(Some(f)),
        SqlValue::Boolean(b) => Param::Boolean(Some(b)),
        SqlValue::Text(s) => Param::Text(Some(s)),
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
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(|e| self.error(e, Phase::Run))?;
            let result = apply_op(&mut working, &mut conn, op).await;
            if result.is_err() {
                self.forget(&op.table);
            }
            return result;
        }
        if ops.iter().any(|op| op.fence.is_some()) {
            self.ensure_fence_table().await?;
        }
        let result = async {
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(|e| self.error(e, Phase::Run))?;
            for (i, op) in ops.iter().enumerate() {
                let at = |e| crate::write::op_failed(i, &op.rn, e);
                if let Some(fence) = &op.fence {
                    locks::check_fence(self, &mut tx, op, fence)
                        .await
                        .map_err(at)?;
                }
                apply_op(&mut working, &mut tx, op).await.map_err(at)?;
            }
            tx.commit().await.map_err(|e| self.error(e, Phase::Run))
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
        if ids.is_empty() || self.schema(table).await?.is_none() {
            return Ok(Vec::new());
        }
        self.reads.add(ids.len().div_ceil(FETCH_CHUNK));
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(FETCH_CHUNK) {
            let (sql, param) = if let [id] = chunk {
                (
                    format!(
                        "SELECT * FROM {} WHERE {} = $1",
                        quote(table),
                        quote(ID_COLUMN)
                    ),
                    Param::Text(Some(id.clone())),
                )
            } else {
                (
                    format!(
                        "SELECT * FROM {} WHERE {} = ANY($1)",
                        quote(table),
                        quote(ID_COLUMN)
                    ),
                    Param::Texts(chunk.to_vec()),
                )
            };
            self.query_rows(table, sql, vec![param], &mut out).await?;
        }
        Ok(out)
    }

    async fn select(&self, table: &str, select: Select) -> Result<Vec<StoredRow>> {
        check_table(table)?;
        let Some(schema) = self.schema(table).await? else {
            return Ok(Vec::new());
        };
        self.reads.add(1);
        let statement = query::render_select(
            &PgDialect,
            &schema,
            select.filter.as_ref(),
            &select.sort,
            select.limit,
        )?;
        let params = statement.params.into_iter().map(from_sql_value).collect();
        let mut out = Vec::new();
        self.query_rows(table, statement.sql, params, &mut out)
            .await?;
        Ok(out)
    }

    async fn table_schema(&self, table: &str) -> Result<Option<TableSchema>> {
        check_table(table)?;
        self.schema(table).await
    }

    async fn ref_prefixes(&self, table: &str, column: &str) -> Result<Vec<String>> {
        check_table(table)?;
        match self.schema(table).await? {
            Some(schema) if schema.kind_of(column).is_some() => {}
            _ => return Ok(Vec::new()),
        }
        self.reads.add(1);
        let column = quote(column);
        let sql = format!(
            "SELECT DISTINCT left({column}, -36) FROM {} \
             WHERE length({column}) > 36 AND {column} LIKE '[rn]%' LIMIT 1001",
            quote(table)
        );
        let rows: Vec<Option<String>> = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e, Phase::Run))?;
        Ok(rows.into_iter().flatten().collect())
    }

    fn read_statements(&self) -> u64 {
        self.reads.get()
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
        self.pool.close().await;
    }
}

async fn apply_op(working: &mut Working<'_>, conn: &mut PgConnection, op: &LayerOp) -> Result<()> {
    let layer = working.layer;
    match op.kind {
        OpKind::Insert | OpKind::Update => {
            let schema = working.ensure_schema(conn, op).await?;
            let mut columns = Vec::with_capacity(op.fields.len() * 2);
            let mut params = Vec::with_capacity(op.fields.len() * 2 + 1);
            for field in op.fields.iter() {
                let kind = schema.kind_of(&field.name).unwrap_or(ColumnKind::Text);
                columns.push(quote(&field.name));
                params.push(to_param(&field.value, kind));
                if schema.is_unique(&field.name) {
                    columns.push(unique_column(&field.name));
                    params.push(Param::Text(
                        (!field.value.is_null()).then(|| fingerprint(&field.value)),
                    ));
                }
            }
            let changed = if op.kind == OpKind::Insert {
                params.insert(0, Param::Text(Some(op.id.clone())));
                let placeholders: Vec<String> = params
                    .iter()
                    .enumerate()
                    .map(|(i, p)| format!("${}{}", i + 1, p.cast()))
                    .collect();
                let mut names = vec![quote(ID_COLUMN)];
                names.extend(columns);
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    quote(&op.table),
                    names.join(", "),
                    placeholders.join(", ")
                );
                bind(statement(sql), params)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| layer.write_error(op, &schema.unique, e))?
                    .rows_affected()
            } else if columns.is_empty() {
                let sql = format!(
                    "SELECT 1 FROM {} WHERE {} = $1",
                    quote(&op.table),
                    quote(ID_COLUMN)
                );
                bind(statement(sql), vec![Param::Text(Some(op.id.clone()))])
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| layer.write_error(op, &schema.unique, e))?
                    .map_or(0, |_| 1)
            } else {
                let sets: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c} = ${}{}", i + 1, params[i].cast()))
                    .collect();
                let sql = format!(
                    "UPDATE {} SET {} WHERE {} = ${}",
                    quote(&op.table),
                    sets.join(", "),
                    quote(ID_COLUMN),
                    columns.len() + 1
                );
                params.push(Param::Text(Some(op.id.clone())));
                bind(statement(sql), params)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| layer.write_error(op, &schema.unique, e))?
                    .rows_affected()
            };
            if changed == 0 {
                return Err(Error::NotFound { rn: op.rn.clone() });
            }
        }
        OpKind::Delete | OpKind::DeleteIfExists => {
            if working.schema(conn, &op.table).await?.is_none() {
                return match op.kind {
                    OpKind::Delete => Err(Error::NotFound { rn: op.rn.clone() }),
                    _ => Ok(()),
                };
            }
            let sql = format!(
                "DELETE FROM {} WHERE {} = $1",
                quote(&op.table),
                quote(ID_COLUMN)
            );
            let changed = bind(statement(sql), vec![Param::Text(Some(op.id.clone()))])
                .execute(&mut *conn)
                .await
                .map_err(|e| layer.error(e, Phase::Run))?
                .rows_affected();
            if changed == 0 && op.kind == OpKind::Delete {
                return Err(Error::NotFound { rn: op.rn.clone() });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reads

impl PgLayer {
    /// Runs a `SELECT *` on an item table and decodes its rows. A table dropped since its
    /// schema was read gives no rows.
    async fn query_rows(
        &self,
        table: &str,
        sql: String,
        params: Vec<Param>,
        out: &mut Vec<StoredRow>,
    ) -> Result<()> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.error(e, Phase::Run))?;
        let mut result = bind(statement(sql.clone()), params.clone())
            .fetch_all(&mut *conn)
            .await;
        if let Err(sqlx::Error::Database(db)) = &result
            && db.code().as_deref() == Some("0A000")
        {
            // "cached plan must not change result type": the table gained or lost a column
            // since this connection prepared the `SELECT *`. Prepare again, once.
            conn.clear_cached_statements()
                .await
                .map_err(|e| self.error(e, Phase::Run))?;
            result = bind(statement(sql), params).fetch_all(&mut *conn).await;
        }
        drop(conn);
        let rows = match result {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
                self.forget(table);
                return Ok(());
            }
            Err(e) => return Err(self.error(e, Phase::Run)),
        };
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let plan = self.column_plan(table, first).await?;
        let names = crate::model::field_names(&plan);
        out.reserve(rows.len());
        for row in &rows {
            out.push(decode_row(table, (&plan, &names), row)?);
        }
        Ok(())
    }

    /// How to read each column of a result, by name; columns the cache does not know
    /// (another process added them) make it read the schema again, once.
    async fn column_plan(&self, table: &str, row: &PgRow) -> Result<Vec<ReadColumn>> {
        let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
        let mut schema = self.cached(table);
        let stale = schema.as_ref().is_none_or(|s| {
            names
                .iter()
                .any(|n| *n != ID_COLUMN && !n.starts_with(UNIQUE_PREFIX) && s.kind_of(n).is_none())
        });
        if stale {
            self.forget(table);
            schema = self.schema(table).await?;
        }
        Ok(names
            .into_iter()
            .map(|n| ReadColumn::of(n, schema.as_ref()))
            .collect())
    }
}

/// A row, by the result's plan and the names of its field columns.
fn decode_row(
    table: &str,
    (plan, names): (&[ReadColumn], &Arc<[Arc<str>]>),
    row: &PgRow,
) -> Result<StoredRow> {
    let mut built = RowBuilder::new(names.len(), 128);
    for (i, column) in plan.iter().enumerate() {
        let value = row.try_get_raw(i).map_err(|_| Error::Decode {
            rn: table.to_owned(),
            reason: format!("column {i} is missing from the result"),
        })?;
        match column {
            ReadColumn::Skip => {}
            ReadColumn::Id => match decode_cell(table, ID_COLUMN, Some(ColumnKind::Text), value)? {
                Cell::Text(text) => built.id(text),
                _ => {
                    return Err(Error::Decode {
                        rn: table.to_owned(),
                        reason: "a row's rnId is not text".to_owned(),
                    });
                }
            },
            ReadColumn::Field(name, kind) => {
                built.push(decode_cell(table, name, *kind, value)?);
            }
        }
    }
    built.finish(names).ok_or_else(|| Error::Decode {
        rn: table.to_owned(),
        reason: "a row has no rnId".to_owned(),
    })
}

/// Type OIDs of the built-in types korm reads (stable across PostgreSQL versions).
mod oid {
    pub(super) const BOOL: u32 = 16;
    pub(super) const INT8: u32 = 20;
    pub(super) const INT2: u32 = 21;
    pub(super) const INT4: u32 = 23;
    pub(super) const JSON: u32 = 114;
    pub(super) const FLOAT4: u32 = 700;
    pub(super) const FLOAT8: u32 = 701;
    pub(super) const NUMERIC: u32 = 1700;
    pub(super) const JSONB: u32 = 3802;
}

/// What a stored value is, as far as decoding cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Bool,
    Int,
    Float,
    Numeric,
    Json,
    Text,
}

/// Reads one stored value back as a cell. The wire type comes from the value's type OID;
/// a domain (korm's, or another) falls back on the column's kind, since its bytes are its
/// base type's. JSON stays text: it is parsed only when a model reads the field.
fn decode_cell<'a>(
    table: &str,
    column: &str,
    kind: Option<ColumnKind>,
    value: PgValueRef<'a>,
) -> Result<Cell<'a>> {
    let bad = |what: &str| Error::Decode {
        rn: table.to_owned(),
        reason: format!("column {column:?} holds {what}"),
    };
    if value.is_null() {
        return Ok(Cell::Null);
    }
    let wire = match value.type_info().oid().map(|o| o.0) {
        Some(oid::BOOL) => Wire::Bool,
        Some(oid::INT2 | oid::INT4 | oid::INT8) => Wire::Int,
        Some(oid::FLOAT4 | oid::FLOAT8) => Wire::Float,
        Some(oid::NUMERIC) => Wire::Numeric,
        Some(oid::JSON | oid::JSONB) => Wire::Json,
        Some(25 | 1042 | 1043 | 19) => Wire::Text,
        _ => match kind {
            Some(ColumnKind::Boolean) => Wire::Bool,
            Some(ColumnKind::Integer) => Wire::Int,
            Some(ColumnKind::Double) => Wire::Float,
            Some(ColumnKind::Json | ColumnKind::Encrypted) => Wire::Json,
            _ => Wire::Text,
        },
    };
    let bytes = value.as_bytes().map_err(|_| bad("an unreadable value"))?;
    let binary = value.format() == PgValueFormat::Binary;
    let text = || std::str::from_utf8(bytes).map_err(|_| bad("text that is not UTF-8"));
    Ok(match (wire, binary) {
        (Wire::Bool, true) => match bytes {
            [b] => Cell::Boolean(*b != 0),
            _ => return Err(bad("a malformed boolean")),
        },
        (Wire::Bool, false) => Cell::Boolean(text()? == "t"),
        (Wire::Int, true) => {
            let i = match *bytes {
                [a, b] => i64::from(i16::from_be_bytes([a, b])),
                [a, b, c, d] => i64::from(i32::from_be_bytes([a, b, c, d])),
                [a, b, c, d, e, f, g, h] => i64::from_be_bytes([a, b, c, d, e, f, g, h]),
                _ => return Err(bad("a malformed integer")),
            };
            if kind == Some(ColumnKind::Double) {
                Cell::Double(i as f64)
            } else {
                Cell::Integer(i)
            }
        }
        (Wire::Float, true) => match *bytes {
            [a, b, c, d] => Cell::Double(f64::from(f32::from_be_bytes([a, b, c, d]))),
            [a, b, c, d, e, f, g, h] => Cell::Double(f64::from_be_bytes([a, b, c, d, e, f, g, h])),
            _ => return Err(bad("a malformed double")),
        },
        (Wire::Numeric, true) => return Err(bad("a binary numeric, which korm does not read")),
        (Wire::Int, false) => {
            Cell::Integer(text()?.parse().map_err(|_| bad("a malformed integer"))?)
        }
        (Wire::Float | Wire::Numeric, false) => {
            Cell::Double(text()?.parse().map_err(|_| bad("a malformed number"))?)
        }
        (Wire::Json, _) => {
            // jsonb's binary form is a version byte (1) and the JSON text; no JSON text can
            // start with byte 1, so stripping it is unambiguous.
            let json = match bytes {
                [1, rest @ ..] if binary => rest,
                _ => bytes,
            };
            let json = std::str::from_utf8(json).map_err(|_| bad("JSON that is not UTF-8"))?;
            Cell::Json(json)
        }
        (Wire::Text, _) => match kind {
            Some(ColumnKind::Json | ColumnKind::Encrypted) => Cell::Json(text()?),
            _ => Cell::Text(text()?),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_both_ways() {
        for kind in [
            ColumnKind::Text,
            ColumnKind::Integer,
            ColumnKind::Double,
            ColumnKind::Boolean,
            ColumnKind::Json,
            ColumnKind::RnRef,
            ColumnKind::Encrypted,
        ] {
            let declared = declared_type(kind);
            let (name, base) = match declared {
                "text" => ("text", "text"),
                "bigint" => ("int8", "int8"),
                "double precision" => ("float8", "float8"),
                "boolean" => ("bool", "bool"),
                "jsonb" => ("jsonb", "jsonb"),
                "public.korm_rn_ref_text" => (RN_DOMAIN, "text"),
                "public.korm_encrypted_json" => (ENCRYPTED_DOMAIN, "jsonb"),
                other => panic!("unexpected {other}"),
            };
            assert_eq!(kind_of_type(name, base), kind, "{declared}");
        }
        // korm 1.5 wrote `integer`.
        assert_eq!(kind_of_type("int4", "int4"), ColumnKind::Integer);
    }

    #[test]
    fn long_tables_are_refused() {
        let long = format!("__items__{}__k", "a".repeat(60));
        assert!(matches!(
            check_table(&long),
            Err(Error::InvalidIdentifier { what: "table", .. })
        ));
        check_table("__items__users__freetier").unwrap();
    }
}
