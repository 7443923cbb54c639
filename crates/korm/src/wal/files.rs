//! Where the records live: `__korm_wal__/{namespace}/{poolId}/` in the WAL depot, with
//! `pending/{id}.json`, `done/{id}.json` and `payloads/{id}/{n}/{after,before}.bin`.
//!
//! On a local depot a record is written with plain file calls: a write waits for its record,
//! so this is the write path's hottest extra cost. Creating and deleting a file per record
//! makes the file system allocate and free an inode and its blocks each time, which costs
//! from 10 to over 200 microseconds on a busy disk; so records are written into reused files
//! ("slots", `spare/{session}/{n}`, this process's own): the record is written over the
//! slot's old content (padded with spaces, which JSON ignores, to the old length), synced with
//! `fsync` unless that is off, and renamed to `pending/{id}.json`, so it appears complete or
//! not at all. Finishing renames it back into the slots. Other depots go through [`Depot`],
//! whose puts are atomic.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::depot::{Depot, DepotKey, FileContent, FileStream, collect_at_most};
use crate::error::{Error, Result};

/// A record folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Folder {
    Pending,
    Done,
}

impl Folder {
    fn name(self) -> &'static str {
        match self {
            Folder::Pending => "pending",
            Folder::Done => "done",
        }
    }
}

/// The largest WAL record korm writes or reads (its JSON, payloads aside): 256 MiB.
pub(crate) const MAX_RECORD_BYTES: usize = 256 << 20;

/// The records of one pool and namespace in the WAL depot.
#[derive(Debug)]
pub(crate) struct WalFiles {
    pub(crate) depot: Arc<dyn Depot>,
    /// `__korm_wal__/{namespace}/{poolId}`.
    pub(crate) base: String,
    /// The same folder on disk, when the depot is a local folder.
    local: Option<PathBuf>,
    fsync: bool,
    /// This process's record slots (local folders only).
    slots: Mutex<Slots>,
}

/// Files kept to write records into (see the module docs).
#[derive(Debug, Default)]
struct Slots {
    /// `spare/{session}`, made on first use.
    dir: Option<PathBuf>,
    /// Free slots and the length of what they hold.
    free: Vec<(PathBuf, usize)>,
    /// Records written into a slot, by id, with their length.
    used: std::collections::HashMap<String, usize>,
    /// The number of the next new slot.
    next: u64,
}

/// How many free slots are kept; more are deleted.
const MAX_FREE_SLOTS: usize = 64;

/// How long a record's temporary file may go unchanged before a listing takes it for a crash's
/// leftover: a rewrite under way (another process marking its record) holds it for the time of
/// one write and one sync.
const TMP_ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether a temporary record file was left by a crash (see [`TMP_ABANDONED_AFTER`]); one
/// whose age can not be read is left alone.
fn left_by_a_crash(entry: &std::fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|at| at.elapsed().ok())
        .is_some_and(|age| age > TMP_ABANDONED_AFTER)
}

impl WalFiles {
    /// The records under `base` in `depot`; `local_root` is the depot's folder when it is a
    /// local one.
    /// `create` makes the record folders (a reader leaves a folder as it finds it).
    pub(crate) fn new(
        depot: Arc<dyn Depot>,
        base: String,
        local_root: Option<PathBuf>,
        fsync: bool,
        create: bool,
    ) -> Result<Self> {
        let local = local_root.map(|root| root.join(&base));
        if let Some(dir) = local.as_ref().filter(|_| create) {
            for folder in [Folder::Pending, Folder::Done] {
                std::fs::create_dir_all(dir.join(folder.name())).map_err(|e| Error::Depot {
                    depot: depot.ident().to_owned(),
                    key: format!("{base}/{}", folder.name()),
                    reason: format!("can not create the WAL folder: {e}"),
                })?;
            }
        }
        Ok(WalFiles {
            depot,
            base,
            local,
            fsync,
            slots: Mutex::new(Slots::default()),
        })
    }

    /// A free slot (path, length of its content), or a new one.
    fn take_slot(&self, dir: &std::path::Path) -> std::io::Result<(PathBuf, usize)> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.free.pop() {
            return Ok(slot);
        }
        let folder = match &slots.dir {
            Some(folder) => folder.clone(),
            None => {
                let folder = dir
                    .join("spare")
                    .join(uuid::Uuid::new_v4().simple().to_string());
                std::fs::create_dir_all(&folder)?;
                slots.dir = Some(folder.clone());
                folder
            }
        };
        slots.next += 1;
        Ok((folder.join(slots.next.to_string()), 0))
    }

    /// Removes this process's slots (the pool is closing).
    pub(crate) fn drop_slots(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = slots.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        slots.free.clear();
    }

    fn key(&self, rest: &str) -> Result<DepotKey> {
        DepotKey::parse(&format!("{}/{rest}", self.base))
    }

    fn record_key(&self, folder: Folder, id: &str) -> Result<DepotKey> {
        self.key(&format!("{}/{id}.json", folder.name()))
    }

    fn io_error(&self, what: &str, e: &std::io::Error) -> Error {
        Error::Depot {
            depot: self.depot.ident().to_owned(),
            key: what.to_owned(),
            reason: e.to_string(),
        }
    }

    /// Writes a new record (durably, with fsync). A record is complete before its write
    /// begins, so one torn by a machine crash mid-write (it does not parse) describes a write
    /// that never began. `replace` rewrites an existing record, through a temporary file
    /// and a rename, so it is never torn.
    pub(crate) async fn write(
        &self,
        folder: Folder,
        id: &str,
        bytes: Vec<u8>,
        replace: bool,
    ) -> Result<()> {
        let Some(dir) = &self.local else {
            let key = self.record_key(folder, id)?;
            self.depot.put(&key, FileContent::bytes(bytes)).await?;
            return Ok(());
        };
        let base = dir.clone();
        let dir = dir.join(folder.name());
        let path = dir.join(format!("{id}.json"));
        let fail = |e: std::io::Error| {
            self.io_error(&format!("{}/{}/{id}.json", self.base, folder.name()), &e)
        };
        let (source, old_len) = if replace {
            (dir.join(format!("{id}.tmp")), 0)
        } else {
            self.take_slot(&base).map_err(fail)?
        };
        let len = bytes.len().max(old_len);
        let write = {
            let (source, path) = (source.clone(), path.clone());
            move |fsync: bool| -> std::io::Result<()> {
                let open = || {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(replace)
                        .open(&source)
                };
                // The folders may have been removed under the pool (a depot reset, an
                // operator clearing the WAL): made again.
                let mut file = match open() {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        if let Some(parent) = source.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        std::fs::create_dir_all(&dir)?;
                        open()?
                    }
                    other => other?,
                };
                file.write_all(&bytes)?;
                if old_len > bytes.len() {
                    // JSON ignores trailing whitespace: the slot keeps its length.
                    file.write_all(&vec![b' '; old_len - bytes.len()])?;
                }
                if fsync {
                    file.sync_all()?;
                }
                drop(file);
                if let Err(e) = std::fs::rename(&source, &path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(e);
                    }
                    std::fs::create_dir_all(&dir)?;
                    std::fs::rename(&source, &path)?;
                }
                if fsync {
                    std::fs::File::open(&dir)?.sync_all()?;
                }
                Ok(())
            }
        };
        let result = if self.fsync {
            // Syncing waits for the disk: off the async threads.
            tokio::task::spawn_blocking(move || write(true))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        } else {
            // A small file into the page cache: a few microseconds, cheaper than a hop to
            // the blocking pool and back.
            write(false)
        };
        result.map_err(fail)?;
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if folder == Folder::Pending {
            slots.used.insert(id.to_owned(), len);
        }
        Ok(())
    }

    /// Removes a record (a missing one is not an error).
    pub(crate) async fn remove(&self, folder: Folder, id: &str) -> Result<()> {
        let Some(dir) = &self.local else {
            return self.depot.delete(&self.record_key(folder, id)?).await;
        };
        let path = dir.join(folder.name()).join(format!("{id}.json"));
        // A record this process wrote goes back into the slots.
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            match slots.used.remove(id) {
                Some(len) if folder == Folder::Pending && slots.free.len() < MAX_FREE_SLOTS => {
                    slots.next += 1;
                    let next = slots.next.to_string();
                    slots.dir.as_ref().map(|d| (d.join(next), len))
                }
                _ => None,
            }
        };
        if let Some((target, len)) = slot {
            match std::fs::rename(&path, &target) {
                Ok(()) => {
                    let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                    slots.free.push((target, len));
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                // The slot folder is gone (closed meanwhile): delete the record instead.
                Err(_) => {}
            }
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io_error(&format!("{}/{}/{id}.json", self.base, folder.name()), &e)),
        }
    }

    /// Reads a record; `None` when it is not there. A file larger than
    /// [`MAX_RECORD_BYTES`] is not read: [`Error::WalRecord`] (no record korm writes is that
    /// large, and reading one whole could exhaust memory before its MAC is checked).
    pub(crate) async fn read(&self, folder: Folder, id: &str) -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        let key = self.record_key(folder, id)?;
        let limit = MAX_RECORD_BYTES;
        let bytes = if let Some(dir) = &self.local {
            // The size first (a huge file is refused unread), then at most one byte more
            // than the limit (should it grow meanwhile).
            let read = std::fs::File::open(dir.join(folder.name()).join(format!("{id}.json")))
                .and_then(|file| {
                    let mut bytes = Vec::new();
                    if file.metadata()?.len() <= limit as u64 {
                        file.take(limit as u64 + 1).read_to_end(&mut bytes)?;
                        return Ok(Some(bytes));
                    }
                    Ok(None)
                });
            match read {
                Ok(bytes) => bytes.filter(|b| b.len() <= limit),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.io_error(key.as_str(), &e)),
            }
        } else {
            match self.depot.get(&key).await {
                Ok(stream) => collect_at_most(stream, limit).await?.map(Vec::from),
                Err(Error::FileNotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        };
        match bytes {
            Some(bytes) => Ok(Some(bytes)),
            None => Err(Error::WalRecord {
                record: crate::error::clip(id),
                reason: format!("is larger than a record can be ({limit} bytes): not read"),
            }),
        }
    }

    /// The ids of the records in a folder, sorted. On a local depot, a temporary file left
    /// by a crash mid-write (the record was never complete, so its write never began) is
    /// removed once it is old enough not to be a rewrite under way.
    pub(crate) async fn list(&self, folder: Folder) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        if let Some(dir) = &self.local {
            let dir = dir.join(folder.name());
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
                Err(e) => {
                    return Err(self.io_error(&format!("{}/{}", self.base, folder.name()), &e));
                }
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io_error(&self.base, &e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if let Some(id) = name.strip_suffix(".json") {
                    ids.push(id.to_owned());
                } else if name.ends_with(".tmp") && left_by_a_crash(&entry) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        } else {
            let prefix = self.key(folder.name())?;
            for key in self.depot.list_all(&prefix).await? {
                let name = key.segments().last().unwrap_or_default();
                if let Some(id) = name.strip_suffix(".json") {
                    ids.push(id.to_owned());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The key of a payload: `payloads/{id}/{n}/{name}`.
    pub(crate) fn payload_key(&self, id: &str, n: usize, name: &str) -> Result<DepotKey> {
        self.key(&format!("payloads/{id}/{n}/{name}"))
    }

    /// Writes a payload.
    pub(crate) async fn put_payload(&self, key: &DepotKey, content: FileContent) -> Result<()> {
        self.depot.put(key, content).await.map(|_| ())
    }

    /// Reads a payload as a stream.
    pub(crate) async fn get_payload(&self, key: &DepotKey) -> Result<FileStream> {
        self.depot.get(key).await
    }

    /// Removes every payload of a record.
    pub(crate) async fn remove_payloads(&self, id: &str) -> Result<()> {
        let prefix = self.key(&format!("payloads/{id}"))?;
        for key in self.depot.list_all(&prefix).await? {
            self.depot.delete(&key).await?;
        }
        if let Some(dir) = &self.local {
            // Empty folders left by the file deletes.
            let _ = std::fs::remove_dir_all(dir.join("payloads").join(id));
        }
        Ok(())
    }

    /// The record ids that have payloads.
    pub(crate) async fn payload_ids(&self) -> Result<Vec<String>> {
        let prefix = self.key("payloads")?;
        let depth = prefix.segments().count();
        let mut ids: Vec<String> = self
            .depot
            .list_all(&prefix)
            .await?
            .iter()
            .filter_map(|key| key.segments().nth(depth).map(str::to_owned))
            .collect();
        ids.dedup();
        Ok(ids)
    }
}
