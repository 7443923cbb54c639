//! Pool metadata (M1-M5): a snapshot of the pool's configuration in `__korm_pool__` on one
//! of its layers, checked by every process that opens the pool, used to rebuild the pool
//! elsewhere ([`discover`]), and wiped with the pool's data by [`reset`].
//!
//! What [`PoolBuilder::open`](crate::PoolBuilder::open) does when the pool has
//! [`with_meta`](crate::PoolBuilder::with_meta), in this order:
//!
//! 1. **Describe** (before anything connects): every layer and depot says where its data
//!    lives (a SQLite path, a server URL, a folder, S3 options). A part that can not say (a
//!    sqlx pool handed over, an opened `Depot`) fails the open with
//!    [`Error::PoolConfig`]: its snapshot could not be checked or rebuilt.
//! 2. **Read**: once the layers are open, the snapshot row is read on *every* layer, as
//!    korm 1.5 does: a layer holding the snapshot of another pool is found too.
//! 3. **Write or check**: with no snapshot anywhere, this pool's is inserted on the meta
//!    layer; the insert is conditional, so of two processes opening a new pool at once one
//!    writes and the other checks what the first wrote. With a snapshot, it is compared with
//!    this pool ([`check`]: pool id, meta layer, each layer and depot by fingerprint, WAL,
//!    locks, backups); any difference, or snapshots on two layers, fails the open with
//!    [`Error::MetaMismatch`] listing every difference and the three ways out. A stored
//!    config that does not match its own fingerprint (altered) is [`Error::MetaInvalid`].
//! 4. **Reseal**: a matching snapshot whose secrets are not sealed with the current key
//!    (korm 1.5 wrote it, or the key was rotated) is written again under the current key
//!    (`created_at` kept).
//!
//! The format is korm 1.5's, field for field ([`snapshot`]); korm 1.5 and korm-rs read
//! each other's snapshots and compute the same fingerprints and pool id.

mod check;
mod discover;
mod reset;
pub(crate) mod snapshot;

use std::time::{SystemTime, UNIX_EPOCH};

pub use discover::discover;
pub use reset::{ResetMode, ResetReport, reset};

use crate::crypto::KeyRing;
use crate::depot::DepotSpec;
use crate::error::{Error, Result};
use crate::layer::{LayerHandle, LayerSpec};
use crate::lock::LockOptions;
use crate::wal::WalOptions;
use snapshot::{Current, LocksEntry, Stored, WalEntry};

/// The current time in epoch milliseconds (korm 1.5 keeps `created_at`/`updated_at` so).
fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a pool builder holds, as the snapshot describes it.
pub(crate) struct Parts<'a> {
    pub(crate) meta_layer: &'a str,
    pub(crate) layers: &'a [(String, LayerSpec)],
    pub(crate) depots: &'a [(String, DepotSpec)],
    pub(crate) wal: Option<&'a (String, WalOptions)>,
    pub(crate) locks: Option<&'a (String, LockOptions)>,
    pub(crate) backups: Option<&'a serde_json::Value>,
}

/// Where each layer's or depot's data lives, by ident; [`Error::PoolConfig`] naming the
/// first that can not say (`what` completes "records where every ... {ident} can not say").
fn sources<S, T, E: std::fmt::Display>(
    specs: &[(String, S)],
    what: &str,
    source: impl Fn(&S) -> std::result::Result<T, E>,
) -> Result<Vec<(String, T)>> {
    let mut out = Vec::with_capacity(specs.len());
    for (ident, spec) in specs {
        let source = source(spec).map_err(|why| Error::PoolConfig {
            reason: format!(
                "pool metadata (with_meta) records where every {what} {ident:?} can not say: \
                 {why}"
            ),
        })?;
        out.push((ident.clone(), source));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Step 1: this pool's snapshot, or [`Error::PoolConfig`] naming the layer or depot that
/// can not say where its data lives.
pub(crate) fn describe(parts: &Parts<'_>) -> Result<Current> {
    let layers = sources(parts.layers, "layer's data lives, and layer", |spec| {
        spec.source().cloned()
    })?;
    let depots = sources(
        parts.depots,
        "depot's files live, and depot",
        DepotSpec::source,
    )?;
    Ok(Current {
        pool_id: snapshot::pool_id(
            layers.iter().map(|(i, _)| i.as_str()),
            depots.iter().map(|(i, _)| i.as_str()),
        ),
        meta_layer: parts.meta_layer.to_owned(),
        layers,
        depots,
        wal: parts.wal.map(|(depot, o)| WalEntry::new(depot, o)),
        locks: parts.locks.map(|(layer, o)| LocksEntry::new(layer, o)),
        backups: parts.backups.cloned(),
    })
}

/// Steps 2 to 4, on the opened layers.
///
/// # Errors
/// [`Error::MetaMismatch`] when a stored snapshot differs from `current`,
/// [`Error::MetaInvalid`] when one can not be read, [`Error::Key`] when no key ring can be
/// loaded (sealing needs one), and the layers' own errors.
pub(crate) async fn ensure(
    layers: &[(String, LayerHandle)],
    current: &Current,
    ring: &crate::crypto::RingChoice,
) -> Result<()> {
    // A pool of SQLite files and folders seals nothing: it needs no key (and a process
    // without one gets no temporary-key warning for it). A throwaway ring then opens no
    // stored secret, and none can match this pool's configuration anyway (a stored url or
    // S3 entry differs in type from a path or a folder), so nothing is sealed with it.
    let ring = if current.seals_anything() {
        ring.get()?
    } else {
        std::sync::Arc::new(KeyRing::new(crate::crypto::EncryptionKey::generate()))
    };
    let Some((_, meta)) = layers.iter().find(|(i, _)| *i == current.meta_layer) else {
        return Err(Error::PoolConfig {
            reason: format!(
                "with_meta names layer {:?}, which the pool does not have",
                current.meta_layer
            ),
        });
    };
    let mut found = Vec::new();
    for (ident, layer) in layers {
        if let Some(row) = layer.korm_tables().read_pool_row().await? {
            found.push((ident.clone(), row));
        }
    }
    if found.is_empty() {
        // Sealed under a temporary key (no KORM_ENCRYPTION_KEY, outside production), the
        // shared snapshot's URLs and S3 options would open for no other process, and stay
        // so (a matching snapshot is never written again): left to a process with a key.
        if current.seals_anything() && ring.is_temporary() {
            tracing::warn!(layer = %current.meta_layer,
                "korm: pool metadata not written: it would seal this pool's URLs with a \
                 temporary key (set KORM_ENCRYPTION_KEY)");
            return Ok(());
        }
        let text = current.to_json(&ring);
        if meta
            .korm_tables()
            .insert_pool_row(&text, epoch_ms())
            .await?
        {
            tracing::debug!(layer = %current.meta_layer, pool_id = %current.pool_id, "pool metadata written");
            return Ok(());
        }
        // Another process wrote its snapshot first: this pool must match it.
        match meta.korm_tables().read_pool_row().await? {
            Some(row) => found.push((current.meta_layer.clone(), row)),
            None => {
                return Err(Error::MetaInvalid {
                    layer: current.meta_layer.clone(),
                    reason: "the snapshot row vanished while the pool opened (a reset ran at \
                             the same time?): open the pool again"
                        .to_owned(),
                });
            }
        }
    }
    let mut differences: Vec<String> = Vec::new();
    let mut parsed = Vec::with_capacity(found.len());
    for (ident, row) in &found {
        let stored = Stored::parse(&row.config)
            .and_then(|stored| stored.verify(&ring).map(|()| stored))
            .map_err(|reason| Error::MetaInvalid {
                layer: ident.clone(),
                reason,
            })?;
        for difference in check::differences(current, &stored, &ring) {
            if !differences.contains(&difference) {
                differences.push(difference);
            }
        }
        parsed.push(stored);
    }
    let holders: Vec<&str> = found.iter().map(|(i, _)| i.as_str()).collect();
    if found.len() > 1 {
        differences.push(format!(
            "pool metadata is on several layers ({}): a pool keeps it on one",
            holders.join(", ")
        ));
    }
    if !differences.is_empty() {
        return Err(Error::MetaMismatch {
            layer: holders.join(", "),
            differences,
        });
    }
    // One snapshot, on the meta layer (a snapshot elsewhere names another meta layer).
    if parsed[0].needs_reseal(&ring) {
        reseal(meta, current, &parsed[0], &ring).await?;
    }
    Ok(())
}

/// Step 4: writes the matching snapshot again with its secrets sealed under the current key.
async fn reseal(
    meta: &LayerHandle,
    current: &Current,
    stored: &Stored,
    ring: &KeyRing,
) -> Result<()> {
    let mut fresh = current.clone();
    fresh.backups = stored.backups.clone();
    meta.korm_tables()
        .update_pool_row(&fresh.to_json(ring), epoch_ms())
        .await?;
    tracing::debug!(layer = %current.meta_layer, "pool metadata sealed again with the current key");
    Ok(())
}
