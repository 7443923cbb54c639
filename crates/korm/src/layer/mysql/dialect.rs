//! The MariaDB/MySQL dialect: `?` placeholders, backtick identifiers, `JSON_EXTRACT`,
//! `JSON_TYPE` and `JSON_TABLE` over JSON (LONGTEXT) columns, booleans as 0/1.
//!
//! How it keeps korm's filter semantics (the [`query`](crate::query) module doc) on MariaDB,
//! which has no `->>`, no `NULLS LAST` and lax JSON paths:
//! - **JSON values** are addressed as fragments: `JSON_EXTRACT(doc, ?)`, the path bound as
//!   `$.a[0]`, where `doc` is the column or the element of a `JSON_TABLE`. MariaDB's paths
//!   are lax (`[0]` on a scalar or an object gives the value itself), so every `[0]` step is
//!   guarded by `JSON_TYPE(<prefix>) = 'ARRAY'`: an index into a non-array is missing, as on
//!   SQLite. `JSON_EXTRACT` gives JSON text, so a comparison extracts per type
//!   ([`Dialect::json_extract_as`]): `JSON_UNQUOTE(...)` for text, the number's JSON text
//!   (MariaDB compares it numerically with a bound number) for numbers, `(... = 'true')` for
//!   booleans (bound as 0/1). JSON null is a literal here, so "is null" is
//!   `COALESCE(JSON_TYPE(...), 'NULL') = 'NULL'` (a JSON null or a missing value).
//! - **Type guards come first**: a comparison of a JSON value of another type would convert
//!   (`'abc' = 0` is true in MariaDB), so the guard must hold before it.
//! - **Text compares byte by byte, without padding**: a bound text is
//!   `? COLLATE utf8mb4_nopad_bin` (MySQL 8: `utf8mb4_0900_bin`), which wins over the
//!   column's collation (korm 1.5's tables use the case-insensitive `utf8mb4_general_ci`),
//!   and text sort keys are sorted by it too. (`utf8mb4_bin` pads: with it,
//!   `eq("name", "freddie")` also found `"freddie "`.) A JSON text value gets the same
//!   `COLLATE`: with it on the bound side only, MariaDB's optimizer could carry a comparison
//!   into another test of the same value and fail with "Illegal mix of collations".
//! - **`like`**: `lower(x) LIKE REPLACE(?, '!', '!!') COLLATE <binary> ESCAPE '!'`, where
//!   `lower` is 26 nested `REPLACE`s of `A`..`Z` by `a`..`z` and the pattern is bound
//!   lowered. MariaDB's LIKE escapes with `\` by default and `ESCAPE ''` does not turn that
//!   off, so `!` is made the escape character and every `!` of the pattern is doubled: no
//!   character of korm's pattern escapes anything, as on SQLite. Case: ASCII letters are
//!   lowered on both sides and compared in binary, so they match either case and every other
//!   character only itself, as on SQLite (`LOWER` would fold `É`/`é` too). No accent
//!   folding: `e` never matches `é`. A whole column with an ASCII pattern tests `LOWER`
//!   first ([`Dialect::like_column`]).
//! - **Wildcards** iterate `JSON_TABLE(doc, '$[*]' COLUMNS (`korm$v` JSON PATH '$'))`, which
//!   gives no row for an object or a scalar; the column name has a `$`, which no field name
//!   can have, so it never hides a field of the outer table.
//! - **Sorting**: no `NULLS LAST`; a column sorts `x IS NULL, x ASC` (`x IS NULL DESC, x DESC`
//!   descending). A JSON path sorts by a type rank that is never NULL (5 for null and
//!   missing, after objects ascending and first descending), then by the number
//!   (`CAST(... AS DOUBLE)`, NULL for non-numbers; then `CAST(... AS DECIMAL(65, 30))`, which
//!   orders integers beyond 2^53 that one double can not tell apart), then by the text
//!   (in the binary collation, NULL for numbers and for a JSON null, whose text `null` would
//!   otherwise order it apart from missing values): a bound path is never repeated to
//!   emulate `NULLS LAST`.

use crate::layer::schema::{SchemaChange, UNIQUE_PREFIX, unique_index_name};
use std::borrow::Cow;

use crate::model::{ColumnKind, SqlValue};
use crate::query::dialect::{
    Dialect, JsonLocation, JsonType, ListKind, RenderState, SQL_TRUE, Scalar,
};
use crate::query::dialect::{INDEX_TEXT, Statement, default_render_change};
use crate::query::filter::{CompareOp, SortOrder};
use crate::query::index::{IndexKind, index_name};
use crate::query::path::FieldPath;
use crate::query::path::PathStep;

/// MariaDB's collation that compares and sorts text byte by byte (code point order for
/// UTF-8) without padding: `utf8mb4_bin` pads, so `'freddie' = 'freddie '` would hold.
pub(super) const MARIADB_BINARY: &str = "utf8mb4_nopad_bin";

/// MySQL 8's (MariaDB has no `utf8mb4_0900_bin`, MySQL no `utf8mb4_nopad_bin`).
pub(super) const MYSQL_BINARY: &str = "utf8mb4_0900_bin";

/// The column of an array-element `JSON_TABLE`: the element as JSON text.
const ELEMENT: &str = "`korm$v`";

/// MariaDB 10.6+ (for `JSON_TABLE`) and MySQL 8.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MySqlDialect {
    /// Whether new integer columns are `BIGINT` (korm 1.5's are `INT`).
    pub(crate) wide_integers: bool,
    /// The server's binary collation without padding ([`MARIADB_BINARY`] or
    /// [`MYSQL_BINARY`]), chosen when the layer opens.
    pub(crate) binary: &'static str,
}

impl Default for MySqlDialect {
    fn default() -> Self {
        MySqlDialect {
            wide_integers: false,
            binary: MARIADB_BINARY,
        }
    }
}

impl MySqlDialect {
    /// The JSON document `loc` starts from: the column, or an array element.
    fn document(&self, loc: &JsonLocation<'_>) -> String {
        match loc.element {
            None => self.quote_identifier(loc.column),
            Some(alias) => format!("{alias}.{ELEMENT}"),
        }
    }

    /// The JSON text of the value at `loc` (SQL NULL when missing). Every `[0]` step is
    /// guarded: MariaDB's lax paths read `[0]` of a non-array as the value itself.
    fn fragment(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        let doc = self.document(loc);
        if loc.steps.is_empty() {
            return doc;
        }
        let mut guards = Vec::new();
        for (i, step) in loc.steps.iter().enumerate() {
            if matches!(step, PathStep::Index(0)) {
                let prefix = &loc.steps[..i];
                let array = if prefix.is_empty() {
                    doc.clone()
                } else {
                    let p = self.bind(st, SqlValue::Text(path_text(prefix)));
                    format!("JSON_EXTRACT({doc}, {p})")
                };
                guards.push(format!("JSON_TYPE({array}) = 'ARRAY'"));
            }
        }
        let p = self.bind(st, SqlValue::Text(path_text(loc.steps)));
        let extract = format!("JSON_EXTRACT({doc}, {p})");
        if guards.is_empty() {
            extract
        } else {
            format!("CASE WHEN {} THEN {extract} END", guards.join(" AND "))
        }
    }

    /// `IN ('INTEGER', 'DOUBLE')`-style list of a type's names.
    fn type_list(&self, ty: JsonType) -> String {
        let names: Vec<String> = self
            .json_type_names(ty)
            .iter()
            .map(|n| format!("'{n}'"))
            .collect();
        names.join(", ")
    }
}

/// The longest text (in characters) of an `in_list` bound as one JSON array.
const LIST_TEXT_MAX: usize = 4096;

/// The virtual column of the declared index `name` (`korm_ix_…` → `korm$ix_…`: no field
/// name holds a `$`).
pub(super) fn index_column(name: &str) -> String {
    name.replacen('_', "$", 1)
}

/// MySQL's longest identifier.
const MAX_IDENTIFIER: usize = 64;

/// The table that stores a collection: its full name, or, over MySQL's 64 characters,
/// `__items__` + the first 32 hex characters of SHA-256 of the full name (korm 1.5's rule).
pub(super) fn physical_table(table: &str) -> String {
    if table.len() <= MAX_IDENTIFIER {
        return table.to_owned();
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(table.as_bytes());
    format!("__items__{}", &hex::encode(digest)[..32])
}

/// `$` and the steps as JSONPath text.
fn path_text(steps: &[PathStep]) -> String {
    let mut text = String::from("$");
    for step in steps {
        text.push_str(&step.to_string());
    }
    text
}

impl Dialect for MySqlDialect {
    fn placeholder(&self, _n: usize) -> Cow<'static, str> {
        Cow::Borrowed("?")
    }

    fn json_text_array(&self, param: &str) -> String {
        format!(
            "SELECT j.v FROM JSON_TABLE({param}, '$[*]' COLUMNS (v VARCHAR(2048) PATH '$')) AS j"
        )
    }

    fn json_scalar_array(&self, param: &str, kind: ListKind) -> String {
        let (ty, collate) = match kind {
            ListKind::Text => (
                format!("VARCHAR({LIST_TEXT_MAX}) CHARACTER SET utf8mb4"),
                format!(" COLLATE {}", self.binary),
            ),
            ListKind::Integer | ListKind::Boolean => ("BIGINT".to_owned(), String::new()),
            ListKind::Double => ("DOUBLE".to_owned(), String::new()),
        };
        format!(
            "SELECT j.v{collate} FROM JSON_TABLE({param}, '$[*]' COLUMNS (v {ty} PATH '$')) AS j"
        )
    }

    /// Texts longer than the `JSON_TABLE` column would be cut: such a list is bound one
    /// value per placeholder.
    fn json_list_fits(&self, kind: ListKind, values: &[&Scalar]) -> bool {
        kind != ListKind::Text
            || values.iter().all(|v| match v {
                Scalar::Text(s) => s.chars().count() <= LIST_TEXT_MAX,
                _ => true,
            })
    }

    /// The index column holds a text's first [`INDEX_TEXT`] characters: a text shorter than
    /// that compares with it exactly as with the whole (equal, before or after). Numbers are
    /// doubles there: integers below 2^53 only (a stored 2^53 + 1 is the double 2^53 there).
    fn index_serves(&self, value: &Scalar) -> bool {
        match value {
            Scalar::Text(s) => s.chars().count() < INDEX_TEXT,
            Scalar::Integer(i) => i.unsigned_abs() < crate::model::EXACT_IN_DOUBLE,
            Scalar::Double(_) | Scalar::Boolean(_) => true,
        }
    }

    /// MariaDB has no expression indexes: an invisible virtual column computing the value
    /// (NULL unless it has the index's type; text cut to [`INDEX_TEXT`] characters, in the
    /// binary collation) and an index on it, in one `ALTER TABLE`. Invisible, `SELECT *`
    /// (korm's and korm 1.5's) never returns it.
    fn render_create_index(
        &self,
        table: &str,
        path: &FieldPath,
        kind: IndexKind,
    ) -> Vec<Statement> {
        let loc = JsonLocation::of(path);
        let name = index_name(table, loc.column, &loc.steps_text(), kind);
        let column = self.quote_identifier(&index_column(&name));
        let doc = format!(
            "JSON_EXTRACT({}, '{}')",
            self.quote_identifier(loc.column),
            path_text(loc.steps)
        );
        let (ty, value) = match kind {
            IndexKind::Text => (
                format!(
                    "VARCHAR({INDEX_TEXT}) CHARACTER SET utf8mb4 COLLATE {}",
                    self.binary
                ),
                format!(
                    "CASE WHEN JSON_TYPE({doc}) = 'STRING' THEN LEFT(JSON_UNQUOTE({doc}), {INDEX_TEXT}) END"
                ),
            ),
            IndexKind::Number => (
                "DOUBLE".to_owned(),
                format!("CASE WHEN JSON_TYPE({doc}) IN ('INTEGER', 'DOUBLE') THEN {doc} END"),
            ),
        };
        // MySQL 8 has no `IF NOT EXISTS` here: the layer tolerates its duplicate column and
        // key errors instead (as for `ADD COLUMN`).
        let guard = if self.binary == MYSQL_BINARY {
            ""
        } else {
            " IF NOT EXISTS"
        };
        vec![Statement::ddl(format!(
            "ALTER TABLE {} ADD COLUMN{guard} {column} {ty} AS ({value}) VIRTUAL INVISIBLE, \
             ADD INDEX{guard} {} ({column})",
            self.quote_identifier(&self.physical_table(table)),
            self.quote_identifier(&name),
        ))]
    }

    fn rn_prefix(&self, column: &str) -> String {
        format!("LEFT({column}, CHAR_LENGTH({column}) - 36)")
    }

    fn rn_id(&self, column: &str) -> String {
        format!("RIGHT({column}, 36)")
    }

    fn char_length(&self, expr: &str) -> String {
        format!("CHAR_LENGTH({expr})")
    }

    /// Backticks work whatever the session's `sql_mode` (double quotes only under
    /// `ANSI_QUOTES`).
    fn quote_identifier(&self, name: &str) -> String {
        format!("`{}`", name.replace('`', "``"))
    }

    fn physical_table<'t>(&self, table: &'t str) -> Cow<'t, str> {
        if table.len() <= MAX_IDENTIFIER {
            Cow::Borrowed(table)
        } else {
            Cow::Owned(physical_table(table))
        }
    }

    fn boolean(&self, value: bool) -> SqlValue {
        // BOOLEAN columns are TINYINT(1) holding 0/1; JSON booleans are extracted as 0/1.
        SqlValue::Integer(i64::from(value))
    }

    /// Text is bound in the binary collation, so it compares byte by byte whatever the
    /// column's collation.
    fn bind_scalar(&self, st: &mut RenderState, value: &Scalar) -> String {
        let value = match value {
            Scalar::Text(s) => {
                let p = self.bind(st, SqlValue::Text(s.clone()));
                return format!("{p} COLLATE {}", self.binary);
            }
            Scalar::Integer(i) => SqlValue::Integer(*i),
            Scalar::Double(f) => SqlValue::Double(*f),
            Scalar::Boolean(b) => self.boolean(*b),
        };
        self.bind(st, value)
    }

    fn null_safe_eq(&self) -> &'static str {
        " <=> "
    }

    /// Text and JSON text compare in the binary collation without padding, so a change of
    /// case or of trailing spaces is a change. MySQL 8's `JSON` columns are documents, not
    /// text: the value is cast to one and compares by value.
    fn bind_expected(&self, st: &mut RenderState, value: SqlValue, kind: ColumnKind) -> String {
        let json = matches!(kind, ColumnKind::Json | ColumnKind::Encrypted);
        match value {
            SqlValue::Text(_) | SqlValue::Json(_) if json && self.binary == MYSQL_BINARY => {
                let p = self.bind(st, value);
                format!("CAST({p} AS JSON)")
            }
            SqlValue::Text(_) | SqlValue::Json(_) => {
                let p = self.bind(st, value);
                format!("{p} COLLATE {}", self.binary)
            }
            other => self.bind(st, other),
        }
    }

    fn json_extract(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        self.fragment(st, loc)
    }

    fn json_extract_as(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        ty: JsonType,
    ) -> String {
        // A path with a declared index: its invisible virtual column (see
        // `render_create_index`), which holds the value only when it has the type.
        if st.literal
            && loc.element.is_none()
            && let Some(name) = st.index_name(ty)
        {
            return self.quote_identifier(&index_column(name));
        }
        let fragment = self.fragment(st, loc);
        match ty {
            // The binary collation on the value too, not only on the bound text: with it on
            // one side only, MariaDB's optimizer may carry the comparison into another test
            // of the same value and fail with "Illegal mix of collations" (error 1267; found
            // by the differential test: `(a.b IN (1) OR a.b = 'x') AND a.b = 'x'`).
            JsonType::Text => format!("JSON_UNQUOTE({fragment}) COLLATE {}", self.binary),
            // JSON text of a number compares numerically with a bound number.
            JsonType::Number | JsonType::Container => fragment,
            JsonType::Boolean => format!("({fragment} = 'true')"),
        }
    }

    // guard_first: the default (true) is required, see the module doc.

    fn json_type(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        format!("JSON_TYPE({})", self.fragment(st, loc))
    }

    fn json_type_names(&self, ty: JsonType) -> &'static [&'static str] {
        match ty {
            JsonType::Boolean => &["BOOLEAN"],
            JsonType::Number => &["INTEGER", "DOUBLE"],
            JsonType::Text => &["STRING"],
            JsonType::Container => &["ARRAY", "OBJECT"],
        }
    }

    /// `JSON_EXTRACT` gives the JSON `null` literal for a JSON null: test the type.
    fn json_is_null(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        format!("COALESCE({}, 'NULL') = 'NULL'", self.json_type(st, loc))
    }

    fn json_array_elements(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        alias: &str,
    ) -> (String, String) {
        let doc = self.fragment(st, loc);
        // `$[*]` of an object or a scalar gives no row: every row is an array element.
        (
            format!("JSON_TABLE({doc}, '$[*]' COLUMNS ({ELEMENT} JSON PATH '$')) AS {alias}"),
            SQL_TRUE.to_owned(),
        )
    }

    fn like(&self, operand: &str, pattern: &str) -> String {
        format!(
            "{} LIKE REPLACE({pattern}, '!', '!!') COLLATE {} ESCAPE '!'",
            ascii_lower(operand),
            self.binary
        )
    }

    /// The exact [`Dialect::like`] folds the value with 26 `REPLACE`s, 5x the cost of a
    /// scan with `LOWER` (200k rows: 0.5 s against 0.1 s). For an ASCII pattern, `LOWER`
    /// first: it maps characters one to one and folds the ASCII letters as the exact form
    /// does, so whatever the exact form matches it matches too, and for an ASCII value
    /// (`LENGTH` = `CHAR_LENGTH`) it is the exact form; only other values are checked
    /// again. Both placeholders take the same lowered pattern.
    fn like_column(&self, st: &mut RenderState, column: &str, pattern: &str) -> String {
        let p = self.bind_like_pattern(st, pattern);
        let exact = self.like(column, &p);
        if !pattern.is_ascii() {
            return exact;
        }
        let q = self.bind_like_pattern(st, pattern);
        format!(
            "(LOWER({column}) LIKE REPLACE({q}, '!', '!!') COLLATE {} ESCAPE '!' AND \
             (LENGTH({column}) = CHAR_LENGTH({column}) OR {exact}))",
            self.binary
        )
    }

    /// MariaDB compares an integer column with a double exactly (a JSON number's text
    /// compares as a double already; the cast changes nothing there).
    fn as_double(&self, expr: &str) -> String {
        format!("CAST({expr} AS DOUBLE)")
    }

    /// No `NULLS LAST` in MariaDB. Used for whole columns only, whose expression carries no
    /// bound parameter, so repeating it is safe.
    fn order_term(&self, expr: &str, order: SortOrder) -> String {
        match order {
            SortOrder::Asc => format!("{expr} IS NULL, {expr} ASC"),
            SortOrder::Desc => format!("{expr} IS NULL DESC, {expr} DESC"),
        }
    }

    /// The item id is the exception to binary text comparisons: `rnId` orders in its
    /// column's collation, as the primary key and the `ORDER BY rnId` tiebreak do, so a
    /// keyset page (`rnId > ? ORDER BY rnId`) is a range of the key, not a walk of it from
    /// the start. Ids are UUID texts, which the collations order alike.
    fn compare_column(&self, column: &str, op: CompareOp, param: &str, ty: JsonType) -> String {
        let _ = ty;
        let param = match param.split_once(" COLLATE ") {
            Some((bare, _)) if column == "`rnId`" && op != CompareOp::Eq => bare,
            _ => param,
        };
        format!("{column} {} {param}", op.sql())
    }

    /// Text sorts byte by byte, except the item id: it sorts in its column's collation, as
    /// its keyset condition compares it (`compare_column`), or a page after an id of another
    /// case would skip items.
    fn sort_column(&self, name: &str, ty: JsonType, order: SortOrder) -> String {
        let column = self.quote_identifier(name);
        if ty != JsonType::Text || name == "rnId" {
            return self.order_term(&column, order);
        }
        match order {
            SortOrder::Asc => format!("{column} IS NULL, {column} COLLATE {} ASC", self.binary),
            SortOrder::Desc => {
                format!(
                    "{column} IS NULL DESC, {column} COLLATE {} DESC",
                    self.binary
                )
            }
        }
    }

    /// Null and missing values rank 5: last ascending, first descending, with no
    /// `IS NULL` term.
    fn json_type_rank(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        self.json_type_rank_else(st, loc, " ELSE 5")
    }

    fn json_sort_terms(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        order: SortOrder,
    ) -> Vec<String> {
        let direction = match order {
            SortOrder::Asc => "ASC",
            SortOrder::Desc => "DESC",
        };
        let numbers = self.type_list(JsonType::Number);
        let rank = self.json_type_rank(st, loc);
        let (t1, v1) = (self.fragment(st, loc), self.fragment(st, loc));
        let number = format!(
            "CASE WHEN JSON_TYPE({t1}) IN ({numbers}) THEN CAST(JSON_UNQUOTE({v1}) AS DOUBLE) END"
        );
        // Integers beyond 2^53 that are one double apart: their exact value, as decimals
        // (every i64 fits; beyond DECIMAL's range the double above already orders them).
        let (t3, v3) = (self.fragment(st, loc), self.fragment(st, loc));
        let exact = format!(
            "CASE WHEN JSON_TYPE({t3}) IN ({numbers}) THEN CAST(JSON_UNQUOTE({v3}) AS DECIMAL(65, 30)) END"
        );
        let (t2, v2) = (self.fragment(st, loc), self.fragment(st, loc));
        let text = format!(
            "CASE WHEN JSON_TYPE({t2}) IN ({numbers}, 'NULL') THEN NULL ELSE JSON_UNQUOTE({v2}) END COLLATE {}",
            self.binary
        );
        vec![
            format!("{rank} {direction}"),
            format!("{number} {direction}"),
            format!("{exact} {direction}"),
            format!("{text} {direction}"),
        ]
    }

    // limit: the default literal `LIMIT n`.

    /// korm 1.5's types but for text: `INT` for whole numbers (`BIGINT` only when the layer
    /// asks for wide integers), `DOUBLE`, `BOOLEAN`, `JSON` for objects, arrays and encryption
    /// envelopes (MariaDB: `LONGTEXT` with a `json_valid` check), and `MEDIUMTEXT` for text
    /// and RNs where korm 1.5 writes `TEXT`, which holds 64 KiB only; korm 1.5 reads any text
    /// type as text. `__korm_meta__` tells RN and encrypted columns apart (see
    /// [`MySqlDialect::meta`]).
    fn column_type(&self, kind: ColumnKind, _column: &str) -> String {
        let ty = match kind {
            ColumnKind::Text | ColumnKind::RnRef => "MEDIUMTEXT",
            ColumnKind::Integer if self.wide_integers => "BIGINT",
            ColumnKind::Integer => "INT",
            ColumnKind::Double => "DOUBLE",
            ColumnKind::Boolean => "BOOLEAN",
            ColumnKind::Json | ColumnKind::Encrypted => "JSON",
        };
        format!("{ty} NULL")
    }

    /// `TEXT` can not be a key: korm 1.5's `VARCHAR(255)`.
    fn id_column(&self) -> String {
        "`rnId` VARCHAR(255) NOT NULL PRIMARY KEY".to_owned()
    }

    fn shadow_type(&self) -> &'static str {
        "VARCHAR(128) NULL"
    }

    fn identifier_limit(&self) -> crate::layer::schema::IdentifierLimit {
        crate::layer::schema::IdentifierLimit {
            max: MAX_IDENTIFIER,
            database: "MySQL",
        }
    }

    fn table_options(&self) -> &'static str {
        " DEFAULT CHARSET=utf8mb4"
    }

    // add_column: MySQL 8 has no `ADD COLUMN IF NOT EXISTS`; the layer tolerates "duplicate
    // column" instead.

    /// `CREATE UNIQUE INDEX IF NOT EXISTS` is MariaDB's only: `ADD UNIQUE KEY` works on both
    /// (the layer tolerates "duplicate key name").
    fn create_unique_index(&self, table: &str, field: &str) -> String {
        let shadow = self.quote_identifier(&format!("{UNIQUE_PREFIX}{field}"));
        format!(
            "ALTER TABLE {} ADD UNIQUE KEY {} ({shadow})",
            self.quote_identifier(&self.physical_table(table)),
            self.quote_identifier(&unique_index_name(table, field)),
        )
    }

    /// Dropping the shadow column drops its one-column index.
    fn drop_unique_index(&self, _table: &str, _field: &str) -> Option<String> {
        None
    }

    /// The default statements, with `__korm_meta__` kept truthful around them: a column's
    /// meta row is written before the DDL that creates the column, and replaced only after
    /// the DDL that drops it (MySQL commits each DDL statement on its own, so a crash between
    /// two leaves at worst a meta row for a missing column, which readers ignore).
    fn render_change(&self, table: &str, change: &SchemaChange) -> Vec<Statement> {
        let mut ddl = default_render_change(self, table, change);
        let meta = |column: &str, kind: ColumnKind| self.meta(table, column, kind);
        match change {
            SchemaChange::CreateTable { columns, .. } => {
                let mut out = vec![Statement::ddl(CREATE_META.to_owned())];
                out.extend(columns.iter().map(|(c, k)| meta(c, *k)));
                out.append(&mut ddl);
                out
            }
            SchemaChange::AddColumn { column, kind } => {
                let mut out = vec![Statement::ddl(CREATE_META.to_owned()), meta(column, *kind)];
                out.append(&mut ddl);
                out
            }
            // [drop the column, add it back]: the new kind is said in between.
            SchemaChange::RecreateColumn { column, kind } => {
                let add = ddl.split_off(1);
                ddl.push(Statement::ddl(CREATE_META.to_owned()));
                ddl.push(meta(column, *kind));
                ddl.extend(add);
                ddl
            }
            SchemaChange::AddUnique { .. }
            | SchemaChange::IndexShadow { .. }
            | SchemaChange::DropUnique { .. } => ddl,
        }
    }
}

/// `expr` with its ASCII letters lowered and every other character kept: korm's `like` folds
/// ASCII case only (as SQLite's), and `LOWER` folds every letter that has a case (`É`/`é`).
/// `REPLACE` matches case- and accent-sensitively whatever the collation.
fn ascii_lower(expr: &str) -> String {
    (b'A'..=b'Z').fold(expr.to_owned(), |sql, upper| {
        let (upper, lower) = (char::from(upper), char::from(upper.to_ascii_lowercase()));
        format!("REPLACE({sql}, '{upper}', '{lower}')")
    })
}

/// korm 1.5's table of the column kinds a MySQL type can not tell.
pub(super) const META_TABLE: &str = "__korm_meta__";

/// korm 1.5's DDL for `__korm_meta__`.
const CREATE_META: &str = "CREATE TABLE IF NOT EXISTS `__korm_meta__` (`table_name` VARCHAR(255) NOT NULL, \
    `column_name` VARCHAR(255) NOT NULL, `kind` VARCHAR(32) NOT NULL, \
    PRIMARY KEY (`table_name`, `column_name`)) DEFAULT CHARSET=utf8mb4";

impl MySqlDialect {
    /// The statement making `__korm_meta__` say `kind` for a column: a row for the kinds its
    /// type can not tell (korm 1.5's names `rn` and `encrypted`), no row otherwise.
    fn meta(&self, table: &str, column: &str, kind: ColumnKind) -> Statement {
        let (table, column) = (
            SqlValue::Text(table.to_owned()),
            SqlValue::Text(column.to_owned()),
        );
        match meta_kind(kind) {
            Some(name) => Statement {
                sql: "INSERT INTO `__korm_meta__` (`table_name`, `column_name`, `kind`) VALUES (?, ?, ?) \
                      ON DUPLICATE KEY UPDATE `kind` = VALUES(`kind`)"
                    .to_owned(),
                params: vec![table, column, SqlValue::Text(name.to_owned())],
            },
            None => Statement {
                sql: "DELETE FROM `__korm_meta__` WHERE `table_name` = ? AND `column_name` = ?"
                    .to_owned(),
                params: vec![table, column],
            },
        }
    }
}

/// The width of a narrow integer column (`INT` 32, `MEDIUMINT` 24, `SMALLINT` 16, `TINYINT`
/// 8 unless it is a boolean); `None` for `BIGINT` and every other type.
pub(super) fn narrow_integer_bits(data_type: &str, column_type: &str) -> Option<u32> {
    match data_type.to_ascii_lowercase().as_str() {
        "int" | "integer" => Some(32),
        "mediumint" => Some(24),
        "smallint" => Some(16),
        "tinyint" if !column_type.to_ascii_lowercase().starts_with("tinyint(1)") => Some(8),
        _ => None,
    }
}

/// The kind a `__korm_meta__` row names.
pub(super) fn kind_of_meta(name: &str) -> Option<ColumnKind> {
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
pub(super) fn kind_of_type(data_type: &str, column_type: &str) -> ColumnKind {
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

/// The kind of a column, by its type and its `__korm_meta__` row: a meta kind counts only
/// where the column's type can hold it.
pub(super) fn kind_with_meta(by_type: ColumnKind, meta: Option<ColumnKind>) -> ColumnKind {
    match meta {
        Some(ColumnKind::RnRef) if by_type == ColumnKind::Text => ColumnKind::RnRef,
        Some(ColumnKind::Encrypted) if by_type == ColumnKind::Json => ColumnKind::Encrypted,
        _ => by_type,
    }
}

/// The `__korm_meta__` name of a kind its column type can not tell (korm 1.5's names).
pub(super) fn meta_kind(kind: ColumnKind) -> Option<&'static str> {
    match kind {
        ColumnKind::RnRef => Some("rn"),
        ColumnKind::Encrypted => Some("encrypted"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::dialect::testing::{self, TABLE, schema, text};

    #[test]
    fn ascii_lower_replaces_each_upper_case_ascii_letter() {
        let sql = ascii_lower("`x`");
        assert!(
            sql.starts_with(&format!("{}`x`, 'A', 'a')", "REPLACE(".repeat(26))),
            "{sql}"
        );
        assert!(sql.ends_with(", 'Y', 'y'), 'Z', 'z')"), "{sql}");
        assert_eq!(sql.matches("REPLACE(").count(), 26);
    }

    fn where_sql(filter: Filter) -> (String, Vec<SqlValue>) {
        testing::where_sql(&MySqlDialect::default(), filter)
    }

    crate::where_scenarios! {
        MySqlDialect::default();
        scenario_compare_operators {
            "`age` > ?", SqlValue::Integer(1);
            "`age` >= ?", SqlValue::Integer(1);
            "`age` < ?", SqlValue::Integer(1);
            "`age` <= ?", SqlValue::Integer(1);
            "`score` > ?", SqlValue::Double(1.5);
            "`score` > ?", SqlValue::Integer(1);
            "`username` > ? COLLATE utf8mb4_nopad_bin", text("w");
        }
        scenario_and_or_not {
            "(`username` = ? COLLATE utf8mb4_nopad_bin AND (`age` > ? OR `age` < ?) \
                    AND ((`active` = ?) IS NOT TRUE))",
                text("fred"), SqlValue::Integer(1), SqlValue::Integer(0), SqlValue::Integer(1);
            "`age` = ?", SqlValue::Integer(1);
        }
        scenario_eq_column {
            format!("`username` = ? {BIN}"), text("fred");
        }
        scenario_eq_bool_column {
            "`active` = ?", SqlValue::Integer(1);
            "`active` = ?", SqlValue::Integer(0);
        }
        scenario_eq_null_column {
            "`username` IS NULL";
            "`tags` IS NULL";
        }
        scenario_eq_rn_id {
            format!("`rnId` = ? {BIN}"), text("u1");
        }
        scenario_eq_reference_column {
            format!("`owner` = ? {BIN}"),
                text("[rn]:users:freetier:x");
        }
        scenario_eq_json_path {
            format!(
                    "(JSON_TYPE(JSON_EXTRACT(`meta`, ?)) = 'STRING' \
                     AND JSON_UNQUOTE(JSON_EXTRACT(`meta`, ?)) {BIN} = ? {BIN})"
                ),
                text("$.tier"), text("$.tier"), text("gold");
            format!(
                "(JSON_TYPE(JSON_EXTRACT(`meta`, ?)) = 'STRING' \
                 AND JSON_UNQUOTE(JSON_EXTRACT(`meta`, ?)) {BIN} = ? {BIN})"
            ),
            text("$.tier"), text("$.tier"), text("[gold]");
            format!(
                "(JSON_TYPE(JSON_EXTRACT(`meta`, ?)) = 'STRING' \
                 AND JSON_UNQUOTE(JSON_EXTRACT(`meta`, ?)) {BIN} = ? {BIN})"
            ),
            text("$.tier"), text("$.tier"), text("{\"a\":1}");
            format!(
                "(JSON_TYPE(JSON_EXTRACT(`meta`, ?)) = 'STRING' \
                 AND JSON_UNQUOTE(JSON_EXTRACT(`meta`, ?)) {BIN} > ? {BIN})"
            ),
            text("$.tier"), text("$.tier"), text("gold");
        }
        scenario_json_types {
            "(JSON_TYPE(JSON_EXTRACT(`meta`, ?)) IN ('INTEGER', 'DOUBLE') \
                 AND JSON_EXTRACT(`meta`, ?) > ?)",
                text("$.a.b[2]"), text("$.a.b[2]"), SqlValue::Integer(5);
            "(JSON_TYPE(JSON_EXTRACT(`meta`, ?)) = 'BOOLEAN' \
                 AND (JSON_EXTRACT(`meta`, ?) = 'true') = ?)",
                text("$.flags.hot"), text("$.flags.hot"), SqlValue::Integer(1);
        }
        scenario_eq_json_index {
            // `[0]` of a non-array is missing (MariaDB's lax paths would give the value itself).
            format!("(JSON_TYPE({TAG0}) = 'STRING' AND JSON_UNQUOTE({TAG0}) {BIN} = ? {BIN})"),
                text("$[0]"), text("$[0]"), text("a");
        }
        scenario_eq_json_null {
            "COALESCE(JSON_TYPE(JSON_EXTRACT(`meta`, ?)), 'NULL') = 'NULL'",
                text("$.tier");
        }
        scenario_eq_missing {
            format!("NULL = ? {BIN}"), text("x");
            "NULL IS NULL";
            format!("NULL = ? {BIN}"), text("x");
            format!("{} LIKE REPLACE(?, '!', '!!') {BIN} ESCAPE '!'", ascii_lower("NULL")),
                text("x%");
            "NULL";
        }
        scenario_not_missing {
            format!("((NULL = ? {BIN}) IS NOT TRUE)"), text("x");
        }
        scenario_like {
            format!(
                    "(LOWER(`username`) LIKE REPLACE(?, '!', '!!') {BIN} ESCAPE '!' AND \
                     (LENGTH(`username`) = CHAR_LENGTH(`username`) OR \
                     {} LIKE REPLACE(?, '!', '!!') {BIN} ESCAPE '!'))",
                    ascii_lower("`username`")
                ),
                text("fr_d%"), text("fr_d%");
            format!(
                    "(JSON_TYPE(JSON_EXTRACT(`meta`, ?)) = 'STRING' AND {} LIKE \
                     REPLACE(?, '!', '!!') {BIN} ESCAPE '!')",
                    ascii_lower(&format!("JSON_UNQUOTE(JSON_EXTRACT(`meta`, ?)) {BIN}"))
                ),
                text("$.tier"), text("$.tier"), text("g%");
        }
        scenario_in_list_column {
            // A null in the list finds nulls (korm 1.5's in_list).
            "(`age` IS NULL OR `age` IN (?, ?))", SqlValue::Integer(1), SqlValue::Integer(2);
            "`age` IN (?, ?)",
                SqlValue::Integer(1), SqlValue::Integer(2);
        }
        scenario_in_list_mixed_numbers {
            // Integers and doubles in separate lists: one list compares by one type.
            "(`age` IN (?, ?) OR `age` IN (?))",
                SqlValue::Integer(1), SqlValue::Integer(2), SqlValue::Double(2.5);
        }
        scenario_in_list_json_mixed {
            format!(
                    "(COALESCE(JSON_TYPE({KEY}), 'NULL') = 'NULL' \
                     OR ((JSON_TYPE({KEY}) = 'BOOLEAN' AND ({KEY} = 'true') IN (?)) \
                     OR (JSON_TYPE({KEY}) IN ('INTEGER', 'DOUBLE') AND {KEY} IN (?)) \
                     OR (JSON_TYPE({KEY}) = 'STRING' AND JSON_UNQUOTE({KEY}) {BIN} IN (? {BIN}, ? {BIN}))))"
                ),
                text("$.tier"), text("$.tier"), text("$.tier"), SqlValue::Integer(1), text("$.tier"),
                text("$.tier"), SqlValue::Integer(1), text("$.tier"), text("$.tier"), text("gold"),
                text("silver");
            format!(
                "(JSON_TYPE({KEY}) = 'STRING' AND JSON_UNQUOTE({KEY}) {BIN} IN (? {BIN}, ? {BIN}))"
            ),
            text("$.tier"), text("$.tier"), text("gold"), text("[1]");
        }
        scenario_wildcard {
            format!(
                    "EXISTS (SELECT 1 FROM JSON_TABLE(`addresses`, {ELEMENTS} AS w1 WHERE 1 = 1 \
                     AND (JSON_TYPE(JSON_EXTRACT(w1.`korm$v`, ?)) = 'STRING' \
                     AND JSON_UNQUOTE(JSON_EXTRACT(w1.`korm$v`, ?)) {BIN} = ? {BIN}))"
                ),
                text("$.city"), text("$.city"), text("Paris");
        }
        scenario_wildcard_under_key {
            format!(
                    "EXISTS (SELECT 1 FROM JSON_TABLE(JSON_EXTRACT(`meta`, ?), {ELEMENTS} AS w1 \
                     WHERE 1 = 1 AND (JSON_TYPE(JSON_EXTRACT(w1.`korm$v`, ?)) = 'STRING' \
                     AND JSON_UNQUOTE(JSON_EXTRACT(w1.`korm$v`, ?)) {BIN} = ? {BIN}))"
                ),
                text("$.addresses"), text("$.city"), text("$.city"), text("Paris");
        }
        scenario_wildcard_scalar_element {
            format!(
                    "EXISTS (SELECT 1 FROM JSON_TABLE(`tags`, {ELEMENTS} AS w1 WHERE 1 = 1 \
                     AND (JSON_TYPE(w1.`korm$v`) = 'STRING' AND JSON_UNQUOTE(w1.`korm$v`) {BIN} = ? {BIN}))"
                ),
                text("a");
            format!(
                    "EXISTS (SELECT 1 FROM JSON_TABLE(`tags`, {ELEMENTS} AS w1 WHERE 1 = 1 \
                     AND COALESCE(JSON_TYPE(w1.`korm$v`), 'NULL') = 'NULL')"
                );
        }
        scenario_nested_wildcard {
            format!(
                    "EXISTS (SELECT 1 FROM JSON_TABLE(JSON_EXTRACT(`meta`, ?), {ELEMENTS} AS w1 \
                     WHERE 1 = 1 AND EXISTS (SELECT 1 FROM JSON_TABLE(JSON_EXTRACT(w1.`korm$v`, ?), \
                     {ELEMENTS} AS w2 WHERE 1 = 1 AND (JSON_TYPE(JSON_EXTRACT(w2.`korm$v`, ?)) = 'STRING' \
                     AND JSON_UNQUOTE(JSON_EXTRACT(w2.`korm$v`, ?)) {BIN} = ? {BIN})))"
                ),
                text("$.groups"), text("$.members"), text("$.name"), text("$.name"), text("x");
            format!(
                    "EXISTS (SELECT 1 FROM JSON_TABLE(`tags`, {ELEMENTS} AS w1 WHERE 1 = 1 \
                     AND EXISTS (SELECT 1 FROM JSON_TABLE(w1.`korm$v`, {ELEMENTS} AS w2 \
                     WHERE 1 = 1 AND (JSON_TYPE(w2.`korm$v`) IN ('INTEGER', 'DOUBLE') \
                     AND w2.`korm$v` = ?)))"
                ),
                SqlValue::Integer(1);
        }
    }

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
    fn types_map_to_kinds() {
        assert_eq!(kind_of_type("tinyint", "tinyint(1)"), ColumnKind::Boolean);
        assert_eq!(kind_of_type("int", "int(11)"), ColumnKind::Integer);
        assert_eq!(kind_of_type("bigint", "bigint(20)"), ColumnKind::Integer);
        assert_eq!(kind_of_type("double", "double"), ColumnKind::Double);
        assert_eq!(kind_of_type("longtext", "longtext"), ColumnKind::Json);
        assert_eq!(kind_of_type("text", "text"), ColumnKind::Text);
        assert_eq!(kind_of_type("varchar", "varchar(255)"), ColumnKind::Text);
    }

    use crate::layer::schema::TableSchema;
    use crate::model::ColumnKind;
    use crate::query::{Filter, eq};

    // ---- exact SQL, one scenario each (the same names as query/sqlite.rs)

    const BIN: &str = "COLLATE utf8mb4_nopad_bin";

    /// `tags[0]` in the scenarios.
    const TAG0: &str = "CASE WHEN JSON_TYPE(`tags`) = 'ARRAY' THEN JSON_EXTRACT(`tags`, ?) END";

    #[test]
    fn nested_indexes_check_every_array_on_the_way() {
        let (sql, params) = where_sql(eq("meta.a[0].b[0]", 1));
        assert!(
            sql.starts_with(
                "(JSON_TYPE(CASE WHEN JSON_TYPE(JSON_EXTRACT(`meta`, ?)) = 'ARRAY' \
                 AND JSON_TYPE(JSON_EXTRACT(`meta`, ?)) = 'ARRAY' THEN JSON_EXTRACT(`meta`, ?) END)"
            ),
            "{sql}"
        );
        assert_eq!(
            params[..3],
            [text("$.a"), text("$.a[0].b"), text("$.a[0].b[0]")]
        );
    }

    const ELEMENTS: &str = "'$[*]' COLUMNS (`korm$v` JSON PATH '$'))";

    /// A key of `meta` (`$.tier`, `$.rank`) in the scenarios.
    const KEY: &str = "JSON_EXTRACT(`meta`, ?)";

    /// The `ORDER BY` terms of `meta.rank` in `order` (`ASC`, `DESC`): type rank, number
    /// as a double, number exactly, text.
    fn rank_terms(order: &str) -> String {
        format!(
            "CASE JSON_TYPE({KEY}) WHEN 'BOOLEAN' THEN 1 WHEN 'INTEGER' THEN 2 \
             WHEN 'DOUBLE' THEN 2 WHEN 'STRING' THEN 3 WHEN 'ARRAY' THEN 4 \
             WHEN 'OBJECT' THEN 4 ELSE 5 END {order}, \
             CASE WHEN JSON_TYPE({KEY}) IN ('INTEGER', 'DOUBLE') \
             THEN CAST(JSON_UNQUOTE({KEY}) AS DOUBLE) END {order}, \
             CASE WHEN JSON_TYPE({KEY}) IN ('INTEGER', 'DOUBLE') \
             THEN CAST(JSON_UNQUOTE({KEY}) AS DECIMAL(65, 30)) END {order}, \
             CASE WHEN JSON_TYPE({KEY}) IN ('INTEGER', 'DOUBLE', 'NULL') THEN NULL \
             ELSE JSON_UNQUOTE({KEY}) END {BIN} {order}"
        )
    }

    crate::statement_scenarios! {
        MySqlDialect::default();
        scenario_sort_nulls: sort_nulls => format!(
                "SELECT * FROM `{TABLE}` ORDER BY `age` IS NULL DESC, `age` DESC, {}, \
                 `username` IS NULL, `username` {BIN} ASC, `rnId` ASC",
                rank_terms("ASC")
            ),
            vec![text("$.rank"); 7];
        scenario_filter_sort_limit_param_order: filter_sort_limit => format!(
                "SELECT * FROM `{TABLE}` WHERE (JSON_TYPE({KEY}) = 'STRING' \
                 AND JSON_UNQUOTE({KEY}) {BIN} = ? {BIN}) ORDER BY {}, `rnId` ASC LIMIT 10",
                rank_terms("DESC")
            ),
            [vec![text("$.tier"), text("$.tier"), text("gold")], vec![text("$.rank"); 7]].concat();
        conditional_update: conditional_update => format!(
                "UPDATE `{TABLE}` SET `age` = ? WHERE `rnId` = ? AND `age` <=> ? AND `meta` <=> ? {BIN}"
            ),
            vec![SqlValue::Integer(43), text("u1"), SqlValue::Integer(42), SqlValue::Json("{\"a\": 1}".into())];
        conditional_probe: conditional_probe => format!(
                "SELECT CASE WHEN `age` <=> ? THEN 1 ELSE 0 END, CASE WHEN `meta` <=> ? {BIN} THEN 1 ELSE 0 END FROM `{TABLE}` WHERE `rnId` = ?"
            ),
            vec![SqlValue::Integer(42), SqlValue::Json("{\"a\": 1}".into()), text("u1")];
    }

    #[test]
    fn scenario_long_table_is_hashed() {
        // korm 1.5's fixture: a table name over 64 characters is stored under its hash.
        let long = "__items__documents__contractsforlongtermrentalofheavyquarryequipment";
        let long_schema = TableSchema {
            table: long.into(),
            ..schema()
        };
        let st = MySqlDialect::default()
            .render_select(&long_schema, None, &[], None)
            .unwrap();
        let hashed = physical_table(long);
        assert!(
            hashed.starts_with("__items__") && hashed.len() == 9 + 32,
            "{hashed}"
        );
        assert_eq!(st.sql, format!("SELECT * FROM `{hashed}`"));
        assert_eq!(
            MySqlDialect::default()
                .render_select(&schema(), None, &[], None)
                .unwrap()
                .sql,
            format!("SELECT * FROM `{TABLE}`"),
            "a short name is kept"
        );
    }
}
