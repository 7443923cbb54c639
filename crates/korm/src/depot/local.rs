//! The local folder depot.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;

use super::store::Store;
use super::{Depot, DepotKey, FileContent, FileStream};
use crate::error::{Error, Result, Scrubber};

/// Options of a [`LocalDepot`], made by [`local`].
#[derive(Debug, Clone)]
#[must_use]
pub struct LocalOptions {
    root: PathBuf,
    create: bool,
    fsync: bool,
}

/// A depot in the folder `root` (created, with its parents, when the pool opens).
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
/// let rn = "[rn][depot::files]:notes:hello.txt".parse()?;
/// let file = korm::depots::file(rn, "hello")?.create(&pool).await?;
/// assert_eq!(file.text(&pool).await?, "hello");
/// pool.close().await;
/// # Ok(()) }
/// ```
pub fn local(root: impl Into<PathBuf>) -> LocalOptions {
    LocalOptions {
        root: root.into(),
        create: true,
        fsync: true,
    }
}

impl LocalOptions {
    /// Whether to create the root folder when it is missing (the default); without it a
    /// missing root fails the pool's `open`.
    pub fn with_create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Whether a write reaches the disk before it returns: the file and its folder are
    /// synced (`fsync`) on every put and copy (the default, as korm's SQLite layer commits
    /// with `synchronous = FULL`). Without it a power loss (not a crash of the process) may
    /// lose a file that a stored row points at, or a WAL payload its record needs.
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// The root folder.
    pub fn root(&self) -> &FsPath {
        &self.root
    }
}

/// A depot in a local folder: key `a/b.txt` is the file `<root>/a/b.txt`.
///
/// Keys are validated ([`DepotKey`]), so no key names a path outside the root. Symbolic
/// links: the depot never creates one, and refuses (with [`Error::Depot`]) any file whose
/// path below the root passes through one, so a link planted inside the root can not lead a
/// read or write outside it; listings leave such files out. (A link swapped in between the
/// check and the file operation is not caught: whoever can write into the root can do that.)
#[derive(Debug)]
pub struct LocalDepot {
    store: Store,
    root: PathBuf,
}

impl LocalDepot {
    /// Opens the depot in `options.root` under the name `ident`.
    ///
    /// # Errors
    /// [`Error::Depot`] when the root can not be created or is not a folder.
    pub async fn open(ident: &str, options: LocalOptions) -> Result<Self> {
        let fail = |reason: String| Error::Depot {
            depot: ident.to_owned(),
            key: String::new(),
            reason,
        };
        if options.create {
            std::fs::create_dir_all(&options.root)
                .map_err(|e| fail(format!("can not create the root folder: {e}")))?;
        }
        let root = std::fs::canonicalize(&options.root)
            .map_err(|e| fail(format!("can not open the root folder: {e}")))?;
        if !root.is_dir() {
            return Err(fail("the root is not a folder".to_owned()));
        }
        let fs = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| fail(e.to_string()))?
            .with_automatic_cleanup(true)
            .with_fsync(options.fsync);
        Ok(LocalDepot {
            store: Store::new(ident, Arc::new(fs), Scrubber::default()),
            root,
        })
    }

    /// The root folder (canonical).
    pub fn root(&self) -> &FsPath {
        &self.root
    }

    /// Refuses a key whose path below the root passes through a symbolic link.
    fn check_no_links(&self, key: &DepotKey) -> Result<()> {
        let mut path = self.root.clone();
        for segment in key.segments() {
            path.push(segment);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(self.store.failure(
                        key.as_str(),
                        format!(
                            "{segment:?} is a symbolic link; the depot follows none, so no \
                             path leaves its root"
                        ),
                    ));
                }
                Ok(_) => {}
                // Missing: nothing below it exists either.
                Err(_) => break,
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Depot for LocalDepot {
    fn ident(&self) -> &str {
        &self.store.ident
    }

    async fn put(&self, key: &DepotKey, content: FileContent) -> Result<u64> {
        self.check_no_links(key)?;
        self.store.put(key, content).await
    }

    async fn get(&self, key: &DepotKey) -> Result<FileStream> {
        self.check_no_links(key)?;
        self.store.get(key).await
    }

    async fn size(&self, key: &DepotKey) -> Result<Option<u64>> {
        self.check_no_links(key)?;
        self.store.size(key).await
    }

    async fn delete(&self, key: &DepotKey) -> Result<()> {
        self.check_no_links(key)?;
        self.store.delete_path(&Store::path(key)?).await
    }

    async fn copy(&self, from: &DepotKey, to: &DepotKey) -> Result<()> {
        self.check_no_links(from)?;
        self.check_no_links(to)?;
        self.store
            .copy_path(&Store::path(from)?, &Store::path(to)?)
            .await
    }

    async fn list(&self, prefix: &DepotKey) -> Result<Vec<DepotKey>> {
        self.check_no_links(prefix)?;
        let mut keys = self.store.list(prefix).await?;
        keys.retain(|key| self.check_no_links(key).is_ok());
        Ok(keys)
    }

    async fn list_level(&self, prefix: &DepotKey) -> Result<super::DepotLevel> {
        self.check_no_links(prefix)?;
        let mut level = self.store.list_level(prefix).await?;
        level.files.retain(|key| self.check_no_links(key).is_ok());
        level.folders.retain(|folder| {
            prefix
                .child(folder)
                .is_ok_and(|key| self.check_no_links(&key).is_ok())
        });
        Ok(level)
    }

    async fn list_all(&self, prefix: &DepotKey) -> Result<Vec<DepotKey>> {
        self.check_no_links(prefix)?;
        let mut keys = self.store.list_keys(prefix, true).await?;
        keys.retain(|key| self.check_no_links(key).is_ok());
        Ok(keys)
    }

    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Puts and copies are synced by default, and not with `with_fsync(false)`: the setting
    /// reaches the store (its `Debug` shows it).
    #[tokio::test]
    async fn writes_are_synced_unless_told_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let synced = LocalDepot::open("files", local(dir.path())).await.unwrap();
        assert!(format!("{synced:?}").contains("fsync: true"), "{synced:?}");
        let unsynced = LocalDepot::open("files", local(dir.path()).with_fsync(false))
            .await
            .unwrap();
        assert!(
            format!("{unsynced:?}").contains("fsync: false"),
            "{unsynced:?}"
        );
    }
}
