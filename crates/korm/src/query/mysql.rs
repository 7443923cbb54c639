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
//! - **Text compares byte by byte**: a bound text is `? COLLATE utf8mb4_bin`, which wins
//!   over the column's collation (korm 1.5's tables use the case-insensitive
//!   `utf8mb4_general_ci`), and text sort keys are sorted `COLLATE utf8mb4_bin`.
//! - **`like`**: `LOWER(x) LIKE REPLACE(LOWER(?), '!', '!!') COLLATE utf8mb4_bin ESCAPE '!'`.
//!   MariaDB's LIKE escapes with `\` by default and `ESCAPE ''` does not turn that off, so
//!   `!` is made the escape character and every `!` of the pattern is doubled: no character
//!   of korm's pattern escapes anything, as on SQLite. Case: both sides are lowered and
//!   compared in binary, so ASCII letters match either case; unlike SQLite, non-ASCII letters
//!   that have a case (`É`/`é`) match either case too (MariaDB has no ASCII-only folding).
//!   No accent folding: `e` never matches `é`.
//! - **Wildcards** iterate `JSON_TABLE(doc, '$[*]' COLUMNS (`korm$v` JSON PATH '$'))`, which
//!   gives no row for an object or a scalar; the column name has a `$`, which no field name
//!   can have, so it never hides a field of the outer table.
//! - **Sorting**: no `NULLS LAST`; a column sorts `x IS NULL, x ASC` (`x IS NULL DESC, x DESC`
//!   descending). A JSON path sorts by a type rank that is never NULL (5 for null and
//!   missing, after objects ascending and first descending), then by the number
//!   (`CAST(... AS DOUBLE)`, NULL for non-numbers), then by the text (`COLLATE utf8mb4_bin`,
//!   NULL for numbers): a bound path is never repeated to emulate `NULLS LAST`.

use super::dialect::{Dialect, JsonLocation, JsonType, RenderState, SQL_TRUE, Scalar};
use super::filter::SortOrder;
use super::path::PathStep;
use crate::model::SqlValue;

/// The collation that compares and sorts text byte by byte (code point order for UTF-8).
const BINARY: &str = "utf8mb4_bin";

/// The column of an array-element `JSON_TABLE`: the element as JSON text.
const ELEMENT: &str = "`korm$v`";

/// MariaDB 10.6+ (for `JSON_TABLE`) and MySQL 8.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MySqlDialect;

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

/// `$` and the steps as JSONPath text.
fn path_text(steps: &[PathStep]) -> String {
    let mut text = String::from("$");
    for step in steps {
        text.push_str(&step.to_string());
    }
    text
}

impl Dialect for MySqlDialect {
    fn placeholder(&self, _n: usize) -> String {
        "?".to_owned()
    }

    /// Backticks work whatever the session's `sql_mode` (double quotes only under
    /// `ANSI_QUOTES`).
    fn quote_identifier(&self, name: &str) -> String {
        format!("`{}`", name.replace('`', "``"))
    }

    fn boolean(&self, value: bool) -> SqlValue {
        // BOOLEAN columns are TINYINT(1) holding 0/1; JSON booleans are extracted as 0/1.
        SqlValue::Integer(i64::from(value))
    }

    /// Text is bound `COLLATE utf8mb4_bin`, so it compares byte by byte whatever the
    /// column's collation.
    fn bind_scalar(&self, st: &mut RenderState, value: &Scalar) -> String {
        let value = match value {
            Scalar::Text(s) => {
                let p = self.bind(st, SqlValue::Text(s.clone()));
                return format!("{p} COLLATE {BINARY}");
            }
            Scalar::Integer(i) => SqlValue::Integer(*i),
            Scalar::Double(f) => SqlValue::Double(*f),
            Scalar::Boolean(b) => self.boolean(*b),
        };
        self.bind(st, value)
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
        let fragment = self.fragment(st, loc);
        match ty {
            JsonType::Text => format!("JSON_UNQUOTE({fragment})"),
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
            "LOWER({operand}) LIKE REPLACE(LOWER({pattern}), '!', '!!') COLLATE {BINARY} ESCAPE '!'"
        )
    }

    /// No `NULLS LAST` in MariaDB. Used for whole columns only, whose expression carries no
    /// bound parameter, so repeating it is safe.
    fn order_term(&self, expr: &str, order: SortOrder) -> String {
        match order {
            SortOrder::Asc => format!("{expr} IS NULL, {expr} ASC"),
            SortOrder::Desc => format!("{expr} IS NULL DESC, {expr} DESC"),
        }
    }

    fn sort_column(&self, name: &str, ty: JsonType, order: SortOrder) -> String {
        let column = self.quote_identifier(name);
        if ty != JsonType::Text {
            return self.order_term(&column, order);
        }
        match order {
            SortOrder::Asc => format!("{column} IS NULL, {column} COLLATE {BINARY} ASC"),
            SortOrder::Desc => format!("{column} IS NULL DESC, {column} COLLATE {BINARY} DESC"),
        }
    }

    /// Null and missing values rank 5: last ascending, first descending, with no
    /// `IS NULL` term.
    fn json_type_rank(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
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
        sql.push_str(" ELSE 5 END");
        sql
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
        let (t2, v2) = (self.fragment(st, loc), self.fragment(st, loc));
        let text = format!(
            "CASE WHEN JSON_TYPE({t2}) IN ({numbers}) THEN NULL ELSE JSON_UNQUOTE({v2}) END COLLATE {BINARY}"
        );
        vec![
            format!("{rank} {direction}"),
            format!("{number} {direction}"),
            format!("{text} {direction}"),
        ]
    }

    // limit: the default literal `LIMIT n`.
}
