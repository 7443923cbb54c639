//! The write-ahead log (W1-W6): records written before each write and finished after it,
//! recovery at open (forward for a write a crash interrupted, back for a failed write whose
//! undo could not finish), authenticated records, recorded depot files, korm 1.5's records,
//! and faults injected with a depot wrapper and SQLite triggers (no crash needed; the crash
//! trials, `scripts/crash-trials`, kill real processes).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use korm::depots::{Depot, DepotFile, DepotKey, FileContent, FileStream};
use korm::wal::{RecordOpType, RecordState};
use korm::{Encrypted, Error, Pool, Rn, WalOptions, WalRetention};
use serde::{Deserialize, Serialize};

use super::fixtures;

fn install_keys() {
    let key = korm::crypto::EncryptionKey::from_hex(&"a1".repeat(32)).expect("key");
    korm::crypto::install(korm::crypto::KeyRing::new(key));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Car {
    make: String,
    year: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Secretive {
    name: String,
    ssn: Encrypted<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WithInvoice {
    make: String,
    invoice: DepotFile,
}

fn rn<T>(text: &str) -> Rn<T> {
    text.parse().expect("rn")
}

/// A depot that fails on demand: puts, deletes, or both.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn Depot>,
    fail_puts: AtomicBool,
    fail_deletes: AtomicBool,
}

impl Faulty {
    async fn local(ident: &str, root: &Path) -> Arc<Faulty> {
        let inner = korm::depots::LocalDepot::open(ident, korm::depots::local(root))
            .await
            .expect("local depot");
        Arc::new(Faulty {
            inner: Arc::new(inner),
            fail_puts: AtomicBool::new(false),
            fail_deletes: AtomicBool::new(false),
        })
    }

    fn refuse(&self, key: &DepotKey) -> Error {
        Error::Depot {
            depot: self.inner.ident().to_owned(),
            key: key.to_string(),
            reason: "injected fault".to_owned(),
        }
    }
}

#[async_trait::async_trait]
impl Depot for Faulty {
    fn ident(&self) -> &str {
        self.inner.ident()
    }
    async fn put(&self, key: &DepotKey, content: FileContent) -> korm::Result<u64> {
        if self.fail_puts.load(Ordering::SeqCst) {
            return Err(self.refuse(key));
        }
        self.inner.put(key, content).await
    }
    async fn get(&self, key: &DepotKey) -> korm::Result<FileStream> {
        self.inner.get(key).await
    }
    async fn size(&self, key: &DepotKey) -> korm::Result<Option<u64>> {
        self.inner.size(key).await
    }
    async fn delete(&self, key: &DepotKey) -> korm::Result<()> {
        if self.fail_deletes.load(Ordering::SeqCst) {
            return Err(self.refuse(key));
        }
        self.inner.delete(key).await
    }
    async fn copy(&self, from: &DepotKey, to: &DepotKey) -> korm::Result<()> {
        self.inner.copy(from, to).await
    }
    async fn list(&self, prefix: &DepotKey) -> korm::Result<Vec<DepotKey>> {
        self.inner.list(prefix).await
    }
    async fn list_all(&self, prefix: &DepotKey) -> korm::Result<Vec<DepotKey>> {
        self.inner.list_all(prefix).await
    }
    async fn close(&self) {}
}

/// The JSON files in a folder, by name.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn wal_folder(root: &Path, pool: &Pool) -> PathBuf {
    root.join(pool.wal().expect("wal").folder())
}

async fn sqlite_pool(dir: &Path, options: WalOptions) -> korm::Result<Pool> {
    korm::pool()
        .layer("cardb", korm::layers::sqlite(dir.join("cars.sqlite")))
        .layer("userdb", korm::layers::sqlite(dir.join("users.sqlite")))
        .depot("wal", korm::depots::local(dir.join("wal")))
        .depot("files", korm::depots::local(dir.join("files")))
        .with_wal("wal", options)
        .open()
        .await
}

/// A pool builder with the layer `cardb` (`cars.sqlite` in `dir`) and its WAL, `options`,
/// in the depot `wal`.
fn cardb_with_wal(dir: &Path, wal: Arc<Faulty>, options: WalOptions) -> korm::PoolBuilder {
    korm::pool()
        .layer("cardb", korm::layers::sqlite(dir.join("cars.sqlite")))
        .depot("wal", wal as Arc<dyn Depot>)
        .with_wal("wal", options)
}

async fn create_car(pool: &Pool, layer: &str, make: &str) -> korm::Result<korm::Item<Car>> {
    korm::item::<Car>(pool)
        .from_data(
            rn(&format!("[rn][from::{layer}]:cars:suv:*")),
            Car {
                make: make.into(),
                year: 2015,
            },
        )?
        .create()
        .await
}

#[tokio::test]
async fn each_write_leaves_a_signed_record_in_done_with_retention_keep() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let pool = sqlite_pool(
        dir.path(),
        WalOptions::new("orders").with_retention(WalRetention::Keep),
    )
    .await
    .expect("open");
    let car = create_car(&pool, "cardb", "Citroen").await.expect("create");
    let car_rn = car.rn().to_string();
    let car = car
        .update(|c| c.year = 2016)
        .commit()
        .await
        .expect("commit");
    car.delete().await.expect("delete");
    let secret = korm::item::<Secretive>(&pool)
        .from_data(
            rn("[rn][from::userdb]:people:vip:*"),
            Secretive {
                name: "fred".into(),
                ssn: Encrypted::new("078-05-1120-cleartext".into()),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create secret");
    let folder = wal_folder(&dir.path().join("wal"), &pool);
    assert!(json_files(&folder.join("pending")).is_empty());
    let done = pool.wal().expect("wal").done().await.expect("done");
    assert_eq!(done.len(), 4, "{done:?}");
    let mut kinds = Vec::new();
    for (id, record) in &done {
        let record = record.as_ref().expect("a record korm wrote checks out");
        assert_eq!(&record.id, id);
        assert_eq!(record.state, RecordState::Done);
        assert!(record.completed_at.is_some());
        kinds.push(format!("{:?} {}", record.ops[0].kind, record.ops[0].rn));
    }
    // Two writes can share a millisecond, so the order of createdAt is not asserted.
    kinds.sort();
    let rn_of = |rn: &str| rn.to_owned();
    let car_rn = rn_of(car_rn.as_str());
    let secret_rn = secret.rn().to_string();
    let mut expected = vec![
        format!("Insert {car_rn}"),
        format!("Update {car_rn}"),
        format!("Delete {car_rn}"),
        format!("Insert {secret_rn}"),
    ];
    expected.sort();
    assert_eq!(kinds, expected);
    // The update carries its before-image; the encrypted field is an envelope only.
    let update = done
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .find(|r| r.ops[0].kind == RecordOpType::Update)
        .expect("update record");
    assert_eq!(update.ops[0].before.as_ref().expect("before")["year"], 2015);
    assert_eq!(update.ops[0].data.as_ref().expect("data")["year"], 2016);
    for file in json_files(&folder.join("done")) {
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(
            !text.contains("078-05-1120-cleartext"),
            "cleartext in {text}"
        );
        assert!(text.contains("\"mac\":"), "unsigned record {text}");
    }
    assert_eq!(secret.data().name, "fred");
    pool.close().await;
}

/// `WalReader::pool_ids` lists the pools a namespace holds records of, from the depot alone;
/// a namespace that is not a WAL folder name is refused before the depot is read.
#[tokio::test]
async fn the_pools_of_a_namespace_are_listed_from_the_depot() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let pool = sqlite_pool(
        dir.path(),
        WalOptions::new("orders").with_retention(WalRetention::Keep),
    )
    .await
    .expect("open");
    create_car(&pool, "cardb", "Citroen").await.expect("create");
    let pool_id = pool.wal().expect("wal").pool_id().to_owned();
    pool.close().await;
    let depot = || korm::depots::local(dir.path().join("wal"));
    let ids = korm::wal::WalReader::pool_ids("wal", depot(), "orders").await;
    assert_eq!(ids.expect("listed"), [pool_id]);
    let none = korm::wal::WalReader::pool_ids("wal", depot(), "invoices").await;
    assert_eq!(none.expect("listed"), Vec::<String>::new());
    let bad = korm::wal::WalReader::pool_ids("wal", depot(), "../orders").await;
    assert!(
        matches!(bad, Err(korm::Error::InvalidIdentifier { .. })),
        "{bad:?}"
    );
}

#[tokio::test]
async fn with_retention_delete_nothing_is_left_behind() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let pool = sqlite_pool(dir.path(), WalOptions::new("orders"))
        .await
        .expect("open");
    let car = create_car(&pool, "cardb", "Citroen").await.expect("create");
    car.update(|c| c.year = 2020)
        .commit()
        .await
        .expect("commit");
    let folder = wal_folder(&dir.path().join("wal"), &pool);
    assert!(json_files(&folder.join("pending")).is_empty());
    assert!(json_files(&folder.join("done")).is_empty());
    pool.close().await;
}

/// The WAL depot refuses puts: the write fails before anything is applied.
#[tokio::test]
async fn a_wal_depot_that_can_not_write_stops_the_write_before_it_begins() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let wal = Faulty::local("wal", &dir.path().join("wal")).await;
    let pool = cardb_with_wal(dir.path(), Arc::clone(&wal), WalOptions::new("orders"))
        .open()
        .await
        .expect("open");
    wal.fail_puts.store(true, Ordering::SeqCst);
    let err = create_car(&pool, "cardb", "Citroen")
        .await
        .expect_err("no record, no write");
    assert!(
        matches!(&err, Error::WalWrite { depot, .. } if depot == "wal"),
        "{err:?}"
    );
    wal.fail_puts.store(false, Ordering::SeqCst);
    let cars = korm::item::<Car>(&pool)
        .query(rn("[rn][from::cardb]:cars:suv:*"))
        .get()
        .await
        .expect("query");
    assert!(cars.is_empty(), "nothing was written");
    pool.close().await;
}

/// A write whose record could not be removed (the WAL depot refuses deletes) is as if the
/// process had died just after it: the next open finds the record, and everything as the
/// record left it. Changing a layer back to its old state (a crash between layers) is
/// brought forward; a record changed on disk is refused.
#[tokio::test]
async fn a_pending_record_is_brought_forward_at_open_and_a_tampered_one_is_refused() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let open = |wal: Arc<Faulty>| {
        let dir = dir.path().to_owned();
        async move {
            korm::pool()
                .layer("cardb", korm::layers::sqlite(dir.join("cars.sqlite")))
                .layer("userdb", korm::layers::sqlite(dir.join("users.sqlite")))
                .depot("wal", wal as Arc<dyn Depot>)
                .with_wal("wal", WalOptions::new("orders"))
                .open()
                .await
        }
    };
    let wal = Faulty::local("wal", &dir.path().join("wal")).await;
    let pool = open(Arc::clone(&wal)).await.expect("open");
    let folder = wal_folder(&dir.path().join("wal"), &pool);
    wal.fail_deletes.store(true, Ordering::SeqCst);
    let cars = korm::item::<Car>(&pool);
    let mut tx = korm::tx(&pool);
    let a = tx.create(
        cars.from_data(
            rn("[rn][from::cardb]:cars:suv:*"),
            Car {
                make: "Citroen".into(),
                year: 2015,
            },
        )
        .expect("floating"),
    );
    let b = tx.create(
        cars.from_data(
            rn("[rn][from::userdb]:cars:suv:*"),
            Car {
                make: "Fiat".into(),
                year: 1999,
            },
        )
        .expect("floating"),
    );
    let mut done = tx
        .persist()
        .await
        .expect("persist: the record's removal is not the write's");
    let (a, b) = (done.take(a).expect("a"), done.take(b).expect("b"));
    pool.close().await;
    let pending = json_files(&folder.join("pending"));
    assert_eq!(pending.len(), 1, "the record stayed pending");

    // A crash between the layers: userdb never got its row.
    let users = rusqlite::Connection::open(dir.path().join("users.sqlite")).expect("sqlite");
    users
        .execute("DELETE FROM __items__cars__suv", [])
        .expect("delete");
    drop(users);

    let wal = Faulty::local("wal", &dir.path().join("wal")).await;
    let pool = open(Arc::clone(&wal)).await.expect("reopen recovers");
    let report = pool.wal().expect("wal").opened_with().expect("report");
    assert_eq!(report.recovered.len(), 1, "{report:?}");
    assert_eq!(report.recovered[0].outcome, RecordState::Done);
    assert_eq!(report.recovered[0].applied, 1, "only the missing row");
    assert!(report.refused.is_empty());
    let cars = korm::item::<Car>(&pool);
    let found = cars.load(b.rn().clone()).get().await.expect("b is back");
    assert_eq!(found.data().make, "Fiat");
    cars.load(a.rn().clone()).get().await.expect("a is there");
    assert!(json_files(&folder.join("pending")).is_empty());

    // Again, and this time the record is changed on disk before the next open.
    wal.fail_deletes.store(true, Ordering::SeqCst);
    let a = cars
        .load(a.rn().clone())
        .get()
        .await
        .expect("load")
        .update(|c| c.year = 2016)
        .commit()
        .await
        .expect("commit");
    pool.close().await;
    let pending = json_files(&folder.join("pending"));
    assert_eq!(pending.len(), 1);
    let text = std::fs::read_to_string(&pending[0]).expect("read");
    let tampered = text.replacen("\"year\":2016", "\"year\":1900", 1);
    assert_ne!(text, tampered);
    std::fs::write(&pending[0], tampered).expect("tamper");
    let cardb = rusqlite::Connection::open(dir.path().join("cars.sqlite")).expect("sqlite");
    cardb
        .execute("UPDATE __items__cars__suv SET year = 2015", [])
        .expect("roll back by hand");
    drop(cardb);

    let pool = open(Faulty::local("wal", &dir.path().join("wal")).await)
        .await
        .expect("a refused record does not stop the pool");
    let report = pool.wal().expect("wal").opened_with().expect("report");
    let cars = korm::item::<Car>(&pool);
    assert!(report.recovered.is_empty(), "{report:?}");
    assert_eq!(report.refused.len(), 1);
    assert!(report.refused[0].reason.contains("MAC"), "{report:?}");
    let found = cars.load(a.rn().clone()).get().await.expect("load");
    assert_eq!(
        found.data().year,
        2015,
        "the tampered record was not replayed"
    );
    assert_eq!(
        json_files(&folder.join("pending")).len(),
        1,
        "a refused record stays, for a person to look at"
    );
    let status = pool.wal().expect("wal").pending().await.expect("status");
    assert!(
        status[0]
            .1
            .as_ref()
            .is_err_and(|reason| reason.contains("MAC"))
    );
    pool.close().await;
}

/// A write that failed (a conflict) and whose record could not be removed (the WAL depot
/// refuses deletes) is not brought forward by the next recovery: its caller was told it
/// failed.
#[tokio::test]
async fn a_failed_write_left_pending_is_not_brought_forward() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let open = async |wal: Arc<Faulty>| {
        cardb_with_wal(dir.path(), wal, WalOptions::new("orders"))
            .open()
            .await
    };
    let wal = Faulty::local("wal", &dir.path().join("wal")).await;
    let pool = open(Arc::clone(&wal)).await.expect("open");
    let folder = wal_folder(&dir.path().join("wal"), &pool);
    let x = create_car(&pool, "cardb", "Citroen").await.expect("x");
    let y = create_car(&pool, "cardb", "Fiat").await.expect("y");
    let (year, rn_x) = (x.data().year, x.rn().clone());
    // Another writer changes y under the tx.
    let conn = rusqlite::Connection::open(dir.path().join("cars.sqlite")).expect("sqlite");
    conn.execute(
        "UPDATE __items__cars__suv SET year = 1 WHERE make = 'Fiat'",
        [],
    )
    .expect("update");
    drop(conn);
    wal.fail_deletes.store(true, Ordering::SeqCst);
    let mut tx = korm::tx(&pool);
    tx.commit(x.update(|c| c.year = 2000));
    tx.commit(y.update(|c| c.year = 2001));
    let err = tx.persist().await.expect_err("a conflict");
    assert!(
        matches!(&err, Error::WriteFailed { source, .. } if matches!(&**source, Error::Conflict { .. })),
        "{err:?}"
    );
    let cars = korm::item::<Car>(&pool);
    assert_eq!(
        cars.load(rn_x.clone()).get().await.expect("x").data().year,
        year
    );
    pool.close().await;
    assert_eq!(json_files(&folder.join("pending")).len(), 1, "left pending");

    let pool = open(Faulty::local("wal", &dir.path().join("wal")).await)
        .await
        .expect("reopen");
    let cars = korm::item::<Car>(&pool);
    assert_eq!(
        cars.load(rn_x).get().await.expect("x").data().year,
        year,
        "the failed write stays failed"
    );
    assert!(json_files(&folder.join("pending")).is_empty());
    pool.close().await;
}

/// A pending record filed under the pool id the pool had before a depot was added (no pool
/// metadata keeps the id) is not this pool's to recover, but the report names it, so it is
/// not lost without a word.
#[tokio::test]
async fn pending_records_of_another_pool_id_are_reported() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    // The pool with a depot more: its id is another.
    let open = async |options: WalOptions| {
        let wal = Faulty::local("wal", &dir.path().join("wal")).await;
        cardb_with_wal(dir.path(), wal, options)
            .depot("files", korm::depots::local(dir.path().join("files")))
            .open()
            .await
            .expect("open")
    };
    let wal = Faulty::local("wal", &dir.path().join("wal")).await;
    let pool = cardb_with_wal(dir.path(), Arc::clone(&wal), WalOptions::new("orders"))
        .open()
        .await
        .expect("open");
    let old_id = pool.pool_id().to_owned();
    wal.fail_deletes.store(true, Ordering::SeqCst);
    create_car(&pool, "cardb", "Citroen").await.expect("create");
    pool.close().await;

    let pool = open(WalOptions::new("orders")).await;
    assert_ne!(pool.pool_id(), old_id);
    let report = pool.wal().expect("wal").opened_with().expect("report");
    assert!(report.recovered.is_empty());
    assert_eq!(report.elsewhere, [(old_id.clone(), 1)]);
    pool.close().await;

    // Pointed at the old id, the record is recovered (and the report is quiet about it).
    let pool = open(WalOptions::new("orders").with_pool_id(&old_id)).await;
    let report = pool.wal().expect("wal").opened_with().expect("report");
    assert_eq!(report.recovered.len(), 1, "{report:?}");
    assert!(report.elsewhere.is_empty(), "{report:?}");
    pool.close().await;
}

/// With a WAL, a transaction writes each item once: a record holds one whole image per
/// write, and a recovery compares each with the row as stored, so two writes of one item (a
/// delete and a create at its RN, two loaded copies committed) were replayed wrongly after a
/// crash (the create skipped as superseded, the item left deleted; the second copy's image
/// undoing the first's change). Refused before anything is written; one write of the item
/// does the same.
#[tokio::test]
async fn a_transaction_with_a_wal_writes_an_item_once() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let pool = sqlite_pool(dir.path(), WalOptions::new("orders"))
        .await
        .expect("open");
    let car = create_car(&pool, "cardb", "Citroen").await.expect("create");
    let cars = korm::item::<Car>(&pool);
    let load = || cars.load(car.rn().clone()).get();
    let mut tx = korm::tx(&pool);
    tx.delete(load().await.expect("load"));
    tx.create(
        cars.from_data(
            car.rn().clone(),
            Car {
                make: "Renault".into(),
                year: 2020,
            },
        )
        .expect("data"),
    );
    let err = tx.persist().await.expect_err("one item twice");
    assert!(
        matches!(&err, Error::InvalidOption { reason, .. } if reason.contains("twice")),
        "{err:?}"
    );
    let mut tx = korm::tx(&pool);
    tx.commit(load().await.expect("load").update(|c| c.year = 2016));
    tx.commit(load().await.expect("load").update(|c| c.make = "DS".into()));
    let err = tx.persist().await.expect_err("two copies");
    assert!(matches!(err, Error::InvalidOption { .. }), "{err:?}");
    // Nothing was written.
    assert_eq!(load().await.expect("load").data(), car.data());
    // One write of the item does it.
    let mut tx = korm::tx(&pool);
    tx.commit(load().await.expect("load").update(|c| {
        c.year = 2016;
        c.make = "DS".into();
    }));
    tx.persist().await.expect("once");
    pool.close().await;
}

/// Opens a pool and closes it, has `put` write a file into its WAL's `pending/` folder (given
/// the folder, it returns the file), and opens the pool again: the open goes on, and refuses
/// that file alone, for a reason holding `reason`. Returns the folder of the pool's files and
/// the file.
async fn refused_at_open(
    put: impl FnOnce(&Path) -> PathBuf,
    reason: &str,
) -> (tempfile::TempDir, PathBuf) {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let pool = sqlite_pool(dir.path(), WalOptions::new("orders"))
        .await
        .expect("open");
    let pending = wal_folder(&dir.path().join("wal"), &pool).join("pending");
    pool.close().await;
    std::fs::create_dir_all(&pending).expect("pending");
    let file = put(&pending);
    let pool = sqlite_pool(dir.path(), WalOptions::new("orders"))
        .await
        .expect("the file does not stop the open");
    let report = pool.wal().expect("wal").opened_with().expect("report");
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert!(report.refused[0].reason.contains(reason), "{report:?}");
    pool.close().await;
    (dir, file)
}

/// A file in `pending/` whose name no record has (an operator's copy, `... 2.json`) is
/// reported as refused and left in place: it used to fail every open of the pool.
#[tokio::test]
async fn a_pending_file_named_unlike_a_record_is_refused_not_fatal() {
    let (_dir, odd) = refused_at_open(
        |pending| {
            let odd = pending.join("0190aa 2.json");
            std::fs::write(&odd, "{}").expect("odd file");
            odd
        },
        "file name",
    )
    .await;
    assert!(odd.exists(), "left for a person to look at");
}

/// A pending record file larger than any record korm writes (256 MiB) is refused unread at
/// open, on a local folder and through a depot's stream: it used to be read whole (and
/// parsed, and copied) before its MAC was checked, so a huge file exhausted memory.
#[tokio::test]
async fn a_pending_record_file_too_large_to_be_a_record_is_refused_unread() {
    let (dir, huge) = refused_at_open(
        |pending| {
            let huge = pending.join(format!("{}.json", uuid::Uuid::new_v4()));
            // Sparse: no disk is used.
            std::fs::File::create(&huge)
                .and_then(|f| f.set_len((256 << 20) + 1))
                .expect("huge file");
            huge
        },
        "larger",
    )
    .await;

    let wal = Faulty::local("wal", &dir.path().join("wal")).await;
    let pool = korm::pool()
        .layer(
            "cardb",
            korm::layers::sqlite(dir.path().join("cars.sqlite")),
        )
        .layer(
            "userdb",
            korm::layers::sqlite(dir.path().join("users.sqlite")),
        )
        .depot("wal", wal as Arc<dyn Depot>)
        .depot("files", korm::depots::local(dir.path().join("files")))
        .with_wal("wal", WalOptions::new("orders"))
        .open()
        .await
        .expect("through a stream too");
    let report = pool.wal().expect("wal").opened_with().expect("report");
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert!(report.refused[0].reason.contains("larger"), "{report:?}");
    assert!(
        huge.exists(),
        "a refused record stays, for a person to look at"
    );
}

#[derive(Debug, Serialize, Deserialize)]
struct Member {
    email: korm::Unique<String>,
    note: String,
}

/// A pending record that can never be brought forward (a crash before its insert, then
/// another item took its unique value) does not stop every open: its write, which never
/// answered its caller, is rolled back, and the report says why. The crash came between the
/// layers (one op to bring forward) or before either (two).
#[tokio::test]
async fn a_record_that_can_never_be_brought_forward_is_rolled_back() {
    never_brought_forward(false).await;
}

#[tokio::test]
async fn a_record_of_two_ops_that_can_never_be_brought_forward_is_rolled_back() {
    never_brought_forward(true).await;
}

async fn never_brought_forward(lose_both: bool) {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let open = |wal: Option<Arc<Faulty>>| {
        let dir = dir.path().to_owned();
        async move {
            let builder = korm::pool()
                .layer("cardb", korm::layers::sqlite(dir.join("cars.sqlite")))
                .layer("userdb", korm::layers::sqlite(dir.join("users.sqlite")));
            match wal {
                Some(wal) => {
                    builder
                        .depot("wal", wal as Arc<dyn Depot>)
                        .with_wal("wal", WalOptions::new("orders"))
                        .open()
                        .await
                }
                None => builder.open().await,
            }
        }
    };
    let member = |email: &str, note: &str| Member {
        email: korm::Unique::new(email.to_owned()),
        note: note.to_owned(),
    };
    let wal = Faulty::local("wal", &dir.path().join("wal")).await;
    let pool = open(Some(Arc::clone(&wal))).await.expect("open");
    let folder = wal_folder(&dir.path().join("wal"), &pool);
    wal.fail_deletes.store(true, Ordering::SeqCst);
    // A tx over both layers; its record stays pending (the WAL can not remove it).
    let members = korm::item::<Member>(&pool);
    let mut tx = korm::tx(&pool);
    let a = tx.create(
        members
            .from_data(
                rn("[rn][from::cardb]:members:all:*"),
                member("x@example.com", "a"),
            )
            .expect("floating"),
    );
    let b = tx.create(
        members
            .from_data(
                rn("[rn][from::userdb]:members:all:*"),
                member("y@example.com", "b"),
            )
            .expect("floating"),
    );
    let mut done = tx.persist().await.expect("persist");
    let (a, b) = (done.take(a).expect("a"), done.take(b).expect("b"));
    pool.close().await;
    assert_eq!(json_files(&folder.join("pending")).len(), 1);

    // A crash between the layers (userdb never got b) or before either; then another item
    // took b's email.
    let lost: &[&str] = if lose_both {
        &["users.sqlite", "cars.sqlite"]
    } else {
        &["users.sqlite"]
    };
    for file in lost {
        let conn = rusqlite::Connection::open(dir.path().join(file)).expect("sqlite");
        conn.execute("DELETE FROM __items__members__all", [])
            .expect("delete");
    }
    let plain = open(None).await.expect("open without the WAL");
    let taker = korm::item::<Member>(&plain)
        .from_data(
            rn("[rn][from::userdb]:members:all:*"),
            member("y@example.com", "c"),
        )
        .expect("floating")
        .create()
        .await
        .expect("another item takes the email");
    plain.close().await;

    let pool = open(Some(Faulty::local("wal", &dir.path().join("wal")).await))
        .await
        .expect("the record does not stop the open");
    let report = pool.wal().expect("wal").opened_with().expect("report");
    assert_eq!(report.recovered.len(), 1, "{report:?}");
    let recovered = &report.recovered[0];
    assert_eq!(recovered.outcome, RecordState::Failed);
    let why = recovered.rolled_back.as_deref().expect("a reason");
    assert!(why.contains("email"), "{why}");
    assert!(!why.contains("y@example.com"), "{why}");
    assert!(json_files(&folder.join("pending")).is_empty());
    let members = korm::item::<Member>(&pool);
    assert!(
        matches!(
            members.load(a.rn().clone()).get().await,
            Err(Error::NotFound { .. })
        ),
        "the half of the tx that was written is undone"
    );
    assert!(matches!(
        members.load(b.rn().clone()).get().await,
        Err(Error::NotFound { .. })
    ));
    let kept = members.load(taker.rn().clone()).get().await.expect("taker");
    assert_eq!(kept.data().note, "c");
    pool.close().await;
}

/// A pool whose `cardb` refuses deletes (the undo of an insert) and an id `userdb` holds
/// already; and the connection that set the trigger (`DROP TRIGGER no_delete` lifts it).
async fn undo_refusing(dir: &Path) -> (Pool, String, rusqlite::Connection) {
    let pool = sqlite_pool(dir, WalOptions::new("orders"))
        .await
        .expect("open");
    let taken = create_car(&pool, "userdb", "Taken").await.expect("create");
    let id = taken.rn().id().expect("id").to_owned();
    create_car(&pool, "cardb", "Other")
        .await
        .expect("table exists");
    let cardb = rusqlite::Connection::open(dir.join("cars.sqlite")).expect("sqlite");
    cardb
        .execute_batch(
            "CREATE TRIGGER no_delete BEFORE DELETE ON __items__cars__suv \
             BEGIN SELECT RAISE(ABORT, 'deletes refused'); END;",
        )
        .expect("trigger");
    (pool, id, cardb)
}

/// A tx creating the car `id` on `cardb` and on `userdb` (under `guard`, if given): userdb
/// refuses it, and cardb refuses its undo, so it fails with `UndoFailed`, half-applied.
async fn half_applying_tx(pool: &Pool, id: &str, guard: Option<&korm::LockGuard>) {
    let cars = korm::item::<Car>(pool);
    let mut tx = korm::tx(pool);
    if let Some(guard) = guard {
        tx.under(guard);
    }
    for layer in ["cardb", "userdb"] {
        tx.create(
            cars.from_data(
                rn(&format!("[rn][from::{layer}]:cars:suv:{id}")),
                Car {
                    make: "Citroen".into(),
                    year: 2015,
                },
            )
            .expect("floating"),
        );
    }
    let err = tx.persist().await.expect_err("userdb refuses");
    assert!(matches!(err, Error::UndoFailed { .. }), "{err:?}");
}

/// A failed write whose undo fails too (a trigger refuses the delete that undoes an
/// insert): the WAL rolls it back at once if it can; it can not here, so the record stays
/// pending as aborting and the RN refuses writes until a recovery finishes the rollback.
#[tokio::test]
async fn a_failed_undo_is_finished_by_recovery_and_blocks_its_rns_until_then() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let (pool, id, cardb) = undo_refusing(dir.path()).await;
    let cars = korm::item::<Car>(&pool);
    half_applying_tx(&pool, &id, None).await;
    let half: Rn<Car> = rn(&format!("[rn][from::cardb]:cars:suv:{id}"));
    cars.load(half.clone())
        .get()
        .await
        .expect("half-applied, for now");

    // The RN refuses writes until the record is finished.
    let blocked = cars
        .load(half.clone())
        .get()
        .await
        .expect("load")
        .update(|c| c.year = 2030)
        .commit()
        .await
        .expect_err("blocked");
    assert!(matches!(&blocked, Error::WalPending { .. }), "{blocked:?}");

    // Recovery can not finish while the trigger stands; it reports the record.
    let err = pool
        .wal()
        .expect("wal")
        .recover()
        .await
        .expect_err("still refused");
    assert!(matches!(&err, Error::WalRecovery { .. }), "{err:?}");
    cardb
        .execute_batch("DROP TRIGGER no_delete;")
        .expect("drop trigger");
    let report = pool.wal().expect("wal").recover().await.expect("recover");
    assert_eq!(report.recovered.len(), 1, "{report:?}");
    assert_eq!(report.recovered[0].outcome, RecordState::Failed);
    let gone = cars.load(half.clone()).get().await;
    assert!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");
    // Unblocked.
    cars.from_data(
        half,
        Car {
            make: "Again".into(),
            year: 2001,
        },
    )
    .expect("floating")
    .create()
    .await
    .expect("writes go through again");
    pool.close().await;
}

/// A writer that was waiting for an RN's lock while the write holding it failed and could not
/// be rolled back sees the block once it has the lock: it is refused with `WalPending`, not
/// written over a half-applied item that the next recovery would roll back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_waiting_for_the_lock_sees_the_block() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let (pool, id, _cardb) = undo_refusing(dir.path()).await;
    let cars = korm::item::<Car>(&pool);
    let half: Rn<Car> = rn(&format!("[rn][from::cardb]:cars:suv:{id}"));
    let guard = pool.locker().acquire(&half).await.expect("lock");
    // The waiting writers: a create (its plan is known: it checks, then locks) and an update
    // of the item made from data (its before-image is read under the lock first).
    let spawn = |update: bool| {
        let (pool, half) = (pool.clone(), half.clone());
        let late = Car {
            make: "Late".into(),
            year: 2030,
        };
        tokio::spawn(async move {
            let cars = korm::item::<Car>(&pool);
            if update {
                cars.uncommitted(half, late)?.commit().await
            } else {
                cars.from_data(half, late)?.create().await
            }
        })
    };
    let waiting = [spawn(false), spawn(true)];
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(waiting.iter().all(|w| !w.is_finished()), "the writers wait");
    half_applying_tx(&pool, &id, Some(&guard)).await;
    guard.release().await.expect("release");
    for writer in waiting {
        let late = writer.await.expect("no panic");
        assert!(matches!(&late, Err(Error::WalPending { .. })), "{late:?}");
    }
    let stored = cars.load(half).get().await.expect("half-applied, for now");
    assert_eq!(stored.data().make, "Citroen");
    pool.close().await;
}

/// A failed write whose undo succeeds finishes its record as failed, applied nowhere.
#[tokio::test]
async fn a_failed_write_is_recorded_as_failed() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let pool = sqlite_pool(
        dir.path(),
        WalOptions::new("orders").with_retention(WalRetention::Keep),
    )
    .await
    .expect("open");
    let taken = create_car(&pool, "userdb", "Taken").await.expect("create");
    let id = taken.rn().id().expect("id").to_owned();
    let cars = korm::item::<Car>(&pool);
    let mut tx = korm::tx(&pool);
    for layer in ["cardb", "userdb"] {
        tx.create(
            cars.from_data(
                rn(&format!("[rn][from::{layer}]:cars:suv:{id}")),
                Car {
                    make: "Citroen".into(),
                    year: 2015,
                },
            )
            .expect("floating"),
        );
    }
    tx.persist().await.expect_err("userdb refuses");
    let done = pool.wal().expect("wal").done().await.expect("done");
    let states: Vec<_> = done
        .iter()
        .map(|(_, r)| r.as_ref().expect("record").state)
        .collect();
    assert!(states.contains(&RecordState::Failed), "{states:?}");
    let none = cars
        .load(rn(&format!("[rn][from::cardb]:cars:suv:{id}")))
        .get()
        .await;
    assert!(matches!(none, Err(Error::NotFound { .. })), "{none:?}");
    pool.close().await;
}

/// Depot ops recorded: the file's new and old content are payloads of the record, and a
/// file lost in a crash comes back from them.
#[tokio::test]
async fn recorded_files_come_back_from_their_payloads() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let open = |wal: Arc<Faulty>, retention: WalRetention| {
        let dir = dir.path().to_owned();
        async move {
            korm::pool()
                .layer("cardb", korm::layers::sqlite(dir.join("cars.sqlite")))
                .depot("files", korm::depots::local(dir.join("files")))
                .depot("wal", wal as Arc<dyn Depot>)
                .with_wal("wal", WalOptions::new("orders").with_retention(retention))
                .open()
                .await
        }
    };
    let wal = Faulty::local("wal", &dir.path().join("wal")).await;
    let pool = open(Arc::clone(&wal), WalRetention::Keep)
        .await
        .expect("open");
    let invoice_rn: Rn = rn("[rn][depot::files]:invoices:fred:invoice-001.txt");
    let items = korm::item::<WithInvoice>(&pool);
    let car = items
        .from_data(
            rn("[rn][from::cardb]:cars:suv:*"),
            WithInvoice {
                make: "Citroen".into(),
                invoice: korm::depots::file(invoice_rn.clone(), "first")
                    .expect("file")
                    .into(),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    let done = pool.wal().expect("wal").done().await.expect("done");
    let record = done[0].1.as_ref().expect("record");
    assert_eq!(record.depot_ops.len(), 1);
    assert!(record.depot_ops[0].before_payload_rn.is_none());
    let after = record.depot_ops[0].payload_rn.clone().expect("after");
    let after_path = dir.path().join("wal").join(
        korm::depots::DepotKey::from_rn(&rn::<()>(&after))
            .expect("key")
            .as_str(),
    );
    assert_eq!(
        std::fs::read_to_string(&after_path).expect("payload"),
        "first"
    );

    // The record of a replacement stays pending (its removal fails), and the crash
    // "happened" before the file was written.
    pool.close().await;
    let wal = Faulty::local("wal", &dir.path().join("wal")).await;
    let pool = open(Arc::clone(&wal), WalRetention::Delete)
        .await
        .expect("open");
    assert!(
        after_path.exists(),
        "a pool with retention delete leaves the payloads of kept records alone"
    );
    let items = korm::item::<WithInvoice>(&pool);
    wal.fail_deletes.store(true, Ordering::SeqCst);
    items.load(car.rn().clone()).get().await.expect("load");
    assert_eq!(pool_file(&pool, &invoice_rn).await, "first");
    DepotFile::at(invoice_rn.clone())
        .expect("at")
        .update("second")
        .commit(&pool)
        .await
        .expect("replace");
    pool.close().await;
    std::fs::write(
        dir.path().join("files/invoices/fred/invoice-001.txt"),
        "first",
    )
    .expect("put the old content back");
    let pool = open(
        Faulty::local("wal", &dir.path().join("wal")).await,
        WalRetention::Delete,
    )
    .await
    .expect("reopen");
    let report = pool.wal().expect("wal").opened_with().expect("report");
    assert_eq!(report.recovered.len(), 1, "{report:?}");
    assert_eq!(pool_file(&pool, &invoice_rn).await, "second");
    pool.close().await;
}

async fn pool_file(pool: &Pool, rn: &Rn) -> String {
    DepotFile::at(rn.clone())
        .expect("at")
        .text(pool)
        .await
        .expect("file")
}

/// korm 1.5's own records (unsigned, filed under its pool id) replay into an empty layer
/// when the pool accepts unsigned records, and give what korm 1.5 stored; refused otherwise.
#[tokio::test]
async fn korm_1_5_records_recover_only_when_unsigned_records_are_accepted() {
    install_keys();
    let fixture_wal = fixtures().join("wal");
    for accept in [false, true] {
        let dir = tempfile::tempdir().expect("dir");
        let wal = dir.path().join("wal");
        copy_tree(&fixture_wal, &wal);
        let records = wal.join("__korm_wal__/fixtures/e5d9906025b1b75f");
        std::fs::create_dir_all(records.join("pending")).expect("pending");
        for file in json_files(&records.join("done")) {
            std::fs::rename(
                &file,
                records
                    .join("pending")
                    .join(file.file_name().expect("name")),
            )
            .expect("move to pending");
        }
        let pool = korm::pool()
            .layer(
                "cardb",
                korm::layers::sqlite(dir.path().join("cardb.sqlite")),
            )
            .depot("files", korm::depots::local(dir.path().join("files")))
            .depot("wal", korm::depots::local(&wal))
            .with_wal(
                "wal",
                WalOptions::new("fixtures")
                    .with_pool_id("e5d9906025b1b75f")
                    .with_accept_unsigned(accept),
            )
            .open()
            .await
            .expect("open");
        let report = pool.wal().expect("wal").opened_with().expect("report");
        let cars = korm::item::<serde_json::Value>(&pool)
            .query(rn("[rn]:cars:suv:*"))
            .get()
            .await;
        if !accept {
            assert_eq!(report.refused.len(), 7, "{report:?}");
            assert!(report.recovered.is_empty());
            assert!(cars.map(|c| c.is_empty()).unwrap_or(true));
            pool.close().await;
            continue;
        }
        assert_eq!(report.recovered.len(), 7, "{report:?}");
        assert!(report.refused.is_empty());
        compare_with_fixture(&dir.path().join("cardb.sqlite"));
        let invoice = pool_file(
            &pool,
            &rn("[rn][depot::files]:invoices:fred:invoice-001.txt"),
        )
        .await;
        let expected =
            std::fs::read_to_string(fixtures().join("files/invoices/fred/invoice-001.txt"))
                .expect("fixture invoice");
        assert_eq!(invoice, expected);
        pool.close().await;
    }
}

/// Every item row of the fixture's `cardb.sqlite` is in `ours` with the same data columns.
fn compare_with_fixture(ours: &Path) {
    let theirs = rusqlite::Connection::open_with_flags(
        fixtures().join("cardb.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("fixture");
    let ours = rusqlite::Connection::open(ours).expect("ours");
    let tables: Vec<String> = theirs
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '\\_\\_items\\_\\_%' ESCAPE '\\'")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("tables")
        .map(|t| t.expect("name"))
        .collect();
    assert_eq!(tables.len(), 3, "{tables:?}");
    for table in tables {
        let rows = |conn: &rusqlite::Connection| -> Vec<Vec<(String, String)>> {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY \"rnId\""))
                .expect("select");
            let names: Vec<String> = stmt.column_names().iter().map(|n| n.to_string()).collect();
            stmt.query_map([], |row| {
                let mut out = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    if name.starts_with("__korm_") {
                        continue;
                    }
                    let value: rusqlite::types::Value = row.get(i)?;
                    if value != rusqlite::types::Value::Null {
                        out.push((name.clone(), format!("{value:?}")));
                    }
                }
                out.sort();
                Ok(out)
            })
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect()
        };
        assert_eq!(rows(&ours), rows(&theirs), "table {table}");
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
            let mut perms = std::fs::metadata(&target).expect("meta").permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).expect("writable");
        }
    }
}

/// With shared locks, two processes opening the pool at once recover a pending record
/// exactly once (W4): one recovers it, the other finds it finished.
#[tokio::test]
async fn with_shared_locks_one_opener_recovers() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let open = |wal: Arc<Faulty>, owner: &str| {
        let dir = dir.path().to_owned();
        let owner = owner.to_owned();
        async move {
            korm::pool()
                .layer("cardb", korm::layers::sqlite(dir.join("cars.sqlite")))
                .layer("userdb", korm::layers::sqlite(dir.join("users.sqlite")))
                .depot("wal", wal as Arc<dyn Depot>)
                .with_locks("cardb", korm::LockOptions::new().with_owner_id(owner))
                .with_wal("wal", WalOptions::new("orders"))
                .open()
                .await
        }
    };
    let wal = Faulty::local("wal", &dir.path().join("wal")).await;
    let pool = open(Arc::clone(&wal), "first").await.expect("open");
    wal.fail_deletes.store(true, Ordering::SeqCst);
    let car = create_car(&pool, "userdb", "Citroen")
        .await
        .expect("create");
    pool.close().await;
    let users = rusqlite::Connection::open(dir.path().join("users.sqlite")).expect("sqlite");
    users
        .execute("DELETE FROM __items__cars__suv", [])
        .expect("lose the row");
    drop(users);

    let (a, b) = tokio::join!(
        open(Faulty::local("wal", &dir.path().join("wal")).await, "a"),
        open(Faulty::local("wal", &dir.path().join("wal")).await, "b"),
    );
    let (a, b) = (a.expect("a opens"), b.expect("b opens"));
    let recovered = |pool: &Pool| {
        pool.wal()
            .expect("wal")
            .opened_with()
            .expect("report")
            .recovered
            .len()
    };
    assert_eq!(recovered(&a) + recovered(&b), 1, "exactly one recovered it");
    let found = korm::item::<Car>(&a)
        .load(car.rn().clone())
        .get()
        .await
        .expect("the row is back");
    assert_eq!(found.data().make, "Citroen");
    a.close().await;
    b.close().await;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Rich {
    name: String,
    n: i64,
    x: f64,
    whole: f64,
    flag: bool,
    none: Option<String>,
    tags: Vec<String>,
    nested: serde_json::Value,
    empty: Vec<i64>,
    secret: Encrypted<String>,
}

fn rich(name: &str) -> Rich {
    Rich {
        name: name.into(),
        n: -41,
        x: 97.25,
        whole: 3.0,
        flag: true,
        none: None,
        tags: vec!["quarry".into(), "bowling".into()],
        nested: serde_json::json!({"b": {"lat": 34.1, "list": [1, 2.5, "x", null, {"z": false}]}, "a": 1}),
        empty: Vec::new(),
        secret: Encrypted::new("078-05-1120".into()),
    }
}

/// Recovery reads each item back and compares it with the record: on every server backend
/// a finished write must look finished (nothing applied), a write superseded by a later one
/// must be left alone, and a lost row must come back as written.
async fn recovery_compares_rows_as_the_backend_returns_them(
    layer: korm::LayerSpec,
    delete_rows: impl AsyncFn(&str),
) {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let wal = Faulty::local("wal", &dir.path().join("wal")).await;
    let pool = korm::pool()
        .layer("db", layer)
        .depot("wal", Arc::clone(&wal) as Arc<dyn Depot>)
        .with_wal("wal", WalOptions::new("orders"))
        .open()
        .await
        .expect("open");
    wal.fail_deletes.store(true, Ordering::SeqCst);
    let items = korm::item::<Rich>(&pool);
    let a = items
        .from_data(rn("[rn]:things:rich:*"), rich("a"))
        .expect("floating")
        .create()
        .await
        .expect("create");
    let a = a
        .update(|r| {
            r.x = -0.5;
            r.nested = serde_json::json!({"k": [true, {"deep": 1.5}]});
            r.none = Some("now".into());
        })
        .commit()
        .await
        .expect("commit");
    wal.fail_deletes.store(false, Ordering::SeqCst);
    let report = pool.wal().expect("wal").recover().await.expect("recover");
    assert_eq!(report.recovered.len(), 2, "{report:?}");
    let (create, update) = (&report.recovered[0], &report.recovered[1]);
    assert_eq!(
        create.superseded,
        [a.rn().to_string()],
        "the create was superseded by the update: {report:?}"
    );
    assert_eq!(
        update.applied, 0,
        "the update is as the record left it: {report:?}"
    );
    assert!(update.superseded.is_empty(), "{report:?}");

    wal.fail_deletes.store(true, Ordering::SeqCst);
    let b = items
        .from_data(rn("[rn]:things:rich:*"), rich("b"))
        .expect("floating")
        .create()
        .await
        .expect("create");
    wal.fail_deletes.store(false, Ordering::SeqCst);
    delete_rows(b.rn().id().expect("id")).await;
    let report = pool.wal().expect("wal").recover().await.expect("recover");
    assert_eq!(report.recovered.len(), 1, "{report:?}");
    assert_eq!(report.recovered[0].applied, 1, "{report:?}");
    let back = items.load(b.rn().clone()).get().await.expect("b is back");
    let (back, want) = (back.data(), rich("b"));
    assert_eq!(
        (
            &back.name, back.n, back.x, back.whole, back.flag, &back.none
        ),
        (
            &want.name, want.n, want.x, want.whole, want.flag, &want.none
        )
    );
    assert_eq!(
        (&back.tags, &back.nested, &back.empty),
        (&want.tags, &want.nested, &want.empty)
    );
    assert_eq!(back.secret.reveal(), want.secret.reveal());
    let a_now = items.load(a.rn().clone()).get().await.expect("a");
    assert_eq!(a_now.data().x, -0.5, "a was left as the update wrote it");
    pool.close().await;
}

#[tokio::test]
async fn recovery_compares_rows_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("db.sqlite");
    recovery_compares_rows_as_the_backend_returns_them(
        korm::layers::sqlite(&file).into(),
        async |id: &str| {
            let conn = rusqlite::Connection::open(&file).expect("sqlite");
            conn.execute(
                "DELETE FROM __items__things__rich WHERE \"rnId\" = ?1",
                [id],
            )
            .expect("delete");
        },
    )
    .await;
}

#[tokio::test]
async fn recovery_compares_rows_on_postgres() {
    use sqlx::Connection;
    let Some(db) = crate::support::create(crate::support::Server::Postgres).await else {
        return;
    };
    let url = db.url.clone();
    recovery_compares_rows_as_the_backend_returns_them(
        korm::layers::postgres(url.clone()).into(),
        async |id: &str| {
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            sqlx::query("DELETE FROM __items__things__rich WHERE \"rnId\" = $1")
                .bind(id)
                .execute(&mut conn)
                .await
                .expect("delete");
        },
    )
    .await;
}

#[tokio::test]
async fn recovery_compares_rows_on_mariadb() {
    use sqlx::Connection;
    let Some(db) = crate::support::create(crate::support::Server::MySql).await else {
        return;
    };
    let url = db.url.clone();
    recovery_compares_rows_as_the_backend_returns_them(
        korm::layers::mysql(url.clone()).into(),
        async |id: &str| {
            let mut conn = sqlx::MySqlConnection::connect(&url).await.expect("connect");
            sqlx::query("DELETE FROM __items__things__rich WHERE `rnId` = ?")
                .bind(id)
                .execute(&mut conn)
                .await
                .expect("delete");
        },
    )
    .await;
}

/// Payloads whose record is gone (a crash after they were written and before their record
/// was) are removed by recovery; those of kept records stay.
#[tokio::test]
async fn orphan_payloads_are_removed_at_open() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let pool = sqlite_pool(
        dir.path(),
        WalOptions::new("orders").with_retention(WalRetention::Keep),
    )
    .await
    .expect("open");
    let folder = wal_folder(&dir.path().join("wal"), &pool);
    pool.close().await;
    // A record id of korm-rs's shape (`rn::new_id`) made two days ago.
    let made_days_ago = |days: u128| {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
            - days * 24 * 3600 * 1000;
        uuid::Uuid::from_u128((millis << 80) | (korm::rn::new_id().as_u128() & ((1 << 80) - 1)))
    };
    let orphan = folder.join(format!("payloads/{}/0", made_days_ago(2)));
    std::fs::create_dir_all(&orphan).expect("mkdir");
    std::fs::write(orphan.join("after.bin"), "lost").expect("write");
    let kept = folder.join("payloads/6fa459ea-ee8a-3ca4-894e-db77e160355e/0");
    std::fs::create_dir_all(&kept).expect("mkdir");
    std::fs::write(kept.join("before.bin"), "kept").expect("write");
    std::fs::write(
        folder.join("done/6fa459ea-ee8a-3ca4-894e-db77e160355e.json"),
        "{}",
    )
    .expect("write");
    // Payloads stored just now, whose record is not there yet: a write under way (its
    // payloads go first), kept. So are those of an id that tells no time (korm 1.5's).
    let young = folder.join(format!("payloads/{}/0", korm::rn::new_id()));
    // A random id (korm 1.5's) whose first bits read as no time in the window.
    let untimed = folder.join("payloads/ffffffff-ffff-4fff-bfff-ffffffffffff/0");
    // One whose time is past the window's 90 days.
    let ancient = folder.join(format!("payloads/{}/0", made_days_ago(100)));
    for payloads in [&young, &untimed, &ancient] {
        std::fs::create_dir_all(payloads).expect("mkdir");
        std::fs::write(payloads.join("after.bin"), "under way").expect("write");
    }
    // A record's temporary file: a rewrite under way is kept, one left by a crash long ago
    // is removed.
    let fresh_tmp = folder.join("pending/1b4e28ba-2fa1-11d2-883f-0016d3cca427.tmp");
    std::fs::write(&fresh_tmp, "{").expect("write");
    let old_tmp = folder.join("pending/6fa459ea-ee8a-3ca4-894e-db77e160355e.tmp");
    let file = std::fs::File::create(&old_tmp).expect("create");
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .expect("age it");
    drop(file);
    let pool = sqlite_pool(dir.path(), WalOptions::new("orders"))
        .await
        .expect("reopen");
    assert!(!orphan.join("after.bin").exists(), "the orphan is gone");
    assert!(
        kept.join("before.bin").exists(),
        "a done record keeps its payloads"
    );
    assert!(young.join("after.bin").exists(), "young payloads are kept");
    assert!(
        untimed.join("after.bin").exists(),
        "untimed payloads are kept"
    );
    assert!(
        ancient.join("after.bin").exists(),
        "an id older than the window is kept"
    );
    assert!(fresh_tmp.exists(), "a rewrite under way keeps its file");
    assert!(!old_tmp.exists(), "a crash's temporary file is removed");
    pool.close().await;
}

/// The WAL's folders removed under an open pool (a depot reset, an operator clearing it)
/// are made again by the next write.
#[tokio::test]
async fn writes_go_on_after_the_wal_folder_is_removed() {
    install_keys();
    let dir = tempfile::tempdir().expect("dir");
    let pool = sqlite_pool(dir.path(), WalOptions::new("orders"))
        .await
        .expect("open");
    create_car(&pool, "cardb", "Citroen").await.expect("create");
    std::fs::remove_dir_all(dir.path().join("wal").join("__korm_wal__")).expect("rm");
    create_car(&pool, "cardb", "Fiat")
        .await
        .expect("create again");
    let cars = korm::item::<Car>(&pool)
        .query(rn("[rn][from::cardb]:cars:suv:*"))
        .get()
        .await
        .expect("query");
    assert_eq!(cars.len(), 2);
    pool.close().await;
}

/// The WAL on an S3 bucket (records through the depot API): a record left pending there is
/// recovered at the next open.
#[tokio::test]
async fn the_wal_on_s3_recovers_a_pending_record() {
    install_keys();
    let Some(options) = super::meta::s3_options() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let open = |depot: Arc<Faulty>| {
        let dir = dir.path().to_owned();
        async move {
            korm::pool()
                .layer("cardb", korm::layers::sqlite(dir.join("cars.sqlite")))
                .depot("wal", depot as Arc<dyn Depot>)
                .with_wal("wal", WalOptions::new("orders"))
                .open()
                .await
        }
    };
    let s3 = |options: korm::depots::S3Options| async move {
        let depot = korm::depots::S3Depot::open("wal", options)
            .await
            .expect("bucket");
        Arc::new(Faulty {
            inner: Arc::new(depot),
            fail_puts: AtomicBool::new(false),
            fail_deletes: AtomicBool::new(false),
        })
    };
    let wal = s3(options.clone()).await;
    let pool = open(Arc::clone(&wal)).await.expect("open");
    wal.fail_deletes.store(true, Ordering::SeqCst);
    let car = create_car(&pool, "cardb", "Citroen").await.expect("create");
    let pending = pool.wal().expect("wal").pending().await.expect("pending");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(pending[0].1.is_ok(), "{pending:?}");
    pool.close().await;
    let cardb = rusqlite::Connection::open(dir.path().join("cars.sqlite")).expect("sqlite");
    cardb
        .execute("DELETE FROM __items__cars__suv", [])
        .expect("lose the row");
    drop(cardb);

    let pool = open(s3(options).await).await.expect("reopen");
    let report = pool.wal().expect("wal").opened_with().expect("report");
    assert_eq!(report.recovered.len(), 1, "{report:?}");
    let found = korm::item::<Car>(&pool)
        .load(car.rn().clone())
        .get()
        .await
        .expect("the row is back");
    assert_eq!(found.data().make, "Citroen");
    assert!(
        pool.wal()
            .expect("wal")
            .pending()
            .await
            .expect("pending")
            .is_empty()
    );
    pool.close().await;
}
