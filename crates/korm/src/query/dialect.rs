//! Rendering a query to SQL through a [`Dialect`].
//!
//! The shared structure (what a filter means, how a wildcard becomes `EXISTS`, the sort
//! tiebreak, where parameters go) lives in the default `render_*` methods of [`Dialect`]; a
//! database implements only the small pieces that differ: quoting, placeholders, how a JSON
//! value is extracted and typed, how an array is iterated, how nulls are ordered. The
//! semantics every dialect must reproduce are in the [`query`](crate::query) module doc.
//!
//! Every value, every pattern and every JSON path text is a bound parameter. The only text
//! spliced into SQL is: identifiers (validated, then quoted), generated aliases (`w1`, ...),
//! operators, `LIMIT` and `OFFSET` integers, constant type names chosen by the dialect, and,
//! for a path with a [declared index](crate::query::index) only, the path's validated keys
//! (`[A-Za-z_][A-Za-z0-9_]*`) and integer indexes as literals, because the database matches
//! an expression index only against its own literal text.

use std::borrow::Cow;

use serde_json::Value;

use super::filter::{CompareOp, Filter, FilterNode, SortOrder};
use super::index::{IndexKind, index_name};
use super::path::{FieldPath, PathStep};
use crate::error::clip;
use crate::layer::schema::{
    ID_COLUMN, SchemaChange, TableSchema, UNIQUE_PREFIX, unique_index_name,
};
use crate::layer::{LayerOp, OpKind, Stored};
use crate::model::{ColumnKind, SqlValue, fingerprint};
use crate::{Error, Result};

/// SQL text plus its parameters, in placeholder order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    /// The SQL, with placeholders.
    pub(crate) sql: String,
    /// One value per placeholder, in order.
    pub(crate) params: Vec<SqlValue>,
}

impl Statement {
    /// A statement without parameters.
    pub(crate) fn ddl(sql: String) -> Statement {
        Statement {
            sql,
            params: Vec::new(),
        }
    }
}

/// The SQL of a row write (see [`Dialect::render_op`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RowSql {
    /// A statement whose count of changed rows is the write's outcome (see
    /// [`LayerOp::outcome`]).
    Execute(Statement),
    /// A query for the row, for an update with nothing to write: the row must exist.
    Exists(Statement),
}

/// The most items one backfill statement writes ([`Dialect::render_fingerprints`]).
pub(crate) const FINGERPRINT_RUN: usize = 256;

/// Up to this many ids, a fetch binds one placeholder per id; more go as one JSON array
/// parameter (see [`Dialect::render_fetch`]).
pub(crate) const FETCH_INLINE_IDS: usize = 16;

/// Always true, in every dialect (no `TRUE` literal: MariaDB's is an integer, older SQLite has
/// none).
pub(crate) const SQL_TRUE: &str = "1 = 1";
/// Always false, in every dialect.
pub(crate) const SQL_FALSE: &str = "1 = 0";

/// The type of the values of a long `IN` list bound as one JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// Texts.
    Text,
    /// Whole numbers.
    Integer,
    /// Numbers with a fraction.
    Double,
    /// Booleans (as the dialect binds them).
    Boolean,
}

impl ListKind {
    fn of(value: &Scalar) -> ListKind {
        match value {
            Scalar::Text(_) => ListKind::Text,
            Scalar::Integer(_) => ListKind::Integer,
            Scalar::Double(_) => ListKind::Double,
            Scalar::Boolean(_) => ListKind::Boolean,
        }
    }
}

/// The characters of a text a MariaDB index column holds.
pub(crate) const INDEX_TEXT: usize = 255;

/// The JSON type a declared index of `kind` holds.
pub(crate) fn index_type(kind: IndexKind) -> JsonType {
    match kind {
        IndexKind::Text => JsonType::Text,
        IndexKind::Number => JsonType::Number,
    }
}

/// Which rows of the ordered result a select returns.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Window {
    /// At most this many.
    pub(crate) limit: Option<u64>,
    /// After skipping this many.
    pub(crate) offset: Option<u64>,
    /// Ordered by `"rnId"` (after any sort keys) even without sort keys.
    pub(crate) ordered: bool,
}

/// The parameters and aliases of the statement being rendered.
#[derive(Debug, Default)]
pub(crate) struct RenderState {
    params: Vec<SqlValue>,
    aliases: usize,
    /// The types whose declared index the JSON path being tested has (see
    /// [`crate::query::index`]).
    indexed: Vec<(JsonType, String)>,
    /// Render JSON paths as literals, as the declared index's expression has them (keys are
    /// validated names and indexes integers, so nothing else is spliced).
    pub(crate) literal: bool,
}

impl RenderState {
    /// The name of the declared index of type `ty` on the JSON path being rendered, if any.
    pub(crate) fn index_name(&self, ty: JsonType) -> Option<&str> {
        self.indexed
            .iter()
            .find(|(t, _)| *t == ty)
            .map(|(_, name)| name.as_str())
    }

    /// A fresh alias for an array-element subquery: `w1`, `w2`, ... (unique per statement).
    fn next_alias(&mut self) -> String {
        self.aliases += 1;
        format!("w{}", self.aliases)
    }
}

/// The type of a JSON value, as far as filters and sorting care. The order of the variants is
/// the sort order between types (booleans, then numbers, then text, then objects/arrays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum JsonType {
    /// `true` / `false`.
    Boolean,
    /// A number, whole or not.
    Number,
    /// A string.
    Text,
    /// An object or an array.
    Container,
}

/// A scalar filter value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Text(String),
    Integer(i64),
    Double(f64),
    Boolean(bool),
}

impl Scalar {
    fn json_type(&self) -> JsonType {
        match self {
            Scalar::Text(_) => JsonType::Text,
            Scalar::Integer(_) | Scalar::Double(_) => JsonType::Number,
            Scalar::Boolean(_) => JsonType::Boolean,
        }
    }

    /// The scalar of a filter value; `None` for null.
    pub(crate) fn from_json(path: &str, helper: &str, value: &Value) -> Result<Option<Scalar>> {
        let fail = |reason: String| Error::InvalidFilter {
            path: clip(path),
            reason,
        };
        Ok(Some(match value {
            Value::Null => return Ok(None),
            Value::Bool(b) => Scalar::Boolean(*b),
            Value::String(s) => Scalar::Text(s.clone()),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Scalar::Integer(i),
                (None, Some(f)) if n.is_f64() => Scalar::Double(f),
                _ => {
                    return Err(fail(format!(
                        "{helper}: the integer is outside the 64-bit signed range"
                    )));
                }
            },
            Value::Array(_) => {
                return Err(fail(format!(
                    "{helper}: filters compare scalars, and the value is an array"
                )));
            }
            Value::Object(_) => {
                return Err(fail(format!(
                    "{helper}: filters compare scalars, and the value is an object"
                )));
            }
        }))
    }
}

/// Where a JSON value is: in `column` at the root, or in an element of an array being
/// iterated under `element` (an alias from [`Dialect::json_array_elements`]), then down
/// `steps` (never a wildcard).
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonLocation<'a> {
    /// The JSON column (a validated field name, not yet quoted).
    pub(crate) column: &'a str,
    /// The alias of the array element the steps start from, if any.
    pub(crate) element: Option<&'a str>,
    /// The steps from there (keys and indexes only).
    pub(crate) steps: &'a [PathStep],
}

impl<'a> JsonLocation<'a> {
    /// A field path from its column (no array element): what a declared index covers.
    pub(crate) fn of(path: &'a FieldPath) -> Self {
        JsonLocation {
            column: path.column(),
            element: None,
            steps: path.steps(),
        }
    }

    /// The steps as JSONPath text after `$` (`.a.b[0]`), for dialects whose JSON functions
    /// take JSONPath (SQLite, MariaDB).
    pub(crate) fn steps_text(&self) -> String {
        self.steps.iter().map(ToString::to_string).collect()
    }
}

/// What a path stands for in SQL.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Operand<'a> {
    /// The field is not in the table, or the path goes into a field that is not JSON: the
    /// value is null.
    Missing,
    /// A whole column of a known type (`Container` for a JSON column).
    Column { name: &'a str, ty: JsonType },
    /// A value inside a JSON column, of a type known only per row.
    Json(JsonLocation<'a>),
}

/// The condition a filter applies to the value at a path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Test<'a> {
    /// The value is null or missing.
    IsNull,
    /// The value compares with a scalar of the same type.
    Compare(CompareOp, Scalar),
    /// The value is text matching a LIKE pattern.
    Like(&'a str),
    /// The value equals one of these scalars (nulls already removed).
    In(Vec<Scalar>),
}

/// A SQL dialect: the pieces that differ between databases, plus the shared rendering.
///
/// Required methods are the per-database pieces; the `render_*` methods hold the shared
/// structure and should not need overriding. A later dialect must decide, for each required
/// method, what its comment asks.
pub(crate) trait Dialect: Send + Sync {
    /// The placeholder of the `n`th parameter (1-based). SQLite and MariaDB: `?`;
    /// PostgreSQL: `$n`.
    fn placeholder(&self, n: usize) -> Cow<'static, str>;

    /// Quotes a validated identifier. ANSI double quotes (doubling any `"`, which validated
    /// names never contain) suit SQLite and PostgreSQL; MariaDB must use backticks unless the
    /// session runs with `ANSI_QUOTES`.
    fn quote_identifier(&self, name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    /// The name a collection's table has in this database. The default is the full name;
    /// MySQL shortens names over its 64-character limit (korm 1.5's hashing rule).
    fn physical_table<'t>(&self, table: &'t str) -> Cow<'t, str> {
        Cow::Borrowed(table)
    }

    /// How a boolean is bound. The default keeps it a boolean (PostgreSQL); SQLite and
    /// MariaDB store booleans as 0/1 integers, and their JSON extraction yields 0/1 too.
    fn boolean(&self, value: bool) -> SqlValue {
        SqlValue::Boolean(value)
    }

    /// SQL for the scalar at `loc`, comparable with a bound scalar of the same type (text as
    /// text, numbers as numbers, booleans as [`Dialect::boolean`] binds them); objects and
    /// arrays may come out as JSON text (they are guarded by type before any comparison).
    /// PostgreSQL must cast per type here or in [`Dialect::render_test`] (`#>>` gives text).
    fn json_extract(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String;

    /// SQL for the value at `loc` when a filter compares it as a `ty` (the type guard before
    /// it already holds). The default is [`Dialect::json_extract`]; MariaDB overrides it
    /// because its `JSON_EXTRACT` gives JSON text, not a typed scalar.
    fn json_extract_as(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        ty: JsonType,
    ) -> String {
        let _ = ty;
        self.json_extract(st, loc)
    }

    /// SQL giving the JSON type name of the value at `loc` (NULL when missing); the names are
    /// those of [`Dialect::json_type_names`].
    fn json_type(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String;

    /// The names [`Dialect::json_type`] gives for a type. SQLite: `text`, `integer`/`real`,
    /// `true`/`false`, `array`/`object`; PostgreSQL's `jsonb_typeof`: `string`, `number`,
    /// `boolean`, `array`/`object`; MariaDB's `JSON_TYPE`: upper case, several numeric names.
    fn json_type_names(&self, ty: JsonType) -> &'static [&'static str];

    /// SQL that is true when the value at `loc` is JSON null or missing. The default tests
    /// the extracted value for SQL NULL, right where extraction maps JSON null to SQL NULL
    /// (SQLite, PostgreSQL `#>>`); MariaDB's `JSON_EXTRACT` yields the JSON `null` literal and
    /// must test the type too.
    fn json_is_null(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        format!("{} IS NULL", self.json_extract(st, loc))
    }

    /// A FROM item iterating the elements of the array at `loc` under `alias`, and a
    /// condition restricting the rows to array elements (a scalar or an object at `loc` must
    /// yield no row). Locations under `alias` then address one element. SQLite: `json_each`;
    /// PostgreSQL: `jsonb_array_elements` guarded by `jsonb_typeof(...) = 'array'`; MariaDB:
    /// `JSON_TABLE(... '$[*]' ...)`.
    fn json_array_elements(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        alias: &str,
    ) -> (String, String);

    /// `operand LIKE pattern`. korm's `like` is SQLite's: `%` and `_`, no escape character,
    /// ASCII letters case-insensitive; `pattern` is bound with its ASCII letters lowered.
    /// PostgreSQL and MariaDB default to `\` as the escape character and must say otherwise;
    /// both must also fold the value's ASCII letters, and only those (PostgreSQL's LIKE is
    /// case-sensitive and ILIKE, like MariaDB's `LOWER`, folds non-ASCII letters too).
    fn like(&self, operand: &str, pattern: &str) -> String {
        format!("{operand} LIKE {pattern}")
    }

    /// Binds a `like` pattern as [`Dialect::like`] takes it: its ASCII letters lowered.
    fn bind_like_pattern(&self, st: &mut RenderState, pattern: &str) -> String {
        self.bind(st, SqlValue::Text(pattern.to_ascii_lowercase()))
    }

    /// `like` on a whole column (an operand that binds nothing, so it may be repeated):
    /// binds the pattern and renders [`Dialect::like`]. MariaDB adds a fast path.
    fn like_column(&self, st: &mut RenderState, column: &str, pattern: &str) -> String {
        let p = self.bind_like_pattern(st, pattern);
        self.like(column, &p)
    }

    /// One `ORDER BY` term: `expr ASC NULLS LAST` or `expr DESC NULLS FIRST` (SQLite 3.30+,
    /// PostgreSQL). MariaDB has no `NULLS LAST` and must override this to sort by
    /// `expr IS NULL` first. Text must sort byte by byte (SQLite's BINARY collation;
    /// PostgreSQL needs `COLLATE "C"`).
    fn order_term(&self, expr: &str, order: SortOrder) -> String {
        match order {
            SortOrder::Asc => format!("{expr} ASC NULLS LAST"),
            SortOrder::Desc => format!("{expr} DESC NULLS FIRST"),
        }
    }

    /// The `LIMIT` clause. The limit is spliced as a literal integer (it is a `u64` from
    /// code, not text), which every dialect accepts, rather than bound (MariaDB and
    /// PostgreSQL type a bound limit differently).
    fn limit(&self, n: u64) -> Result<String> {
        if i64::try_from(n).is_err() {
            return Err(Error::InvalidOption {
                option: "limit",
                reason: format!("{n} is above the largest limit, {}", i64::MAX),
            });
        }
        Ok(format!(" LIMIT {n}"))
    }

    /// A subquery body giving one text row per element of the JSON array of strings bound
    /// at `param` (SQLite: `json_each`).
    fn json_text_array(&self, param: &str) -> String {
        format!("SELECT value FROM json_each({param})")
    }

    /// A subquery body giving one row per element of the JSON array bound at `param`, typed
    /// as `kind` (booleans are in the array as [`Dialect::boolean`] binds them), for an `IN`
    /// list of any length. SQLite: `json_each`.
    fn json_scalar_array(&self, param: &str, kind: ListKind) -> String {
        let _ = kind;
        format!("SELECT value FROM json_each({param})")
    }

    /// Whether these values can go as one JSON array (else they are bound one by one).
    /// The default says yes; MariaDB says no for text longer than its `JSON_TABLE` column.
    fn json_list_fits(&self, kind: ListKind, values: &[&Scalar]) -> bool {
        let _ = (kind, values);
        true
    }

    /// The text of the RN in `column` before its 36-character id (SQLite: `substr`).
    fn rn_prefix(&self, column: &str) -> String {
        format!("substr({column}, 1, length({column}) - 36)")
    }

    /// The length of a text in characters (MySQL's `LENGTH` counts bytes).
    fn char_length(&self, expr: &str) -> String {
        format!("length({expr})")
    }

    /// The distinct prefixes of the RN strings in `column` (see
    /// [`Layer::ref_prefixes`](crate::layer::Layer::ref_prefixes)): only texts that can be
    /// RNs, and at most one more than the planner accepts.
    fn render_ref_prefixes(&self, table: &str, column: &str) -> Statement {
        let c = self.quote_identifier(column);
        Statement::ddl(format!(
            "SELECT DISTINCT {} FROM {} WHERE {} > 36 AND {c} LIKE '[rn]%' LIMIT 1001",
            self.rn_prefix(&c),
            self.quote_identifier(&self.physical_table(table)),
            self.char_length(&c),
        ))
    }

    /// The last 36 characters of the RN in `column`: its id (SQLite: `substr(c, -36)`).
    fn rn_id(&self, column: &str) -> String {
        format!("substr({column}, -36)")
    }

    /// Binds a list of strings as one JSON array text parameter.
    fn bind_text_list(&self, st: &mut RenderState, values: &[String]) -> Result<String> {
        let list = serde_json::to_string(values).map_err(|e| Error::InvalidFilter {
            path: String::new(),
            reason: e.to_string(),
        })?;
        Ok(self.bind(st, SqlValue::Text(list)))
    }

    /// Binds a value and returns its placeholder.
    fn bind(&self, st: &mut RenderState, value: SqlValue) -> String {
        st.params.push(value);
        self.placeholder(st.params.len()).into_owned()
    }

    /// Binds a scalar filter value.
    fn bind_scalar(&self, st: &mut RenderState, value: &Scalar) -> String {
        let value = match value {
            Scalar::Text(s) => SqlValue::Text(s.clone()),
            Scalar::Integer(i) => SqlValue::Integer(*i),
            Scalar::Double(f) => SqlValue::Double(*f),
            Scalar::Boolean(b) => self.boolean(*b),
        };
        self.bind(st, value)
    }

    /// Whether a JSON value's type guard must come before its comparison. The default says
    /// yes: a dialect whose comparison can fail or convert on the wrong type (PostgreSQL
    /// casts, MariaDB's JSON comparisons) must test the type first. A dialect whose
    /// comparisons never fail says no, and the guard then runs only on rows the comparison
    /// already matched (SQLite: one JSON lookup per row instead of two).
    fn guard_first(&self) -> bool {
        true
    }

    /// Whether a JSON value found equal to `text` by [`Dialect::json_extract_as`] must still
    /// have its type checked. The default says yes. SQLite says no unless the text looks like
    /// a JSON object or array: its `json_extract` gives a number or a boolean as a number
    /// (never equal to text) and only an object or an array as text, always starting with `{`
    /// or `[`; so equality with any other text already means the value is that text.
    fn text_equality_needs_guard(&self, text: &str) -> bool {
        let _ = text;
        true
    }

    /// `(guard AND test)` or `(test AND guard)`, as [`Dialect::guard_first`] says, with the
    /// parameters bound in the order they appear. `equals` is what an equality (`=` or `IN`)
    /// compares with, `None` for other tests: an equality with texts that
    /// [`Dialect::text_equality_needs_guard`] clears is the test alone.
    fn guarded(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        ty: JsonType,
        equals: Option<&[&Scalar]>,
        test: &mut dyn FnMut(&mut RenderState) -> String,
    ) -> String {
        let cleared = ty == JsonType::Text
            && equals.is_some_and(|values| {
                values.iter().all(|v| match v {
                    Scalar::Text(text) => !self.text_equality_needs_guard(text),
                    _ => false,
                })
            });
        if cleared {
            test(st)
        } else if self.guard_first() {
            let guard = self.json_type_is(st, loc, ty);
            let test = test(st);
            format!("({guard} AND {test})")
        } else {
            let test = test(st);
            let guard = self.json_type_is(st, loc, ty);
            format!("({test} AND {guard})")
        }
    }

    /// SQL true when the JSON value at `loc` has type `ty`.
    fn json_type_is(&self, st: &mut RenderState, loc: &JsonLocation<'_>, ty: JsonType) -> String {
        let expr = self.json_type(st, loc);
        match self.json_type_names(ty) {
            [one] => format!("{expr} = '{one}'"),
            names => {
                let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
                format!("{expr} IN ({})", list.join(", "))
            }
        }
    }

    /// SQL ranking the JSON value at `loc` by type (booleans 1, numbers 2, text 3,
    /// objects/arrays 4, null or missing NULL): the first sort key of a JSON path, so values
    /// of different types sort the same way in every database.
    fn json_type_rank(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        self.json_type_rank_else(st, loc, "")
    }

    /// [`Dialect::json_type_rank`] with `otherwise` before `END` (MariaDB ranks null and
    /// missing values `ELSE 5` rather than NULL).
    fn json_type_rank_else(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        otherwise: &str,
    ) -> String {
        let expr = self.json_type(st, loc);
        let mut sql = format!("CASE {expr}");
        for (rank, ty) in [
            JsonType::Boolean,
            JsonType::Number,
            JsonType::Text,
            JsonType::Container,
        ]
        .into_iter()
        .enumerate()
        {
            for name in self.json_type_names(ty) {
                sql.push_str(&format!(" WHEN '{name}' THEN {}", rank + 1));
            }
        }
        sql.push_str(otherwise);
        sql.push_str(" END");
        sql
    }

    /// `column op placeholder`, comparing a whole column of type `ty` with a bound scalar.
    /// The default is the bare operator; PostgreSQL adds `COLLATE "C"` to ordering
    /// comparisons of text so `gt`/`lt` compare byte by byte whatever the database collation.
    fn compare_column(&self, column: &str, op: CompareOp, param: &str, ty: JsonType) -> String {
        let _ = ty;
        format!("{column} {} {param}", op.sql())
    }

    /// `expr`, a number, as a double. An integer compared with a double compares as two
    /// doubles in korm (as in korm 1.5's JavaScript, the in-memory evaluator and
    /// PostgreSQL); a database that compares them exactly (SQLite; MariaDB's integer
    /// columns) casts the integer side. The default is `expr` itself.
    fn as_double(&self, expr: &str) -> String {
        expr.to_owned()
    }

    /// `expr` as it is compared with `values` ([`Dialect::as_double`] when one of them is a
    /// double of magnitude 2^53 or more). Below 2^53 an exact comparison and one of doubles
    /// agree (every integer up to 2^53 is a double, and a larger one rounds to a double of at
    /// least 2^53), so the SQL, and the indexes it can use, stay as they are.
    fn compared_number(&self, expr: String, values: &[&Scalar]) -> String {
        let exact = crate::model::EXACT_IN_DOUBLE as f64;
        if values
            .iter()
            .any(|v| matches!(v, Scalar::Double(f) if f.abs() >= exact))
        {
            self.as_double(&expr)
        } else {
            expr
        }
    }

    /// The `ORDER BY` term of a whole column of type `ty`. The default is
    /// [`Dialect::order_term`] on the quoted name; MariaDB overrides it to sort text byte by
    /// byte whatever the column's collation.
    fn sort_column(&self, name: &str, ty: JsonType, order: SortOrder) -> String {
        let _ = ty;
        self.order_term(&self.quote_identifier(name), order)
    }

    /// The `ORDER BY` terms of the JSON value at `loc`: by default its type rank
    /// ([`Dialect::json_type_rank`]), then its value. MariaDB overrides it: its
    /// `NULLS LAST` emulation repeats an expression, which must not repeat bound paths.
    fn json_sort_terms(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        order: SortOrder,
    ) -> Vec<String> {
        let rank = self.json_type_rank(st, loc);
        let rank = self.order_term(&rank, order);
        let value = self.json_extract(st, loc);
        vec![rank, self.order_term(&value, order)]
    }

    /// Renders `SELECT * FROM "table" [WHERE ...] ORDER BY ... [LIMIT n]` for one item table.
    ///
    /// `sort` is a list of (path, order); when there is at least one, `"rnId" ASC` closes the
    /// `ORDER BY` so the order is stable. With no sort keys the order is unspecified.
    ///
    /// # Errors
    /// [`Error::InvalidIdentifier`] for a table name that is not `__items__{ns}__{kind}`,
    /// [`Error::InvalidPath`] for a malformed path or a sort path with `[*]`,
    /// [`Error::InvalidFilter`] for a value a filter can not compare or a path that SQL can not
    /// evaluate (an encrypted field, a path through a reference), [`Error::InvalidOption`] for a
    /// limit above `i64::MAX`.
    #[cfg(test)]
    fn render_select(
        &self,
        schema: &TableSchema,
        filter: Option<&Filter>,
        sort: &[(String, SortOrder)],
        limit: Option<u64>,
    ) -> Result<Statement> {
        self.render_select_window(
            schema,
            filter,
            sort,
            Window {
                limit,
                ..Window::default()
            },
        )
    }

    /// [`Dialect::render_select`] with an offset, and ordered by `"rnId"` even without sort
    /// keys when `window.ordered` (paging and streaming need a total order). An offset
    /// without a limit is `LIMIT <i64::MAX> OFFSET m`, which every dialect accepts.
    ///
    /// # Errors
    /// As [`Dialect::render_select`]; an offset above `i64::MAX` is [`Error::InvalidOption`].
    fn render_select_window(
        &self,
        schema: &TableSchema,
        filter: Option<&Filter>,
        sort: &[(String, SortOrder)],
        window: Window,
    ) -> Result<Statement> {
        let Window {
            limit,
            offset,
            ordered,
        } = window;
        validate_table(&schema.table)?;
        let mut st = RenderState::default();
        let mut sql = format!(
            "SELECT * FROM {}",
            self.quote_identifier(&self.physical_table(&schema.table))
        );
        if let Some(filter) = filter {
            let condition = self.render_filter(&mut st, schema, filter)?;
            sql.push_str(" WHERE ");
            sql.push_str(&condition);
        }
        // Without sort keys there is no ORDER BY at all: ordering by "rnId" alone would make
        // SQLite walk the primary-key index and look every row up (4x slower on a scan), for
        // an order nobody asked for.
        if !sort.is_empty() || ordered || offset.is_some() {
            let order = self.render_order_by(&mut st, schema, sort)?;
            if !order.is_empty() {
                sql.push_str(" ORDER BY ");
                sql.push_str(&order);
            }
        }
        match (limit, offset) {
            (Some(n), _) => sql.push_str(&self.limit(n)?),
            (None, Some(_)) => sql.push_str(&self.limit(i64::MAX.unsigned_abs())?),
            (None, None) => {}
        }
        if let Some(m) = offset {
            if i64::try_from(m).is_err() {
                return Err(Error::InvalidOption {
                    option: "offset",
                    reason: format!("{m} is above the largest offset, {}", i64::MAX),
                });
            }
            sql.push_str(&format!(" OFFSET {m}"));
        }
        Ok(Statement {
            sql,
            params: st.params,
        })
    }

    /// The statements creating the declared index on `path` of `table` for `kind` if it does
    /// not exist (see [`crate::query::index`]). The default is an expression index on
    /// [`Dialect::json_extract_as`] with literal paths: the very text a filter on an indexed
    /// path renders, which the database must match to use the index (SQLite, PostgreSQL).
    fn render_create_index(
        &self,
        table: &str,
        path: &FieldPath,
        kind: IndexKind,
    ) -> Vec<Statement> {
        let loc = JsonLocation::of(path);
        let name = index_name(table, loc.column, &loc.steps_text(), kind);
        let mut st = RenderState {
            literal: true,
            ..RenderState::default()
        };
        let expression = self.json_extract_as(&mut st, &loc, index_type(kind));
        vec![Statement::ddl(format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (({expression}))",
            self.quote_identifier(&name),
            self.quote_identifier(&self.physical_table(table)),
        ))]
    }

    /// `SELECT COUNT(*) FROM "table" [WHERE ...]`: how many rows match.
    ///
    /// # Errors
    /// As [`Dialect::render_select`].
    fn render_count(&self, schema: &TableSchema, filter: Option<&Filter>) -> Result<Statement> {
        validate_table(&schema.table)?;
        let mut st = RenderState::default();
        let mut sql = format!(
            "SELECT COUNT(*) FROM {}",
            self.quote_identifier(&self.physical_table(&schema.table))
        );
        if let Some(filter) = filter {
            let condition = self.render_filter(&mut st, schema, filter)?;
            sql.push_str(" WHERE ");
            sql.push_str(&condition);
        }
        Ok(Statement {
            sql,
            params: st.params,
        })
    }

    /// A filter as a SQL condition.
    fn render_filter(
        &self,
        st: &mut RenderState,
        schema: &TableSchema,
        filter: &Filter,
    ) -> Result<String> {
        match filter.node() {
            FilterNode::Compare { path, op, value } => {
                let parsed = FieldPath::parse(path)?;
                let test = match Scalar::from_json(path, op.name(), value)? {
                    Some(scalar) => Test::Compare(*op, scalar),
                    None if *op == CompareOp::Eq => Test::IsNull,
                    None => {
                        return Err(Error::InvalidFilter {
                            path: clip(path),
                            reason: format!(
                                "{} with null never matches: only eq can test for null",
                                op.name()
                            ),
                        });
                    }
                };
                self.render_path_test(st, schema, path, &parsed, &test)
            }
            FilterNode::Like { path, pattern } => {
                let parsed = FieldPath::parse(path)?;
                self.render_path_test(st, schema, path, &parsed, &Test::Like(pattern))
            }
            FilterNode::InList { path, values } => {
                let parsed = FieldPath::parse(path)?;
                let mut scalars = Vec::with_capacity(values.len());
                let mut null = false;
                for value in values {
                    match Scalar::from_json(path, "in_list", value)? {
                        Some(scalar) => scalars.push(scalar),
                        None => null = true,
                    }
                }
                // A null in the list finds null and missing values, as `eq` with null does
                // (korm 1.5's in_list; SQL's own `IN` would match nothing). Rendered first:
                // `?` placeholders bind in the order they appear.
                if !null {
                    return self.render_path_test(st, schema, path, &parsed, &Test::In(scalars));
                }
                let nulls = self.render_path_test(st, schema, path, &parsed, &Test::IsNull)?;
                match self.render_path_test(st, schema, path, &parsed, &Test::In(scalars))? {
                    listed if listed == SQL_FALSE => Ok(nulls),
                    listed => Ok(format!("({nulls} OR {listed})")),
                }
            }
            FilterNode::And(filters) => self.render_junction(st, schema, filters, "AND", SQL_TRUE),
            FilterNode::Or(filters) => self.render_junction(st, schema, filters, "OR", SQL_FALSE),
            FilterNode::Not(inner) => {
                // `IS NOT TRUE`, not `NOT`: a condition on a missing value is NULL, and
                // `NOT NULL` would drop the row; korm's `not` keeps it.
                let inner = self.render_filter(st, schema, inner)?;
                Ok(format!("(({inner}) IS NOT TRUE)"))
            }
            FilterNode::RefIn {
                column,
                prefixes,
                ids,
            } => {
                if schema.kind_of(column).is_none() || prefixes.is_empty() || ids.is_empty() {
                    return Ok(SQL_FALSE.to_owned());
                }
                let column = self.quote_identifier(column);
                // One parameter per list however long: a JSON array the database iterates.
                // The id test first: it is the selective one (most rows share a prefix).
                let ids = self.bind_text_list(st, ids)?;
                let prefixes = self.bind_text_list(st, prefixes)?;
                Ok(format!(
                    "({column} IS NOT NULL AND {} IN ({}) AND {} IN ({}))",
                    self.rn_id(&column),
                    self.json_text_array(&ids),
                    self.rn_prefix(&column),
                    self.json_text_array(&prefixes),
                ))
            }
            FilterNode::RefSemi {
                column,
                prefixes,
                target,
                filter,
            } => {
                validate_table(&target.table)?;
                if schema.kind_of(column).is_none() || prefixes.is_empty() {
                    return Ok(SQL_FALSE.to_owned());
                }
                let column = self.quote_identifier(column);
                let table = self.quote_identifier(&self.physical_table(&target.table));
                let id = self.quote_identifier(ID_COLUMN);
                // The id test first: it is the selective one (most rows share a prefix).
                let inner = self.render_filter(st, target, filter)?;
                let prefixes = self.bind_text_list(st, prefixes)?;
                Ok(format!(
                    "({column} IS NOT NULL AND {} IN (SELECT {id} FROM {table} WHERE {inner}) AND {} IN ({}))",
                    self.rn_id(&column),
                    self.rn_prefix(&column),
                    self.json_text_array(&prefixes),
                ))
            }
        }
    }

    /// `(a AND b ...)` / `(a OR b ...)`; `empty` when there are no filters.
    fn render_junction(
        &self,
        st: &mut RenderState,
        schema: &TableSchema,
        filters: &[Filter],
        joiner: &str,
        empty: &str,
    ) -> Result<String> {
        match filters {
            [] => Ok(empty.to_owned()),
            [only] => self.render_filter(st, schema, only),
            _ => {
                let mut parts = Vec::with_capacity(filters.len());
                for filter in filters {
                    parts.push(self.render_filter(st, schema, filter)?);
                }
                Ok(balanced(&parts, joiner))
            }
        }
    }

    /// A test on the value(s) at a path: one value, or any element for a path with `[*]`.
    fn render_path_test(
        &self,
        st: &mut RenderState,
        schema: &TableSchema,
        raw: &str,
        path: &FieldPath,
        test: &Test<'_>,
    ) -> Result<String> {
        let operand = resolve(schema, raw, path, Purpose::Filter)?;
        if !path.has_wildcard() {
            if let Operand::Json(loc) = &operand
                && !schema.indexes.is_empty()
            {
                let steps = loc.steps_text();
                st.indexed = [IndexKind::Text, IndexKind::Number]
                    .into_iter()
                    .map(|kind| {
                        let name = index_name(&schema.table, loc.column, &steps, kind);
                        (index_type(kind), name)
                    })
                    .filter(|(_, name)| schema.indexes.contains(name))
                    .collect();
                let sql = self.render_test(st, &operand, test);
                st.indexed.clear();
                return Ok(sql);
            }
            return Ok(self.render_test(st, &operand, test));
        }
        match operand {
            Operand::Json(loc) => {
                let segments: Vec<&[PathStep]> = loc
                    .steps
                    .split(|s| matches!(s, PathStep::Wildcard))
                    .collect();
                Ok(self.render_any_element(st, loc.column, None, &segments, test))
            }
            // No array to go over: no element can match.
            Operand::Missing | Operand::Column { .. } => Ok(SQL_FALSE.to_owned()),
        }
    }

    /// `EXISTS (SELECT 1 FROM <elements> WHERE <is element> AND <test>)`, nested once per
    /// `[*]`. `segments` are the steps between wildcards: `segments[0]` leads to the array
    /// from `parent` (or the column root), the last one from an element to the tested value.
    fn render_any_element(
        &self,
        st: &mut RenderState,
        column: &str,
        parent: Option<&str>,
        segments: &[&[PathStep]],
        test: &Test<'_>,
    ) -> String {
        let alias = st.next_alias();
        let array = JsonLocation {
            column,
            element: parent,
            steps: segments[0],
        };
        let (from, is_element) = self.json_array_elements(st, &array, &alias);
        let body = if segments.len() == 2 {
            let element = JsonLocation {
                column,
                element: Some(&alias),
                steps: segments[1],
            };
            self.render_test(st, &Operand::Json(element), test)
        } else {
            self.render_any_element(st, column, Some(&alias), &segments[1..], test)
        };
        format!("EXISTS (SELECT 1 FROM {from} WHERE {is_element} AND {body})")
    }

    /// A test on one operand. Values of different types never match: a typed column of
    /// another type renders as false, a JSON value is guarded by its type.
    fn render_test(&self, st: &mut RenderState, operand: &Operand<'_>, test: &Test<'_>) -> String {
        match operand {
            Operand::Missing => match test {
                Test::IsNull => "NULL IS NULL".to_owned(),
                Test::Compare(op, value) => {
                    let p = self.bind_scalar(st, value);
                    format!("NULL {} {p}", op.sql())
                }
                Test::Like(pattern) => {
                    let p = self.bind_like_pattern(st, pattern);
                    self.like("NULL", &p)
                }
                Test::In(values) if values.is_empty() => SQL_FALSE.to_owned(),
                // `NULL IN (...)` is unknown whatever the list holds: nothing to bind (a
                // long list of mixed types bound as one typed array failed on PostgreSQL).
                Test::In(_) => "NULL".to_owned(),
            },
            Operand::Column { name, ty } => {
                let column = self.quote_identifier(name);
                match test {
                    Test::IsNull => format!("{column} IS NULL"),
                    Test::Compare(op, value) if value.json_type() == *ty => {
                        let p = self.bind_scalar(st, value);
                        let column = self.compared_number(column, &[value]);
                        self.compare_column(&column, *op, &p, *ty)
                    }
                    Test::Like(pattern) if *ty == JsonType::Text => {
                        self.like_column(st, &column, pattern)
                    }
                    Test::In(values) => {
                        let mut parts: Vec<String> = in_groups(values, *ty)
                            .iter()
                            .map(|same| {
                                let list = self.bind_list(st, same);
                                let column = self.compared_number(column.clone(), same);
                                self.in_list_sql(&column, &list)
                            })
                            .collect();
                        match parts.len() {
                            0 => SQL_FALSE.to_owned(),
                            1 => parts.remove(0),
                            _ => format!("({})", parts.join(" OR ")),
                        }
                    }
                    Test::Compare(..) | Test::Like(_) => SQL_FALSE.to_owned(),
                }
            }
            Operand::Json(loc) => match test {
                Test::IsNull => self.json_is_null(st, loc),
                Test::Compare(op, value) => {
                    let compared = [value];
                    st.literal = self.use_index(st, loc, value.json_type(), &compared);
                    let sql = self.guarded(
                        st,
                        loc,
                        value.json_type(),
                        (*op == CompareOp::Eq).then_some(&compared[..]),
                        &mut |st| {
                            let extracted = self.json_extract_as(st, loc, value.json_type());
                            let extracted = self.compared_number(extracted, &compared);
                            let p = self.bind_scalar(st, value);
                            format!("{extracted} {} {p}", op.sql())
                        },
                    );
                    st.literal = false;
                    sql
                }
                Test::Like(pattern) => self.guarded(st, loc, JsonType::Text, None, &mut |st| {
                    let extracted = self.json_extract_as(st, loc, JsonType::Text);
                    let p = self.bind_like_pattern(st, pattern);
                    self.like(&extracted, &p)
                }),
                Test::In(values) => {
                    // One guarded IN per group of values (see `in_groups`), in a fixed type
                    // order.
                    let mut parts = Vec::new();
                    for ty in [JsonType::Boolean, JsonType::Number, JsonType::Text] {
                        for same in in_groups(values, ty) {
                            st.literal = self.use_index(st, loc, ty, &same);
                            parts.push(self.guarded(st, loc, ty, Some(&same), &mut |st| {
                                let extracted = self.json_extract_as(st, loc, ty);
                                let extracted = self.compared_number(extracted, &same);
                                let list = self.bind_list(st, &same);
                                self.in_list_sql(&extracted, &list)
                            }));
                            st.literal = false;
                        }
                    }
                    match parts.len() {
                        0 => SQL_FALSE.to_owned(),
                        1 => parts.remove(0),
                        _ => format!("({})", parts.join(" OR ")),
                    }
                }
            },
        }
    }

    /// `operand IN (list)`, `list` being placeholders or a subquery from
    /// [`Dialect::json_scalar_array`]. PostgreSQL turns the subquery into an array
    /// (`= ANY(ARRAY(...))`), which an index scan takes as one condition.
    fn in_list_sql(&self, operand: &str, list: &str) -> String {
        format!("{operand} IN ({list})")
    }

    /// Whether a test of the JSON value at `loc` as a `ty` against `values` goes through
    /// the path's declared index of that type (rendering the path as the index has it).
    fn use_index(
        &self,
        st: &RenderState,
        loc: &JsonLocation<'_>,
        ty: JsonType,
        values: &[&Scalar],
    ) -> bool {
        loc.element.is_none()
            && st.index_name(ty).is_some()
            && values.iter().all(|v| self.index_serves(v))
    }

    /// Whether a declared index answers a test against `value` exactly. The default says
    /// yes; MariaDB's index column holds a text's first [`INDEX_TEXT`] characters and a
    /// number as a double.
    fn index_serves(&self, value: &Scalar) -> bool {
        let _ = value;
        true
    }

    /// The inside of an `IN (...)` for these values (all of one [`Scalar`] variant, as
    /// `in_groups` makes them): up to [`FETCH_INLINE_IDS`] values, one placeholder each;
    /// more, one JSON array parameter the database iterates
    /// ([`Dialect::json_scalar_array`]), so a list of any length is one parameter and one
    /// statement text.
    fn bind_list(&self, st: &mut RenderState, values: &[&Scalar]) -> String {
        if values.len() > FETCH_INLINE_IDS
            && let Some(kind) = values.first().map(|v| ListKind::of(v))
            && self.json_list_fits(kind, values)
        {
            let items: Vec<Value> = values
                .iter()
                .map(|v| match v {
                    Scalar::Text(s) => Value::String(s.clone()),
                    Scalar::Integer(i) => Value::from(*i),
                    Scalar::Double(f) => Value::from(*f),
                    Scalar::Boolean(b) => match self.boolean(*b) {
                        SqlValue::Integer(i) => Value::from(i),
                        _ => Value::Bool(*b),
                    },
                })
                .collect();
            let p = self.bind(st, SqlValue::Text(Value::Array(items).to_string()));
            return self.json_scalar_array(&p, kind);
        }
        let mut placeholders = Vec::with_capacity(values.len());
        for value in values {
            placeholders.push(self.bind_scalar(st, value));
        }
        placeholders.join(", ")
    }

    /// The `ORDER BY` terms: each sort key, then `"rnId" ASC`.
    fn render_order_by(
        &self,
        st: &mut RenderState,
        schema: &TableSchema,
        sort: &[(String, SortOrder)],
    ) -> Result<String> {
        let mut terms = Vec::with_capacity(sort.len() + 1);
        for (raw, order) in sort {
            let path = FieldPath::parse(raw)?;
            if path.has_wildcard() {
                return Err(Error::InvalidPath {
                    path: clip(raw),
                    reason: "sort paths can not contain [*]: a sort key must be one value".into(),
                });
            }
            match resolve(schema, raw, &path, Purpose::Sort)? {
                // Every row sorts as NULL: the key orders nothing.
                Operand::Missing => {}
                Operand::Column { name, ty } => terms.push(self.sort_column(name, ty, *order)),
                Operand::Json(loc) => terms.extend(self.json_sort_terms(st, &loc, *order)),
            }
        }
        terms.push(format!("{} ASC", self.quote_identifier(ID_COLUMN)));
        Ok(terms.join(", "))
    }

    // ---- Rows: reads by id and writes (DML). Every value is bound.

    /// Appends `ident`, quoted, to `sql` (statements are built on every read and write, so
    /// this avoids the allocation [`Dialect::quote_identifier`] makes).
    fn push_identifier(&self, sql: &mut String, ident: &str) {
        sql.push_str(&self.quote_identifier(ident));
    }

    /// Appends `SELECT * FROM <table> WHERE "rnId" = <placeholder 1>`: the load of one item,
    /// built in the caller's buffer (a load is the hottest statement korm sends).
    fn push_fetch_one(&self, sql: &mut String, table: &str) {
        sql.push_str("SELECT * FROM ");
        self.push_identifier(sql, &self.physical_table(table));
        sql.push_str(" WHERE ");
        self.push_identifier(sql, ID_COLUMN);
        sql.push_str(" = ");
        sql.push_str(&self.placeholder(1));
    }

    /// `SELECT *` of the rows with these ids: one placeholder per id up to
    /// [`FETCH_INLINE_IDS`], more as one JSON array parameter (one statement text, prepared
    /// once, whatever the count).
    fn render_fetch(&self, table: &str, ids: &[String]) -> Result<Statement> {
        validate_table(table)?;
        let mut st = RenderState::default();
        let mut sql = String::with_capacity(64 + table.len());
        if let [id] = ids {
            self.push_fetch_one(&mut sql, table);
            st.params.push(SqlValue::Text(id.clone()));
        } else {
            sql.push_str("SELECT * FROM ");
            self.push_identifier(&mut sql, &self.physical_table(table));
            sql.push_str(" WHERE ");
            self.push_identifier(&mut sql, ID_COLUMN);
            sql.push_str(" IN (");
            if ids.len() <= FETCH_INLINE_IDS {
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&self.bind(&mut st, SqlValue::Text(id.clone())));
                }
            } else {
                let list = self.bind_text_list(&mut st, ids)?;
                sql.push_str(&self.json_text_array(&list));
            }
            sql.push(')');
        }
        Ok(Statement {
            sql,
            params: st.params,
        })
    }

    /// A field's storage-form value as bound for a column of `kind`: booleans as
    /// [`Dialect::boolean`] binds them, whole numbers as integers (doubles in a double
    /// column; a whole double up to 2^53 in an integer column, so a condition on it holds
    /// where the column does), objects and arrays as JSON text.
    fn write_value(&self, value: &Value, kind: ColumnKind) -> SqlValue {
        match (value, kind) {
            (Value::Null, _) => SqlValue::Null,
            (Value::Bool(b), _) => self.boolean(*b),
            (Value::Number(n), ColumnKind::Double) => {
                SqlValue::Double(n.as_f64().unwrap_or(f64::NAN))
            }
            (Value::Number(n), ColumnKind::Integer)
                if let Some(i) = crate::model::whole_double(n) =>
            {
                SqlValue::Integer(i)
            }
            (Value::Number(n), _) => match n.as_i64() {
                Some(i) => SqlValue::Integer(i),
                None => SqlValue::Double(n.as_f64().unwrap_or(f64::NAN)),
            },
            (Value::String(s), _) => SqlValue::Text(s.clone()),
            // Straight into a buffer: `Display` goes through a formatter per token, which was
            // half the cost of rendering an insert. (Serializing a `Value` can not fail.)
            (other, _) => {
                SqlValue::Json(serde_json::to_string(other).unwrap_or_else(|_| other.to_string()))
            }
        }
    }

    /// Binds a value written to a column. The default is [`Dialect::bind`]; PostgreSQL
    /// writes a cast naming the value's type after the placeholder.
    fn bind_write(&self, st: &mut RenderState, value: SqlValue) -> String {
        self.bind(st, value)
    }

    /// The columns an insert or update writes and their values: each field, then, when the
    /// table keeps a unique shadow for it, the shadow with the value's fingerprint.
    fn row_values(&self, op: &LayerOp, schema: &TableSchema) -> Vec<(String, SqlValue)> {
        let mut out = Vec::with_capacity(op.fields.len() + schema.unique.len());
        for field in op.fields.iter() {
            let kind = schema.kind_of(&field.name).unwrap_or(ColumnKind::Text);
            out.push((field.name.clone(), self.write_value(&field.value, kind)));
            if schema.is_unique(&field.name) {
                let fingerprint = if field.value.is_null() {
                    SqlValue::Null
                } else {
                    SqlValue::Text(fingerprint(&field.value))
                };
                out.push((format!("{UNIQUE_PREFIX}{}", field.name), fingerprint));
            }
        }
        out
    }

    /// The SQL of a row write: `INSERT INTO <table> ("rnId", <columns>) VALUES (...)`,
    /// `UPDATE <table> SET <column> = ..., ... WHERE "rnId" = ...` (with nothing to write,
    /// a query finding the row, which must exist), or `DELETE FROM <table> WHERE "rnId" = ...`.
    /// `schema` is the table's, made to fit the op.
    ///
    /// # Errors
    /// What [`Dialect::check_row`] refuses.
    fn render_op(&self, op: &LayerOp, schema: &TableSchema) -> Result<RowSql> {
        let values = match op.kind {
            OpKind::Insert | OpKind::Update => {
                self.check_row(op, schema)?;
                self.row_values(op, schema)
            }
            OpKind::Delete | OpKind::DeleteIfExists => Vec::new(),
        };
        let mut st = RenderState::default();
        let mut sql = String::with_capacity(64 + op.table.len() + 24 * values.len());
        let table = self.physical_table(&op.table);
        let exists = op.kind == OpKind::Update && values.is_empty();
        match op.kind {
            OpKind::Insert => {
                sql.push_str("INSERT INTO ");
                self.push_identifier(&mut sql, &table);
                sql.push_str(" (");
                self.push_identifier(&mut sql, ID_COLUMN);
                for (column, _) in &values {
                    sql.push_str(", ");
                    self.push_identifier(&mut sql, column);
                }
                sql.push_str(") VALUES (");
                sql.push_str(&self.bind(&mut st, SqlValue::Text(op.id.clone())));
                for (_, value) in values {
                    sql.push_str(", ");
                    sql.push_str(&self.bind_write(&mut st, value));
                }
                sql.push(')');
                return Ok(RowSql::Execute(Statement {
                    sql,
                    params: st.params,
                }));
            }
            OpKind::Update if exists => {
                sql.push_str("SELECT 1 FROM ");
                self.push_identifier(&mut sql, &table);
            }
            OpKind::Update => {
                sql.push_str("UPDATE ");
                self.push_identifier(&mut sql, &table);
                sql.push_str(" SET ");
                for (i, (column, value)) in values.into_iter().enumerate() {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    self.push_identifier(&mut sql, &column);
                    sql.push_str(" = ");
                    sql.push_str(&self.bind_write(&mut st, value));
                }
            }
            OpKind::Delete | OpKind::DeleteIfExists => {
                sql.push_str("DELETE FROM ");
                self.push_identifier(&mut sql, &table);
            }
        }
        sql.push_str(" WHERE ");
        self.push_identifier(&mut sql, ID_COLUMN);
        sql.push_str(" = ");
        sql.push_str(&self.bind(&mut st, SqlValue::Text(op.id.clone())));
        // Any write to an existing row may be conditional (an insert has no row yet).
        if op.kind != OpKind::Insert {
            for (_, condition) in self.render_conditions(&mut st, op, schema) {
                sql.push_str(" AND ");
                sql.push_str(&condition);
            }
        }
        let statement = Statement {
            sql,
            params: st.params,
        };
        Ok(if exists {
            RowSql::Exists(statement)
        } else {
            RowSql::Execute(statement)
        })
    }

    /// One INSERT of several rows: each op (a plain insert into the same table as the others)
    /// a row of its VALUES list, in order. `None` when the ops do not write the same columns
    /// in the same order (each then runs alone).
    ///
    /// # Errors
    /// What [`Dialect::check_row`] refuses.
    fn render_insert_rows(
        &self,
        ops: &[&LayerOp],
        schema: &TableSchema,
    ) -> Result<Option<Statement>> {
        let Some(first) = ops.first() else {
            return Ok(None);
        };
        let mut st = RenderState::default();
        let mut columns: Option<Vec<String>> = None;
        let mut rows = String::new();
        for op in ops {
            self.check_row(op, schema)?;
            let values = self.row_values(op, schema);
            match &columns {
                None => columns = Some(values.iter().map(|(c, _)| c.clone()).collect()),
                Some(names) => {
                    if names.len() != values.len()
                        || names.iter().zip(&values).any(|(name, (c, _))| name != c)
                    {
                        return Ok(None);
                    }
                }
            }
            if !rows.is_empty() {
                rows.push_str(", ");
            }
            rows.push('(');
            rows.push_str(&self.bind(&mut st, SqlValue::Text(op.id.clone())));
            for (_, value) in values {
                rows.push_str(", ");
                rows.push_str(&self.bind_write(&mut st, value));
            }
            rows.push(')');
        }
        let mut sql = String::with_capacity(64 + rows.len());
        sql.push_str("INSERT INTO ");
        self.push_identifier(&mut sql, &self.physical_table(&first.table));
        sql.push_str(" (");
        self.push_identifier(&mut sql, ID_COLUMN);
        for column in columns.iter().flatten() {
            sql.push_str(", ");
            self.push_identifier(&mut sql, column);
        }
        sql.push_str(") VALUES ");
        sql.push_str(&rows);
        Ok(Some(Statement {
            sql,
            params: st.params,
        }))
    }

    /// The null-safe equality operator, with its spaces: SQLite's ` IS `, PostgreSQL's
    /// ` IS NOT DISTINCT FROM `, MariaDB's ` <=> `.
    fn null_safe_eq(&self) -> &'static str {
        " IS "
    }

    /// Binds the value a condition expects a column of `kind` to hold, as it compares with
    /// the stored value. The default is [`Dialect::bind_write`] (what was written compares
    /// with what is stored); MariaDB adds its binary collation to text.
    fn bind_expected(&self, st: &mut RenderState, value: SqlValue, kind: ColumnKind) -> String {
        let _ = kind;
        self.bind_write(st, value)
    }

    /// The conditions of an optimistic write ([`LayerOp::expect`]), each with its column:
    /// `"column" <null-safe => <value as stored>`. A column the table lacks, or whose kind
    /// the value can not have (the column was recreated for another kind), gives none: its
    /// old value is gone already.
    fn render_conditions(
        &self,
        st: &mut RenderState,
        op: &LayerOp,
        schema: &TableSchema,
    ) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(op.expect.len());
        for expect in &op.expect {
            let Some(kind) = schema.kind_of(&expect.name) else {
                continue;
            };
            let value = match &expect.value {
                Stored::Value(value) => self.write_value(value, kind),
                Stored::JsonText(text) => match kind {
                    ColumnKind::Json | ColumnKind::Encrypted => SqlValue::Json(text.clone()),
                    _ => SqlValue::Text(text.clone()),
                },
            };
            if !value_fits(&value, kind) {
                continue;
            }
            let mut sql = self.quote_identifier(&expect.name);
            sql.push_str(self.null_safe_eq());
            sql.push_str(&self.bind_expected(st, value, kind));
            out.push((expect.name.clone(), sql));
        }
        out
    }

    /// The query that tells why a conditional write changed no row: one row (or none, when
    /// the item is gone) of one `1`/`0` column per condition, whether it still holds, and
    /// the conditions' columns. `None` for an unconditional op.
    fn render_probe(&self, op: &LayerOp, schema: &TableSchema) -> Option<(Statement, Vec<String>)> {
        if op.expect.is_empty() || op.kind == OpKind::Insert {
            return None;
        }
        let mut st = RenderState::default();
        let conditions = self.render_conditions(&mut st, op, schema);
        let mut sql = String::from("SELECT ");
        if conditions.is_empty() {
            sql.push('1');
        }
        for (i, (_, condition)) in conditions.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("CASE WHEN ");
            sql.push_str(condition);
            sql.push_str(" THEN 1 ELSE 0 END");
        }
        sql.push_str(" FROM ");
        self.push_identifier(&mut sql, &self.physical_table(&op.table));
        sql.push_str(" WHERE ");
        self.push_identifier(&mut sql, ID_COLUMN);
        sql.push_str(" = ");
        sql.push_str(&self.bind(&mut st, SqlValue::Text(op.id.clone())));
        let names = conditions.into_iter().map(|(name, _)| name).collect();
        Some((
            Statement {
                sql,
                params: st.params,
            },
            names,
        ))
    }

    /// Refuses, before anything is sent, a row the database can not store as given: an
    /// integer outside its column's range (see [`TableSchema::check_integers`]). PostgreSQL
    /// also refuses the NUL character in text and JSON.
    ///
    /// # Errors
    /// [`Error::Encode`] naming the field, never the value.
    fn check_row(&self, op: &LayerOp, schema: &TableSchema) -> Result<()> {
        schema.check_integers(&op.rn, &op.fields)
    }

    /// The longest column name the database keeps.
    fn identifier_limit(&self) -> crate::layer::schema::IdentifierLimit {
        crate::layer::schema::IdentifierLimit::NONE
    }

    // ---- Schema (DDL), from the planner's changes (see `layer::schema`).

    /// The declared type of a field column of `kind` named `column`: korm 1.5's type on each
    /// backend (SQLite's `BOOLEAN` carries a check naming its column).
    fn column_type(&self, kind: ColumnKind, column: &str) -> String;

    /// The definition of the `rnId` key column.
    fn id_column(&self) -> String;

    /// The declared type of a unique shadow column (a SHA-512 hex fingerprint).
    fn shadow_type(&self) -> &'static str {
        "TEXT"
    }

    /// What follows `CREATE TABLE <name> (...)`: nothing, or MySQL's character set.
    fn table_options(&self) -> &'static str {
        ""
    }

    /// `ADD COLUMN` and its guard: PostgreSQL adds `IF NOT EXISTS`, so a column another
    /// program added meanwhile is no error. SQLite has no such guard (its write lock keeps
    /// others out), MySQL 8 neither (its DDL tolerates the duplicate error instead).
    fn add_column(&self) -> &'static str {
        "ADD COLUMN"
    }

    /// The statement creating a unique field's index (named as korm 1.5 names it).
    fn create_unique_index(&self, table: &str, field: &str) -> String {
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})",
            self.quote_identifier(&unique_index_name(table, field)),
            self.quote_identifier(&self.physical_table(table)),
            self.quote_identifier(&format!("{UNIQUE_PREFIX}{field}"))
        )
    }

    /// The statement dropping a unique field's index before its shadow column is dropped;
    /// `None` where dropping the column drops the index with it.
    fn drop_unique_index(&self, table: &str, field: &str) -> Option<String> {
        let _ = table;
        Some(format!(
            "DROP INDEX IF EXISTS {}",
            self.quote_identifier(&unique_index_name(table, field))
        ))
    }

    /// The statements that make `change` to `table`, in order (see
    /// [`default_render_change`]; MySQL adds its `__korm_meta__` rows around them).
    fn render_change(&self, table: &str, change: &SchemaChange) -> Vec<Statement> {
        default_render_change(self, table, change)
    }

    /// `SELECT "rnId", <field> FROM <table> WHERE <field> IS NOT NULL`: the stored values of a
    /// field that becomes unique, for its shadow's backfill
    /// ([`schema::backfill`](crate::layer::schema::backfill)).
    fn render_unique_values(&self, table: &str, field: &str) -> String {
        let column = self.quote_identifier(field);
        format!(
            "SELECT {}, {column} FROM {} WHERE {column} IS NOT NULL",
            self.quote_identifier(ID_COLUMN),
            self.quote_identifier(&self.physical_table(table))
        )
    }

    /// `UPDATE <table> SET <shadow> = CASE "rnId" WHEN <id> THEN <fingerprint> ... END
    /// WHERE "rnId" IN (<id>, ...)`: the backfilled shadows of a run of items (at most
    /// [`FINGERPRINT_RUN`], three parameters each).
    fn render_fingerprints(
        &self,
        table: &str,
        field: &str,
        rows: &[(String, String)],
    ) -> Statement {
        let mut st = RenderState::default();
        let id = self.quote_identifier(ID_COLUMN);
        let mut cases = String::new();
        for (key, fingerprint) in rows {
            let key = self.bind(&mut st, SqlValue::Text(key.clone()));
            let value = self.bind(&mut st, SqlValue::Text(fingerprint.clone()));
            cases.push_str(&format!(" WHEN {key} THEN {value}"));
        }
        let keys: Vec<String> = rows
            .iter()
            .map(|(key, _)| self.bind(&mut st, SqlValue::Text(key.clone())))
            .collect();
        Statement {
            sql: format!(
                "UPDATE {} SET {} = CASE {id}{cases} END WHERE {id} IN ({})",
                self.quote_identifier(&self.physical_table(table)),
                self.quote_identifier(&format!("{UNIQUE_PREFIX}{field}")),
                keys.join(", ")
            ),
            params: st.params,
        }
    }
}

/// Whether a column of `kind` can hold `value` as bound (a null fits every column).
fn value_fits(value: &SqlValue, kind: ColumnKind) -> bool {
    match value {
        SqlValue::Null => true,
        // Booleans are 0/1 integers on SQLite and MariaDB.
        SqlValue::Integer(_) => matches!(
            kind,
            ColumnKind::Integer | ColumnKind::Double | ColumnKind::Boolean
        ),
        SqlValue::Double(_) => kind == ColumnKind::Double,
        SqlValue::Boolean(_) => kind == ColumnKind::Boolean,
        SqlValue::Text(_) => matches!(kind, ColumnKind::Text | ColumnKind::RnRef),
        SqlValue::Json(_) => matches!(kind, ColumnKind::Json | ColumnKind::Encrypted),
    }
}

/// The statements that make `change` to `table`, in order, from the dialect's types and
/// index statements: what [`Dialect::render_change`] renders unless a dialect adds to it.
pub(crate) fn default_render_change<D: Dialect + ?Sized>(
    d: &D,
    table: &str,
    change: &SchemaChange,
) -> Vec<Statement> {
    let t = d.quote_identifier(&d.physical_table(table));
    let shadow = |field: &str| d.quote_identifier(&format!("{UNIQUE_PREFIX}{field}"));
    let add = |column: &str, ty: &str| {
        format!(
            "ALTER TABLE {t} {} {} {ty}",
            d.add_column(),
            d.quote_identifier(column)
        )
    };
    let mut out = Vec::new();
    match change {
        SchemaChange::CreateTable { columns, unique } => {
            // A unique field's shadow column right after its field, as korm 1.5 lays the
            // table out.
            let mut defs = vec![d.id_column()];
            for (column, kind) in columns {
                let ty = d.column_type(*kind, column);
                defs.push(format!("{} {ty}", d.quote_identifier(column)));
                if unique.contains(column) {
                    defs.push(format!("{} {}", shadow(column), d.shadow_type()));
                }
            }
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {t} ( {} ){}",
                defs.join(", "),
                d.table_options()
            ));
            out.extend(unique.iter().map(|f| d.create_unique_index(table, f)));
        }
        SchemaChange::AddColumn { column, kind } => {
            out.push(add(column, &d.column_type(*kind, column)));
        }
        SchemaChange::RecreateColumn { column, kind } => {
            let c = d.quote_identifier(column);
            out.push(format!("ALTER TABLE {t} DROP COLUMN {c}"));
            out.push(add(column, &d.column_type(*kind, column)));
        }
        SchemaChange::AddUnique { field } => {
            out.push(add(&format!("{UNIQUE_PREFIX}{field}"), d.shadow_type()));
            out.push(d.create_unique_index(table, field));
        }
        SchemaChange::IndexShadow { field } => out.push(d.create_unique_index(table, field)),
        SchemaChange::DropUnique { field } => {
            out.extend(d.drop_unique_index(table, field));
            out.push(format!("ALTER TABLE {t} DROP COLUMN {}", shadow(field)));
        }
    }
    out.into_iter().map(Statement::ddl).collect()
}

/// The values of an `IN` test of type `ty`, as the lists to test separately: none, or one
/// list, except numbers, whose integers and doubles go in two lists. `in_list` is `eq` with any
/// of the values, and an `IN` list has one type on PostgreSQL (and compares by one rule on
/// MariaDB): beside a double, the integers would compare as doubles too, so
/// 9007199254740993 would be in `[9007199254740992, 0.5]`, while `eq` with 9007199254740992
/// compares integers exactly.
fn in_groups(values: &[Scalar], ty: JsonType) -> Vec<Vec<&Scalar>> {
    let mut whole = Vec::new();
    let mut other = Vec::new();
    for value in values.iter().filter(|v| v.json_type() == ty) {
        match value {
            Scalar::Integer(_) => whole.push(value),
            _ => other.push(value),
        }
    }
    [whole, other]
        .into_iter()
        .filter(|g| !g.is_empty())
        .collect()
}

/// Joins `parts` with `joiner`, parenthesised. Past a few dozen parts the join is nested as
/// a balanced tree, because databases parse `a AND b AND c ...` as a chain whose depth is
/// the number of terms (SQLite refuses more than 1,000); a balanced tree's depth is its log.
fn balanced(parts: &[String], joiner: &str) -> String {
    const FLAT: usize = 32;
    if parts.len() <= FLAT {
        return format!("({})", parts.join(&format!(" {joiner} ")));
    }
    let groups: Vec<String> = parts
        .chunks(parts.len().div_ceil(FLAT))
        .map(|chunk| {
            if chunk.len() == 1 {
                chunk[0].clone()
            } else {
                balanced(chunk, joiner)
            }
        })
        .collect();
    balanced(&groups, joiner)
}

/// Why a path is resolved: a filter and a sort reject different things with different errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Filter,
    Sort,
}

/// What a parsed path stands for in `schema`.
pub(crate) fn resolve<'p>(
    schema: &TableSchema,
    raw: &str,
    path: &'p FieldPath,
    purpose: Purpose,
) -> Result<Operand<'p>> {
    let column = path.column();
    let steps = path.steps();
    let reject = |reason: &str| match purpose {
        Purpose::Filter => Error::InvalidFilter {
            path: clip(raw),
            reason: reason.to_owned(),
        },
        Purpose::Sort => Error::InvalidPath {
            path: clip(raw),
            reason: reason.to_owned(),
        },
    };
    let kind = if column == ID_COLUMN {
        Some(ColumnKind::Text)
    } else {
        schema.kind_of(column)
    };
    let ty = match kind {
        None => return Ok(Operand::Missing),
        Some(ColumnKind::Encrypted) => {
            return Err(reject(
                "the field is encrypted: SQL never sees its cleartext, so it can not be sorted \
                 by, and only eq and in_list can filter it (in memory, after decryption)",
            ));
        }
        Some(ColumnKind::RnRef) if !steps.is_empty() => {
            return Err(reject(
                "the path goes through a reference: it is evaluated by resolving the \
                 reference, not in SQL",
            ));
        }
        Some(ColumnKind::Json) if !steps.is_empty() => {
            return Ok(Operand::Json(JsonLocation {
                column,
                element: None,
                steps,
            }));
        }
        // Steps into a scalar reach nothing: the value is missing.
        Some(_) if !steps.is_empty() => return Ok(Operand::Missing),
        Some(ColumnKind::Text | ColumnKind::RnRef) => JsonType::Text,
        Some(ColumnKind::Integer | ColumnKind::Double) => JsonType::Number,
        Some(ColumnKind::Boolean) => JsonType::Boolean,
        Some(ColumnKind::Json) => JsonType::Container,
    };
    Ok(Operand::Column { name: column, ty })
}

/// Checks an item table name: `__items__{namespace}__{kind}`, each `[a-z][a-z0-9]*`, or
/// the name MySQL stores a longer one under (`__items__` and 32 hex digits of its hash, as
/// korm 1.5 names it), which a backup lists from the catalog and a restore writes back.
pub(crate) fn validate_table(table: &str) -> Result<()> {
    let fail = |reason: &str| Error::InvalidIdentifier {
        what: "table",
        name: clip(table),
        reason: reason.to_owned(),
    };
    let Some(rest) = table.strip_prefix("__items__") else {
        return Err(fail("an item table name starts with __items__"));
    };
    if rest.len() == 32 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Ok(());
    }
    let Some((namespace, kind)) = rest.split_once("__") else {
        return Err(fail("an item table name is __items__{namespace}__{kind}"));
    };
    let name_ok = |s: &str| {
        let mut bytes = s.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if !name_ok(namespace) || !name_ok(kind) {
        return Err(fail(
            "namespace and kind of an item table match [a-z][a-z0-9]*",
        ));
    }
    Ok(())
}

/// What the dialects' exact-SQL tests share: one table schema, the rendering helpers, and
/// the scenarios of whole statements, and [`where_scenarios!`](crate::where_scenarios) and
/// [`statement_scenarios!`](crate::statement_scenarios), which make one test per scenario: each
/// dialect gives only its expected SQL.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The table every scenario renders against.
    pub(crate) const TABLE: &str = "__items__users__freetier";

    /// A table with a column of every kind.
    pub(crate) fn schema() -> TableSchema {
        TableSchema {
            table: TABLE.into(),
            columns: vec![
                ("username".into(), ColumnKind::Text),
                ("age".into(), ColumnKind::Integer),
                ("score".into(), ColumnKind::Double),
                ("active".into(), ColumnKind::Boolean),
                ("tags".into(), ColumnKind::Json),
                ("meta".into(), ColumnKind::Json),
                ("addresses".into(), ColumnKind::Json),
                ("owner".into(), ColumnKind::RnRef),
                ("ssn".into(), ColumnKind::Encrypted),
            ],
            ..TableSchema::default()
        }
    }

    /// The `SELECT` of [`schema`] with a filter, sort keys and a limit.
    pub(crate) fn select(
        d: &dyn Dialect,
        filter: Option<&Filter>,
        sort: &[(&str, SortOrder)],
        limit: Option<u64>,
    ) -> Result<Statement> {
        let sort: Vec<(String, SortOrder)> =
            sort.iter().map(|(p, o)| ((*p).to_owned(), *o)).collect();
        d.render_select(&schema(), filter, &sort, limit)
    }

    /// The `WHERE` condition and the parameters of a filter.
    pub(crate) fn where_sql(d: &dyn Dialect, filter: Filter) -> (String, Vec<SqlValue>) {
        let st = select(d, Some(&filter), &[], None).unwrap();
        let prefix = format!("SELECT * FROM {} WHERE ", d.quote_identifier(TABLE));
        let condition = st
            .sql
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("unexpected statement {}", st.sql));
        (condition.to_owned(), st.params)
    }

    /// A text parameter.
    pub(crate) fn text(s: &str) -> SqlValue {
        SqlValue::Text(s.to_owned())
    }

    /// The filters of the `WHERE` scenarios every dialect renders, by scenario name: each
    /// dialect's [`where_scenarios!`](crate::where_scenarios) gives the condition and the
    /// parameters of each, in order.
    pub(crate) fn where_filters(scenario: &str) -> Vec<Filter> {
        use crate::query::{and, eq, gt, gte, in_list, like, lt, lte, not, or};
        use serde_json::json;
        match scenario {
            "scenario_compare_operators" => vec![
                gt("age", 1),
                gte("age", 1),
                lt("age", 1),
                lte("age", 1),
                gt("score", 1.5),
                gt("score", 1),
                gt("username", "w"),
            ],
            "scenario_and_or_not" => vec![
                and([
                    eq("username", "fred"),
                    or([gt("age", 1), lt("age", 0)]),
                    not(eq("active", true)),
                ]),
                and([eq("age", 1)]),
            ],
            "scenario_eq_column" => vec![eq("username", "fred")],
            "scenario_eq_bool_column" => vec![eq("active", true), eq("active", false)],
            "scenario_eq_null_column" => vec![eq("username", Value::Null), eq("tags", ())],
            "scenario_eq_rn_id" => vec![eq("rnId", "u1")],
            "scenario_eq_reference_column" => vec![eq("owner", "[rn]:users:freetier:x")],
            "scenario_eq_json_path" => vec![
                eq("meta.tier", "gold"),
                eq("meta.tier", "[gold]"),
                eq("meta.tier", "{\"a\":1}"),
                gt("meta.tier", "gold"),
            ],
            "scenario_json_types" => vec![gt("meta.a.b[2]", 5), eq("meta.flags.hot", true)],
            "scenario_eq_json_index" => vec![eq("tags[0]", "a")],
            "scenario_eq_json_null" => vec![eq("meta.tier", ())],
            "scenario_eq_missing" => vec![
                eq("nickname", "x"),
                eq("nickname", ()),
                eq("username.first", "x"),
                like("nickname", "x%"),
                in_list("nickname", ["x"]),
            ],
            "scenario_not_missing" => vec![not(eq("nickname", "x"))],
            "scenario_like" => vec![like("username", "fr_d%"), like("meta.tier", "g%")],
            "scenario_in_list_column" => vec![
                in_list("age", [json!(1), json!(2), Value::Null, json!("3")]),
                in_list("age", [json!(1), json!(2), json!("3")]),
            ],
            "scenario_in_list_mixed_numbers" => {
                vec![in_list("age", [json!(1), json!(2.5), json!(2)])]
            }
            "scenario_in_list_json_mixed" => vec![
                in_list(
                    "meta.tier",
                    [
                        json!("gold"),
                        json!(1),
                        json!(true),
                        Value::Null,
                        json!("silver"),
                    ],
                ),
                in_list("meta.tier", [json!("gold"), json!("[1]")]),
            ],
            "scenario_wildcard" => vec![eq("addresses[*].city", "Paris")],
            "scenario_wildcard_under_key" => vec![eq("meta.addresses[*].city", "Paris")],
            "scenario_wildcard_scalar_element" => vec![eq("tags[*]", "a"), eq("tags[*]", ())],
            "scenario_nested_wildcard" => vec![
                eq("meta.groups[*].members[*].name", "x"),
                eq("tags[*][*]", 1),
            ],
            other => panic!("no where scenario {other}"),
        }
    }

    /// The sort scenario every dialect renders: `age` descending (nulls first), the JSON
    /// value `meta.rank` and the text column `username` ascending (nulls last).
    pub(crate) fn sort_nulls(d: &dyn Dialect) -> Statement {
        let sort = [
            ("age", SortOrder::Desc),
            ("meta.rank", SortOrder::Asc),
            ("username", SortOrder::Asc),
        ];
        select(d, None, &sort, None).unwrap()
    }

    /// A filter, a sort key and a limit in one statement: the parameters come in the order
    /// their placeholders stand.
    pub(crate) fn filter_sort_limit(d: &dyn Dialect) -> Statement {
        let filter = crate::query::eq("meta.tier", "gold");
        select(
            d,
            Some(&filter),
            &[("meta.rank", SortOrder::Desc)],
            Some(10),
        )
        .unwrap()
    }

    /// An optimistic update of [`schema`]: `age` set to 43 on the condition that it is
    /// still 42 and `meta` still the stored JSON text (and `gone`, a column the table lacks,
    /// conditions nothing).
    fn conditional_op() -> LayerOp {
        use crate::layer::Expect;
        LayerOp {
            kind: OpKind::Update,
            rn: "[rn]:users:freetier:u1".into(),
            table: TABLE.into(),
            id: "u1".into(),
            fields: vec![crate::model::Field {
                name: "age".into(),
                value: 43.into(),
                kind: Some(ColumnKind::Integer),
                unique: false,
            }]
            .into(),
            destructive: false,
            fence: None,
            expect: vec![
                Expect {
                    name: "age".into(),
                    value: Stored::Value(42.into()),
                },
                Expect {
                    name: "meta".into(),
                    value: Stored::JsonText("{\"a\": 1}".into()),
                },
                Expect {
                    name: "gone".into(),
                    value: Stored::Value(Value::Null),
                },
            ],
        }
    }

    /// The statement of the optimistic update (its conditions in the `WHERE`).
    pub(crate) fn conditional_update(d: &dyn Dialect) -> Statement {
        let RowSql::Execute(update) = d.render_op(&conditional_op(), &schema()).unwrap() else {
            panic!("an update with fields executes");
        };
        update
    }

    /// The probe of the optimistic update: one column a condition, for the conditions on
    /// the table's columns (`age`, `meta`).
    pub(crate) fn conditional_probe(d: &dyn Dialect) -> Statement {
        let (probe, names) = d.render_probe(&conditional_op(), &schema()).unwrap();
        assert_eq!(names, ["age", "meta"]);
        probe
    }
}

/// One test per `WHERE` scenario of a dialect: `name { "condition", params...; }` renders
/// each filter of [`testing::where_filters`]`(name)` against [`testing::schema`] and
/// compares its `WHERE` condition and parameters with the row of the same place.
#[cfg(test)]
#[macro_export]
macro_rules! where_scenarios {
    ($dialect:expr; $($name:ident { $($sql:expr $(, $param:expr)* ;)+ })*) => {
        $(
            #[test]
            fn $name() {
                let expected: Vec<(String, Vec<SqlValue>)> =
                    vec![$((String::from($sql), vec![$($param),*])),+];
                let filters = $crate::query::dialect::testing::where_filters(stringify!($name));
                assert_eq!(filters.len(), expected.len(), "one row per filter");
                for (filter, expected) in filters.into_iter().zip(expected) {
                    let shown = format!("{filter:?}");
                    assert_eq!(
                        $crate::query::dialect::testing::where_sql(&$dialect, filter),
                        expected,
                        "{shown}"
                    );
                }
            }
        )*
    };
}

/// One test per exact-SQL scenario of a whole statement: `name: scenario => sql, params;`
/// renders [`testing`]'s `scenario` (a function of the dialect, such as
/// [`testing::sort_nulls`]) and compares its SQL and its parameters.
#[cfg(test)]
#[macro_export]
macro_rules! statement_scenarios {
    ($dialect:expr; $($name:ident: $scenario:ident => $sql:expr, $params:expr;)*) => {
        $(
            #[test]
            fn $name() {
                let st = $crate::query::dialect::testing::$scenario(&$dialect);
                assert_eq!((st.sql, st.params), (String::from($sql), $params));
            }
        )*
    };
}

#[cfg(test)]
#[cfg(all(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::query::{eq, gt, in_list, lte, not, or};
    use serde_json::json;

    /// The dialects every scenario below runs against.
    fn dialects() -> Vec<Box<dyn Dialect>> {
        vec![
            Box::new(crate::layer::sqlite::SqliteDialect),
            Box::new(crate::layer::postgres::PgDialect::default()),
            Box::new(crate::layer::mysql::MySqlDialect::default()),
        ]
    }

    // ---- scenarios that render the same way in every dialect

    #[test]
    fn scenario_no_filter() {
        for d in dialects() {
            let st = select(&*d, None, &[], None).unwrap();
            assert_eq!(
                st.sql,
                format!("SELECT * FROM {}", d.quote_identifier(TABLE))
            );
            assert!(st.params.is_empty());
        }
    }

    #[test]
    fn scenario_backfill_statements() {
        for d in dialects() {
            let q = |name: &str| d.quote_identifier(name);
            assert_eq!(
                d.render_unique_values(TABLE, "email"),
                format!(
                    "SELECT {}, {} FROM {} WHERE {} IS NOT NULL",
                    q("rnId"),
                    q("email"),
                    q(TABLE),
                    q("email")
                )
            );
            let rows = [
                ("a".to_owned(), "f1".to_owned()),
                ("b".to_owned(), "f2".to_owned()),
            ];
            let st = d.render_fingerprints(TABLE, "email", &rows);
            let p: Vec<String> = (1..=6).map(|i| d.placeholder(i).into_owned()).collect();
            let expected = format!(
                "UPDATE {} SET {} = CASE {} WHEN {} THEN {} WHEN {} THEN {} END WHERE {} IN ({}, {})",
                q(TABLE),
                q("__korm_unique__email"),
                q("rnId"),
                p[0],
                p[1],
                p[2],
                p[3],
                q("rnId"),
                p[4],
                p[5]
            );
            assert_eq!(st.sql, expected);
            assert_eq!(
                st.params,
                ["a", "f1", "b", "f2", "a", "b"].map(text).to_vec()
            );
        }
    }

    #[test]
    fn scenario_in_list_empty() {
        let none: [i64; 0] = [];
        for d in dialects() {
            for f in [
                in_list("age", none),
                in_list("meta.tier", none),
                in_list("nickname", none),
            ] {
                assert_eq!(where_sql(&*d, f), ("1 = 0".into(), vec![]));
            }
            // A list of only nulls finds nulls, as eq(path, null) does.
            assert_eq!(
                where_sql(&*d, in_list("age", [Value::Null])),
                where_sql(&*d, eq("age", Value::Null))
            );
        }
    }

    #[test]
    fn scenario_hostile_value() {
        for d in dialects() {
            for hostile in [
                "x' OR 1=1 --",
                "\"; DROP TABLE x; --",
                "`; DROP TABLE x; --",
            ] {
                // A like pattern is bound with its ASCII letters lowered.
                let lowered = hostile.to_ascii_lowercase();
                for (f, bound) in [
                    (eq("username", hostile), hostile),
                    (crate::query::like("meta.tier", hostile), lowered.as_str()),
                ] {
                    let (sql, params) = where_sql(&*d, f);
                    assert!(!sql.contains("DROP") && !sql.contains("OR 1=1"), "{sql}");
                    assert!(!sql.contains("drop") && !sql.contains("or 1=1"), "{sql}");
                    assert!(params.contains(&text(bound)), "{params:?}");
                }
            }
        }
    }

    #[test]
    fn scenario_type_mismatch_column() {
        for d in dialects() {
            for f in [
                eq("age", "80"),
                eq("active", 1),
                eq("username", 1),
                crate::query::like("age", "1%"),
                // A whole JSON column holds an object or an array, never a scalar.
                eq("tags", "a"),
            ] {
                assert_eq!(where_sql(&*d, f), ("1 = 0".into(), vec![]));
            }
        }
    }

    #[test]
    fn scenario_and_or_empty() {
        for d in dialects() {
            assert_eq!(
                where_sql(&*d, crate::query::and([])),
                ("1 = 1".into(), vec![])
            );
            assert_eq!(where_sql(&*d, or([])), ("1 = 0".into(), vec![]));
            assert_eq!(
                where_sql(&*d, not(or([]))),
                ("((1 = 0) IS NOT TRUE)".into(), vec![])
            );
        }
    }

    #[test]
    fn scenario_wildcard_missing() {
        for d in dialects() {
            assert_eq!(
                where_sql(&*d, eq("nothing[*].x", 1)),
                ("1 = 0".into(), vec![])
            );
            assert_eq!(
                where_sql(&*d, eq("username[*]", "x")),
                ("1 = 0".into(), vec![])
            );
            assert_eq!(
                where_sql(&*d, not(eq("nothing[*]", ()))),
                ("((1 = 0) IS NOT TRUE)".into(), vec![])
            );
        }
    }

    #[test]
    fn scenario_wildcard_aliases_are_unique() {
        for d in dialects() {
            let (sql, _) = where_sql(&*d, or([eq("tags[*]", "a"), eq("addresses[*].city", "b")]));
            assert!(sql.contains("AS w1 ") && sql.contains("AS w2 "), "{sql}");
        }
    }

    #[test]
    fn scenario_sort_missing() {
        for d in dialects() {
            let sort = [
                ("nickname", SortOrder::Asc),
                ("username.x", SortOrder::Desc),
            ];
            let st = select(&*d, None, &sort, None).unwrap();
            let id = d.quote_identifier(ID_COLUMN);
            assert_eq!(
                st.sql,
                format!(
                    "SELECT * FROM {} ORDER BY {id} ASC",
                    d.quote_identifier(TABLE)
                )
            );
        }
    }

    #[test]
    fn scenario_sort_wildcard_rejected() {
        for d in dialects() {
            let err =
                select(&*d, None, &[("addresses[*].city", SortOrder::Asc)], None).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidPath { reason, .. } if reason.contains("[*]")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn scenario_limit() {
        for d in dialects() {
            let st = select(&*d, None, &[], Some(0)).unwrap();
            assert_eq!(
                st.sql,
                format!("SELECT * FROM {} LIMIT 0", d.quote_identifier(TABLE))
            );
            let err = select(&*d, None, &[], Some(u64::MAX)).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidOption {
                        option: "limit",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn scenario_long_in_list_is_one_json_parameter() {
        let long: Vec<i64> = (0..17).collect();
        for d in dialects() {
            for path in ["age", "meta.n"] {
                let (sql, params) = where_sql(&*d, in_list(path, long.iter().copied()));
                let list = Value::Array(long.iter().map(|n| Value::from(*n)).collect());
                let list = SqlValue::Text(list.to_string());
                assert_eq!(params.iter().filter(|p| **p == list).count(), 1, "{sql}");
                assert!(
                    ["json_each(", "jsonb_array_elements_text(", "JSON_TABLE("]
                        .iter()
                        .any(|f| sql.contains(f)),
                    "{sql}"
                );
            }
            // Up to 16 values keep one placeholder each.
            let (_, params) = where_sql(&*d, in_list("age", 0..16));
            assert_eq!(params.len(), 16);
        }
    }

    #[test]
    fn scenario_offset_orders_by_id() {
        for d in dialects() {
            let table = d.quote_identifier(TABLE);
            let id = d.quote_identifier(ID_COLUMN);
            let window = |limit, offset| Window {
                limit,
                offset,
                ordered: false,
            };
            let st = d
                .render_select_window(&schema(), None, &[], window(Some(5), Some(10)))
                .unwrap();
            assert_eq!(
                st.sql,
                format!("SELECT * FROM {table} ORDER BY {id} ASC LIMIT 5 OFFSET 10")
            );
            let st = d
                .render_select_window(&schema(), None, &[], window(None, Some(10)))
                .unwrap();
            assert_eq!(
                st.sql,
                format!(
                    "SELECT * FROM {table} ORDER BY {id} ASC LIMIT {} OFFSET 10",
                    i64::MAX
                )
            );
            let err = d
                .render_select_window(&schema(), None, &[], window(None, Some(u64::MAX)))
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidOption {
                        option: "offset",
                        ..
                    }
                ),
                "{err:?}"
            );
            let st = d.render_count(&schema(), Some(&eq("age", 3))).unwrap();
            assert!(
                st.sql
                    .starts_with(&format!("SELECT COUNT(*) FROM {table} WHERE "))
            );
        }
    }

    #[test]
    fn scenario_hostile_path() {
        for d in dialects() {
            for path in [
                "username\" OR 1=1 --",
                "meta.tier') OR 1=1 --",
                "meta[0] OR 1",
                "meta.$x",
                "tags[*]]",
                "a;DROP TABLE x",
                "username` OR 1=1 --",
            ] {
                let err = select(&*d, Some(&eq(path, "x")), &[], None).unwrap_err();
                assert!(matches!(err, Error::InvalidPath { .. }), "{path}: {err:?}");
                let err = select(&*d, None, &[(path, SortOrder::Asc)], None).unwrap_err();
                assert!(matches!(err, Error::InvalidPath { .. }), "{path}: {err:?}");
            }
        }
    }

    #[test]
    fn scenario_hostile_table() {
        for d in dialects() {
            for table in [
                "__items__users__x\" WHERE 1=1 --",
                "__items__users__x` WHERE 1=1 --",
            ] {
                let s = TableSchema {
                    table: table.into(),
                    ..schema()
                };
                let err = d.render_select(&s, None, &[], None).unwrap_err();
                assert!(
                    matches!(err, Error::InvalidIdentifier { what: "table", .. }),
                    "{err:?}"
                );
            }
        }
    }

    #[test]
    fn scenario_encrypted_rejected() {
        for d in dialects() {
            for f in [eq("ssn", "x"), eq("ssn.v", "x"), not(in_list("ssn", ["x"]))] {
                let err = select(&*d, Some(&f), &[], None).unwrap_err();
                assert!(
                    matches!(&err, Error::InvalidFilter { reason, .. } if reason.contains("encrypted")),
                    "{err:?}"
                );
            }
            let err = select(&*d, None, &[("ssn", SortOrder::Asc)], None).unwrap_err();
            assert!(matches!(err, Error::InvalidPath { .. }), "{err:?}");
        }
    }

    #[test]
    fn scenario_reference_path_rejected() {
        for d in dialects() {
            let err = select(&*d, Some(&eq("owner.username", "fred")), &[], None).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidFilter { reason, .. } if reason.contains("reference")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn scenario_bad_values_rejected() {
        for d in dialects() {
            for f in [
                eq("meta.tier", json!({"a": 1})),
                eq("age", json!([1])),
                in_list("age", [json!(1), json!([2])]),
                gt("age", ()),
                lte("meta.x", Value::Null),
                eq("age", json!(u64::MAX)),
            ] {
                let err = select(&*d, Some(&f), &[], None).unwrap_err();
                assert!(matches!(err, Error::InvalidFilter { .. }), "{f:?}: {err:?}");
            }
        }
    }

    #[test]
    fn table_names_are_validated() {
        for ok in [
            "__items__users__freetier",
            "__items__a__b",
            "__items__a1__b2c3",
            // MySQL's name for a longer one (korm 1.5's fixture).
            "__items__ac35fe619eb2c9da1c17d9bb08e63d8d",
        ] {
            validate_table(ok).unwrap();
        }
        for bad in [
            "",
            "users",
            "__items__users",
            "__items__Users__x",
            "__items__users__",
            "__items____x",
            "__items__1a__b",
            "__items__a__b__c",
            "__items__a__b\"; DROP TABLE x; --",
            "__items__a__b c",
            "__items__a__b\u{e9}",
            "__items__ac35fe619eb2c9da1c17d9bb08e63d8",
            "__items__AC35FE619EB2C9DA1C17D9BB08E63D8D",
            "__items__ac35fe619eb2c9da1c17d9bb08e63d8g",
        ] {
            assert!(
                matches!(
                    validate_table(bad),
                    Err(Error::InvalidIdentifier { what: "table", .. })
                ),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn scalars_from_json() {
        use serde_json::json;
        let s = |v: Value| Scalar::from_json("p", "eq", &v);
        assert_eq!(s(json!("x")).unwrap(), Some(Scalar::Text("x".into())));
        assert_eq!(s(json!(-3)).unwrap(), Some(Scalar::Integer(-3)));
        assert_eq!(s(json!(1.5)).unwrap(), Some(Scalar::Double(1.5)));
        assert_eq!(s(json!(true)).unwrap(), Some(Scalar::Boolean(true)));
        assert_eq!(s(Value::Null).unwrap(), None);
        for bad in [json!([1]), json!({"a": 1}), json!(u64::MAX)] {
            assert!(matches!(s(bad), Err(Error::InvalidFilter { .. })));
        }
    }
}
