//! The one error type of korm.
//!
//! Every fallible korm call returns [`Result<T>`](crate::Result). Variants carry what went wrong
//! (the RN, the layer, the table, the column) and never a secret: values are never copied into
//! errors, only names.

use std::fmt;

/// The result type of every fallible korm operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in korm.
///
/// Messages are lowercase, name the RN, layer, table or column involved, and never contain a
/// value that was written (so a secret can not leak through an error or a log line).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Resource Name could not be parsed or built.
    #[error("invalid rn {input:?}: {part} {reason}")]
    InvalidRn {
        /// The text that was parsed (truncated to 200 characters).
        input: String,
        /// The part of the RN that is wrong (`namespace "Users"`, `mod 3`, ...).
        part: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The RN has the wrong form for this operation (a collection where an item is needed, ...).
    #[error("rn {rn} can not be used here: {reason}")]
    WrongRnForm {
        /// The RN.
        rn: String,
        /// What was expected.
        reason: String,
    },

    /// A name that would reach SQL (a field, a table, a layer) is not a safe identifier.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidIdentifier {
        /// What the name is for: `field`, `table`, `layer`, ...
        what: &'static str,
        /// The rejected name (truncated to 200 characters).
        name: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A JSON path (in a filter, a sort or a resolve path) is malformed.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A filter can not be evaluated (a non-scalar comparison value, an unsupported operator).
    #[error("invalid filter on {path:?}: {reason}")]
    InvalidFilter {
        /// The path the filter is on.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A read or write option is invalid (given twice, out of range, not meaningful here).
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A sort key met a value it can not order.
    #[error(
        "can not sort by {path:?} in {rn}: the value is {found}, not a scalar (allow stringify to sort it as JSON text)"
    )]
    NonScalarSort {
        /// The sort path.
        path: String,
        /// The item holding the value.
        rn: String,
        /// What kind of value was found (`object`, `array`).
        found: &'static str,
    },

    /// The pool has several layers and the RN does not name one with the `from` mod.
    #[error(
        "rn {rn} names no layer, and the pool has several ({layers}): add a [from::<layer>] mod"
    )]
    LayerNotNamed {
        /// The RN.
        rn: String,
        /// The layers the pool has, comma-separated.
        layers: String,
    },

    /// The RN names a layer the pool does not have.
    #[error("unknown layer {layer:?} in {rn}: the pool has {layers}")]
    UnknownLayer {
        /// The layer name from the RN.
        layer: String,
        /// The RN.
        rn: String,
        /// The layers the pool has, comma-separated.
        layers: String,
    },

    /// The pool was built wrongly (no layer, a duplicate name, ...).
    #[error("invalid pool configuration: {reason}")]
    PoolConfig {
        /// What is wrong.
        reason: String,
    },

    /// The pool was closed.
    #[error("the pool is closed")]
    PoolClosed,

    /// A reference's data was asked for ([`Ref::get`](crate::Ref::get),
    /// [`Ref::get_mut`](crate::Ref::get_mut)) but the read that made it did not resolve it.
    #[error(
        "the reference to {rn} is not resolved: read the item with .resolve([\"<path>\"]) to \
         load its data"
    )]
    NotResolved {
        /// The referenced RN.
        rn: String,
    },

    /// No item exists at this RN.
    #[error("no item at {rn}")]
    NotFound {
        /// The RN.
        rn: String,
    },

    /// A reference could not be resolved in strict mode: nothing is stored at its RN, or the
    /// RN names a layer the pool does not have.
    #[error("missing reference {rn}: {reason}")]
    MissingReference {
        /// The referenced RN.
        rn: String,
        /// Why it could not be resolved.
        reason: String,
    },

    /// Two changes of one write plan touch the same item (a changed resolved reference to
    /// the item being written, or two changed copies of one referenced item).
    #[error("the write changes {rn} twice (a cascade through a resolved reference): {reason}")]
    CascadeConflict {
        /// The item changed twice.
        rn: String,
        /// Where the two changes come from.
        reason: String,
    },

    /// A query that must match (`first()`) matched nothing.
    #[error("no item in {rn} matches the query")]
    NoMatch {
        /// The collection RN queried.
        rn: String,
    },

    /// An item already exists at this RN.
    #[error("an item already exists at {rn}")]
    AlreadyExists {
        /// The RN.
        rn: String,
    },

    /// A unique field already holds an equal value in another item.
    #[error("unique field {field:?} of {table} already holds this value (writing {rn})")]
    UniqueViolation {
        /// The table.
        table: String,
        /// The unique field.
        field: String,
        /// The RN being written.
        rn: String,
    },

    /// A value's kind does not match the column's stored kind.
    #[error(
        "field {column:?} of {table} is stored as {stored} but the value is {found}; persist with destructive to recreate the column"
    )]
    SchemaMismatch {
        /// The table.
        table: String,
        /// The column (the field name).
        column: String,
        /// The kind the column has.
        stored: crate::model::ColumnKind,
        /// The kind of the new value.
        found: crate::model::ColumnKind,
    },

    /// A model could not be turned into storable data.
    #[error("can not encode {what}: {reason}")]
    Encode {
        /// What was being encoded (a type or an RN).
        what: String,
        /// Why.
        reason: String,
    },

    /// Stored data could not be read back into a model.
    #[error("can not decode {rn}: {reason}")]
    Decode {
        /// The item's RN (or table).
        rn: String,
        /// Why (names the field; never a stored value).
        reason: String,
    },

    /// An encryption key is missing or malformed (see [`crate::crypto`]). The message says
    /// what is wrong and never holds the key.
    #[error("encryption key: {reason}")]
    Key {
        /// What is wrong.
        reason: String,
    },

    /// An encrypted value could not be decrypted: malformed, tampered with, or sealed with a
    /// key the key ring lacks. The message never holds plaintext.
    #[error("can not decrypt: {reason}")]
    Decrypt {
        /// What is wrong.
        reason: String,
    },

    /// A database call failed.
    #[error("layer {layer:?}: {kind}: {message}")]
    Database {
        /// The layer.
        layer: String,
        /// What kind of failure it is, the same on every backend.
        kind: DbErrorKind,
        /// The database's own code, when it gave one: PostgreSQL's SQLSTATE (`23505`),
        /// MySQL's error number (`1062`), SQLite's extended result code (`2067`).
        code: Option<String>,
        /// The driver's message, with bound values and passwords removed.
        message: String,
        /// The driver's error itself (see [`DriverError`]), when there was one.
        #[source]
        source: Option<DriverError>,
    },

    /// The connection was lost while a write was being committed (a commit, or a single
    /// statement committing on its own), so whether it was stored is unknown: the database
    /// may have applied it just before the connection dropped. Load the item to find out;
    /// do not retry blindly.
    #[error(
        "layer {layer:?}: the connection was lost while writing {rn}: whether the write was stored is unknown"
    )]
    OutcomeUnknown {
        /// The layer.
        layer: String,
        /// The RN of the write (the first of its batch on that layer: the others share its
        /// outcome).
        rn: String,
        /// The connection failure.
        #[source]
        source: Box<Error>,
    },

    /// Part of a write failed and what had already been applied was undone.
    #[error("write failed at op {op} ({rn}): {source}")]
    WriteFailed {
        /// Index of the failing op in the write plan.
        op: usize,
        /// The RN of the failing op.
        rn: String,
        /// The failure.
        #[source]
        source: Box<Error>,
    },

    /// Undoing a failed write failed too: the data may be partly written. The original error
    /// and the undo error are both kept.
    #[error(
        "write failed ({source}) and its undo failed too ({undo}): data of {rns} may be partly written"
    )]
    UndoFailed {
        /// The RNs whose undo failed.
        rns: String,
        /// The original failure.
        #[source]
        source: Box<Error>,
        /// The undo failure.
        undo: Box<Error>,
    },

    /// A lock was not acquired within the wait (30 s by default, see
    /// [`PoolBuilder::with_lock_timeout`](crate::PoolBuilder::with_lock_timeout)).
    #[error("timed out after {waited:?} waiting for the lock on {rn}")]
    LockTimeout {
        /// The RN whose lock was awaited.
        rn: String,
        /// The wait that ran out: the pool's lock timeout, or the one given to the call (as
        /// korm 1.5 reports it; not the time measured, which can only be longer).
        waited: std::time::Duration,
    },

    /// A write was made under a shared lock that was lost (it expired and was taken over, or
    /// its row vanished): its fencing token is older than one already issued or written for
    /// the RN, so the write was refused and nothing was written.
    #[error("the lock on {rn} was lost (fencing token {token} is stale): the write was refused")]
    StaleLock {
        /// The RN written.
        rn: String,
        /// The stale token the write carried.
        token: u64,
    },

    /// An optimistic write lost a race: the item was changed (or, for a delete, changed or
    /// deleted and made again) by another writer since it was loaded, so the write was
    /// refused and nothing was written (in a [`tx`](crate::tx), nothing of the whole plan).
    ///
    /// A commit writes only the fields it changes, each on the condition, checked in the
    /// same statement, that the stored value is still the one the item was loaded with; a
    /// delete is conditional on every stored field. Reload and apply the change again
    /// ([`Item::retry_on_conflict`](crate::Item::retry_on_conflict) runs that loop), or
    /// write with [`WriteOptions::last_writer_wins`](crate::WriteOptions::last_writer_wins).
    /// [`Error::is_conflict`] tells it apart (through [`Error::WriteFailed`] too);
    /// [`Error::is_retryable`] is `false`: the same call made again fails again.
    #[error("conflict on {rn}: {} changed since the item was loaded; the write was refused", fields.join(", "))]
    Conflict {
        /// The item.
        rn: String,
        /// The fields whose stored value is no longer the one the write expected (the
        /// fields it was conditional on, when the database could not tell which).
        fields: Vec<String>,
        /// The item the refused write handed back (see [`Error::take_conflicted`]).
        item: ConflictedItem,
    },

    /// A depot key (or a depot RN's segment) would leave the depot or holds a character a
    /// key can not hold (`..`, `/`, `\\`, NUL, a control character, `*` before the end).
    #[error("invalid depot key {key:?}: segment {segment} {reason}")]
    InvalidDepotKey {
        /// The key or RN (truncated to 200 characters).
        key: String,
        /// The offending segment: its 1-based number and text.
        segment: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The RN names a depot the pool does not have.
    #[error("unknown depot {depot:?}: the pool has {depots:?}")]
    UnknownDepot {
        /// The depot name.
        depot: String,
        /// The depots the pool has, comma-separated.
        depots: String,
    },

    /// No file is at this key of the depot.
    #[error("no file at {key:?} in depot {depot:?}")]
    FileNotFound {
        /// The depot.
        depot: String,
        /// The key (`invoices/fred/invoice-001.txt`).
        key: String,
    },

    /// A file already exists at this key of the depot (creating a file never replaces one).
    #[error("a file already exists at {key:?} in depot {depot:?}")]
    FileExists {
        /// The depot.
        depot: String,
        /// The key.
        key: String,
    },

    /// A depot operation failed: the store is unreachable, refused the credentials, or
    /// failed otherwise. The reason never holds a secret.
    #[error("depot {depot:?}{}: {reason}", key_part(.key))]
    Depot {
        /// The depot.
        depot: String,
        /// The key involved (empty for the depot as a whole).
        key: String,
        /// What went wrong.
        reason: String,
    },

    /// A write's record could not be written to the WAL depot: nothing of the write was
    /// applied.
    #[error(
        "the write-ahead log record could not be written to depot {depot:?}, so nothing was written: {source}"
    )]
    WalWrite {
        /// The WAL depot.
        depot: String,
        /// The depot's failure.
        #[source]
        source: Box<Error>,
    },

    /// A WAL record is refused: it fails its MAC check (it was changed after it was
    /// written), has no MAC where one is required, is malformed, or belongs to another pool.
    /// It is never replayed.
    #[error("WAL record {record}: {reason}")]
    WalRecord {
        /// The record id.
        record: String,
        /// Why it is refused.
        reason: String,
    },

    /// A pending WAL record could not be recovered (a layer or depot it touches failed): it
    /// stays pending, and is tried again at the next open or
    /// [`Wal::recover`](crate::wal::Wal::recover).
    #[error("WAL record {record} could not be recovered: {source}")]
    WalRecovery {
        /// The record id.
        record: String,
        /// The failure.
        #[source]
        source: Box<Error>,
    },

    /// A write to an RN whose last write failed and could not be rolled back: its WAL record
    /// is pending, and the RN refuses writes until a recovery
    /// ([`Wal::recover`](crate::wal::Wal::recover)) finishes it, so no new write is undone
    /// by that later recovery.
    #[error(
        "{rn} waits for the recovery of WAL record {record} (a failed write could not be rolled back)"
    )]
    WalPending {
        /// The RN written to.
        rn: String,
        /// The pending record.
        record: String,
    },

    /// The pool metadata stored on a layer (`__korm_pool__`, see
    /// [`PoolBuilder::with_meta`](crate::PoolBuilder::with_meta)) describes another
    /// configuration than the pool being opened: another process uses these layers
    /// differently. Each difference names the layer, depot or setting, never a secret.
    #[error(
        "pool metadata on layer {layer:?} does not match this pool: {}. To continue, configure \
         this pool as the stored one, rebuild it from the metadata (korm::discover, which needs \
         the KORM_ENCRYPTION_KEY the pool was created with), or wipe the stored pool \
         (korm::danger(korm::reset(&pool, ResetMode::...)), which destroys data)",
        .differences.join("; ")
    )]
    MetaMismatch {
        /// The layer holding the snapshot (several, comma-separated, when more than one
        /// does).
        layer: String,
        /// What differs, one entry each (`layer "userdb": the url differs (host)`).
        differences: Vec<String>,
    },

    /// The pool metadata stored on a layer can not be used: it is not korm's JSON, has an
    /// unsupported version or a field of the wrong shape, was altered (a config that does not
    /// match its fingerprint), or describes something this build can not open.
    #[error("pool metadata on layer {layer:?}: {reason}")]
    MetaInvalid {
        /// The layer holding the snapshot.
        layer: String,
        /// What is wrong (names the field, never a stored value).
        reason: String,
    },

    /// A secret in the pool metadata (a server URL, S3 options) does not decrypt: the key
    /// ring lacks the key it was sealed with, or the ciphertext was altered. Discovery needs
    /// the `KORM_ENCRYPTION_KEY` the pool was created with (or that key in
    /// `KORM_ENCRYPTION_KEYS_OLD`).
    #[error(
        "pool metadata on layer {layer:?}: the config of {entry} does not decrypt ({reason}); \
         set KORM_ENCRYPTION_KEY (or KORM_ENCRYPTION_KEYS_OLD) to the key the pool was created with"
    )]
    MetaDecrypt {
        /// The layer holding the snapshot.
        layer: String,
        /// The entry whose config is sealed (`layer "userdb"`, `depot "files"`).
        entry: String,
        /// Why (never plaintext or key material).
        reason: String,
    },

    /// A backup file is not a whole, well-formed snapshot: a line that is not an event, events
    /// out of order, a truncated file, or a row count or SHA-256 checksum that does not match
    /// what was read. Nothing was written when a restore fails with it.
    #[error("backup {file}: line {line}: {reason}")]
    BackupInvalid {
        /// The backup file's key in its depot.
        file: String,
        /// The line (1-based) where the file went wrong.
        line: u64,
        /// What is wrong (names the table, never a stored value).
        reason: String,
    },

    /// [`discover`](crate::discover) found no pool metadata on the layer it was given.
    #[error(
        "the layer holds no pool metadata (no `pool` row in __korm_pool__): open the pool once \
         with PoolBuilder::with_meta, or discover from the layer the pool's metadata is on"
    )]
    MetaNotFound,
}

impl Error {
    /// A [`Error::Database`] korm itself reports, without a driver error behind it.
    pub(crate) fn database(
        layer: impl Into<String>,
        kind: DbErrorKind,
        message: impl Into<String>,
    ) -> Error {
        Error::Database {
            layer: layer.into(),
            kind,
            code: None,
            message: message.into(),
            source: None,
        }
    }

    /// A [`Error::Database`] from a driver's error, shown as `message` (already free of
    /// values and secrets).
    pub(crate) fn driver(
        layer: impl Into<String>,
        kind: DbErrorKind,
        code: Option<String>,
        message: String,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Database {
            layer: layer.into(),
            kind,
            code,
            source: Some(DriverError::new(message.clone(), error)),
            message,
        }
    }

    /// Whether the same call, made again later, may succeed and can not apply anything
    /// twice: the database was busy (a lock wait timed out, a deadlock or serialization
    /// failure), the connection was lost before anything was committed, or a korm lock was
    /// not acquired in time. [`Error::OutcomeUnknown`] is not retryable: the write may be
    /// stored already.
    pub fn is_retryable(&self) -> bool {
        // (Error::Conflict is not: see is_conflict.)
        match self {
            Error::Database { kind, .. } => {
                matches!(kind, DbErrorKind::Busy | DbErrorKind::ConnectionLost)
            }
            Error::LockTimeout { .. } => true,
            Error::WriteFailed { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

impl Error {
    /// Whether this is an [`Error::Conflict`], directly or as the cause of a failed
    /// transaction op ([`Error::WriteFailed`]): the item was changed by another writer since
    /// it was loaded. Reload it and apply the change again; the same call made again would
    /// fail again.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Conflict { .. } => true,
            Error::WriteFailed { source, .. } => source.is_conflict(),
            _ => false,
        }
    }

    /// Whether this is an [`Error::OutcomeUnknown`], directly or as the cause of a failed
    /// transaction op or of a write whose undo failed: the write may be stored; load the items
    /// to find out.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Error::OutcomeUnknown { .. } => true,
            Error::WriteFailed { source, .. } | Error::UndoFailed { source, .. } => {
                source.outcome_unknown()
            }
            _ => false,
        }
    }

    /// Takes the item a refused write handed back in its [`Error::Conflict`]: an
    /// [`UncommittedItem<T>`](crate::UncommittedItem) for a commit (its changed data, to
    /// look at or to [`rebase`](crate::UncommittedItem::rebase) onto the stored item), an
    /// [`Item<T>`](crate::Item) for a delete. `None` for another error, another type, a
    /// write inside a [`tx`](crate::tx) (its items are dropped), or when taken already.
    pub fn take_conflicted<S: 'static>(&mut self) -> Option<S> {
        match self {
            Error::Conflict { item, .. } => item.take(),
            Error::WriteFailed { source, .. } => source.take_conflicted(),
            _ => None,
        }
    }
}

/// The item a write refused by [`Error::Conflict`] handed back (taken with
/// [`Error::take_conflicted`]). `Debug` shows only whether it holds one.
#[derive(Default)]
pub struct ConflictedItem(Option<Box<dyn std::any::Any + Send + Sync>>);

impl ConflictedItem {
    /// Holds `item`.
    pub(crate) fn new<S: Send + Sync + 'static>(item: S) -> Self {
        ConflictedItem(Some(Box::new(item)))
    }

    /// No item.
    pub(crate) fn none() -> Self {
        ConflictedItem(None)
    }

    /// Whether an item is held.
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }

    fn take<S: 'static>(&mut self) -> Option<S> {
        match self.0.take()?.downcast::<S>() {
            Ok(item) => Some(*item),
            Err(other) => {
                self.0 = Some(other);
                None
            }
        }
    }
}

impl fmt::Debug for ConflictedItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "ConflictedItem(..)"
        } else {
            "ConflictedItem(none)"
        })
    }
}

/// A database driver's own error, kept as the [`source`](std::error::Error::source) of
/// [`Error::Database`] so a program can inspect it ([`DriverError::get_ref`], then
/// `downcast_ref::<sqlx::Error>()` or `::<rusqlite::Error>()`).
///
/// Its `Display` is korm's message (without bound values or passwords), and it reports no
/// source of its own: printing an error chain never shows the driver's text, which may
/// quote a value (MySQL's `Duplicate entry 'fred@example.com'`). The driver error reached
/// through [`get_ref`](DriverError::get_ref) is not scrubbed: treat it as sensitive.
#[derive(Clone)]
pub struct DriverError {
    message: String,
    inner: std::sync::Arc<dyn std::error::Error + Send + Sync>,
}

impl DriverError {
    /// Keeps `inner`, shown as `message`.
    pub(crate) fn new(
        message: impl Into<String>,
        inner: impl std::error::Error + Send + Sync + 'static,
    ) -> DriverError {
        DriverError {
            message: message.into(),
            inner: std::sync::Arc::new(inner),
        }
    }

    /// The driver's error, unscrubbed (it may quote values).
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.inner
    }
}

impl fmt::Debug for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DriverError").field(&self.message).finish()
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DriverError {}

/// The kind of a database failure, the same for every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbErrorKind {
    /// The database could not be opened or reached.
    Connect,
    /// The database stayed busy or locked past the timeout.
    Busy,
    /// A unique or primary-key constraint was violated.
    UniqueViolation,
    /// A check or not-null constraint was violated.
    ConstraintViolation,
    /// The schema is not what korm expects.
    Schema,
    /// The connection was lost mid-operation.
    ConnectionLost,
    /// A statement or value is larger than the server takes (MySQL's `max_allowed_packet`):
    /// nothing of it was applied, and sending it again fails again.
    TooLarge,
    /// Anything else the driver reported.
    Other,
}

impl fmt::Display for DbErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbErrorKind::Connect => "can not connect",
            DbErrorKind::Busy => "database busy",
            DbErrorKind::UniqueViolation => "unique violation",
            DbErrorKind::ConstraintViolation => "constraint violation",
            DbErrorKind::Schema => "schema error",
            DbErrorKind::ConnectionLost => "connection lost",
            DbErrorKind::TooLarge => "too large for the server",
            DbErrorKind::Other => "database error",
        })
    }
}

/// ` at key "<key>"`, or nothing for an error about the depot as a whole.
fn key_part(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" at key {key:?}")
    }
}

/// Texts that must never appear in an error or a log line (a URL's passwords, an S3
/// secret): drivers and servers may echo their configuration.
#[derive(Clone, Default)]
pub(crate) struct Scrubber(std::sync::Arc<[String]>);

impl Scrubber {
    /// A scrubber of these secrets (empty ones are left out).
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "s3"))]
    pub(crate) fn new(mut secrets: Vec<String>) -> Scrubber {
        secrets.retain(|s| !s.is_empty());
        // Longest first: a secret that holds another (a password and its percent-decoded
        // form, a key and its prefix) is replaced whole, not left with its tail showing.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Scrubber(secrets.into())
    }

    /// `message` with every secret replaced by `***`.
    pub(crate) fn scrub(&self, message: &str) -> String {
        let mut out = message.to_owned();
        for secret in self.0.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} secrets)", self.0.len())
    }
}

/// Truncates user input copied into an error, so an error stays readable.
pub(crate) fn clip(input: &str) -> String {
    const MAX: usize = 200;
    if input.len() <= MAX {
        return input.to_owned();
    }
    let mut end = MAX;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &input[..end])
}

#[cfg(test)]
#[cfg(any(feature = "postgres", feature = "mysql", feature = "s3"))]
mod tests {

    use super::Scrubber;

    /// A secret that holds another is replaced whole, whatever order they come in.
    #[test]
    fn a_secret_holding_another_is_scrubbed_whole() {
        for secrets in [["pa55", "pa55word!"], ["pa55word!", "pa55"]] {
            let scrubber = Scrubber::new(secrets.iter().map(|s| (*s).to_owned()).collect());
            assert_eq!(
                scrubber.scrub("login pa55word! refused; pa55 too"),
                "login *** refused; *** too"
            );
        }
    }
}

#[cfg(test)]
mod outcome_tests {
    #[test]
    fn an_unknown_outcome_shows_through_a_failed_undo() {
        let unknown = || super::Error::OutcomeUnknown {
            layer: "b".into(),
            rn: "[rn]:cars:suv:x".into(),
            source: Box::new(super::Error::PoolClosed),
        };
        let undo_failed = super::Error::UndoFailed {
            rns: "[rn]:cars:suv:y (layer a)".into(),
            source: Box::new(unknown()),
            undo: Box::new(super::Error::PoolClosed),
        };
        // A depot write keeps its files, and the caller learns the write may be stored.
        assert!(undo_failed.outcome_unknown());
        let plain = super::Error::UndoFailed {
            rns: "x".into(),
            source: Box::new(super::Error::PoolClosed),
            undo: Box::new(super::Error::PoolClosed),
        };
        assert!(!plain.outcome_unknown());
    }
}
