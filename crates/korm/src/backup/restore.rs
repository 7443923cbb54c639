//! Restore (B5, `play`): a snapshot played into a layer of any backend.
//!
//! Two passes over the file. The first reads it whole and checks it (see
//! [`Reader`](super::format::Reader)), so a corrupt or truncated file is refused before
//! anything is written, and so is a row the second pass could not write (no `rnId`, a column
//! that is not a field name, a value of a kind its column does not take: a replace would have
//! emptied the table before it met the row); it also learns the kind of every column a korm
//! 1.5 snapshot does not name (from `__korm_meta__` when the snapshot has it, else from the
//! values). The second writes the rows through the layer's own write path, in batches of
//! one transaction each, creating missing tables and columns as any write does.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::format::Event;
use super::{OnProgress, read_file};
use crate::depot::{Depot, DepotKey};
use crate::error::{Error, Result};
use crate::layer::meta::{ITEMS_PREFIX, is_item_table};
use crate::layer::schema::{ID_COLUMN, TableSchema, UNIQUE_PREFIX, takes_value};
use crate::layer::{LayerHandle, LayerOp, OpKind};
use crate::model::{ColumnKind, Field, infer_kind, is_envelope, validate_field_name};

/// Rows per write transaction.
const BATCH: usize = 500;

/// The most bytes of the file parsed before their rows are written.
const PIECE: usize = 128 * 1024;

/// What a restore does with the rows the layer holds already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreMode {
    /// The restored tables end up as the snapshot has them: each is emptied first (with
    /// [`RestoreOptions::with_only`] naming one item, only that item is replaced).
    Replace,
    /// Rows of the snapshot replace the rows with the same id; other rows stay.
    Merge,
}

/// How to play a backup into a layer.
#[derive(Clone)]
pub struct RestoreOptions {
    mode: RestoreMode,
    only: Option<Only>,
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("mode", &self.mode)
            .field("only", &self.only)
            .finish()
    }
}

/// The part of a snapshot a restore plays.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Only {
    /// Every table of a namespace: the prefix `__items__{namespace}__`.
    Namespace(String),
    /// One table.
    Table(String),
    /// One item of one table.
    Item(String, String),
}

impl RestoreOptions {
    /// Replace mode (see [`RestoreMode::Replace`]).
    pub fn replace() -> Self {
        RestoreOptions {
            mode: RestoreMode::Replace,
            only: None,
        }
    }

    /// Merge mode (see [`RestoreMode::Merge`]).
    pub fn merge() -> Self {
        RestoreOptions {
            mode: RestoreMode::Merge,
            only: None,
        }
    }

    /// Plays only part of the snapshot, named by an RN prefix: a namespace (`users`), a
    /// collection (`users:freetier`) or one item (`users:freetier:<uuid>`), each also as an
    /// RN (`[rn]:users:freetier:<uuid>`, mods ignored).
    ///
    /// ```
    /// use korm::backup::RestoreOptions;
    /// assert!(RestoreOptions::merge().with_only("users:freetier").is_ok());
    /// assert!(RestoreOptions::merge().with_only("[rn]:users:freetier:0550ec20-c747-4ef9-87d4-613fe9d0c149").is_ok());
    /// assert!(RestoreOptions::merge().with_only("users:free tier").is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidRn`] for a prefix that names no namespace, collection or item.
    pub fn with_only(mut self, prefix: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidRn {
            input: crate::error::clip(prefix),
            part: "restore prefix".to_owned(),
            reason: reason.to_owned(),
        };
        let mut rest = prefix;
        if let Some(after) = rest.strip_prefix("[rn]") {
            rest = after;
            while let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| bad("has a mod without its ]"))?;
                rest = &after[end + 1..];
            }
            rest = rest
                .strip_prefix(':')
                .ok_or_else(|| bad("needs : after [rn]"))?;
        }
        let parts: Vec<&str> = rest.split(':').collect();
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if parts.len() > 3 || !parts[..parts.len().min(2)].iter().all(|p| name_ok(p)) {
            return Err(bad(
                "must be namespace, namespace:kind or namespace:kind:id (letters, digits, _ and -)",
            ));
        }
        self.only = Some(match parts[..] {
            [ns] => Only::Namespace(format!("{ITEMS_PREFIX}{ns}__")),
            [ns, kind] => Only::Table(format!("{ITEMS_PREFIX}{ns}__{kind}")),
            [ns, kind, id] => {
                if id.is_empty() || id.len() > 64 {
                    return Err(bad("has an empty or overlong id"));
                }
                Only::Item(format!("{ITEMS_PREFIX}{ns}__{kind}"), id.to_owned())
            }
            _ => return Err(bad("is empty")),
        });
        Ok(self)
    }

    fn plays(&self, table: &str) -> bool {
        match &self.only {
            None => true,
            Some(Only::Namespace(prefix)) => table.starts_with(prefix.as_str()),
            Some(Only::Table(t) | Only::Item(t, _)) => table == t,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// The item tables written (in the snapshot's order).
    pub tables: Vec<String>,
    /// Rows written.
    pub rows: u64,
    /// Tables of the snapshot left out: korm's own (`__korm_pool__` describes the pool the
    /// snapshot was taken from, `__korm_meta__` is kept by the layer itself) and those
    /// outside [`RestoreOptions::with_only`].
    pub skipped: Vec<String>,
}

/// What the first pass learns of a column a snapshot does not name the kind of.
#[derive(Debug, Clone, Copy, Default)]
struct Guess(Option<ColumnKind>);

impl Guess {
    fn see(&mut self, value: &Value) {
        let Some(found) = guess(value) else {
            return;
        };
        self.0 = Some(match self.0 {
            None => found,
            Some(seen) if seen == found => seen,
            Some(ColumnKind::Integer | ColumnKind::Double)
                if matches!(found, ColumnKind::Integer | ColumnKind::Double) =>
            {
                ColumnKind::Double
            }
            Some(_) => ColumnKind::Text,
        });
    }
}

/// The kind a raw value of a snapshot suggests: SQLite keeps JSON and envelopes as text, so a
/// string that is an object or an array is taken for JSON, an `[rn]` string for a reference.
fn guess(value: &Value) -> Option<ColumnKind> {
    Some(match value {
        Value::String(s)
            if s.starts_with('{') || (s.starts_with('[') && !s.starts_with("[rn]")) =>
        {
            match serde_json::from_str::<Value>(s) {
                Ok(v) if is_envelope(&v) => ColumnKind::Encrypted,
                Ok(Value::Object(_) | Value::Array(_)) => ColumnKind::Json,
                _ => ColumnKind::Text,
            }
        }
        Value::String(s) if s.starts_with("[rn]") => ColumnKind::RnRef,
        other => infer_kind(other)?,
    })
}

/// What the first pass learns of a table.
#[derive(Debug, Default)]
struct Learned {
    /// Kinds the `table` event names (korm-rs).
    named: Option<HashMap<String, ColumnKind>>,
    unique: Vec<String>,
    /// Kinds guessed from the values (korm 1.5).
    guessed: HashMap<String, Guess>,
    /// Of each column, a value of each [`class`] its rows hold (nulls aside), in the order
    /// they first appear.
    samples: HashMap<String, Vec<(Class, Value)>>,
}

/// What decides how the second pass writes a value (see [`as_field`]): its JSON type, whether
/// a number is an `i64`, and what a string looks like.
type Class = (u8, Option<ColumnKind>);

fn class(value: &Value) -> Class {
    let shape = match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        // Whole numbers a double holds exactly and those it does not, whole doubles and the
        // others: each pair goes into other column kinds.
        Value::Number(n)
            if n.as_i64()
                .is_some_and(|i| i.unsigned_abs() <= crate::model::EXACT_IN_DOUBLE) =>
        {
            2
        }
        Value::Number(n) if n.is_i64() => 7,
        Value::Number(n) if crate::model::whole_double(n).is_some() => 8,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    };
    (shape, guess(value))
}

/// A value of the snapshot as the second pass writes it to a column the restore gives
/// `column` (its kind): the storage form, and the kind it asks of the column.
fn as_field(value: Value, column: Option<ColumnKind>) -> (Value, Option<ColumnKind>) {
    let value = match column {
        Some(kind) => convert(value, kind),
        None => value,
    };
    let kind = match (infer_kind(&value), column) {
        (None, column) => column,
        (Some(found), Some(column)) if takes_value(column, Some(found), &value) => Some(column),
        (found, _) => found,
    };
    (value, kind)
}

/// Refuses a row the second pass can not write: one without its `rnId` text, or with a
/// column that is not a field name (a korm 1.5 name korm-rs refuses, or a hostile one).
fn check_row(table: &str, row: &serde_json::Map<String, Value>) -> Result<()> {
    if !matches!(row.get(ID_COLUMN), Some(Value::String(_))) {
        return Err(Error::Decode {
            rn: table.to_owned(),
            reason: "a row of the backup has no rnId string".to_owned(),
        });
    }
    row.keys()
        .filter(|name| *name != ID_COLUMN && !name.starts_with(UNIQUE_PREFIX))
        .try_for_each(|name| validate_field_name(name))
}

/// A raw value as a field of `kind` holds it (the storage form the write path binds).
fn convert(value: Value, kind: ColumnKind) -> Value {
    match (kind, value) {
        (ColumnKind::Json | ColumnKind::Encrypted, Value::String(s)) => {
            match serde_json::from_str::<Value>(&s) {
                Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
                _ => Value::String(s),
            }
        }
        (ColumnKind::Boolean, Value::Number(n)) => match n.as_i64() {
            Some(i) => Value::Bool(i != 0),
            None => Value::Number(n),
        },
        (_, v) => v,
    }
}

pub(super) async fn restore(
    depot: &dyn Depot,
    key: &DepotKey,
    handle: &LayerHandle,
    options: RestoreOptions,
    on_progress: Option<OnProgress>,
) -> Result<RestoreReport> {
    // First pass: the whole file checked, and what it says of its columns learned.
    let mut learned: HashMap<String, Learned> = HashMap::new();
    let mut meta_kinds: HashMap<(String, String), ColumnKind> = HashMap::new();
    let mut current: Option<String> = None;
    let needs_guess = |l: &Learned| l.named.is_none();
    read_file(depot, key, None, &mut |event| {
        match event {
            Event::Table {
                name,
                columns,
                unique,
            } => {
                learned.insert(
                    name.clone(),
                    Learned {
                        named: columns.map(|c| c.into_iter().collect()),
                        unique,
                        ..Learned::default()
                    },
                );
                current = Some(name);
            }
            Event::Row { row } => {
                let Some(table) = &current else {
                    return Ok(());
                };
                if table == "__korm_meta__" {
                    let text = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_owned);
                    if let (Some(t), Some(c), Some(k)) =
                        (text("table_name"), text("column_name"), text("kind"))
                        && let Some(kind) = super::format::kind_of_name(&k)
                    {
                        meta_kinds.insert((t, c), kind);
                    }
                } else if is_item_table(table) && options.plays(table) {
                    // What the second pass would refuse, refused now: before a table is
                    // emptied.
                    check_row(table, &row)?;
                    let Some(l) = learned.get_mut(table) else {
                        return Ok(());
                    };
                    for (column, value) in &row {
                        if column != ID_COLUMN
                            && !column.starts_with(UNIQUE_PREFIX)
                            && !value.is_null()
                        {
                            let samples = l.samples.entry(column.clone()).or_default();
                            let class = class(value);
                            if !samples.iter().any(|(c, _)| *c == class) {
                                samples.push((class, value.clone()));
                            }
                        }
                    }
                    if needs_guess(l) {
                        for (column, value) in &row {
                            l.guessed.entry(column.clone()).or_default().see(value);
                        }
                    }
                }
            }
            Event::EndTable => current = None,
            Event::Header { .. } | Event::End => {}
        }
        Ok(())
    })
    .await?;

    // Each played table's column kinds, checked against the table the layer has: a column
    // the layer stores as another kind would refuse the rows midway, after a replace emptied
    // the table.
    let mut planned: HashMap<String, Arc<Kinds>> = HashMap::new();
    for (name, l) in &learned {
        if !is_item_table(name) || !options.plays(name) {
            continue;
        }
        let target = handle.table_schema(name).await?;
        let kinds = kinds_of(name, Some(l), &meta_kinds, target.as_ref());
        for (column, samples) in &l.samples {
            // The kind the column has, or gets from the first value written into it.
            let mut stored = target.as_ref().and_then(|t| t.kind_of(column));
            for (_, value) in samples {
                let (written, Some(found)) =
                    as_field(value.clone(), kinds.kinds.get(column).copied())
                else {
                    continue;
                };
                match stored {
                    None => stored = Some(found),
                    Some(stored) if !takes_value(stored, Some(found), &written) => {
                        return Err(Error::SchemaMismatch {
                            table: name.clone(),
                            column: column.clone(),
                            stored,
                            found,
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        planned.insert(name.clone(), kinds);
    }

    // Second pass: the rows written.
    let mut report = RestoreReport::default();
    let mut state = Play {
        handle,
        options: &options,
        table: None,
        batch: Vec::with_capacity(BATCH * 2),
        rows_in_batch: 0,
    };
    let mut pending: Vec<Pending> = Vec::new();
    // The reader calls back synchronously; the writes are async, so events are queued and
    // played between chunks (a chunk is at most a few hundred rows).
    let total = depot.size(key).await?;
    let mut stream = depot.get(key).await?;
    let mut reader = super::format::Reader::new(key.as_str());
    let mut bytes = 0u64;
    use futures_util::StreamExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        // A store may hand over large chunks: rows are parsed and written a slice at a time,
        // so what waits in memory is a slice's rows, whatever the chunk size.
        for piece in chunk.chunks(PIECE) {
            reader.push(piece, &mut |event| {
                pending.push(match event {
                    Event::Table { name, .. } => Pending::Table(name),
                    Event::Row { row } => Pending::Row(row),
                    Event::EndTable => Pending::EndTable,
                    Event::Header { .. } | Event::End => return Ok(()),
                });
                Ok(())
            })?;
            for event in pending.drain(..) {
                match event {
                    Pending::Table(name) => {
                        if !is_item_table(&name) || !options.plays(&name) {
                            report.skipped.push(name);
                            continue;
                        }
                        let kinds = match planned.get(&name) {
                            Some(kinds) => Arc::clone(kinds),
                            None => {
                                let target = handle.table_schema(&name).await?;
                                kinds_of(&name, None, &meta_kinds, target.as_ref())
                            }
                        };
                        if options.mode == RestoreMode::Replace
                            && !matches!(options.only, Some(Only::Item(..)))
                        {
                            handle.layer().backups().clear_table(&name).await?;
                        }
                        report.tables.push(name.clone());
                        state.table = Some((name, kinds));
                    }
                    Pending::Row(row) => {
                        if state.table.is_some() && state.push(row)? {
                            report.rows += state.flush().await?;
                        }
                    }
                    Pending::EndTable => {
                        report.rows += state.flush().await?;
                        state.table = None;
                    }
                }
            }
        }
        if let Some(f) = &on_progress {
            f(super::Progress {
                rows: report.rows,
                bytes,
                total_bytes: total,
            });
        }
    }
    reader.finish()?;
    Ok(report)
}

/// An event of the second pass, queued until the chunk is read.
enum Pending {
    Table(String),
    Row(serde_json::Map<String, Value>),
    EndTable,
}

/// The kinds of a table's columns and its unique fields, from the best source there is: the
/// snapshot's own names (korm-rs), its `__korm_meta__` (korm 1.5 on MySQL), the table the
/// layer has already, and last the values themselves.
fn kinds_of(
    table: &str,
    learned: Option<&Learned>,
    meta: &HashMap<(String, String), ColumnKind>,
    target: Option<&TableSchema>,
) -> Arc<Kinds> {
    let mut kinds = HashMap::new();
    let mut unique: Vec<String> = target.map(|t| t.unique.clone()).unwrap_or_default();
    if let Some(l) = learned {
        unique.extend(l.unique.iter().cloned());
        if let Some(named) = &l.named {
            kinds.extend(named.iter().map(|(c, k)| (c.clone(), *k)));
        }
        for (column, guess) in &l.guessed {
            if let Some(field) = column.strip_prefix(UNIQUE_PREFIX) {
                unique.push(field.to_owned());
                continue;
            }
            let kind = meta
                .get(&(table.to_owned(), column.clone()))
                .copied()
                .or_else(|| target.and_then(|t| t.kind_of(column)))
                .or(guess.0);
            if let Some(kind) = kind {
                kinds.entry(column.clone()).or_insert(kind);
            }
        }
    }
    unique.sort();
    unique.dedup();
    Arc::new(Kinds { kinds, unique })
}

#[derive(Debug)]
struct Kinds {
    kinds: HashMap<String, ColumnKind>,
    unique: Vec<String>,
}

/// The write side of the second pass.
struct Play<'a> {
    handle: &'a LayerHandle,
    options: &'a RestoreOptions,
    table: Option<(String, Arc<Kinds>)>,
    batch: Vec<LayerOp>,
    rows_in_batch: u64,
}

impl Play<'_> {
    /// Adds a row to the batch; `true` when the batch is full.
    fn push(&mut self, mut row: serde_json::Map<String, Value>) -> Result<bool> {
        let Some((table, kinds)) = &self.table else {
            return Ok(false);
        };
        let bad = |reason: String| Error::Decode {
            rn: table.clone(),
            reason,
        };
        let Some(Value::String(id)) = row.remove(ID_COLUMN) else {
            return Err(bad("a row of the backup has no rnId string".to_owned()));
        };
        if let Some(Only::Item(_, only)) = &self.options.only
            && *only != id
        {
            return Ok(false);
        }
        let mut fields = Vec::with_capacity(row.len());
        for (name, value) in row {
            if name.starts_with(UNIQUE_PREFIX) {
                continue;
            }
            validate_field_name(&name)?;
            let (value, kind) = as_field(value, kinds.kinds.get(&name).copied());
            fields.push(Field {
                unique: kinds.unique.contains(&name),
                name,
                value,
                kind,
            });
        }
        let fields: Arc<[Field]> = fields.into();
        let rn = format!("{table} row {id}");
        if self.options.mode == RestoreMode::Merge
            || matches!(self.options.only, Some(Only::Item(..)))
        {
            self.batch.push(LayerOp {
                kind: OpKind::DeleteIfExists,
                rn: rn.clone(),
                table: table.clone(),
                id: id.clone(),
                fields: Arc::from(Vec::new()),
                destructive: false,
                fence: None,
                expect: Vec::new(),
            });
        }
        self.batch.push(LayerOp {
            kind: OpKind::Insert,
            rn,
            table: table.clone(),
            id,
            fields,
            destructive: false,
            fence: None,
            expect: Vec::new(),
        });
        self.rows_in_batch += 1;
        Ok(self.rows_in_batch as usize >= BATCH)
    }

    /// Writes the batch in one transaction; returns its rows.
    async fn flush(&mut self) -> Result<u64> {
        if self.batch.is_empty() {
            return Ok(0);
        }
        let ops = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH * 2));
        self.handle.apply(ops).await?;
        Ok(std::mem::take(&mut self.rows_in_batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn korm_1_5_sqlite_values_are_read_by_their_look() {
        let mut g = Guess::default();
        g.see(&Value::from("[\"quarry\"]"));
        assert_eq!(g.0, Some(ColumnKind::Json));
        let mut g = Guess::default();
        g.see(&Value::from(
            r#"{"__ENCRYPTED__":true,"type":"symmetric","value":"00"}"#,
        ));
        assert_eq!(g.0, Some(ColumnKind::Encrypted));
        let mut g = Guess::default();
        g.see(&Value::from("[rn]:users:freetier:0550ec20"));
        assert_eq!(g.0, Some(ColumnKind::RnRef));
        let mut g = Guess::default();
        g.see(&Value::from(41));
        g.see(&Value::from(97.5));
        g.see(&Value::Null);
        assert_eq!(g.0, Some(ColumnKind::Double));
        let mut g = Guess::default();
        g.see(&Value::from("[]"));
        g.see(&Value::from("plain"));
        assert_eq!(g.0, Some(ColumnKind::Text));
    }

    #[test]
    fn only_names_a_namespace_a_collection_or_an_item() {
        let o = RestoreOptions::merge().with_only("users").unwrap();
        assert!(o.plays("__items__users__freetier") && !o.plays("__items__cars__suv"));
        let o = RestoreOptions::merge().with_only("users:freetier").unwrap();
        assert!(o.plays("__items__users__freetier") && !o.plays("__items__users__freetierx"));
        let o = RestoreOptions::replace()
            .with_only("[rn][from::cardb]:users:freetier:0550ec20-c747-4ef9-87d4-613fe9d0c149")
            .unwrap();
        assert_eq!(
            o.only,
            Some(Only::Item(
                "__items__users__freetier".into(),
                "0550ec20-c747-4ef9-87d4-613fe9d0c149".into()
            ))
        );
        for bad in ["", "a:b:c:d", "a b", "users:../x", "[rn]users"] {
            assert!(RestoreOptions::merge().with_only(bad).is_err(), "{bad}");
        }
    }
}
