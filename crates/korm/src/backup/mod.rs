//! Backups: full snapshots of a layer in a depot, in korm 1.5's format, verified and
//! restored (B1 to B5).
//!
//! A snapshot is one newline-delimited JSON file per layer and run, at
//! `__korm_backups__/{layer}/{YYYYMMDDTHHMMSSZ}/backup-{uuid}.ndjson` in the depot: every item
//! table, `__korm_pool__` and (MySQL) `__korm_meta__`, as raw column values (encrypted fields
//! stay ciphertext). Rows stream from the database to the upload and are never gathered, so a
//! backup's memory does not grow with the table. korm-rs adds a trailer korm 1.5 does not read
//! (row counts and SHA-256 checksums, see [`format`]), so every backup it takes can be
//! [verified](Backups::verify); a restore verifies the whole file before it writes anything.
//!
//! ```no_run
//! # async fn run(pool: &korm::Pool) -> korm::Result<()> {
//! use korm::backup::{Backups, RestoreOptions};
//! let backups = Backups::new(pool, "backups")?;
//! let taken = backups.now("cars").await?;
//! backups.verify(&taken.key).await?;
//! backups.restore(&taken.key, "cars", RestoreOptions::merge()).await?;
//! # Ok(()) }
//! ```

pub(crate) mod format;
mod restore;
pub mod schedule;

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

pub use restore::{RestoreMode, RestoreOptions, RestoreReport};

use crate::depot::{Depot, DepotKey, FileContent};
use crate::error::{Error, Result};
use crate::layer::LayerHandle;
use crate::layer::meta::is_item_table;
use crate::pool::Pool;
use format::{Reader, Sink};

/// The folder of backups in a depot.
pub const BACKUPS_FOLDER: &str = "__korm_backups__";

/// How far a backup, a verify or a restore has come, for a progress bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Rows written (a backup) or read (a verify, a restore).
    pub rows: u64,
    /// Bytes of the file written or read.
    pub bytes: u64,
    /// The file's size, when known (a verify or a restore).
    pub total_bytes: Option<u64>,
}

/// A callback told of a backup's, verify's or restore's progress (every chunk, about 256 KiB).
pub type OnProgress = Arc<dyn Fn(Progress) + Send + Sync>;

/// A backup file in a depot, as [`Backups::list`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupEntry {
    /// The file's key in the depot.
    pub key: DepotKey,
    /// The layer it is a snapshot of.
    pub layer: String,
    /// When it was taken, as its folder names it (`YYYYMMDDTHHMMSSZ`, UTC).
    pub taken_at: String,
    /// Its size in bytes.
    pub size: Option<u64>,
}

/// A backup just taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The file's key in the depot.
    pub key: DepotKey,
    /// The layer.
    pub layer: String,
    /// Tables written.
    pub tables: u64,
    /// Rows written.
    pub rows: u64,
    /// The file's size in bytes.
    pub bytes: u64,
    /// The SHA-256 (hex) of the file before its `end` line, as that line records it.
    pub sha256: String,
}

/// What [`Backups::verify`] found: a whole, well-formed snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The file's key in the depot.
    pub key: DepotKey,
    /// The layer the header names.
    pub layer: String,
    /// The layer's backend, as the header names it (`sqlite`, `pg`, `mysql`).
    pub layer_type: String,
    /// When it was taken, as the header says.
    pub created_at: String,
    /// Tables in the file.
    pub tables: u64,
    /// Rows in the file.
    pub rows: u64,
    /// The file's size in bytes.
    pub bytes: u64,
    /// Whether the file carries checksums (korm-rs writes them; korm 1.5 does not, so its
    /// backups are checked for shape and completeness only).
    pub checksummed: bool,
}

/// The backups of a pool in one of its depots: take one now, list, verify, restore.
#[derive(Clone)]
pub struct Backups<'p> {
    pool: &'p Pool,
    depot: Arc<dyn Depot>,
    on_progress: Option<OnProgress>,
}

impl std::fmt::Debug for Backups<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backups")
            .field("depot", &self.depot.ident())
            .field("on_progress", &self.on_progress.is_some())
            .finish()
    }
}

impl<'p> Backups<'p> {
    /// The backups of `pool` kept in its depot `depot`.
    ///
    /// # Errors
    /// [`Error::UnknownDepot`] when the pool has no such depot.
    pub fn new(pool: &'p Pool, depot: &str) -> Result<Backups<'p>> {
        let depot = pool
            .depot_named(depot)
            .ok_or_else(|| Error::UnknownDepot {
                depot: depot.to_owned(),
                depots: pool.depot_names().collect::<Vec<_>>().join(", "),
            })?
            .clone();
        Ok(Backups {
            pool,
            depot,
            on_progress: None,
        })
    }

    /// Calls `f` with the progress of every later backup, verify and restore (about every
    /// 256 KiB).
    #[must_use]
    pub fn with_progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.on_progress = Some(Arc::new(f));
        self
    }

    /// The depot the backups are in.
    pub fn depot(&self) -> &Arc<dyn Depot> {
        &self.depot
    }

    fn layer(&self, layer: &str) -> Result<&'p LayerHandle> {
        self.pool
            .layers()
            .iter()
            .find(|(name, _)| name == layer)
            .map(|(_, handle)| handle)
            .ok_or_else(|| Error::UnknownLayer {
                layer: layer.to_owned(),
                rn: format!("backup of layer {layer:?}"),
                layers: self.pool.layer_names().collect::<Vec<_>>().join(", "),
            })
    }

    /// Takes a snapshot of `layer` now and stores it in the depot. The rows stream from one
    /// read transaction (a consistent snapshot) to the upload; the file appears whole or not
    /// at all.
    ///
    /// # Errors
    /// [`Error::UnknownLayer`], a database error while reading, or a depot error while
    /// storing; nothing is stored then.
    pub async fn now(&self, layer: &str) -> Result<BackupInfo> {
        let handle = self.layer(layer)?;
        take(
            handle,
            &self.depot,
            jiff_free::now_utc(),
            self.on_progress.clone(),
        )
        .await
    }

    /// The backups in the depot, of one layer or of all, oldest first per layer.
    ///
    /// # Errors
    /// A depot error.
    pub async fn list(&self, layer: Option<&str>) -> Result<Vec<BackupEntry>> {
        list(&*self.depot, layer).await
    }

    /// Reads a backup whole and checks it: one event per line in order, every table ended,
    /// the end event last, and (for a file korm-rs wrote) every row count and SHA-256.
    ///
    /// # Errors
    /// [`Error::BackupInvalid`] naming the first line that is wrong (a flipped byte, a cut
    /// file); [`Error::FileNotFound`] or a depot error.
    pub async fn verify(&self, key: &DepotKey) -> Result<VerifyReport> {
        verify(&*self.depot, key, self.on_progress.clone()).await
    }

    /// Plays a backup into `layer` (of any backend): see [`RestoreOptions`]. The file is
    /// verified whole first: a corrupt or truncated file, and a row that could not be
    /// written, are refused before anything is written (or emptied).
    ///
    /// # Errors
    /// Before anything is written: [`Error::BackupInvalid`] for a bad file,
    /// [`Error::InvalidIdentifier`] for a column that is not a field name, [`Error::Decode`]
    /// for a row without its `rnId`, [`Error::SchemaMismatch`] for values of a kind a column
    /// (the layer's, or the one the restore creates) does not take, [`Error::UnknownLayer`].
    /// Midway: the layer's write errors (a unique violation in merge mode, a lost
    /// connection): the batches written before stay.
    pub async fn restore(
        &self,
        key: &DepotKey,
        layer: &str,
        options: RestoreOptions,
    ) -> Result<RestoreReport> {
        let handle = self.layer(layer)?;
        restore::restore(&*self.depot, key, handle, options, self.on_progress.clone()).await
    }
}

/// Takes a snapshot of `handle` into `depot`, named after `now`.
pub(crate) async fn take(
    handle: &LayerHandle,
    depot: &Arc<dyn Depot>,
    now: jiff_free::Utc,
    on_progress: Option<OnProgress>,
) -> Result<BackupInfo> {
    let layer = handle.layer();
    let ident = handle.ident().to_owned();
    let key = DepotKey::parse(&format!(
        "{BACKUPS_FOLDER}/{ident}/{}/backup-{}.ndjson",
        now.folder(),
        // Time-prefixed (`rn::new_id`, a UUIDv4's shape): backups of one second list in the
        // order they were taken, to the millisecond (retention keeps those taken after the one
        // it prunes for).
        crate::rn::new_id()
    ))?;
    let tables = layer.backups().backup_tables().await?;
    let mut with_schemas = Vec::with_capacity(tables.len());
    for table in tables {
        // Read again, not from the cache: another process sharing the database may have
        // added a column (a JSON or unique field) since this one cached the table, and a
        // snapshot without its kind restores it as text.
        let schema = if is_item_table(&table) {
            layer.fresh_table_schema(&table).await?
        } else {
            None
        };
        with_schemas.push((table, schema));
    }
    // A few chunks in flight: the read waits while the upload is behind.
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let keep = tx.clone();
    let on_chunk = on_progress.map(|f| {
        Box::new(move |c: format::Counts| {
            f(Progress {
                rows: c.rows,
                bytes: c.bytes,
                total_bytes: None,
            });
        }) as format::OnChunk
    });
    let sink = Sink::new(tx, &now.iso(), &ident, layer.backend(), on_chunk);
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let upload = depot.put(&key, FileContent::stream(stream));
    let read = async move {
        let outcome = match layer.backups().export(with_schemas, sink).await {
            Ok(sink) => sink.finish().await,
            Err(e) => Err(e),
        };
        if let Err(e) = &outcome {
            // The upload must not store a file cut short: it fails on this chunk.
            let _ = keep
                .send(Err(io::Error::other(format!(
                    "the snapshot read failed: {e}"
                ))))
                .await;
        }
        drop(keep);
        outcome
    };
    let (stored, read) = tokio::join!(upload, read);
    let (counts, sha256) = match (stored, read) {
        (Ok(_), Ok(read)) => read,
        // The read stopped because the upload did: the upload's error says why.
        (Err(e), Err(read)) if format::is_upload_gone(&read) => return Err(e),
        (Err(e), Ok(_)) => return Err(e),
        (_, Err(e)) => return Err(e),
    };
    Ok(BackupInfo {
        key,
        layer: ident,
        tables: counts.tables,
        rows: counts.rows,
        bytes: counts.bytes,
        sha256,
    })
}

/// The backups in `depot`, of one layer or of all.
pub(crate) async fn list(depot: &dyn Depot, layer: Option<&str>) -> Result<Vec<BackupEntry>> {
    let prefix = match layer {
        Some(layer) => DepotKey::parse(&format!("{BACKUPS_FOLDER}/{layer}"))?,
        None => DepotKey::parse(BACKUPS_FOLDER)?,
    };
    let mut out = Vec::new();
    for key in depot.list_all(&prefix).await? {
        let segments: Vec<&str> = key.segments().collect();
        let [_, layer, taken_at, name] = segments[..] else {
            continue;
        };
        if !name.starts_with("backup-") || !(name.ends_with(".ndjson") || name.ends_with(".json")) {
            continue;
        }
        let (layer, taken_at) = (layer.to_owned(), taken_at.to_owned());
        let size = depot.size(&key).await?;
        out.push(BackupEntry {
            key,
            layer,
            taken_at,
            size,
        });
    }
    out.sort_by(|a, b| (&a.layer, &a.taken_at, &a.key).cmp(&(&b.layer, &b.taken_at, &b.key)));
    Ok(out)
}

/// Reads the file at `key` through a [`Reader`], calling `each` with every event; returns
/// the reader (its counts) and the bytes read.
pub(crate) async fn read_file(
    depot: &dyn Depot,
    key: &DepotKey,
    on_progress: Option<&OnProgress>,
    each: &mut (dyn FnMut(format::Event) -> Result<()> + Send),
) -> Result<(Reader, u64)> {
    let total = match on_progress {
        Some(_) => depot.size(key).await?,
        None => None,
    };
    let mut stream = depot.get(key).await?;
    let mut reader = Reader::new(key.as_str());
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        reader.push(&chunk, each)?;
        if let Some(f) = on_progress {
            f(Progress {
                rows: reader.rows,
                bytes,
                total_bytes: total,
            });
        }
    }
    reader.finish()?;
    Ok((reader, bytes))
}

/// See [`Backups::verify`].
pub(crate) async fn verify(
    depot: &dyn Depot,
    key: &DepotKey,
    on_progress: Option<OnProgress>,
) -> Result<VerifyReport> {
    let mut header = (String::new(), String::new(), String::new());
    let (reader, bytes) = read_file(depot, key, on_progress.as_ref(), &mut |event| {
        if let format::Event::Header {
            layer,
            layer_type,
            created_at,
        } = event
        {
            header = (layer, layer_type, created_at);
        }
        Ok(())
    })
    .await?;
    Ok(VerifyReport {
        key: key.clone(),
        layer: header.0,
        layer_type: header.1,
        created_at: header.2,
        tables: reader.tables,
        rows: reader.rows,
        bytes,
        checksummed: reader.checksummed,
    })
}

/// UTC times for names and headers, without a time-zone database.
pub(crate) mod jiff_free {
    /// A UTC instant, to the millisecond.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Utc {
        /// Milliseconds since the Unix epoch.
        pub(crate) millis: i64,
    }

    /// Now.
    pub(crate) fn now_utc() -> Utc {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Utc { millis }
    }

    impl Utc {
        fn parts(self) -> (i64, u32, u32, i64, i64, i64, i64) {
            let secs = self.millis.div_euclid(1000);
            let ms = self.millis.rem_euclid(1000);
            let days = secs.div_euclid(86_400);
            let rem = secs.rem_euclid(86_400);
            // Howard Hinnant's days-to-civil.
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z.rem_euclid(146_097);
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
            let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
            let y = yoe + era * 400 + i64::from(m <= 2);
            (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, ms)
        }

        /// `YYYYMMDDTHHMMSSZ`, the folder of a backup.
        pub(crate) fn folder(self) -> String {
            let (y, mo, d, h, mi, s, _) = self.parts();
            format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
        }

        /// ISO 8601 with milliseconds, as JavaScript's `toISOString` writes it.
        pub(crate) fn iso(self) -> String {
            let (y, mo, d, h, mi, s, ms) = self.parts();
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn instants_are_named_as_korm_names_them() {
            // The fixture's backup: 2026-11-26T16:13:58.062Z in folder 20261126T161358Z.
            let t = super::Utc {
                millis: 1_795_709_638_062,
            };
            assert_eq!(t.iso(), "2026-11-26T16:13:58.062Z");
            assert_eq!(t.folder(), "20261126T161358Z");
            assert_eq!(super::Utc { millis: 0 }.iso(), "1970-01-01T00:00:00.000Z");
        }
    }
}
