//! Depot files as typestates, and files inside item data.
//!
//! ```text
//!   FloatingFile --create--> DepotFile --update--> UncommittedFile --commit--> DepotFile
//!                               |
//!                             delete --> gone
//! ```

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use super::write::{DepotOp, FileState, PutMode, SharedState};
use super::{Depot, DepotKey, FileContent, FileStream, collect_bytes, file_key};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::rn::{Rn, RnForm};
use crate::write::{WritePlan, execute};

/// A file that exists only in memory: [`create`](FloatingFile::create) writes it, or put it
/// (as a [`DepotFile`], `floating.into()`) into item data to upload it with the item.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> korm::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let pool = korm::pool()
///     .layer("db", korm::layers::sqlite_memory())
///     .depot("files", korm::depots::local(dir.path()))
///     .open()
///     .await?;
/// let rn = "[rn][depot::files]:invoices:fred:invoice-001.txt".parse()?;
/// let file = korm::depots::file(rn, "one brontosaurus burger")?.create(&pool).await?;
/// let file = file.update("two brontosaurus burgers").commit(&pool).await?;
/// assert_eq!(file.text(&pool).await?, "two brontosaurus burgers");
/// file.delete(&pool).await?;
/// # pool.close().await;
/// # Ok(()) }
/// ```
///
/// A floating file has nothing to commit, and a stored one nothing to create:
///
/// ```compile_fail
/// # async fn f(pool: korm::Pool, file: korm::depots::FloatingFile) {
/// file.commit(&pool).await;
/// # }
/// ```
///
/// ```compile_fail
/// # async fn f(pool: korm::Pool, file: korm::depots::DepotFile) {
/// file.commit(&pool).await; // update() first
/// # }
/// ```
pub struct FloatingFile {
    rn: Rn,
    content: FileContent,
}

/// A floating file at depot file RN `rn` with `content` (bytes, text, a stream, a reader:
/// see [`FileContent`]).
///
/// # Errors
/// [`Error::WrongRnForm`] when `rn` is not a depot file RN.
pub fn file(rn: Rn, content: impl Into<FileContent>) -> Result<FloatingFile> {
    file_key(&rn)?;
    Ok(FloatingFile {
        rn,
        content: content.into(),
    })
}

impl FloatingFile {
    /// The RN the file will have.
    pub fn rn(&self) -> &Rn {
        &self.rn
    }

    /// Writes the file through the write path (the RN is locked meanwhile).
    ///
    /// # Errors
    /// [`Error::FileExists`] when a file is at the RN, [`Error::UnknownDepot`],
    /// [`Error::Depot`] when the store fails (nothing is written then).
    pub async fn create(self, pool: &Pool) -> Result<DepotFile> {
        let file = DepotFile::pending(self.rn, self.content);
        run(pool, file.put_op(PutMode::Create)).await?;
        Ok(file)
    }
}

impl fmt::Debug for FloatingFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FloatingFile")
            .field("rn", &self.rn)
            .field("content", &self.content)
            .finish()
    }
}

impl From<FloatingFile> for DepotFile {
    /// The floating file as a field of item data: it is uploaded when the item is created
    /// or committed.
    fn from(file: FloatingFile) -> Self {
        DepotFile::pending(file.rn, file.content)
    }
}

/// A file in a depot, by its RN: read it, [`update`](DepotFile::update) or
/// [`delete`](DepotFile::delete) it.
///
/// As a field of item data it is stored as its RN string (an `RN_REF_TEXT` column), and read
/// back from that string. One made from a [`FloatingFile`] carries content that is uploaded
/// when the item is created or committed, through the same write as the item: if the item's
/// write fails, the upload is undone.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct Car { year: i64, invoice: korm::DepotFile }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> korm::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let pool = korm::pool()
///     .layer("cardb", korm::layers::sqlite_memory())
///     .depot("files", korm::depots::local(dir.path()))
///     .open()
///     .await?;
/// let invoice = korm::depots::file(
///     "[rn][depot::files]:invoices:fred:invoice-001.txt".parse()?,
///     "Invoice 001",
/// )?;
/// let car = korm::item::<Car>(&pool)
///     .from_data("[rn]:cars:suv:*".parse()?, Car { year: 2015, invoice: invoice.into() })?
///     .create()
///     .await?;
/// let loaded = korm::item::<Car>(&pool).load(car.rn().clone()).get().await?;
/// assert_eq!(loaded.data().invoice.text(&pool).await?, "Invoice 001");
/// # pool.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DepotFile {
    rn: Rn,
    state: SharedState,
}

impl DepotFile {
    fn pending(rn: Rn, content: FileContent) -> Self {
        DepotFile {
            rn,
            state: Arc::new(Mutex::new(FileState::pending(content))),
        }
    }

    /// The file at depot file RN `rn` (nothing is read or checked until it is used).
    ///
    /// # Errors
    /// [`Error::WrongRnForm`] when `rn` is not a depot file RN.
    pub fn at(rn: Rn) -> Result<Self> {
        file_key(&rn)?;
        Ok(DepotFile {
            rn,
            state: Arc::new(Mutex::new(FileState::Stored)),
        })
    }

    /// The file's RN.
    pub fn rn(&self) -> &Rn {
        &self.rn
    }

    /// Whether the file still has content to upload (it came from a [`FloatingFile`] and
    /// the item holding it was not written yet).
    pub fn is_pending(&self) -> bool {
        self.state
            .lock()
            .map(|s| !matches!(*s, FileState::Stored))
            .unwrap_or(false)
    }

    /// Reads the file as a stream of chunks, without holding it in memory.
    ///
    /// # Errors
    /// [`Error::UnknownDepot`], [`Error::FileNotFound`], [`Error::Depot`].
    pub async fn stream(&self, pool: &Pool) -> Result<FileStream> {
        let (depot, key) = self.locate(pool)?;
        depot.get(&key).await
    }

    /// Reads the whole file.
    ///
    /// # Errors
    /// As [`stream`](DepotFile::stream).
    pub async fn bytes(&self, pool: &Pool) -> Result<Bytes> {
        collect_bytes(self.stream(pool).await?).await
    }

    /// Reads the whole file as UTF-8 text.
    ///
    /// # Errors
    /// As [`stream`](DepotFile::stream), and [`Error::Decode`] when it is not UTF-8.
    pub async fn text(&self, pool: &Pool) -> Result<String> {
        let bytes = self.bytes(pool).await?;
        String::from_utf8(bytes.to_vec()).map_err(|e| Error::Decode {
            rn: self.rn.to_string(),
            reason: format!("the file is not UTF-8 text: {}", e.utf8_error()),
        })
    }

    /// The file's size in bytes, or `None` when no file is at the RN.
    ///
    /// # Errors
    /// [`Error::UnknownDepot`], [`Error::Depot`].
    pub async fn size(&self, pool: &Pool) -> Result<Option<u64>> {
        let (depot, key) = self.locate(pool)?;
        depot.size(&key).await
    }

    /// New content in memory; [`commit`](UncommittedFile::commit) writes it.
    pub fn update(self, content: impl Into<FileContent>) -> UncommittedFile {
        UncommittedFile {
            rn: self.rn,
            content: content.into(),
        }
    }

    /// New content computed from the current content (korm 1.5's `update(editFn)`): reads
    /// the whole file, hands it to `edit`, and returns what [`commit`](UncommittedFile::commit)
    /// writes. The file is held in memory; for a large file read a
    /// [`stream`](DepotFile::stream) and [`update`](DepotFile::update) with new content.
    ///
    /// Nothing is locked between the read and the commit: take the file's RN lock
    /// ([`Pool::locker`]) around both when other writers may edit the same file.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> korm::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let pool = korm::pool()
    /// #     .layer("db", korm::layers::sqlite_memory())
    /// #     .depot("files", korm::depots::local(dir.path()))
    /// #     .open()
    /// #     .await?;
    /// let rn = "[rn][depot::files]:logs:fred:visits.txt".parse()?;
    /// let log = korm::depots::file(rn, "monday\n")?.create(&pool).await?;
    /// let log = log
    ///     .edit(&pool, |old| [old.as_ref(), b"tuesday\n"].concat())
    ///     .await?
    ///     .commit(&pool)
    ///     .await?;
    /// assert_eq!(log.text(&pool).await?, "monday\ntuesday\n");
    /// # pool.close().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`bytes`](DepotFile::bytes) ([`Error::FileNotFound`] when no file is at the RN).
    pub async fn edit<C: Into<FileContent>>(
        self,
        pool: &Pool,
        edit: impl FnOnce(Bytes) -> C,
    ) -> Result<UncommittedFile> {
        let old = self.bytes(pool).await?;
        Ok(self.update(edit(old)))
    }

    /// Deletes the file through the write path.
    ///
    /// # Errors
    /// [`Error::FileNotFound`] when no file is at the RN, [`Error::Depot`].
    pub async fn delete(self, pool: &Pool) -> Result<()> {
        let mut plan = WritePlan::default();
        plan.depot_ops.push(DepotOp::Delete { rn: self.rn });
        execute(pool, plan).await
    }

    fn locate(&self, pool: &Pool) -> Result<(Arc<dyn Depot>, DepotKey)> {
        Ok((pool.depot_of(&self.rn)?, file_key(&self.rn)?))
    }

    fn put_op(&self, mode: PutMode) -> DepotOp {
        DepotOp::Put {
            rn: self.rn.clone(),
            state: Arc::clone(&self.state),
            mode,
        }
    }
}

impl PartialEq for DepotFile {
    /// Files are equal when their RNs are.
    fn eq(&self, other: &Self) -> bool {
        self.rn == other.rn
    }
}

impl fmt::Debug for DepotFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DepotFile")
            .field("rn", &self.rn)
            .field("pending", &self.is_pending())
            .finish()
    }
}

/// A stored file with new content not yet written; [`commit`](UncommittedFile::commit)
/// writes it.
pub struct UncommittedFile {
    rn: Rn,
    content: FileContent,
}

impl UncommittedFile {
    /// The file's RN.
    pub fn rn(&self) -> &Rn {
        &self.rn
    }

    /// Writes the new content over the file.
    ///
    /// # Errors
    /// [`Error::FileNotFound`] when the file was deleted meanwhile, [`Error::Depot`] (the
    /// old content stays then).
    pub async fn commit(self, pool: &Pool) -> Result<DepotFile> {
        let file = DepotFile::pending(self.rn, self.content);
        run(pool, file.put_op(PutMode::Replace)).await?;
        Ok(file)
    }
}

impl fmt::Debug for UncommittedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UncommittedFile")
            .field("rn", &self.rn)
            .field("content", &self.content)
            .finish()
    }
}

async fn run(pool: &Pool, op: DepotOp) -> Result<()> {
    let mut plan = WritePlan::default();
    plan.depot_ops.push(op);
    execute(pool, plan).await
}

impl Pool {
    /// The depot named `name`.
    ///
    /// # Errors
    /// [`Error::UnknownDepot`] when the pool has none of that name, [`Error::PoolClosed`].
    pub fn depot(&self, name: &str) -> Result<Arc<dyn Depot>> {
        if self.is_closed() {
            return Err(Error::PoolClosed);
        }
        self.depot_named(name)
            .cloned()
            .ok_or_else(|| Error::UnknownDepot {
                depot: name.to_owned(),
                depots: self.depot_names().collect::<Vec<_>>().join(", "),
            })
    }

    /// The depot a depot RN names.
    pub(crate) fn depot_of<T>(&self, rn: &Rn<T>) -> Result<Arc<dyn Depot>> {
        match rn.depot() {
            Some(name) => self.depot(name),
            None => Err(Error::WrongRnForm {
                rn: rn.to_string(),
                reason: "a depot rn ([rn][depot::name]:...) is needed".to_owned(),
            }),
        }
    }

    /// Every file under a depot prefix RN (`[rn][depot::files]:invoices:fred:*`), sorted by
    /// key (D5). A depot file RN lists just that file, if it exists.
    ///
    /// # Errors
    /// [`Error::WrongRnForm`] for an item or collection RN, [`Error::UnknownDepot`],
    /// [`Error::Depot`].
    pub async fn files(&self, prefix: &Rn) -> Result<Vec<DepotFile>> {
        let depot = self.depot_of(prefix)?;
        let key = DepotKey::from_rn(prefix)?;
        let name = depot_name(prefix);
        if prefix.form() == RnForm::DepotFile {
            return Ok(match depot.size(&key).await? {
                Some(_) => vec![DepotFile::at(prefix.clone())?],
                None => Vec::new(),
            });
        }
        depot
            .list(&key)
            .await?
            .into_iter()
            .map(|key| DepotFile::at(key.to_rn(&name)?))
            .collect()
    }
}

fn depot_name(rn: &Rn) -> String {
    rn.depot().unwrap_or_default().to_owned()
}

thread_local! {
    /// The uploads found while an item's data is encoded (see [`collect_uploads`]).
    static UPLOADS: crate::model::collect::Slot<DepotOp> = const { RefCell::new(None) };
}

/// Runs `encode` (an item's serialization) and returns what it gave with the uploads of the
/// pending [`DepotFile`]s it met, each once.
pub(crate) fn collect_uploads<R>(encode: impl FnOnce() -> R) -> (R, Vec<DepotOp>) {
    crate::model::collect::collect(&UPLOADS, encode)
}

impl Serialize for DepotFile {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        if self.is_pending() {
            crate::model::collect::report(&UPLOADS, |uploads| {
                let seen = uploads.iter().any(|op| match op {
                    DepotOp::Put { state, .. } => Arc::ptr_eq(state, &self.state),
                    DepotOp::Delete { .. } => false,
                });
                if !seen {
                    uploads.push(self.put_op(PutMode::Upsert));
                }
            });
        }
        serializer.serialize_newtype_struct(crate::model::RN_MARKER, self.rn.as_str())
    }
}

impl<'de> Deserialize<'de> for DepotFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_str(FileVisitor)
    }
}

struct FileVisitor;

impl Visitor<'_> for FileVisitor {
    type Value = DepotFile;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a depot file rn string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<DepotFile, E> {
        let rn: Rn = text
            .parse()
            .map_err(|_| E::custom("the value is not a valid rn"))?;
        DepotFile::at(rn).map_err(|_| E::custom("the rn is not a depot file rn"))
    }
}

/// A field holding a depot prefix RN (`[rn][depot::files]:invoices:fred:*`): the folder of
/// files under it, as korm 1.5 resolves such a field, to the list of those files.
///
/// It is stored as its RN string (an `RN_REF_TEXT` column, like [`DepotFile`]); nothing is
/// listed until [`files`](DepotFolder::files) asks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> korm::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use korm::depots::{DepotFolder, file};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Customer { name: String, invoices: DepotFolder }
///
/// let pool = korm::pool()
///     .layer("db", korm::layers::sqlite_memory())
///     .depot("files", korm::depots::local(dir.path()))
///     .open()
///     .await?;
/// file("[rn][depot::files]:invoices:fred:001.txt".parse()?, "Invoice 001")?.create(&pool).await?;
/// let fred = korm::item::<Customer>(&pool)
///     .from_data(
///         "[rn]:customers:main:*".parse()?,
///         Customer {
///             name: "fred".into(),
///             invoices: DepotFolder::at("[rn][depot::files]:invoices:fred:*".parse()?)?,
///         },
///     )?
///     .create()
///     .await?;
/// let files = fred.data().invoices.files(&pool).await?;
/// assert_eq!(files[0].rn().to_string(), "[rn][depot::files]:invoices:fred:001.txt");
/// # pool.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepotFolder {
    rn: Rn,
}

impl DepotFolder {
    /// The folder at depot prefix RN `rn` (`...:*`).
    ///
    /// # Errors
    /// [`Error::WrongRnForm`] when `rn` is not a depot prefix RN.
    pub fn at(rn: Rn) -> Result<Self> {
        if rn.form() != RnForm::DepotPrefix {
            return Err(Error::WrongRnForm {
                rn: rn.to_string(),
                reason: "a depot folder is a depot prefix rn ([rn][depot::name]:path:*)".to_owned(),
            });
        }
        Ok(DepotFolder { rn })
    }

    /// The folder's prefix RN.
    pub fn rn(&self) -> &Rn {
        &self.rn
    }

    /// The files under the folder, at any depth, sorted by key (see
    /// [`Pool::files`](crate::Pool::files)).
    ///
    /// # Errors
    /// [`Error::UnknownDepot`], [`Error::Depot`].
    pub async fn files(&self, pool: &Pool) -> Result<Vec<DepotFile>> {
        pool.files(&self.rn).await
    }
}

impl Serialize for DepotFolder {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(crate::model::RN_MARKER, self.rn.as_str())
    }
}

impl<'de> Deserialize<'de> for DepotFolder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct FolderVisitor;
        impl Visitor<'_> for FolderVisitor {
            type Value = DepotFolder;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a depot prefix rn string")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<DepotFolder, E> {
                let rn: Rn = text
                    .parse()
                    .map_err(|_| E::custom("the value is not a valid rn"))?;
                DepotFolder::at(rn).map_err(|_| E::custom("the rn is not a depot prefix rn"))
            }
        }
        deserializer.deserialize_str(FolderVisitor)
    }
}
