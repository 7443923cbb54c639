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

use std::borrow::Cow;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::layer::LayerOp;
use crate::layer::schema::{IdentifierLimit, TableSchema};
use crate::model::{ColumnKind, SqlValue};
use crate::query::dialect::{
    Dialect, JsonLocation, JsonType, ListKind, RenderState, SQL_TRUE, Scalar,
};
use crate::query::filter::{CompareOp, Filter, FilterNode, SortOrder};
use crate::query::path::PathStep;

/// ASCII upper-case letters, folded by `translate` for `like`.
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Their lower-case counterparts.
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";

/// PostgreSQL (11+ for the jsonb casts; korm is tested on 15).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PgDialect {
    /// Whether new integer columns are `bigint` (korm 1.5's are `integer`).
    pub(crate) wide_integers: bool,
}

/// The domain marking RN columns.
const RN_DOMAIN: &str = "korm_rn_ref_text";
/// The domain marking encrypted columns.
const ENCRYPTED_DOMAIN: &str = "korm_encrypted_json";

/// The column kind of a PostgreSQL type (`typname`, and for a domain its base type):
/// korm's domains by name, other types by what they hold.
pub(super) fn kind_of_type(name: &str, base: &str) -> ColumnKind {
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

/// PostgreSQL cuts longer names to this many bytes.
pub(super) const MAX_IDENTIFIER: usize = 63;

/// Whether a value (or a string inside it) holds the NUL character.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// A filter without the values holding NUL, which no PostgreSQL text holds (korm refuses
/// them in writes) and no parameter can carry: an `eq` or `like` on such a value matches
/// nothing, an `in_list` drops it; an order comparison with one is
/// [`Error::InvalidFilter`] (its answer would depend on the collation). `None`: nothing to
/// change.
pub(super) fn without_nul(filter: &Filter) -> Result<Option<Filter>> {
    if !filter_holds_nul(filter) {
        return Ok(None);
    }
    fn rewrite(filter: &Filter) -> Result<Filter> {
        let nothing = || Filter(FilterNode::Or(Vec::new()));
        Ok(match &filter.0 {
            FilterNode::Compare { path, op, value } if holds_nul(value) => match op {
                CompareOp::Eq => nothing(),
                _ => {
                    return Err(Error::InvalidFilter {
                        path: path.clone(),
                        reason: "PostgreSQL text can not hold the NUL character (\\0), so an \
                                 order comparison with a value holding one is refused"
                            .to_owned(),
                    });
                }
            },
            FilterNode::Like { pattern, .. } if pattern.contains('\0') => nothing(),
            FilterNode::InList { path, values } => Filter(FilterNode::InList {
                path: path.clone(),
                values: values.iter().filter(|v| !holds_nul(v)).cloned().collect(),
            }),
            FilterNode::And(children) => Filter(FilterNode::And(
                children.iter().map(rewrite).collect::<Result<_>>()?,
            )),
            FilterNode::Or(children) => Filter(FilterNode::Or(
                children.iter().map(rewrite).collect::<Result<_>>()?,
            )),
            FilterNode::Not(inner) => Filter(FilterNode::Not(Box::new(rewrite(inner)?))),
            FilterNode::RefSemi {
                column,
                prefixes,
                target,
                filter,
            } => Filter(FilterNode::RefSemi {
                column: column.clone(),
                prefixes: prefixes.clone(),
                target: target.clone(),
                filter: Box::new(rewrite(filter)?),
            }),
            _ => filter.clone(),
        })
    }
    rewrite(filter).map(Some)
}

fn filter_holds_nul(filter: &Filter) -> bool {
    match &filter.0 {
        FilterNode::Compare { value, .. } => holds_nul(value),
        FilterNode::Like { pattern, .. } => pattern.contains('\0'),
        FilterNode::InList { values, .. } => values.iter().any(holds_nul),
        FilterNode::And(children) | FilterNode::Or(children) => {
            children.iter().any(filter_holds_nul)
        }
        FilterNode::Not(inner) => filter_holds_nul(inner),
        FilterNode::RefSemi { filter, .. } => filter_holds_nul(filter),
        FilterNode::RefIn { .. } => false,
    }
}

impl PgDialect {
    /// The jsonb value at `loc`: the column (or the array element `alias.value`), then one
    /// `-> $n` per step, keys bound as text and indexes as integers. `->` never fails: a key
    /// of a non-object, an index of a non-array or past the end gives SQL NULL.
    fn jsonb(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        let mut sql = self.base(loc);
        for step in loc.steps {
            sql = self.arrow(st, sql, "->", step);
        }
        sql
    }

    /// `sql -> step` (or `->>`). `jsonb -> 0` reads a scalar as a one-element array and gives
    /// the scalar itself, so a `[0]` step applies only to an array: `CASE WHEN
    /// jsonb_typeof(sql) = 'array' THEN sql END -> 0`. Repeating `sql` repeats its `$n`
    /// placeholders, which PostgreSQL allows (no value is bound twice). Other indexes of a
    /// scalar, and keys of a non-object, already give NULL.
    fn arrow(&self, st: &mut RenderState, sql: String, arrow: &str, step: &PathStep) -> String {
        let target = if matches!(step, PathStep::Index(0)) {
            format!("(CASE WHEN jsonb_typeof({sql}) = 'array' THEN {sql} END)")
        } else {
            sql
        };
        format!("{target} {arrow} {}", self.step(st, step))
    }

    /// The JSON value at `loc` as text (strings unquoted, JSON null as SQL NULL): like
    /// [`PgDialect::jsonb`] with `->>` for the last step, or `#>> '{}'` on an element itself.
    fn text(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        let mut sql = self.base(loc);
        match loc.steps.split_last() {
            None => sql.push_str(" #>> '{}'"),
            Some((last, init)) => {
                for step in init {
                    sql = self.arrow(st, sql, "->", step);
                }
                sql = self.arrow(st, sql, "->>", last);
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
        if st.literal {
            // A declared index's expression: literal steps (validated keys, integer indexes).
            return match step {
                PathStep::Key(key) => format!("'{key}'"),
                PathStep::Index(index) => index.to_string(),
                PathStep::Wildcard => "NULL".to_owned(),
            };
        }
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
    fn cast_if(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        name: &str,
        cast: &str,
    ) -> String {
        let guard = self.jsonb(st, loc);
        let value = self.jsonb(st, loc);
        format!("CASE WHEN jsonb_typeof({guard}) = '{name}' THEN ({value})::{cast} END")
    }
}

impl Dialect for PgDialect {
    fn placeholder(&self, n: usize) -> Cow<'static, str> {
        Cow::Owned(format!("${n}"))
    }

    fn json_text_array(&self, param: &str) -> String {
        format!("SELECT jsonb_array_elements_text(CAST({param} AS jsonb))")
    }

    fn json_scalar_array(&self, param: &str, kind: ListKind) -> String {
        let cast = match kind {
            ListKind::Text => "",
            ListKind::Integer => "::int8",
            ListKind::Double => "::float8",
            ListKind::Boolean => "::bool",
        };
        format!("SELECT value{cast} FROM jsonb_array_elements_text(CAST({param} AS jsonb))")
    }

    /// A long list (a subquery over the JSON array parameter) becomes `= ANY(ARRAY(...))`:
    /// the array is computed once, and an index on the operand serves it as one scan.
    fn in_list_sql(&self, operand: &str, list: &str) -> String {
        if list.starts_with("SELECT ") {
            format!("{operand} = ANY(ARRAY({list}))")
        } else {
            format!("{operand} IN ({list})")
        }
    }

    fn rn_prefix(&self, column: &str) -> String {
        format!("left({column}, -36)")
    }

    fn rn_id(&self, column: &str) -> String {
        format!("right({column}, 36)")
    }

    /// A name over 63 bytes is cut to 63, as the server cuts every identifier (and so the
    /// table korm 1.5 made for the collection has that name). The layer records the full
    /// name in the table's comment to refuse a second collection of the same cut name.
    fn physical_table<'t>(&self, table: &'t str) -> Cow<'t, str> {
        // Table names are ASCII (validated), so any byte is a character boundary.
        Cow::Borrowed(table.get(..MAX_IDENTIFIER).unwrap_or(table))
    }

    // quote_identifier: the default ANSI double quotes are PostgreSQL's own.
    // boolean: the default binds a real boolean, which BOOLEAN columns and casts compare with.

    /// A filter value's placeholder names its type (`$2::float8`), as a write's does
    /// ([`Dialect::bind_write`]): sqlx caches a prepared statement by its SQL text, with the
    /// parameter types of its first use, so without the cast `"x" > $1` prepared for an
    /// integer would read a later double's bits as an integer, and a boolean's or a text's
    /// bytes as a broken message (the connection is dropped). With it, each type of value
    /// makes its own SQL text, hence its own statement.
    fn bind_scalar(&self, st: &mut RenderState, value: &Scalar) -> String {
        let (value, cast) = match value {
            Scalar::Text(s) => (SqlValue::Text(s.clone()), "text"),
            Scalar::Integer(i) => (SqlValue::Integer(*i), "int8"),
            Scalar::Double(f) => (SqlValue::Double(*f), "float8"),
            Scalar::Boolean(b) => (self.boolean(*b), "bool"),
        };
        let p = self.bind(st, value);
        format!("{p}::{cast}")
    }

    /// The value as text (`->>`): what `IS NULL` tests and what text comparisons use.
    fn json_extract(&self, st: &mut RenderState, loc: &JsonLocation<'_>) -> String {
        self.text(st, loc)
    }

    fn json_extract_as(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        ty: JsonType,
    ) -> String {
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

    /// A write's placeholder names its value's type (`$3::int8`), so a cached prepared
    /// statement is never reused with a value of another type (after a destructive column
    /// recreation the same `INSERT` would otherwise send text where the server expects a
    /// bigint). NULL is written as a literal: it fits any column and binds nothing.
    fn null_safe_eq(&self) -> &'static str {
        " IS NOT DISTINCT FROM "
    }

    // bind_expected: the default (bind_write's cast) fits: jsonb compares by value, text
    // byte by byte in a deterministic collation.

    fn bind_write(&self, st: &mut RenderState, value: SqlValue) -> String {
        let cast = match &value {
            SqlValue::Null => return "NULL".to_owned(),
            SqlValue::Integer(_) => "int8",
            SqlValue::Double(_) => "float8",
            SqlValue::Boolean(_) => "bool",
            SqlValue::Text(_) => "text",
            SqlValue::Json(_) => "jsonb",
        };
        let p = self.bind(st, value);
        format!("{p}::{cast}")
    }

    /// korm 1.5's types: `integer` for whole numbers (korm 1.5 refuses a `bigint` column it
    /// did not make), `bigint` only when the layer asks for wide integers; RN and encrypted
    /// columns are marked by korm 1.5's domains.
    fn column_type(&self, kind: ColumnKind, _column: &str) -> String {
        match kind {
            ColumnKind::Text => "text",
            ColumnKind::Integer if self.wide_integers => "bigint",
            ColumnKind::Integer => "integer",
            ColumnKind::Double => "double precision",
            ColumnKind::Boolean => "boolean",
            ColumnKind::Json => "jsonb",
            ColumnKind::RnRef => "public.korm_rn_ref_text",
            ColumnKind::Encrypted => "public.korm_encrypted_json",
        }
        .to_owned()
    }

    fn id_column(&self) -> String {
        "\"rnId\" text PRIMARY KEY".to_owned()
    }

    /// Text and JSON can not hold the NUL character on PostgreSQL (`text` ends at it, `jsonb`
    /// refuses `\u0000`): a clear error naming the field, not the server's.
    fn check_row(&self, op: &LayerOp, schema: &TableSchema) -> Result<()> {
        schema.check_integers(&op.rn, &op.fields)?;
        match op.fields.iter().find(|f| holds_nul(&f.value)) {
            Some(field) => Err(Error::Encode {
                what: format!("field `{}` of {}", field.name, op.rn),
                reason: "PostgreSQL can not store the NUL character (\\0) in text or JSON"
                    .to_owned(),
            }),
            None => Ok(()),
        }
    }

    fn identifier_limit(&self) -> IdentifierLimit {
        IdentifierLimit {
            max: MAX_IDENTIFIER,
            database: "PostgreSQL",
        }
    }

    fn shadow_type(&self) -> &'static str {
        "text"
    }

    fn add_column(&self) -> &'static str {
        "ADD COLUMN IF NOT EXISTS"
    }

    // table_options and the unique index statements: the defaults are PostgreSQL's.

    // order_term: the default `NULLS LAST`/`NULLS FIRST` is PostgreSQL's own.
    // limit: the default literal `LIMIT n`.

    /// The item id is the exception: `"rnId"` compares in the column's own collation, as
    /// the primary key's index and the `ORDER BY "rnId"` tiebreak do, so a keyset page
    /// (`"rnId" > $1 ORDER BY "rnId"`) walks the index. Ids are UUID texts (hex digits and
    /// dashes at fixed places), which every collation orders as bytes.
    fn compare_column(&self, column: &str, op: CompareOp, param: &str, ty: JsonType) -> String {
        if ty == JsonType::Text && op != CompareOp::Eq && column != "\"rnId\"" {
            format!("{column} COLLATE \"C\" {} {param}", op.sql())
        } else {
            format!("{column} {} {param}", op.sql())
        }
    }

    /// Text sorts byte by byte, except the item id: it sorts in its column's collation, as
    /// its keyset condition compares it (`compare_column`), or a page after an id of another
    /// case would skip items.
    fn sort_column(&self, name: &str, ty: JsonType, order: SortOrder) -> String {
        let column = self.quote_identifier(name);
        if ty == JsonType::Text && name != "rnId" {
            self.order_term(&format!("{column} COLLATE \"C\""), order)
        } else {
            self.order_term(&column, order)
        }
    }

    /// Type rank, then text byte by byte (NULL for other types), then the jsonb value itself,
    /// which orders numbers by value and `false` before `true` (strings are already ordered
    /// by the term before, and containers come last by rank). A JSON null is a jsonb value,
    /// not SQL NULL: `NULLIF` makes it one, so it ties with a missing value (both sort as
    /// null, then by id) instead of sorting before every missing one.
    fn json_sort_terms(
        &self,
        st: &mut RenderState,
        loc: &JsonLocation<'_>,
        order: SortOrder,
    ) -> Vec<String> {
        let rank = self.json_type_rank(st, loc);
        let guard = self.jsonb(st, loc);
        let text = self.text(st, loc);
        let text =
            format!("(CASE WHEN jsonb_typeof({guard}) = 'string' THEN {text} END) COLLATE \"C\"");
        let value = format!("NULLIF({}, 'null'::jsonb)", self.jsonb(st, loc));
        vec![
            self.order_term(&rank, order),
            self.order_term(&text, order),
            self.order_term(&value, order),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::dialect::testing::{TABLE, text};

    crate::where_scenarios! {
        PgDialect::default();
        scenario_compare_operators {
            "\"age\" > $1::int8", SqlValue::Integer(1);
            "\"age\" >= $1::int8", SqlValue::Integer(1);
            "\"age\" < $1::int8", SqlValue::Integer(1);
            "\"age\" <= $1::int8", SqlValue::Integer(1);
            "\"score\" > $1::float8", SqlValue::Double(1.5);
            "\"score\" > $1::int8", SqlValue::Integer(1);
            // Text orders byte by byte whatever the database collation.
            "\"username\" COLLATE \"C\" > $1::text", text("w");
        }
        scenario_and_or_not {
            "(\"username\" = $1::text AND (\"age\" > $2::int8 OR \"age\" < $3::int8) \
                    AND ((\"active\" = $4::bool) IS NOT TRUE))",
                text("fred"), SqlValue::Integer(1), SqlValue::Integer(0), SqlValue::Boolean(true);
            "\"age\" = $1::int8", SqlValue::Integer(1);
        }
        scenario_eq_column {
            "\"username\" = $1::text", text("fred");
        }
        scenario_eq_bool_column {
            "\"active\" = $1::bool", SqlValue::Boolean(true);
            "\"active\" = $1::bool", SqlValue::Boolean(false);
        }
        scenario_eq_null_column {
            "\"username\" IS NULL";
            "\"tags\" IS NULL";
        }
        scenario_eq_rn_id {
            "\"rnId\" = $1::text", text("u1");
        }
        scenario_eq_reference_column {
            "\"owner\" = $1::text",
                text("[rn]:users:freetier:x");
        }
        scenario_eq_json_path {
            "(jsonb_typeof(\"meta\" -> $1) = 'string' AND (\"meta\" ->> $2) COLLATE \"C\" = $3::text)",
                text("tier"), text("tier"), text("gold");
            "(jsonb_typeof(\"meta\" -> $1) = 'string' AND (\"meta\" ->> $2) COLLATE \"C\" = $3::text)",
            text("tier"), text("tier"), text("[gold]");
            "(jsonb_typeof(\"meta\" -> $1) = 'string' AND (\"meta\" ->> $2) COLLATE \"C\" = $3::text)",
            text("tier"), text("tier"), text("{\"a\":1}");
            "(jsonb_typeof(\"meta\" -> $1) = 'string' AND (\"meta\" ->> $2) COLLATE \"C\" > $3::text)",
            text("tier"), text("tier"), text("gold");
        }
        scenario_json_types {
            "(jsonb_typeof(\"meta\" -> $1 -> $2 -> $3::int) = 'number' AND \
                 CASE WHEN jsonb_typeof(\"meta\" -> $4 -> $5 -> $6::int) = 'number' \
                 THEN (\"meta\" -> $7 -> $8 -> $9::int)::numeric END > $10::int8)",
                text("a"), text("b"), SqlValue::Integer(2), text("a"), text("b"), SqlValue::Integer(2),
                text("a"), text("b"), SqlValue::Integer(2), SqlValue::Integer(5);
            "(jsonb_typeof(\"meta\" -> $1 -> $2) = 'boolean' AND \
                 CASE WHEN jsonb_typeof(\"meta\" -> $3 -> $4) = 'boolean' \
                 THEN (\"meta\" -> $5 -> $6)::boolean END = $7::bool)",
                text("flags"), text("hot"), text("flags"), text("hot"), text("flags"), text("hot"),
                SqlValue::Boolean(true);
        }
        scenario_eq_json_index {
            "(jsonb_typeof((CASE WHEN jsonb_typeof(\"tags\") = 'array' THEN \"tags\" END) -> $1::int) = 'string' \
                 AND ((CASE WHEN jsonb_typeof(\"tags\") = 'array' THEN \"tags\" END) ->> $2::int) COLLATE \"C\" = $3::text)",
                SqlValue::Integer(0), SqlValue::Integer(0), text("a");
        }
        scenario_eq_json_null {
            "(\"meta\" ->> $1) IS NULL", text("tier");
        }
        scenario_eq_missing {
            "NULL = $1::text", text("x");
            "NULL IS NULL";
            "NULL = $1::text", text("x");
            format!("translate(NULL, {FOLD}) LIKE translate($1, {FOLD}) ESCAPE ''"),
                text("x%");
            "NULL";
        }
        scenario_not_missing {
            "((NULL = $1::text) IS NOT TRUE)", text("x");
        }
        scenario_like {
            format!("translate(\"username\", {FOLD}) LIKE translate($1, {FOLD}) ESCAPE ''"),
                text("fr_d%");
            format!(
                    "(jsonb_typeof(\"meta\" -> $1) = 'string' AND translate((\"meta\" ->> $2) COLLATE \"C\", {FOLD}) \
                     LIKE translate($3, {FOLD}) ESCAPE '')"
                ),
                text("tier"), text("tier"), text("g%");
        }
        scenario_in_list_column {
            // A null in the list finds nulls (korm 1.5's in_list).
            "(\"age\" IS NULL OR \"age\" IN ($1::int8, $2::int8))",
                SqlValue::Integer(1), SqlValue::Integer(2);
            "\"age\" IN ($1::int8, $2::int8)",
                SqlValue::Integer(1), SqlValue::Integer(2);
        }
        scenario_in_list_mixed_numbers {
            // Integers and doubles in separate lists: one list compares by one type.
            "(\"age\" IN ($1::int8, $2::int8) OR \"age\" IN ($3::float8))",
                SqlValue::Integer(1), SqlValue::Integer(2), SqlValue::Double(2.5);
        }
        scenario_in_list_json_mixed {
            "((\"meta\" ->> $1) IS NULL OR ((jsonb_typeof(\"meta\" -> $2) = 'boolean' AND CASE WHEN jsonb_typeof(\"meta\" -> $3) = 'boolean' \
                    THEN (\"meta\" -> $4)::boolean END IN ($5::bool)) \
                    OR (jsonb_typeof(\"meta\" -> $6) = 'number' AND CASE WHEN jsonb_typeof(\"meta\" -> $7) = 'number' \
                    THEN (\"meta\" -> $8)::numeric END IN ($9::int8)) \
                    OR (jsonb_typeof(\"meta\" -> $10) = 'string' AND (\"meta\" ->> $11) COLLATE \"C\" IN ($12::text, $13::text))))",
                text("tier"), text("tier"), text("tier"), text("tier"), SqlValue::Boolean(true),
                text("tier"), text("tier"), text("tier"), SqlValue::Integer(1), text("tier"),
                text("tier"), text("gold"), text("silver");
            "(jsonb_typeof(\"meta\" -> $1) = 'string' AND (\"meta\" ->> $2) COLLATE \"C\" IN ($3::text, $4::text))",
            text("tier"), text("tier"), text("gold"), text("[1]");
        }
        scenario_wildcard {
            format!(
                    "EXISTS (SELECT 1 FROM {ADDRESSES} WHERE 1 = 1 AND (jsonb_typeof(w1.value -> $1) = 'string' \
                     AND (w1.value ->> $2) COLLATE \"C\" = $3::text))"
                ),
                text("city"), text("city"), text("Paris");
        }
        scenario_wildcard_under_key {
            "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(\"meta\" -> $1) = 'array' \
                 THEN \"meta\" -> $2 END) AS w1 WHERE 1 = 1 AND (jsonb_typeof(w1.value -> $3) = 'string' \
                 AND (w1.value ->> $4) COLLATE \"C\" = $5::text))",
                text("addresses"), text("addresses"), text("city"), text("city"), text("Paris");
        }
        scenario_wildcard_scalar_element {
            format!(
                    "EXISTS (SELECT 1 FROM {TAGS} WHERE 1 = 1 AND (jsonb_typeof(w1.value) = 'string' \
                     AND (w1.value #>> '{{}}') COLLATE \"C\" = $1::text))"
                ),
                text("a");
            format!(
                    "EXISTS (SELECT 1 FROM {TAGS} WHERE 1 = 1 AND (w1.value #>> '{{}}') IS NULL)"
                );
        }
        scenario_nested_wildcard {
            "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(\"meta\" -> $1) = 'array' \
                 THEN \"meta\" -> $2 END) AS w1 WHERE 1 = 1 AND EXISTS (SELECT 1 FROM \
                 jsonb_array_elements(CASE WHEN jsonb_typeof(w1.value -> $3) = 'array' THEN w1.value -> $4 END) \
                 AS w2 WHERE 1 = 1 AND (jsonb_typeof(w2.value -> $5) = 'string' \
                 AND (w2.value ->> $6) COLLATE \"C\" = $7::text)))",
                text("groups"), text("groups"), text("members"), text("members"), text("name"), text("name"), text("x");
            format!(
                    "EXISTS (SELECT 1 FROM {TAGS} WHERE 1 = 1 AND EXISTS (SELECT 1 FROM \
                     jsonb_array_elements(CASE WHEN jsonb_typeof(w1.value) = 'array' THEN w1.value END) AS w2 \
                     WHERE 1 = 1 AND (jsonb_typeof(w2.value) = 'number' AND CASE WHEN jsonb_typeof(w2.value) = 'number' \
                     THEN (w2.value)::numeric END = $1::int8)))"
                ),
                SqlValue::Integer(1);
        }
    }

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
            let declared = PgDialect {
                wide_integers: true,
            }
            .column_type(kind, "c");
            let (name, base) = match declared.as_str() {
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
    use crate::model::ColumnKind;

    const FOLD: &str = "'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'";

    const ADDRESSES: &str = "jsonb_array_elements(CASE WHEN jsonb_typeof(\"addresses\") = 'array' THEN \"addresses\" END) AS w1";
    const TAGS: &str =
        "jsonb_array_elements(CASE WHEN jsonb_typeof(\"tags\") = 'array' THEN \"tags\" END) AS w1";

    crate::statement_scenarios! {
        PgDialect::default();
        scenario_sort_nulls: sort_nulls => format!(
                "SELECT * FROM \"{TABLE}\" ORDER BY \"age\" DESC NULLS FIRST, \
                 CASE jsonb_typeof(\"meta\" -> $1) WHEN 'boolean' THEN 1 WHEN 'number' THEN 2 \
                 WHEN 'string' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 4 END ASC NULLS LAST, \
                 (CASE WHEN jsonb_typeof(\"meta\" -> $2) = 'string' THEN (\"meta\" ->> $3) END) COLLATE \"C\" ASC NULLS LAST, \
                 NULLIF(\"meta\" -> $4, 'null'::jsonb) ASC NULLS LAST, \"username\" COLLATE \"C\" ASC NULLS LAST, \"rnId\" ASC"
            ),
            vec![text("rank"); 4];
        scenario_filter_sort_limit_param_order: filter_sort_limit => format!(
                "SELECT * FROM \"{TABLE}\" WHERE (jsonb_typeof(\"meta\" -> $1) = 'string' \
                 AND (\"meta\" ->> $2) COLLATE \"C\" = $3::text) ORDER BY \
                 CASE jsonb_typeof(\"meta\" -> $4) WHEN 'boolean' THEN 1 WHEN 'number' THEN 2 \
                 WHEN 'string' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 4 END DESC NULLS FIRST, \
                 (CASE WHEN jsonb_typeof(\"meta\" -> $5) = 'string' THEN (\"meta\" ->> $6) END) COLLATE \"C\" DESC NULLS FIRST, \
                 NULLIF(\"meta\" -> $7, 'null'::jsonb) DESC NULLS FIRST, \"rnId\" ASC LIMIT 10"
            ),
            [vec![text("tier"), text("tier"), text("gold")], vec![text("rank"); 4]].concat();
        conditional_update: conditional_update => format!(
                "UPDATE \"{TABLE}\" SET \"age\" = $1::int8 WHERE \"rnId\" = $2 AND \"age\" IS NOT DISTINCT FROM $3::int8 AND \"meta\" IS NOT DISTINCT FROM $4::jsonb"
            ),
            vec![SqlValue::Integer(43), text("u1"), SqlValue::Integer(42), SqlValue::Json("{\"a\": 1}".into())];
        conditional_probe: conditional_probe => format!(
                "SELECT CASE WHEN \"age\" IS NOT DISTINCT FROM $1::int8 THEN 1 ELSE 0 END, CASE WHEN \"meta\" IS NOT DISTINCT FROM $2::jsonb THEN 1 ELSE 0 END FROM \"{TABLE}\" WHERE \"rnId\" = $3"
            ),
            vec![SqlValue::Integer(42), SqlValue::Json("{\"a\": 1}".into()), text("u1")];
    }
}
