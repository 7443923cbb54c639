//! Rebuilding a pool from its snapshot (M2).

use serde_json::Value;

use super::snapshot::{Stored, StoredConfig, StoredEntry, altered, fingerprint, layer_value};
use crate::crypto::KeyRing;
use crate::depot::DepotSpec;
use crate::error::{Error, Result};
use crate::layer::LayerSpec;
use crate::pool::PoolBuilder;
use crate::wal::{WalDepotOps, WalOptions, WalRetention};

/// The name the layer given to [`discover`] is opened under while its snapshot is read.
const DISCOVERING: &str = "discover";

/// Reads the pool snapshot from `layer` and rebuilds the pool it describes: every layer and
/// depot (SQLite, PostgreSQL, MySQL/MariaDB layers; local and S3 depots), the WAL, the
/// shared locks and the meta layer. Open the builder to use the pool.
///
/// It returns a [`PoolBuilder`] rather than an open pool (korm 1.5's `discover` opens it):
/// nothing stays connected between reading the snapshot and opening, settings the snapshot
/// does not hold can still be added ([`with_lock_timeout`](PoolBuilder::with_lock_timeout)),
/// and [`open`](PoolBuilder::open) checks the rebuilt pool against the snapshot like any
/// other, so a snapshot changed in between is caught there.
///
/// Stored credentials (server URLs, S3 options) are sealed with the pool's encryption key:
/// discovery needs the same `KORM_ENCRYPTION_KEY` (or that key among
/// `KORM_ENCRYPTION_KEYS_OLD`). Each config is checked against its stored fingerprint, so an
/// altered snapshot is refused rather than followed. Layers and depots come back with their
/// default options (the snapshot records where data lives, not timeouts or pool sizes),
/// except the layer given here when it is the meta layer: it is used as given.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> korm::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # korm::crypto::install(korm::crypto::KeyRing::new(korm::crypto::EncryptionKey::generate()));
/// let cars = dir.path().join("cars.sqlite");
/// let pool = korm::pool()
///     .layer("cardb", korm::layers::sqlite(&cars))
///     .depot("files", korm::depots::local(dir.path().join("files")))
///     .with_meta("cardb")
///     .open()
///     .await?;
/// pool.close().await;
///
/// // Elsewhere, knowing only where the meta layer is:
/// let pool = korm::discover(korm::layers::sqlite(&cars)).await?.open().await?;
/// assert_eq!(pool.depot_names().collect::<Vec<_>>(), ["files"]);
/// pool.close().await;
/// # Ok(()) }
/// ```
///
/// # Errors
/// The layer's own error when it can not be opened or read; [`Error::MetaNotFound`] when it
/// holds no snapshot; [`Error::MetaInvalid`] for a snapshot that can not be read, was
/// altered, or describes what this build can not open (a backend whose cargo feature is
/// off, korm 1.5's connection-options layers); [`Error::MetaDecrypt`] when a stored
/// credential does not decrypt with the key ring (a wrong key); [`Error::Key`] when no key
/// ring can be loaded.
pub async fn discover(layer: impl Into<LayerSpec>) -> Result<PoolBuilder> {
    let given = layer.into();
    let opened = given.open(DISCOVERING).await?;
    let row = opened.korm_tables().read_pool_row().await;
    opened.close().await;
    let row = row?.ok_or(Error::MetaNotFound)?;
    let stored = Stored::parse(&row.config).map_err(|reason| Error::MetaInvalid {
        layer: DISCOVERING.to_owned(),
        reason,
    })?;
    let holder = stored
        .meta_layer
        .clone()
        .unwrap_or_else(|| DISCOVERING.to_owned());
    let ring = crate::crypto::key_ring()?;
    rebuild(&stored, &holder, &ring, Some(given))
}

/// The builder a snapshot describes. `given` (the layer discovery read) replaces the meta
/// layer's rebuilt spec when it points at the same place.
pub(crate) fn rebuild(
    stored: &Stored,
    holder: &str,
    ring: &KeyRing,
    given: Option<LayerSpec>,
) -> Result<PoolBuilder> {
    let invalid = |reason: String| Error::MetaInvalid {
        layer: holder.to_owned(),
        reason,
    };
    let mut builder = crate::pool();
    for entry in &stored.layers {
        crate::rn::validate_layer_ident(&entry.ident).map_err(|_| {
            invalid(format!(
                "layer name {:?} is not a valid name",
                crate::error::clip(&entry.ident)
            ))
        })?;
        let value = open_entry("layer", entry, holder, ring)?;
        let given_here = given.as_ref().filter(|spec| {
            stored.meta_layer.as_deref() == Some(entry.ident.as_str())
                && spec
                    .source()
                    .is_ok_and(|source| fingerprint(&layer_value(source)) == entry.fingerprint)
        });
        let spec = match given_here {
            Some(spec) => spec.clone(),
            None => layer_spec(entry, &value).map_err(invalid)?,
        };
        builder = builder.layer(entry.ident.clone(), spec);
    }
    for entry in &stored.depots {
        crate::rn::validate_layer_ident(&entry.ident).map_err(|_| {
            invalid(format!(
                "depot name {:?} is not a valid name",
                crate::error::clip(&entry.ident)
            ))
        })?;
        let value = open_entry("depot", entry, holder, ring)?;
        builder = builder.depot(
            entry.ident.clone(),
            depot_spec(entry, &value).map_err(invalid)?,
        );
    }
    if let Some(wal) = &stored.wal {
        let retention = match wal.retention.as_str() {
            "keep" => WalRetention::Keep,
            "delete" => WalRetention::Delete,
            _ => {
                return Err(invalid(
                    "wal.retention is neither keep nor delete".to_owned(),
                ));
            }
        };
        let depot_ops = match wal.depot_ops.as_str() {
            "off" => WalDepotOps::Off,
            "record" => WalDepotOps::Record,
            _ => return Err(invalid("wal.depotOps is neither off nor record".to_owned())),
        };
        builder = builder.with_wal(
            wal.depot.clone(),
            WalOptions::new(wal.namespace.clone())
                .with_retention(retention)
                .with_depot_ops(depot_ops),
        );
    }
    if let Some(locks) = &stored.locks {
        let ms = std::time::Duration::from_millis;
        builder = builder.with_locks(
            locks.layer.clone(),
            crate::LockOptions::new()
                .with_ttl(ms(locks.ttl_ms))
                .with_retry(ms(locks.retry_ms))
                .with_refresh(ms(locks.refresh_ms)),
        );
    }
    if let Some(layer) = &stored.meta_layer {
        builder = builder.with_meta(layer.clone());
    }
    Ok(builder.with_stored_backups(stored.backups.clone()))
}

/// The value an entry's config holds (a sealed one opened), checked against its stored
/// fingerprint: a config that does not match was altered, and is not followed.
fn open_entry(noun: &str, entry: &StoredEntry, holder: &str, ring: &KeyRing) -> Result<Value> {
    let value = match &entry.config {
        StoredConfig::Path(path) | StoredConfig::Root(path) => Value::String(path.clone()),
        StoredConfig::Sealed { envelope, .. } => crate::crypto::open_value(ring, envelope)
            .map_err(|e| Error::MetaDecrypt {
                layer: holder.to_owned(),
                entry: format!("{noun} {:?}", crate::error::clip(&entry.ident)),
                reason: e.to_string(),
            })?,
    };
    if fingerprint(&value) != entry.fingerprint {
        return Err(Error::MetaInvalid {
            layer: holder.to_owned(),
            reason: altered(noun, &entry.ident),
        });
    }
    Ok(value)
}

#[cfg_attr(
    all(
        feature = "sqlite",
        feature = "postgres",
        feature = "mysql",
        feature = "s3"
    ),
    allow(dead_code)
)]
fn missing_feature(what: &str, feature: &str) -> String {
    format!("{what} needs korm's `{feature}` cargo feature, which this build leaves out")
}

/// A layer spec from a stored entry: its type, mode and (opened) value.
fn layer_spec(entry: &StoredEntry, value: &Value) -> std::result::Result<LayerSpec, String> {
    let ident = crate::error::clip(&entry.ident);
    let text = || {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the config of layer {ident:?} is not a string"))
    };
    match (entry.kind.as_str(), &entry.config) {
        ("sqlite", StoredConfig::Path(_)) => {
            let path = text()?;
            #[cfg(feature = "sqlite")]
            return Ok(if path == crate::layer::sqlite::MEMORY_PATH {
                crate::layers::sqlite_memory().into()
            } else {
                crate::layers::sqlite(path).into()
            });
            #[cfg(not(feature = "sqlite"))]
            return Err({
                let _ = path;
                missing_feature(&format!("layer {ident:?} (sqlite)"), "sqlite")
            });
        }
        ("pg", StoredConfig::Sealed { mode, .. }) if mode == "url" => {
            let url = text()?;
            #[cfg(feature = "postgres")]
            return Ok(crate::layers::postgres(url).into());
            #[cfg(not(feature = "postgres"))]
            return Err({
                let _ = url;
                missing_feature(&format!("layer {ident:?} (pg)"), "postgres")
            });
        }
        ("mysql", StoredConfig::Sealed { mode, .. }) if mode == "url" => {
            let url = text()?;
            #[cfg(feature = "mysql")]
            return Ok(crate::layers::mysql(url).into());
            #[cfg(not(feature = "mysql"))]
            return Err({
                let _ = url;
                missing_feature(&format!("layer {ident:?} (mysql)"), "mysql")
            });
        }
        ("pg" | "mysql", StoredConfig::Sealed { mode, .. }) if mode == "options" => Err(format!(
            "layer {ident:?} is stored as connection options (korm 1.5's mode \"options\"), and \
             korm-rs connects by url: reopen that pool in korm 1.5 with a url layer"
        )),
        _ => Err(format!(
            "layer {ident:?} has a type and mode korm does not know"
        )),
    }
}

/// A depot spec from a stored entry.
fn depot_spec(entry: &StoredEntry, value: &Value) -> std::result::Result<DepotSpec, String> {
    let ident = crate::error::clip(&entry.ident);
    match (entry.kind.as_str(), &entry.config) {
        ("local", StoredConfig::Root(_)) => value
            .as_str()
            .map(|root| crate::depots::local(root).into())
            .ok_or_else(|| format!("the root of depot {ident:?} is not a string")),
        ("s3", StoredConfig::Sealed { mode, .. }) if mode == "s3" => {
            let Some(options) = value.as_object() else {
                return Err(format!("the options of depot {ident:?} are not an object"));
            };
            #[cfg(feature = "s3")]
            return crate::depots::S3Options::from_pool_config(options)
                .map(Into::into)
                .map_err(|why| format!("the options of depot {ident:?}: {why}"));
            #[cfg(not(feature = "s3"))]
            return Err({
                let _ = options;
                missing_feature(&format!("depot {ident:?} (s3)"), "s3")
            });
        }
        _ => Err(format!(
            "depot {ident:?} has a type and mode korm does not know"
        )),
    }
}
