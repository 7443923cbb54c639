//! Values as MySQL sends them back, read into cells.

use sqlx::mysql::MySqlRow;
use sqlx::{Row, ValueRef as _};

use crate::error::{Error, Result};
use crate::layer::schema::ReadColumn;
use crate::model::{Cell, ColumnKind};

/// A text column of a row (information_schema and JSON columns may come as binary strings).
pub(super) fn text_at(row: &MySqlRow, i: usize) -> Result<Option<String>> {
    let bad = || Error::Decode {
        rn: "information_schema".to_owned(),
        reason: format!("column {i} is not text"),
    };
    if let Ok(text) = row.try_get::<Option<String>, _>(i) {
        return Ok(text);
    }
    match row.try_get_unchecked::<Option<Vec<u8>>, _>(i) {
        Ok(Some(bytes)) => String::from_utf8(bytes).map(Some).map_err(|_| bad()),
        Ok(None) => Ok(None),
        Err(_) => Err(bad()),
    }
}

/// A stored value as MySQL sends it, read by what its column is (the key, or a field of a
/// kind). Text is borrowed from the row; JSON stays text: it is parsed only when a model
/// reads the field.
pub(super) fn cell<'r>(
    table: &str,
    column: &str,
    read: &ReadColumn,
    row: &'r MySqlRow,
    i: usize,
) -> Result<Cell<'r>> {
    let bad = |what: &str| Error::Decode {
        rn: table.to_owned(),
        reason: format!("column {column:?} holds {what}"),
    };
    let raw = row
        .try_get_raw(i)
        .map_err(|_| bad("a value the driver can not read"))?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    let text = || -> Result<Cell<'r>> {
        let bytes: &'r [u8] = row
            .try_get_unchecked(i)
            .map_err(|_| bad("a value that is not text"))?;
        std::str::from_utf8(bytes)
            .map(Cell::Text)
            .map_err(|_| bad("text that is not UTF-8"))
    };
    let number = || -> Result<Cell<'r>> {
        match row.try_get::<i64, _>(i) {
            Ok(v) => Ok(Cell::Integer(v)),
            Err(_) => row
                .try_get::<f64, _>(i)
                .map(Cell::Double)
                .map_err(|_| bad("a value that is not a number")),
        }
    };
    match read {
        ReadColumn::Id => text(),
        ReadColumn::Field(_, Some(ColumnKind::Integer | ColumnKind::Double)) => number(),
        ReadColumn::Field(_, Some(ColumnKind::Boolean)) => match row.try_get::<i64, _>(i) {
            Ok(v) => Ok(Cell::Integer(v)),
            Err(_) => row
                .try_get::<bool, _>(i)
                .map(Cell::Boolean)
                .map_err(|_| bad("a value that is not a boolean")),
        },
        ReadColumn::Field(_, Some(_)) => text(),
        // A column the schema does not know: a number if it is one, else text.
        ReadColumn::Field(_, None) | ReadColumn::Skip => number().or_else(|_| text()),
    }
}
