//! The PostgreSQL dialect: `$n` placeholders, double-quoted identifiers, jsonb operators
//! (`->`, `->>`, `jsonb_typeof`, `jsonb_array_elements`) with every key and index bound.
//!
//! PostgreSQL differs from SQLite in three ways the rendering must absorb:
//! - **Casts can fail.** `('"x"'::jsonb)::numeric` is an error, not a NULL, and PostgreSQL does
//!   not promise to evaluate `AND` left to right (the planner orders top-level conditions by
//!   cost). So every cast sits inside `CASE WHEN jsonb_typeof(v) = 'number' THEN ... END`,
//!   which never fails whatever the order, and `jsonb_array_elements` only ever sees an array
//!   (`CASE WHEN jsonb_typeof(v) = 'array' THEN v END`; NULL gives no rows). The type guards
//!   still come first ([`Dialect::guard_first`]).
//! - **Text order follows the collation.** SQLite compares text byte by byte; here ordering
//!   comparisons and sort keys on text say `COLLATE "C"` (byte order in UTF-8).
//! - **`LIKE` is case-sensitive and `ILIKE` folds every letter.** korm's `like` folds ASCII
//!   letters only (SQLite's `LIKE`), so both sides go through
//!   `translate(.., 'AB..Z', 'ab..z')`, which folds exactly A-Z, and `ESCAPE ''` turns off
//!   PostgreSQL's default `\` escape.

use super::dialect::{Dialect, JsonLocation, JsonType, RenderState, SQL_TRUE};
use super::filter::{CompareOp, SortOrder};
use super::path::PathStep;
use crate::model::SqlValue;

/// ASCII upper-case letters, folded by `translate` for `like`.
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Their lower-case counterparts.
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";

/// PostgreSQL (11+ for the jsonb casts; korm is tested on 15).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PgDialect;

impl PgDialect {
    /// The jsonb value at `loc`: the column (or the array element `alias.value`), then one
    /// `-> $n` per step, keys bound as text and indexes as integers. `->` never fails: a key
    /// of a non-object, an index of a non-array or past the end gives SQL NULL.
    fn jsonb(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        let mut sql = self.base(loc);
        for step in loc.steps {
            sql.push_str(" -> ");
            sql.push_str(&self.step(st, step));
        }
        sql
    }

    /// The JSON value at `loc` as text (strings unquoted, JSON null as SQL NULL): like
    /// [`PgDialect::jsonb`] with `->>` for the last step, or `#>> '{}'` on an element itself.
    fn text(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        let mut sql = self.base(loc);
        match loc.steps.split_last() {
            None => sql.push_str(" #>> '{}'"),
            Some((last, init)) => {
                for step in init {
                    sql.push_str(" -> ");
                    sql.push_str(&self.step(st, step));
                }
                sql.push_str(" ->> ");
                sql.push_str(&self.step(st, last));
            }
        }
        format!("({sql})")
    }

    fn base(&self, loc: &JsonLocation<'_>) -> String {
        match loc.element {
            Some(alias) => format!("{alias}.value"),
            None => self.quote_identifier(loc.column),
        }
    }

    /// One bound step. An index is bound as an integer and cast to `int` (the type of
    /// `jsonb -> int`; a bound 64-bit integer would find no operator).
    fn step(&self, st: &mut RenderState, step: &PathStep) -> String {
        match step {
            PathStep::Key(key) => self.bind(st, SqlValue::Text(key.clone())),
            PathStep::Index(index) => {
                // The parser allows at most 9 digits, well inside i64 (and int).
                let p = self.bind(st, SqlValue::Integer(*index as i64));
                format!("{p}::int")
            }
            // Wildcards never reach a location (they split it into array iterations).
            PathStep::Wildcard => "NULL".to_owned(),
        }
    }

    /// `CASE WHEN jsonb_typeof(v) = '<name>' THEN (v)::<cast> END`: a cast that can not fail.
    fn cast_if(&self, st: &mut RenderState, loc: &JsonLocation<'_>, name: &str, cast: &str) -> String {
        let guard = self.jsonb(st, loc);
        let value = self.jsonb(st, loc);
        format!("CASE WHEN jsonb_typeof({guard}) = '{name}' THEN ({value})::{cast} END")
    }
}

impl Dialect for PgDialect {
    fn placeholder(&self, n: usize) -> String {
        format!("${n}")
    }

    // quote_identifier: the default ANSI double quotes are PostgreSQL's own.
    // boolean: the default binds a real boolean, which BOOLEAN columns and casts compare with.

    /// The value as text (`->>`): what `IS NULL` tests and what text comparisons use.
    fn json_extract(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        self.text(st, loc)
    }

    fn json_extract_as(&self, st: &mut RenderState, loc: &JsonLocation<'_>, ty: JsonType) -> String {
        match ty {
            JsonType::Text => {
                let text = self.text(st, loc);
                format!("{text} COLLATE \"C\"")
            }
            JsonType::Number => self.cast_if(st, loc, "number", "numeric"),
            JsonType::Boolean => self.cast_if(st, loc, "boolean", "boolean"),
            // Filters never compare a container; text keeps it harmless if one asks.
            JsonType::Container => self.text(st, loc),
        }
    }

    fn json_type(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        let value = self.jsonb(st, loc);
        format!("jsonb_typeof({value})")
    }

    fn json_type_names(&self, ty: JsonType) -> &'static [&'static str] {
        match ty {
            JsonType::Boolean => &["boolean"],
            JsonType::Number => &["number"],
            JsonType::Text => &["string"],
            JsonType::Container => &["array", "object"],
        }
    }

    // json_is_null: the default fits, `->>` and `#>> '{}'` give SQL NULL for JSON null and
    // for a missing key or index.

    fn json_array_elements(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        alias: &str,
    ) -> (String, String) {
        // jsonb_array_elements fails on an object or a scalar: it only ever sees an array,
        // or NULL (no rows), so the rows are array elements by construction.
        let guard = self.jsonb(st, loc);
        let value = self.jsonb(st, loc);
        (
            format!(
                "jsonb_array_elements(CASE WHEN jsonb_typeof({guard}) = 'array' THEN {value} END) AS {alias}"
            ),
            SQL_TRUE.to_owned(),
        )
    }

    fn like(&self, operand: &str, pattern: &str) -> String {
        format!(
            "translate({operand}, '{UPPER}', '{LOWER}') LIKE translate({pattern}, '{UPPER}', '{LOWER}') ESCAPE ''"
        )
    }

    // order_term: the default `NULLS LAST`/`NULLS FIRST` is PostgreSQL's own.
    // limit: the default literal `LIMIT n`.

    fn compare_column(&self, column: &str, op: CompareOp, param: &str, ty: JsonType) -> String {
        if ty == JsonType::Text && op != CompareOp::Eq {
            format!("{column} COLLATE \"C\" {} {param}", op.sql())
        } else {
            format!("{column} {} {param}", op.sql())
        }
    }

    fn sort_column(&self, name: &str, ty: JsonType, order: SortOrder) -> String {
        let column = self.quote_identifier(name);
        if ty == JsonType::Text {
            self.order_term(&format!("{column} COLLATE \"C\""), order)
        } else {
            self.order_term(&column, order)
        }
    }

    /// Type rank, then text byte by byte (NULL for other types), then the jsonb value itself,
    /// which orders numbers by value and `false` before `true` (strings are already ordered
    /// by the term before, and containers come last by rank).
    fn json_sort_terms(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        order: SortOrder,
    ) -> Vec<String> {
        let rank = self.json_type_rank(st, loc);
        let guard = self.jsonb(st, loc);
        let text = self.text(st, loc);
        let text = format!("(CASE WHEN jsonb_typeof({guard}) = 'string' THEN {text} END) COLLATE \"C\"");
        let value = format!("({})", self.jsonb(st, loc));
        vec![
            self.order_term(&rank, order),
            self.order_term(&text, order),
            self.order_term(&value, order),
        ]
    }
}
