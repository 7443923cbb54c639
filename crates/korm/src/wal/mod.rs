//! The write-ahead log (W1-W6): a record of every write, durable in a depot before the write
//! is applied, so a crash between layers is undone and redone at the next open.

/// How the write-ahead log runs: see [`PoolBuilder::with_wal`](crate::PoolBuilder::with_wal).
///
/// ```
/// use korm::{WalOptions, WalRetention};
/// let wal = WalOptions::new("orders")
///     .with_retention(WalRetention::Delete)
///     .with_depot_ops(korm::WalDepotOps::Record);
/// # let _ = wal;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// The namespace of the records in the WAL depot (`__korm_wal__/{namespace}/{poolId}/`),
    /// korm 1.5's `walNamespace`.
    pub namespace: String,
    /// What happens to a record once its write is done.
    pub retention: WalRetention,
    /// Whether depot file writes are recorded too, with their payloads.
    pub depot_ops: WalDepotOps,
    /// Whether records without a MAC (korm 1.5's) are recovered: only to migrate a pool from
    /// korm 1.5; off by default, such a record is refused and reported.
    pub accept_unsigned: bool,
}

/// What happens to a WAL record once its write is done (korm 1.5's `retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WalRetention {
    /// Moved to `done/` and kept, for audit.
    Keep,
    /// Removed.
    #[default]
    Delete,
}

/// Whether depot file writes are in the WAL (korm 1.5's `depotOps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WalDepotOps {
    /// Not recorded: a crash may leave a file written without its row, or the reverse.
    Off,
    /// Recorded with their payloads (`payloads/{recordId}/{n}/after.bin`, `before.bin`) and
    /// replayed by recovery.
    #[default]
    Record,
}

impl WalOptions {
    /// Options with `namespace` and the defaults: retention delete, depot ops recorded,
    /// unsigned records refused.
    pub fn new(namespace: impl Into<String>) -> Self {
        WalOptions {
            namespace: namespace.into(),
            retention: WalRetention::default(),
            depot_ops: WalDepotOps::default(),
            accept_unsigned: false,
        }
    }

    /// Sets the retention.
    pub fn with_retention(mut self, retention: WalRetention) -> Self {
        self.retention = retention;
        self
    }

    /// Sets whether depot ops are recorded.
    pub fn with_depot_ops(mut self, depot_ops: WalDepotOps) -> Self {
        self.depot_ops = depot_ops;
        self
    }

    /// Accepts records without a MAC (written by korm 1.5), to migrate a pool.
    pub fn with_accept_unsigned(mut self, accept: bool) -> Self {
        self.accept_unsigned = accept;
        self
    }
}
