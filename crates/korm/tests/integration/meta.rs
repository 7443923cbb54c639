//! Pool metadata (M1-M5) on every backend: the snapshot written and read back, a changed
//! configuration refused with a useful error, discovery round trips (every layer and depot
//! type), each reset mode, korm 1.5's fixture snapshots read and decrypted, and tampered
//! snapshots or a wrong key refused with a typed error that holds no secret.
//!
//! Every test installs the same key ring (the fixtures' key `a1`*32, as `crypto.rs` does),
//! so tests sharing a process agree. A wrong key is tested with snapshots sealed by a key
//! ring of their own, never by swapping the process's.

use std::path::{Path, PathBuf};

use korm::{Error, LockOptions, Pool, ResetMode, Rn, WalOptions, WalRetention};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use sqlx::Connection as _;

use super::fixtures;
use crate::support::{self, Server, TestDatabase};

fn install_test_keys() {
    let current = korm::crypto::EncryptionKey::from_hex(&"a1".repeat(32)).expect("fixture key");
    let old = korm::crypto::EncryptionKey::from_hex(&"b2".repeat(32)).expect("old key");
    korm::crypto::install(korm::crypto::KeyRing::new(current).with_old_key(old));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    text: String,
    n: i64,
}

fn rn<T>(s: &str) -> Rn<T> {
    s.parse().expect("rn")
}

/// Where a test's layer lives: a SQLite file in a temp folder, or a fresh server database.
enum Db {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Server(TestDatabase),
}

impl Db {
    async fn new(kind: Kind) -> Option<Db> {
        Some(match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("meta.sqlite");
                Db::Sqlite { _dir: dir, path }
            }
            Kind::Postgres => Db::Server(support::create(Server::Postgres).await?),
            Kind::MySql => Db::Server(support::create(Server::MySql).await?),
        })
    }

    fn spec(&self) -> korm::LayerSpec {
        match self {
            Db::Sqlite { path, .. } => korm::layers::sqlite(path).into(),
            Db::Server(db) if db.url.starts_with("postgres") => {
                korm::layers::postgres(&db.url).into()
            }
            Db::Server(db) => korm::layers::mysql(&db.url).into(),
        }
    }

    /// The same database under another URL spelling (`localhost` for `127.0.0.1`), and, on
    /// PostgreSQL (trust authentication ignores it), a password.
    fn other_url_spec(&self) -> korm::LayerSpec {
        match self {
            Db::Sqlite { path, .. } => {
                let dotted = path.parent().expect("dir").join(".").join("meta.sqlite");
                korm::layers::sqlite(dotted).into()
            }
            Db::Server(db) if db.url.starts_with("postgres") => {
                let url = db.url.replacen("postgres@", "postgres:pw-s3cret-pw@", 1);
                korm::layers::postgres(url).into()
            }
            Db::Server(db) => {
                korm::layers::mysql(db.url.replacen("127.0.0.1", "localhost", 1)).into()
            }
        }
    }

    /// The snapshot row's `config` as the database holds it (PostgreSQL: its jsonb type
    /// too), `None` when there is none.
    async fn pool_row(&self) -> Option<(String, String)> {
        match self {
            Db::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open sqlite");
                let exists: bool = conn
                    .query_row(
                        "SELECT count(*) FROM sqlite_master WHERE name = '__korm_pool__'",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                    .expect("master")
                    > 0;
                if !exists {
                    return None;
                }
                conn.query_row(
                    "SELECT config, typeof(config) FROM __korm_pool__ WHERE id = 'pool'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ok()
            }
            Db::Server(db) if db.url.starts_with("postgres") => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("pg");
                let row: Option<(String, String)> = sqlx::query_as(
                    "SELECT config::text, jsonb_typeof(config) FROM __korm_pool__ WHERE id = 'pool'",
                )
                .fetch_optional(&mut conn)
                .await
                .unwrap_or(None);
                row
            }
            Db::Server(db) => {
                let mut conn = sqlx::MySqlConnection::connect(&db.url)
                    .await
                    .expect("mysql");
                let row: Option<(String,)> = sqlx::query_as(
                    "SELECT CAST(config AS CHAR) FROM __korm_pool__ WHERE id = 'pool'",
                )
                .fetch_optional(&mut conn)
                .await
                .unwrap_or(None);
                row.map(|(c,)| (c, "json".to_owned()))
            }
        }
    }

    /// The snapshot as JSON (a PostgreSQL jsonb string unwrapped, as korm 1.5 reads it).
    async fn snapshot(&self) -> Value {
        let (text, _) = self.pool_row().await.expect("a snapshot row");
        let value: Value = serde_json::from_str(&text).expect("json");
        match value {
            Value::String(inner) => serde_json::from_str(&inner).expect("inner json"),
            v => v,
        }
    }

    /// Replaces the snapshot's config text (a tampering test).
    async fn set_config(&self, text: &str) {
        match self {
            Db::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open sqlite");
                conn.execute(
                    "UPDATE __korm_pool__ SET config = ?1 WHERE id = 'pool'",
                    [text],
                )
                .expect("update");
            }
            Db::Server(db) if db.url.starts_with("postgres") => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("pg");
                sqlx::query(
                    "UPDATE __korm_pool__ SET config = to_jsonb($1::text) WHERE id = 'pool'",
                )
                .bind(text)
                .execute(&mut conn)
                .await
                .expect("update");
            }
            Db::Server(db) => {
                let mut conn = sqlx::MySqlConnection::connect(&db.url)
                    .await
                    .expect("mysql");
                sqlx::query("UPDATE __korm_pool__ SET config = ? WHERE id = 'pool'")
                    .bind(text)
                    .execute(&mut conn)
                    .await
                    .expect("update");
            }
        }
    }

    /// The tables of the database, sorted.
    async fn tables(&self) -> Vec<String> {
        let mut names: Vec<String> = match self {
            Db::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open sqlite");
                let mut stmt = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .expect("prepare");
                stmt.query_map([], |r| r.get(0))
                    .expect("query")
                    .collect::<Result<_, _>>()
                    .expect("rows")
            }
            Db::Server(db) if db.url.starts_with("postgres") => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("pg");
                sqlx::query_scalar(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
                )
                .fetch_all(&mut conn)
                .await
                .expect("tables")
            }
            Db::Server(db) => {
                let mut conn = sqlx::MySqlConnection::connect(&db.url)
                    .await
                    .expect("mysql");
                let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
                    "SELECT CAST(TABLE_NAME AS BINARY) FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = DATABASE()",
                )
                .fetch_all(&mut conn)
                .await
                .expect("tables");
                rows.into_iter()
                    .map(|(n,)| String::from_utf8(n).expect("utf8"))
                    .collect()
            }
        };
        names.sort();
        names
    }

    /// Creates a table of another program, which a reset must leave alone.
    async fn create_foreign_table(&self) {
        let sql = "CREATE TABLE xxitemsxxnotkorm (id INTEGER PRIMARY KEY)";
        match self {
            Db::Sqlite { path, .. } => {
                rusqlite::Connection::open(path)
                    .expect("open")
                    .execute_batch(sql)
                    .expect("create");
            }
            Db::Server(db) if db.url.starts_with("postgres") => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("pg");
                sqlx::raw_sql(sql).execute(&mut conn).await.expect("create");
            }
            Db::Server(db) => {
                let mut conn = sqlx::MySqlConnection::connect(&db.url)
                    .await
                    .expect("mysql");
                sqlx::raw_sql(sql).execute(&mut conn).await.expect("create");
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Sqlite,
    Postgres,
    MySql,
}

/// A pool on `db` (layer `main`, meta there) with a second SQLite layer `side`, a local
/// depot `files` and a WAL and shared locks.
fn builder(db: &Db, dir: &Path) -> korm::PoolBuilder {
    korm::pool()
        .layer("main", db.spec())
        .layer("side", korm::layers::sqlite(dir.join("side.sqlite")))
        .depot("files", korm::depots::local(dir.join("files")))
        .with_wal(
            "files",
            WalOptions::new("orders").with_retention(WalRetention::Keep),
        )
        .with_locks("main", LockOptions::new())
        .with_meta("main")
}

/// Writes a note on each layer and the file `invoices/fred/{file}`.
async fn put_data(pool: &Pool, file: &str) {
    for layer in ["main", "side"] {
        korm::item::<Note>(pool)
            .from_data(
                rn(&format!("[rn][from::{layer}]:notes:plain:*")),
                Note {
                    text: format!("on {layer}"),
                    n: 1,
                },
            )
            .expect("floating")
            .create()
            .await
            .expect("create");
    }
    korm::depots::file(
        rn(&format!("[rn][depot::files]:invoices:fred:{file}")),
        "invoice 001",
    )
    .expect("file")
    .create(pool)
    .await
    .expect("upload");
}

async fn notes(pool: &Pool, layer: &str) -> Vec<Note> {
    korm::item::<Note>(pool)
        .query(rn(&format!("[rn][from::{layer}]:notes:plain:*")))
        .get()
        .await
        .expect("query")
        .into_iter()
        .map(|item| item.data().clone())
        .collect()
}

fn mismatch(result: korm::Result<Pool>) -> (String, Vec<String>) {
    match result {
        Err(Error::MetaMismatch { layer, differences }) => (layer, differences),
        Err(other) => panic!("expected MetaMismatch, got {other}"),
        Ok(_) => panic!("expected MetaMismatch, the pool opened"),
    }
}

// ---------------------------------------------------------------------------------------------
// Written, read back, checked

async fn snapshot_written_and_checked(kind: Kind) {
    install_test_keys();
    let Some(db) = Db::new(kind).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let pool = builder(&db, dir.path()).open().await.expect("first open");
    assert_eq!(pool.meta_layer(), Some("main"));
    pool.close().await;

    let (raw, stored_type) = db.pool_row().await.expect("snapshot row");
    if matches!(kind, Kind::Postgres) {
        // korm 1.5's driver stores the JSON text as a jsonb string (postgres.sql).
        assert_eq!(stored_type, "string");
    }
    let snapshot = db.snapshot().await;
    assert_eq!(snapshot["version"], 1);
    let pool_id = {
        let seed = r#"{"layers":["main","side"],"depots":["files"]}"#;
        hex::encode(sha2::Sha256::digest(seed.as_bytes()))[..16].to_owned()
    };
    assert_eq!(snapshot["poolId"], pool_id.as_str());
    assert_eq!(snapshot["metaLayerIdent"], "main");
    let main = &snapshot["layers"][0];
    assert_eq!(main["ident"], "main");
    assert_eq!(
        main["type"],
        match kind {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "pg",
            Kind::MySql => "mysql",
        }
    );
    match kind {
        Kind::Sqlite => {
            assert_eq!(main["config"]["mode"], "path");
            let path = main["config"]["path"].as_str().expect("path");
            // korm 1.5's fingerprint: SHA-256 of the path as a JSON string.
            let expected = hex::encode(sha2::Sha256::digest(json!(path).to_string()));
            assert_eq!(main["fingerprint"], expected.as_str());
        }
        Kind::Postgres | Kind::MySql => {
            assert_eq!(main["config"]["mode"], "url");
            let envelope = &main["config"]["encrypted"];
            assert_eq!(envelope["__ENCRYPTED__"], true);
            assert_eq!(envelope["type"], "symmetric");
            let Db::Server(server) = &db else {
                unreachable!()
            };
            assert!(!raw.contains(&server.name), "the url is sealed: {raw}");
            let url: String = korm::crypto::key_ring()
                .expect("ring")
                .decrypt(envelope)
                .expect("decrypts with the pool's key");
            assert_eq!(url, server.url);
            let expected = hex::encode(sha2::Sha256::digest(json!(url).to_string()));
            assert_eq!(main["fingerprint"], expected.as_str());
        }
    }
    assert_eq!(snapshot["layers"][1]["ident"], "side");
    assert_eq!(snapshot["depots"][0]["config"]["mode"], "local");
    assert_eq!(
        snapshot["wal"],
        json!({"depotIdent": "files", "walNamespace": "orders", "retention": "keep", "depotOps": "record"})
    );
    assert_eq!(
        snapshot["locks"],
        json!({"layerIdent": "main", "ttlMs": 60000, "retryMs": 50, "refreshMs": 30000})
    );
    assert!(snapshot.get("backups").is_none());

    // The same configuration opens again, and the snapshot stays as it was.
    let pool = builder(&db, dir.path()).open().await.expect("second open");
    put_data(&pool, "invoice-001.txt").await;
    pool.close().await;
    assert_eq!(db.pool_row().await.expect("row").0, raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_snapshot_written_and_checked_sqlite() {
    snapshot_written_and_checked(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_snapshot_written_and_checked_postgres() {
    snapshot_written_and_checked(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_snapshot_written_and_checked_mysql() {
    snapshot_written_and_checked(Kind::MySql).await;
}

async fn changed_config_refused(kind: Kind) {
    install_test_keys();
    let Some(db) = Db::new(kind).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    builder(&db, dir.path())
        .open()
        .await
        .expect("open")
        .close()
        .await;

    // Another depot root, WAL namespace and lock TTL: all named at once.
    let changed = korm::pool()
        .layer("main", db.spec())
        .layer("side", korm::layers::sqlite(dir.path().join("side.sqlite")))
        .depot("files", korm::depots::local(dir.path().join("elsewhere")))
        .with_wal(
            "files",
            WalOptions::new("other").with_retention(WalRetention::Keep),
        )
        .with_locks(
            "main",
            LockOptions::new().with_ttl(std::time::Duration::from_secs(45)),
        )
        .with_meta("main")
        .open()
        .await;
    let (layer, differences) = mismatch(changed);
    assert_eq!(layer, "main");
    let text = differences.join("\n");
    assert!(text.contains(r#"depot "files": root"#), "{text}");
    assert!(text.contains("elsewhere"), "{text}");
    assert!(
        text.contains(r#"wal namespace: "other" here, "orders" in the stored pool"#),
        "{text}"
    );
    assert!(
        text.contains("shared locks ttl: 45000 ms here, 60000 ms in the stored pool"),
        "{text}"
    );
    assert_eq!(differences.len(), 3, "{text}");

    // A layer more, a layer less: the pool id and the layer are named.
    let more = builder(&db, dir.path())
        .layer("extra", korm::layers::sqlite_memory())
        .open()
        .await;
    let (_, differences) = mismatch(more);
    let text = differences.join("\n");
    assert!(text.contains("pool id:"), "{text}");
    assert!(
        text.contains(r#"layer "extra": in this pool, not in the stored one"#),
        "{text}"
    );

    // The main layer under another url (or path): named, without the password.
    let other = korm::pool()
        .layer("main", db.other_url_spec())
        .layer("side", korm::layers::sqlite(dir.path().join("side.sqlite")))
        .depot("files", korm::depots::local(dir.path().join("files")))
        .with_wal(
            "files",
            WalOptions::new("orders").with_retention(WalRetention::Keep),
        )
        .with_locks("main", LockOptions::new())
        .with_meta("main")
        .open()
        .await;
    let err = other.expect_err("another url");
    let message = err.to_string();
    assert!(!message.contains("pw-s3cret-pw"), "{message}");
    assert!(message.contains("korm::discover"), "{message}");
    assert!(message.contains("korm::reset"), "{message}");
    let Error::MetaMismatch { differences, .. } = err else {
        panic!("expected MetaMismatch: {message}")
    };
    let text = differences.join("\n");
    match kind {
        Kind::Sqlite => assert!(text.contains(r#"layer "main": path"#), "{text}"),
        Kind::Postgres => {
            assert!(
                text.contains(r#"layer "main": the url differs (password)"#),
                "{text}"
            );
        }
        Kind::MySql => assert!(
            text.contains(r#"layer "main": the url differs (host)"#),
            "{text}"
        ),
    }

    // Metadata kept on another layer of the same pool: the meta layer is named.
    let moved = builder(&db, dir.path()).with_meta("side").open().await;
    let (_, differences) = mismatch(moved);
    assert!(
        differences
            .iter()
            .any(|d| d == r#"meta layer: "side" here, "main" in the stored pool"#),
        "{differences:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_changed_config_refused_sqlite() {
    changed_config_refused(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_changed_config_refused_postgres() {
    changed_config_refused(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_changed_config_refused_mysql() {
    changed_config_refused(Kind::MySql).await;
}

// ---------------------------------------------------------------------------------------------
// Discovery

async fn discover_round_trip(kind: Kind) {
    install_test_keys();
    let Some(db) = Db::new(kind).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let pool = builder(&db, dir.path()).open().await.expect("open");
    put_data(&pool, "invoice-001.txt").await;
    pool.close().await;
    drop(pool);

    let pool = korm::discover(db.spec())
        .await
        .expect("discover")
        .open()
        .await
        .expect("open the discovered pool");
    assert_eq!(pool.layer_names().collect::<Vec<_>>(), ["main", "side"]);
    assert_eq!(pool.depot_names().collect::<Vec<_>>(), ["files"]);
    assert_eq!(pool.meta_layer(), Some("main"));
    for layer in ["main", "side"] {
        assert_eq!(
            notes(&pool, layer).await,
            [Note {
                text: format!("on {layer}"),
                n: 1
            }]
        );
    }
    let invoice = pool
        .files(&rn("[rn][depot::files]:invoices:*"))
        .await
        .expect("list");
    assert_eq!(invoice.len(), 1);
    assert_eq!(invoice[0].text(&pool).await.expect("read"), "invoice 001");
    // The discovered pool writes too, and the shared locks it rebuilt work.
    korm::item::<Note>(&pool)
        .from_data(
            rn("[rn][from::main]:notes:plain:*"),
            Note {
                text: "after".into(),
                n: 2,
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create in the discovered pool");
    let guard = pool
        .locker()
        .acquire(&rn::<Note>("[rn][from::main]:notes:plain:*"))
        .await
        .expect("a shared lock in the discovered pool");
    guard.release().await.expect("release");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_discover_round_trip_sqlite() {
    discover_round_trip(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_discover_round_trip_postgres() {
    discover_round_trip(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_discover_round_trip_mysql() {
    discover_round_trip(Kind::MySql).await;
}

/// One pool of every layer and depot type, its metadata on PostgreSQL: discovery rebuilds
/// all of them (the S3 depot's credentials sealed in the snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_discover_rebuilds_every_backend() {
    install_test_keys();
    let Some(pg) = Db::new(Kind::Postgres).await else {
        return;
    };
    let Some(my) = Db::new(Kind::MySql).await else {
        return;
    };
    let Some(s3) = s3_options() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let open = || {
        korm::pool()
            .layer("userdb", pg.spec())
            .layer("docsdb", my.spec())
            .layer(
                "cardb",
                korm::layers::sqlite(dir.path().join("cars.sqlite")),
            )
            .depot("files", korm::depots::local(dir.path().join("files")))
            .depot("bucket", s3.clone())
            .with_meta("userdb")
    };
    let pool = open().open().await.expect("open");
    for layer in ["userdb", "docsdb", "cardb"] {
        korm::item::<Note>(&pool)
            .from_data(
                rn(&format!("[rn][from::{layer}]:notes:plain:*")),
                Note {
                    text: layer.into(),
                    n: 7,
                },
            )
            .expect("floating")
            .create()
            .await
            .expect("create");
    }
    for depot in ["files", "bucket"] {
        korm::depots::file(rn(&format!("[rn][depot::{depot}]:a:b.txt")), depot)
            .expect("file")
            .create(&pool)
            .await
            .expect("upload");
    }
    pool.close().await;

    let (raw, _) = pg.pool_row().await.expect("row");
    let secret = crate::support::S3Server::from_env().expect("s3 env").secret;
    assert!(!raw.contains(&secret), "the S3 secret is sealed");
    let snapshot = pg.snapshot().await;
    let bucket = snapshot["depots"]
        .as_array()
        .expect("depots")
        .iter()
        .find(|d| d["ident"] == "bucket")
        .expect("bucket depot");
    assert_eq!(bucket["type"], "s3");
    assert_eq!(bucket["config"]["mode"], "s3");

    let pool = korm::discover(pg.spec())
        .await
        .expect("discover")
        .open()
        .await
        .expect("open discovered");
    for layer in ["userdb", "docsdb", "cardb"] {
        assert_eq!(
            notes(&pool, layer).await,
            [Note {
                text: layer.into(),
                n: 7
            }]
        );
    }
    for depot in ["files", "bucket"] {
        let file = korm::depots::DepotFile::at(rn(&format!("[rn][depot::{depot}]:a:b.txt")))
            .expect("file rn");
        assert_eq!(file.text(&pool).await.expect("read"), depot);
    }
    // Reset of the depots, S3 included, empties them.
    let report = korm::danger(korm::reset(&pool, ResetMode::Depots))
        .await
        .expect("reset depots");
    assert_eq!(report.files.get("bucket"), Some(&1));
    assert_eq!(report.files.get("files"), Some(&1));
    assert!(
        pool.files(&rn("[rn][depot::bucket]:*"))
            .await
            .expect("list")
            .is_empty()
    );
    pool.close().await;
}

/// S3 options for a fresh bucket on the test server (created when the pool opens).
pub(crate) fn s3_options() -> Option<korm::depots::S3Options> {
    crate::support::S3Server::from_env()
        .map(|s| s.options(&crate::support::S3Server::bucket_name()))
}

// ---------------------------------------------------------------------------------------------
// Reset

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry"))
                .map(|e| {
                    if e.file_type().expect("type").is_dir() {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn reset_modes(kind: Kind) {
    install_test_keys();
    for mode in [
        ResetMode::All,
        ResetMode::Layers,
        ResetMode::Depots,
        ResetMode::Meta,
        ResetMode::MetaOnly,
    ] {
        let Some(db) = Db::new(kind).await else {
            return;
        };
        let dir = tempfile::tempdir().expect("dir");
        let pool = builder(&db, dir.path()).open().await.expect("open");
        put_data(&pool, "invoice-001.txt").await;
        // A shared lock taken and released leaves __korm_locks__ and __korm_fence__.
        drop(
            pool.locker()
                .acquire(&rn::<Note>("[rn][from::main]:notes:plain:*"))
                .await
                .expect("lock"),
        );
        db.create_foreign_table().await;
        let before = db.tables().await;
        assert!(
            before.contains(&"__items__notes__plain".to_owned()),
            "{before:?}"
        );
        assert!(before.contains(&"__korm_pool__".to_owned()), "{before:?}");

        // The invoice, and the WAL's records and payloads (the WAL is in the same depot).
        let on_disk = count_files(&dir.path().join("files"));
        assert!(on_disk > 1, "{on_disk}");
        let wipe = korm::reset(&pool, mode);
        assert!(wipe.what().starts_with("reset pool"), "{}", wipe.what());
        let report = korm::danger(wipe).await.expect("reset");
        let after = db.tables().await;
        let has = |t: &str| after.iter().any(|n| n == t);
        assert!(
            has("xxitemsxxnotkorm"),
            "{mode:?}: a foreign table stays: {after:?}"
        );
        let files = pool
            .files(&rn("[rn][depot::files]:*"))
            .await
            .expect("list files");
        match mode {
            ResetMode::All | ResetMode::Layers => {
                assert_eq!(after, ["xxitemsxxnotkorm"], "{mode:?}");
                let dropped = &report.tables["main"];
                for t in ["__items__notes__plain", "__korm_pool__"] {
                    assert!(dropped.contains(&t.to_owned()), "{mode:?}: {dropped:?}");
                }
                // The side layer got a fencing table from the locked writes.
                assert!(
                    report.tables["side"].contains(&"__items__notes__plain".to_owned()),
                    "{:?}",
                    report.tables
                );
                assert!(notes(&pool, "main").await.is_empty());
                assert!(notes(&pool, "side").await.is_empty());
                assert_eq!(files.is_empty(), matches!(mode, ResetMode::All), "{mode:?}");
            }
            ResetMode::Depots => {
                assert_eq!(after, before, "{mode:?}");
                assert!(report.tables.is_empty());
                assert!(files.is_empty());
                assert_eq!(report.files["files"], on_disk);
                assert_eq!(notes(&pool, "main").await.len(), 1);
            }
            ResetMode::Meta | ResetMode::MetaOnly => {
                assert!(!has("__korm_pool__"), "{mode:?}: {after:?}");
                assert!(has("__items__notes__plain"), "{mode:?}: {after:?}");
                assert_eq!(report.tables["main"], ["__korm_pool__"], "{mode:?}");
                assert_eq!(files.len(), 1, "{mode:?}");
                assert_eq!(notes(&pool, "main").await.len(), 1);
            }
            _ => unreachable!(),
        }
        // The pool stays usable: tables come back on the next write (caches forgot them),
        // and the next open writes a new snapshot where one was dropped.
        put_data(&pool, "invoice-002.txt").await;
        assert!(!notes(&pool, "main").await.is_empty());
        drop(
            pool.locker()
                .acquire(&rn::<Note>("[rn][from::main]:notes:plain:*"))
                .await
                .expect("lock again after the reset"),
        );
        pool.close().await;
        let reopened = builder(&db, dir.path()).open().await.expect("reopen");
        reopened.close().await;
        assert!(db.pool_row().await.is_some(), "{mode:?}: a snapshot again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_reset_modes_sqlite() {
    reset_modes(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_reset_modes_postgres() {
    reset_modes(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_reset_modes_mysql() {
    reset_modes(Kind::MySql).await;
}

/// `Meta` drops the backup schedules with the snapshot; `MetaOnly` leaves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_reset_meta_drops_backup_schedules_meta_only_keeps_them() {
    install_test_keys();
    for (mode, kept) in [(ResetMode::Meta, false), (ResetMode::MetaOnly, true)] {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("cardb.sqlite");
        std::fs::copy(fixtures().join("cardb.sqlite"), &path).expect("copy fixture");
        let pool = korm::pool()
            .layer("cardb", korm::layers::sqlite(&path))
            .open()
            .await
            .expect("open");
        let report = korm::danger(korm::reset(&pool, mode)).await.expect("reset");
        pool.close().await;
        let conn = rusqlite::Connection::open(&path).expect("open");
        let exists = |t: &str| {
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = ?1",
                [t],
                |r| r.get::<_, i64>(0),
            )
            .expect("master")
                > 0
        };
        assert!(!exists("__korm_pool__"), "{mode:?}");
        assert_eq!(exists("__korm_backups__"), kept, "{mode:?}: {report:?}");
        assert!(exists("__items__users__freetier"), "{mode:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// korm 1.5's snapshots

/// `cardb.sqlite`'s snapshot, written by korm 1.5: discovery reads every part of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_korm_1_5_cardb_snapshot_is_discovered() {
    install_test_keys();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("cardb.sqlite");
    std::fs::copy(fixtures().join("cardb.sqlite"), &path).expect("copy fixture");
    let builder = korm::discover(korm::layers::sqlite(&path))
        .await
        .expect("discover the fixture pool");
    let shown = format!("{builder:?}");
    for part in [
        "\"cardb\"",
        "/data/korm-fixtures/files",
        "/data/korm-fixtures/backups",
        "/data/korm-fixtures/wal",
        "namespace: \"fixtures\"",
        "retention: Keep",
        "depot_ops: Record",
        "ttl: 60s",
        "refresh: 30s",
    ] {
        assert!(shown.contains(part), "{part} in {shown}");
    }

    // The same snapshot with its paths moved here (fingerprints recomputed, as korm 1.5
    // would write them): a korm-rs pool configured alike opens against it.
    let conn = rusqlite::Connection::open(&path).expect("open");
    let text: String = conn
        .query_row("SELECT config FROM __korm_pool__", [], |r| r.get(0))
        .expect("row");
    let mut snapshot: Value = serde_json::from_str(&text).expect("json");
    let here = |name: &str| dir.path().join(name).to_str().expect("utf8").to_owned();
    let fp = |s: &str| hex::encode(sha2::Sha256::digest(json!(s).to_string()));
    snapshot["layers"][0]["config"]["path"] = json!(here("cardb.sqlite"));
    snapshot["layers"][0]["fingerprint"] = json!(fp(&here("cardb.sqlite")));
    for depot in snapshot["depots"].as_array_mut().expect("depots") {
        let root = here(depot["ident"].as_str().expect("ident"));
        depot["config"]["root"] = json!(root);
        depot["fingerprint"] = json!(fp(&root));
    }
    drop(conn);
    // Stores `snapshot`, opens a korm-rs pool configured alike (`why` it must open), and
    // checks the row is still the one stored (nothing sealed, nothing to write again).
    let opens_and_keeps = async |snapshot: &Value, why: &str| {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute(
            "UPDATE __korm_pool__ SET config = ?1",
            [snapshot.to_string()],
        )
        .expect("update");
        drop(conn);
        let pool = korm::pool()
            .layer("cardb", korm::layers::sqlite(&path))
            .depot("backups", korm::depots::local(here("backups")))
            .depot("files", korm::depots::local(here("files")))
            .depot("wal", korm::depots::local(here("wal")))
            .with_wal(
                "wal",
                WalOptions::new("fixtures")
                    .with_retention(WalRetention::Keep)
                    .with_depot_ops(korm::WalDepotOps::Record),
            )
            .with_locks("cardb", LockOptions::new())
            .with_meta("cardb")
            .open()
            .await
            .expect(why);
        pool.close().await;
        let conn = rusqlite::Connection::open(&path).expect("open");
        let after: String = conn
            .query_row("SELECT config FROM __korm_pool__", [], |r| r.get(0))
            .expect("row");
        assert_eq!(after, snapshot.to_string(), "{why}");
    };
    opens_and_keeps(&snapshot, "a korm-rs pool matches korm 1.5's snapshot").await;
    // korm 1.5 configured scheduled backups (korm-rs schedules them outside the pool's
    // configuration): the pool still opens, and the section stays as korm 1.5 wrote it.
    snapshot["backups"] = json!({
        "depotIdent": "backups",
        "intervals": [{"layerIdent": "cardb", "every": "day"}],
        "retention": {"keep": 7}
    });
    opens_and_keeps(&snapshot, "a korm 1.5 backups section is no difference").await;
}

/// `postgres.sql`'s snapshot (a jsonb string, two url layers sealed by korm 1.5): discovery
/// decrypts both urls with the fixture key and checks them against their fingerprints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_korm_1_5_postgres_snapshot_is_decrypted() {
    install_test_keys();
    let Some(db) = support::create(Server::Postgres).await else {
        return;
    };
    let dump = std::fs::read_to_string(fixtures().join("postgres.sql")).expect("dump");
    let line = dump
        .lines()
        .find(|l| l.starts_with("pool\t"))
        .expect("the pool row of the dump");
    // COPY text format: a backslash is written twice.
    let config = line
        .split('\t')
        .nth(1)
        .expect("config")
        .replace("\\\\", "\\");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("pg");
    sqlx::raw_sql(
        "CREATE TABLE public.__korm_pool__ (id text PRIMARY KEY, config jsonb NOT NULL, \
         created_at bigint NOT NULL, updated_at bigint NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .expect("table");
    sqlx::query(
        "INSERT INTO __korm_pool__ VALUES ('pool', $1::jsonb, 1795708770035, 1795708770035)",
    )
    .bind(&config)
    .execute(&mut conn)
    .await
    .expect("row");
    let kind: String = sqlx::query_scalar("SELECT jsonb_typeof(config) FROM __korm_pool__")
        .fetch_one(&mut conn)
        .await
        .expect("type");
    assert_eq!(kind, "string", "the fixture's jsonb holds a string");

    let builder = korm::discover(korm::layers::postgres(&db.url))
        .await
        .expect("discover the fixture pool");
    let shown = format!("{builder:?}");
    assert!(
        shown.contains("mysql://root@127.0.0.1:3306/kormfx"),
        "{shown}"
    );
    assert!(
        shown.contains("postgres://postgres@127.0.0.1:5432/kormfx"),
        "{shown}"
    );
    assert!(
        shown.contains("\"docsdb\"") && shown.contains("\"userdb\""),
        "{shown}"
    );

    // The same snapshot with one ciphertext altered: refused, typed, nothing leaked.
    let mut snapshot: Value = serde_json::from_str(&config).expect("string");
    let mut inner: Value =
        serde_json::from_str(snapshot.as_str().expect("a string")).expect("json");
    let value = inner["layers"][1]["config"]["encrypted"]["value"]
        .as_str()
        .expect("hex")
        .to_owned();
    let flipped = format!(
        "{}{}",
        if value.starts_with('0') { "1" } else { "0" },
        &value[1..]
    );
    inner["layers"][1]["config"]["encrypted"]["value"] = json!(flipped);
    snapshot = json!(inner.to_string());
    sqlx::query("UPDATE __korm_pool__ SET config = $1::jsonb")
        .bind(snapshot.to_string())
        .execute(&mut conn)
        .await
        .expect("tamper");
    let err = korm::discover(korm::layers::postgres(&db.url))
        .await
        .expect_err("a tampered ciphertext");
    let message = err.to_string();
    assert!(
        matches!(&err, Error::MetaDecrypt { entry, .. } if entry == "layer \"userdb\""),
        "{message}"
    );
    assert!(message.contains("authentication failed"), "{message}");
    assert!(!message.contains("kormfx"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Tampered snapshots, wrong keys, parts that can not be described

async fn tampered_snapshot_refused(kind: Kind) {
    install_test_keys();
    let Some(db) = Db::new(kind).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    builder(&db, dir.path())
        .open()
        .await
        .expect("open")
        .close()
        .await;
    let good = db.snapshot().await;
    let secret_word = "pw-s3cret-pw";

    let altered_fingerprint = {
        let mut s = good.clone();
        s["layers"][1]["config"]["path"] = json!("/elsewhere/side.sqlite");
        s
    };
    let mut cases: Vec<(&str, String)> = vec![
        ("array", "[1,2]".to_owned()),
        ("version", {
            let mut s = good.clone();
            s["version"] = json!(2);
            s.to_string()
        }),
        ("altered", altered_fingerprint.to_string()),
        ("wrong shape", {
            let mut s = good.clone();
            s["layers"][0]["config"] = json!(format!("postgres://u:{secret_word}@h/d"));
            s.to_string()
        }),
    ];
    if !matches!(kind, Kind::MySql) {
        // MySQL's JSON column refuses text that is not JSON.
        cases.push(("not json", format!("not json {secret_word}")));
    }
    for (case, text) in cases {
        db.set_config(&text).await;
        let opened = builder(&db, dir.path()).open().await;
        let err = opened.expect_err(case);
        let message = err.to_string();
        assert!(!message.contains(secret_word), "{case}: {message}");
        assert!(
            matches!(err, Error::MetaInvalid { ref layer, .. } if layer == "main"),
            "{case}: {message}"
        );
        if case == "altered" {
            assert!(
                message.contains(r#"the config of layer "side" does not match its fingerprint"#),
                "{message}"
            );
        }
        let discovered = korm::discover(db.spec()).await;
        let err = discovered.expect_err(case);
        let message = err.to_string();
        assert!(!message.contains(secret_word), "{case}: {message}");
        assert!(
            matches!(err, Error::MetaInvalid { .. }),
            "{case}: {message}"
        );
        if case == "altered" {
            assert!(message.contains("was altered"), "{message}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_tampered_snapshot_refused_sqlite() {
    tampered_snapshot_refused(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_tampered_snapshot_refused_postgres() {
    tampered_snapshot_refused(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_tampered_snapshot_refused_mysql() {
    tampered_snapshot_refused(Kind::MySql).await;
}

/// A snapshot sealed with another key: opening with the same config still matches (by
/// fingerprint), discovery says the key is wrong, and neither shows the url.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_wrong_key_is_a_typed_error() {
    install_test_keys();
    let Some(db) = support::create(Server::Postgres).await else {
        return;
    };
    let url = db.url.replacen("postgres@", "postgres:pw-s3cret-pw@", 1);
    let open = || {
        korm::pool()
            .layer("userdb", korm::layers::postgres(&url))
            .with_meta("userdb")
            .open()
    };
    open().await.expect("open").close().await;
    // Seal the url again with a key the process does not have.
    let db_spec = Db::Server(db);
    let mut snapshot = db_spec.snapshot().await;
    let other = korm::crypto::KeyRing::new(korm::crypto::EncryptionKey::generate());
    snapshot["layers"][0]["config"]["encrypted"] = other.encrypt(&url).expect("seal");
    db_spec.set_config(&snapshot.to_string()).await;

    open()
        .await
        .expect("the same url matches by fingerprint, without the key")
        .close()
        .await;
    // That open sealed the url again with the current key; put the foreign one back.
    db_spec.set_config(&snapshot.to_string()).await;
    let err = korm::discover(korm::layers::postgres(&url))
        .await
        .expect_err("wrong key");
    let message = err.to_string();
    assert!(matches!(err, Error::MetaDecrypt { .. }), "{message}");
    assert!(message.contains("KORM_ENCRYPTION_KEY"), "{message}");
    assert!(
        message.contains("which the key ring does not hold"),
        "{message}"
    );
    assert!(!message.contains("pw-s3cret-pw"), "{message}");
    assert!(!format!("{err:?}").contains("pw-s3cret-pw"));

    // Another url, with the foreign seal: the difference is reported without its parts.
    let other_url = url.replacen("127.0.0.1", "localhost", 1);
    let err = korm::pool()
        .layer("userdb", korm::layers::postgres(&other_url))
        .with_meta("userdb")
        .open()
        .await
        .expect_err("another url");
    let message = err.to_string();
    assert!(
        message.contains("does not decrypt with this key ring"),
        "{message}"
    );
    assert!(!message.contains("pw-s3cret-pw"), "{message}");
}

/// A MariaDB pool with metadata whose stored url is replaced by `seal(url)`, opened again:
/// the snapshot as written, as the open left it, and the url. `None` without the server.
async fn reopened_with_sealed_url(
    seal: impl FnOnce(&str) -> Value,
) -> Option<(Value, Value, String)> {
    let db = Db::new(Kind::MySql).await?;
    let dir = tempfile::tempdir().expect("dir");
    builder(&db, dir.path())
        .open()
        .await
        .expect("open")
        .close()
        .await;
    let mut snapshot = db.snapshot().await;
    let Db::Server(server) = &db else {
        unreachable!()
    };
    snapshot["layers"][0]["config"]["encrypted"] = seal(&server.url);
    db.set_config(&snapshot.to_string()).await;
    builder(&db, dir.path())
        .open()
        .await
        .expect("the fingerprints match: it opens")
        .close()
        .await;
    Some((snapshot, db.snapshot().await, server.url.clone()))
}

/// An open rewrites a matching snapshot whose secrets another key (korm 1.5's, an old one)
/// sealed, under the current key: key rotation reaches the metadata too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_snapshot_sealed_with_an_old_key_is_sealed_again() {
    install_test_keys();
    let old = korm::crypto::KeyRing::new(
        korm::crypto::EncryptionKey::from_hex(&"b2".repeat(32)).expect("old key"),
    );
    let Some((_, after, url)) = reopened_with_sealed_url(|url| {
        let mut sealed = old.encrypt(url).expect("seal");
        // As korm 1.5 writes it: no keyId.
        sealed.as_object_mut().expect("object").remove("keyId");
        sealed
    })
    .await
    else {
        return;
    };
    let envelope = &after["layers"][0]["config"]["encrypted"];
    let ring = korm::crypto::key_ring().expect("ring");
    assert_eq!(envelope["keyId"], ring.current_key_id());
    let opened: String = ring.decrypt(envelope).expect("decrypts");
    assert_eq!(opened, url);
}

/// A snapshot sealed with a key this process does not hold is left as it is: sealing it
/// again under this process's key would lock out the processes that hold the first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_snapshot_sealed_with_an_unknown_key_is_left_alone() {
    install_test_keys();
    let stranger = korm::crypto::KeyRing::new(korm::crypto::EncryptionKey::generate());
    let Some((written, after, url)) =
        reopened_with_sealed_url(|url| stranger.encrypt(url).expect("seal")).await
    else {
        return;
    };
    assert_eq!(after, written, "the snapshot is as the other key sealed it");
    let opened: String = stranger
        .decrypt(&after["layers"][0]["config"]["encrypted"])
        .expect("the other process still opens it");
    assert_eq!(opened, url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_discover_needs_a_snapshot() {
    install_test_keys();
    let err = korm::discover(korm::layers::sqlite_memory())
        .await
        .expect_err("nothing to discover");
    assert!(matches!(err, Error::MetaNotFound), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_needs_layers_and_depots_that_say_where_they_are() {
    install_test_keys();
    // Refused before anything connects: the sqlx pool is never used.
    let lazy = sqlx::PgPool::connect_lazy("postgres://nobody:pw-s3cret-pw@127.0.0.1:1/none")
        .expect("lazy pool");
    let err = korm::pool()
        .layer("userdb", korm::layers::postgres_pool(lazy))
        .with_meta("userdb")
        .open()
        .await
        .expect_err("a sqlx pool handed over");
    let message = err.to_string();
    assert!(matches!(err, Error::PoolConfig { .. }), "{message}");
    assert!(message.contains(r#"layer "userdb""#), "{message}");
    assert!(!message.contains("pw-s3cret-pw"), "{message}");

    let dir = tempfile::tempdir().expect("dir");
    let depot = korm::depots::LocalDepot::open("files", korm::depots::local(dir.path()))
        .await
        .expect("depot");
    let err = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .depot(
            "files",
            std::sync::Arc::new(depot) as std::sync::Arc<dyn korm::depots::Depot>,
        )
        .with_meta("db")
        .open()
        .await
        .expect_err("an opened depot");
    assert!(err.to_string().contains(r#"depot "files""#), "{err}");

    let err = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .with_meta("nope")
        .open()
        .await
        .expect_err("an unknown meta layer");
    assert!(matches!(err, Error::PoolConfig { .. }), "{err}");
}

/// Two processes opening a new pool at once: one writes the snapshot, the other checks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn meta_concurrent_first_opens_agree() {
    install_test_keys();
    for kind in [Kind::Sqlite, Kind::Postgres, Kind::MySql] {
        let Some(db) = Db::new(kind).await else {
            return;
        };
        let dir = tempfile::tempdir().expect("dir");
        let opens: Vec<_> = (0..4).map(|_| builder(&db, dir.path()).open()).collect();
        let pools = futures_util::future::join_all(opens).await;
        for pool in pools {
            pool.expect("every open agrees").close().await;
        }
        assert!(db.pool_row().await.is_some());
    }
}

/// Without `with_meta` a pool does not read snapshots (korm 1.5 checks every layer even
/// then; korm-rs leaves pools that never asked for metadata alone, see docs/design.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_pools_without_meta_do_not_check() {
    install_test_keys();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("cardb.sqlite");
    std::fs::copy(fixtures().join("cardb.sqlite"), &path).expect("copy fixture");
    korm::pool()
        .layer("inspect", korm::layers::sqlite(&path))
        .open()
        .await
        .expect("a pool without metadata opens a layer of a pool with it")
        .close()
        .await;
}

/// A WAL namespace the WAL refuses fails the open before the pool's metadata is written,
/// so the corrected namespace opens (the snapshot held the refused one, and every later
/// open was a `MetaMismatch` on it until a reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_wal_namespace_leaves_no_snapshot_behind() {
    install_test_keys();
    let Some(db) = Db::new(Kind::Sqlite).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let refused = builder(&db, dir.path())
        .with_wal("files", WalOptions::new("orders.v2"))
        .open()
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidIdentifier { .. })),
        "{:?}",
        refused.map(|_| ())
    );
    assert!(db.pool_row().await.is_none(), "no snapshot was written");
    let pool = builder(&db, dir.path())
        .open()
        .await
        .expect("the corrected namespace opens");
    pool.close().await;
}

/// What a child process of [`a_process_without_a_key_does_not_seal_the_shared_snapshot`]
/// does (it runs only when the parent sets [`META_CHILD`] to a PostgreSQL URL): opens a pool
/// with metadata, without an encryption key.
const META_CHILD: &str = "KORM_META_CHILD_URL";

#[tokio::test]
async fn meta_child_process_role() {
    let Ok(url) = std::env::var(META_CHILD) else {
        return;
    };
    let pool = korm::pool()
        .layer("main", korm::layers::postgres(&url))
        .with_meta("main")
        .open()
        .await
        .expect("a pool opens without a key");
    pool.close().await;
}

/// A process without `KORM_ENCRYPTION_KEY` (outside production it encrypts with a temporary
/// key) does not write the shared snapshot: sealed under that key, its URL would open for no
/// other process, ever (a matching snapshot is never written again). The first process with
/// the key writes it.
#[tokio::test]
async fn a_process_without_a_key_does_not_seal_the_shared_snapshot() {
    let Some(Db::Server(db)) = Db::new(Kind::Postgres).await else {
        return;
    };
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "meta::meta_child_process_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(META_CHILD, &db.url)
        .env_remove("KORM_ENCRYPTION_KEY")
        .env_remove("KORM_ENCRYPTION_KEYS_OLD")
        .env_remove("KORM_ENV")
        .env_remove("NODE_ENV")
        .status()
        .expect("child");
    assert!(status.success(), "the child opened its pool");
    let rows = || async {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("pg");
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('__korm_pool__') IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .expect("catalog");
        if !exists {
            return 0;
        }
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM __korm_pool__")
            .fetch_one(&mut conn)
            .await
            .expect("count")
    };
    assert_eq!(rows().await, 0, "no snapshot under a temporary key");
    install_test_keys();
    let pool = korm::pool()
        .layer("main", korm::layers::postgres(&db.url))
        .with_meta("main")
        .open()
        .await
        .expect("open with the key");
    pool.close().await;
    assert_eq!(rows().await, 1, "written by a process with the key");
}
