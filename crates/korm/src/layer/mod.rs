//! Layers: the SQL databases items live in.
//!
//! A layer stores items of every collection in tables `__items__{namespace}__{kind}` and
//! answers three things: apply a batch of writes inside one database transaction, fetch items
//! by id, and run a planned select. The write path ([`crate::write`]) and the read path
//! ([`crate::item`]) are the only callers, so every backend sees the same requests.

pub(crate) mod locks;
pub(crate) mod mysql;
pub(crate) mod postgres;
pub(crate) mod schema;
pub(crate) mod sqlite;

use std::fmt;

use async_trait::async_trait;

use crate::error::Result;
pub(crate) use crate::layer::locks::{Fence, LockClaim};
use crate::model::{Field, StoredRow};
use crate::query::{Filter, SortOrder};

/// A database URL with its password replaced by `***`, for Debug output, logs and errors.
///
/// ```text
/// postgres://korm:s3cret@db:5432/app  ->  postgres://korm:***@db:5432/app
/// ```
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return "<url>".to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let redacted = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{user}:***@{}", &authority[at + 1..])
            } else {
                authority.to_owned()
            }
        }
        None => authority.to_owned(),
    };
    // Query parameters may carry a password too (`?password=...`).
    let tail = &rest[authority_end..];
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _))
                        if key.eq_ignore_ascii_case("password")
                            || key.eq_ignore_ascii_case("pass") =>
                    {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{}{redacted}{tail}", &url[..scheme_end])
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn secrets_are_found_as_written_and_decoded_and_scrubbed() {
        use super::{scrub, secrets_of};
        let secrets = secrets_of("mysql://korm:p%40ss@db/x?password=other");
        assert!(secrets.contains(&"p%40ss".to_owned()));
        assert!(secrets.contains(&"p@ss".to_owned()));
        assert!(secrets.contains(&"other".to_owned()));
        assert_eq!(
            scrub(&secrets, "denied for p@ss and other"),
            "denied for *** and ***"
        );
        assert_eq!(secrets_of("postgres://u:s3cret@h/d"), ["s3cret"]);
        assert!(secrets_of("postgres://u@h/d").is_empty());
        assert!(secrets_of("postgres://h/d").is_empty());
    }

    #[test]
    fn passwords_never_survive() {
        assert_eq!(
            redact_url("postgres://korm:s3cret@db:5432/app"),
            "postgres://korm:***@db:5432/app"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1:3306/test"),
            "mysql://root@127.0.0.1:3306/test"
        );
        assert_eq!(
            redact_url("postgres://u:p%40ss@h/d?sslmode=require&password=x"),
            "postgres://u:***@h/d?sslmode=require&password=***"
        );
        assert_eq!(redact_url("not a url s3cret"), "<url>");
        assert!(!redact_url("postgres://a:b:c@h/d").contains("b:c"));
    }
}

/// The passwords in a URL, as written and percent-decoded.
pub(crate) fn secrets_of(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(scheme_end) = url.find("://").map(|i| i + 3) {
        let rest = &url[scheme_end..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@')
            && let Some((_, password)) = authority[..at].split_once(':')
        {
            out.push(password.to_owned());
            if let Some(decoded) = percent_decode(password) {
                out.push(decoded);
            }
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            if let Some((key, value)) = pair.split_once('=')
                && (key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("pass"))
            {
                out.push(value.to_owned());
                if let Some(decoded) = percent_decode(value) {
                    out.push(decoded);
                }
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out.sort();
    out.dedup();
    out
}

/// Decodes `%XX` escapes; `None` when they do not make UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Replaces every secret (see [`secrets_of`]) in a driver message with `***`: drivers may
/// echo parts of their configuration.
pub(crate) fn scrub(secrets: &[String], message: &str) -> String {
    let mut out = message.to_owned();
    for secret in secrets {
        out = out.replace(secret.as_str(), "***");
    }
    out
}

/// How many read statements a layer has sent (see [`Layer::read_statements`]).
#[derive(Debug, Default)]
pub(crate) struct ReadCounter(std::sync::atomic::AtomicU64);

impl ReadCounter {
    /// Counts `statements` more.
    pub(crate) fn add(&self, statements: usize) {
        self.0.fetch_add(
            u64::try_from(statements).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The count so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What a write op does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// Insert a new row; fails if the id exists.
    Insert,
    /// Update the listed columns of an existing row; fails if it does not exist.
    Update,
    /// Delete the row; fails if it does not exist.
    Delete,
    /// Delete the row if it exists (destroy, and the undo of an insert).
    DeleteIfExists,
}

/// One row write, as a layer receives it.
#[derive(Debug, Clone)]
pub(crate) struct LayerOp {
    /// What to do.
    pub(crate) kind: OpKind,
    /// The item's RN as text, for errors.
    pub(crate) rn: String,
    /// The table (`__items__{namespace}__{kind}`).
    pub(crate) table: String,
    /// The row id (the item UUID).
    pub(crate) id: String,
    /// The fields to write (insert and update), shared with the write plan's op (no copy).
    pub(crate) fields: std::sync::Arc<[Field]>,
    /// Whether a column whose kind changed may be dropped and recreated.
    pub(crate) destructive: bool,
    /// The fencing token of the shared lock the write is made under: checked (and recorded)
    /// in `__korm_fence__` inside the write's transaction, refused with
    /// [`Error::StaleLock`](crate::Error::StaleLock) if a newer token was seen.
    pub(crate) fence: Option<Fence>,
}

/// A planned read of one table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Select {
    /// The filter, if any.
    pub(crate) filter: Option<Filter>,
    /// Sort keys (paths) and directions.
    pub(crate) sort: Vec<(String, SortOrder)>,
    /// At most this many rows.
    pub(crate) limit: Option<u64>,
}

/// A SQL database that stores items.
#[async_trait]
pub(crate) trait Layer: Send + Sync + fmt::Debug {
    /// The layer's name in the pool.
    fn ident(&self) -> &str;

    /// Applies the ops in order inside one database transaction, creating tables and columns
    /// as needed: either all of them are applied or none is.
    async fn apply(&self, ops: Vec<LayerOp>) -> Result<()>;

    /// Fetches the rows with these ids from one table (missing ids are simply absent).
    async fn fetch(&self, table: &str, ids: Vec<String>) -> Result<Vec<StoredRow>>;

    /// The row with this id in one table, if the layer can answer at once, without waiting
    /// (SQLite, with its connection free): [`fetch`](Layer::fetch) of one id without its
    /// lists or a boxed future. `None` when the caller must await `fetch`.
    fn fetch_one_now(&self, table: &str, id: &str) -> Option<Result<Option<StoredRow>>> {
        let _ = (table, id);
        None
    }

    /// Runs a select on one table. A table that does not exist yet gives no rows.
    async fn select(&self, table: &str, select: Select) -> Result<Vec<StoredRow>>;

    /// The distinct prefixes (the RN text before the 36-character item id) of the RN strings
    /// in `column`, for planning filters and sorts through references. A missing table or
    /// column gives none. One statement.
    async fn ref_prefixes(&self, table: &str, column: &str) -> Result<Vec<String>>;

    /// How many read statements (selects, fetch chunks, prefix scans) the layer has sent
    /// since it opened.
    fn read_statements(&self) -> u64;

    /// The table's columns and kinds (`None` when it does not exist), for the read planner:
    /// filters on encrypted columns are evaluated in memory, not in SQL.
    async fn table_schema(&self, table: &str) -> Result<Option<schema::TableSchema>>;

    /// Takes the shared lock `claim.lock_id` in `__korm_locks__` if no row holds it or its row
    /// expired at or before `claim.now` (atomically: of two claims racing, one wins), and
    /// issues the lock's next fencing token in `__korm_fence__`, in the same transaction.
    /// Creates both tables when missing. `None` when another owner holds the lock.
    async fn lock_acquire(&self, claim: &LockClaim) -> Result<Option<i64>>;

    /// Extends a lock this owner holds to `claim.expires_at`; `false` if the row is gone or
    /// has another owner (the lock was lost).
    async fn lock_refresh(&self, claim: &LockClaim) -> Result<bool>;

    /// Deletes the lock's row if `owner` holds it (never another owner's row).
    async fn lock_release(&self, lock_id: &str, owner: &str) -> Result<()>;

    /// Closes the layer: later calls fail with [`Error::PoolClosed`](crate::Error::PoolClosed).
    async fn close(&self);
}
