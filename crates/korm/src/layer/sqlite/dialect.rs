//! The SQLite dialect: `?` placeholders, double-quoted identifiers, `json_extract`,
//! `json_type` and `json_each` over JSON text columns, booleans as 0/1.

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
    fn placeholder(&self, _n: usize) -> String {
        "?".to_owned()
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
    use crate::model::ColumnKind;
    use crate::query::dialect::Statement;
    use crate::query::{Filter, SortOrder, and, eq, gt, gte, in_list, like, lt, lte, not, or};
    use crate::{Error, layer::schema::TableSchema};
    use serde_json::{Value, json};

    const TABLE: &str = "__items__users__freetier";

    fn schema() -> TableSchema {
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
            unique: vec![],
        }
    }

    fn select(
        filter: Option<&Filter>,
        sort: &[(&str, SortOrder)],
        limit: Option<u64>,
    ) -> Result<Statement, Error> {
        let sort: Vec<(String, SortOrder)> =
            sort.iter().map(|(p, o)| ((*p).to_owned(), *o)).collect();
        SqliteDialect.render_select(&schema(), filter, &sort, limit)
    }

    fn where_sql(filter: Filter) -> (String, Vec<SqlValue>) {
        let st = select(Some(&filter), &[], None).unwrap();
        let prefix = format!("SELECT * FROM \"{TABLE}\" WHERE ");
        let condition = st
            .sql
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("unexpected statement {}", st.sql));
        (condition.to_owned(), st.params)
    }

    fn text(s: &str) -> SqlValue {
        SqlValue::Text(s.to_owned())
    }

    // ---- exact SQL, one scenario each (the same names will exist for PostgreSQL and MariaDB)

    #[test]
    fn scenario_no_filter() {
        let st = select(None, &[], None).unwrap();
        assert_eq!(st.sql, format!("SELECT * FROM \"{TABLE}\""));
        assert!(st.params.is_empty());
    }

    #[test]
    fn scenario_eq_column() {
        assert_eq!(
            where_sql(eq("username", "fred")),
            ("\"username\" = ?".into(), vec![text("fred")])
        );
    }

    #[test]
    fn scenario_compare_operators() {
        for (f, op) in [
            (gt("age", 1), ">"),
            (gte("age", 1), ">="),
            (lt("age", 1), "<"),
            (lte("age", 1), "<="),
        ] {
            assert_eq!(
                where_sql(f),
                (format!("\"age\" {op} ?"), vec![SqlValue::Integer(1)])
            );
        }
        assert_eq!(
            where_sql(gt("score", 1.5)),
            ("\"score\" > ?".into(), vec![SqlValue::Double(1.5)])
        );
        // A whole number against a double column compares as a number.
        assert_eq!(
            where_sql(gt("score", 1)),
            ("\"score\" > ?".into(), vec![SqlValue::Integer(1)])
        );
    }

    #[test]
    fn scenario_eq_bool_column() {
        assert_eq!(
            where_sql(eq("active", true)),
            ("\"active\" = ?".into(), vec![SqlValue::Integer(1)])
        );
        assert_eq!(
            where_sql(eq("active", false)),
            ("\"active\" = ?".into(), vec![SqlValue::Integer(0)])
        );
    }

    #[test]
    fn scenario_type_mismatch_column() {
        assert_eq!(where_sql(eq("age", "80")), ("1 = 0".into(), vec![]));
        assert_eq!(where_sql(eq("active", 1)), ("1 = 0".into(), vec![]));
        assert_eq!(where_sql(eq("username", 1)), ("1 = 0".into(), vec![]));
        assert_eq!(where_sql(like("age", "1%")), ("1 = 0".into(), vec![]));
        // A whole JSON column holds an object or an array, never a scalar.
        assert_eq!(where_sql(eq("tags", "a")), ("1 = 0".into(), vec![]));
    }

    #[test]
    fn scenario_eq_null_column() {
        assert_eq!(
            where_sql(eq("username", Value::Null)),
            ("\"username\" IS NULL".into(), vec![])
        );
        assert_eq!(
            where_sql(eq("tags", ())),
            ("\"tags\" IS NULL".into(), vec![])
        );
    }

    #[test]
    fn scenario_eq_rn_id() {
        assert_eq!(
            where_sql(eq("rnId", "u1")),
            ("\"rnId\" = ?".into(), vec![text("u1")])
        );
    }

    #[test]
    fn scenario_eq_reference_column() {
        assert_eq!(
            where_sql(eq("owner", "[rn]:users:freetier:x")),
            ("\"owner\" = ?".into(), vec![text("[rn]:users:freetier:x")])
        );
    }

    #[test]
    fn scenario_eq_json_path() {
        assert_eq!(
            where_sql(eq("meta.tier", "gold")),
            (
                "json_extract(\"meta\", ?) = ?".into(),
                vec![text("$.tier"), text("gold")]
            )
        );
        // json_extract gives an object or an array as JSON text: text that could be one keeps
        // the type check.
        for looks_like_json in ["[gold]", "{\"a\":1}"] {
            assert_eq!(
                where_sql(eq("meta.tier", looks_like_json)),
                (
                    "(json_extract(\"meta\", ?) = ? AND json_type(\"meta\", ?) = 'text')".into(),
                    vec![text("$.tier"), text(looks_like_json), text("$.tier")]
                )
            );
        }
        // Orderings compare text with an object's JSON text too: always checked.
        assert_eq!(
            where_sql(gt("meta.tier", "gold")).0,
            "(json_extract(\"meta\", ?) > ? AND json_type(\"meta\", ?) = 'text')"
        );
    }

    #[test]
    fn scenario_json_types() {
        assert_eq!(
            where_sql(gt("meta.a.b[2]", 5)),
            (
                "(json_extract(\"meta\", ?) > ? AND json_type(\"meta\", ?) IN ('integer', 'real'))"
                    .into(),
                vec![text("$.a.b[2]"), SqlValue::Integer(5), text("$.a.b[2]")]
            )
        );
        assert_eq!(
            where_sql(eq("meta.flags.hot", true)),
            (
                "(json_extract(\"meta\", ?) = ? AND json_type(\"meta\", ?) IN ('true', 'false'))"
                    .into(),
                vec![
                    text("$.flags.hot"),
                    SqlValue::Integer(1),
                    text("$.flags.hot")
                ]
            )
        );
    }

    #[test]
    fn scenario_eq_json_index() {
        assert_eq!(
            where_sql(eq("tags[0]", "a")),
            (
                "json_extract(\"tags\", ?) = ?".into(),
                vec![text("$[0]"), text("a")]
            )
        );
    }

    #[test]
    fn scenario_eq_json_null() {
        assert_eq!(
            where_sql(eq("meta.tier", ())),
            (
                "json_extract(\"meta\", ?) IS NULL".into(),
                vec![text("$.tier")]
            )
        );
    }

    #[test]
    fn scenario_eq_missing() {
        assert_eq!(
            where_sql(eq("nickname", "x")),
            ("NULL = ?".into(), vec![text("x")])
        );
        assert_eq!(
            where_sql(eq("nickname", ())),
            ("NULL IS NULL".into(), vec![])
        );
        // Steps into a scalar column reach nothing.
        assert_eq!(
            where_sql(eq("username.first", "x")),
            ("NULL = ?".into(), vec![text("x")])
        );
        assert_eq!(
            where_sql(like("nickname", "x%")),
            ("NULL LIKE ?".into(), vec![text("x%")])
        );
        assert_eq!(
            where_sql(in_list("nickname", ["x"])),
            ("NULL IN (?)".into(), vec![text("x")])
        );
    }

    #[test]
    fn scenario_not_missing() {
        assert_eq!(
            where_sql(not(eq("nickname", "x"))),
            ("((NULL = ?) IS NOT TRUE)".into(), vec![text("x")])
        );
    }

    #[test]
    fn scenario_and_or_not() {
        let f = and([
            eq("username", "fred"),
            or([gt("age", 1), lt("age", 0)]),
            not(eq("active", true)),
        ]);
        assert_eq!(
            where_sql(f),
            (
                "(\"username\" = ? AND (\"age\" > ? OR \"age\" < ?) AND ((\"active\" = ?) IS NOT TRUE))"
                    .into(),
                vec![
                    text("fred"),
                    SqlValue::Integer(1),
                    SqlValue::Integer(0),
                    SqlValue::Integer(1)
                ]
            )
        );
        // A single child needs no parentheses of its own.
        assert_eq!(
            where_sql(and([eq("age", 1)])),
            ("\"age\" = ?".into(), vec![SqlValue::Integer(1)])
        );
    }

    #[test]
    fn scenario_and_or_empty() {
        assert_eq!(where_sql(and([])), ("1 = 1".into(), vec![]));
        assert_eq!(where_sql(or([])), ("1 = 0".into(), vec![]));
        assert_eq!(
            where_sql(not(or([]))),
            ("((1 = 0) IS NOT TRUE)".into(), vec![])
        );
    }

    #[test]
    fn scenario_like() {
        assert_eq!(
            where_sql(like("username", "fr_d%")),
            ("\"username\" LIKE ?".into(), vec![text("fr_d%")])
        );
        assert_eq!(
            where_sql(like("meta.tier", "g%")),
            (
                "(json_extract(\"meta\", ?) LIKE ? AND json_type(\"meta\", ?) = 'text')".into(),
                vec![text("$.tier"), text("g%"), text("$.tier")]
            )
        );
    }

    #[test]
    fn scenario_in_list_column() {
        assert_eq!(
            where_sql(in_list(
                "age",
                [json!(1), json!(2), Value::Null, json!("3")]
            )),
            (
                "\"age\" IN (?, ?)".into(),
                vec![SqlValue::Integer(1), SqlValue::Integer(2)]
            )
        );
    }

    #[test]
    fn scenario_in_list_mixed_numbers() {
        // Integers and doubles in separate lists: one list compares by one type.
        assert_eq!(
            where_sql(in_list("age", [json!(1), json!(2.5), json!(2)])),
            (
                "(\"age\" IN (?, ?) OR \"age\" IN (?))".into(),
                vec![
                    SqlValue::Integer(1),
                    SqlValue::Integer(2),
                    SqlValue::Double(2.5)
                ]
            )
        );
    }

    #[test]
    fn scenario_in_list_empty() {
        let none: [i64; 0] = [];
        assert_eq!(where_sql(in_list("age", none)), ("1 = 0".into(), vec![]));
        assert_eq!(
            where_sql(in_list("age", [Value::Null])),
            ("1 = 0".into(), vec![])
        );
        assert_eq!(
            where_sql(in_list("meta.tier", none)),
            ("1 = 0".into(), vec![])
        );
        assert_eq!(
            where_sql(in_list("nickname", none)),
            ("1 = 0".into(), vec![])
        );
    }

    #[test]
    fn scenario_in_list_json_mixed() {
        let (sql, params) = where_sql(in_list(
            "meta.tier",
            [
                json!("gold"),
                json!(1),
                json!(true),
                Value::Null,
                json!("silver"),
            ],
        ));
        assert_eq!(
            sql,
            "((json_extract(\"meta\", ?) IN (?) AND json_type(\"meta\", ?) IN ('true', 'false')) \
             OR (json_extract(\"meta\", ?) IN (?) AND json_type(\"meta\", ?) IN ('integer', 'real')) \
             OR json_extract(\"meta\", ?) IN (?, ?))"
        );
        let p = text("$.tier");
        assert_eq!(
            params,
            vec![
                p.clone(),
                SqlValue::Integer(1),
                p.clone(),
                p.clone(),
                SqlValue::Integer(1),
                p.clone(),
                p.clone(),
                text("gold"),
                text("silver"),
            ]
        );
        // A text that could be an object's or an array's JSON text keeps the type check.
        let (sql, _) = where_sql(in_list("meta.tier", [json!("gold"), json!("[1]")]));
        assert_eq!(
            sql,
            "(json_extract(\"meta\", ?) IN (?, ?) AND json_type(\"meta\", ?) = 'text')"
        );
    }

    #[test]
    fn scenario_wildcard() {
        assert_eq!(
            where_sql(eq("addresses[*].city", "Paris")),
            (
                "EXISTS (SELECT 1 FROM json_each(\"addresses\") AS w1 WHERE typeof(w1.key) = 'integer' \
                 AND json_extract(\"addresses\", w1.fullkey || ?) = ?)"
                    .into(),
                vec![text(".city"), text("Paris")]
            )
        );
    }

    #[test]
    fn scenario_wildcard_under_key() {
        assert_eq!(
            where_sql(eq("meta.addresses[*].city", "Paris")),
            (
                "EXISTS (SELECT 1 FROM json_each(\"meta\", ?) AS w1 WHERE typeof(w1.key) = 'integer' \
                 AND json_extract(\"meta\", w1.fullkey || ?) = ?)"
                    .into(),
                vec![text("$.addresses"), text(".city"), text("Paris")]
            )
        );
    }

    #[test]
    fn scenario_wildcard_scalar_element() {
        assert_eq!(
            where_sql(eq("tags[*]", "a")),
            (
                "EXISTS (SELECT 1 FROM json_each(\"tags\") AS w1 WHERE typeof(w1.key) = 'integer' \
                 AND w1.value = ?)"
                    .into(),
                vec![text("a")]
            )
        );
        assert_eq!(
            where_sql(eq("tags[*]", ())),
            (
                "EXISTS (SELECT 1 FROM json_each(\"tags\") AS w1 WHERE typeof(w1.key) = 'integer' \
                 AND w1.value IS NULL)"
                    .into(),
                vec![]
            )
        );
    }

    #[test]
    fn scenario_nested_wildcard() {
        assert_eq!(
            where_sql(eq("meta.groups[*].members[*].name", "x")),
            (
                "EXISTS (SELECT 1 FROM json_each(\"meta\", ?) AS w1 WHERE typeof(w1.key) = 'integer' \
                 AND EXISTS (SELECT 1 FROM json_each(\"meta\", w1.fullkey || ?) AS w2 \
                 WHERE typeof(w2.key) = 'integer' \
                 AND json_extract(\"meta\", w2.fullkey || ?) = ?))"
                    .into(),
                vec![
                    text("$.groups"),
                    text(".members"),
                    text(".name"),
                    text("x")
                ]
            )
        );
        // Directly nested arrays: the inner array is the element itself.
        assert_eq!(
            where_sql(eq("tags[*][*]", 1)),
            (
                "EXISTS (SELECT 1 FROM json_each(\"tags\") AS w1 WHERE typeof(w1.key) = 'integer' \
                 AND EXISTS (SELECT 1 FROM json_each(\"tags\", w1.fullkey) AS w2 \
                 WHERE typeof(w2.key) = 'integer' \
                 AND (w2.value = ? AND w2.type IN ('integer', 'real'))))"
                    .into(),
                vec![SqlValue::Integer(1)]
            )
        );
    }

    #[test]
    fn scenario_wildcard_aliases_are_unique() {
        let (sql, _) = where_sql(or([eq("tags[*]", "a"), eq("addresses[*].city", "b")]));
        assert!(sql.contains("AS w1 ") && sql.contains("AS w2 "), "{sql}");
    }

    #[test]
    fn scenario_wildcard_missing() {
        assert_eq!(where_sql(eq("nothing[*].x", 1)), ("1 = 0".into(), vec![]));
        assert_eq!(where_sql(eq("username[*]", "x")), ("1 = 0".into(), vec![]));
        assert_eq!(
            where_sql(not(eq("nothing[*]", ()))),
            ("((1 = 0) IS NOT TRUE)".into(), vec![])
        );
    }

    #[test]
    fn scenario_sort_nulls() {
        let st = select(
            None,
            &[("age", SortOrder::Desc), ("meta.rank", SortOrder::Asc)],
            None,
        )
        .unwrap();
        assert_eq!(
            st.sql,
            format!(
                "SELECT * FROM \"{TABLE}\" ORDER BY \"age\" DESC NULLS FIRST, \
                 CASE json_type(\"meta\", ?) WHEN 'true' THEN 1 WHEN 'false' THEN 1 \
                 WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'text' THEN 3 \
                 WHEN 'array' THEN 4 WHEN 'object' THEN 4 END ASC NULLS LAST, \
                 json_extract(\"meta\", ?) ASC NULLS LAST, \"rnId\" ASC"
            )
        );
        assert_eq!(st.params, vec![text("$.rank"), text("$.rank")]);
    }

    #[test]
    fn scenario_sort_missing() {
        let st = select(
            None,
            &[
                ("nickname", SortOrder::Asc),
                ("username.x", SortOrder::Desc),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            st.sql,
            format!("SELECT * FROM \"{TABLE}\" ORDER BY \"rnId\" ASC")
        );
    }

    #[test]
    fn scenario_sort_wildcard_rejected() {
        let err = select(None, &[("addresses[*].city", SortOrder::Asc)], None).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidPath { reason, .. } if reason.contains("[*]")),
            "{err:?}"
        );
    }

    #[test]
    fn scenario_filter_sort_limit_param_order() {
        let st = select(
            Some(&eq("meta.tier", "gold")),
            &[("meta.rank", SortOrder::Desc)],
            Some(10),
        )
        .unwrap();
        assert!(st.sql.ends_with(" LIMIT 10"), "{}", st.sql);
        assert!(st.sql.contains(" WHERE json_extract"), "{}", st.sql);
        assert_eq!(
            st.params,
            vec![text("$.tier"), text("gold"), text("$.rank"), text("$.rank")]
        );
    }

    #[test]
    fn scenario_limit() {
        let st = select(None, &[], Some(0)).unwrap();
        assert_eq!(st.sql, format!("SELECT * FROM \"{TABLE}\" LIMIT 0"));
        let err = select(None, &[], Some(u64::MAX)).unwrap_err();
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

    #[test]
    fn scenario_hostile_value() {
        let hostile = "x' OR 1=1 --";
        assert_eq!(
            where_sql(eq("username", hostile)),
            ("\"username\" = ?".into(), vec![text(hostile)])
        );
        let (sql, params) = where_sql(like("meta.tier", "\"; DROP TABLE x; --"));
        assert!(!sql.contains("DROP"), "{sql}");
        assert_eq!(params[1], text("\"; DROP TABLE x; --"));
    }

    #[test]
    fn scenario_hostile_path() {
        for path in [
            "username\" OR 1=1 --",
            "meta.tier') OR 1=1 --",
            "meta[0] OR 1",
            "meta.$x",
            "tags[*]]",
            "a;DROP TABLE x",
        ] {
            let err = select(Some(&eq(path, "x")), &[], None).unwrap_err();
            assert!(matches!(err, Error::InvalidPath { .. }), "{path}: {err:?}");
            let err = select(None, &[(path, SortOrder::Asc)], None).unwrap_err();
            assert!(matches!(err, Error::InvalidPath { .. }), "{path}: {err:?}");
        }
    }

    #[test]
    fn scenario_hostile_table() {
        let mut s = schema();
        s.table = "__items__users__x\" WHERE 1=1 --".into();
        let err = SqliteDialect
            .render_select(&s, None, &[], None)
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidIdentifier { what: "table", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn scenario_encrypted_rejected() {
        for f in [eq("ssn", "x"), eq("ssn.v", "x"), not(in_list("ssn", ["x"]))] {
            let err = select(Some(&f), &[], None).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidFilter { reason, .. } if reason.contains("encrypted")),
                "{err:?}"
            );
        }
        let err = select(None, &[("ssn", SortOrder::Asc)], None).unwrap_err();
        assert!(matches!(err, Error::InvalidPath { .. }), "{err:?}");
    }

    #[test]
    fn scenario_reference_path_rejected() {
        let err = select(Some(&eq("owner.username", "fred")), &[], None).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidFilter { reason, .. } if reason.contains("reference")),
            "{err:?}"
        );
    }

    #[test]
    fn scenario_bad_values_rejected() {
        for f in [
            eq("meta.tier", json!({"a": 1})),
            eq("age", json!([1])),
            in_list("age", [json!(1), json!([2])]),
            gt("age", ()),
            lte("meta.x", Value::Null),
            eq("age", json!(u64::MAX)),
        ] {
            let err = select(Some(&f), &[], None).unwrap_err();
            assert!(matches!(err, Error::InvalidFilter { .. }), "{f:?}: {err:?}");
        }
    }

    // ---- behaviour against a real SQLite database

    mod behaviour {
        use super::*;
        use rusqlite::{Connection, params_from_iter, types::Value as Sql};

        /// rnId, username, age, score, active, tags, meta, addresses.
        type Row = (
            &'static str,
            Option<&'static str>,
            Option<i64>,
            Option<f64>,
            Option<bool>,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        );

        fn db() -> Connection {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch(&format!(
                "CREATE TABLE \"{TABLE}\" (\"rnId\" TEXT PRIMARY KEY, \"username\" TEXT, \
                 \"age\" INTEGER, \"score\" REAL, \"active\" BOOLEAN, \"tags\" JSON_TEXT, \
                 \"meta\" JSON_TEXT, \"addresses\" JSON_TEXT, \"owner\" RN_REF_TEXT, \
                 \"ssn\" ENCRYPTED_JSON);"
            ))
            .unwrap();
            let rows: &[Row] = &[
                (
                    "u1",
                    Some("fred"),
                    Some(41),
                    Some(1.5),
                    Some(true),
                    Some(r#"["a","b"]"#),
                    Some(
                        r#"{"tier":"gold","score":9,"flags":{"hot":true},"groups":[{"members":[{"name":"x"},{"name":"y"}]}]}"#,
                    ),
                    Some(r#"[{"city":"Paris"},{"city":"Rome"}]"#),
                ),
                (
                    "u2",
                    Some("wilma"),
                    Some(35),
                    Some(2.0),
                    Some(false),
                    Some(r#"["b",1,true,null,{"x":1},[1,2]]"#),
                    Some(r#"{"tier":"silver","score":"9","flags":{"hot":false}}"#),
                    Some(r#"[{"city":"Berlin"},"Paris",{"town":"Paris"}]"#),
                ),
                (
                    "u3",
                    Some("barney"),
                    None,
                    None,
                    None,
                    None,
                    Some(r#"{"tier":null}"#),
                    Some(r#"{"city":"Paris"}"#),
                ),
                (
                    "u4",
                    Some("Fred"),
                    Some(80),
                    Some(-1.0),
                    Some(true),
                    Some("[]"),
                    Some(r#"{"score":10.5,"groups":[{"members":[{"name":"z"}]},{"members":"x"}]}"#),
                    Some("[]"),
                ),
                (
                    "u5",
                    None,
                    Some(90),
                    Some(0.0),
                    Some(false),
                    Some(r#"["x' OR 1=1 --"]"#),
                    Some(r#"{"tier":"gold","score":1}"#),
                    None,
                ),
                (
                    "u6",
                    Some("x' OR 1=1 --"),
                    Some(20),
                    None,
                    None,
                    Some(r#"[[1,2],["a"]]"#),
                    Some(r#"{"tier":"GOLD","score":true}"#),
                    Some(r#"[{"city":"Paris","zip":[1,2]}]"#),
                ),
            ];
            for (id, username, age, score, active, tags, meta, addresses) in rows {
                conn.execute(
                    &format!(
                        "INSERT INTO \"{TABLE}\" (\"rnId\", \"username\", \"age\", \"score\", \
                         \"active\", \"tags\", \"meta\", \"addresses\") \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    ),
                    rusqlite::params![id, username, age, score, active, tags, meta, addresses],
                )
                .unwrap();
            }
            conn
        }

        fn to_sql(value: &SqlValue) -> Sql {
            match value {
                SqlValue::Null => Sql::Null,
                SqlValue::Integer(i) => Sql::Integer(*i),
                SqlValue::Double(f) => Sql::Real(*f),
                SqlValue::Boolean(b) => Sql::Integer(i64::from(*b)),
                SqlValue::Text(s) | SqlValue::Json(s) => Sql::Text(s.clone()),
            }
        }

        fn run(conn: &Connection, st: &Statement) -> Vec<String> {
            let mut stmt = conn
                .prepare(&st.sql)
                .unwrap_or_else(|e| panic!("{}: {e}", st.sql));
            stmt.query_map(params_from_iter(st.params.iter().map(to_sql)), |row| {
                row.get::<_, String>("rnId")
            })
            .unwrap_or_else(|e| panic!("{}: {e}", st.sql))
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap_or_else(|e| panic!("{}: {e}", st.sql))
        }

        fn matching(conn: &Connection, filter: Filter) -> Vec<String> {
            run(conn, &select(Some(&filter), &[], None).unwrap())
        }

        fn sorted(
            conn: &Connection,
            sort: &[(&str, SortOrder)],
            limit: Option<u64>,
        ) -> Vec<String> {
            run(conn, &select(None, sort, limit).unwrap())
        }

        #[track_caller]
        fn check(conn: &Connection, filter: Filter, expected: &[&str]) {
            let got = matching(conn, filter.clone());
            assert_eq!(got, expected, "{filter:?}");
        }

        const ALL: &[&str] = &["u1", "u2", "u3", "u4", "u5", "u6"];

        #[test]
        fn json_each_gives_what_the_dialect_relies_on() {
            let conn = db();
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

        #[test]
        fn comparisons_on_columns() {
            let conn = db();
            check(&conn, eq("username", "fred"), &["u1"]);
            check(&conn, gt("age", 40), &["u1", "u4", "u5"]);
            check(&conn, gte("age", 80), &["u4", "u5"]);
            check(&conn, lt("age", 40), &["u2", "u6"]);
            check(&conn, lte("age", 35), &["u2", "u6"]);
            check(&conn, gt("score", 1), &["u1", "u2"]);
            check(&conn, lt("score", 0.5), &["u4", "u5"]);
            check(&conn, gt("username", "w"), &["u2", "u6"]);
            check(&conn, eq("active", true), &["u1", "u4"]);
            check(&conn, eq("active", false), &["u2", "u5"]);
            check(&conn, eq("rnId", "u3"), &["u3"]);
        }

        #[test]
        fn different_types_never_match() {
            let conn = db();
            check(&conn, eq("age", "41"), &[]);
            check(&conn, eq("active", 1), &[]);
            check(&conn, gt("username", 0), &[]);
            check(&conn, eq("meta.score", "9"), &["u2"]);
            check(&conn, eq("meta.score", 9), &["u1"]);
            // The string "9" and the boolean true are not numbers above 5.
            check(&conn, gt("meta.score", 5), &["u1", "u4"]);
            check(&conn, eq("meta.score", true), &["u6"]);
            check(&conn, eq("meta.score", 1), &["u5"]);
            // An object is not a scalar.
            check(&conn, eq("meta.flags", "{\"hot\":true}"), &[]);
            check(&conn, like("meta.flags", "%hot%"), &[]);
        }

        #[test]
        fn nulls_and_missing_values() {
            let conn = db();
            check(&conn, eq("username", ()), &["u5"]);
            check(&conn, eq("nickname", ()), ALL);
            check(&conn, eq("nickname", "x"), &[]);
            check(&conn, eq("tags", ()), &["u3"]);
            // JSON null and a missing key are both null.
            check(&conn, eq("meta.tier", ()), &["u3", "u4"]);
            check(&conn, eq("username.first", ()), ALL);
        }

        #[test]
        fn not_keeps_missing_values() {
            let conn = db();
            check(&conn, not(eq("nickname", "x")), ALL);
            check(
                &conn,
                not(eq("username", "fred")),
                &["u2", "u3", "u4", "u5", "u6"],
            );
            check(&conn, not(gt("age", 40)), &["u2", "u3", "u6"]);
            check(
                &conn,
                not(eq("meta.tier", "gold")),
                &["u2", "u3", "u4", "u6"],
            );
            check(&conn, !!eq("meta.tier", "gold"), &["u1", "u5"]);
            check(
                &conn,
                not(in_list("age", [41, 35])),
                &["u3", "u4", "u5", "u6"],
            );
            check(&conn, not(and([])), &[]);
        }

        #[test]
        fn json_paths() {
            let conn = db();
            check(&conn, eq("meta.tier", "gold"), &["u1", "u5"]);
            check(&conn, eq("meta.flags.hot", true), &["u1"]);
            check(&conn, eq("meta.flags.hot", false), &["u2"]);
            check(&conn, eq("tags[0]", "a"), &["u1"]);
            check(&conn, eq("tags[1]", 1), &["u2"]);
            check(&conn, eq("tags[0][1]", 2), &["u6"]);
            check(&conn, eq("meta.groups[0].members[1].name", "y"), &["u1"]);
        }

        #[test]
        fn like_is_ascii_case_insensitive() {
            let conn = db();
            check(&conn, like("username", "fred"), &["u1", "u4"]);
            check(&conn, like("username", "%'%"), &["u6"]);
            check(&conn, like("username", "_ilma"), &["u2"]);
            check(&conn, like("meta.tier", "gold"), &["u1", "u5", "u6"]);
            check(&conn, like("age", "4%"), &[]);
        }

        #[test]
        fn in_lists() {
            let conn = db();
            check(&conn, in_list("age", [41, 90]), &["u1", "u5"]);
            check(
                &conn,
                in_list("age", [json!(41), json!("80"), Value::Null]),
                &["u1"],
            );
            let none: [&str; 0] = [];
            check(&conn, in_list("username", none), &[]);
            check(
                &conn,
                in_list("meta.tier", [json!("gold"), json!("silver"), Value::Null]),
                &["u1", "u2", "u5"],
            );
            check(
                &conn,
                in_list("meta.score", [json!(9), json!(true)]),
                &["u1", "u6"],
            );
        }

        #[test]
        fn wildcards_match_any_element() {
            let conn = db();
            // u2's scalar "Paris" and {"town": "Paris"} are no city; u3's object is no array.
            check(&conn, eq("addresses[*].city", "Paris"), &["u1", "u6"]);
            check(
                &conn,
                not(eq("addresses[*].city", "Paris")),
                &["u2", "u3", "u4", "u5"],
            );
            check(&conn, eq("tags[*]", "b"), &["u1", "u2"]);
            check(&conn, eq("tags[*]", 1), &["u2"]);
            check(&conn, eq("tags[*]", true), &["u2"]);
            check(&conn, eq("tags[*]", ()), &["u2"]);
            check(&conn, in_list("tags[*]", ["a", "zz"]), &["u1"]);
            check(&conn, like("tags[*]", "X'%"), &["u5"]);
            check(&conn, eq("tags[*]", "x' OR 1=1 --"), &["u5"]);
            check(&conn, gt("addresses[*].zip[1]", 1), &["u6"]);
            // u2's "Paris" and {"town": ...} elements have no city.
            check(&conn, eq("addresses[*].city", ()), &["u2"]);
        }

        #[test]
        fn nested_wildcards() {
            let conn = db();
            check(&conn, eq("meta.groups[*].members[*].name", "x"), &["u1"]);
            check(&conn, eq("meta.groups[*].members[*].name", "z"), &["u4"]);
            check(&conn, eq("tags[*][*]", 2), &["u2", "u6"]);
            check(&conn, eq("tags[*][*]", "a"), &["u6"]);
            check(&conn, eq("tags[1][*]", "a"), &["u6"]);
        }

        #[test]
        fn combined_filters() {
            let conn = db();
            check(
                &conn,
                and([eq("meta.tier", "gold"), gt("age", 80)]),
                &["u5"],
            );
            check(
                &conn,
                eq("username", "wilma").or(eq("addresses[*].city", "Rome")),
                &["u1", "u2"],
            );
            check(&conn, and([]), ALL);
            check(&conn, or([]), &[]);
        }

        #[test]
        fn hostile_values_are_literal() {
            let conn = db();
            check(&conn, eq("username", "x' OR 1=1 --"), &["u6"]);
            check(&conn, eq("username", "' OR '1'='1"), &[]);
            check(&conn, eq("meta.tier", "gold' OR 1=1 --"), &[]);
            check(&conn, like("username", "%\" OR 1=1 --"), &[]);
            let count: i64 = conn
                .query_row(&format!("SELECT count(*) FROM \"{TABLE}\""), [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(count, 6);
        }

        #[test]
        fn sort_puts_nulls_last_ascending_and_first_descending() {
            let conn = db();
            let asc = [("age", SortOrder::Asc)];
            assert_eq!(
                sorted(&conn, &asc, None),
                ["u6", "u2", "u1", "u4", "u5", "u3"]
            );
            let desc = [("age", SortOrder::Desc)];
            assert_eq!(
                sorted(&conn, &desc, None),
                ["u3", "u5", "u4", "u1", "u2", "u6"]
            );
            // Text sorts byte by byte; the NULL username is last.
            let by_name = [("username", SortOrder::Asc)];
            assert_eq!(
                sorted(&conn, &by_name, None),
                ["u4", "u3", "u1", "u2", "u6", "u5"]
            );
        }

        #[test]
        fn sort_json_path_orders_types_then_values() {
            let conn = db();
            // true (boolean), 1, 9, 10.5 (numbers), "9" (text), missing.
            let asc = [("meta.score", SortOrder::Asc)];
            assert_eq!(
                sorted(&conn, &asc, None),
                ["u6", "u5", "u1", "u4", "u2", "u3"]
            );
            let desc = [("meta.score", SortOrder::Desc)];
            assert_eq!(
                sorted(&conn, &desc, None),
                ["u3", "u2", "u4", "u1", "u5", "u6"]
            );
        }

        #[test]
        fn sort_ties_and_missing_fall_back_to_rn_id() {
            let conn = db();
            assert_eq!(sorted(&conn, &[("nickname", SortOrder::Desc)], None), ALL);
            assert_eq!(sorted(&conn, &[], None), ALL);
            let by_active = [("active", SortOrder::Desc), ("age", SortOrder::Asc)];
            assert_eq!(
                sorted(&conn, &by_active, None),
                ["u6", "u3", "u1", "u4", "u2", "u5"]
            );
        }

        #[test]
        fn limit_applies_after_sort_and_filter() {
            let conn = db();
            assert_eq!(
                sorted(&conn, &[("age", SortOrder::Asc)], Some(2)),
                ["u6", "u2"]
            );
            assert!(sorted(&conn, &[], Some(0)).is_empty());
            let st = select(
                Some(&gt("age", 30)),
                &[("meta.score", SortOrder::Desc)],
                Some(2),
            )
            .unwrap();
            // "9" is text, which sorts after every number.
            assert_eq!(run(&conn, &st), ["u2", "u4"]);
        }
    }
}
