//! The part of a filter SQL can not evaluate: filters on encrypted fields, split off by
//! [`split`] and evaluated in memory by [`Residual::matches`] after decryption.
//!
//! Split rule (correctness over speed): when the filter is an `and`, its children that touch
//! no encrypted field go to SQL and the others are evaluated in memory on the rows SQL
//! returns; any other filter that touches an encrypted field (an `or`, a `not`, a lone
//! comparison) is evaluated whole in memory over every row of the table. Either way the
//! query's limit is applied after the in-memory part, never in SQL.
//!
//! On an encrypted field only `eq` and `in_list` are allowed (korm 1.5 offers the same): they
//! compare the decrypted JSON value (and paths into it). Anything else is
//! [`Error::InvalidFilter`], never a silent empty result. Decrypted values live only for the
//! comparison and are never logged.

use std::collections::HashMap;

use serde_json::Value;

use super::filter::{CompareOp, Filter, FilterNode};
use super::path::{FieldPath, PathStep};
use crate::crypto::{KeyRing, open_value};
use crate::error::{Error, Result, clip};
use crate::layer::schema::{ID_COLUMN, TableSchema};
use crate::model::{ColumnKind, StoredRow};

/// A filter part evaluated in memory, and the encrypted columns it reads.
#[derive(Debug, Clone)]
pub(crate) struct Residual {
    filter: Filter,
    /// The columns the filter reads, and whether each is encrypted.
    read: Vec<(String, bool)>,
}

/// Splits `filter` into what SQL evaluates and what is evaluated in memory (see the module
/// doc). `(Some(filter), None)` when it touches no encrypted field.
///
/// # Errors
/// [`Error::InvalidFilter`] for an operator other than `eq` / `in_list` on an encrypted field.
pub(crate) fn split(
    filter: Filter,
    schema: &TableSchema,
) -> Result<(Option<Filter>, Option<Residual>)> {
    let encrypted: Vec<String> = schema
        .columns
        .iter()
        .filter(|(_, kind)| *kind == ColumnKind::Encrypted)
        .map(|(name, _)| name.clone())
        .collect();
    let is_encrypted = |path: &str| {
        FieldPath::parse(path).is_ok_and(|p| encrypted.iter().any(|c| c == p.column()))
    };
    if !touches(&filter, &is_encrypted)? {
        return Ok((Some(filter), None));
    }
    let residual = |filter: Filter| {
        // Only the columns the filter reads are parsed (and, if encrypted, decrypted).
        let mut read = Vec::new();
        let mut pending = vec![&filter];
        while let Some(f) = pending.pop() {
            match &f.0 {
                FilterNode::Compare { path, .. }
                | FilterNode::Like { path, .. }
                | FilterNode::InList { path, .. } => {
                    if let Ok(p) = FieldPath::parse(path)
                        && !read.iter().any(|(c, _)| c == p.column())
                    {
                        let column = p.column().to_owned();
                        let secret = encrypted.contains(&column);
                        read.push((column, secret));
                    }
                }
                FilterNode::RefIn { column, .. } | FilterNode::RefSemi { column, .. } => {
                    if !read.iter().any(|(c, _)| c == column) {
                        read.push((column.clone(), false));
                    }
                }
                FilterNode::And(children) | FilterNode::Or(children) => pending.extend(children),
                FilterNode::Not(inner) => pending.push(inner),
            }
        }
        Residual { filter, read }
    };
    match filter.0 {
        FilterNode::And(children) => {
            let mut sql = Vec::new();
            let mut memory = Vec::new();
            for child in children {
                if touches(&child, &is_encrypted)? {
                    memory.push(child);
                } else {
                    sql.push(child);
                }
            }
            let sql = (!sql.is_empty()).then(|| Filter(FilterNode::And(sql)));
            Ok((sql, Some(residual(Filter(FilterNode::And(memory))))))
        }
        node => Ok((None, Some(residual(Filter(node))))),
    }
}

/// Whether the filter reads an encrypted field of `schema` (it will be evaluated, at least in
/// part, in memory).
///
/// # Errors
/// As [`split`].
pub(crate) fn reads_encrypted(filter: &Filter, schema: &TableSchema) -> Result<bool> {
    let is_encrypted = |path: &str| {
        FieldPath::parse(path)
            .is_ok_and(|p| schema.kind_of(p.column()) == Some(ColumnKind::Encrypted))
    };
    touches(filter, &is_encrypted)
}

/// Whether the filter reads an encrypted field; an operator other than eq / in_list on one is
/// an error. Iterative, like `Filter::validate` (which has bounded the depth already).
fn touches(filter: &Filter, is_encrypted: &impl Fn(&str) -> bool) -> Result<bool> {
    let mut found = false;
    let mut pending = vec![filter];
    while let Some(f) = pending.pop() {
        match &f.0 {
            FilterNode::Compare { path, op, .. } if is_encrypted(path) => {
                if *op != CompareOp::Eq {
                    return Err(not_allowed(path, op.name()));
                }
                found = true;
            }
            FilterNode::Like { path, .. } if is_encrypted(path) => {
                return Err(not_allowed(path, "like"));
            }
            FilterNode::InList { path, .. } if is_encrypted(path) => found = true,
            FilterNode::And(children) | FilterNode::Or(children) => pending.extend(children),
            FilterNode::Not(inner) => pending.push(inner),
            _ => {}
        }
    }
    Ok(found)
}

fn not_allowed(path: &str, op: &str) -> Error {
    Error::InvalidFilter {
        path: clip(path),
        reason: format!(
            "{op} can not filter an encrypted field: only eq and in_list can (they compare the \
             decrypted value in memory); ordering or pattern matching would need the cleartext \
             in the database"
        ),
    }
}

impl Residual {
    /// Whether `row` satisfies the residual filter. Encrypted fields it reads are decrypted
    /// with the pool's key ring `keys`.
    ///
    /// # Errors
    /// [`Error::Decode`] (naming `rn`) when an encrypted field can not be decrypted;
    /// [`Error::InvalidFilter`] when the field holds a password hash (compare with
    /// [`Password::verify`](crate::Password::verify) instead).
    pub(crate) fn matches(
        &self,
        rn: &str,
        row: &StoredRow,
        keys: &crate::crypto::RingChoice,
    ) -> Result<bool> {
        let mut values = HashMap::new();
        let mut ring: Option<std::sync::Arc<KeyRing>> = None;
        for (name, cell) in row.cells() {
            let Some((_, encrypted)) = self.read.iter().find(|(c, _)| c == name) else {
                continue;
            };
            let value = cell.to_value();
            let value = if *encrypted && !value.is_null() {
                if value.get("type") == Some(&Value::from("password")) {
                    return Err(Error::InvalidFilter {
                        path: name.to_string(),
                        reason: "the field holds a password hash, which filters can not compare \
                                 (load the item and call Password::verify)"
                            .to_owned(),
                    });
                }
                let ring = match &ring {
                    Some(ring) => ring,
                    None => ring.insert(keys.get()?),
                };
                open_value(ring, &value).map_err(|e| Error::Decode {
                    rn: rn.to_owned(),
                    reason: format!("field `{name}`: can not decrypt: {e}"),
                })?
            } else {
                value
            };
            values.insert(name.to_string(), value);
        }
        values.insert(ID_COLUMN.to_owned(), Value::String(row.id().to_owned()));
        Ok(eval(&self.filter, &values))
    }
}

/// An item's top-level fields, by name: what [`eval`] reads a path's first step from.
pub(crate) trait Fields {
    /// The value of the field `name`; `None` when the item lacks it.
    fn field(&self, name: &str) -> Option<&Value>;
}

/// A row's values, decrypted where needed (the residual filter's input).
impl Fields for HashMap<String, Value> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// An item's data as a JSON object ([`Filter::matches`]).
impl Fields for serde_json::Map<String, Value> {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// Evaluates a filter on a row's values with the semantics of the [`query`](crate::query)
/// module doc (the same SQL has on every database). The filter must have passed
/// [`Filter::validate`]: a path that does not parse reaches nothing here.
pub(crate) fn eval<R: Fields + ?Sized>(filter: &Filter, row: &R) -> bool {
    match &filter.0 {
        FilterNode::And(children) => children.iter().all(|c| eval(c, row)),
        FilterNode::Or(children) => children.iter().any(|c| eval(c, row)),
        FilterNode::Not(inner) => !eval(inner, row),
        FilterNode::Compare { path, op, value } => reached(path, row)
            .iter()
            .any(|found| compare(found, *op, value)),
        FilterNode::InList { path, values } => reached(path, row).iter().any(|found| {
            // A null in the list finds null and missing values, as `eq` with null does.
            values.iter().any(|v| compare(found, CompareOp::Eq, v))
        }),
        FilterNode::Like { path, pattern } => reached(path, row)
            .iter()
            .any(|found| matches!(found, Some(Value::String(text)) if like(text, pattern))),
        FilterNode::RefIn {
            column,
            prefixes,
            ids,
        } => match row.field(column) {
            Some(Value::String(rn)) => split_rn(rn).is_some_and(|(prefix, id)| {
                prefixes.iter().any(|p| p == prefix) && ids.iter().any(|i| i == id)
            }),
            _ => false,
        },
        // The planner never leaves a semi-join for memory (it plans RefIn instead).
        FilterNode::RefSemi { .. } => false,
    }
}

/// An RN's text before its 36-character id, and the id.
fn split_rn(rn: &str) -> Option<(&str, &str)> {
    let at = rn.len().checked_sub(36)?;
    rn.is_char_boundary(at).then(|| rn.split_at(at))
}

/// The values a path reaches: one (possibly missing) without wildcards, one per element
/// combination with them (none when a wildcard meets no array).
fn reached<'a, R: Fields + ?Sized>(path: &str, row: &'a R) -> Vec<Option<&'a Value>> {
    let Ok(path) = FieldPath::parse(path) else {
        return vec![None];
    };
    let mut current = vec![row.field(path.column())];
    for step in path.steps() {
        let mut next = Vec::with_capacity(current.len());
        for value in current {
            match (step, value) {
                (PathStep::Key(key), Some(Value::Object(map))) => next.push(map.get(key)),
                (PathStep::Index(i), Some(Value::Array(items))) => next.push(items.get(*i)),
                (PathStep::Wildcard, Some(Value::Array(items))) => {
                    next.extend(items.iter().map(Some))
                }
                (PathStep::Wildcard, _) => {}
                _ => next.push(None),
            }
        }
        current = next;
    }
    current
}

/// A JSON number as a whole number, if it is one (`i64` or `u64`).
fn whole(n: &serde_json::Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn compare(found: &Option<&Value>, op: CompareOp, wanted: &Value) -> bool {
    let found = match found {
        None | Some(Value::Null) => return wanted.is_null() && op == CompareOp::Eq,
        Some(found) => *found,
    };
    let ordering = match (found, wanted) {
        (Value::String(a), Value::String(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        // Two whole numbers compare exactly (one may be above i64::MAX: stored JSON holds
        // it); otherwise as doubles.
        (Value::Number(a), Value::Number(b)) => match (whole(a), whole(b)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => match a
                .as_f64()
                .zip(b.as_f64())
                .and_then(|(a, b)| a.partial_cmp(&b))
            {
                Some(ordering) => ordering,
                None => return false,
            },
        },
        _ => return false,
    };
    match op {
        CompareOp::Eq => ordering.is_eq(),
        CompareOp::Gt => ordering.is_gt(),
        CompareOp::Gte => ordering.is_ge(),
        CompareOp::Lt => ordering.is_lt(),
        CompareOp::Lte => ordering.is_le(),
    }
}

/// SQL `LIKE` without escapes: `%` any run, `_` one character, ASCII letters in either case.
fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    // Iterative wildcard matching with backtracking to the last `%`.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len()
            && (pattern[p] == '_' || pattern[p].eq_ignore_ascii_case(&text[t]))
            && pattern[p] != '%'
        {
            t += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == '%' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '%')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{and, eq, gt, in_list, like as like_f, not, or};
    use serde_json::json;

    #[test]
    fn whole_numbers_above_i64_compare_exactly() {
        let data = json!({"meta": {"n": 9_223_372_036_854_775_808_u64}});
        assert!(!eq("meta.n", i64::MAX).matches(&data).unwrap());
        assert!(gt("meta.n", i64::MAX).matches(&data).unwrap());
        assert!(
            eq("meta.n", json!(9_223_372_036_854_775_808_u64))
                .matches(&data)
                .is_err()
        );
        let data = json!({"meta": {"n": 18_446_744_073_709_551_615_u64}});
        assert!(gt("meta.n", i64::MAX).matches(&data).unwrap());
    }

    fn schema() -> TableSchema {
        TableSchema {
            table: "__items__users__freetier".into(),
            columns: vec![
                ("age".into(), ColumnKind::Integer),
                ("ssn".into(), ColumnKind::Encrypted),
            ],
            ..TableSchema::default()
        }
    }

    #[test]
    fn and_splits_or_goes_whole_to_memory() {
        let (sql, memory) = split(and([gt("age", 1), eq("ssn", "x")]), &schema()).unwrap();
        assert_eq!(sql, Some(and([gt("age", 1)])));
        assert_eq!(memory.unwrap().filter, and([eq("ssn", "x")]));
        let f = or([gt("age", 1), in_list("ssn", ["x"])]);
        let (sql, memory) = split(f.clone(), &schema()).unwrap();
        assert_eq!(sql, None);
        assert_eq!(memory.unwrap().filter, f);
        let (sql, memory) = split(gt("age", 1), &schema()).unwrap();
        assert!(sql.is_some() && memory.is_none());
    }

    #[test]
    fn other_operators_on_encrypted_fields_are_errors() {
        for f in [
            gt("ssn", "1"),
            like_f("ssn", "0%"),
            not(or([gt("ssn.a", 1)])),
        ] {
            let err = split(f, &schema()).unwrap_err();
            assert!(matches!(err, Error::InvalidFilter { .. }), "{err}");
            assert!(err.to_string().contains("only eq and in_list"), "{err}");
        }
    }

    #[test]
    fn memory_semantics_match_sql() {
        let row: HashMap<String, Value> = [
            ("age".to_owned(), json!(41)),
            ("score".to_owned(), json!(97.5)),
            ("name".to_owned(), json!("Freddie")),
            ("tags".to_owned(), json!(["a", "b"])),
            (
                "addr".to_owned(),
                json!([{"city": "Paris"}, {"city": "Rome"}]),
            ),
        ]
        .into_iter()
        .collect();
        let yes = [
            eq("age", 41),
            gt("score", 97),
            eq("age", 41.0),
            eq("missing", Value::Null),
            eq("tags[5]", Value::Null),
            eq("addr[*].city", "Rome"),
            like_f("name", "fr_d%"),
            in_list("tags[*]", ["b"]),
            not(eq("nick", "x")),
            and([]),
        ];
        let no = [
            eq("age", "41"),
            gt("name", 5),
            eq("tags", "a"),
            like_f("age", "4%"),
            in_list("age", [Value::Null]),
            eq("age[*]", 41),
            or([]),
            like_f("name", "fred"),
        ];
        for f in yes {
            assert!(eval(&f, &row), "{f:?}");
        }
        for f in no {
            assert!(!eval(&f, &row), "{f:?}");
        }
    }
}
