//! Values as PostgreSQL sends them back (binary or text format), read into cells.

use sqlx::ValueRef as _;
use sqlx::postgres::{PgValueFormat, PgValueRef};

use crate::error::{Error, Result};
use crate::model::{Cell, ColumnKind};

/// Type OIDs of the built-in types korm reads (stable across PostgreSQL versions).
mod oid {
    pub(super) const BOOL: u32 = 16;
    pub(super) const INT8: u32 = 20;
    pub(super) const INT2: u32 = 21;
    pub(super) const INT4: u32 = 23;
    pub(super) const JSON: u32 = 114;
    pub(super) const FLOAT4: u32 = 700;
    pub(super) const FLOAT8: u32 = 701;
    pub(super) const NUMERIC: u32 = 1700;
    pub(super) const JSONB: u32 = 3802;
}

/// What a stored value is, as far as decoding cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Bool,
    Int,
    Float,
    Numeric,
    Json,
    Text,
}

/// A stored value as PostgreSQL sends it. The wire type comes from the value's type OID; a
/// domain (korm's, or another) falls back on the column's kind, since its bytes are its base
/// type's. JSON stays text: it is parsed only when a model reads the field.
pub(super) fn cell<'a>(
    table: &str,
    column: &str,
    kind: Option<ColumnKind>,
    value: PgValueRef<'a>,
) -> Result<Cell<'a>> {
    let bad = |what: &str| Error::Decode {
        rn: table.to_owned(),
        reason: format!("column {column:?} holds {what}"),
    };
    if value.is_null() {
        return Ok(Cell::Null);
    }
    let wire = match value.type_info().oid().map(|o| o.0) {
        Some(oid::BOOL) => Wire::Bool,
        Some(oid::INT2 | oid::INT4 | oid::INT8) => Wire::Int,
        Some(oid::FLOAT4 | oid::FLOAT8) => Wire::Float,
        Some(oid::NUMERIC) => Wire::Numeric,
        Some(oid::JSON | oid::JSONB) => Wire::Json,
        Some(25 | 1042 | 1043 | 19) => Wire::Text,
        _ => match kind {
            Some(ColumnKind::Boolean) => Wire::Bool,
            Some(ColumnKind::Integer) => Wire::Int,
            Some(ColumnKind::Double) => Wire::Float,
            Some(ColumnKind::Json | ColumnKind::Encrypted) => Wire::Json,
            _ => Wire::Text,
        },
    };
    let bytes = value.as_bytes().map_err(|_| bad("an unreadable value"))?;
    let binary = value.format() == PgValueFormat::Binary;
    let text = || std::str::from_utf8(bytes).map_err(|_| bad("text that is not UTF-8"));
    Ok(match (wire, binary) {
        (Wire::Bool, true) => match bytes {
            [b] => Cell::Boolean(*b != 0),
            _ => return Err(bad("a malformed boolean")),
        },
        (Wire::Bool, false) => Cell::Boolean(text()? == "t"),
        (Wire::Int, true) => {
            let i = match *bytes {
                [a, b] => i64::from(i16::from_be_bytes([a, b])),
                [a, b, c, d] => i64::from(i32::from_be_bytes([a, b, c, d])),
                [a, b, c, d, e, f, g, h] => i64::from_be_bytes([a, b, c, d, e, f, g, h]),
                _ => return Err(bad("a malformed integer")),
            };
            Cell::Integer(i)
        }
        (Wire::Float, true) => match *bytes {
            [a, b, c, d] => Cell::Double(f64::from(f32::from_be_bytes([a, b, c, d]))),
            [a, b, c, d, e, f, g, h] => Cell::Double(f64::from_be_bytes([a, b, c, d, e, f, g, h])),
            _ => return Err(bad("a malformed double")),
        },
        (Wire::Numeric, true) => return Err(bad("a binary numeric, which korm does not read")),
        (Wire::Int, false) => {
            Cell::Integer(text()?.parse().map_err(|_| bad("a malformed integer"))?)
        }
        (Wire::Float | Wire::Numeric, false) => {
            Cell::Double(text()?.parse().map_err(|_| bad("a malformed number"))?)
        }
        (Wire::Json, _) => {
            // jsonb's binary form is a version byte (1) and the JSON text; no JSON text can
            // start with byte 1, so stripping it is unambiguous.
            let json = match bytes {
                [1, rest @ ..] if binary => rest,
                _ => bytes,
            };
            let json = std::str::from_utf8(json).map_err(|_| bad("JSON that is not UTF-8"))?;
            Cell::Json(json)
        }
        (Wire::Text, _) => Cell::Text(text()?),
    })
}
