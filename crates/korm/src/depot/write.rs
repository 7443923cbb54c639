//! Depot ops in the one write path.
//!
//! The executor locks a depot file's RN like an item's, then runs the depot ops before the
//! layer ops. Each op first copies the file it replaces or deletes to a backup key
//! (`__korm_undo__/<uuid>`), so it can be undone; with a WAL recording depot ops, the
//! record's `before.bin` payload is that backup instead. If a later depot op or a layer write fails,
//! every depot op is undone, newest first: a new file is deleted, a replaced or deleted file
//! is copied back from its backup. So no stored row points at a file that is missing, and no
//! uploaded file is left behind by a failed write. On success the backups are deleted.

use std::sync::{Arc, Mutex};

use super::{Content, Depot, DepotKey, FileContent, file_key};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::rn::Rn;

/// The folder of undo backups inside a depot.
const UNDO_PREFIX: &str = "__korm_undo__";

/// What a file in item data or a file handle holds until it is written.
pub(crate) enum FileState {
    /// Content to write.
    Pending(PendingContent),
    /// Written (or read back): nothing to upload.
    Stored,
    /// A stream consumed by a write that failed: it can not be read again.
    Spent,
}

pub(crate) enum PendingContent {
    Bytes(bytes::Bytes),
    Stream(Option<FileContent>),
}

impl FileState {
    pub(crate) fn pending(content: FileContent) -> Self {
        match content.into_inner() {
            Content::Bytes(bytes) => FileState::Pending(PendingContent::Bytes(bytes)),
            stream @ Content::Stream(_) => {
                FileState::Pending(PendingContent::Stream(Some(FileContent(stream))))
            }
        }
    }
}

/// The shared state of a file: the handle in item data and the op in the plan hold one.
pub(crate) type SharedState = Arc<Mutex<FileState>>;

/// How a put treats a file already at the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PutMode {
    /// Only if no file is there ([`Error::FileExists`] otherwise).
    Create,
    /// Only over an existing file ([`Error::FileNotFound`] otherwise).
    Replace,
    /// Either.
    Upsert,
}

/// One change to one depot file.
#[derive(Clone)]
pub(crate) enum DepotOp {
    Put {
        rn: Rn,
        state: SharedState,
        mode: PutMode,
    },
    Delete {
        rn: Rn,
    },
}

impl std::fmt::Debug for DepotOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DepotOp::Put { rn, mode, .. } => write!(f, "DepotOp::Put({rn}, {mode:?})"),
            DepotOp::Delete { rn } => write!(f, "DepotOp::Delete({rn})"),
        }
    }
}

impl DepotOp {
    pub(crate) fn rn(&self) -> &Rn {
        match self {
            DepotOp::Put { rn, .. } | DepotOp::Delete { rn } => rn,
        }
    }
}

/// Where the file a depot op replaced or deleted is kept until the write is done.
enum Backup {
    /// A copy in the same depot (`__korm_undo__/<uuid>`), deleted when the write is done.
    Copy(DepotKey),
    /// The WAL record's `before.bin` payload (in the WAL depot), which the record owns.
    Wal(Arc<dyn Depot>, DepotKey),
}

/// The WAL payload holding the file a depot op replaces or deletes, if the write's record
/// stored one: the op's undo reads it, and makes no copy of its own (a crash would leave
/// that copy behind; the record's payloads go with the record).
pub(crate) type WalBackup = Option<(Arc<dyn Depot>, DepotKey)>;

/// One applied depot op and how to undo it.
struct Step {
    depot: Arc<dyn Depot>,
    rn: Rn,
    key: DepotKey,
    /// Where the file it replaced or deleted is kept; `None` if there was none.
    backup: Option<Backup>,
    /// The state to mark stored once the whole write succeeded.
    state: Option<SharedState>,
}

/// The depot ops a write applied, to finish or undo once the layers are written.
#[must_use]
pub(crate) struct Applied {
    steps: Vec<Step>,
}

impl Applied {
    /// Finishes after the layers' outcome: on success the backups go and the files count as
    /// stored; on failure every depot op is undone, and an undo failure is reported with the
    /// original error. `logged`: the write has a WAL record, whose rollback follows.
    ///
    /// A write whose outcome is unknown (a connection lost at `COMMIT`: its rows may be
    /// stored) keeps its files as written when it has no WAL record, so a stored row never
    /// points at a file taken back (a file left for rows that were not stored is the lesser
    /// harm). With a record, the files are undone and the WAL's rollback takes the rows back
    /// too.
    pub(crate) async fn settle(self, result: Result<()>, logged: bool) -> Result<()> {
        match result {
            Ok(()) => {
                self.finish().await;
                Ok(())
            }
            Err(error) if !logged && error.outcome_unknown() => {
                self.finish().await;
                Err(error)
            }
            Err(error) => match self.undo().await {
                Ok(()) => Err(error),
                Err((rns, undo)) => Err(Error::UndoFailed {
                    rns,
                    source: Box::new(error),
                    undo: Box::new(undo),
                }),
            },
        }
    }

    async fn finish(self) {
        for step in self.steps {
            if let Some(Backup::Copy(backup)) = &step.backup
                && let Err(e) = step.depot.delete(backup).await
            {
                tracing::warn!(depot = step.depot.ident(), key = %backup, error = %e,
                    "korm: an undo backup could not be deleted");
            }
            if let Some(state) = step.state
                && let Ok(mut state) = state.lock()
            {
                *state = FileState::Stored;
            }
        }
    }

    /// Undoes every step, newest first, and reports the first failure with the RNs whose
    /// undo failed.
    async fn undo(self) -> std::result::Result<(), (String, Error)> {
        let mut failed: Vec<String> = Vec::new();
        let mut first: Option<Error> = None;
        for step in self.steps.into_iter().rev() {
            let result = match &step.backup {
                Some(Backup::Copy(backup)) => match step.depot.copy(backup, &step.key).await {
                    Ok(()) => step.depot.delete(backup).await,
                    Err(e) => Err(e),
                },
                Some(Backup::Wal(wal, payload)) => match wal.get(payload).await {
                    Ok(content) => step
                        .depot
                        .put(&step.key, FileContent::from_file_stream(content))
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                },
                None => step.depot.delete(&step.key).await,
            };
            if let Err(e) = result {
                failed.push(step.rn.to_string());
                first.get_or_insert(e);
            }
        }
        match first {
            None => Ok(()),
            Some(e) => Err((failed.join(", "), e)),
        }
    }
}

/// Applies depot ops in order, each with the WAL payload that backs it up, if any. On
/// failure what was applied is undone before the error returns.
pub(crate) async fn apply<'a>(
    pool: &Pool,
    ops: impl Iterator<Item = (&'a DepotOp, WalBackup)>,
) -> Result<Applied> {
    let mut applied = Applied { steps: Vec::new() };
    for (op, wal) in ops {
        match apply_one(pool, op, wal).await {
            Ok(Some(step)) => applied.steps.push(step),
            Ok(None) => {}
            Err(error) => {
                return Err(match applied.undo().await {
                    Ok(()) => error,
                    Err((rns, undo)) => Error::UndoFailed {
                        rns,
                        source: Box::new(error),
                        undo: Box::new(undo),
                    },
                });
            }
        }
    }
    Ok(applied)
}

fn backup_key() -> DepotKey {
    DepotKey {
        text: format!("{UNDO_PREFIX}/{}", uuid::Uuid::new_v4().simple()),
    }
}

/// The backup of the file at `key`: the WAL's payload, or a copy made now.
async fn backup(depot: &Arc<dyn Depot>, key: &DepotKey, wal: WalBackup) -> Result<Backup> {
    Ok(match wal {
        Some((wal, payload)) => Backup::Wal(wal, payload),
        None => {
            let copy = backup_key();
            depot.copy(key, &copy).await?;
            Backup::Copy(copy)
        }
    })
}

/// Drops a backup of a write that did not happen.
async fn drop_backup(depot: &Arc<dyn Depot>, backup: &Option<Backup>) {
    if let Some(Backup::Copy(copy)) = backup {
        let _ = depot.delete(copy).await;
    }
}

async fn apply_one(pool: &Pool, op: &DepotOp, wal: WalBackup) -> Result<Option<Step>> {
    let rn = op.rn();
    let depot = pool.depot_of(rn)?;
    let key = file_key(rn)?;
    let (written, backup, state) = match op {
        DepotOp::Put { state, mode, .. } => {
            if matches!(*state.lock().map_err(|_| poisoned(rn))?, FileState::Stored) {
                return Ok(None);
            }
            let existing = depot.size(&key).await?;
            match (mode, existing) {
                (PutMode::Create, Some(_)) => {
                    return Err(Error::FileExists {
                        depot: depot.ident().to_owned(),
                        key: key.to_string(),
                    });
                }
                (PutMode::Replace, None) => {
                    return Err(Error::FileNotFound {
                        depot: depot.ident().to_owned(),
                        key: key.to_string(),
                    });
                }
                _ => {}
            }
            let Some((content, _)) = take_content(state, rn, depot.ident(), &key)? else {
                return Ok(None);
            };
            let backup = match existing {
                Some(_) => Some(backup(&depot, &key, wal).await?),
                None => None,
            };
            let written = depot.put(&key, content).await.map(drop);
            (written, backup, Some(Arc::clone(state)))
        }
        DepotOp::Delete { .. } => {
            if depot.size(&key).await?.is_none() {
                return Err(Error::FileNotFound {
                    depot: depot.ident().to_owned(),
                    key: key.to_string(),
                });
            }
            let backup = Some(backup(&depot, &key, wal).await?);
            (depot.delete(&key).await, backup, None)
        }
    };
    if let Err(error) = written {
        // A put or a delete is atomic: the old file (if any) is still in place; drop the
        // backup.
        drop_backup(&depot, &backup).await;
        return Err(error);
    }
    Ok(Some(Step {
        depot,
        rn: rn.clone(),
        key,
        backup,
        state,
    }))
}

/// The content a put writes, taken from its state: bytes are shared (a failed write can use
/// them again), a stream is taken (the state is spent until [`refill`] gives it content
/// again). `None` when the file is stored already. The flag says whether it was a stream.
pub(crate) fn take_content(
    state: &SharedState,
    rn: &Rn,
    depot: &str,
    key: &DepotKey,
) -> Result<Option<(FileContent, bool)>> {
    let mut guard = state.lock().map_err(|_| poisoned(rn))?;
    match &mut *guard {
        FileState::Stored => Ok(None),
        FileState::Spent => Err(Error::Depot {
            depot: depot.to_owned(),
            key: key.to_string(),
            reason: "its content stream was consumed by a write that failed; give the file new \
                     content"
                .to_owned(),
        }),
        FileState::Pending(PendingContent::Bytes(bytes)) => {
            Ok(Some((FileContent::bytes(bytes.clone()), false)))
        }
        FileState::Pending(PendingContent::Stream(stream)) => {
            let content = stream.take();
            *guard = FileState::Spent;
            content.map(|c| Some((c, true))).ok_or_else(|| poisoned(rn))
        }
    }
}

/// Gives a put whose stream [`take_content`] took new content to write.
pub(crate) fn refill(state: &SharedState, rn: &Rn, content: FileContent) -> Result<()> {
    *state.lock().map_err(|_| poisoned(rn))? =
        FileState::Pending(PendingContent::Stream(Some(content)));
    Ok(())
}

fn poisoned(rn: &Rn) -> Error {
    Error::Depot {
        depot: rn.depot().unwrap_or_default().to_owned(),
        key: rn.to_string(),
        reason: "the file's content is unavailable (a write using it panicked)".to_owned(),
    }
}
