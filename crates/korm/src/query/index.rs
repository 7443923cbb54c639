//! Declared indexes on JSON paths: [`declare_index`].
//!
//! A filter on a path inside a JSON field reads every row's JSON unless the database has an
//! index on that path. [`declare_index`] creates one, once per collection, path and
//! [`IndexKind`], and the filters korm renders on that path then use it:
//!
//! | backend | what is created | used by |
//! |---|---|---|
//! | SQLite | an expression index on `json_extract("meta", '$.tier')` (one for either kind) | `eq`, `in_list`, `gt`/`gte`/`lt`/`lte` |
//! | PostgreSQL | an expression index: `("meta" ->> 'tier') COLLATE "C"` (text), or the value as `numeric` when it is a number (number) | `eq`, `in_list`, `gt`/`gte`/`lt`/`lte` with a value of the index's kind |
//! | MariaDB | an invisible virtual column computing the value, and an index on it | the same |
//!
//! The index lives in the database's own catalog under a name korm derives from the table,
//! the path and the kind (`korm_ix_…`; MariaDB's column is `korm$ix_…`, a name no field can
//! have): declaring it again is a no-op, and every pool on the database sees it when it
//! reads the table's schema (at its first query of the table after opening). Nothing else
//! changes in the table: korm 1.5 and `SELECT *` never see the index or the invisible
//! column, and writes by any program keep it up to date.
//!
//! Only scalar paths (`meta.tier`, `tags[0]`) can be declared. A `[*]` path tests every
//! element of an array, which no expression index holds: on SQLite and MariaDB it stays a
//! scan; on PostgreSQL a GIN index on the whole column (`jsonb_path_ops`) could serve
//! containment, but korm's `[*]` filters are not rendered as containment, so it is not
//! offered either.

use sha2::{Digest, Sha256};

use super::path::FieldPath;
use crate::error::{Error, Result, clip};
use crate::model::ColumnKind;
use crate::pool::Pool;
use crate::rn::Rn;

/// What values a declared index on a JSON path serves: filters comparing the path with text,
/// or with numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexKind {
    /// Text values (`eq("meta.tier", "gold")`, `in_list`, `gt` on text).
    Text,
    /// Numbers, whole or not (`gt("meta.score", 5)`).
    Number,
}

impl IndexKind {
    fn tag(self) -> &'static str {
        match self {
            IndexKind::Text => "text",
            IndexKind::Number => "number",
        }
    }
}

/// The prefix of the names of korm's declared indexes.
pub(crate) const INDEX_PREFIX: &str = "korm_ix_";

/// The name of the index on `column` + `steps` (JSONPath text after `$`, like `.tier`) of
/// `table`, for `kind`: `korm_ix_` and 24 hex characters of a SHA-256 (63 characters at most
/// on every backend).
pub(crate) fn index_name(table: &str, column: &str, steps: &str, kind: IndexKind) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hash = Sha256::new();
    for part in [table, "\0", column, steps, "\0", kind.tag()] {
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    // Rendered on every filter of a table with declared indexes: no formatting machinery.
    let mut name = String::with_capacity(INDEX_PREFIX.len() + 24);
    name.push_str(INDEX_PREFIX);
    for byte in &digest[..12] {
        name.push(char::from(HEX[usize::from(byte >> 4)]));
        name.push(char::from(HEX[usize::from(byte & 15)]));
    }
    name
}

/// Declares an index on the JSON path `path` of the items of `collection`, serving filters
/// that compare it with values of `kind` (see the [module doc](self) for what each backend
/// creates). Idempotent: declaring it again, from this pool or another, changes nothing.
///
/// The collection must have a JSON field at the start of the path already (create an item
/// first): korm creates tables and columns from the data written.
///
/// ```no_run
/// # async fn f(pool: &korm::Pool) -> korm::Result<()> {
/// let users: korm::Rn<serde_json::Value> = "[rn]:users:freetier:*".parse()?;
/// korm::declare_index(pool, &users, "meta.tier", korm::IndexKind::Text).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::WrongRnForm`] unless `collection` is a collection RN; [`Error::InvalidPath`] for a
/// malformed path, a `[*]` path, a path that is not inside a JSON field, or a field the
/// collection does not have yet; routing and database errors.
pub async fn declare_index<T>(
    pool: &Pool,
    collection: &Rn<T>,
    path: &str,
    kind: IndexKind,
) -> Result<()> {
    let table = match collection.table_name() {
        Some(table) if collection.is_collection() => table,
        _ => {
            return Err(Error::WrongRnForm {
                rn: collection.to_string(),
                reason: "an index is declared on a collection rn (namespace:kind:*)".to_owned(),
            });
        }
    };
    let parsed = FieldPath::parse(path)?;
    let fail = |reason: &str| Error::InvalidPath {
        path: clip(path),
        reason: reason.to_owned(),
    };
    if parsed.has_wildcard() {
        return Err(fail(
            "a [*] path has many values per item, and an index one: only scalar paths can be \
             declared (see korm::query::index)",
        ));
    }
    if parsed.steps().is_empty() {
        return Err(fail(
            "declared indexes are on paths inside a JSON field (meta.tier), not whole fields",
        ));
    }
    let untyped = collection.untyped();
    let layer = pool.route(&untyped)?.clone();
    let schema = layer.table_schema(&table).await?;
    match schema.as_ref().and_then(|s| s.kind_of(parsed.column())) {
        Some(ColumnKind::Json) => {}
        None => {
            return Err(fail(
                "the collection has no such field yet: create an item with it first",
            ));
        }
        Some(_) => return Err(fail("the field is not a JSON object or array")),
    }
    layer.create_index(&table, &parsed, kind).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_are_stable_and_distinct() {
        let a = index_name("__items__a__b", "meta", ".tier", IndexKind::Text);
        assert_eq!(a.len(), INDEX_PREFIX.len() + 24);
        assert!(a.starts_with(INDEX_PREFIX));
        assert_eq!(
            a,
            index_name("__items__a__b", "meta", ".tier", IndexKind::Text)
        );
        // The name other pools compute for the same declaration: fixed forever.
        let digest = Sha256::digest(b"__items__a__b\0meta.tier\0text");
        assert_eq!(a, format!("{INDEX_PREFIX}{}", &hex::encode(digest)[..24]));
        for other in [
            index_name("__items__a__b", "meta", ".tier", IndexKind::Number),
            index_name("__items__a__c", "meta", ".tier", IndexKind::Text),
            index_name("__items__a__b", "meta", ".tie", IndexKind::Text),
            index_name("__items__a__b", "met", ".atier", IndexKind::Text),
        ] {
            assert_ne!(a, other);
        }
    }
}
