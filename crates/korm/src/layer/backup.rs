//! What backups need of a layer: its tables, a consistent export, clearing a table for a
//! restore, and korm 1.5's schedules table (`__korm_backups__`). Each backend implements it
//! in its own `backup.rs`.

use async_trait::async_trait;

use crate::backup::format::Sink;
use crate::backup::schedule::ScheduleRow;
use crate::error::Result;
use crate::layer::meta::{POOL_TABLE, is_item_table};
use crate::layer::schema::TableSchema;

/// The tables a backup holds, out of the names a layer's catalog `listed` (in creation order):
/// `__korm_pool__` and `__korm_meta__` first when listed, then the item tables in their order
/// (by their exact prefix: a catalog may match it without case).
pub(crate) fn backup_order(listed: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = [POOL_TABLE, "__korm_meta__"]
        .into_iter()
        .filter(|t| listed.iter().any(|n| n == t))
        .map(str::to_owned)
        .collect();
    out.extend(listed.into_iter().filter(|n| is_item_table(n)));
    out
}

/// A layer's side of backups and their schedules.
#[async_trait]
pub(crate) trait LayerBackups: LayerSchedules {
    /// The tables a backup of the layer holds: `__korm_pool__` and `__korm_meta__` when the
    /// layer has them, then every item table. One statement.
    async fn backup_tables(&self) -> Result<Vec<String>>;

    /// Reads the rows of `tables` (each with its schema when it is an item table) into
    /// `sink`, inside one read transaction so the snapshot is consistent, flushing the sink
    /// whenever it is full (rows are never gathered). A table dropped since it was listed is
    /// left out.
    async fn export(&self, tables: Vec<(String, Option<TableSchema>)>, sink: Sink) -> Result<Sink>;

    /// Deletes every row of a table (a restore that replaces); a missing table is not an
    /// error. Only item table names are passed.
    async fn clear_table(&self, table: &str) -> Result<()>;
}

/// A layer's side of korm 1.5's backup schedules table (`__korm_backups__`). The server
/// layers share theirs ([`ServerLayer`](crate::layer::server::ServerLayer)).
#[async_trait]
pub(crate) trait LayerSchedules: Send + Sync {
    /// The backup schedules in `__korm_backups__` (created when missing, as korm 1.5 makes
    /// it).
    async fn schedules(&self) -> Result<Vec<ScheduleRow>>;

    /// Inserts a schedule's row unless one with its id exists (created when missing).
    async fn insert_schedule(&self, row: &ScheduleRow, now: i64) -> Result<()>;

    /// Claims a schedule's run: moves its `next_run_at` from `expected` to `next` (and sets
    /// `last_run_at`) in one statement, `true` when this call moved it. Of several instances
    /// claiming the same run, exactly one gets `true`.
    async fn claim_schedule(&self, id: &str, expected: i64, next: i64, now: i64) -> Result<bool>;
}
