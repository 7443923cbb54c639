//! Pools: named layers opened together.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::depot::{Depot, DepotSpec};
use crate::error::{Error, Result};
use crate::layer::{LayerHandle, LayerSpec};
use crate::lock::{self, LockOptions, Locker, Locks};
use crate::rn::{Rn, validate_layer_ident};
use crate::wal::{WalLog, WalOptions};

/// Builds a [`Pool`]: name its layers and depots, then [`open`](PoolBuilder::open) it.
///
/// Nothing is opened or validated until `open`, which checks everything at once.
#[derive(Debug, Default)]
#[must_use = "a pool builder does nothing until open() is awaited"]
pub struct PoolBuilder {
    layers: Vec<(String, LayerSpec)>,
    depots: Vec<(String, DepotSpec)>,
    locks: Option<(String, LockOptions)>,
    lock_timeout: Option<Duration>,
    wal: Option<(String, WalOptions)>,
    meta: Option<String>,
    /// A `backups` section of a discovered snapshot, kept so the pool still matches it.
    stored_backups: Option<serde_json::Value>,
    /// The pool's own key ring; the process ring when `None`.
    key_ring: Option<crate::crypto::KeyRing>,
}

/// Starts building a pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> korm::Result<()> {
/// let pool = korm::pool()
///     .layer("cardb", korm::layers::sqlite_memory())
///     .layer("userdb", korm::layers::sqlite_memory())
///     .open()
///     .await?;
/// assert_eq!(pool.layer_names().collect::<Vec<_>>(), ["cardb", "userdb"]);
/// pool.close().await;
/// # Ok(()) }
/// ```
pub fn pool() -> PoolBuilder {
    PoolBuilder::default()
}

impl PoolBuilder {
    /// Adds a layer under a name. RNs choose it with the `from` mod
    /// (`[rn][from::cardb]:cars:suv:*`); with a single layer the mod may be omitted.
    pub fn layer(mut self, ident: impl Into<String>, layer: impl Into<LayerSpec>) -> Self {
        self.layers.push((ident.into(), layer.into()));
        self
    }

    /// Adds a depot (a file store) under a name. Depot RNs choose it with the `depot` mod
    /// (`[rn][depot::files]:invoices:fred:invoice-001.txt`). See [`depots`](crate::depots).
    pub fn depot(mut self, ident: impl Into<String>, depot: impl Into<DepotSpec>) -> Self {
        self.depots.push((ident.into(), depot.into()));
        self
    }

    /// Keeps locks in `__korm_locks__` on the layer named `layer`, so that every process
    /// sharing it serializes writes per RN (L3): each write, tx and [`Locker`] acquire takes
    /// the in-process lock and then the shared row, and gets a fencing token. See
    /// [`LockOptions`] for the TTL, retry, refresh and owner id.
    pub fn with_locks(mut self, layer: impl Into<String>, options: LockOptions) -> Self {
        self.locks = Some((layer.into(), options));
        self
    }

    /// Keeps a write-ahead log in the depot named `depot` (W1): every write's record is
    /// durable there before the write is applied, and a write a crash left half-applied is
    /// undone and redone when the pool next opens. See [`WalOptions`].
    pub fn with_wal(mut self, depot: impl Into<String>, options: WalOptions) -> Self {
        self.wal = Some((depot.into(), options));
        self
    }

    /// Keeps the pool's metadata in `__korm_pool__` on the layer named `layer` (M1), as
    /// korm 1.5 does: a snapshot of where every layer's and depot's data lives (credentials
    /// sealed with the encryption key), and of the WAL and lock settings.
    ///
    /// When the pool opens, every layer is read for a snapshot: with none, this pool's is
    /// written; with one, this pool must match it, or the open fails with
    /// [`Error::MetaMismatch`] saying what differs and how to go on (configure the pool as
    /// stored, [`discover`](crate::discover) it, or [`reset`](crate::reset) it). So every
    /// process sharing the layers uses them alike. Each layer and depot must be built from
    /// options that say where it is (a URL, a path; not a sqlx pool handed over, nor an
    /// opened `Depot`). See `docs/design.md` for the format.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> korm::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("cars.sqlite");
    /// let pool = korm::pool()
    ///     .layer("cardb", korm::layers::sqlite(&path))
    ///     .with_meta("cardb")
    ///     .open()
    ///     .await?;
    /// pool.close().await;
    /// // The same layer under another name is another pool: refused.
    /// let other = korm::pool()
    ///     .layer("cars", korm::layers::sqlite(&path))
    ///     .with_meta("cars")
    ///     .open()
    ///     .await;
    /// assert!(matches!(other, Err(korm::Error::MetaMismatch { .. })));
    /// # Ok(()) }
    /// ```
    pub fn with_meta(mut self, layer: impl Into<String>) -> Self {
        self.meta = Some(layer.into());
        self
    }

    /// Keeps a discovered snapshot's `backups` section (korm-rs schedules backups outside the
    /// pool's configuration, with `backup::schedule`).
    pub(crate) fn with_stored_backups(mut self, backups: Option<serde_json::Value>) -> Self {
        self.stored_backups = backups;
        self
    }

    /// How long a write or [`Locker::acquire`] waits for a lock before
    /// [`Error::LockTimeout`] (30 s by default).
    pub fn with_lock_timeout(mut self, wait: Duration) -> Self {
        self.lock_timeout = Some(wait);
        self
    }

    /// Seals and opens this pool's [`Encrypted`](crate::Encrypted) fields, its pool metadata
    /// secrets and its WAL's MAC key with `ring`, instead of the process ring
    /// ([`korm::crypto`](crate::crypto): installed, or from `KORM_ENCRYPTION_KEY`). Two pools in
    /// one process can so hold two keys.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Patient { ssn: korm::Encrypted<String> }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> korm::Result<()> {
    /// use korm::crypto::{EncryptionKey, KeyRing};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = dir.path().join("clinic.sqlite");
    /// let key = EncryptionKey::generate();
    /// let clinic = korm::pool()
    ///     .layer("clinic", korm::layers::sqlite(&file))
    ///     .key_ring(KeyRing::new(EncryptionKey::from_hex(&key.to_hex())?))
    ///     .open()
    ///     .await?;
    /// let rn: korm::Rn<Patient> = "[rn]:patients:open:*".parse()?;
    /// let wilma = korm::item::<Patient>(&clinic)
    ///     .from_data(rn.clone(), Patient { ssn: korm::Encrypted::new("078-05-1120".into()) })?
    ///     .create()
    ///     .await?;
    /// clinic.close().await;
    ///
    /// // Another pool on the same file with another key can not open the field.
    /// let stranger = korm::pool()
    ///     .layer("clinic", korm::layers::sqlite(&file))
    ///     .key_ring(KeyRing::new(EncryptionKey::generate()))
    ///     .open()
    ///     .await?;
    /// let refused = korm::item::<Patient>(&stranger).load(wilma.rn().clone()).get().await;
    /// assert!(matches!(refused, Err(korm::Error::Decode { .. })));
    /// # stranger.close().await;
    /// # Ok(()) }
    /// ```
    pub fn key_ring(mut self, ring: crate::crypto::KeyRing) -> Self {
        self.key_ring = Some(ring);
        self
    }

    /// Opens every layer, then every depot, then checks or writes the pool metadata (with
    /// [`with_meta`](PoolBuilder::with_meta)). A pool that is returned has passed the check
    /// (korm 1.5's `ensureMetaReady` has nothing left to wait for).
    ///
    /// # Errors
    /// [`Error::PoolConfig`] for no layer, a name given twice, or (with metadata) a layer or
    /// depot that can not say where its data lives; [`Error::InvalidIdentifier`] for a layer
    /// or depot name outside `[A-Za-z0-9_-]{1,64}`; the layer's own error when one can not
    /// be opened, and [`Error::Depot`] when a depot can not (an S3 bucket that can not be
    /// created); [`Error::MetaMismatch`] or [`Error::MetaInvalid`] when the stored metadata
    /// does not match or can not be read. What was already opened is closed again.
    pub async fn open(self) -> Result<Pool> {
        if self.layers.is_empty() {
            return Err(Error::PoolConfig {
                reason: "a pool needs at least one layer".to_owned(),
            });
        }
        for (i, (ident, _)) in self.layers.iter().enumerate() {
            validate_layer_ident(ident)?;
            if self.layers[..i].iter().any(|(other, _)| other == ident) {
                return Err(Error::PoolConfig {
                    reason: format!("layer {ident:?} is named twice"),
                });
            }
        }
        for (i, (ident, _)) in self.depots.iter().enumerate() {
            validate_layer_ident(ident).map_err(|_| Error::InvalidIdentifier {
                what: "depot",
                name: crate::error::clip(ident),
                reason: "must be 1 to 64 characters matching [A-Za-z0-9_-]".to_owned(),
            })?;
            if self.depots[..i].iter().any(|(other, _)| other == ident) {
                return Err(Error::PoolConfig {
                    reason: format!("depot {ident:?} is named twice"),
                });
            }
        }
        if let Some((ident, options)) = &self.locks {
            options.validate()?;
            if !self.layers.iter().any(|(name, _)| name == ident) {
                return Err(Error::PoolConfig {
                    reason: format!(
                        "with_locks names layer {ident:?}, which the pool does not have"
                    ),
                });
            }
        }
        let meta = match &self.meta {
            Some(ident) => {
                if !self.layers.iter().any(|(name, _)| name == ident) {
                    return Err(Error::PoolConfig {
                        reason: format!(
                            "with_meta names layer {ident:?}, which the pool does not have"
                        ),
                    });
                }
                Some(crate::meta::describe(&crate::meta::Parts {
                    meta_layer: ident,
                    layers: &self.layers,
                    depots: &self.depots,
                    wal: self.wal.as_ref(),
                    locks: self.locks.as_ref(),
                    backups: self.stored_backups.as_ref(),
                })?)
            }
            None => None,
        };
        let ring = self
            .key_ring
            .map(crate::crypto::RingChoice::own)
            .unwrap_or_default();
        let pool_id = crate::meta::snapshot::pool_id(
            self.layers.iter().map(|(i, _)| i.as_str()),
            self.depots.iter().map(|(i, _)| i.as_str()),
        );
        let mut opened: Vec<(String, LayerHandle)> = Vec::with_capacity(self.layers.len());
        for (ident, spec) in self.layers {
            let layer = spec.open(&ident).await;
            match layer {
                Ok(layer) => opened.push((ident, LayerHandle::new(layer))),
                Err(e) => {
                    for (_, layer) in &opened {
                        layer.close().await;
                    }
                    return Err(e);
                }
            }
        }
        if let Some((ident, _)) = &self.wal
            && !self.depots.iter().any(|(name, _)| name == ident)
        {
            for (_, layer) in &opened {
                layer.close().await;
            }
            return Err(Error::PoolConfig {
                reason: format!("with_wal names depot {ident:?}, which the pool does not have"),
            });
        }
        let mut depots: Vec<(String, Arc<dyn Depot>)> = Vec::with_capacity(self.depots.len());
        let mut wal_root = None;
        for (ident, spec) in self.depots {
            match spec.open(&ident).await {
                Ok((depot, root)) => {
                    if self.wal.as_ref().is_some_and(|(name, _)| *name == ident) {
                        wal_root = root;
                    }
                    depots.push((ident, depot));
                }
                Err(e) => {
                    for (_, depot) in &depots {
                        depot.close().await;
                    }
                    for (_, layer) in &opened {
                        layer.close().await;
                    }
                    return Err(e);
                }
            }
        }
        // The WAL's options are checked before the pool's metadata is written: a namespace
        // refused here must not leave a snapshot that refuses the corrected one.
        let wal = match self.wal {
            Some((ident, options)) => {
                let log = open_wal(&depots, &ident, wal_root, options, &pool_id, &ring);
                match log {
                    Ok(log) => Some(log),
                    Err(e) => {
                        close_all(&opened, &depots).await;
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        if let Some(current) = &meta
            && let Err(e) = crate::meta::ensure(&opened, current, &ring).await
        {
            close_all(&opened, &depots).await;
            return Err(e);
        }
        let shared = self.locks.and_then(|(ident, options)| {
            let layer = opened.iter().find(|(name, _)| *name == ident)?;
            Some((layer.1.clone(), options))
        });
        let locks = Locks::new(shared, self.lock_timeout.unwrap_or(lock::DEFAULT_WAIT));
        let pool = Pool {
            inner: Arc::new(PoolInner {
                layers: opened,
                depots,
                closed: AtomicBool::new(false),
                writing: tokio::sync::RwLock::new(()),
                locks,
                wal,
                pool_id,
                meta_layer: self.meta,
                ring,
            }),
        };
        // Recovery runs before anyone else has the pool (W3).
        if let Some(log) = pool.wal_log() {
            match crate::wal::Wal::new(&pool, log).recover().await {
                Ok(report) => log.set_opened(report),
                Err(e) => {
                    pool.close().await;
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }
}

fn open_wal(
    depots: &[(String, Arc<dyn Depot>)],
    ident: &str,
    root: Option<std::path::PathBuf>,
    options: WalOptions,
    pool_id: &str,
    ring: &crate::crypto::RingChoice,
) -> Result<WalLog> {
    let depot = depots
        .iter()
        .find(|(name, _)| name == ident)
        .map(|(_, depot)| Arc::clone(depot))
        .ok_or_else(|| Error::PoolConfig {
            reason: format!("with_wal names depot {ident:?}, which the pool does not have"),
        })?;
    let pool_id = options
        .pool_id
        .clone()
        .unwrap_or_else(|| pool_id.to_owned());
    let ring = ring.get()?;
    WalLog::new(depot, root, options, pool_id, &ring, true)
}

async fn close_all(layers: &[(String, LayerHandle)], depots: &[(String, Arc<dyn Depot>)]) {
    for (_, depot) in depots {
        depot.close().await;
    }
    for (_, layer) in layers {
        layer.close().await;
    }
}

/// An open pool of layers and depots. Cheap to clone: clones share the same connections.
///
/// Call [`close`](Pool::close) to close every layer and wait for queued work to finish. A
/// program that forgets it still exits cleanly: connections close when the last clone drops.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    layers: Vec<(String, LayerHandle)>,
    depots: Vec<(String, Arc<dyn Depot>)>,
    closed: AtomicBool,
    /// Held (shared) by each write plan from its locks to its end; [`Pool::close`] takes it
    /// whole, so it closes nothing while a plan is part way through its layers.
    writing: tokio::sync::RwLock<()>,
    locks: Locks,
    wal: Option<WalLog>,
    /// korm 1.5's pool id (see [`Pool::pool_id`]).
    pool_id: String,
    /// The layer holding the pool metadata, when the pool keeps it.
    meta_layer: Option<String>,
    /// The key ring encrypted fields are sealed and opened with.
    ring: crate::crypto::RingChoice,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("layers", &self.layer_names().collect::<Vec<_>>())
            .field("depots", &self.depot_names().collect::<Vec<_>>())
            .field("meta_layer", &self.inner.meta_layer)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Pool {
    /// The names of the pool's layers, in the order they were added.
    pub fn layer_names(&self) -> impl Iterator<Item = &str> {
        self.inner.layers.iter().map(|(name, _)| name.as_str())
    }

    /// The names of the pool's depots, in the order they were added.
    pub fn depot_names(&self) -> impl Iterator<Item = &str> {
        self.inner.depots.iter().map(|(name, _)| name.as_str())
    }

    /// The pool's id: korm 1.5's, the first 16 hex characters of SHA-256 of
    /// `{"layers":[…],"depots":[…]}` (the names, sorted), so the same layer and depot names
    /// give the same id in korm 1.5 and here. With metadata it is the snapshot's `poolId`
    /// (the open checked they agree); the WAL keeps its records under it.
    pub fn pool_id(&self) -> &str {
        &self.inner.pool_id
    }

    /// The layer holding the pool metadata, when the pool keeps it
    /// ([`PoolBuilder::with_meta`]).
    pub fn meta_layer(&self) -> Option<&str> {
        self.inner.meta_layer.as_deref()
    }

    /// Marks a write plan in flight until the guard drops ([`Pool::close`] waits for it);
    /// `None` once the pool is closed.
    pub(crate) async fn writing(&self) -> Option<tokio::sync::RwLockReadGuard<'_, ()>> {
        let guard = self.inner.writing.read().await;
        (!self.is_closed()).then_some(guard)
    }

    /// Whether this is the last clone of the pool (a background task holding it then stops,
    /// so dropping the application's pool still closes it).
    pub(crate) fn is_last_clone(&self) -> bool {
        Arc::strong_count(&self.inner) == 1
    }

    /// The layers, in the order they were added.
    pub(crate) fn layers(&self) -> &[(String, LayerHandle)] {
        &self.inner.layers
    }

    /// The depots, in the order they were added.
    pub(crate) fn depots(&self) -> &[(String, Arc<dyn Depot>)] {
        &self.inner.depots
    }

    pub(crate) fn depot_named(&self, name: &str) -> Option<&Arc<dyn Depot>> {
        self.inner
            .depots
            .iter()
            .find(|(ident, _)| ident == name)
            .map(|(_, depot)| depot)
    }

    /// Closes every layer and depot, letting work already queued finish: a write plan that
    /// holds its locks already runs to its end (every layer, or its undo) before anything
    /// closes, so a close never leaves a plan applied on one layer and not another. Later
    /// operations fail with [`Error::PoolClosed`]. Closing twice is harmless.
    pub async fn close(&self) {
        if self.is_closed() {
            return;
        }
        // Plans part way through their layers finish first, with the pool still open to them
        // (an undo, a WAL rollback routes again); those waiting to start see `closed` once
        // this guard is let go. Cancelled while it waits, the close has changed nothing.
        let writing = self.inner.writing.write().await;
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        drop(writing);
        // The WAL's record slots, then shared lock rows, while the layers are still open.
        if let Some(log) = self.wal_log() {
            log.close_files();
        }
        self.inner.locks.close().await;
        for (_, layer) in &self.inner.layers {
            layer.close().await;
        }
        for (_, depot) in &self.inner.depots {
            depot.close().await;
        }
    }

    /// How many read statements (selects, fetches by id, reference-prefix scans) the layer
    /// named `layer` has sent since the pool opened; `None` for a layer the pool does not
    /// have. Reference resolution is batched per layer and table, and this is how a program
    /// (or a test) can see it.
    pub fn read_statements(&self, layer: &str) -> Option<u64> {
        self.inner
            .layers
            .iter()
            .find(|(name, _)| name == layer)
            .map(|(_, l)| l.read_statements())
    }

    /// The read statements sent to all layers since the pool opened (for tracing spans).
    pub(crate) fn read_statements_total(&self) -> u64 {
        self.inner
            .layers
            .iter()
            .map(|(_, l)| l.read_statements())
            .sum()
    }

    /// Locks on RNs, held around a program's own read-modify-write cycles (see [`Locker`]).
    pub fn locker(&self) -> Locker {
        Locker::new(self.clone())
    }

    pub(crate) fn locks(&self) -> &Locks {
        &self.inner.locks
    }

    /// The write-ahead log, with [`with_wal`](PoolBuilder::with_wal): its records, and
    /// recovery on demand.
    pub fn wal(&self) -> Option<crate::wal::Wal<'_>> {
        self.wal_log().map(|log| crate::wal::Wal::new(self, log))
    }

    pub(crate) fn wal_log(&self) -> Option<&WalLog> {
        self.inner.wal.as_ref()
    }

    /// Whether `other` is a clone of this pool.
    pub(crate) fn same_as(&self, other: &Pool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The key ring the pool's encrypted fields are sealed and opened with.
    pub(crate) fn ring(&self) -> &crate::crypto::RingChoice {
        &self.inner.ring
    }

    /// Whether [`close`](Pool::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// The layer an item or collection RN lives in: the one its `from` mod names, or the only
    /// layer of a single-layer pool.
    pub(crate) fn route<T>(&self, rn: &Rn<T>) -> Result<&LayerHandle> {
        if self.is_closed() {
            return Err(Error::PoolClosed);
        }
        let layers = &self.inner.layers;
        match rn.layer() {
            Some(name) => layers
                .iter()
                .find(|(ident, _)| ident == name)
                .map(|(_, layer)| layer)
                .ok_or_else(|| Error::UnknownLayer {
                    layer: name.to_owned(),
                    rn: rn.to_string(),
                    layers: self.layer_list(),
                }),
            None if layers.len() == 1 => Ok(&layers[0].1),
            None => Err(Error::LayerNotNamed {
                rn: rn.to_string(),
                layers: self.layer_list(),
            }),
        }
    }

    fn layer_list(&self) -> String {
        self.layer_names().collect::<Vec<_>>().join(", ")
    }
}
