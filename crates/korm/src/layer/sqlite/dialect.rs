//! The SQLite dialect: `?` placeholders, double-quoted identifiers, `json_extract`,
//! `json_type` and `json_each` over JSON text columns, booleans as 0/1.

use std::borrow::Cow;

use crate::model::{ColumnKind, SqlValue};
use crate::query::dialect::{Dialect, JsonLocation, JsonType, RenderState};

/// SQLite (3.30+ for `NULLS LAST`; korm bundles 3.5x through rusqlite).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SqliteDialect;

impl SqliteDialect {
    /// The path argument of a JSON function for `loc`: `?` bound to `$.a[0]` from the column
    /// root, or `w1.fullkey || ?` bound to `.a[0]` from an array element. Going through
    /// `fullkey` into the original column (rather than `json_extract(w1.value, ...)`) keeps
    /// scalar elements, which `value` gives as plain SQL text, away from the JSON parser.
    fn path_argument(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        match loc.element {
            // A declared index's expression has the path as a literal (validated keys and
            // integer indexes only: nothing to escape).
            None if st.literal => format!("'${}'", loc.steps_text()),
            None => self.bind(st, SqlValue::Text(format!("${}", loc.steps_text()))),
            Some(alias) if loc.steps.is_empty() => format!("{alias}.fullkey"),
            Some(alias) => {
                let p = self.bind(st, SqlValue::Text(loc.steps_text()));
                format!("{alias}.fullkey || {p}")
            }
        }
    }
}

impl Dialect for SqliteDialect {
    /// SQLite compares an integer with a real exactly.
    fn as_double(&self, expr: &str) -> String {
        format!("CAST({expr} AS REAL)")
    }

    fn placeholder(&self, _n: usize) -> Cow<'static, str> {
        Cow::Borrowed("?")
    }

    // quote_identifier: the default ANSI double quotes are SQLite's own.

    fn boolean(&self, value: bool) -> SqlValue {
        // BOOLEAN columns hold 0/1, and json_extract/json_each give 0/1 for true/false.
        SqlValue::Integer(i64::from(value))
    }

    fn json_extract(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        match loc.element {
            // The element itself: json_each already extracted it (text unquoted, true as 1).
            Some(alias) if loc.steps.is_empty() => format!("{alias}.value"),
            _ => {
                let column = self.quote_identifier(loc.column);
                let path = self.path_argument(st, loc);
                format!("json_extract({column}, {path})")
            }
        }
    }

    /// SQLite's comparisons never fail on a type, and its `AND` skips the right side when the
    /// left is false: the guard after the comparison costs a second JSON lookup only on rows
    /// that already matched.
    fn guard_first(&self) -> bool {
        false
    }

    fn text_equality_needs_guard(&self, text: &str) -> bool {
        text.starts_with(['{', '['])
    }

    fn json_type(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        match loc.element {
            Some(alias) if loc.steps.is_empty() => format!("{alias}.type"),
            _ => {
                let column = self.quote_identifier(loc.column);
                let path = self.path_argument(st, loc);
                format!("json_type({column}, {path})")
            }
        }
    }

    fn json_type_names(&self, ty: JsonType) -> &'static [&'static str] {
        match ty {
            JsonType::Boolean => &["true", "false"],
            JsonType::Number => &["integer", "real"],
            JsonType::Text => &["text"],
            JsonType::Container => &["array", "object"],
        }
    }

    // json_is_null: the default fits, json_extract gives SQL NULL for JSON null and for a
    // missing path, and json_each's value is NULL for a null element.

    fn json_array_elements(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        alias: &str,
    ) -> (String, String) {
        let column = self.quote_identifier(loc.column);
        let from = if loc.element.is_none() && loc.steps.is_empty() {
            format!("json_each({column}) AS {alias}")
        } else {
            let path = self.path_argument(st, loc);
            format!("json_each({column}, {path}) AS {alias}")
        };
        // json_each over an object gives text keys, over a scalar one row with a NULL key:
        // only integer keys are array elements.
        (from, format!("typeof({alias}.key) = 'integer'"))
    }

    fn push_identifier(&self, sql: &mut String, ident: &str) {
        sql.reserve(ident.len() + 2);
        sql.push('"');
        if ident.contains('"') {
            sql.push_str(&ident.replace('"', "\"\""));
        } else {
            sql.push_str(ident);
        }
        sql.push('"');
    }

    /// korm 1.5's declared types (they are also how SQLite tells the kinds apart again).
    fn column_type(&self, kind: ColumnKind, column: &str) -> String {
        match kind {
            ColumnKind::Text => "TEXT".to_owned(),
            ColumnKind::Integer => "INTEGER".to_owned(),
            ColumnKind::Double => "REAL".to_owned(),
            ColumnKind::Boolean => format!(
                "BOOLEAN CHECK( {} IN (0, 1) )",
                self.quote_identifier(column)
            ),
            ColumnKind::Json => "JSON_TEXT".to_owned(),
            ColumnKind::RnRef => "RN_REF_TEXT".to_owned(),
            ColumnKind::Encrypted => "ENCRYPTED_JSON".to_owned(),
        }
    }

    fn id_column(&self) -> String {
        "\"rnId\" ID_TEXT PRIMARY KEY".to_owned()
    }

    // shadow_type, table_options, add_column, the unique index statements: the defaults
    // are SQLite's (its DDL runs inside the write's `BEGIN IMMEDIATE` transaction).

    // like: the default `LIKE ?` is SQLite's (no escape character, ASCII case folding).
    // order_term: the default `NULLS LAST`/`NULLS FIRST` works since SQLite 3.30.
    // limit: the default literal `LIMIT n`.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::dialect::testing::{TABLE, text};

    crate::where_scenarios! {
        SqliteDialect;
        scenario_compare_operators {
            "\"age\" > ?", SqlValue::Integer(1);
            "\"age\" >= ?", SqlValue::Integer(1);
            "\"age\" < ?", SqlValue::Integer(1);
            "\"age\" <= ?", SqlValue::Integer(1);
            "\"score\" > ?", SqlValue::Double(1.5);
            // A whole number against a double column compares as a number.
            "\"score\" > ?", SqlValue::Integer(1);
            "\"username\" > ?", text("w");
        }
        scenario_and_or_not {
            "(\"username\" = ? AND (\"age\" > ? OR \"age\" < ?) AND ((\"active\" = ?) IS NOT TRUE))",
                text("fred"), SqlValue::Integer(1), SqlValue::Integer(0), SqlValue::Integer(1);
            // A single child needs no parentheses of its own.
            "\"age\" = ?", SqlValue::Integer(1);
        }
        scenario_eq_column {
            "\"username\" = ?", text("fred");
        }
        scenario_eq_bool_column {
            "\"active\" = ?", SqlValue::Integer(1);
            "\"active\" = ?", SqlValue::Integer(0);
        }
        scenario_eq_null_column {
            "\"username\" IS NULL";
            "\"tags\" IS NULL";
        }
        scenario_eq_rn_id {
            "\"rnId\" = ?", text("u1");
        }
        scenario_eq_reference_column {
            "\"owner\" = ?", text("[rn]:users:freetier:x");
        }
        scenario_eq_json_path {
            "json_extract(\"meta\", ?) = ?", text("$.tier"), text("gold");
            // json_extract gives an object or an array as JSON text: text that could be one
            // keeps the type check.
            "(json_extract(\"meta\", ?) = ? AND json_type(\"meta\", ?) = 'text')",
                text("$.tier"), text("[gold]"), text("$.tier");
            "(json_extract(\"meta\", ?) = ? AND json_type(\"meta\", ?) = 'text')",
                text("$.tier"), text("{\"a\":1}"), text("$.tier");
            // Orderings compare text with an object's JSON text too: always checked.
            "(json_extract(\"meta\", ?) > ? AND json_type(\"meta\", ?) = 'text')",
                text("$.tier"), text("gold"), text("$.tier");
        }
        scenario_json_types {
            "(json_extract(\"meta\", ?) > ? AND json_type(\"meta\", ?) IN ('integer', 'real'))",
                text("$.a.b[2]"), SqlValue::Integer(5), text("$.a.b[2]");
            "(json_extract(\"meta\", ?) = ? AND json_type(\"meta\", ?) IN ('true', 'false'))",
                text("$.flags.hot"), SqlValue::Integer(1), text("$.flags.hot");
        }
        scenario_eq_json_index {
            "json_extract(\"tags\", ?) = ?", text("$[0]"), text("a");
        }
        scenario_eq_json_null {
            "json_extract(\"meta\", ?) IS NULL", text("$.tier");
        }
        scenario_eq_missing {
            "NULL = ?", text("x");
            "NULL IS NULL";
            // Steps into a scalar column reach nothing.
            "NULL = ?", text("x");
            "NULL LIKE ?", text("x%");
            "NULL";
        }
        scenario_not_missing {
            "((NULL = ?) IS NOT TRUE)", text("x");
        }
        scenario_like {
            "\"username\" LIKE ?", text("fr_d%");
            "(json_extract(\"meta\", ?) LIKE ? AND json_type(\"meta\", ?) = 'text')",
                text("$.tier"), text("g%"), text("$.tier");
        }
        scenario_in_list_column {
            // A null in the list finds nulls (korm 1.5's in_list).
            "(\"age\" IS NULL OR \"age\" IN (?, ?))", SqlValue::Integer(1), SqlValue::Integer(2);
            "\"age\" IN (?, ?)",
                SqlValue::Integer(1), SqlValue::Integer(2);
        }
        scenario_in_list_mixed_numbers {
            // Integers and doubles in separate lists: one list compares by one type.
            "(\"age\" IN (?, ?) OR \"age\" IN (?))",
                SqlValue::Integer(1), SqlValue::Integer(2), SqlValue::Double(2.5);
        }
        scenario_in_list_json_mixed {
            "(json_extract(\"meta\", ?) IS NULL OR ((json_extract(\"meta\", ?) IN (?) AND json_type(\"meta\", ?) IN ('true', 'false')) \
                    OR (json_extract(\"meta\", ?) IN (?) AND json_type(\"meta\", ?) IN ('integer', 'real')) \
                    OR json_extract(\"meta\", ?) IN (?, ?)))",
                text("$.tier"), text("$.tier"), SqlValue::Integer(1), text("$.tier"), text("$.tier"),
                SqlValue::Integer(1), text("$.tier"), text("$.tier"), text("gold"), text("silver");
            // A text that could be an object's or an array's JSON text keeps the type check.
            "(json_extract(\"meta\", ?) IN (?, ?) AND json_type(\"meta\", ?) = 'text')",
                text("$.tier"), text("gold"), text("[1]"), text("$.tier");
        }
        scenario_wildcard {
            "EXISTS (SELECT 1 FROM json_each(\"addresses\") AS w1 WHERE typeof(w1.key) = 'integer' \
                 AND json_extract(\"addresses\", w1.fullkey || ?) = ?)",
                text(".city"), text("Paris");
        }
        scenario_wildcard_under_key {
            "EXISTS (SELECT 1 FROM json_each(\"meta\", ?) AS w1 WHERE typeof(w1.key) = 'integer' \
                 AND json_extract(\"meta\", w1.fullkey || ?) = ?)",
                text("$.addresses"), text(".city"), text("Paris");
        }
        scenario_wildcard_scalar_element {
            "EXISTS (SELECT 1 FROM json_each(\"tags\") AS w1 WHERE typeof(w1.key) = 'integer' \
                 AND w1.value = ?)",
                text("a");
            "EXISTS (SELECT 1 FROM json_each(\"tags\") AS w1 WHERE typeof(w1.key) = 'integer' \
                 AND w1.value IS NULL)";
        }
        scenario_nested_wildcard {
            "EXISTS (SELECT 1 FROM json_each(\"meta\", ?) AS w1 WHERE typeof(w1.key) = 'integer' \
                    AND EXISTS (SELECT 1 FROM json_each(\"meta\", w1.fullkey || ?) AS w2 \
                    WHERE typeof(w2.key) = 'integer' \
                    AND json_extract(\"meta\", w2.fullkey || ?) = ?))",
                text("$.groups"), text(".members"), text(".name"), text("x");
            // Directly nested arrays: the inner array is the element itself.
            "EXISTS (SELECT 1 FROM json_each(\"tags\") AS w1 WHERE typeof(w1.key) = 'integer' \
                    AND EXISTS (SELECT 1 FROM json_each(\"tags\", w1.fullkey) AS w2 \
                    WHERE typeof(w2.key) = 'integer' \
                    AND (w2.value = ? AND w2.type IN ('integer', 'real'))))",
                SqlValue::Integer(1);
        }
    }

    crate::statement_scenarios! {
        SqliteDialect;
        scenario_sort_nulls: sort_nulls => format!(
                "SELECT * FROM \"{TABLE}\" ORDER BY \"age\" DESC NULLS FIRST, \
                 CASE json_type(\"meta\", ?) WHEN 'true' THEN 1 WHEN 'false' THEN 1 \
                 WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'text' THEN 3 \
                 WHEN 'array' THEN 4 WHEN 'object' THEN 4 END ASC NULLS LAST, \
                 json_extract(\"meta\", ?) ASC NULLS LAST, \"username\" ASC NULLS LAST, \"rnId\" ASC"
            ),
            vec![text("$.rank"), text("$.rank")];
        scenario_filter_sort_limit_param_order: filter_sort_limit => format!(
                "SELECT * FROM \"{TABLE}\" WHERE json_extract(\"meta\", ?) = ? ORDER BY \
                 CASE json_type(\"meta\", ?) WHEN 'true' THEN 1 WHEN 'false' THEN 1 \
                 WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'text' THEN 3 \
                 WHEN 'array' THEN 4 WHEN 'object' THEN 4 END DESC NULLS FIRST, \
                 json_extract(\"meta\", ?) DESC NULLS FIRST, \"rnId\" ASC LIMIT 10"
            ),
            vec![text("$.tier"), text("gold"), text("$.rank"), text("$.rank")];
        conditional_update: conditional_update => format!(
                "UPDATE \"{TABLE}\" SET \"age\" = ? WHERE \"rnId\" = ? AND \"age\" IS ? AND \"meta\" IS ?"
            ),
            vec![
                SqlValue::Integer(43),
                text("u1"),
                SqlValue::Integer(42),
                SqlValue::Json("{\"a\": 1}".into())
            ];
        conditional_probe: conditional_probe => format!(
                "SELECT CASE WHEN \"age\" IS ? THEN 1 ELSE 0 END, CASE WHEN \"meta\" IS ? THEN 1 ELSE 0 END FROM \"{TABLE}\" WHERE \"rnId\" = ?"
            ),
            vec![SqlValue::Integer(42), SqlValue::Json("{\"a\": 1}".into()), text("u1")];
    }

    #[test]
    fn json_each_gives_what_the_dialect_relies_on() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let rows: Vec<(Option<i64>, String, String)> = conn
            .prepare(
                "SELECT typeof(w.key) = 'integer', w.fullkey, w.type \
                 FROM json_each('{\"a\":[1,\"s\",true,null]}', '$.a') AS w",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (Some(1), "$.a[0]".into(), "integer".into()),
                (Some(1), "$.a[1]".into(), "text".into()),
                (Some(1), "$.a[2]".into(), "true".into()),
                (Some(1), "$.a[3]".into(), "null".into()),
            ]
        );
        // A scalar gives one row whose key is NULL; an object gives text keys.
        let key_type: String = conn
            .query_row("SELECT typeof(key) FROM json_each('5')", [], |r| r.get(0))
            .unwrap();
        assert_eq!(key_type, "null");
        let version: String = conn
            .query_row("SELECT sqlite_version()", [], |r| r.get(0))
            .unwrap();
        assert!(version.as_str() >= "3.30", "{version}");
    }
}
