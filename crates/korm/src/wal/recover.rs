//! Recovery: finishing (or rolling back) the writes that pending records describe.

use std::sync::Arc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::files::Folder;
use super::{Record, RecordOpType, RecordState, WalLog, WalRetention};
use crate::depot::{DepotKey, FileContent, file_key, file_lock_key, own_file_key};
use crate::error::{Error, Result};
use crate::layer::{LayerHandle, OpKind};
use crate::lock::{item_lock_key, release_all};
use crate::model::{Field, StoredRow};
use crate::pool::Pool;
use crate::rn::Rn;
use crate::write::{BeforeImage, WriteOp, WritePlan, apply_groups, group_by_layer};

/// What recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The records recovered, oldest first.
    pub recovered: Vec<RecoveredRecord>,
    /// The records refused (they fail their MAC check, are unsigned, malformed, or belong
    /// elsewhere): left where they are, never replayed.
    pub refused: Vec<RefusedRecord>,
    /// Pending records of other pool ids in this namespace, `(pool id, how many)`: another
    /// live pool's writes in flight, or this pool's before its layers or depots were renamed
    /// or added (its id changed; recover them with
    /// [`WalOptions::with_pool_id`](crate::WalOptions::with_pool_id) and the old id).
    pub elsewhere: Vec<(String, usize)>,
}

/// One recovered record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveredRecord {
    /// The record id.
    pub id: String,
    /// [`RecordState::Done`] when its write was brought forward, [`RecordState::Failed`]
    /// when it was rolled back.
    pub outcome: RecordState,
    /// The items and files changed to finish it.
    pub applied: usize,
    /// The items and files left alone because they were written since (they hold neither
    /// the record's before nor its after state).
    pub superseded: Vec<String>,
    /// Why a pending record was rolled back instead of brought forward: what the data
    /// written since refuses for good (a unique value another item took, a column of
    /// another kind). Its write never answered its caller, so undoing it loses nothing
    /// anyone was told was stored.
    pub rolled_back: Option<String>,
}

/// One refused record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefusedRecord {
    /// The record id (its file name).
    pub id: String,
    /// Why it is refused.
    pub reason: String,
}

/// Which way a record is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// To the state after the write (a pending record).
    Forward,
    /// To the state before it (a record whose write failed).
    Back,
}

/// What finishing one record did.
#[derive(Debug, Default)]
pub(crate) struct Resolution {
    applied: usize,
    superseded: Vec<String>,
}

/// Recovers every pending record (see the [module docs](super)).
pub(crate) async fn recover(pool: &Pool, log: &WalLog) -> Result<RecoveryReport> {
    let locks = pool.locks();
    let whole: Arc<str> = Arc::from(format!("__korm_wal__:{}", log.files.base));
    let guard = locks.acquire_all(vec![whole], locks.wait()).await?;
    let result = recover_locked(pool, log).await;
    release_all(guard).await;
    let mut report = result?;
    log.unblock_finished().await?;
    // A listing of the namespace: what this pool's recovery can not see is said.
    match super::pending_elsewhere(log).await {
        Ok(elsewhere) => {
            for (pool_id, records) in &elsewhere {
                tracing::warn!(namespace = %log.options.namespace, pool_id = %pool_id, records,
                    "korm: pending WAL records of another pool id in this namespace: another \
                     pool's writes in flight, or this pool's before its layers or depots \
                     changed (recover them with WalOptions::with_pool_id and that id)");
            }
            report.elsewhere = elsewhere;
        }
        Err(e) => tracing::warn!(error = %e,
            "korm: the WAL namespace could not be listed for other pools' pending records"),
    }
    Ok(report)
}

async fn recover_locked(pool: &Pool, log: &WalLog) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    let mut records = Vec::new();
    for (id, checked) in log.records(Folder::Pending).await? {
        match checked {
            Ok(record) => records.push(record),
            // A record read while its write finished (and its file was reused) is gone
            // when read again.
            Err(_) if matches!(log.files.read(Folder::Pending, &id).await, Ok(None)) => {}
            Err(refusal) => {
                tracing::error!(record = %id, reason = %refusal.0,
                    "korm: a pending WAL record is refused and not replayed");
                report.refused.push(RefusedRecord {
                    id,
                    reason: format!("the record {}", refusal.0),
                });
            }
        }
    }
    records.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    let failed = |record: &Record, source: Error| Error::WalRecovery {
        record: record.id.clone(),
        source: Box::new(source),
    };
    for record in records {
        let keys = lock_keys(pool, &record).map_err(|e| failed(&record, e))?;
        let locks = pool.locks();
        let guards = locks
            .acquire_all(keys, locks.wait())
            .await
            .map_err(|e| failed(&record, e))?;
        // In flight as a write plan is: a close waits for the record before it closes a
        // layer or lets the locks go.
        let Some(writing) = pool.writing().await else {
            release_all(guards).await;
            return Err(failed(&record, Error::PoolClosed));
        };
        let outcome = recover_one(pool, log, &record.id).await;
        release_all(guards).await;
        drop(writing);
        match outcome {
            Ok(Some(done)) => report.recovered.push(done),
            Ok(None) => {}
            Err(e) => return Err(failed(&record, e)),
        }
    }
    // Payloads of records that are gone (a crash between removing a record and its
    // payloads). Done records keep theirs, whatever this pool's retention: another process
    // (or an earlier configuration) may keep records. A writer stores its payloads before
    // its record, so payloads without a record may be a write under way: only old ones go.
    let pending = log.files.list(Folder::Pending).await?;
    let done = log.files.list(Folder::Done).await?;
    let now = std::time::SystemTime::now();
    for id in log.files.payload_ids().await? {
        if !pending.contains(&id) && !done.contains(&id) && abandoned(&id, now) {
            log.files.remove_payloads(&id).await?;
        }
    }
    Ok(report)
}

/// How old payloads without a record must be before a recovery removes them: longer than a
/// writer takes from storing its payloads (large files, a slow store) to storing its record.
const PAYLOADS_ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// How old payloads without a record may be and still be taken for korm-rs's crash leftovers:
/// an id's first 48 bits are a time only in korm-rs's ids (`rn::new_id`); korm 1.5's are
/// random, and one of them reads as a time in this window (and its payloads, a write of
/// korm 1.5 under way, would go) about once in 50,000 ids.
const PAYLOADS_ABANDONED_BEFORE: std::time::Duration =
    std::time::Duration::from_secs(90 * 24 * 3600);

/// Whether the payloads of record `id`, which has no record, are a crash's leftovers: its id
/// tells when it was made (korm-rs's record ids are time-prefixed UUIDv4s, `rn::new_id`), more
/// than [`PAYLOADS_ABANDONED_AFTER`] and less than [`PAYLOADS_ABANDONED_BEFORE`] ago. Other
/// ids are left alone: a writer may still be storing them.
fn abandoned(id: &str, now: std::time::SystemTime) -> bool {
    let Ok(uuid) = uuid::Uuid::parse_str(id) else {
        return false;
    };
    if uuid.get_version_num() != 4 {
        return false;
    }
    let millis = u64::try_from(uuid.as_u128() >> 80).unwrap_or(u64::MAX);
    let made = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
    now.duration_since(made)
        .is_ok_and(|age| age > PAYLOADS_ABANDONED_AFTER && age < PAYLOADS_ABANDONED_BEFORE)
}

/// Recovers one record under its locks. `None` when it is gone meanwhile (its write was
/// running and has finished).
async fn recover_one(pool: &Pool, log: &WalLog, id: &str) -> Result<Option<RecoveredRecord>> {
    let Some(bytes) = log.files.read(Folder::Pending, id).await? else {
        return Ok(None);
    };
    let mut record = log.check(id, &bytes).map_err(|r| Error::WalRecord {
        record: id.to_owned(),
        reason: r.0,
    })?;
    if log.options.retention == WalRetention::Keep
        && log.files.read(Folder::Done, id).await?.is_some()
    {
        // Finished: only removing the pending copy was lost.
        log.files.remove(Folder::Pending, id).await?;
        return Ok(None);
    }
    let (direction, mut outcome) = match record.state {
        RecordState::Aborting => (Direction::Back, RecordState::Failed),
        // Finished (a failed write, undone and marked so): only its removal was lost.
        RecordState::Failed => {
            log.close(&mut record, RecordState::Failed).await;
            return Ok(None);
        }
        // (A `done` record found pending is brought forward: nothing to do when it is.)
        RecordState::Pending | RecordState::Done => (Direction::Forward, RecordState::Done),
    };
    let mut rolled_back = None;
    let resolution = match resolve(pool, log, &record, direction).await {
        Ok(resolution) => resolution,
        // A write that can never be brought forward would stop every open: it is undone
        // instead (comparing each item and file, as any recovery does). A write whose
        // record is still pending never answered its caller: an answered one holds its
        // after state everywhere, or was written over since (left alone, never an error).
        Err(e) if direction == Direction::Forward && refused_for_good(&e) => {
            tracing::error!(record = %id, error = %e,
                "korm: a pending WAL record can not be brought forward; its write is rolled back");
            let resolution = resolve(pool, log, &record, Direction::Back).await?;
            outcome = RecordState::Failed;
            rolled_back = Some(e.to_string());
            resolution
        }
        Err(e) => return Err(e),
    };
    for rn in &resolution.superseded {
        tracing::warn!(record = %id, rn = %rn,
            "korm: WAL recovery left an item alone: it was written since the record");
    }
    log.close(&mut record, outcome).await;
    Ok(Some(RecoveredRecord {
        id: id.to_owned(),
        outcome,
        applied: resolution.applied,
        superseded: resolution.superseded,
        rolled_back,
    }))
}

/// Whether bringing a record forward failed on what the stored data refuses whatever the
/// retries (not on a server that is down or busy, which a later open may get past).
fn refused_for_good(e: &Error) -> bool {
    if let Error::WriteFailed { source, .. } = e {
        return refused_for_good(source);
    }
    matches!(
        e,
        Error::UniqueViolation { .. }
            | Error::SchemaMismatch { .. }
            | Error::Database {
                kind: crate::DbErrorKind::UniqueViolation | crate::DbErrorKind::ConstraintViolation,
                ..
            }
    )
}

/// The lock keys of a record's items and files.
fn lock_keys(pool: &Pool, record: &Record) -> Result<Vec<Arc<str>>> {
    let mut keys = Vec::new();
    for op in &record.ops {
        let rn: Rn = op.rn.parse()?;
        keys.push(item_lock_key(pool.route(&rn)?.ident(), &rn));
    }
    for op in &record.depot_ops {
        let rn: Rn = op.rn.parse()?;
        keys.push(file_lock_key(&rn)?);
    }
    Ok(keys)
}

/// Brings the items and files of `record` to the state `direction` asks for, under locks
/// the caller holds: each one is read and compared first (see the [module docs](super)).
pub(crate) async fn resolve(
    pool: &Pool,
    log: &WalLog,
    record: &Record,
    direction: Direction,
) -> Result<Resolution> {
    let mut resolution = Resolution::default();
    // Files first: a row never points at a file that is not there yet.
    for op in &record.depot_ops {
        resolve_file(pool, log, op, direction, &mut resolution).await?;
    }
    let mut ops = Vec::new();
    for op in &record.ops {
        let rn: Rn = op.rn.parse()?;
        let layer = pool.route(&rn)?;
        let (table, id) = crate::write::item_key(&rn)?;
        let row = layer.fetch(&table, vec![id]).await?.into_iter().next();
        let (wanted, from) = match (direction, op.kind) {
            (Direction::Forward, RecordOpType::Insert | RecordOpType::Update) => {
                (op.data.as_ref(), Some(op.before.as_ref()))
            }
            // A delete without a before-image (korm-rs's destroy) finishes over any row.
            (Direction::Forward, RecordOpType::Delete) => (None, op.before.as_ref().map(Some)),
            (Direction::Back, RecordOpType::Insert) => (None, Some(op.data.as_ref())),
            (Direction::Back, RecordOpType::Update) => (op.before.as_ref(), Some(op.data.as_ref())),
            (Direction::Back, RecordOpType::Delete) => (op.before.as_ref(), Some(None)),
        };
        if same_image(row.as_ref(), wanted) {
            continue;
        }
        if let Some(from) = from
            && !same_image(row.as_ref(), from)
        {
            resolution.superseded.push(op.rn.clone());
            continue;
        }
        ops.push(write_op(rn, wanted, row, op.destructive));
    }
    resolution.applied += ops.len();
    if !ops.is_empty() {
        let plan = WritePlan {
            ops,
            ..WritePlan::default()
        };
        let groups: Vec<(LayerHandle, Vec<usize>)> = group_by_layer(pool, &plan)?;
        let fences = vec![None; plan.ops.len()];
        apply_groups(&plan, &groups, fences).await?;
    }
    Ok(resolution)
}

/// The op that makes the stored row (`row`) hold `wanted` (`None`: no row).
fn write_op(
    rn: Rn,
    wanted: Option<&Map<String, Value>>,
    row: Option<StoredRow>,
    destructive: bool,
) -> WriteOp {
    let fields = crate::write::image_fields;
    let (kind, fields) = match (wanted, &row) {
        (None, _) => (OpKind::DeleteIfExists, Vec::new()),
        (Some(image), None) => (OpKind::Insert, fields(image)),
        (Some(image), Some(row)) => {
            // The whole image: what it lacks, the row must not hold either.
            let mut all = fields(image);
            for (name, cell) in row.cells() {
                if !image.contains_key(name) && cell.to_value() != Value::Null {
                    all.push(Field {
                        name: name.to_owned(),
                        value: Value::Null,
                        kind: None,
                        unique: false,
                    });
                }
            }
            (OpKind::Update, all)
        }
    };
    WriteOp {
        kind,
        rn,
        fields: fields.into(),
        before: row.map(BeforeImage::Read),
        destructive,
        uploads: Vec::new(),
        // Recovery brings an item to a state it compared the row with already.
        check: false,
    }
}

/// Whether a stored row holds an image (`None`: no row). A field the image lacks must be
/// null in the row; numbers compare by value, so a double column holding a whole number
/// matches it.
fn same_image(row: Option<&StoredRow>, image: Option<&Map<String, Value>>) -> bool {
    match (row, image) {
        (None, None) => true,
        (Some(row), Some(image)) => {
            let stored = row.to_map();
            image
                .iter()
                .all(|(name, value)| same_value(stored.get(name).unwrap_or(&Value::Null), value))
                && stored
                    .iter()
                    .all(|(name, value)| image.contains_key(name) || value.is_null())
        }
        _ => false,
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Bool(flag), Value::Number(n)) | (Value::Number(n), Value::Bool(flag)) => {
            n.as_i64() == Some(i64::from(*flag))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_value(v, w))
        }
        _ => a == b,
    }
}

/// The content a file should hold: a payload, or no file.
async fn resolve_file(
    pool: &Pool,
    log: &WalLog,
    op: &super::RecordDepotOp,
    direction: Direction,
    resolution: &mut Resolution,
) -> Result<()> {
    let rn: Rn = op.rn.parse()?;
    let depot = pool.depot_of(&rn)?;
    let key = file_key(&rn)?;
    let payload = |text: &Option<String>| -> Result<Option<DepotKey>> {
        text.as_deref()
            .map(|t| t.parse::<Rn>().and_then(|rn| own_file_key(&rn)))
            .transpose()
    };
    let after = payload(&op.payload_rn)?;
    let before = payload(&op.before_payload_rn)?;
    let (wanted, from) = match (direction, op.kind) {
        (Direction::Forward, super::DepotOpType::Put) => (after, before),
        (Direction::Forward, super::DepotOpType::Delete) => (None, before),
        (Direction::Back, super::DepotOpType::Put) => (before, after),
        (Direction::Back, super::DepotOpType::Delete) => (before, None),
    };
    let current = digest(&*depot, &key).await?;
    let wanted_digest =
        match &wanted {
            Some(payload) => Some(digest(&*log.files.depot, payload).await?.ok_or_else(|| {
                Error::FileNotFound {
                    depot: log.files.depot.ident().to_owned(),
                    key: payload.to_string(),
                }
            })?),
            None => None,
        };
    if current == wanted_digest {
        return Ok(());
    }
    let from_digest = match &from {
        Some(payload) => digest(&*log.files.depot, payload).await?,
        None => None,
    };
    if current != from_digest {
        resolution.superseded.push(op.rn.clone());
        return Ok(());
    }
    match wanted {
        Some(payload) => {
            let content = log.files.get_payload(&payload).await?;
            depot
                .put(&key, FileContent::from_file_stream(content))
                .await?;
        }
        None => depot.delete(&key).await?,
    }
    resolution.applied += 1;
    Ok(())
}

/// The size and SHA-256 of a file, or `None` when there is none.
async fn digest(
    depot: &dyn crate::depot::Depot,
    key: &DepotKey,
) -> Result<Option<(u64, [u8; 32])>> {
    use futures_util::StreamExt;
    if depot.size(key).await?.is_none() {
        return Ok(None);
    }
    let mut stream = match depot.get(key).await {
        Ok(stream) => stream,
        Err(Error::FileNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut hash = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        hash.update(&chunk);
    }
    Ok(Some((size, hash.finalize().into())))
}
