//! The depot conformance suite (`suite.rs`: plain async functions taking a pool with a depot
//! named `files`), instantiated for the local folder depot and for the S3 depot on a real S3
//! server (`s3s-fs`, started by `scripts/test`); faults
//! (`faults.rs`); and compatibility with korm 1.5's depot files (`compat.rs`).
//!
//! S3 settings come from `KORM_TEST_S3_ENDPOINT`, `KORM_TEST_S3_ACCESS_KEY` and
//! `KORM_TEST_S3_SECRET`. Without them a test fails under `scripts/test` (`KORM_TEST_RUN=1`)
//! and prints a loud skip line under a plain `cargo test`. Every S3 test uses a bucket of its
//! own, so tests run in parallel.

mod compat;
mod faults;
mod suite;
#[path = "../support/mod.rs"]
mod support;

use korm::Pool;

/// A pool with one SQLite layer `db` and one depot `files`, and what keeps it alive.
pub struct Backend {
    pub pool: Pool,
    /// The local depot's root (`None` on S3).
    pub root: Option<std::path::PathBuf>,
    /// The SQLite layer's file.
    pub db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// The S3 test server's settings: endpoint, access key, secret.
pub fn s3_env() -> Option<(String, String, String)> {
    support::S3Server::from_env().map(|s| (s.endpoint, s.key, s.secret))
}

/// A fresh bucket name.
pub fn bucket() -> String {
    support::S3Server::bucket_name()
}

/// S3 options for a fresh bucket on the test server (created when the pool opens).
pub fn s3_options() -> Option<korm::depots::S3Options> {
    support::S3Server::from_env().map(|s| s.options(&bucket()))
}

pub async fn local() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("files");
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite(dir.path().join("db.sqlite")))
        .depot("files", korm::depots::local(&root))
        .open()
        .await
        .expect("open local depot");
    Some(Backend {
        pool,
        root: Some(root.canonicalize().expect("root")),
        db: dir.path().join("db.sqlite"),
        _dir: dir,
    })
}

pub async fn s3() -> Option<Backend> {
    s3_with(|o| o).await
}

/// An S3 depot whose options `adjust` changes (a prefix, ...).
pub async fn s3_with(
    adjust: impl FnOnce(korm::depots::S3Options) -> korm::depots::S3Options,
) -> Option<Backend> {
    let options = adjust(s3_options()?);
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite(dir.path().join("db.sqlite")))
        .depot("files", options)
        .open()
        .await
        .expect("open s3 depot");
    Some(Backend {
        pool,
        root: None,
        db: dir.path().join("db.sqlite"),
        _dir: dir,
    })
}

macro_rules! backend {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(backend) = super::$backend().await else { return };
                    super::suite::$test(&backend).await;
                    backend.pool.close().await;
                }
            )*
        }
    };
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        backend!(local: $($test),*);
        backend!(s3: $($test),*);
    };
}

conformance!(
    put_and_get,
    list_by_prefix,
    list_one_level,
    overwrite,
    delete,
    missing_file,
    traversal,
    large_file_streams,
    file_lifecycle,
    file_in_item_is_uploaded_and_resolves,
    files_in_an_array_field,
    commit_uploads_a_new_file,
    failed_layer_write_deletes_the_upload,
    failed_layer_write_restores_the_replaced_file,
    reader_content,
    closed_pool_refuses_files,
    files_in_a_transaction,
    unknown_depot_in_item_stores_nothing,
    tampered_file_rn_is_a_decode_error,
    korm_own_files_are_out_of_reach_of_file_rns,
    spellings_of_one_file_rn_share_its_lock,
);
