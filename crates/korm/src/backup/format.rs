//! The snapshot file: korm 1.5's newline-delimited JSON events, written as rows stream in and
//! read back one line at a time.
//!
//! ```text
//! {"t":"header","version":2,"createdAt":"…","layerIdent":"cardb","layerType":"sqlite"}
//! {"t":"table","name":"__items__users__freetier","columns":{"age":"INTEGER",…},"unique":[…]}
//! {"t":"row","table":"__items__users__freetier","row":{"rnId":"…","age":41,…}}
//! {"t":"endTable","name":"__items__users__freetier","rows":1,"sha256":"…"}
//! {"t":"end","tables":1,"rows":1,"sha256":"…"}
//! ```
//!
//! What korm-rs adds, as fields korm 1.5 does not read: the column kinds of an item table on its
//! `table` event (so a restore into another backend creates the same columns), and a trailer
//! spread over the closing events: `rows` and `sha256` on each `endTable` (the SHA-256 of the
//! table's lines, from its `table` event to its last row, newlines included) and `tables`,
//! `rows` and `sha256` on `end` (the SHA-256 of every byte before the `end` line).

use std::io;

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::layer::schema::TableSchema;
use crate::model::{Cell, ColumnKind};

/// The snapshot format version korm 1.5 writes.
pub(crate) const VERSION: u64 = 2;

/// How many bytes the writer gathers before it hands a chunk to the upload.
pub(crate) const CHUNK: usize = 256 * 1024;

/// The longest line a reader accepts (a row holding a large JSON document).
pub(crate) const MAX_LINE: usize = 64 * 1024 * 1024;

/// The name korm 1.5 gives a column kind in SQLite's declared types, which a snapshot uses
/// whatever the backend it was taken from.
pub(crate) fn kind_name(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Text => "TEXT",
        ColumnKind::Integer => "INTEGER",
        ColumnKind::Double => "REAL",
        ColumnKind::Boolean => "BOOLEAN",
        ColumnKind::Json => "JSON_TEXT",
        ColumnKind::RnRef => "RN_REF_TEXT",
        ColumnKind::Encrypted => "ENCRYPTED_JSON",
    }
}

/// The column kind of a declared type name ([`kind_name`]), also accepting korm's own names
/// (`__korm_meta__` on MySQL: `text`, `integer`, `json`, …).
pub(crate) fn kind_of_name(name: &str) -> Option<ColumnKind> {
    Some(match name.to_ascii_uppercase().as_str() {
        "TEXT" | "ID_TEXT" => ColumnKind::Text,
        "INTEGER" => ColumnKind::Integer,
        "REAL" | "DOUBLE" => ColumnKind::Double,
        "BOOLEAN" => ColumnKind::Boolean,
        "JSON_TEXT" | "JSON" => ColumnKind::Json,
        "RN_REF_TEXT" | "RN_REF" => ColumnKind::RnRef,
        "ENCRYPTED_JSON" | "ENCRYPTED" => ColumnKind::Encrypted,
        _ => return None,
    })
}

/// A value of a column, as a backend reads it, for the writer: a [`Cell`], written as JSON
/// (a double that is NaN or infinite as null, JSON has no such numbers; text as a JSON
/// string; JSON text as the JSON it holds).
pub(crate) type Raw<'a> = Cell<'a>;

/// A cell as the snapshot holds it: JSON columns (by their kind, or a domain over jsonb)
/// as the JSON they hold.
pub(crate) fn raw(cell: Cell<'_>, kind: Option<ColumnKind>) -> Raw<'_> {
    match cell {
        Cell::Text(t) if kind.is_some_and(ColumnKind::is_json) => Cell::Json(t),
        cell => cell,
    }
}

/// What a writer has written so far, for progress and the backup's summary.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    /// Tables written (ended).
    pub(crate) tables: u64,
    /// Rows written.
    pub(crate) rows: u64,
    /// Bytes written.
    pub(crate) bytes: u64,
}

/// A callback told of the writer's progress every chunk.
pub(crate) type OnChunk = Box<dyn FnMut(Counts) + Send>;

/// The table being written.
struct OpenTable {
    /// The name, as a JSON string.
    quoted: String,
    /// The column names, each as a JSON string followed by `:`.
    columns: Vec<String>,
    hash: Sha256,
    rows: u64,
}

/// Writes a snapshot's events into chunks sent to the upload, hashing as it goes. Backends
/// call [`begin_table`](Sink::begin_table), [`row`](Sink::row) and
/// [`end_table`](Sink::end_table) while they read, and [`flush`](Sink::flush) (or
/// [`flush_blocking`](Sink::flush_blocking) on a thread of their own) whenever
/// [`is_full`](Sink::is_full): the channel to the upload is bounded, so a slow upload slows the
/// read, and memory stays at a few chunks whatever the table size.
pub(crate) struct Sink {
    buf: Vec<u8>,
    tx: mpsc::Sender<io::Result<Bytes>>,
    file: Sha256,
    table: Option<OpenTable>,
    counts: Counts,
    on_chunk: Option<OnChunk>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// The error of a write to an upload that stopped (the upload failed; its own error says why).
fn upload_gone() -> Error {
    Error::Depot {
        depot: String::new(),
        key: String::new(),
        reason: UPLOAD_GONE.to_owned(),
    }
}

const UPLOAD_GONE: &str = "the backup upload stopped before the snapshot was read";

/// Whether `e` says only that the upload stopped (its own error is the one to report).
pub(crate) fn is_upload_gone(e: &Error) -> bool {
    matches!(e, Error::Depot { depot, reason, .. } if depot.is_empty() && reason == UPLOAD_GONE)
}

impl Sink {
    /// A writer sending chunks to `tx`, starting with the header.
    pub(crate) fn new(
        tx: mpsc::Sender<io::Result<Bytes>>,
        created_at: &str,
        layer: &str,
        layer_type: &str,
        on_chunk: Option<OnChunk>,
    ) -> Sink {
        let mut sink = Sink {
            buf: Vec::with_capacity(CHUNK + 64 * 1024),
            tx,
            file: Sha256::new(),
            table: None,
            counts: Counts::default(),
            on_chunk,
        };
        let header = serde_json::json!({
            "t": "header",
            "version": VERSION,
            "createdAt": created_at,
            "layerIdent": layer,
            "layerType": layer_type,
        });
        let start = sink.buf.len();
        write_json(&mut sink.buf, &header);
        sink.finish_line(start);
        sink
    }

    /// Ends the line written from `start`: a newline, and the line into the hashes.
    fn finish_line(&mut self, start: usize) {
        self.buf.push(b'\n');
        let line = &self.buf[start..];
        self.file.update(line);
        if let Some(table) = &mut self.table {
            table.hash.update(line);
        }
    }

    /// Starts a table whose rows have these columns (in the order [`row`](Sink::row) gives
    /// values); `schema` gives the kinds of an item table's fields.
    pub(crate) fn begin_table(
        &mut self,
        name: &str,
        columns: &[String],
        schema: Option<&TableSchema>,
    ) {
        let quoted = quote(name);
        let mut event = serde_json::Map::new();
        event.insert("t".into(), "table".into());
        event.insert("name".into(), name.into());
        if let Some(schema) = schema {
            let kinds: serde_json::Map<String, Value> = schema
                .columns
                .iter()
                .map(|(c, k)| (c.clone(), Value::from(kind_name(*k))))
                .collect();
            event.insert("columns".into(), Value::Object(kinds));
            if !schema.unique.is_empty() {
                event.insert("unique".into(), schema.unique.clone().into());
            }
        }
        self.table = Some(OpenTable {
            quoted,
            columns: columns.iter().map(|c| format!("{}:", quote(c))).collect(),
            hash: Sha256::new(),
            rows: 0,
        });
        let start = self.buf.len();
        write_json(&mut self.buf, &Value::Object(event));
        self.finish_line(start);
    }

    /// Writes one row of the open table: `values` in the order of its columns.
    pub(crate) fn row<'a>(&mut self, values: impl IntoIterator<Item = Raw<'a>>) -> Result<()> {
        let Some(table) = &mut self.table else {
            return Err(Error::Encode {
                what: "a backup row".to_owned(),
                reason: "no table is open (internal error)".to_owned(),
            });
        };
        let start = self.buf.len();
        self.buf.extend_from_slice(b"{\"t\":\"row\",\"table\":");
        self.buf.extend_from_slice(table.quoted.as_bytes());
        self.buf.extend_from_slice(b",\"row\":{");
        for (i, value) in values.into_iter().enumerate() {
            let Some(column) = table.columns.get(i) else {
                break;
            };
            if i > 0 {
                self.buf.push(b',');
            }
            self.buf.extend_from_slice(column.as_bytes());
            write_raw(&mut self.buf, value);
        }
        self.buf.extend_from_slice(b"}}");
        table.rows += 1;
        self.counts.rows += 1;
        self.finish_line(start);
        Ok(())
    }

    /// Ends the open table, with its row count and checksum.
    pub(crate) fn end_table(&mut self) {
        let Some(table) = self.table.take() else {
            return;
        };
        let name: Value =
            serde_json::from_str(&table.quoted).unwrap_or_else(|_| Value::String(String::new()));
        let event = serde_json::json!({
            "t": "endTable",
            "name": name,
            "rows": table.rows,
            "sha256": hex::encode(table.hash.finalize()),
        });
        let start = self.buf.len();
        write_json(&mut self.buf, &event);
        self.finish_line(start);
        self.counts.tables += 1;
    }

    /// Whether a table is open (its `table` event written, its `endTable` not yet).
    pub(crate) fn table_open(&self) -> bool {
        self.table.is_some()
    }

    /// Whether a chunk is ready to go: call [`flush`](Sink::flush) now.
    pub(crate) fn is_full(&self) -> bool {
        self.buf.len() >= CHUNK
    }

    /// Takes the bytes gathered so far as a chunk.
    fn take(&mut self) -> Option<Bytes> {
        if self.buf.is_empty() {
            return None;
        }
        self.counts.bytes += self.buf.len() as u64;
        let chunk = Bytes::copy_from_slice(&self.buf);
        self.buf.clear();
        if let Some(on_chunk) = &mut self.on_chunk {
            on_chunk(self.counts);
        }
        Some(chunk)
    }

    /// Sends the gathered bytes to the upload, waiting while it is behind.
    ///
    /// # Errors
    /// When the upload stopped (its own error says why).
    pub(crate) async fn flush(&mut self) -> Result<()> {
        if let Some(chunk) = self.take() {
            self.tx.send(Ok(chunk)).await.map_err(|_| upload_gone())?;
        }
        Ok(())
    }

    /// [`flush`](Sink::flush) from a thread that is not the async runtime's (a SQLite read).
    ///
    /// # Errors
    /// When the upload stopped.
    pub(crate) fn flush_blocking(&mut self) -> Result<()> {
        if let Some(chunk) = self.take() {
            self.tx
                .blocking_send(Ok(chunk))
                .map_err(|_| upload_gone())?;
        }
        Ok(())
    }

    /// Writes the `end` event with the file's checksum and sends the last chunk; returns the
    /// counts and the file's checksum (the SHA-256 of everything before the `end` line).
    ///
    /// # Errors
    /// When the upload stopped.
    pub(crate) async fn finish(mut self) -> Result<(Counts, String)> {
        self.end_table();
        let sha = hex::encode(self.file.clone().finalize());
        let event = serde_json::json!({
            "t": "end",
            "tables": self.counts.tables,
            "rows": self.counts.rows,
            "sha256": sha,
        });
        write_json(&mut self.buf, &event);
        self.buf.push(b'\n');
        self.flush().await?;
        Ok((self.counts, sha))
    }
}

/// `text` as a JSON string.
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

fn write_json(buf: &mut Vec<u8>, value: &Value) {
    // Writing JSON values into a Vec can not fail.
    let _ = serde_json::to_writer(&mut *buf, value);
}

fn write_raw(buf: &mut Vec<u8>, value: Raw<'_>) {
    match value {
        Raw::Null => buf.extend_from_slice(b"null"),
        Raw::Integer(i) => buf.extend_from_slice(i.to_string().as_bytes()),
        Raw::Double(f) => match serde_json::Number::from_f64(f) {
            Some(n) => buf.extend_from_slice(n.to_string().as_bytes()),
            None => buf.extend_from_slice(b"null"),
        },
        Raw::Boolean(b) => buf.extend_from_slice(if b { b"true" } else { b"false" }),
        Raw::Text(s) => {
            let _ = serde_json::to_writer(&mut *buf, s);
        }
        Raw::Json(text) => {
            // JSON text from a database is one line only if it holds no newline between
            // tokens; anything else (or text that is not JSON) is written re-encoded.
            let plain = !text.bytes().any(|b| b == b'\n' || b == b'\r')
                && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
            if plain {
                buf.extend_from_slice(text.as_bytes());
            } else {
                match serde_json::from_str::<Value>(text) {
                    Ok(v) => write_json(buf, &v),
                    Err(_) => {
                        let _ = serde_json::to_writer(&mut *buf, text);
                    }
                }
            }
        }
    }
}

/// One event of a snapshot, as read.
#[derive(Debug)]
pub(crate) enum Event {
    /// The first line.
    Header {
        /// `layerIdent`.
        layer: String,
        /// `layerType`.
        layer_type: String,
        /// `createdAt`.
        created_at: String,
    },
    /// A table begins.
    Table {
        /// Its name.
        name: String,
        /// Its fields' kinds, when the writer said (korm-rs).
        columns: Option<Vec<(String, ColumnKind)>>,
        /// Its unique fields, when the writer said.
        unique: Vec<String>,
    },
    /// A row of the open table.
    Row {
        /// The row's columns.
        row: serde_json::Map<String, Value>,
    },
    /// The open table ends.
    EndTable,
    /// The snapshot ends.
    End,
}

/// Reads a snapshot line by line and checks it as it goes: each line one event, in order,
/// rows of the open table only, and (for a file korm-rs wrote) every row count and checksum.
/// The caller feeds chunks with [`push`](Reader::push) and takes events with
/// [`next`](Reader::next); [`finish`](Reader::finish) says whether the file was whole.
#[derive(Debug)]
pub(crate) struct Reader {
    file: String,
    pending: Vec<u8>,
    line: u64,
    state: State,
    hash: Sha256,
    table: Option<(String, Sha256, u64, u64)>,
    /// The names of the tables seen: a table comes once.
    seen: std::collections::HashSet<String>,
    /// Tables and rows seen.
    pub(crate) tables: u64,
    /// Rows seen.
    pub(crate) rows: u64,
    /// Whether the file carries korm-rs's checksums.
    pub(crate) checksummed: bool,
    /// The file's own checksum, from its `end` line.
    pub(crate) sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Between,
    InTable,
    Ended,
}

impl Reader {
    /// A reader of the file `file` (its key, for errors).
    pub(crate) fn new(file: &str) -> Reader {
        Reader {
            file: file.to_owned(),
            pending: Vec::new(),
            line: 0,
            state: State::Start,
            hash: Sha256::new(),
            table: None,
            seen: std::collections::HashSet::new(),
            tables: 0,
            rows: 0,
            checksummed: false,
            sha256: None,
        }
    }

    fn bad(&self, line: u64, reason: impl Into<String>) -> Error {
        Error::BackupInvalid {
            file: self.file.clone(),
            line,
            reason: reason.into(),
        }
    }

    /// Reads the complete lines of `chunk` (with what was left of the last one), calling
    /// `each` with every event in order.
    ///
    /// # Errors
    /// [`Error::BackupInvalid`] naming the first line that is wrong, and whatever `each`
    /// fails with.
    pub(crate) fn push(
        &mut self,
        chunk: &[u8],
        each: &mut (dyn FnMut(Event) -> Result<()> + Send),
    ) -> Result<()> {
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(at + 1);
            rest = tail;
            if self.pending.is_empty() {
                self.line_done(head, each)?;
            } else {
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(head);
                self.line_done(&line, each)?;
            }
        }
        if self.pending.len() + rest.len() > MAX_LINE {
            return Err(self.bad(
                self.line + 1,
                format!("the line is longer than {MAX_LINE} bytes"),
            ));
        }
        self.pending.extend_from_slice(rest);
        Ok(())
    }

    /// Checks that the file ended where a snapshot ends.
    ///
    /// # Errors
    /// [`Error::BackupInvalid`] for a file cut short.
    pub(crate) fn finish(&self) -> Result<()> {
        if !self.pending.is_empty() {
            return Err(self.bad(
                self.line + 1,
                "the file is truncated: its last line is cut short (no newline)",
            ));
        }
        match self.state {
            State::Ended => Ok(()),
            State::Start => Err(self.bad(1, "the file is empty")),
            _ => Err(self.bad(
                self.line,
                format!(
                    "the file is truncated: it ends after line {} without its end event",
                    self.line
                ),
            )),
        }
    }

    fn line_done(
        &mut self,
        line: &[u8],
        each: &mut (dyn FnMut(Event) -> Result<()> + Send),
    ) -> Result<()> {
        self.line += 1;
        let number = self.line;
        // Borrows only the file name, so the other fields stay free to change.
        let file = &self.file;
        let bad = |line: u64, reason: String| Error::BackupInvalid {
            file: file.clone(),
            line,
            reason,
        };
        if self.state == State::Ended {
            return Err(bad(
                number,
                "the file goes on after its end event".to_owned(),
            ));
        }
        let text = &line[..line.len() - 1];
        let value: Value = serde_json::from_slice(text)
            .map_err(|e| bad(number, format!("not a JSON event ({e})")))?;
        let Value::Object(mut event) = value else {
            return Err(bad(number, "not a JSON object".to_owned()));
        };
        let t = event
            .get("t")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let string = |event: &serde_json::Map<String, Value>, key: &str| -> Result<String> {
            event
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad(number, format!("the {t} event has no {key} string")))
        };
        let ev = match (self.state, t.as_str()) {
            (State::Start, "header") => {
                let version = event.get("version").and_then(Value::as_u64);
                if version.is_none_or(|v| v == 0 || v > VERSION) {
                    return Err(bad(
                        number,
                        format!("unsupported snapshot version {version:?} (korm reads 1 to 2)"),
                    ));
                }
                self.state = State::Between;
                Event::Header {
                    layer: string(&event, "layerIdent")?,
                    layer_type: string(&event, "layerType").unwrap_or_default(),
                    created_at: string(&event, "createdAt").unwrap_or_default(),
                }
            }
            (State::Start, _) => {
                return Err(bad(
                    number,
                    "the file does not start with a header".to_owned(),
                ));
            }
            (State::Between, "table") => {
                let name = string(&event, "name")?;
                // A second section of one table would replace what the restore's first pass
                // checked of the first, and a replace would empty what the first restored.
                if !self.seen.insert(name.clone()) {
                    return Err(bad(number, format!("table {name:?} comes a second time")));
                }
                let columns = match event.get("columns") {
                    Some(Value::Object(map)) => Some(
                        map.iter()
                            .map(|(c, k)| {
                                k.as_str()
                                    .and_then(kind_of_name)
                                    .map(|k| (c.clone(), k))
                                    .ok_or_else(|| {
                                        bad(number, format!("column {c:?} has an unknown kind"))
                                    })
                            })
                            .collect::<Result<Vec<_>>>()?,
                    ),
                    _ => None,
                };
                let unique = match event.get("unique") {
                    Some(Value::Array(list)) => list
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                    _ => Vec::new(),
                };
                let mut hash = Sha256::new();
                hash.update(line);
                self.table = Some((name.clone(), hash, 0, number));
                self.state = State::InTable;
                Event::Table {
                    name,
                    columns,
                    unique,
                }
            }
            (State::InTable, "row") => {
                let table = string(&event, "table")?;
                let Some((open, hash, rows, _)) = &mut self.table else {
                    return Err(bad(number, "a row outside a table".to_owned()));
                };
                if &table != open {
                    return Err(bad(
                        number,
                        format!("a row of table {table:?} inside table {open:?}"),
                    ));
                }
                hash.update(line);
                *rows += 1;
                self.rows += 1;
                let Some(Value::Object(row)) = event.remove("row") else {
                    return Err(bad(number, "the row event has no row object".to_owned()));
                };
                Event::Row { row }
            }
            (State::InTable, "endTable") => {
                let name = string(&event, "name")?;
                let Some((open, hash, rows, started)) = self.table.take() else {
                    return Err(bad(number, "an endTable outside a table".to_owned()));
                };
                if name != open {
                    return Err(bad(
                        number,
                        format!("endTable of {name:?} closes table {open:?}"),
                    ));
                }
                if let Some(expected) = event.get("rows")
                    && expected.as_u64() != Some(rows)
                {
                    return Err(bad(
                        number,
                        format!(
                            "table {name:?} (from line {started}) has {rows} rows, its \
                             endTable says {expected}"
                        ),
                    ));
                }
                if let Some(expected) = event.get("sha256") {
                    self.checksummed = true;
                    if expected.as_str() != Some(hex::encode(hash.finalize()).as_str()) {
                        return Err(bad(
                            number,
                            format!(
                                "the SHA-256 of table {name:?} (lines {started} to {}) does not \
                                 match its endTable: a line between them was altered",
                                number - 1
                            ),
                        ));
                    }
                } else if self.checksummed {
                    return Err(bad(
                        number,
                        "the endTable has no sha256, as the others do".to_owned(),
                    ));
                }
                self.tables += 1;
                self.state = State::Between;
                Event::EndTable
            }
            (State::Between, "end") => {
                let sha = hex::encode(self.hash.clone().finalize());
                if let Some(expected) = event.get("sha256") {
                    if expected.as_str() != Some(sha.as_str()) {
                        return Err(bad(
                            number,
                            "the file's SHA-256 does not match its end event: a line before it \
                             was altered"
                                .to_owned(),
                        ));
                    }
                    if event.get("rows").and_then(Value::as_u64) != Some(self.rows)
                        || event.get("tables").and_then(Value::as_u64) != Some(self.tables)
                    {
                        return Err(bad(
                            number,
                            format!(
                                "the file holds {} tables and {} rows, its end event says \
                                 otherwise",
                                self.tables, self.rows
                            ),
                        ));
                    }
                    self.checksummed = true;
                    self.sha256 = Some(sha);
                } else if self.checksummed {
                    return Err(bad(
                        number,
                        "the end event has no sha256, as the tables do".to_owned(),
                    ));
                }
                self.state = State::Ended;
                Event::End
            }
            (State::InTable, "table" | "end") => {
                let open = self.table.as_ref().map(|t| t.0.clone()).unwrap_or_default();
                return Err(bad(number, format!("table {open:?} is never ended")));
            }
            (_, other) => {
                return Err(bad(number, format!("unexpected event {other:?} here")));
            }
        };
        if !matches!(ev, Event::End) {
            self.hash.update(line);
        }
        each(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn write_sample() -> Vec<u8> {
        let (tx, mut rx) = mpsc::channel(16);
        let mut sink = Sink::new(tx, "2026-01-01T00:00:00.000Z", "cars", "sqlite", None);
        let schema = TableSchema {
            table: "__items__a__b".into(),
            columns: vec![("n".into(), ColumnKind::Integer)],
            ..TableSchema::default()
        };
        sink.begin_table("__items__a__b", &["rnId".into(), "n".into()], Some(&schema));
        for i in 0..3 {
            sink.row([Raw::Text("id"), Raw::Integer(i)]).unwrap();
        }
        sink.end_table();
        sink.finish().await.unwrap();
        drain(&mut rx)
    }

    /// What a sink sent, whole.
    fn drain(rx: &mut mpsc::Receiver<std::io::Result<bytes::Bytes>>) -> Vec<u8> {
        let mut out = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    fn read(bytes: &[u8]) -> Result<Reader> {
        let mut reader = Reader::new("f");
        reader.push(bytes, &mut |_| Ok(()))?;
        reader.finish()?;
        Ok(reader)
    }

    #[tokio::test]
    async fn a_written_snapshot_reads_back_checked() {
        let bytes = write_sample().await;
        let reader = read(&bytes).unwrap();
        assert!(reader.checksummed);
        assert_eq!((reader.tables, reader.rows), (1, 3));
        // Any flipped byte is caught, on some line.
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            assert!(read(&bad).is_err(), "byte {at} flipped went unnoticed");
        }
        // So is any cut.
        for len in 0..bytes.len() {
            assert!(read(&bytes[..len]).is_err(), "cut at {len} went unnoticed");
        }
    }

    #[tokio::test]
    async fn a_table_that_comes_twice_is_refused() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut sink = Sink::new(tx, "2026-01-01T00:00:00.000Z", "cars", "sqlite", None);
        for rows in [1, 0] {
            sink.begin_table("__items__a__b", &["rnId".into(), "n".into()], None);
            for i in 0..rows {
                sink.row([Raw::Text("id"), Raw::Integer(i)]).unwrap();
            }
            sink.end_table();
        }
        sink.finish().await.unwrap();
        let err = read(&drain(&mut rx)).unwrap_err().to_string();
        assert!(err.contains("comes a second time"), "{err}");
    }
}
