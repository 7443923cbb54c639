//! PostgreSQL's error codes (SQLSTATE) as korm's kinds, table-tested below.

use sqlx::error::DatabaseError;

use crate::error::DbErrorKind;
use crate::layer::server::ServerCodes;

/// PostgreSQL's codes.
#[derive(Debug)]
pub(crate) struct PgCodes;

impl ServerCodes for PgCodes {
    fn code(db: &dyn DatabaseError) -> Option<String> {
        db.code().map(|c| c.into_owned())
    }

    fn kind(code: &str) -> DbErrorKind {
        match code {
            "23505" => DbErrorKind::UniqueViolation,
            "23502" | "23503" | "23514" | "23P01" => DbErrorKind::ConstraintViolation,
            "40001" | "40P01" | "55P03" | "57014" => DbErrorKind::Busy,
            "57P01" | "57P02" => DbErrorKind::ConnectionLost,
            "57P03" | "28000" | "28P01" | "3D000" => DbErrorKind::Connect,
            "42P01" | "42703" | "42701" | "42P07" | "42804" | "42704" => DbErrorKind::Schema,
            c if c.starts_with("08") => DbErrorKind::ConnectionLost,
            // program limit exceeded: a statement, a row or an index entry too large.
            c if c.starts_with("54") => DbErrorKind::TooLarge,
            _ => DbErrorKind::Other,
        }
    }

    /// Only the server's primary message, never its detail (which quotes values); a data
    /// exception may quote the value after a colon too (`invalid input syntax for type
    /// integer: "..."`), so only the reason before it is kept.
    fn message(db: &dyn DatabaseError, code: &str) -> String {
        let message = db.message();
        let message = match message.split_once(':') {
            Some((reason, _)) if code.starts_with("22") => reason,
            _ => message,
        };
        format!("{message} (SQLSTATE {code})")
    }

    fn unique_key(db: &dyn DatabaseError) -> Option<String> {
        db.constraint().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_kinds() {
        for (code, kind) in [
            ("23505", DbErrorKind::UniqueViolation),
            ("23502", DbErrorKind::ConstraintViolation),
            ("23503", DbErrorKind::ConstraintViolation),
            ("23514", DbErrorKind::ConstraintViolation),
            ("40001", DbErrorKind::Busy),
            ("40P01", DbErrorKind::Busy),
            ("55P03", DbErrorKind::Busy),
            ("57014", DbErrorKind::Busy),
            ("57P01", DbErrorKind::ConnectionLost),
            ("08006", DbErrorKind::ConnectionLost),
            ("08001", DbErrorKind::ConnectionLost),
            ("28P01", DbErrorKind::Connect),
            ("3D000", DbErrorKind::Connect),
            ("42P01", DbErrorKind::Schema),
            ("42703", DbErrorKind::Schema),
            ("54000", DbErrorKind::TooLarge),
            ("54001", DbErrorKind::TooLarge),
            ("22P02", DbErrorKind::Other),
            ("XX000", DbErrorKind::Other),
        ] {
            assert_eq!(PgCodes::kind(code), kind, "{code}");
        }
    }
}
