//! MySQL's and MariaDB's error numbers as korm's kinds, table-tested below. Their messages
//! quote values (`Duplicate entry 'x' for key ...`), so every quoted part is removed.

use sqlx::error::DatabaseError;

use crate::error::DbErrorKind;
use crate::layer::server::ServerCodes;

/// `ER_DUP_ENTRY`.
const ER_DUP_ENTRY: &str = "1062";

/// MySQL's codes.
#[derive(Debug)]
pub(crate) struct MySqlCodes;

/// The server's error number of a database error (`1146`), as korm's codes name them.
/// (sqlx's `DatabaseError::code` is the SQLSTATE, `42S02`, which several numbers share.)
pub(crate) fn number(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => MySqlCodes::code(db.as_ref()),
        _ => None,
    }
}

impl ServerCodes for MySqlCodes {
    fn code(db: &dyn DatabaseError) -> Option<String> {
        db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|db| db.number().to_string())
    }

    fn kind(code: &str) -> DbErrorKind {
        match code {
            "1062" | "1586" => DbErrorKind::UniqueViolation,
            // not null, check constraints (MySQL 3819, MariaDB 4025), foreign keys, out of
            // range, wrong value for the column type.
            "1048" | "3819" | "4025" | "1451" | "1452" | "1264" | "1366" | "1406" => {
                DbErrorKind::ConstraintViolation
            }
            // server gone, connection killed or aborted, server shutting down.
            "1053" | "1152" | "1927" | "2006" | "2013" => DbErrorKind::ConnectionLost,
            // a packet above max_allowed_packet (the server refuses it unread, then closes the
            // connection), a result above it.
            "1153" | "1301" => DbErrorKind::TooLarge,
            // a statement of more than 65,535 placeholders (a filter of that many values).
            "1390" => DbErrorKind::TooLarge,
            // access denied, unknown database, too many connections.
            "1040" | "1044" | "1045" | "1049" | "1129" | "1130" => DbErrorKind::Connect,
            // lock wait timeout, deadlock.
            "1205" | "1213" => DbErrorKind::Busy,
            // missing table or column, identifier too long, DDL refused.
            "1054" | "1059" | "1060" | "1061" | "1091" | "1146" | "1118" | "1071" => {
                DbErrorKind::Schema
            }
            _ => DbErrorKind::Other,
        }
    }

    fn message(db: &dyn DatabaseError, code: &str) -> String {
        if code == ER_DUP_ENTRY {
            return match duplicate_key(db.message()) {
                Some(key) => format!("error 1062: duplicate entry for key {key}"),
                None => "error 1062: duplicate entry".to_owned(),
            };
        }
        format!("error {code}: {}", without_quoted(db.message()))
    }

    fn unique_key(db: &dyn DatabaseError) -> Option<String> {
        duplicate_key(db.message())
    }
}

/// Hides what a server message single-quotes: MySQL quotes values there (`Duplicate entry
/// 'x' for key ...`, `Incorrect integer value: 'x'`), unescaped, and a message must never
/// carry a value. Everything from the first quote to the last goes: a value holding a quote
/// (`'it's secret'`) would otherwise end the quoted part early and show the rest.
fn without_quoted(message: &str) -> String {
    match (message.find('\''), message.rfind('\'')) {
        (Some(first), Some(last)) if first < last => {
            format!("{}'...'{}", &message[..first], &message[last + 1..])
        }
        (Some(first), _) => format!("{}'...", &message[..first]),
        _ => message.to_owned(),
    }
}

/// The key name of an `ER_DUP_ENTRY` message (`... for key 'name'`, MySQL 8:
/// `'table.name'`).
fn duplicate_key(message: &str) -> Option<String> {
    let start = message.rfind("for key '")? + "for key '".len();
    let key = &message[start..];
    let key = &key[..key.find('\'')?];
    let key = key.rsplit('.').next().unwrap_or(key);
    key.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then(|| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_map_to_kinds() {
        for (code, kind) in [
            ("1062", DbErrorKind::UniqueViolation),
            ("1586", DbErrorKind::UniqueViolation),
            ("1048", DbErrorKind::ConstraintViolation),
            ("4025", DbErrorKind::ConstraintViolation),
            ("1264", DbErrorKind::ConstraintViolation),
            ("2006", DbErrorKind::ConnectionLost),
            ("2013", DbErrorKind::ConnectionLost),
            ("1927", DbErrorKind::ConnectionLost),
            ("1153", DbErrorKind::TooLarge),
            ("1301", DbErrorKind::TooLarge),
            ("1390", DbErrorKind::TooLarge),
            ("1045", DbErrorKind::Connect),
            ("1049", DbErrorKind::Connect),
            ("1205", DbErrorKind::Busy),
            ("1213", DbErrorKind::Busy),
            ("1146", DbErrorKind::Schema),
            ("1054", DbErrorKind::Schema),
            ("1064", DbErrorKind::Other),
        ] {
            assert_eq!(MySqlCodes::kind(code), kind, "{code}");
        }
    }

    #[test]
    fn duplicate_messages_give_the_key_and_never_the_value() {
        let msg = "Duplicate entry 'fred@x.example' for key '__korm_u_0123456789abcdef01234567'";
        assert_eq!(
            duplicate_key(msg).as_deref(),
            Some("__korm_u_0123456789abcdef01234567")
        );
        assert_eq!(
            duplicate_key("Duplicate entry 'x' for key 'items.PRIMARY'").as_deref(),
            Some("PRIMARY")
        );
        assert_eq!(duplicate_key("Duplicate entry 'a' for key 'x OR 1'"), None);
        let shown = without_quoted("Incorrect integer value: 'TOPSECRET' for column `age`");
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(shown.ends_with("for column `age`"), "{shown}");
        // A value holding a quote: nothing of it shows.
        let shown = without_quoted("Incorrect integer value: 'it's secret' for column `age`");
        assert_eq!(shown, "Incorrect integer value: '...' for column `age`");
        assert_eq!(without_quoted("Data too long: 'abc"), "Data too long: '...");
    }
}
