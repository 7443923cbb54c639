//! The one write path.
//!
//! create, commit, delete, restore and destroy all become a [`WritePlan`]: ops with their
//! before-images, run by [`execute`]:
//!
//! 1. route every op to its layer (an unknown layer fails before anything is written);
//! 2. apply each layer's ops inside that database's own transaction, layers in the order they
//!    first appear in the plan;
//! 3. if a layer fails, undo what the earlier layers applied, from the before-images, newest
//!    first, and return the error (or [`Error::UndoFailed`] if the undo failed too).
//!
//! Per-RN locks and the write-ahead log plug in between 1 and 2 (lock every touched RN in
//! sorted order, then write the WAL record durably); multi-item transactions and cascades
//! build bigger plans for the same executor.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::layer::{Layer, LayerOp, OpKind};
use crate::model::{Field, infer_kind};
use crate::pool::Pool;
use crate::rn::Rn;

/// One change to one item.
#[derive(Debug, Clone)]
pub(crate) struct WriteOp {
    /// What to do.
    pub(crate) kind: OpKind,
    /// The item.
    pub(crate) rn: Rn,
    /// The new data (insert and update).
    pub(crate) fields: Vec<Field>,
    /// The item's data before the op, in storage form (update and delete).
    pub(crate) before: Option<Map<String, Value>>,
    /// Whether columns whose kind changed may be recreated.
    pub(crate) destructive: bool,
}

/// The ops of one write, applied together.
#[derive(Debug, Clone, Default)]
pub(crate) struct WritePlan {
    pub(crate) ops: Vec<WriteOp>,
}

impl WritePlan {
    /// A plan of one op.
    pub(crate) fn single(op: WriteOp) -> Self {
        WritePlan { ops: vec![op] }
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
/// dropped; dropping it between layers leaves the earlier layers applied.
pub(crate) async fn execute(pool: &Pool, plan: WritePlan) -> Result<()> {
    // 1. Route every op before writing anything.
    let mut groups: Vec<(Arc<dyn Layer>, Vec<usize>)> = Vec::new();
    for (i, op) in plan.ops.iter().enumerate() {
        let layer = pool.route(&op.rn)?;
        match groups.iter_mut().find(|(l, _)| Arc::ptr_eq(l, layer)) {
            Some((_, ops)) => ops.push(i),
            None => groups.push((Arc::clone(layer), vec![i])),
        }
    }

    // 2. Apply per layer, each inside its own transaction.
    for (g, (layer, indexes)) in groups.iter().enumerate() {
        let batch = indexes
            .iter()
            .map(|&i| layer_op(&plan.ops[i]))
            .collect::<Result<Vec<_>>>()?;
        if let Err(error) = layer.apply(batch).await {
            // 3. Undo the layers already applied, newest first.
            let mut undo_errors = Vec::new();
            for (layer, indexes) in groups[..g].iter().rev() {
                let undo: Vec<LayerOp> = indexes
                    .iter()
                    .rev()
                    .filter_map(|&i| inverse(&plan.ops[i]))
                    .collect();
                if let Err(e) = layer.apply(undo).await {
                    let rns: Vec<String> = indexes
                        .iter()
                        .map(|&i| plan.ops[i].rn.to_string())
                        .collect();
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
    }
    Ok(())
}

fn layer_op(op: &WriteOp) -> Result<LayerOp> {
    let (table, id) = item_key(&op.rn)?;
    Ok(LayerOp {
        kind: op.kind,
        rn: op.rn.to_string(),
        table,
        id,
        fields: op.fields.clone(),
        destructive: op.destructive,
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

/// The op that undoes `op`, from its before-image.
fn inverse(op: &WriteOp) -> Option<LayerOp> {
    let (table, id) = item_key(&op.rn).ok()?;
    let before_fields = |before: &Map<String, Value>| -> Vec<Field> {
        before
            .iter()
            .map(|(name, value)| Field {
                name: name.clone(),
                value: value.clone(),
                kind: infer_kind(value),
                unique: false,
            })
            .collect()
    };
    let (kind, fields) = match (op.kind, &op.before) {
        (OpKind::Insert, _) => (OpKind::DeleteIfExists, Vec::new()),
        (OpKind::Update, Some(before)) => {
            // Columns the update wrote that the before-image lacks were null before.
            let mut fields = before_fields(before);
            for field in &op.fields {
                if !before.contains_key(&field.name) {
                    fields.push(Field {
                        name: field.name.clone(),
                        value: Value::Null,
                        kind: None,
                        unique: false,
                    });
                }
            }
            (OpKind::Update, fields)
        }
        (OpKind::Delete | OpKind::DeleteIfExists, Some(before)) => {
            (OpKind::Insert, before_fields(before))
        }
        _ => return None,
    };
    Some(LayerOp {
        kind,
        rn: op.rn.to_string(),
        table,
        id,
        fields,
        destructive: false,
    })
}
