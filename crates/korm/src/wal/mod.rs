//! The write-ahead log (W1-W6): a record of every write, durable in a depot before the write
//! is applied, so a crash between layers is finished at the next open.
//!
//! Each write plan (create, commit, delete, tx, file writes) writes a [`Record`] to
//! `__korm_wal__/{namespace}/{poolId}/pending/{id}.json` in the WAL depot after its locks are
//! taken and before anything is applied, with the before-images of its items and, with depot
//! ops recorded, the old and new content of its files (`payloads/{id}/{n}/before.bin`,
//! `after.bin`). When the write is done the record moves to `done/` (retention keep) or goes
//! (retention delete).
//!
//! At open, before the pool is handed out, every pending record is recovered, under its
//! RNs' locks (and, with shared locks, a pool-wide recovery lock, so one process recovers at
//! a time): each item and file is read and compared with the record. What is as the record
//! left it stays; what is as it was before is brought forward; what is neither was written
//! since by someone else and is left alone (reported as superseded). korm 1.5 undoes from
//! the before-images and then applies again, blindly: the outcome is the same, except that a
//! later write is never overwritten. A record whose write failed and whose undo could not be
//! finished (`aborting`, a korm-rs state) is rolled back the same way instead.
//!
//! Records are authenticated (see [`record`]): a record that fails its MAC check is refused,
//! reported, and never replayed.

mod files;
pub mod record;
mod recover;

use std::sync::{Arc, Mutex};

pub use record::{
    DepotOpType, FORMAT_VERSION, Record, RecordDepotOp, RecordOp, RecordOpType, RecordState,
};
pub use recover::{RecoveredRecord, RecoveryReport, RefusedRecord};

use crate::crypto::KeyRing;
use crate::depot::Depot;
use crate::depot::write::{DepotOp, refill, take_content};
use crate::error::{Error, Result};
use crate::layer::OpKind;
use crate::pool::Pool;
use crate::write::{BeforeImage, WritePlan};
use files::{Folder, WalFiles};
use record::{MacKeys, Refusal, now_iso};

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
#[non_exhaustive]
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
    /// Whether each record on a local depot is synced to disk (`fsync` of the file and its
    /// folder) before the write goes on: on by default, so a record survives the machine
    /// losing power. Off, a record survives a crash of the process but not of the machine,
    /// like SQLite's `synchronous = NORMAL`; pick what the layers do. (A put to S3 is durable
    /// when it returns either way.)
    pub fsync: bool,
    /// The pool id the records are filed under (`__korm_wal__/{namespace}/{poolId}/`):
    /// by default the pool's id ([`Pool::pool_id`](crate::Pool::pool_id)), which korm 1.5
    /// derives the same way from the names of the layers and depots, so both find each
    /// other's records.
    pub pool_id: Option<String>,
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
            fsync: true,
            pool_id: None,
        }
    }

    /// Sets whether records on a local depot are synced to disk (see [`WalOptions::fsync`]).
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Files the records under this pool id (see [`WalOptions::pool_id`]).
    pub fn with_pool_id(mut self, pool_id: impl Into<String>) -> Self {
        self.pool_id = Some(pool_id.into());
        self
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

/// A pool's write-ahead log.
#[derive(Debug)]
pub(crate) struct WalLog {
    files: WalFiles,
    options: WalOptions,
    pool_id: String,
    keys: MacKeys,
    /// Records whose undo could not be finished: their RNs refuse writes until a recovery
    /// finishes them (so no write lands on an item a later recovery would roll back).
    blocked: Mutex<Vec<Blocked>>,
    /// The report of the recovery run when the pool opened.
    opened: Mutex<Option<RecoveryReport>>,
}

#[derive(Debug)]
struct Blocked {
    record: String,
    keys: Vec<Arc<str>>,
}

/// A write's record, written and not yet finished.
#[derive(Debug)]
pub(crate) struct Logged {
    record: Record,
    /// Per depot op of the plan, the payload holding the file it replaces or deletes.
    backups: Vec<Option<crate::depot::DepotKey>>,
    /// The WAL depot.
    depot: Arc<dyn Depot>,
}

impl Logged {
    /// The WAL payload backing up the file depot op `i` replaces or deletes, if any.
    pub(crate) fn backup(&self, i: usize) -> crate::depot::write::WalBackup {
        let key = self.backups.get(i)?.clone()?;
        Some((Arc::clone(&self.depot), key))
    }
}

/// A record to finish (done, or failed and undone) once its write has returned.
#[derive(Debug)]
pub(crate) struct Finish {
    record: Record,
    state: RecordState,
}

impl WalLog {
    /// The log in `depot` (its folder, when it is a local one) under `options`, signing with
    /// the keys of `ring`.
    ///
    /// # Errors
    /// `create` makes the record folders (a pool does; a reader does not).
    ///
    /// [`Error::InvalidIdentifier`] for a namespace or pool id that can not be a folder name,
    /// [`Error::Key`] for a temporary key (records signed with it could not be checked after
    /// a restart), and the depot's error when the WAL folder can not be made.
    pub(crate) fn new(
        depot: Arc<dyn Depot>,
        local_root: Option<std::path::PathBuf>,
        options: WalOptions,
        pool_id: String,
        ring: &KeyRing,
        create: bool,
    ) -> Result<Self> {
        check_folder_name("WAL namespace", &options.namespace)?;
        check_folder_name("pool id", &pool_id)?;
        if ring.is_temporary() {
            return Err(Error::Key {
                reason: format!(
                    "the write-ahead log signs its records with a key derived from the \
                     encryption key, and {} is not set: records signed with a temporary key \
                     could not be checked after a restart (set it; `korm \
                     generate-encryption-key` prints one)",
                    crate::crypto::KEY_VAR
                ),
            });
        }
        let base = format!("__korm_wal__/{}/{pool_id}", options.namespace);
        Ok(WalLog {
            files: WalFiles::new(depot, base, local_root, options.fsync, create)?,
            keys: MacKeys::of(ring),
            options,
            pool_id,
            blocked: Mutex::new(Vec::new()),
            opened: Mutex::new(None),
        })
    }

    fn write_error(&self, source: Error) -> Error {
        Error::WalWrite {
            depot: self.files.depot.ident().to_owned(),
            source: Box::new(source),
        }
    }

    /// Refuses a write to an RN whose record could not be finished (see [`Error::WalPending`]).
    pub(crate) fn check_blocked(&self, keys: &[Arc<str>]) -> Result<()> {
        let blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        for entry in blocked.iter() {
            if let Some(key) = keys.iter().find(|k| entry.keys.contains(k)) {
                return Err(Error::WalPending {
                    rn: key.to_string(),
                    record: entry.record.clone(),
                });
            }
        }
        Ok(())
    }

    /// Writes the record of `plan` (step 2b of the write path): durable before it returns.
    ///
    /// # Errors
    /// [`Error::WalWrite`] when the record or a payload can not be written: nothing of the
    /// write was applied.
    pub(crate) async fn begin(
        &self,
        pool: &Pool,
        plan: &WritePlan,
        depot_ops: &[&DepotOp],
    ) -> Result<Option<Logged>> {
        let record_files = self.options.depot_ops == WalDepotOps::Record && !depot_ops.is_empty();
        if plan.ops.is_empty() && !record_files {
            return Ok(None);
        }
        // Time-prefixed, in korm 1.5's UUIDv4 shape (`rn::new_id`): a recovery tells a young
        // record's payloads (stored before the record) from a crash's leftovers by the id's
        // time (`recover::abandoned`).
        let id = crate::rn::new_id().to_string();
        let ops = plan
            .ops
            .iter()
            .map(|op| {
                let kind = match op.kind {
                    OpKind::Insert => RecordOpType::Insert,
                    OpKind::Update => RecordOpType::Update,
                    OpKind::Delete | OpKind::DeleteIfExists => RecordOpType::Delete,
                };
                RecordOp {
                    kind,
                    rn: op.rn.to_string(),
                    data: (kind != RecordOpType::Delete).then(|| after_image(op)),
                    before: op.before.as_ref().map(BeforeImage::to_map),
                    destructive: op.destructive,
                }
            })
            .collect();
        let mut record = Record {
            version: FORMAT_VERSION,
            id,
            pool_id: self.pool_id.clone(),
            namespace: self.options.namespace.clone(),
            created_at: now_iso(),
            state: RecordState::Pending,
            ops,
            depot_ops: Vec::new(),
            completed_at: None,
        };
        let mut backups = Vec::new();
        if record_files {
            match self.log_files(pool, &record.id, depot_ops).await {
                Ok((logged, before)) => {
                    record.depot_ops = logged;
                    backups = before;
                }
                Err(e) => {
                    let _ = self.files.remove_payloads(&record.id).await;
                    return Err(self.write_error(e));
                }
            }
        }
        let json = record.to_signed_json(&self.keys);
        // Headroom below the read limit: the record is rewritten with its outcome (a state,
        // `completedAt`), a few bytes longer, and must still be read back.
        let most = files::MAX_RECORD_BYTES - (64 << 10);
        let written = if json.len() > most {
            Err(Error::WalRecord {
                record: record.id.clone(),
                reason: format!(
                    "would be {} bytes, more than a record can be ({most} bytes): the write \
                     is too large for the WAL",
                    json.len(),
                ),
            })
        } else {
            self.files
                .write(Folder::Pending, &record.id, json, false)
                .await
        };
        if let Err(e) = written {
            let _ = self.files.remove_payloads(&record.id).await;
            return Err(self.write_error(e));
        }
        Ok(Some(Logged {
            record,
            backups,
            depot: Arc::clone(&self.files.depot),
        }))
    }

    /// Stores the content each depot op writes and the content it replaces or deletes;
    /// returns the record's depot ops and, per op of the plan, the payload of the content it
    /// replaces or deletes (the op's undo backup).
    async fn log_files(
        &self,
        pool: &Pool,
        id: &str,
        depot_ops: &[&DepotOp],
    ) -> Result<(Vec<RecordDepotOp>, Vec<Option<crate::depot::DepotKey>>)> {
        let wal_depot = self.files.depot.ident().to_owned();
        let mut logged = Vec::with_capacity(depot_ops.len());
        let mut backups = Vec::with_capacity(depot_ops.len());
        for op in depot_ops {
            backups.push(None);
            let rn = op.rn();
            let depot = pool.depot_of(rn)?;
            let key = crate::depot::file_key(rn)?;
            let n = logged.len();
            let (kind, payload_rn) = match op {
                DepotOp::Put { state, .. } => {
                    let Some((content, stream)) = take_content(state, rn, depot.ident(), &key)?
                    else {
                        continue;
                    };
                    let after = self.files.payload_key(id, n, "after.bin")?;
                    self.files.put_payload(&after, content).await?;
                    if stream {
                        // The stream is spent: the put reads the payload instead.
                        let again = self.files.get_payload(&after).await?;
                        refill(
                            state,
                            rn,
                            crate::depot::FileContent::from_file_stream(again),
                        )?;
                    }
                    (DepotOpType::Put, Some(after.to_rn(&wal_depot)?.to_string()))
                }
                DepotOp::Delete { .. } => (DepotOpType::Delete, None),
            };
            let before_payload_rn = match depot.size(&key).await? {
                Some(_) => {
                    let before = self.files.payload_key(id, n, "before.bin")?;
                    let content = depot.get(&key).await?;
                    self.files
                        .put_payload(
                            &before,
                            crate::depot::FileContent::from_file_stream(content),
                        )
                        .await?;
                    let rn = before.to_rn(&wal_depot)?.to_string();
                    if let Some(slot) = backups.last_mut() {
                        *slot = Some(before);
                    }
                    Some(rn)
                }
                None => None,
            };
            logged.push(RecordDepotOp {
                kind,
                rn: rn.to_string(),
                payload_rn,
                before_payload_rn,
            });
        }
        Ok((logged, backups))
    }

    /// Settles a write's record once the write returned: done, or failed and undone, is
    /// returned as a [`Finish`] for [`WalLog::finish`]. A write whose undo failed, or
    /// whose outcome is unknown, is rolled back from its record at once (its locks are still
    /// held); if that fails too the record stays pending for the next recovery and its RNs
    /// refuse writes until then.
    pub(crate) async fn settle(
        &self,
        pool: &Pool,
        logged: Logged,
        keys: &[Arc<str>],
        result: Result<()>,
    ) -> (Result<()>, Option<Finish>) {
        let mut record = logged.record;
        match result {
            Ok(()) => (
                Ok(()),
                Some(Finish {
                    record,
                    state: RecordState::Done,
                }),
            ),
            Err(error) if !unsettled(&error) => (
                Err(error),
                Some(Finish {
                    record,
                    state: RecordState::Failed,
                }),
            ),
            Err(error) => {
                record.state = RecordState::Aborting;
                let json = record.to_signed_json(&self.keys);
                if let Err(e) = self
                    .files
                    .write(Folder::Pending, &record.id, json, true)
                    .await
                {
                    tracing::warn!(record = %record.id, error = %e,
                        "korm: the WAL record of a failed write could not be marked aborting");
                }
                match recover::resolve(pool, self, &record, recover::Direction::Back).await {
                    Ok(_) => {
                        let error = match error {
                            // The WAL finished the undo: what remains is the first failure.
                            Error::UndoFailed { source, .. } => *source,
                            other => other,
                        };
                        (
                            Err(error),
                            Some(Finish {
                                record,
                                state: RecordState::Failed,
                            }),
                        )
                    }
                    Err(e) => {
                        tracing::error!(record = %record.id, error = %e,
                            "korm: a failed write could not be rolled back; its RNs refuse \
                             writes until the WAL is recovered (Pool::wal().recover())");
                        self.blocked
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Blocked {
                                record: record.id.clone(),
                                keys: keys.to_vec(),
                            });
                        (Err(error), None)
                    }
                }
            }
        }
    }

    /// Finishes a record (done, or failed and undone) before the write's locks are released.
    pub(crate) async fn finish(&self, finish: Finish) {
        let Finish { mut record, state } = finish;
        self.close(&mut record, state).await;
    }

    /// Lets go of this process's record slots (the pool is closing).
    pub(crate) fn close_files(&self) {
        self.files.drop_slots();
    }

    /// Ends a record: to `done/` with `state` (retention keep), or removed with its payloads.
    /// A failure is logged: the write's outcome stands, and a leftover pending record is
    /// found as it left things by the next recovery.
    async fn close(&self, record: &mut Record, state: RecordState) {
        let id = record.id.clone();
        if state == RecordState::Failed && record.state != RecordState::Failed {
            // First said in the pending record itself (atomically, synced with `fsync`): a
            // record left pending by a failed removal, or brought back by a power loss before
            // the removal reached the disk, must not be brought forward by the next
            // recovery, since its caller was told the write failed.
            record.state = state;
            let json = record.to_signed_json(&self.keys);
            if let Err(e) = self.files.write(Folder::Pending, &id, json, true).await {
                tracing::warn!(record = %id, error = %e,
                    "korm: the WAL record of a failed write could not be marked failed");
            }
        }
        let result = match self.options.retention {
            WalRetention::Keep => {
                record.state = state;
                record.completed_at = Some(now_iso());
                let json = record.to_signed_json(&self.keys);
                match self.files.write(Folder::Done, &id, json, true).await {
                    Ok(()) => self.files.remove(Folder::Pending, &id).await,
                    Err(e) => Err(e),
                }
            }
            WalRetention::Delete => match self.files.remove(Folder::Pending, &id).await {
                Ok(()) if !record.depot_ops.is_empty() => self.files.remove_payloads(&id).await,
                other => other,
            },
        };
        if let Err(e) = result {
            tracing::warn!(record = %id, error = %e, "korm: a WAL record could not be finished");
        }
    }

    /// Reads and checks a stored record; `Err` says why it is refused.
    pub(crate) fn check(&self, id: &str, bytes: &[u8]) -> std::result::Result<Record, Refusal> {
        let (record, _) = Record::parse(bytes, &self.keys, self.options.accept_unsigned)?;
        if record.id != id {
            return Err(Refusal(format!(
                "names itself {:?} but is stored as {id:?}",
                record.id
            )));
        }
        if record.pool_id != self.pool_id || record.namespace != self.options.namespace {
            return Err(Refusal(format!(
                "belongs to pool {:?} namespace {:?}, not this one",
                record.pool_id, record.namespace
            )));
        }
        // Payloads must be this record's own, in the WAL depot: a record can not make
        // recovery copy a file from anywhere else.
        let own = format!("{}/payloads/{id}/", self.files.base);
        for op in &record.depot_ops {
            for payload in [&op.payload_rn, &op.before_payload_rn]
                .into_iter()
                .flatten()
            {
                let inside = payload
                    .parse::<crate::Rn>()
                    .ok()
                    .filter(|rn| rn.depot() == Some(self.files.depot.ident()))
                    .and_then(|rn| crate::depot::own_file_key(&rn).ok())
                    .is_some_and(|key| key.as_str().starts_with(&own));
                if !inside {
                    return Err(Refusal(format!(
                        "has a payload outside its own folder: {payload}"
                    )));
                }
            }
        }
        Ok(record)
    }

    /// The records in a folder: each checked, or refused with the reason.
    pub(crate) async fn records(
        &self,
        folder: Folder,
    ) -> Result<Vec<(String, std::result::Result<Record, Refusal>)>> {
        let mut out = Vec::new();
        for id in self.files.list(folder).await? {
            match self.files.read(folder, &id).await {
                Ok(Some(bytes)) => {
                    let checked = self.check(&id, &bytes);
                    out.push((id, checked));
                }
                Ok(None) => {}
                // Too large to read: refused like a record that does not parse.
                Err(Error::WalRecord { reason, .. }) => out.push((id, Err(Refusal(reason)))),
                // A file whose name no record has (a copy named `... 2.json`, a `:` in it):
                // reported and left in place, not a failure of every open.
                Err(Error::InvalidDepotKey { .. }) => {
                    let reason = "has a file name that is not a record id (korm names \
                                  records by their UUID)";
                    out.push((id, Err(Refusal(reason.to_owned()))));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Whether a failed write may have left data behind: its undo failed, or the outcome of a
/// layer's commit is unknown.
fn unsettled(error: &Error) -> bool {
    matches!(error, Error::UndoFailed { .. }) || error.outcome_unknown()
}

/// A pool's write-ahead log, from [`Pool::wal`](crate::Pool::wal): its pending records,
/// and recovery on demand.
#[derive(Debug, Clone, Copy)]
pub struct Wal<'p> {
    pool: &'p Pool,
    log: &'p WalLog,
}

impl<'p> Wal<'p> {
    pub(crate) fn new(pool: &'p Pool, log: &'p WalLog) -> Self {
        Wal { pool, log }
    }

    /// The pool id the records are filed under.
    pub fn pool_id(&self) -> &str {
        &self.log.pool_id
    }

    /// The options the log runs with.
    pub fn options(&self) -> &WalOptions {
        &self.log.options
    }

    /// The folder of the records in the WAL depot (`__korm_wal__/{namespace}/{poolId}`).
    pub fn folder(&self) -> &str {
        &self.log.files.base
    }

    /// The pending records: writes in progress, or left by a crash (`Err`: a record that
    /// would be refused, and why).
    ///
    /// # Errors
    /// The WAL depot's error.
    pub async fn pending(&self) -> Result<Vec<(String, std::result::Result<Record, String>)>> {
        self.log.listing(Folder::Pending).await
    }

    /// The finished records kept by retention keep.
    ///
    /// # Errors
    /// The WAL depot's error.
    pub async fn done(&self) -> Result<Vec<(String, std::result::Result<Record, String>)>> {
        self.log.listing(Folder::Done).await
    }

    /// The record with this id, pending or done.
    ///
    /// # Errors
    /// [`Error::WalRecord`] when there is no such record or it is refused (it fails its MAC
    /// check, ...), and the WAL depot's error.
    pub async fn record(&self, id: &str) -> Result<Record> {
        self.log.find(id).await
    }

    /// Recovers every pending record now, as opening the pool does (see the
    /// [module docs](crate::wal)): records of writes still running wait for their locks and
    /// are found finished. Clears the RNs a failed rollback had blocked.
    ///
    /// # Errors
    /// [`Error::WalRecovery`] naming the first record that could not be recovered (a layer is
    /// down, ...): it stays pending, and so do the records after it.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        recover::recover(self.pool, self.log).await
    }

    /// The report of the recovery that ran when the pool opened.
    pub fn opened_with(&self) -> Option<RecoveryReport> {
        self.log
            .opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The pool ids with records under `namespace` in `depot`, sorted (one delimiter listing).
async fn pool_ids_in(depot: &dyn Depot, namespace: &str) -> Result<Vec<String>> {
    let prefix = crate::depot::DepotKey::parse(&format!("__korm_wal__/{namespace}"))?;
    let level = depot.list_level(&prefix).await?;
    Ok(level
        .folders
        .into_iter()
        .filter(|f| check_folder_name("pool id", f).is_ok())
        .collect())
}

/// The pending records other pool ids of this log's namespace hold: `(pool id, how many)`.
/// Records filed under a pool id that is no longer this pool's (its layers or depots were
/// renamed or added, and no pool metadata fixes the id) are otherwise never recovered.
pub(crate) async fn pending_elsewhere(log: &WalLog) -> Result<Vec<(String, usize)>> {
    let depot = &*log.files.depot;
    let mut out = Vec::new();
    for pool_id in pool_ids_in(depot, &log.options.namespace).await? {
        if pool_id == log.pool_id {
            continue;
        }
        let pending = crate::depot::DepotKey::parse(&format!(
            "__korm_wal__/{}/{pool_id}/pending",
            log.options.namespace
        ))?;
        let level = depot.list_level(&pending).await?;
        let records = level
            .files
            .iter()
            .filter(|key| key.as_str().ends_with(".json"))
            .count();
        if records > 0 {
            out.push((pool_id, records));
        }
    }
    Ok(out)
}

/// Refuses a WAL namespace or pool id that is not a folder name of the WAL
/// (`__korm_wal__/{namespace}/{poolId}`).
fn check_folder_name(what: &'static str, name: &str) -> Result<()> {
    crate::rn::validate_layer_ident(name).map_err(|_| Error::InvalidIdentifier {
        what,
        name: crate::error::clip(name),
        reason: "must be 1 to 64 characters matching [A-Za-z0-9_-]".to_owned(),
    })
}

/// A WAL read without opening its pool (no recovery runs): what `korm wal status` and
/// `korm wal show` use.
#[derive(Debug)]
pub struct WalReader {
    log: WalLog,
}

impl WalReader {
    /// Reads the WAL in `depot` (named `wal` in payload RNs unless `depot_ident` says
    /// otherwise) under `options`, whose pool id must be set; records are checked with the
    /// process's key ring.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] without a pool id, [`Error::Key`] without an encryption key,
    /// and the depot's error when it can not be opened.
    pub async fn open(
        depot_ident: &str,
        depot: impl Into<crate::depot::DepotSpec>,
        options: WalOptions,
    ) -> Result<WalReader> {
        let pool_id = options.pool_id.clone().ok_or(Error::InvalidOption {
            option: "pool_id",
            reason: "reading a WAL without its pool needs the pool id its records are filed \
                     under"
                .to_owned(),
        })?;
        let (depot, root) = depot.into().open(depot_ident).await?;
        let ring = crate::crypto::key_ring()?;
        Ok(WalReader {
            log: WalLog::new(depot, root, options, pool_id, &ring, false)?,
        })
    }

    /// The pool ids whose records `depot` holds under `namespace`
    /// (`__korm_wal__/{namespace}/{poolId}/`), sorted: where to point [`WalReader::open`]
    /// when the pool id is not known. Works on any depot, local or S3.
    ///
    /// # Errors
    /// [`Error::InvalidIdentifier`] for a namespace that is not a WAL folder name, and the
    /// depot's error.
    pub async fn pool_ids(
        depot_ident: &str,
        depot: impl Into<crate::depot::DepotSpec>,
        namespace: &str,
    ) -> Result<Vec<String>> {
        check_folder_name("WAL namespace", namespace)?;
        let (depot, _) = depot.into().open(depot_ident).await?;
        let listed = pool_ids_in(&*depot, namespace).await;
        depot.close().await;
        listed
    }

    /// The folder of the records in the WAL depot (`__korm_wal__/{namespace}/{poolId}`).
    pub fn folder(&self) -> &str {
        &self.log.files.base
    }

    /// As [`Wal::pending`].
    ///
    /// # Errors
    /// The WAL depot's error.
    pub async fn pending(&self) -> Result<Vec<(String, std::result::Result<Record, String>)>> {
        self.log.listing(Folder::Pending).await
    }

    /// As [`Wal::done`].
    ///
    /// # Errors
    /// The WAL depot's error.
    pub async fn done(&self) -> Result<Vec<(String, std::result::Result<Record, String>)>> {
        self.log.listing(Folder::Done).await
    }

    /// As [`Wal::record`].
    ///
    /// # Errors
    /// As [`Wal::record`].
    pub async fn record(&self, id: &str) -> Result<Record> {
        self.log.find(id).await
    }
}

impl WalLog {
    async fn listing(
        &self,
        folder: Folder,
    ) -> Result<Vec<(String, std::result::Result<Record, String>)>> {
        Ok(self
            .records(folder)
            .await?
            .into_iter()
            .map(|(id, r)| (id, r.map_err(|refusal| format!("the record {}", refusal.0))))
            .collect())
    }

    async fn find(&self, id: &str) -> Result<Record> {
        if !id.is_empty() && !id.contains(['/', '\\', '.']) {
            for folder in [Folder::Pending, Folder::Done] {
                if let Some(bytes) = self.files.read(folder, id).await? {
                    return self.check(id, &bytes).map_err(|r| Error::WalRecord {
                        record: id.to_owned(),
                        reason: r.0,
                    });
                }
            }
        }
        Err(Error::WalRecord {
            record: crate::error::clip(id),
            reason: "no such record".to_owned(),
        })
    }

    pub(crate) fn set_opened(&self, report: RecoveryReport) {
        *self.opened.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
    }

    /// Drops the blocks of records that are no longer pending.
    pub(crate) async fn unblock_finished(&self) -> Result<()> {
        let pending = self.files.list(Folder::Pending).await?;
        self.blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|b| pending.contains(&b.record));
        Ok(())
    }
}

/// The whole item after `op`, as a record holds it (korm 1.5's records hold whole rows, and
/// recovery writes the whole image): an update, which writes only the fields it changes,
/// over its before-image.
fn after_image(op: &crate::write::WriteOp) -> serde_json::Map<String, serde_json::Value> {
    match (&op.kind, &op.before) {
        (OpKind::Update, Some(before)) => {
            let mut image = before.to_map();
            for field in op.fields.iter() {
                image.insert(field.name.clone(), field.value.clone());
            }
            image
        }
        _ => crate::model::fields_to_map(&op.fields),
    }
}
