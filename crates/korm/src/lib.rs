//! korm: a unified data runtime.
//!
//! korm treats SQL databases and the references between their items as one data model: typed
//! items addressed by Resource Names ([`Rn`]), stored in layers (SQLite, PostgreSQL,
//! MySQL/MariaDB), with one write path and one read path. It reads and writes the storage
//! format of korm 1.5 (TypeScript), so a Rust and a Bun service can share one database.
//!
//! ```
//! use korm::{and, eq, gt};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct User { username: String, age: i64 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> korm::Result<()> {
//! let pool = korm::pool().layer("userdb", korm::layers::sqlite_memory()).open().await?;
//! let users = korm::item::<User>(&pool);
//! let fred = users
//!     .from_data("[rn]:users:freetier:*".parse()?, User { username: "freddie".into(), age: 41 })?
//!     .create()
//!     .await?;
//! let found = users
//!     .query("[rn]:users:freetier:*".parse()?)
//!     .filter(and([eq("username", "freddie"), gt("age", 40)]))
//!     .get()
//!     .await?;
//! assert_eq!(found[0].rn(), fred.rn());
//! pool.close().await;
//! # Ok(()) }
//! ```
//!
//! Files live in depots (a local folder, an S3-compatible bucket) named beside the layers; a
//! [`DepotFile`] inside item data is uploaded with the item, through the same write, and
//! stored as its depot RN (see [`depots`]).
//!
//! Item states are distinct types, so an illegal transition does not compile: a persisted
//! [`Item`] has no `commit`, only an [`UncommittedItem`] does.
//!
//! ```compile_fail
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize)] struct User { username: String }
//! # async fn f(item: korm::Item<User>) {
//! item.commit().await; // an unchanged item has nothing to commit
//! # }
//! ```
#![forbid(unsafe_code)]
// A build with some backends only leaves helpers they share with the others unused; the build
// with every feature (what the tests and lints use) still reports real dead code.
#![cfg_attr(
    not(all(feature = "sqlite", feature = "postgres", feature = "mysql")),
    allow(dead_code)
)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod backup;
pub mod crypto;
mod danger;
mod depot;
pub mod error;
mod inspect;
mod item;
mod layer;
mod lock;
mod meta;
pub mod model;
mod pool;
pub mod query;
mod resolve;
pub mod rn;
pub mod wal;
mod write;

pub use danger::{Danger, danger};
pub use depot::DepotFile;
pub use error::{ConflictedItem, DbErrorKind, DriverError, Error, Result};
pub use inspect::{CollectionInfo, ColumnInfo, inspect};
pub use item::{Collected, Collection, collection, collection_at};
pub use item::{
    Cursor, DeletedItem, EmptyItem, Failed, FloatingItem, Item, ItemHandle, Load, Model, Page,
    Query, ReadItem, STREAM_CHUNK, ShowOptions, UncommittedItem, WriteOptions, item,
};
pub use item::{Tx, TxHandle, TxOutcome, tx};
pub use layer::LayerSpec;
pub use lock::{LockGuard, LockOptions, Locker};
pub use meta::{ResetMode, ResetReport, discover, reset};
pub use model::{ColumnKind, Encrypted, Password, Ref, Unique};
pub use pool::{Pool, PoolBuilder, pool};
pub use query::{
    Filter, IndexKind, SortOrder, and, declare_index, eq, gt, gte, in_list, like, lt, lte, not, or,
};
pub use rn::{Rn, RnForm};
pub use wal::{WalDepotOps, WalOptions, WalRetention};

/// Depot constructors and file types: where files are stored.
pub mod depots {
    pub use crate::depot::{
        Depot, DepotFile, DepotFolder, DepotKey, DepotLevel, DepotSpec, FileContent, FileStream,
        FloatingFile, LocalDepot, LocalOptions, UncommittedFile, file, local,
    };
    #[cfg(feature = "s3")]
    pub use crate::depot::{S3Depot, S3Options, s3};
}

/// Layer constructors: where items are stored.
pub mod layers {
    #[cfg(feature = "mysql")]
    pub use crate::layer::mysql::{MySqlOptions, mysql, mysql_pool};
    #[cfg(feature = "postgres")]
    pub use crate::layer::postgres::{PgOptions, postgres, postgres_pool};
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub use crate::layer::server::ServerOptions;
    #[cfg(feature = "sqlite")]
    pub use crate::layer::sqlite::{SqliteOptions, Synchronous, sqlite, sqlite_memory};
    pub use crate::layer::{LayerSpec, from_url};
}
