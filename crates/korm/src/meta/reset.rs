//! Wiping what korm stored (M3), only through [`danger`](crate::danger).

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt};

use crate::Pool;
use crate::danger::Danger;
use crate::depot::DepotKey;
use crate::error::{Error, Result};
use crate::layer::meta::{BACKUPS_TABLE, POOL_TABLE};

/// What [`reset`] wipes: korm 1.5's modes (`"all"`, `"layers"`, `"depots"`, `"meta"`,
/// `"meta only"`).
///
/// | mode | on every layer | in every depot |
/// | --- | --- | --- |
/// | `All` | every `__items__*` table, `__korm_meta__`, `__korm_locks__`, `__korm_fence__`, `__korm_backups__`, `__korm_pool__` | every file, korm's own included (the WAL, undo copies, backups) |
/// | `Layers` | the same tables | nothing |
/// | `Depots` | nothing | every file, korm's own included |
/// | `Meta` | `__korm_pool__` (the snapshot) and `__korm_backups__` (backup schedules) | nothing |
/// | `MetaOnly` | `__korm_pool__` | nothing |
///
/// Tables of other programs stay: a table is dropped only if its name is one of korm's
/// (`__items__` followed by identifier characters, or korm's own five).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetMode {
    /// Every item table and korm's own tables on every layer, and every file of every depot.
    All,
    /// Every item table and korm's own tables (the snapshot included) on every layer.
    Layers,
    /// Every file of every depot, the WAL's and backups' included.
    Depots,
    /// The pool snapshot and the backup schedules, on every layer: the data stays, and the
    /// next open writes a new snapshot.
    Meta,
    /// The pool snapshot only, on every layer (korm 1.5's `"meta"` and `"meta only"`).
    MetaOnly,
}

impl ResetMode {
    fn what(self) -> &'static str {
        match self {
            ResetMode::All => "reset pool: drop every korm table and delete every depot file",
            ResetMode::Layers => "reset pool: drop every korm table on every layer",
            ResetMode::Depots => "reset pool: delete every file of every depot",
            ResetMode::Meta => "reset pool: drop the pool metadata and backup schedules",
            ResetMode::MetaOnly => "reset pool: drop the pool metadata",
        }
    }

    fn drops_layers(self) -> bool {
        matches!(self, ResetMode::All | ResetMode::Layers)
    }

    fn empties_depots(self) -> bool {
        matches!(self, ResetMode::All | ResetMode::Depots)
    }
}

/// What a [`reset`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResetReport {
    /// The tables dropped, by layer (layers where nothing was dropped are absent).
    pub tables: BTreeMap<String, Vec<String>>,
    /// How many files were deleted, by depot (depots that were empty are absent).
    pub files: BTreeMap<String, usize>,
}

/// How many deletes a depot reset keeps in flight.
const DELETES_IN_FLIGHT: usize = 16;

/// Wipes what korm stored in the pool's layers and depots, scoped by `mode` (see
/// [`ResetMode`] for exactly what each drops). Only runs through [`danger`](crate::danger).
///
/// Run it while no other process uses the pool: their writes may recreate tables as they
/// go, and their locks vanish with `__korm_locks__`. The open pool stays usable: tables are
/// created again on the next write, and a pool with metadata writes a new snapshot the next
/// time it opens.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> korm::Result<()> {
/// use korm::ResetMode;
/// let pool = korm::pool().layer("db", korm::layers::sqlite_memory()).open().await?;
/// let wipe = korm::reset(&pool, ResetMode::Layers); // nothing happens yet
/// let report = korm::danger(wipe).await?;
/// assert!(report.files.is_empty());
/// pool.close().await;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::PoolClosed`] on a closed pool; a layer's or depot's own error, after which the
/// layers and depots before it are wiped and the others are not (MySQL drops its tables one
/// by one: a failure there may leave some of that layer's tables).
pub fn reset(pool: &Pool, mode: ResetMode) -> Danger<ResetReport> {
    let pool = pool.clone();
    Danger::new(mode.what(), async move { run(&pool, mode).await })
}

async fn run(pool: &Pool, mode: ResetMode) -> Result<ResetReport> {
    if pool.is_closed() {
        return Err(Error::PoolClosed);
    }
    let mut report = ResetReport::default();
    for (ident, layer) in pool.layers() {
        let tables = layer.korm_tables();
        let dropped = if mode.drops_layers() {
            tables.drop_korm_tables().await?
        } else {
            match mode {
                ResetMode::Meta => tables.drop_tables(&[BACKUPS_TABLE, POOL_TABLE]).await?,
                ResetMode::MetaOnly => tables.drop_tables(&[POOL_TABLE]).await?,
                _ => Vec::new(),
            }
        };
        if !dropped.is_empty() {
            report.tables.insert(ident.clone(), dropped);
        }
    }
    if mode.empties_depots() {
        for (ident, depot) in pool.depots() {
            let keys = depot.list_all(&DepotKey::root()).await?;
            let count = keys.len();
            futures_util::stream::iter(keys)
                .map(|key| async move { depot.delete(&key).await })
                .buffer_unordered(DELETES_IN_FLIGHT)
                .try_collect::<Vec<()>>()
                .await?;
            if count > 0 {
                report.files.insert(ident.clone(), count);
            }
        }
    }
    tracing::warn!(
        tables = report.tables.values().map(Vec::len).sum::<usize>(),
        files = report.files.values().sum::<usize>(),
        "pool reset"
    );
    Ok(report)
}
