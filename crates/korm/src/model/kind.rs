//! Column kinds and the values that cross into SQL.

use std::fmt;

/// The kind of a stored column, inferred from the first value written to it.
///
/// Each kind has one declared type per backend; on SQLite those are korm 1.5's names
/// (`TEXT`, `INTEGER`, `REAL`, `BOOLEAN`, `JSON_TEXT`, `RN_REF_TEXT`, `ENCRYPTED_JSON`), so a
/// table korm-rs creates is the table korm 1.5 would have created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ColumnKind {
    /// A string.
    Text,
    /// A whole number (64-bit signed).
    Integer,
    /// A floating-point number.
    Double,
    /// `true` or `false`.
    Boolean,
    /// An object or an array, stored as JSON.
    Json,
    /// A Resource Name, stored as its string.
    RnRef,
    /// An encryption envelope, stored as JSON.
    Encrypted,
}

impl ColumnKind {
    /// The name korm uses for this kind in messages and in `__korm_meta__`.
    pub fn name(self) -> &'static str {
        match self {
            ColumnKind::Text => "text",
            ColumnKind::Integer => "integer",
            ColumnKind::Double => "double",
            ColumnKind::Boolean => "boolean",
            ColumnKind::Json => "json",
            ColumnKind::RnRef => "rn_ref",
            ColumnKind::Encrypted => "encrypted",
        }
    }

    /// Whether a value of kind `found` may be written into a column of this kind without
    /// recreating the column: the same kind, a whole number into a double column, or a plain
    /// string into an RN column and an RN into a text column (both are stored as text; a
    /// column first written with null is text, and an optional reference may come later).
    pub fn accepts(self, found: ColumnKind) -> bool {
        self == found
            || matches!(
                (self, found),
                (ColumnKind::Double, ColumnKind::Integer)
                    | (ColumnKind::RnRef, ColumnKind::Text)
                    | (ColumnKind::Text, ColumnKind::RnRef)
            )
    }

    /// Whether the column holds JSON that paths can reach into.
    pub fn is_json(self) -> bool {
        matches!(self, ColumnKind::Json | ColumnKind::Encrypted)
    }
}

/// 2^53: every whole number up to it in magnitude is exactly a double (and a JavaScript
/// number); above it, doubles skip whole numbers.
pub(crate) const EXACT_IN_DOUBLE: u64 = 1 << 53;

/// The integer a double holds when it is whole and at most [`EXACT_IN_DOUBLE`] in magnitude
/// (what a JavaScript number holding an integer is): korm writes and compares it as an
/// integer in an integer column. `None` for an integer-typed number (it is one already), a
/// fraction, or a larger double.
pub(crate) fn whole_double(n: &serde_json::Number) -> Option<i64> {
    let f = n.as_f64().filter(|_| n.is_f64())?;
    // Exact: |f| <= 2^53 fits an i64 whole.
    (f.fract() == 0.0 && f.abs() <= EXACT_IN_DOUBLE as f64).then_some(f as i64)
}

impl fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value bound to a SQL statement. Values are always bound as parameters, never spliced
/// into SQL text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Double(f64),
    /// A boolean (stored as 0/1 on SQLite).
    Boolean(bool),
    /// Text (also RN strings).
    Text(String),
    /// JSON text of an object or an array, for a JSON column.
    Json(String),
}
