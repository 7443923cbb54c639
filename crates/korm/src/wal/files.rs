//! Where the records live: `__korm_wal__/{namespace}/{poolId}/` in the WAL depot, with
//! `pending/{id}.json`, `done/{id}.json` and `payloads/{id}/{n}/{after,before}.bin`.
//!
//! On a local depot a record is written with plain file calls, made atomic by a rename (and
//! durable by `fsync` of the file and its folder, unless that is turned off): a write waits
//! for its record, so this is the write path's hottest extra cost. Other depots go through
//! [`Depot`], whose puts are atomic.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::depot::{Depot, DepotKey, FileContent, FileStream, collect_bytes};
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

/// The records of one pool and namespace in the WAL depot.
#[derive(Debug)]
pub(crate) struct WalFiles {
    pub(crate) depot: Arc<dyn Depot>,
    /// `__korm_wal__/{namespace}/{poolId}`.
    pub(crate) base: String,
    /// The same folder on disk, when the depot is a local folder.
    local: Option<PathBuf>,
    fsync: bool,
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
        })
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
        let dir = dir.join(folder.name());
        let path = dir.join(format!("{id}.json"));
        let tmp = dir.join(format!("{id}.tmp"));
        let write = move |fsync: bool| -> std::io::Result<()> {
            let target = if replace { &tmp } else { &path };
            let mut file = std::fs::File::create(target)?;
            file.write_all(&bytes)?;
            if fsync {
                file.sync_all()?;
            }
            drop(file);
            if replace {
                std::fs::rename(&tmp, &path)?;
            }
            if fsync {
                std::fs::File::open(&dir)?.sync_all()?;
            }
            Ok(())
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
        result.map_err(|e| self.io_error(&format!("{}/{}/{id}.json", self.base, folder.name()), &e))
    }

    /// Removes a record (a missing one is not an error).
    pub(crate) async fn remove(&self, folder: Folder, id: &str) -> Result<()> {
        let Some(dir) = &self.local else {
            return self.depot.delete(&self.record_key(folder, id)?).await;
        };
        match std::fs::remove_file(dir.join(folder.name()).join(format!("{id}.json"))) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io_error(&format!("{}/{}/{id}.json", self.base, folder.name()), &e)),
        }
    }

    /// Reads a record; `None` when it is not there.
    pub(crate) async fn read(&self, folder: Folder, id: &str) -> Result<Option<Vec<u8>>> {
        let key = self.record_key(folder, id)?;
        if let Some(dir) = &self.local {
            return match std::fs::read(dir.join(folder.name()).join(format!("{id}.json"))) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.io_error(key.as_str(), &e)),
            };
        }
        match self.depot.get(&key).await {
            Ok(stream) => Ok(Some(collect_bytes(stream).await?.to_vec())),
            Err(Error::FileNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The ids of the records in a folder, sorted. On a local depot, a temporary file left
    /// by a crash mid-write (the record was never complete, so its write never began) is
    /// removed.
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
                } else if name.ends_with(".tmp") {
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
