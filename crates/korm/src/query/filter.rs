//! The filter tree users build with [`eq`], [`and`], [`not`], ... and the sort order.

use serde_json::Value;

/// A condition on the items of a collection, built with [`eq`], [`gt`], [`like`],
/// [`in_list`], [`and`], [`or`], [`not`] and friends.
///
/// A filter keeps its paths as written; they are checked when the query runs, so a malformed
/// path is an [`Error::InvalidPath`](crate::Error::InvalidPath) from the query, never a panic
/// here. See the [`query`](crate::query) module for what each operator means.
///
/// ```
/// use korm::{and, eq, gt, not};
///
/// let gold = and([eq("meta.tier", "gold"), gt("age", 80)]);
/// let either = eq("username", "fred").or(eq("username", "freddie"));
/// let neither = !either.clone();
/// assert_eq!(neither, not(either));
/// # let _ = gold;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Filter(pub(crate) FilterNode);

/// The inside of a [`Filter`]; crate-internal so the planner can walk it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FilterNode {
    /// `path op value`.
    Compare {
        path: String,
        op: CompareOp,
        value: Value,
    },
    /// `path LIKE pattern`.
    Like { path: String, pattern: String },
    /// `path IN (values...)`.
    InList { path: String, values: Vec<Value> },
    /// Every filter holds (true when empty).
    And(Vec<Filter>),
    /// At least one filter holds (false when empty).
    Or(Vec<Filter>),
    /// The filter does not hold (a missing value does not hold either, so `not` matches it).
    Not(Box<Filter>),
    /// Planned from a filter through a reference (never built by users): the reference
    /// column holds an RN whose text before the 36-character id is one of `prefixes` and
    /// whose id is one of `ids`.
    RefIn {
        column: String,
        prefixes: Vec<String>,
        ids: Vec<String>,
    },
    /// Planned from a filter through a reference into a table of the same database: the
    /// reference column holds an RN with one of `prefixes` and the id of a row of `target`
    /// matching `filter` (one statement, a semi-join).
    RefSemi {
        column: String,
        prefixes: Vec<String>,
        target: std::sync::Arc<crate::layer::schema::TableSchema>,
        filter: Box<Filter>,
    },
}

/// The deepest nesting of `and`, `or` and `not` a filter may have (a top-level `and` does not
/// count: see `Filter::validate`).
pub(crate) const MAX_DEPTH: usize = 64;

/// The longest `like` pattern, in bytes: SQLite refuses longer ones ("pattern too complex"),
/// so it is the limit on every backend.
pub(crate) const MAX_LIKE_PATTERN: usize = 50_000;

impl Filter {
    /// Checks the whole filter before any database work: its nesting depth, every path and
    /// every value. It walks the tree without recursion, so a hostile depth can not overflow
    /// the stack, and it runs whether or not the collection's table exists yet.
    pub(crate) fn validate(&self) -> crate::Result<()> {
        use super::dialect::Scalar;
        use super::path::FieldPath;
        // A top-level `and` is not a level: it is how a query combines its filters (two
        // `filter` calls, a page's keyset condition), so a filter at the limit stays one.
        let top = usize::from(!matches!(self.0, FilterNode::And(_)));
        let mut pending = vec![(self, top)];
        while let Some((filter, depth)) = pending.pop() {
            if depth > MAX_DEPTH {
                return Err(crate::Error::InvalidFilter {
                    path: String::new(),
                    reason: format!("and/or/not are nested deeper than {MAX_DEPTH} levels"),
                });
            }
            match &filter.0 {
                FilterNode::Compare { path, op, value } => {
                    FieldPath::parse(path)?;
                    if Scalar::from_json(path, op.name(), value)?.is_none() && *op != CompareOp::Eq
                    {
                        return Err(crate::Error::InvalidFilter {
                            path: crate::error::clip(path),
                            reason: format!(
                                "{} with null never matches: only eq can test for null",
                                op.name()
                            ),
                        });
                    }
                }
                FilterNode::Like { path, pattern } => {
                    FieldPath::parse(path)?;
                    if pattern.len() > MAX_LIKE_PATTERN {
                        return Err(crate::Error::InvalidFilter {
                            path: crate::error::clip(path),
                            reason: format!(
                                "the like pattern is {} bytes long; the limit is \
                                 {MAX_LIKE_PATTERN} on every backend (SQLite's)",
                                pattern.len()
                            ),
                        });
                    }
                    // SQLite's LIKE ends a pattern at a NUL (`%\0%` matched every text there):
                    // refused on every backend.
                    if pattern.contains('\0') {
                        return Err(crate::Error::InvalidFilter {
                            path: crate::error::clip(path),
                            reason: "the like pattern holds a NUL character, which SQLite's \
                                     LIKE can not match"
                                .to_owned(),
                        });
                    }
                }
                FilterNode::InList { path, values } => {
                    FieldPath::parse(path)?;
                    for value in values {
                        Scalar::from_json(path, "in_list", value)?;
                    }
                }
                FilterNode::And(filters) | FilterNode::Or(filters) => {
                    pending.extend(filters.iter().map(|f| (f, depth + 1)));
                }
                FilterNode::Not(inner) => pending.push((inner, depth + 1)),
                // Planned nodes are built by korm from validated parts.
                FilterNode::RefIn { .. } | FilterNode::RefSemi { .. } => {}
            }
        }
        Ok(())
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompareOp {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CompareOp {
    /// The SQL operator (the same in every dialect).
    pub(crate) fn sql(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Gt => ">",
            CompareOp::Gte => ">=",
            CompareOp::Lt => "<",
            CompareOp::Lte => "<=",
        }
    }

    /// The helper's name, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Gt => "gt",
            CompareOp::Gte => "gte",
            CompareOp::Lt => "lt",
            CompareOp::Lte => "lte",
        }
    }
}

/// The direction of a sort key.
///
/// Nulls (and missing values) come last when ascending and first when descending.
///
/// ```
/// use korm::SortOrder;
/// assert_ne!(SortOrder::Asc, SortOrder::Desc);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Smallest first, nulls last.
    Asc,
    /// Largest first, nulls first.
    Desc,
}

fn compare(path: &str, op: CompareOp, value: impl Into<Value>) -> Filter {
    Filter(FilterNode::Compare {
        path: path.to_owned(),
        op,
        value: value.into(),
    })
}

/// The value at `path` equals `value`; `eq(path, ())` or `eq(path, Value::Null)` matches a
/// null or missing value.
///
/// Values of different types never match (`eq("age", "80")` does not match the number 80).
///
/// ```
/// use korm::eq;
/// let fred = eq("username", "fred");
/// let hot = eq("meta.flags.hot", true);
/// let no_email = eq("email", serde_json::Value::Null);
/// # let _ = (fred, hot, no_email);
/// ```
pub fn eq(path: &str, value: impl Into<Value>) -> Filter {
    compare(path, CompareOp::Eq, value)
}

/// The value at `path` is greater than `value` (numbers by value, text byte by byte).
///
/// ```
/// use korm::gt;
/// let old = gt("age", 80);
/// # let _ = old;
/// ```
pub fn gt(path: &str, value: impl Into<Value>) -> Filter {
    compare(path, CompareOp::Gt, value)
}

/// The value at `path` is greater than or equal to `value`.
///
/// ```
/// use korm::gte;
/// let adult = gte("age", 18);
/// # let _ = adult;
/// ```
pub fn gte(path: &str, value: impl Into<Value>) -> Filter {
    compare(path, CompareOp::Gte, value)
}

/// The value at `path` is less than `value`.
///
/// ```
/// use korm::lt;
/// let cheap = lt("price", 9.5);
/// # let _ = cheap;
/// ```
pub fn lt(path: &str, value: impl Into<Value>) -> Filter {
    compare(path, CompareOp::Lt, value)
}

/// The value at `path` is less than or equal to `value`.
///
/// ```
/// use korm::lte;
/// let early = lte("meta.signup[0]", 2010);
/// # let _ = early;
/// ```
pub fn lte(path: &str, value: impl Into<Value>) -> Filter {
    compare(path, CompareOp::Lte, value)
}

/// The text at `path` matches a SQL `LIKE` pattern: `%` is any run of characters, `_` any
/// one character; there is no escape character. Matching ignores the case of ASCII letters
/// only.
///
/// ```
/// use korm::like;
/// let freds = like("username", "fred%");
/// # let _ = freds;
/// ```
pub fn like(path: &str, pattern: &str) -> Filter {
    Filter(FilterNode::Like {
        path: path.to_owned(),
        pattern: pattern.to_owned(),
    })
}

/// The value at `path` equals one of `values`; an empty list matches nothing, and a null in
/// the list matches nothing either (use [`eq`] with null for that).
///
/// ```
/// use korm::in_list;
/// let tiers = in_list("meta.tier", ["gold", "silver"]);
/// let years = in_list("year", [2019, 2020]);
/// # let _ = (tiers, years);
/// ```
pub fn in_list(path: &str, values: impl IntoIterator<Item = impl Into<Value>>) -> Filter {
    Filter(FilterNode::InList {
        path: path.to_owned(),
        values: values.into_iter().map(Into::into).collect(),
    })
}

/// Every filter holds; `and([])` matches everything.
///
/// ```
/// use korm::{and, eq, gt};
/// let f = and([eq("meta.tier", "gold"), gt("age", 80)]);
/// # let _ = f;
/// ```
pub fn and(filters: impl IntoIterator<Item = Filter>) -> Filter {
    Filter(FilterNode::And(filters.into_iter().collect()))
}

/// At least one filter holds; `or([])` matches nothing.
///
/// ```
/// use korm::{eq, or};
/// let f = or([eq("username", "fred"), eq("username", "wilma")]);
/// # let _ = f;
/// ```
pub fn or(filters: impl IntoIterator<Item = Filter>) -> Filter {
    Filter(FilterNode::Or(filters.into_iter().collect()))
}

/// The filter does not hold. A filter on a missing or null value does not hold, so
/// `not(eq("nickname", "x"))` matches items without a nickname.
///
/// ```
/// use korm::{eq, not};
/// let f = not(eq("meta.tier", "gold"));
/// # let _ = f;
/// ```
pub fn not(filter: Filter) -> Filter {
    Filter(FilterNode::Not(Box::new(filter)))
}

impl Filter {
    /// This filter and `other` both hold (flattens into an existing [`and`]).
    ///
    /// ```
    /// use korm::{and, eq, gt};
    /// assert_eq!(eq("a", 1).and(gt("b", 2)), and([eq("a", 1), gt("b", 2)]));
    /// ```
    pub fn and(self, other: Filter) -> Filter {
        // Both sides flatten: `q.filter(a).filter(and([b]))` nests no deeper than
        // `q.filter(and([b])).filter(a)` (the depth limit must not depend on the order).
        let mut filters = match self.0 {
            FilterNode::And(filters) => filters,
            node => vec![Filter(node)],
        };
        match other.0 {
            FilterNode::And(more) => filters.extend(more),
            node => filters.push(Filter(node)),
        }
        Filter(FilterNode::And(filters))
    }

    /// This filter or `other` holds (flattens into an existing [`or`]).
    ///
    /// ```
    /// use korm::{eq, or};
    /// assert_eq!(eq("a", 1).or(eq("a", 2)), or([eq("a", 1), eq("a", 2)]));
    /// ```
    pub fn or(self, other: Filter) -> Filter {
        match self.0 {
            FilterNode::Or(mut filters) => {
                filters.push(other);
                Filter(FilterNode::Or(filters))
            }
            node => or([Filter(node), other]),
        }
    }

    /// Whether an item with this data matches the filter, decided in memory with the same
    /// semantics a query has on every database (see the [`query`](crate::query) module doc).
    ///
    /// `data` is the item's data as a JSON object of its top-level fields, as
    /// `serde_json::to_value(&model)` gives it: a field the object lacks, or holds null, is
    /// null. The item's id is not part of its data: a path on `rnId` reads an `rnId` key of the
    /// object if the caller put one there, and is missing otherwise. Values are compared as
    /// given: an [`Encrypted`](crate::Encrypted) field is whatever JSON the caller passes, and a
    /// path through a [`Ref`](crate::Ref) sees the RN string (a query would follow the
    /// reference).
    ///
    /// ```
    /// use korm::{and, eq, gt, like, not};
    /// use serde_json::json;
    ///
    /// let data = json!({"username": "Freddie", "age": 41, "tags": ["quarry", "bowling"]});
    /// assert!(and([like("username", "fred%"), gt("age", 40)]).matches(&data)?);
    /// assert!(eq("tags[*]", "bowling").matches(&data)?);
    /// assert!(not(eq("nickname", "x")).matches(&data)?); // a missing field is null
    /// assert!(!eq("age", "41").matches(&data)?); // types never match across
    ///
    /// // The same errors as a query with this filter.
    /// assert!(matches!(gt("age", ()).matches(&data), Err(korm::Error::InvalidFilter { .. })));
    /// assert!(matches!(eq("a..b", 1).matches(&data), Err(korm::Error::InvalidPath { .. })));
    /// # Ok::<(), korm::Error>(())
    /// ```
    ///
    /// # Errors
    /// First the errors a query with this filter gives before it reads anything:
    /// [`Error::InvalidPath`](crate::Error::InvalidPath) for a malformed path,
    /// [`Error::InvalidFilter`](crate::Error::InvalidFilter) for an object or array as a
    /// value, an integer outside `i64`, null with `gt`/`gte`/`lt`/`lte`, or nesting deeper
    /// than a query allows. Then [`Error::Encode`](crate::Error::Encode) when `data` is not a
    /// JSON object (item data always is: a model is a struct or a map).
    pub fn matches(&self, data: &Value) -> crate::Result<bool> {
        self.validate()?;
        let Value::Object(fields) = data else {
            let found = match data {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            };
            return Err(crate::Error::Encode {
                what: "item data".to_owned(),
                reason: format!(
                    "a filter matches a JSON object of the item's fields, and the data is {found}"
                ),
            });
        };
        Ok(super::memory::eval(self, fields))
    }

    /// The tree, for the planner.
    pub(crate) fn node(&self) -> &FilterNode {
        &self.0
    }
}

impl std::ops::Not for Filter {
    type Output = Filter;

    /// Same as [`not`].
    fn not(self) -> Filter {
        not(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn and_flattens_both_sides() {
        use crate::query::{and, eq, gt};
        let joined = eq("a", 1).and(and([gt("b", 2), eq("c", 3)]));
        assert_eq!(joined, and([eq("a", 1), gt("b", 2), eq("c", 3)]));
        assert_eq!(
            and([eq("a", 1)]).and(eq("b", 2)),
            and([eq("a", 1), eq("b", 2)])
        );
    }

    #[test]
    fn helpers_keep_the_raw_path_and_value() {
        assert_eq!(
            eq("meta.tier", "gold").0,
            FilterNode::Compare {
                path: "meta.tier".into(),
                op: CompareOp::Eq,
                value: json!("gold")
            }
        );
        for (f, op) in [
            (gt("a", 1), CompareOp::Gt),
            (gte("a", 1), CompareOp::Gte),
            (lt("a", 1), CompareOp::Lt),
            (lte("a", 1), CompareOp::Lte),
        ] {
            assert_eq!(
                f.0,
                FilterNode::Compare {
                    path: "a".into(),
                    op,
                    value: json!(1)
                }
            );
        }
        assert_eq!(
            like("u", "f%").0,
            FilterNode::Like {
                path: "u".into(),
                pattern: "f%".into()
            }
        );
        assert_eq!(
            in_list("y", [1, 2]).0,
            FilterNode::InList {
                path: "y".into(),
                values: vec![json!(1), json!(2)]
            }
        );
        let empty: [i64; 0] = [];
        assert_eq!(
            in_list("y", empty).0,
            FilterNode::InList {
                path: "y".into(),
                values: vec![]
            }
        );
    }

    #[test]
    fn a_bad_path_does_not_panic_at_construction() {
        let f = eq("a..b; DROP TABLE x", "x");
        assert!(
            matches!(f.node(), FilterNode::Compare { path, .. } if path == "a..b; DROP TABLE x")
        );
    }

    #[test]
    fn method_and_or_flatten() {
        let f = eq("a", 1).and(eq("b", 2)).and(eq("c", 3));
        assert_eq!(f, and([eq("a", 1), eq("b", 2), eq("c", 3)]));
        let g = eq("a", 1).or(eq("b", 2)).or(eq("c", 3));
        assert_eq!(g, or([eq("a", 1), eq("b", 2), eq("c", 3)]));
        // Mixed: an `or` inside an `and` is kept as a child.
        let h = eq("a", 1).or(eq("b", 2)).and(eq("c", 3));
        assert_eq!(h, and([or([eq("a", 1), eq("b", 2)]), eq("c", 3)]));
    }

    #[test]
    fn not_operator_matches_not_helper() {
        assert_eq!(!eq("a", 1), not(eq("a", 1)));
        assert_eq!((!!eq("a", 1)).0, FilterNode::Not(Box::new(not(eq("a", 1)))));
    }

    #[test]
    fn matches_reads_the_fields_of_an_object() {
        let data = json!({"age": 41, "meta": {"tier": "gold"}, "rnId": "x"});
        assert!(eq("meta.tier", "gold").matches(&data).unwrap());
        assert!(eq("rnId", "x").matches(&data).unwrap());
        assert!(eq("nickname", Value::Null).matches(&data).unwrap());
        assert!(!gt("age", 41).matches(&data).unwrap());
        assert!(and([]).matches(&json!({})).unwrap());
        assert!(!or([]).matches(&json!({})).unwrap());
    }

    #[test]
    fn matches_validates_like_a_query() {
        let data = json!({"age": 41});
        let cases = [
            (eq("a[x]", 1), "path"),
            (gt("age", Value::Null), "filter"),
            (lte("age", json!([1])), "filter"),
            (in_list("age", [json!({"a": 1})]), "filter"),
            (eq("age", json!(u64::MAX)), "filter"),
            // The error is found even where evaluation would not look (after a false `and`).
            (and([eq("age", 0), like("a..b", "x")]), "path"),
        ];
        for (filter, kind) in cases {
            match (filter.matches(&data), kind) {
                (Err(crate::Error::InvalidPath { .. }), "path")
                | (Err(crate::Error::InvalidFilter { .. }), "filter") => {}
                (other, _) => panic!("{filter:?}: {other:?}"),
            }
        }
        let deep = (0..=MAX_DEPTH).fold(eq("age", 41), |f, _| not(f));
        assert!(matches!(
            deep.matches(&data),
            Err(crate::Error::InvalidFilter { .. })
        ));
    }

    #[test]
    fn matches_refuses_data_that_is_not_an_object() {
        for data in [json!(null), json!(1), json!("x"), json!([{"age": 41}])] {
            let err = eq("age", 41).matches(&data).unwrap_err();
            assert!(matches!(err, crate::Error::Encode { .. }), "{err:?}");
        }
        // The filter is checked first.
        assert!(matches!(
            gt("age", Value::Null).matches(&json!(1)),
            Err(crate::Error::InvalidFilter { .. })
        ));
    }

    #[test]
    fn null_and_json_values_are_kept_for_planning() {
        assert!(matches!(
            eq("a", Value::Null).0,
            FilterNode::Compare {
                value: Value::Null,
                ..
            }
        ));
        assert!(matches!(
            eq("a", json!({"x": 1})).0,
            FilterNode::Compare {
                value: Value::Object(_),
                ..
            }
        ));
    }
}
