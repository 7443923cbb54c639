//! Depots: named file stores beside the layers (a local folder, an S3-compatible bucket).
//!
//! A depot file is addressed by a depot RN, `[rn][depot::files]:invoices:fred:invoice-001.txt`,
//! whose segments become the object key `invoices/fred/invoice-001.txt` (under the S3 prefix,
//! if one is set). Every segment is checked twice: when the RN is parsed, and again by
//! [`DepotKey`] before a key reaches a store, so no `..`, `.`, `/`, `\`, NUL or control
//! character ever does.
//!
//! Files have the same lifecycle as items, as distinct types (see [`FloatingFile`]), and a
//! [`DepotFile`] inside item data is uploaded through the one write path when the item is
//! created or committed.

mod file;
mod local;
#[cfg(feature = "s3")]
mod s3;
mod store;
pub(crate) mod write;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

pub use file::{DepotFile, DepotFolder, FloatingFile, UncommittedFile, file};
pub use local::{LocalDepot, LocalOptions, local};
#[cfg(feature = "s3")]
pub use s3::{S3Depot, S3Options, s3};

pub(crate) use file::collect_uploads;

use crate::error::{Error, Result, clip};
use crate::rn::{Rn, RnForm};

/// A file's content as a stream of chunks, read without holding the whole file in memory.
pub type FileStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// A stream of chunks to upload (what [`FileContent::stream`] takes, boxed).
type UploadStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// The content of a file to write: bytes in memory, or a stream read while uploading.
///
/// A stream is read once: if the write that reads it fails, the stream is spent and the file
/// needs new content before it can be written again.
pub struct FileContent(Content);

pub(crate) enum Content {
    Bytes(Bytes),
    Stream(UploadStream),
}

impl FileContent {
    /// Content from bytes in memory.
    pub fn bytes(bytes: impl Into<Bytes>) -> Self {
        FileContent(Content::Bytes(bytes.into()))
    }

    /// Content from text (stored as its UTF-8 bytes).
    pub fn text(text: impl Into<String>) -> Self {
        FileContent(Content::Bytes(Bytes::from(text.into())))
    }

    /// Content read from a stream of chunks while it uploads (K6): large files never sit in
    /// memory whole.
    pub fn stream<S>(stream: S) -> Self
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        FileContent(Content::Stream(Box::pin(stream)))
    }

    /// Content read from an [`AsyncRead`](tokio::io::AsyncRead) (a file, a socket) while it
    /// uploads, 64 KiB at a time.
    pub fn reader<R>(reader: R) -> Self
    where
        R: tokio::io::AsyncRead + Send + 'static,
    {
        use tokio::io::AsyncReadExt;
        let state = (Box::pin(reader), false);
        let stream = futures_util::stream::unfold(state, |(mut reader, done)| async move {
            if done {
                return None;
            }
            let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
            match reader.read_buf(&mut buf).await {
                Ok(0) => None,
                Ok(_) => Some((Ok(buf.freeze()), (reader, false))),
                Err(e) => Some((Err(e), (reader, true))),
            }
        });
        FileContent::stream(stream)
    }

    /// Content read from a stream of a depot (a copy between depots).
    pub(crate) fn from_file_stream(stream: FileStream) -> Self {
        use futures_util::TryStreamExt;
        FileContent::stream(stream.map_err(|e| io::Error::other(e.to_string())))
    }

    pub(crate) fn into_inner(self) -> Content {
        self.0
    }
}

impl fmt::Debug for FileContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Content::Bytes(b) => write!(f, "FileContent::Bytes({} bytes)", b.len()),
            Content::Stream(_) => f.write_str("FileContent::Stream"),
        }
    }
}

impl From<Bytes> for FileContent {
    fn from(bytes: Bytes) -> Self {
        FileContent::bytes(bytes)
    }
}

impl From<Vec<u8>> for FileContent {
    fn from(bytes: Vec<u8>) -> Self {
        FileContent::bytes(bytes)
    }
}

impl From<&'static [u8]> for FileContent {
    fn from(bytes: &'static [u8]) -> Self {
        FileContent::bytes(bytes)
    }
}

impl From<String> for FileContent {
    fn from(text: String) -> Self {
        FileContent::text(text)
    }
}

impl From<&str> for FileContent {
    fn from(text: &str) -> Self {
        FileContent::text(text.to_owned())
    }
}

/// The validated key of a file (or of a listing prefix) inside a depot: segments joined with
/// `/`.
///
/// Rules, for every segment: not empty, at most 255 bytes, not `.` or `..`, and no `/`, `\`,
/// `:`, `*`, NUL, control or whitespace character. A key made from an RN is checked again
/// here, so a key can only ever name a path below the depot's root.
///
/// ```
/// use korm::depots::DepotKey;
/// let rn: korm::Rn = "[rn][depot::files]:invoices:fred:invoice-001.txt".parse().unwrap();
/// assert_eq!(DepotKey::from_rn(&rn).unwrap().as_str(), "invoices/fred/invoice-001.txt");
/// assert!(DepotKey::parse("invoices/fred/invoice-001.txt").is_ok());
/// assert!(DepotKey::parse("invoices/../secret.txt").is_err());
/// assert!(DepotKey::parse("/etc/passwd").is_err());
/// assert!(DepotKey::parse("a\\b").is_err());
/// assert!(DepotKey::parse("a/\0/b").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DepotKey {
    text: String,
}

/// One level of a depot listing ([`Depot::list_level`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepotLevel {
    /// The names of the folders directly under the prefix (one segment each), sorted.
    pub folders: Vec<String>,
    /// The files directly under the prefix, sorted.
    pub files: Vec<DepotKey>,
}

impl DepotLevel {
    /// Groups every key under `prefix` into the level directly under it.
    pub fn of_keys(prefix: &DepotKey, keys: impl IntoIterator<Item = DepotKey>) -> Self {
        let mut folders = std::collections::BTreeSet::new();
        let mut files = Vec::new();
        for key in keys {
            let rest = if prefix.is_root() {
                key.as_str()
            } else {
                match key.as_str().strip_prefix(prefix.as_str()) {
                    Some(rest) if rest.starts_with('/') => &rest[1..],
                    _ => continue,
                }
            };
            match rest.split_once('/') {
                Some((folder, _)) => {
                    folders.insert(folder.to_owned());
                }
                None => files.push(key),
            }
        }
        files.sort();
        DepotLevel {
            folders: folders.into_iter().collect(),
            files,
        }
    }
}

/// The longest segment, in bytes.
const MAX_SEGMENT: usize = 255;

impl DepotKey {
    /// Parses a `/`-separated key.
    ///
    /// # Errors
    /// [`Error::InvalidDepotKey`] naming the first segment that breaks a rule.
    pub fn parse(key: &str) -> Result<Self> {
        Self::from_segments(key, key.split('/'))
    }

    /// The key of a depot file RN (`[rn][depot::files]:a:b.txt` -> `a/b.txt`), or of a depot
    /// prefix RN without its final `*` (`[rn][depot::files]:a:*` -> `a`; the whole depot is the
    /// empty key).
    ///
    /// # Errors
    /// [`Error::WrongRnForm`] for an item or collection RN, and [`Error::InvalidDepotKey`]
    /// for a segment that breaks a rule.
    pub fn from_rn<T>(rn: &Rn<T>) -> Result<Self> {
        // The RN's own mapping (segments joined with `/`, a prefix with a trailing `/`),
        // checked again here.
        let Some(path) = rn.key_path() else {
            return Err(Error::WrongRnForm {
                rn: rn.to_string(),
                reason: "a depot file or prefix rn ([rn][depot::name]:...) is needed".to_owned(),
            });
        };
        let path = path.strip_suffix('/').unwrap_or(&path);
        if path.is_empty() {
            return Ok(DepotKey::root());
        }
        Self::from_segments(rn.as_str(), path.split('/'))
    }

    fn from_segments<'a>(whole: &str, segments: impl Iterator<Item = &'a str>) -> Result<Self> {
        let mut text = String::with_capacity(whole.len());
        for (i, segment) in segments.enumerate() {
            check_segment(whole, i + 1, segment)?;
            if i > 0 {
                text.push('/');
            }
            text.push_str(segment);
        }
        Ok(DepotKey { text })
    }

    /// The empty key: the whole depot, as a listing prefix.
    pub fn root() -> Self {
        DepotKey {
            text: String::new(),
        }
    }

    /// The key text, segments joined with `/`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.text.split('/').filter(|s| !s.is_empty())
    }

    /// The key of `segment` directly under this one (under the root: `segment` alone).
    ///
    /// # Errors
    /// [`Error::InvalidDepotKey`] when `segment` breaks a rule.
    ///
    /// ```
    /// use korm::depots::DepotKey;
    /// assert_eq!(DepotKey::root().child("a").unwrap().as_str(), "a");
    /// let folder = DepotKey::parse("a/b").unwrap();
    /// assert_eq!(folder.child("c.txt").unwrap().as_str(), "a/b/c.txt");
    /// assert!(folder.child("..").is_err());
    /// assert!(folder.child("c/d").is_err());
    /// ```
    pub fn child(&self, segment: &str) -> Result<Self> {
        // The new segment is checked whole: a `/` in it is refused, not taken as a separator.
        let whole = format!("{}/{segment}", self.text);
        Self::from_segments(&whole, self.segments().chain(std::iter::once(segment)))
    }

    /// Whether this is the empty key (the whole depot, as a listing prefix).
    pub fn is_root(&self) -> bool {
        self.text.is_empty()
    }

    /// Whether the key names korm's own files (the WAL's records and payloads, backups): its
    /// first segment starts with `__korm_`. A depot file RN can not reach them, and a tool
    /// that shows a depot's files should not either.
    pub fn is_korm_own(&self) -> bool {
        self.text.starts_with(store::RESERVED_PREFIX)
    }

    /// The key, unless it names korm's own files ([`is_korm_own`](DepotKey::is_korm_own)):
    /// what a depot file RN, or a tool that shows a depot, may reach.
    ///
    /// # Errors
    /// [`Error::InvalidDepotKey`] for korm's own files.
    pub fn outside_korm_files(self) -> Result<DepotKey> {
        if !self.is_korm_own() {
            return Ok(self);
        }
        let first = self.segments().next().unwrap_or_default();
        Err(Error::InvalidDepotKey {
            key: clip(self.as_str()),
            segment: format!("1 {:?}", clip(first)),
            reason: format!(
                "starts with {:?}, which names korm's own files (the WAL, backups): a depot \
                 file RN can not reach them",
                store::RESERVED_PREFIX
            ),
        })
    }

    /// The depot file RN of this key in depot `depot`.
    ///
    /// # Errors
    /// [`Error::InvalidRn`] for an invalid depot name or the empty key.
    pub fn to_rn(&self, depot: &str) -> Result<Rn> {
        Rn::depot_file(depot, &self.segments().collect::<Vec<_>>())
    }
}

impl fmt::Display for DepotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn check_segment(whole: &str, number: usize, segment: &str) -> Result<()> {
    let reject = |reason: String| {
        Err(Error::InvalidDepotKey {
            key: clip(whole),
            segment: format!("{number} {:?}", clip(segment)),
            reason,
        })
    };
    if segment.is_empty() {
        return reject("is empty".to_owned());
    }
    if segment.len() > MAX_SEGMENT {
        return reject(format!("is longer than {MAX_SEGMENT} bytes"));
    }
    if segment == "." || segment == ".." {
        return reject("can not be . or .. (no path may leave the depot)".to_owned());
    }
    if let Some(c) = segment
        .chars()
        .find(|&c| matches!(c, '/' | '\\' | ':' | '*') || c.is_control() || c.is_whitespace())
    {
        return reject(format!("contains {c:?}, which a depot key can not hold"));
    }
    Ok(())
}

/// A file store: what [`LocalDepot`] and [`S3Depot`] have in common, and what the
/// conformance suite tests.
///
/// Keys are [`DepotKey`]s, validated before they reach the store. Every method names the
/// depot in its errors and never a secret.
#[async_trait::async_trait]
pub trait Depot: fmt::Debug + Send + Sync + 'static {
    /// The depot's name in its pool (the `depot` mod of its RNs).
    fn ident(&self) -> &str;

    /// Writes a file, replacing any file at `key`, and returns its size. A put is atomic: no
    /// reader sees a partial file. A stream is uploaded as it is read (in parts on S3).
    ///
    /// # Errors
    /// [`Error::Depot`] when the store fails or a stream chunk is an error; nothing is
    /// written then.
    async fn put(&self, key: &DepotKey, content: FileContent) -> Result<u64>;

    /// Reads a file as a stream of chunks.
    ///
    /// # Errors
    /// [`Error::FileNotFound`] when no file is at `key`, [`Error::Depot`] otherwise.
    async fn get(&self, key: &DepotKey) -> Result<FileStream>;

    /// The size of the file at `key`, or `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Depot`] when the store fails.
    async fn size(&self, key: &DepotKey) -> Result<Option<u64>>;

    /// Deletes the file at `key`; deleting a missing file is not an error.
    ///
    /// # Errors
    /// [`Error::Depot`] when the store fails.
    async fn delete(&self, key: &DepotKey) -> Result<()>;

    /// Copies a file inside the depot, replacing any file at `to`.
    ///
    /// # Errors
    /// [`Error::FileNotFound`] when `from` is missing, [`Error::Depot`] otherwise.
    async fn copy(&self, from: &DepotKey, to: &DepotKey) -> Result<()>;

    /// Every file under `prefix` (all files for the root key), sorted. korm's own bookkeeping
    /// files (`__korm_*`) and names a depot RN can not hold are left out.
    ///
    /// # Errors
    /// [`Error::Depot`] when the store fails.
    async fn list(&self, prefix: &DepotKey) -> Result<Vec<DepotKey>>;

    /// One level under `prefix`, like `ls`: the folders directly under it and the files
    /// directly in it, korm's own files left out of the top level as by
    /// [`list`](Depot::list) (a prefix inside them, `__korm_wal__/...`, lists what is there,
    /// for korm's own readers). The default groups what `list` (or, inside korm's own files,
    /// [`list_all`](Depot::list_all)) returns; the built-in depots ask their store for the
    /// one level (a delimiter listing), so a depot of millions of files is not read whole to
    /// show a folder.
    ///
    /// # Errors
    /// [`Error::Depot`] when the store fails.
    async fn list_level(&self, prefix: &DepotKey) -> Result<DepotLevel> {
        let keys = if prefix.as_str().starts_with(store::RESERVED_PREFIX) {
            self.list_all(prefix).await?
        } else {
            self.list(prefix).await?
        };
        Ok(DepotLevel::of_keys(prefix, keys))
    }

    /// Every file under `prefix` like [`list`](Depot::list), korm's own files included (the
    /// write-ahead log, undo copies and backups under `__korm_*`): what the WAL reads and a
    /// reset empties. Required, so a wrapper can not hide korm's files by forgetting it.
    ///
    /// # Errors
    /// [`Error::Depot`] when the store fails.
    async fn list_all(&self, prefix: &DepotKey) -> Result<Vec<DepotKey>>;

    /// Lets go of the store's connections. Later calls may fail.
    async fn close(&self);
}

/// A depot ready to be opened, made by [`local`] or [`s3`] (or from any [`Depot`]).
#[derive(Debug, Clone)]
pub struct DepotSpec(DepotConfig);

#[derive(Debug, Clone)]
enum DepotConfig {
    Local(LocalOptions),
    #[cfg(feature = "s3")]
    S3(S3Options),
    Open(Arc<dyn Depot>),
}

impl From<LocalOptions> for DepotSpec {
    fn from(options: LocalOptions) -> Self {
        DepotSpec(DepotConfig::Local(options))
    }
}

#[cfg(feature = "s3")]
impl From<S3Options> for DepotSpec {
    fn from(options: S3Options) -> Self {
        DepotSpec(DepotConfig::S3(options))
    }
}

impl From<Arc<dyn Depot>> for DepotSpec {
    /// An already opened depot (a wrapper that injects faults, a store of your own). The
    /// pool addresses it by the name given to [`PoolBuilder::depot`](crate::PoolBuilder::depot).
    fn from(depot: Arc<dyn Depot>) -> Self {
        DepotSpec(DepotConfig::Open(depot))
    }
}

/// Where a depot's files live, as pool metadata records it (korm 1.5's depot `type` and
/// `config`). `Debug` never shows a secret.
#[derive(Clone)]
pub(crate) enum DepotSource {
    /// A local folder by its root as given (`"type":"local"`, `{"mode":"local","root":…}`).
    Local {
        /// The root as given (korm 1.5 records it so too: not made absolute).
        root: String,
    },
    /// An S3 bucket (`"type":"s3"`, `{"mode":"s3","encrypted":…}`).
    #[cfg(feature = "s3")]
    S3(S3Options),
}

impl fmt::Debug for DepotSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DepotSource::Local { root } => f.debug_struct("Local").field("root", root).finish(),
            #[cfg(feature = "s3")]
            DepotSource::S3(options) => f.debug_tuple("S3").field(options).finish(),
        }
    }
}

impl DepotSpec {
    /// Where the depot's files live (for pool metadata), or why that can not be said.
    pub(crate) fn source(&self) -> std::result::Result<DepotSource, &'static str> {
        match &self.0 {
            DepotConfig::Local(options) => options
                .root()
                .to_str()
                .map(|root| DepotSource::Local {
                    root: root.to_owned(),
                })
                .ok_or("its root is not UTF-8, which pool metadata (JSON) can not hold"),
            #[cfg(feature = "s3")]
            DepotConfig::S3(options) => Ok(DepotSource::S3(options.clone())),
            DepotConfig::Open(_) => Err(
                "it was given as an opened Depot, whose location korm can not see: give its \
                 options (korm::depots::local, korm::depots::s3) instead",
            ),
        }
    }

    /// Opens the depot under the name `ident`.
    /// With the folder of a local depot (the WAL writes its records there directly).
    pub(crate) async fn open(
        self,
        ident: &str,
    ) -> Result<(Arc<dyn Depot>, Option<std::path::PathBuf>)> {
        Ok(match self.0 {
            DepotConfig::Local(options) => {
                let depot = LocalDepot::open(ident, options).await?;
                let root = depot.root().to_owned();
                (Arc::new(depot), Some(root))
            }
            #[cfg(feature = "s3")]
            DepotConfig::S3(options) => (Arc::new(S3Depot::open(ident, options).await?), None),
            DepotConfig::Open(depot) => (depot, None),
        })
    }
}

/// The lock key of a depot file: its RN in one spelling (`[rn][depot::name]:a:b`), whatever
/// other mods or mod order the RN was written with, so every spelling of one file takes one
/// lock. It can not collide with an item's lock key (those always carry a `from` mod, which
/// a depot RN can not).
///
/// # Errors
/// As [`own_file_key`].
pub(crate) fn file_lock_key<T>(rn: &Rn<T>) -> Result<Arc<str>> {
    let key = own_file_key(rn)?;
    Ok(Arc::from(
        key.to_rn(rn.depot().unwrap_or_default())?.as_str(),
    ))
}

/// Checks that `rn` is a depot file RN outside korm's own files and returns its key: a key
/// whose first segment starts with `__korm_` (the WAL's records and payloads, backups) is
/// refused, so an RN from outside (a request, a tampered row) can not read, overwrite or
/// delete them.
///
/// # Errors
/// [`Error::WrongRnForm`] for another RN form, [`Error::InvalidDepotKey`] for korm's own.
pub(crate) fn file_key<T>(rn: &Rn<T>) -> Result<DepotKey> {
    own_file_key(rn)?.outside_korm_files()
}

/// [`file_key`] for korm's own files too: the WAL's payload RNs, which live in its folder.
pub(crate) fn own_file_key<T>(rn: &Rn<T>) -> Result<DepotKey> {
    if rn.form() != RnForm::DepotFile {
        return Err(Error::WrongRnForm {
            rn: rn.to_string(),
            reason: "a depot file rn ([rn][depot::name]:dir:file) is needed".to_owned(),
        });
    }
    DepotKey::from_rn(rn)
}

/// Reads a whole stream into memory.
pub(crate) async fn collect_bytes(stream: FileStream) -> Result<Bytes> {
    Ok(collect_at_most(stream, usize::MAX)
        .await?
        .unwrap_or_default())
}

/// Reads a whole stream into memory if it holds at most `max` bytes; `None` (having read
/// no more than `max` and one chunk) when it holds more.
pub(crate) async fn collect_at_most(mut stream: FileStream, max: usize) -> Result<Option<Bytes>> {
    use futures_util::StreamExt;
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if chunk.len() > max - out.len() {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out.freeze()))
}
