//! How to open a SQLite layer.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The path pool metadata records for an in-memory layer (SQLite's own name for one).
pub(crate) const MEMORY_PATH: &str = ":memory:";

/// Where a SQLite layer keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A database file, created if missing.
    File(PathBuf),
    /// A private in-memory database that lives as long as the pool.
    Memory,
}

/// SQLite's `synchronous` setting: how hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// Every commit is on disk before it returns (SQLite `FULL`). The default.
    #[default]
    Full,
    /// In WAL journal mode, a commit survives a crash of the process but the last commits may
    /// be lost if the machine loses power (SQLite `NORMAL`). Much faster for many small writes.
    Normal,
    /// No syncing at all: for tests and scratch data (SQLite `OFF`).
    Off,
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Off => "OFF",
        }
    }
}

/// Options of a SQLite layer: build with [`sqlite`] or [`sqlite_memory`], adjust with the
/// `with_*` methods, and give it to [`PoolBuilder::layer`](crate::PoolBuilder::layer).
///
/// ```
/// use std::time::Duration;
/// let layer = korm::layers::sqlite("cars.sqlite")
///     .with_busy_timeout(Duration::from_secs(10))
///     .with_synchronous(korm::layers::Synchronous::Normal);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub(crate) target: Target,
    pub(crate) busy_timeout: Duration,
    pub(crate) synchronous: Synchronous,
    pub(crate) wal_journal: bool,
}

/// A SQLite layer stored in a file (created if missing).
///
/// Defaults: a 5 s busy timeout (a database another process holds locked is waited for, not
/// failed), the WAL journal mode where it can be set (readers never block the writer), and
/// `synchronous = FULL`.
pub fn sqlite(path: impl AsRef<Path>) -> SqliteOptions {
    SqliteOptions {
        target: Target::File(path.as_ref().to_path_buf()),
        busy_timeout: Duration::from_secs(5),
        synchronous: Synchronous::Full,
        wal_journal: true,
    }
}

/// A private in-memory SQLite layer: it starts empty and is gone when the pool closes.
pub fn sqlite_memory() -> SqliteOptions {
    SqliteOptions {
        target: Target::Memory,
        ..sqlite("")
    }
}

impl SqliteOptions {
    /// How long a statement waits for a lock held by another connection or process before it
    /// fails with [`DbErrorKind::Busy`](crate::DbErrorKind::Busy).
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How hard a commit waits for the disk (see [`Synchronous`]).
    pub fn with_synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Whether to switch the file to the WAL journal mode at open (default `true`). If another
    /// process holds the database locked the switch is skipped with a warning, never an error.
    pub fn with_wal_journal(mut self, wal: bool) -> Self {
        self.wal_journal = wal;
        self
    }
}

impl From<SqliteOptions> for crate::layer::LayerSpec {
    fn from(options: SqliteOptions) -> Self {
        let source = match &options.target {
            Target::File(path) => path
                .to_str()
                .map(|path| crate::layer::LayerSource::Sqlite {
                    path: path.to_owned(),
                })
                .ok_or("its path is not UTF-8, which pool metadata (JSON) can not hold"),
            Target::Memory => Ok(crate::layer::LayerSource::Sqlite {
                path: MEMORY_PATH.to_owned(),
            }),
        };
        crate::layer::LayerSpec::new(options, super::SqliteLayer::open).with_source(source)
    }
}
