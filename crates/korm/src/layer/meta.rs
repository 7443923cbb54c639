//! What every layer needs for pool metadata and reset; each backend's SQL lives in its own
//! `meta.rs`.
//!
//! - `__korm_pool__(id, config, created_at, updated_at)` (korm 1.5's table, times in epoch
//!   milliseconds): one row, `id = 'pool'`, whose `config` is the pool snapshot's JSON (see
//!   [`crate::meta`]). SQLite keeps it as `TEXT`, PostgreSQL as `jsonb` holding the JSON text
//!   as a string (what korm 1.5's driver writes; an object is read too), MySQL as `JSON`.
//! - Reset drops what korm made on a layer: every `__items__*` table and korm's own tables
//!   ([`KORM_TABLES`]).

use async_trait::async_trait;

use crate::error::{Error, Result};

/// The table of the pool snapshot.
pub(crate) const POOL_TABLE: &str = "__korm_pool__";

/// The id of the snapshot's row.
pub(crate) const POOL_ROW: &str = "pool";

/// korm's own tables, dropped by a reset of the layers (korm 1.5's four, and korm-rs's
/// fencing table). `__korm_pool__` goes last, so a reset that fails midway leaves the
/// snapshot saying the pool is there.
pub(crate) const KORM_TABLES: [&str; 5] = [
    "__korm_meta__",
    "__korm_locks__",
    "__korm_fence__",
    "__korm_backups__",
    POOL_TABLE,
];

/// The prefix of item tables.
pub(crate) const ITEMS_PREFIX: &str = "__items__";

/// The backup schedules table (korm 1.5's `BackMan`), which belongs to the pool's metadata.
pub(crate) const BACKUPS_TABLE: &str = "__korm_backups__";

/// The snapshot row as stored.
#[derive(Clone)]
pub(crate) struct PoolRow {
    /// The JSON text of the snapshot (a PostgreSQL `jsonb` string already unwrapped once:
    /// the text may still be a JSON string holding the snapshot, see
    /// [`crate::meta`]).
    pub(crate) config: String,
    /// When the row was first written, epoch milliseconds.
    pub(crate) created_at: i64,
    /// When the row was last written, epoch milliseconds.
    pub(crate) updated_at: i64,
}

impl std::fmt::Debug for PoolRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds only ciphertext for secrets, but it is not printed all the same.
        f.debug_struct("PoolRow")
            .field("config", &format_args!("<{} bytes>", self.config.len()))
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// korm's own tables on a layer: the pool snapshot, and the drops of a reset.
#[async_trait]
pub(crate) trait KormTables: Send + Sync {
    /// The snapshot row, or `None` when the table or the row is missing. One statement (two
    /// where the backend must ask whether the table exists first).
    async fn read_pool_row(&self) -> Result<Option<PoolRow>>;

    /// Creates `__korm_pool__` when missing and inserts the snapshot row unless one exists:
    /// `false` when another writer was first (the caller then reads and checks theirs).
    async fn insert_pool_row(&self, config: &str, now: i64) -> Result<bool>;

    /// Replaces the snapshot's config and `updated_at` (`created_at` stays); nothing when
    /// the row is missing.
    async fn update_pool_row(&self, config: &str, now: i64) -> Result<()>;

    /// Drops the tables named (each `DROP TABLE IF EXISTS`, in order) and forgets what the
    /// layer cached of them; returns the names of those that existed. Only names of
    /// [`KORM_TABLES`] are passed.
    async fn drop_tables(&self, tables: &[&'static str]) -> Result<Vec<String>> {
        self.drop_named(tables.iter().map(|t| (*t).to_owned()).collect())
            .await
    }

    /// Drops the tables named, in order, as [`drop_tables`](Self::drop_tables) says; a
    /// name that is not korm's ([`check_droppable`]) is an error.
    async fn drop_named(&self, names: Vec<String>) -> Result<Vec<String>>;

    /// Drops every item table (`__items__*`, whatever its collection) and korm's own tables
    /// ([`KORM_TABLES`]), and forgets every cached schema; returns the names of the tables
    /// dropped. Tables of other programs are left alone.
    async fn drop_korm_tables(&self) -> Result<Vec<String>>;
}

/// Whether `name` is an item table korm (or korm 1.5) made: the exact prefix, then a name
/// of identifier characters, so a reset never drops a table of another program that only
/// looks alike (`LIKE '__items__%'` would also match `xxitemsxx`: `_` is a wildcard there).
pub(crate) fn is_item_table(name: &str) -> bool {
    name.strip_prefix(ITEMS_PREFIX).is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// Refuses a table a reset must not drop: one that is neither an item table nor one of
/// [`KORM_TABLES`].
pub(crate) fn check_droppable(name: &str) -> Result<()> {
    if is_item_table(name) || KORM_TABLES.contains(&name) {
        return Ok(());
    }
    Err(Error::InvalidIdentifier {
        what: "table",
        name: crate::error::clip(name),
        reason: "reset drops only korm's tables".to_owned(),
    })
}

/// What a reset of every korm table drops, in order: the item tables among the names a
/// catalog `listed` (by their exact prefix: a catalog may match it without case), then
/// [`KORM_TABLES`].
pub(crate) fn korm_tables_to_drop(listed: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = listed.into_iter().filter(|n| is_item_table(n)).collect();
    names.extend(KORM_TABLES.iter().map(|t| (*t).to_owned()));
    names
}

#[cfg(test)]
mod tests {
    use super::is_item_table;

    #[test]
    fn only_korm_item_tables_are_dropped() {
        assert!(is_item_table("__items__users__freetier"));
        assert!(is_item_table("__items__ac35fe619eb2c9da1c17d9bb08e63d8d"));
        assert!(!is_item_table("__items__"));
        assert!(!is_item_table("xxitemsxxusers"));
        assert!(!is_item_table("__ITEMS__users__x"));
        assert!(!is_item_table("__items__a\"; DROP TABLE x; --"));
        assert!(!is_item_table("my_items"));
    }
}
