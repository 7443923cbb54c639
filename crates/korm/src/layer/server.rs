//! What the two server layers (PostgreSQL, MySQL/MariaDB) share: both run on sqlx, so a
//! statement is bound and a driver error is mapped the same way; each backend gives only its
//! error codes ([`ServerCodes`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Database, Encode, Type};

use crate::backup::format::{Raw, Sink};
use crate::backup::schedule::ScheduleRow;
use crate::error::{DbErrorKind, Error, Scrubber};
use crate::layer::backup::LayerSchedules;
use crate::layer::schema::{ReadColumn, TableSchema};
use crate::layer::url::DbUrl;
use crate::layer::{LayerOp, OpKind};
use crate::model::SqlValue;
use crate::query::dialect::{Dialect, Statement};

/// At most this many rows go into one multi-row INSERT ([`insert_run`]).
const INSERT_ROWS: usize = 256;

/// At most this many values go into one multi-row INSERT: PostgreSQL and MySQL bind at most
/// 65,535 a statement.
const INSERT_VALUES: usize = 30_000;

/// At most about this many bytes of values go into one multi-row INSERT: a statement is one
/// packet, and MySQL refuses a packet above `max_allowed_packet` (4 MiB by default on MySQL
/// 5.7, 16 MiB on MariaDB) and closes the connection.
const INSERT_BYTES: usize = 1 << 20;

/// About how many bytes an op's values take in a statement: its id, and each field's value
/// as JSON text (a unique field's shadow too).
fn op_bytes(op: &LayerOp) -> usize {
    fn json_bytes(value: &serde_json::Value) -> usize {
        use serde_json::Value;
        match value {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 24,
            Value::String(s) => s.len() + 2,
            Value::Array(items) => 2 + items.iter().map(|v| json_bytes(v) + 1).sum::<usize>(),
            Value::Object(map) => {
                2 + map
                    .iter()
                    .map(|(k, v)| k.len() + 4 + json_bytes(v))
                    .sum::<usize>()
            }
        }
    }
    op.id.len()
        + op.fields
            .iter()
            .map(|f| json_bytes(&f.value) + if f.unique { 130 } else { 0 })
            .sum::<usize>()
}

/// How many of the ops at the start of `ops` one multi-row INSERT may write: a run of plain
/// inserts (no fence, no condition) into one table, writing the same fields in the same order,
/// at most [`INSERT_ROWS`] rows, about [`INSERT_VALUES`] values and about [`INSERT_BYTES`]
/// bytes (the first op always goes in). A plan of many creates (a restore's batch,
/// `Tx::create_all`) then costs a round trip per run instead of per row. 1 (or 0 for no ops)
/// when the first op is not such an insert.
fn insert_run(ops: &[LayerOp]) -> usize {
    let plain =
        |op: &LayerOp| op.kind == OpKind::Insert && op.fence.is_none() && op.expect.is_empty();
    let Some(first) = ops.first() else {
        return 0;
    };
    if !plain(first) {
        return 1;
    }
    // The id, each field and a unique shadow per field at the most.
    let width = 1 + 2 * first.fields.len();
    let most = INSERT_ROWS.min((INSERT_VALUES / width).max(1));
    let same = |op: &LayerOp| {
        plain(op)
            && op.table == first.table
            && op.fields.len() == first.fields.len()
            && op
                .fields
                .iter()
                .zip(first.fields.iter())
                .all(|(a, b)| a.name == b.name)
    };
    if ops.len() == 1 {
        return 1;
    }
    let mut bytes = op_bytes(first);
    1 + ops[1..]
        .iter()
        .take(most - 1)
        .take_while(|op| {
            same(op) && {
                bytes += op_bytes(op);
                bytes <= INSERT_BYTES
            }
        })
        .count()
}

/// A plan's ops in order, cut into runs a multi-row INSERT may write ([`insert_run`]: more
/// than one op) and single ops.
pub(crate) fn runs(ops: &[LayerOp]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = insert_run(&ops[at..]);
        let run = at..at + len;
        at += len;
        (len > 0).then_some(run)
    })
}

/// The multi-row INSERT of a run ([`runs`]) when `schema` takes every row of it as it
/// is (no DDL); `None` when it does not, or when a row can not be rendered or the rows write
/// other columns (the run's ops then go one by one, and the failing one names its error).
pub(crate) fn insert_statement(
    dialect: &impl Dialect,
    schema: &TableSchema,
    ops: &[LayerOp],
) -> Option<Statement> {
    if ops.iter().any(|op| schema.needs_ddl(&op.fields)) {
        return None;
    }
    let rows: Vec<&LayerOp> = ops.iter().collect();
    dialect.render_insert_rows(&rows, schema).ok().flatten()
}

/// Runs a run's multi-row INSERT ([`insert_statement`]) of `rows` rows inside `SAVEPOINT
/// korm_rows`: `true` when it wrote every row; `false`, rolled back to the savepoint, when it
/// failed (the caller then writes the rows one by one, so the failing one names its own
/// error). An error when the transaction itself is gone (a deadlock, a lost connection): the
/// statement's own error says why.
pub(crate) async fn insert_rows<DB>(
    conn: &mut DB::Connection,
    statement: Statement,
    rows: usize,
) -> std::result::Result<bool, sqlx::Error>
where
    DB: ServerDb,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    sqlx::raw_sql("SAVEPOINT korm_rows")
        .execute(&mut *conn)
        .await?;
    let written = DB::statement(statement).execute(&mut *conn).await;
    if written
        .as_ref()
        .is_ok_and(|done| DB::rows_affected(done) == rows as u64)
    {
        sqlx::raw_sql("RELEASE SAVEPOINT korm_rows")
            .execute(&mut *conn)
            .await?;
        return Ok(true);
    }
    match sqlx::raw_sql("ROLLBACK TO SAVEPOINT korm_rows")
        .execute(&mut *conn)
        .await
    {
        Ok(_) => Ok(false),
        Err(undo) => Err(written.err().unwrap_or(undo)),
    }
}

/// Streams one table's rows into a backup's `sink` (see
/// [`LayerBackups::export`](crate::layer::LayerBackups::export)): the `table` event before the
/// first row, with the columns that row has; an empty table when there is none; the sink
/// flushed whenever it is full, so rows are never gathered. `cell` decodes a row's cell `i`
/// in its column; `error` maps a read error, or says (`None`) that it means the table was
/// dropped since it was listed: the rows end there.
pub(crate) async fn export_rows<R, S, F>(
    sink: &mut Sink,
    table: &str,
    schema: Option<&TableSchema>,
    mut rows: S,
    cell: F,
    error: impl Fn(sqlx::Error) -> Option<Error>,
) -> crate::error::Result<()>
where
    R: sqlx::Row,
    S: futures_util::Stream<Item = std::result::Result<R, sqlx::Error>> + Unpin,
    F: for<'r> Fn(&'r R, usize, &str, &ReadColumn) -> crate::error::Result<Raw<'r>>,
{
    use futures_util::TryStreamExt as _;
    use sqlx::Column as _;
    let mut columns: Option<Vec<(String, ReadColumn)>> = None;
    loop {
        let row = match rows.try_next().await {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => match error(e) {
                Some(e) => return Err(e),
                None => break,
            },
        };
        let columns = columns.get_or_insert_with(|| {
            row.columns()
                .iter()
                .map(|c| {
                    let name = c.name().to_owned();
                    let read = ReadColumn::of(&name, schema);
                    (name, read)
                })
                .collect()
        });
        if !sink.table_open() {
            let names: Vec<String> = columns.iter().map(|c| c.0.clone()).collect();
            sink.begin_table(table, &names, schema);
        }
        let mut values = Vec::with_capacity(columns.len());
        for (i, (name, read)) in columns.iter().enumerate() {
            values.push(cell(&row, i, name, read)?);
        }
        sink.row(values)?;
        if sink.is_full() {
            sink.flush().await?;
        }
    }
    if columns.is_none() {
        sink.begin_table(table, &[], schema);
    }
    sink.end_table();
    Ok(())
}

/// Whether `e` is a database error with one of `codes` (PostgreSQL's SQLSTATE, MySQL's
/// SQLSTATE as sqlx gives it).
pub(crate) fn has_code(e: &sqlx::Error, codes: &[&str]) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| codes.contains(&c.as_ref())))
}

/// `result` as an option: `None` when its error is one `missing` says means the table is
/// not there.
pub(crate) fn unless_missing<T>(
    result: std::result::Result<T, sqlx::Error>,
    missing: fn(&sqlx::Error) -> bool,
) -> std::result::Result<Option<T>, sqlx::Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes every row of a table (a restore that replaces), `quoted` in the server's quoting;
/// an error with the `missing` code (no such table) is not one.
pub(crate) async fn clear_table<DB>(
    pool: &sqlx::Pool<DB>,
    quoted: String,
    missing: &str,
) -> std::result::Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    // The name is an item table's, quoted by the caller.
    match sqlx::raw_sql(AssertSqlSafe(format!("DELETE FROM {quoted}")))
        .execute(pool)
        .await
    {
        Err(e) if !has_code(&e, &[missing]) => Err(e),
        _ => Ok(()),
    }
}

/// korm 1.5's backup schedules table (`__korm_backups__`) in a server's SQL: the servers
/// differ only in quoting, placeholders and how an insert skips an id that is there.
pub(crate) struct ScheduleSql {
    /// Creates the table when missing.
    pub(crate) create: &'static str,
    /// The codes of an error creating it that mean another instance created it at once.
    pub(crate) created_meanwhile: &'static [&'static str],
    /// The schedules by id: id, layer, spec, next run, last run.
    pub(crate) select: &'static str,
    /// Inserts a row unless its id is there, binding id, layer, spec, next run, last run,
    /// created and updated.
    pub(crate) insert: &'static str,
    /// Moves a run, binding the next run, the last run, updated, the id and the expected next
    /// run.
    pub(crate) claim: &'static str,
}

/// The columns of a schedule's row, as [`ScheduleSql::select`] lists them.
type ScheduleColumns = (String, String, String, i64, Option<i64>);

impl ScheduleSql {
    /// Creates the schedules table when missing.
    async fn create<DB>(&self, pool: &sqlx::Pool<DB>) -> std::result::Result<(), sqlx::Error>
    where
        DB: ServerDb,
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        match sqlx::raw_sql(self.create).execute(pool).await {
            Err(e) if !has_code(&e, self.created_meanwhile) => Err(e),
            _ => Ok(()),
        }
    }

    /// The schedules (see [`LayerSchedules::schedules`](crate::layer::backup::LayerSchedules::schedules)).
    pub(crate) async fn schedules<DB>(
        &self,
        pool: &sqlx::Pool<DB>,
    ) -> std::result::Result<Vec<ScheduleRow>, sqlx::Error>
    where
        DB: ServerDb,
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
        ScheduleColumns: for<'r> sqlx::FromRow<'r, DB::Row>,
    {
        self.create(pool).await?;
        let rows: Vec<ScheduleColumns> = sqlx::query_as(self.select).fetch_all(pool).await?;
        Ok(rows
            .into_iter()
            .map(|(id, layer, spec, next_run_at, last_run_at)| ScheduleRow {
                id,
                layer,
                spec,
                next_run_at,
                last_run_at,
            })
            .collect())
    }

    /// Inserts a schedule's row (see
    /// [`LayerSchedules::insert_schedule`](crate::layer::backup::LayerSchedules::insert_schedule)).
    pub(crate) async fn insert<DB>(
        &self,
        pool: &sqlx::Pool<DB>,
        row: &ScheduleRow,
        now: i64,
    ) -> std::result::Result<(), sqlx::Error>
    where
        DB: ServerDb,
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        self.create(pool).await?;
        let params = vec![
            SqlValue::Text(row.id.clone()),
            SqlValue::Text(row.layer.clone()),
            SqlValue::Text(row.spec.clone()),
            SqlValue::Integer(row.next_run_at),
            row.last_run_at.map_or(SqlValue::Null, SqlValue::Integer),
            SqlValue::Integer(now),
            SqlValue::Integer(now),
        ];
        let sql = self.insert.to_owned();
        DB::statement(Statement { sql, params })
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Claims a schedule's run, `true` when this call moved it (see
    /// [`LayerSchedules::claim_schedule`](crate::layer::backup::LayerSchedules::claim_schedule)).
    pub(crate) async fn claim<DB>(
        &self,
        pool: &sqlx::Pool<DB>,
        id: &str,
        expected: i64,
        next: i64,
        now: i64,
    ) -> std::result::Result<bool, sqlx::Error>
    where
        DB: ServerDb,
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        let params = vec![
            SqlValue::Integer(next),
            SqlValue::Integer(now),
            SqlValue::Integer(now),
            SqlValue::Text(id.to_owned()),
            SqlValue::Integer(expected),
        ];
        let sql = self.claim.to_owned();
        let done = DB::statement(Statement { sql, params })
            .execute(pool)
            .await?;
        Ok(DB::rows_affected(&done) == 1)
    }
}

/// A server layer as the code the servers share sees it: its pool, how it names a driver
/// error, and its SQL for korm 1.5's schedules table.
pub(crate) trait ServerLayer: Send + Sync {
    /// The sqlx database it runs on.
    type Db: ServerDb;

    /// korm 1.5's schedules table in the server's SQL.
    const SCHEDULES: ScheduleSql;

    /// The update of the pool row in the server's SQL: its placeholders take the config,
    /// the time and the row's id, in that order.
    const UPDATE_POOL: &'static str;

    /// The layer's pool.
    fn pool(&self) -> &sqlx::Pool<Self::Db>;

    /// A driver error as the layer names it ([`db_error`]).
    fn error(&self, e: sqlx::Error) -> Error;
}

#[async_trait::async_trait]
impl<L: ServerLayer> LayerSchedules for L
where
    for<'c> &'c mut <L::Db as Database>::Connection: sqlx::Executor<'c, Database = L::Db>,
    ScheduleColumns: for<'r> sqlx::FromRow<'r, <L::Db as Database>::Row>,
{
    async fn schedules(&self) -> crate::error::Result<Vec<ScheduleRow>> {
        let pool = self.pool();
        L::SCHEDULES
            .schedules(pool)
            .await
            .map_err(|e| self.error(e))
    }

    async fn insert_schedule(&self, row: &ScheduleRow, now: i64) -> crate::error::Result<()> {
        let pool = self.pool();
        L::SCHEDULES
            .insert(pool, row, now)
            .await
            .map_err(|e| self.error(e))
    }

    async fn claim_schedule(
        &self,
        id: &str,
        expected: i64,
        next: i64,
        now: i64,
    ) -> crate::error::Result<bool> {
        let pool = self.pool();
        let claimed = L::SCHEDULES.claim(pool, id, expected, next, now).await;
        claimed.map_err(|e| self.error(e))
    }
}

/// Writes the pool row's config and time ([`ServerLayer::UPDATE_POOL`]).
pub(crate) async fn update_pool_row<L: ServerLayer>(
    layer: &L,
    config: &str,
    now: i64,
) -> crate::error::Result<()>
where
    for<'c> &'c mut <L::Db as Database>::Connection: sqlx::Executor<'c, Database = L::Db>,
{
    let statement = Statement {
        sql: L::UPDATE_POOL.to_owned(),
        params: vec![
            SqlValue::Text(config.to_owned()),
            SqlValue::Integer(now),
            SqlValue::Text(crate::layer::meta::POOL_ROW.to_owned()),
        ],
    };
    let done = L::Db::statement(statement).execute(layer.pool()).await;
    done.map(drop).map_err(|e| layer.error(e))
}

/// A sqlx database a server layer runs on: how korm's statements run there. Implemented
/// by each server backend (`sqlx::Postgres`, `sqlx::MySql`) with [`query`].
pub(crate) trait ServerDb: Database<Arguments: sqlx::IntoArguments<Self>> {
    /// A statement ready to run, its values bound in order.
    fn statement(statement: Statement) -> Query<'static, Self, Self::Arguments>;

    /// The rows a statement wrote (MySQL: found, as sqlx connects with `CLIENT_FOUND_ROWS`).
    fn rows_affected(done: &Self::QueryResult) -> u64;
}

/// Which of korm's lock tables are known to exist (a hit is remembered, never a miss).
#[derive(Debug, Default)]
pub(crate) struct LockTables {
    /// `__korm_locks__` exists.
    pub(crate) locks: AtomicBool,
    /// `__korm_fence__` exists.
    pub(crate) fence: AtomicBool,
}

impl LockTables {
    /// Forgets that the tables exist (a reset dropped them).
    pub(crate) fn forget(&self) {
        self.locks.store(false, Ordering::Release);
        self.fence.store(false, Ordering::Release);
    }
}

/// A statement ready to run, its values bound in order. The one place generated SQL becomes
/// sqlx's `AssertSqlSafe`: every identifier in it was validated and quoted by the dialect,
/// and every value is a parameter.
pub(crate) fn query<DB>(statement: Statement) -> Query<'static, DB, DB::Arguments>
where
    DB: Database,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> f64: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
{
    let mut q = sqlx::query(AssertSqlSafe(statement.sql));
    for value in statement.params {
        q = match value {
            SqlValue::Null => q.bind(None::<String>),
            SqlValue::Integer(i) => q.bind(i),
            SqlValue::Double(f) => q.bind(f),
            SqlValue::Boolean(b) => q.bind(b),
            SqlValue::Text(s) | SqlValue::Json(s) => q.bind(s),
        };
    }
    q
}

/// A server's error codes: what each means, and how to quote its messages safely.
pub(crate) trait ServerCodes {
    /// The database's code of an error (PostgreSQL's SQLSTATE, MySQL's error number).
    fn code(db: &dyn DatabaseError) -> Option<String>;

    /// The kind of failure a code means.
    fn kind(code: &str) -> DbErrorKind;

    /// The server's message, without any value it quotes.
    fn message(db: &dyn DatabaseError, code: &str) -> String;

    /// The key or index a unique violation names (`PRIMARY`, `__korm_u_…`).
    fn unique_key(db: &dyn DatabaseError) -> Option<String>;
}

/// Maps a sqlx error: a database error by the backend's codes, the driver's own failures
/// (i/o, TLS, pool, configuration) the same for both servers, the message scrubbed of the
/// URL's passwords. While `connecting`, every failure is [`DbErrorKind::Connect`].
pub(crate) fn db_error<C: ServerCodes>(
    layer: &str,
    scrubber: &Scrubber,
    e: sqlx::Error,
    connecting: bool,
) -> Error {
    let (kind, code, message) = match &e {
        sqlx::Error::PoolClosed => return Error::PoolClosed,
        sqlx::Error::Database(db) => {
            let code = C::code(db.as_ref());
            let kind = code.as_deref().map_or(DbErrorKind::Other, C::kind);
            let message = C::message(db.as_ref(), code.as_deref().unwrap_or_default());
            (kind, code, message)
        }
        sqlx::Error::Io(io) => (
            DbErrorKind::ConnectionLost,
            None,
            format!("i/o error: {io}"),
        ),
        sqlx::Error::Protocol(p) => (DbErrorKind::ConnectionLost, None, format!("protocol: {p}")),
        sqlx::Error::WorkerCrashed => (DbErrorKind::ConnectionLost, None, e.to_string()),
        sqlx::Error::Tls(tls) => (DbErrorKind::Connect, None, format!("tls error: {tls}")),
        sqlx::Error::Configuration(c) => {
            (DbErrorKind::Connect, None, format!("configuration: {c}"))
        }
        sqlx::Error::PoolTimedOut => (
            DbErrorKind::Connect,
            None,
            "no connection within the connect timeout: the server is unreachable or every \
             connection is busy"
                .to_owned(),
        ),
        other => (DbErrorKind::Other, None, other.to_string()),
    };
    let kind = if connecting {
        DbErrorKind::Connect
    } else {
        kind
    };
    Error::driver(layer, kind, code, scrubber.scrub(&message), e)
}

/// Maps an error of a row write: a unique violation on the key is
/// [`Error::AlreadyExists`], on a unique field's index [`Error::UniqueViolation`] naming the
/// field (see [`LayerOp::unique_violation`]).
pub(crate) fn write_error<C: ServerCodes>(
    layer: &str,
    scrubber: &Scrubber,
    op: &LayerOp,
    schema: Option<&TableSchema>,
    e: sqlx::Error,
) -> Error {
    if let sqlx::Error::Database(db) = &e
        && C::code(db.as_ref()).is_some_and(|code| C::kind(&code) == DbErrorKind::UniqueViolation)
        && let Some(key) = C::unique_key(db.as_ref())
        && let Some(violation) = op.unique_violation(schema, &key)
    {
        return violation;
    }
    db_error::<C>(layer, scrubber, e, false)
}

/// Options of a server layer: [`PgOptions`](crate::layers::PgOptions) for PostgreSQL,
/// [`MySqlOptions`](crate::layers::MySqlOptions) for MySQL/MariaDB. Build them with the
/// backend's constructor (`postgres(url)`, `mysql(url)`, or `…_pool` for a sqlx pool the
/// program already has), adjust with the `with_*` methods, and give them to
/// [`PoolBuilder::layer`](crate::PoolBuilder::layer). `Debug` shows the URL with its
/// password replaced by `***`.
pub struct ServerOptions<DB: Database> {
    pub(crate) source: Source<DB>,
    pub(crate) max_connections: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) wide_integers: bool,
}

/// Where a server layer's connections come from.
pub(crate) enum Source<DB: Database> {
    /// A URL korm connects to.
    Url(DbUrl),
    /// A pool handed over (korm closes it when the korm pool closes).
    Pool(sqlx::Pool<DB>),
}

// By hand: derived Clone would ask `DB: Clone`, which sqlx's database markers are not.
impl<DB: Database> Clone for ServerOptions<DB> {
    fn clone(&self) -> Self {
        ServerOptions {
            source: match &self.source {
                Source::Url(url) => Source::Url(url.clone()),
                Source::Pool(pool) => Source::Pool(pool.clone()),
            },
            ..*self
        }
    }
}

impl<DB: Database> ServerOptions<DB> {
    /// Options for a URL, with the defaults: at most 10 connections, and 10 s to open a
    /// connection (or to wait for a free one).
    pub(crate) fn url(url: impl Into<String>) -> Self {
        ServerOptions {
            source: Source::Url(DbUrl::new(url)),
            max_connections: 10,
            connect_timeout: Duration::from_secs(10),
            wide_integers: false,
        }
    }

    /// Options for a pool handed over: its own settings apply.
    pub(crate) fn pool(pool: sqlx::Pool<DB>) -> Self {
        ServerOptions {
            source: Source::Pool(pool),
            ..Self::url(String::new())
        }
    }

    /// The most connections the layer keeps open at once (at least 1). Not for a pool handed
    /// over, whose own size applies.
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Whether the layer creates 64-bit integer columns (`bigint`, `BIGINT`) for new fields.
    /// Off by default: korm 1.5 creates and expects 32-bit columns (`integer`, `INT`), and
    /// refuses to write into a PostgreSQL `bigint` column it did not make. An integer outside
    /// a 32-bit column's range is then [`Error::Encode`](crate::Error::Encode) naming the
    /// field. Columns that exist keep their type.
    pub fn with_wide_integers(mut self, wide: bool) -> Self {
        self.wide_integers = wide;
        self
    }

    /// How long opening a connection, or waiting for a free one, may take before the
    /// operation fails with [`DbErrorKind::Connect`]. Not for a pool handed over.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

impl<DB: Database> ServerOptions<DB> {
    /// Where the layer's data lives (for pool metadata): its URL; a pool handed over has
    /// none korm could record.
    pub(crate) fn source(
        &self,
        kind: crate::layer::ServerKind,
    ) -> std::result::Result<crate::layer::LayerSource, &'static str> {
        match &self.source {
            Source::Url(url) => Ok(crate::layer::LayerSource::Url {
                kind,
                url: url.secret(),
            }),
            Source::Pool(_) => Err(
                "it was given as a sqlx pool (postgres_pool / mysql_pool), whose url korm can \
                 not see: give its url instead",
            ),
        }
    }
}

impl<DB: Database> fmt::Debug for ServerOptions<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("ServerOptions");
        match &self.source {
            Source::Url(url) => f.field("url", url),
            Source::Pool(_) => f.field("pool", &"<a sqlx pool>"),
        };
        f.field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("wide_integers", &self.wide_integers)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{insert_run, runs};
    use crate::layer::{LayerOp, OpKind};
    use crate::model::Field;

    fn op(kind: OpKind, table: &str, fields: &[&str]) -> LayerOp {
        let fields: Vec<Field> = fields
            .iter()
            .map(|name| Field {
                name: (*name).to_owned(),
                value: serde_json::Value::Null,
                kind: None,
                unique: false,
            })
            .collect();
        LayerOp {
            kind,
            rn: String::new(),
            table: table.to_owned(),
            id: String::new(),
            fields: Arc::from(fields),
            destructive: false,
            fence: None,
            expect: Vec::new(),
        }
    }

    #[test]
    fn a_run_is_plain_inserts_into_one_table_with_the_same_fields() {
        let insert = |table, fields: &[&str]| op(OpKind::Insert, table, fields);
        assert_eq!(insert_run(&[]), 0);
        let ops = [
            insert("t", &["a", "b"]),
            insert("t", &["a", "b"]),
            insert("t", &["a", "b"]),
            insert("t", &["b", "a"]),
        ];
        assert_eq!(insert_run(&ops), 3, "fields in another order end the run");
        let ops = [insert("t", &["a"]), insert("u", &["a"])];
        assert_eq!(insert_run(&ops), 1, "another table ends it");
        let ops = [insert("t", &["a"]), op(OpKind::DeleteIfExists, "t", &[])];
        assert_eq!(insert_run(&ops), 1, "a delete ends it");
        let ops = [op(OpKind::Update, "t", &["a"]), insert("t", &["a"])];
        assert_eq!(insert_run(&ops), 1, "an update is not a run");
        let mut conditional = insert("t", &["a"]);
        conditional.expect.push(crate::layer::Expect {
            name: "a".to_owned(),
            value: crate::layer::Stored::Value(serde_json::Value::Null),
        });
        assert_eq!(insert_run(&[insert("t", &["a"]), conditional]), 1);
        let many: Vec<LayerOp> = (0..1_000).map(|_| insert("t", &["a"])).collect();
        assert_eq!(insert_run(&many), 256, "at most 256 rows a statement");
        let wide: Vec<String> = (0..5_000).map(|i| format!("c{i}")).collect();
        let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
        let many: Vec<LayerOp> = (0..10).map(|_| insert("t", &wide)).collect();
        assert_eq!(insert_run(&many), 2, "at most ~30,000 values a statement");
        let ops = [
            insert("t", &["a"]),
            insert("t", &["a"]),
            op(OpKind::DeleteIfExists, "t", &[]),
            insert("t", &["a"]),
        ];
        let cut: Vec<_> = runs(&ops).collect();
        assert_eq!(cut, [0..2, 2..3, 3..4], "every op once, in order");
        assert_eq!(runs(&[]).count(), 0);
    }
}
