//! The one write path.
//!
//! create, commit, delete, restore and destroy all become a [`WritePlan`]: ops with their
//! before-images, run by [`execute`]:
//!
//! 1. route every op to its layer (an unknown layer fails before anything is written);
//! 2. lock every touched RN in sorted order (in-process, and the shared row with
//!    [`with_locks`](crate::PoolBuilder::with_locks)), except those the caller already holds;
//! 3. run the depot ops (file uploads and deletes, each with a backup of what it replaces),
//!    then apply each layer's ops inside that database's own transaction, layers in the order
//!    they first appear in the plan; a write under a shared lock carries its fencing token,
//!    checked in the same transaction;
//! 4. if a layer fails, undo what the earlier layers applied, from the before-images, newest
//!    first, then the depot ops, and return the error (or [`Error::UndoFailed`] if the undo
//!    failed too);
//! 5. release the locks.
//!
//! With a write-ahead log, step 2b writes the plan's record durably between 2 and 3, and the
//! record is finished after 4 (see [`crate::wal`]); `tx` and cascades build bigger plans for
//! the same executor. The crash trials (`scripts/crash-trials`, feature `crash-trials`) abort
//! the process at named points of this path ([`crash_point`]).

mod crash_point;
mod diff;
pub(crate) use diff::{FieldDiff, diff};

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::depot::write::DepotOp;
use crate::error::{Error, Result};
use crate::layer::{Expect, Fence, LayerHandle, LayerOp, OpKind, Stored};
use crate::lock::{LockGuard, item_lock_key, release_all};
use crate::model::{Field, StoredRow, infer_kind};
use crate::pool::Pool;
use crate::rn::Rn;

/// One change to one item.
#[derive(Debug, Clone)]
pub(crate) struct WriteOp {
    /// What to do.
    pub(crate) kind: OpKind,
    /// The item.
    pub(crate) rn: Rn,
    /// The new data (insert and update), shared with the layer op and with the item's
    /// before-image of its next write (never copied).
    pub(crate) fields: Arc<[Field]>,
    /// The item's data before the op (update and delete), kept in the form the item had it:
    /// it becomes storage form only when an undo needs it.
    pub(crate) before: Option<BeforeImage>,
    /// Whether columns whose kind changed may be recreated.
    pub(crate) destructive: bool,
    /// Files inside the data to upload with it (see [`crate::depot`]).
    pub(crate) uploads: Vec<DepotOp>,
    /// Whether the op is optimistic: an update applies only while the row still holds the
    /// before-image values of the fields it writes, a delete only while it holds the whole
    /// before-image; otherwise [`Error::Conflict`] and nothing is written. `false`:
    /// last writer wins (and the undo and recovery ops, which restore known states).
    pub(crate) check: bool,
}

/// A lock the caller holds already, that the plan's writes run under.
#[derive(Debug, Clone)]
pub(crate) struct HeldLock {
    key: Arc<str>,
    token: Option<i64>,
    lost: bool,
}

impl HeldLock {
    /// The lock `guard` holds, if it belongs to `pool`'s locks (a guard of another pool
    /// covers nothing here).
    pub(crate) fn of(pool: &Pool, guard: &LockGuard) -> Option<Self> {
        pool.locks().owns(guard).then(|| HeldLock {
            key: Arc::clone(guard.key()),
            token: guard.fence_token(),
            lost: guard.is_lost(),
        })
    }
}

/// The ops of one write, applied together.
#[derive(Debug, Clone, Default)]
pub(crate) struct WritePlan {
    pub(crate) ops: Vec<WriteOp>,
    /// Locks held by the caller: not taken again, and their fencing tokens used.
    pub(crate) held: Vec<HeldLock>,
    /// Depot file writes on their own (file create, commit, delete).
    pub(crate) depot_ops: Vec<DepotOp>,
}

impl WritePlan {
    /// A plan of one op.
    pub(crate) fn single(op: WriteOp) -> Self {
        WritePlan {
            ops: vec![op],
            held: Vec::new(),
            depot_ops: Vec::new(),
        }
    }
}

/// Names the op of a layer batch that failed (`op` is its index in the batch; the executor
/// turns it into the index in the plan).
pub(crate) fn op_failed(op: usize, rn: &str, error: Error) -> Error {
    match error {
        already @ Error::WriteFailed { .. } => already,
        source => Error::WriteFailed {
            op,
            rn: rn.to_owned(),
            source: Box::new(source),
        },
    }
}

/// Runs a write plan.
///
/// # Errors
/// The first failure (a unique violation, a schema mismatch, a missing item, a database
/// error); what other layers had applied is undone before it returns. If that undo fails too,
/// [`Error::UndoFailed`] carries both errors and names the RNs.
///
/// # Cancel safety
/// A layer's batch, once sent, is applied entirely or not at all even if this future is
/// dropped; dropping it between layers leaves the earlier layers applied. With a WAL, a
/// future dropped after its record was written leaves the record pending: the next recovery
/// (the next open, or `Wal::recover`) brings the write forward. Treat a dropped write as one
/// of unknown outcome.
pub(crate) async fn execute(pool: &Pool, plan: WritePlan) -> Result<()> {
    use tracing::Instrument as _;
    let span = tracing::debug_span!(
        "korm.write",
        ops = plan.ops.len(),
        files = plan.depot_ops.len() + plan.ops.iter().map(|op| op.uploads.len()).sum::<usize>(),
        layers = tracing::field::Empty,
    );
    if span.is_disabled() {
        return execute_plan(pool, plan).await;
    }
    let mut layers: Vec<&str> = Vec::new();
    for op in &plan.ops {
        if let Ok(layer) = pool.route(&op.rn)
            && !layers.contains(&layer.ident())
        {
            layers.push(layer.ident());
        }
    }
    span.record("layers", layers.join(",").as_str());
    let started = std::time::Instant::now();
    let result = execute_plan(pool, plan).instrument(span.clone()).await;
    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match &result {
        Ok(()) => tracing::debug!(parent: &span, duration_us, outcome = "ok", "write plan applied"),
        Err(error) => {
            tracing::debug!(parent: &span, duration_us, outcome = "failed", %error, "write plan failed");
        }
    }
    result
}

/// [`execute`] without its span: first the before-images the plan does not know (updates of
/// items made from data), read under the items' locks, which the plan then runs under.
async fn execute_plan(pool: &Pool, mut plan: WritePlan) -> Result<()> {
    let keys = plan_keys(pool, &plan)?;
    let unknown: Vec<usize> = (0..plan.ops.len())
        .filter(|&i| plan.ops[i].kind == OpKind::Update && plan.ops[i].before.is_none())
        .collect();
    if unknown.is_empty() {
        return execute_known(pool, plan, keys).await;
    }
    // Every RN the plan writes is locked now, in one sorted acquire: locking these first and
    // the rest later would let two plans each hold what the other waits for (a deadlock
    // until the lock timeout).
    let mut to_lock = keys.0.clone();
    to_lock.retain(|key| !plan.held.iter().any(|h| h.key == *key));
    to_lock.sort();
    to_lock.dedup();
    let locks = pool.locks();
    let guards = locks.acquire_all(to_lock, locks.wait()).await?;
    let filled = fill_before_images(pool, &mut plan, &unknown, &keys.0[..keys.1]).await;
    let result = match filled {
        Ok(()) => {
            plan.held
                .extend(guards.iter().filter_map(|guard| HeldLock::of(pool, guard)));
            execute_known(pool, plan, keys).await
        }
        Err(error) => Err(error),
    };
    release_all(guards).await;
    result
}

/// The ops that write an item an earlier op of the plan writes too; `item_keys` are the
/// ops' lock keys, in op order (an id in another case names the same row).
fn rewrites(item_keys: &[Arc<str>]) -> Vec<usize> {
    if item_keys.len() < 2 {
        return Vec::new();
    }
    let mut seen = std::collections::HashSet::with_capacity(item_keys.len());
    (0..item_keys.len())
        .filter(|&i| !seen.insert(item_keys[i].to_ascii_lowercase()))
        .collect()
}

/// Reads the rows of the ops at `unknown` as their before-images; `item_keys` are the
/// plan's ops' lock keys, in op order.
///
/// # Errors
/// [`Error::NotFound`] for an item not stored, and the layers' read errors.
async fn fill_before_images(
    pool: &Pool,
    plan: &mut WritePlan,
    unknown: &[usize],
    item_keys: &[Arc<str>],
) -> Result<()> {
    // One fetch per layer and table (a tx of many items made from data reads them together).
    let mut groups: Vec<(LayerHandle, String, Vec<usize>)> = Vec::new();
    let again = rewrites(item_keys);
    for &i in unknown {
        // Its before-image would be the stored row, not what the plan's earlier op leaves.
        if again.contains(&i) {
            return Err(Error::InvalidOption {
                option: "tx",
                reason: format!(
                    "it writes {} twice; write an item once in a transaction (with the \
                     changes of both)",
                    plan.ops[i].rn
                ),
            });
        }
        let layer = pool.route(&plan.ops[i].rn)?;
        let (table, _) = item_key(&plan.ops[i].rn)?;
        match groups
            .iter_mut()
            .find(|(l, t, _)| l.same_as(layer) && *t == table)
        {
            Some((_, _, ops)) => ops.push(i),
            None => groups.push((layer.clone(), table, vec![i])),
        }
    }
    for (layer, table, ops) in groups {
        let ids = ops
            .iter()
            .map(|&i| item_key(&plan.ops[i].rn).map(|(_, id)| id))
            .collect::<Result<Vec<_>>>()?;
        let mut rows = layer.fetch(&table, ids.clone()).await?;
        for (&i, id) in ops.iter().zip(&ids) {
            let found = rows
                .iter()
                .position(|row| row.id().eq_ignore_ascii_case(id));
            let Some(found) = found else {
                return Err(Error::NotFound {
                    rn: plan.ops[i].rn.to_string(),
                });
            };
            plan.ops[i].before = Some(BeforeImage::Read(rows.swap_remove(found)));
        }
    }
    Ok(())
}

/// The depot ops of a plan: its own, then each op's uploads.
fn depot_ops_of(plan: &WritePlan) -> impl Iterator<Item = &DepotOp> {
    plan.depot_ops
        .iter()
        .chain(plan.ops.iter().flat_map(|op| &op.uploads))
}

/// The lock keys of every item and file `plan` writes (items first, in op order) and how
/// many are items; each op routed (an unknown layer or depot fails here, before anything is
/// written).
fn plan_keys(pool: &Pool, plan: &WritePlan) -> Result<(Vec<Arc<str>>, usize)> {
    let mut keys: Vec<Arc<str>> = Vec::with_capacity(plan.ops.len());
    for op in &plan.ops {
        keys.push(item_lock_key(pool.route(&op.rn)?.ident(), &op.rn));
    }
    let items = keys.len();
    for op in depot_ops_of(plan) {
        pool.depot_of(op.rn())?;
        keys.push(crate::depot::file_lock_key(op.rn())?);
    }
    Ok((keys, items))
}

/// [`execute_plan`] once every before-image is known; `keys` are the plan's lock keys and
/// how many are items ([`plan_keys`]).
async fn execute_known(
    pool: &Pool,
    plan: WritePlan,
    (keys, item_keys): (Vec<Arc<str>>, usize),
) -> Result<()> {
    // 1. Route every op before writing anything (the keys routed each op already).
    let groups = group_by_layer(pool, &plan)?;
    let depot_ops: Vec<&DepotOp> = depot_ops_of(&plan).collect();
    let wal = pool.wal_log();

    // A WAL record holds one whole image per write, and a recovery compares each with the
    // row as stored: two writes of one item (a delete and a create at its RN, two copies
    // committed) would be replayed wrongly (the second skipped as superseded, or its image
    // undoing the first's change). Refused before anything is written.
    if wal.is_some()
        && let Some(&i) = rewrites(&keys[..item_keys]).first()
    {
        return Err(Error::InvalidOption {
            option: "tx",
            reason: format!(
                "it writes {} twice (a delete and a create at one RN, or two copies of one \
                 item); with a write-ahead log a transaction writes an item once: write it \
                 once with the changes of both",
                plan.ops[i].rn
            ),
        });
    }

    // 2. Lock every touched RN the caller does not hold already, in sorted order.
    if let Some(lost) = plan.held.iter().find(|h| h.lost) {
        return Err(Error::StaleLock {
            rn: lost.key.to_string(),
            token: lost.token.map_or(0, |t| u64::try_from(t).unwrap_or(0)),
        });
    }
    let to_lock: Vec<Arc<str>> = keys
        .iter()
        .filter(|key| !plan.held.iter().any(|h| h.key == **key))
        .cloned()
        .collect();
    let locks = pool.locks();
    let guards = locks.acquire_all(to_lock, locks.wait()).await?;
    // Checked under the locks: a write that failed and could not be rolled back blocks its
    // RNs before it lets go of them, so a writer that was waiting for them sees the block.
    if let Some(wal) = wal
        && let Err(error) = wal.check_blocked(&keys)
    {
        release_all(guards).await;
        return Err(error);
    }
    // In flight from here to the end: a close waits for the plan before it closes anything.
    let Some(_writing) = pool.writing().await else {
        release_all(guards).await;
        return Err(Error::PoolClosed);
    };
    let fences: Vec<Option<Fence>> = keys[..item_keys]
        .iter()
        .map(|key| {
            let token = match guards.iter().find(|g| g.key() == key) {
                Some(guard) => guard.fence_token(),
                None => plan
                    .held
                    .iter()
                    .find(|h| h.key == *key)
                    .and_then(|h| h.token),
            };
            token.map(|token| Fence {
                lock_id: key.to_string(),
                token,
            })
        })
        .collect();

    // 2b. The WAL record, durable before anything is applied.
    let logged = match wal {
        Some(wal) => match wal.begin(pool, &plan, &depot_ops).await {
            Ok(logged) => logged,
            Err(error) => {
                release_all(guards).await;
                return Err(error);
            }
        },
        None => None,
    };
    crash_point::reached("after-wal");

    // 3. Depot ops run before the layers; a layer failure undoes them (see depot::write).
    let result = match crate::depot::write::apply(
        pool,
        depot_ops
            .into_iter()
            .enumerate()
            .map(|(i, op)| (op, logged.as_ref().and_then(|l| l.backup(i)))),
    )
    .await
    {
        Ok(uploaded) => {
            crash_point::reached("after-depot");
            uploaded
                .settle(apply_groups(&plan, &groups, fences).await, logged.is_some())
                .await
        }
        Err(error) => Err(error),
    };
    crash_point::reached("after-layers");
    let (result, finish) = match (wal, logged) {
        (Some(wal), Some(logged)) => wal.settle(pool, logged, &keys, result).await,
        _ => (result, None),
    };

    // 5. Finish the record, then release.
    if let (Some(wal), Some(finish)) = (wal, finish) {
        wal.finish(finish).await;
    }
    release_all(guards).await;
    result
}

/// The plan's ops grouped by layer, layers in the order they first appear.
pub(crate) fn group_by_layer(
    pool: &Pool,
    plan: &WritePlan,
) -> Result<Vec<(LayerHandle, Vec<usize>)>> {
    let mut groups: Vec<(LayerHandle, Vec<usize>)> = Vec::new();
    for (i, op) in plan.ops.iter().enumerate() {
        let layer = pool.route(&op.rn)?;
        match groups.iter_mut().find(|(l, _)| l.same_as(layer)) {
            Some((_, ops)) => ops.push(i),
            None => groups.push((layer.clone(), vec![i])),
        }
    }
    Ok(groups)
}

/// Applies each layer's ops inside its own transaction; if one fails, undoes the layers
/// applied before it.
pub(crate) async fn apply_groups(
    plan: &WritePlan,
    groups: &[(LayerHandle, Vec<usize>)],
    mut fences: Vec<Option<Fence>>,
) -> Result<()> {
    // 3. Apply per layer, each inside its own transaction.
    for (g, (layer, indexes)) in groups.iter().enumerate() {
        let batch = indexes
            .iter()
            .map(|&i| layer_op(&plan.ops[i], fences[i].take()))
            .collect::<Result<Vec<_>>>()?;
        if let Err(error) = layer.apply(batch).await {
            let error = name_failed_op(plan, indexes, error);
            // 4. Undo the layers already applied, newest first.
            let mut undo_errors = Vec::new();
            for (layer, indexes) in groups[..g].iter().rev() {
                let undo: Vec<(usize, LayerOp)> = indexes
                    .iter()
                    .rev()
                    .filter_map(|&i| inverse(&plan.ops[i]).map(|op| (i, op)))
                    .collect();
                if let Some((failed, e)) = undo_layer(layer, undo).await {
                    let rns: Vec<String> =
                        failed.iter().map(|&i| plan.ops[i].rn.to_string()).collect();
                    undo_errors.push((format!("{} (layer {})", rns.join(", "), layer.ident()), e));
                }
            }
            if let Some((rns, undo)) = undo_errors.into_iter().next() {
                return Err(Error::UndoFailed {
                    rns,
                    source: Box::new(error),
                    undo: Box::new(undo),
                });
            }
            return Err(error);
        }
        if g + 1 < groups.len() {
            crash_point::reached("between-layers");
        }
    }
    Ok(())
}

/// Applies one layer's undo ops (with their indexes in the plan) in one transaction. If that
/// fails, each op runs alone, so that an item another writer changed meanwhile (its undo is
/// a conflict) does not keep the others from being undone. `None` when all are undone, else
/// the ops whose undo failed, with the first one's error.
async fn undo_layer(
    layer: &LayerHandle,
    undo: Vec<(usize, LayerOp)>,
) -> Option<(Vec<usize>, Error)> {
    let (indexes, ops): (Vec<usize>, Vec<LayerOp>) = undo.into_iter().unzip();
    match layer.apply(ops.clone()).await {
        Ok(()) => return None,
        Err(e) if ops.len() == 1 => return Some((indexes, e)),
        Err(_) => {}
    }
    let mut failed = Vec::new();
    let mut first = None;
    for (i, op) in indexes.into_iter().zip(ops) {
        if let Err(e) = layer.apply(vec![op]).await {
            failed.push(i);
            first.get_or_insert(e);
        }
    }
    first.map(|e| (failed, e))
}

/// The error of a failed layer batch, naming the failing op by its index in the plan; a
/// plan of one op gives the op's own error, as it always did.
fn name_failed_op(plan: &WritePlan, indexes: &[usize], error: Error) -> Error {
    let (at, source) = match error {
        Error::WriteFailed { op, source, .. } => (indexes.get(op).copied(), *source),
        other if indexes.len() == 1 => (Some(indexes[0]), other),
        other => return other,
    };
    match at {
        Some(i) if plan.ops.len() > 1 => Error::WriteFailed {
            op: i,
            rn: plan.ops[i].rn.to_string(),
            source: Box::new(source),
        },
        _ => source,
    }
}

fn layer_op(op: &WriteOp, fence: Option<Fence>) -> Result<LayerOp> {
    let (table, id) = item_key(&op.rn)?;
    let expect = match (op.check, op.kind, &op.before) {
        (true, OpKind::Update, Some(before)) => op
            .fields
            .iter()
            .map(|field| Expect {
                name: field.name.clone(),
                value: before
                    .stored(&field.name)
                    .unwrap_or(Stored::Value(Value::Null)),
            })
            .collect(),
        (true, OpKind::Delete, Some(before)) => before
            .entries()
            .into_iter()
            .map(|(name, value)| Expect { name, value })
            .collect(),
        _ => Vec::new(),
    };
    Ok(LayerOp {
        expect,
        kind: op.kind,
        rn: op.rn.to_string(),
        table,
        id,
        fields: Arc::clone(&op.fields),
        destructive: op.destructive,
        fence,
    })
}

/// The table and row id of an item RN.
pub(crate) fn item_key(rn: &Rn) -> Result<(String, String)> {
    match (rn.table_name(), rn.id()) {
        (Some(table), Some(id)) => Ok((table, id.to_owned())),
        _ => Err(Error::WrongRnForm {
            rn: rn.to_string(),
            reason: "a write needs an item rn (namespace:kind:<uuid>)".to_owned(),
        }),
    }
}

/// An item's data as stored, in the form it arrived in. Turning a row read back into storage
/// form costs a JSON parse per JSON column, so it is paid only when an undo needs it.
#[derive(Debug, Clone)]
pub(crate) enum BeforeImage {
    /// As read from its layer.
    Read(StoredRow),
    /// As read from its layer, shared by the references a resolution decoded from one row.
    Shared(Arc<StoredRow>),
    /// As last written.
    Written(Map<String, Value>),
    /// As last written, the very fields the write stored.
    Fields(Arc<[Field]>),
    /// As stored after a field-level commit: the fields it kept as they were (JSON text as
    /// read) and those it wrote.
    Image(Arc<[(String, Stored)]>),
    /// Not known: an item made from data ([`ItemHandle::uncommitted`]), whose commit writes
    /// every field, last writer wins, and reads the row under its lock for the undo and the
    /// WAL record ([`execute`]).
    ///
    /// [`ItemHandle::uncommitted`]: crate::ItemHandle::uncommitted
    Unknown,
}

/// A read cell as a condition compares it: JSON text as it was read.
fn cell_stored(cell: crate::model::Cell<'_>) -> Stored {
    match cell {
        crate::model::Cell::Json(text) => Stored::JsonText(text.to_owned()),
        cell => Stored::Value(cell.to_value()),
    }
}

impl BeforeImage {
    /// The data in storage form.
    pub(crate) fn to_map(&self) -> Map<String, Value> {
        match self {
            BeforeImage::Read(row) => row.to_map(),
            BeforeImage::Shared(row) => row.to_map(),
            BeforeImage::Written(map) => map.clone(),
            BeforeImage::Fields(fields) => crate::model::fields_to_map(fields),
            BeforeImage::Image(entries) => entries
                .iter()
                .map(|(name, value)| (name.clone(), value.to_value()))
                .collect(),
            BeforeImage::Unknown => Map::new(),
        }
    }

    /// The image, cheap to clone: a row read back is moved behind an `Arc`.
    pub(crate) fn shared(self) -> BeforeImage {
        match self {
            BeforeImage::Read(row) => BeforeImage::Shared(Arc::new(row)),
            other => other,
        }
    }

    /// Every field, as a condition compares it.
    pub(crate) fn entries(&self) -> Vec<(String, Stored)> {
        let row = |row: &StoredRow| {
            row.cells()
                .map(|(name, cell)| (name.to_owned(), cell_stored(cell)))
                .collect()
        };
        match self {
            BeforeImage::Read(r) => row(r),
            BeforeImage::Shared(r) => row(r),
            BeforeImage::Written(map) => map
                .iter()
                .map(|(name, value)| (name.clone(), Stored::Value(value.clone())))
                .collect(),
            BeforeImage::Fields(fields) => fields
                .iter()
                .map(|f| (f.name.clone(), Stored::Value(f.value.clone())))
                .collect(),
            BeforeImage::Image(entries) => entries.to_vec(),
            BeforeImage::Unknown => Vec::new(),
        }
    }

    /// One field, as a condition compares it; `None` when the image lacks it (it was null).
    pub(crate) fn stored(&self, name: &str) -> Option<Stored> {
        let row = |row: &StoredRow| {
            row.cells()
                .find(|(n, _)| *n == name)
                .map(|(_, cell)| cell_stored(cell))
        };
        match self {
            BeforeImage::Read(r) => row(r),
            BeforeImage::Shared(r) => row(r),
            BeforeImage::Written(map) => map.get(name).cloned().map(Stored::Value),
            BeforeImage::Fields(fields) => fields
                .iter()
                .find(|f| f.name == name)
                .map(|f| Stored::Value(f.value.clone())),
            BeforeImage::Image(entries) => entries
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone()),
            BeforeImage::Unknown => None,
        }
    }
}

/// The fields that write an item's image back, each of the kind its value suggests.
pub(crate) fn image_fields(image: &Map<String, Value>) -> Vec<Field> {
    image
        .iter()
        .map(|(name, value)| Field {
            name: name.clone(),
            value: value.clone(),
            kind: infer_kind(value),
            unique: false,
        })
        .collect()
}

/// The op that undoes `op`, from its before-image. The undo of an insert or an update is
/// conditional on the columns it wrote still holding what it wrote: another process that
/// changed one of them since (between this layer's commit and the undo) keeps its value, and
/// the undo is a conflict ([`Error::UndoFailed`]) instead of deleting the item or writing the
/// old value over it.
fn inverse(op: &WriteOp) -> Option<LayerOp> {
    let (table, id) = item_key(&op.rn).ok()?;
    let before = op.before.as_ref().map(BeforeImage::to_map);
    let (kind, fields) = match (op.kind, &before) {
        (OpKind::Insert, _) => (OpKind::DeleteIfExists, Vec::new()),
        (OpKind::Update, Some(before)) => {
            // Only the columns the update wrote (others may have been written by another
            // writer meanwhile); those the before-image lacks were null before.
            let fields = op
                .fields
                .iter()
                .map(|field| {
                    let value = before.get(&field.name).cloned().unwrap_or(Value::Null);
                    Field {
                        name: field.name.clone(),
                        kind: infer_kind(&value),
                        value,
                        unique: false,
                    }
                })
                .collect();
            (OpKind::Update, fields)
        }
        (OpKind::Delete | OpKind::DeleteIfExists, Some(before)) => {
            (OpKind::Insert, image_fields(before))
        }
        _ => return None,
    };
    // An insert's or an update's undo holds only while its columns hold what it wrote; a
    // delete's re-insert fails by itself if the item was made again.
    let expect = match op.kind {
        OpKind::Insert | OpKind::Update => op
            .fields
            .iter()
            .map(|field| Expect {
                name: field.name.clone(),
                value: Stored::Value(field.value.clone()),
            })
            .collect(),
        OpKind::Delete | OpKind::DeleteIfExists => Vec::new(),
    };
    Some(LayerOp {
        kind,
        rn: op.rn.to_string(),
        table,
        id,
        fields: fields.into(),
        destructive: false,
        fence: None,
        expect,
    })
}
