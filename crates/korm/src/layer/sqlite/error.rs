//! SQLite's errors as korm's: the kind from the result code (table-tested below), the
//! extended code kept as the error's code, and SQLite's message (it names tables and
//! columns, never bound values).

use rusqlite::ErrorCode;

use crate::error::{DbErrorKind, Error};
use crate::layer::LayerOp;
use crate::layer::schema::TableSchema;

/// The kind of a failure with this primary and extended result code.
fn kind_of(code: ErrorCode, extended: i32) -> DbErrorKind {
    match code {
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => DbErrorKind::Busy,
        ErrorCode::CannotOpen | ErrorCode::NotADatabase | ErrorCode::PermissionDenied => {
            DbErrorKind::Connect
        }
        ErrorCode::ConstraintViolation => match extended {
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => DbErrorKind::UniqueViolation,
            _ => DbErrorKind::ConstraintViolation,
        },
        ErrorCode::SchemaChanged => DbErrorKind::Schema,
        // A string, blob or row above SQLite's length limit.
        ErrorCode::TooBig => DbErrorKind::TooLarge,
        _ => DbErrorKind::Other,
    }
}

/// Maps a rusqlite error to korm's.
pub(crate) fn db_error(layer: &str, e: rusqlite::Error) -> Error {
    let (kind, code) = match &e {
        rusqlite::Error::SqliteFailure(f, _) => (
            kind_of(f.code, f.extended_code),
            Some(f.extended_code.to_string()),
        ),
        _ => (DbErrorKind::Other, None),
    };
    // Some messages quote the statement: keep errors short.
    let message = crate::error::clip(&e.to_string());
    Error::driver(layer, kind, code, message, e)
}

/// Maps an error of a row write: a unique violation names the column that collided
/// (`UNIQUE constraint failed: <table>.<column>`), which says the key or the field.
pub(crate) fn write_error(
    layer: &str,
    op: &LayerOp,
    schema: Option<&TableSchema>,
    e: rusqlite::Error,
) -> Error {
    let mapped = db_error(layer, e);
    if let Error::Database {
        kind: DbErrorKind::UniqueViolation,
        message,
        ..
    } = &mapped
    {
        let column = message.rsplit('.').next().unwrap_or_default();
        if let Some(violation) = op.unique_violation(schema, column) {
            return violation;
        }
    }
    mapped
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    #[test]
    fn codes_map_to_kinds() {
        for (code, extended, kind) in [
            (ErrorCode::DatabaseBusy, ffi::SQLITE_BUSY, DbErrorKind::Busy),
            (ErrorCode::TooBig, ffi::SQLITE_TOOBIG, DbErrorKind::TooLarge),
            (
                ErrorCode::DatabaseLocked,
                ffi::SQLITE_LOCKED,
                DbErrorKind::Busy,
            ),
            (
                ErrorCode::CannotOpen,
                ffi::SQLITE_CANTOPEN,
                DbErrorKind::Connect,
            ),
            (
                ErrorCode::NotADatabase,
                ffi::SQLITE_NOTADB,
                DbErrorKind::Connect,
            ),
            (
                ErrorCode::PermissionDenied,
                ffi::SQLITE_PERM,
                DbErrorKind::Connect,
            ),
            (
                ErrorCode::ConstraintViolation,
                ffi::SQLITE_CONSTRAINT_UNIQUE,
                DbErrorKind::UniqueViolation,
            ),
            (
                ErrorCode::ConstraintViolation,
                ffi::SQLITE_CONSTRAINT_PRIMARYKEY,
                DbErrorKind::UniqueViolation,
            ),
            (
                ErrorCode::ConstraintViolation,
                ffi::SQLITE_CONSTRAINT_CHECK,
                DbErrorKind::ConstraintViolation,
            ),
            (
                ErrorCode::ConstraintViolation,
                ffi::SQLITE_CONSTRAINT_NOTNULL,
                DbErrorKind::ConstraintViolation,
            ),
            (
                ErrorCode::SchemaChanged,
                ffi::SQLITE_SCHEMA,
                DbErrorKind::Schema,
            ),
            (ErrorCode::DiskFull, ffi::SQLITE_FULL, DbErrorKind::Other),
        ] {
            assert_eq!(kind_of(code, extended), kind, "{code:?} / {extended}");
        }
    }

    #[test]
    fn errors_keep_the_code_and_the_driver_error() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a TEXT UNIQUE); INSERT INTO t VALUES ('x');")
            .unwrap();
        let e = conn.execute("INSERT INTO t VALUES ('x')", []).unwrap_err();
        match db_error("db", e) {
            Error::Database {
                kind: DbErrorKind::UniqueViolation,
                code: Some(code),
                source: Some(source),
                ..
            } => {
                assert_eq!(code, ffi::SQLITE_CONSTRAINT_UNIQUE.to_string());
                assert!(source.get_ref().downcast_ref::<rusqlite::Error>().is_some());
            }
            other => panic!("expected a unique violation, got {other:?}"),
        }
    }
}
