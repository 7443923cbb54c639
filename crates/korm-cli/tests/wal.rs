//! `korm wal status | show | recover`, run as a user runs them, against a real SQLite file
//! and local depots. The library leaves a pending record behind the way a crash would: its
//! WAL depot refuses the delete that would finish the record.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use korm::depots::{Depot, DepotFile, DepotKey, FileContent, FileStream};
use korm::{Encrypted, Rn, WalOptions, WalRetention};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[path = "../../korm/tests/support/mod.rs"]
mod support;

const KEY: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const SSN: &str = "078-05-1120-cleartext";
const INVOICE: &str = "[rn][depot::files]:invoices:fred:invoice-001.txt";

#[derive(Debug, Serialize, Deserialize)]
struct Car {
    make: String,
    year: i64,
    ssn: Encrypted<String>,
    invoice: DepotFile,
}

/// A WAL depot whose deletes fail on demand: a finished write's record stays pending.
#[derive(Debug)]
struct Undeletable {
    inner: Arc<dyn Depot>,
    fail_deletes: AtomicBool,
}

#[async_trait::async_trait]
impl Depot for Undeletable {
    fn ident(&self) -> &str {
        self.inner.ident()
    }
    async fn put(&self, key: &DepotKey, content: FileContent) -> korm::Result<u64> {
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
            return Err(korm::Error::Depot {
                depot: self.inner.ident().to_owned(),
                key: key.to_string(),
                reason: "injected fault".to_owned(),
            });
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

/// What a pool left in `dir`: one done record, and one pending record (the insert of a car
/// with an encrypted field and an invoice file).
struct Left {
    dir: tempfile::TempDir,
    /// The pending record's id.
    record: String,
    /// The car's id.
    car: String,
}

impl Left {
    fn path(&self, rest: &str) -> PathBuf {
        self.dir.path().join(rest)
    }

    /// The pending record's file.
    fn pending_file(&self) -> PathBuf {
        let pools = self.path("wal/__korm_wal__/orders");
        let pool = std::fs::read_dir(&pools)
            .expect("pools")
            .next()
            .expect("one pool")
            .expect("entry")
            .path();
        pool.join("pending").join(format!("{}.json", self.record))
    }

    /// `--wal-dir`, `--namespace`.
    fn at(&self) -> Vec<String> {
        vec![
            "--wal-dir".into(),
            self.path("wal").display().to_string(),
            "--namespace".into(),
            "orders".into(),
        ]
    }

    /// The pool of `leave`, on the command line.
    fn pool_args(&self) -> Vec<String> {
        vec![
            "--layer".into(),
            format!("cardb=sqlite:{}", self.path("cars.sqlite").display()),
            "--depot".into(),
            format!("files={}", self.path("files").display()),
            "--depot".into(),
            format!("wal={}", self.path("wal").display()),
            "--namespace".into(),
            "orders".into(),
        ]
    }

    /// How many rows the car has in SQLite.
    fn car_rows(&self) -> i64 {
        let db = rusqlite::Connection::open(self.path("cars.sqlite")).expect("sqlite");
        db.query_row(
            "SELECT COUNT(*) FROM __items__cars__suv WHERE rnId = ?1",
            [&self.car],
            |row| row.get(0),
        )
        .expect("count")
    }
}

async fn open(
    dir: &Path,
    wal: impl Into<korm::depots::DepotSpec>,
    retention: WalRetention,
) -> korm::Pool {
    korm::pool()
        .layer("cardb", korm::layers::sqlite(dir.join("cars.sqlite")))
        .depot("files", korm::depots::local(dir.join("files")))
        .depot("wal", wal)
        .with_wal("wal", WalOptions::new("orders").with_retention(retention))
        .open()
        .await
        .expect("open")
}

async fn create(pool: &korm::Pool, make: &str, invoice: &str) -> korm::Item<Car> {
    let invoice: Rn = invoice.parse().expect("invoice rn");
    korm::item::<Car>(pool)
        .from_data(
            "[rn][from::cardb]:cars:suv:*".parse().expect("rn"),
            Car {
                make: make.into(),
                year: 2015,
                ssn: Encrypted::new(SSN.into()),
                invoice: korm::depots::file(invoice, format!("invoice of the {make}"))
                    .expect("file")
                    .into(),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create")
}

async fn leave_a_pending_record() -> Left {
    let dir = tempfile::tempdir().expect("dir");
    let inner = korm::depots::LocalDepot::open("wal", korm::depots::local(dir.path().join("wal")))
        .await
        .expect("local depot");
    let (record, car, _) = leave_records(dir.path(), Arc::new(inner)).await;
    Left { dir, record, car }
}

/// Leaves a done record in the WAL depot `inner` (a retention-keep pool's write) and a pending
/// one (a retention-delete pool's write whose record delete fails), the pool's other files in
/// `dir`; gives the pending record's id, the car's id and the pool id.
async fn leave_records(dir: &Path, inner: Arc<dyn Depot>) -> (String, String, String) {
    let key = korm::crypto::EncryptionKey::from_hex(KEY).expect("key");
    korm::crypto::install(korm::crypto::KeyRing::new(key));
    let wal = Arc::new(Undeletable {
        inner,
        fail_deletes: AtomicBool::new(false),
    });
    let reopen = |retention| open(dir, Arc::clone(&wal) as Arc<dyn Depot>, retention);
    let pool = reopen(WalRetention::Keep).await;
    create(
        &pool,
        "Renault",
        "[rn][depot::files]:invoices:fred:invoice-000.txt",
    )
    .await;
    pool.close().await;
    let pool = reopen(WalRetention::Delete).await;
    // After the open: its recovery deletes the payloads a retention-keep pool left.
    wal.fail_deletes.store(true, Ordering::SeqCst);
    let car = create(&pool, "Citroen", INVOICE).await;
    let wal_of = pool.wal().expect("wal");
    let pending = wal_of.pending().await.expect("pending");
    assert_eq!(pending.len(), 1, "{pending:?}");
    let ids = (
        pending[0].0.clone(),
        car.rn().id().expect("id").to_owned(),
        wal_of.pool_id().to_owned(),
    );
    pool.close().await;
    ids
}

/// What a run of `korm` printed, and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

fn korm(args: &[String]) -> Run {
    korm_with(args, &[])
}

/// [`korm`] with more environment variables (the S3 settings, as `AWS_*`).
fn korm_with(args: &[String], env: &[(&str, String)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_korm"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v.as_str())))
        .env("KORM_ENCRYPTION_KEY", KEY)
        .env_remove("KORM_ENCRYPTION_KEYS_OLD")
        .env_remove("KORM_ENV")
        .env_remove("NODE_ENV")
        .output()
        .expect("run korm");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf-8"),
        stderr: String::from_utf8(out.stderr).expect("utf-8"),
    }
}

fn args(head: &[&str], tail: &[String]) -> Vec<String> {
    head.iter()
        .map(|s| s.to_string())
        .chain(tail.iter().cloned())
        .collect()
}

#[tokio::test]
async fn status_and_show_describe_a_pending_record_and_recover_finishes_it() {
    let left = leave_a_pending_record().await;

    let status = korm(&args(&["wal", "status"], &left.at()));
    assert_eq!(
        status.code, 0,
        "pending records are not an error: {status:?}"
    );
    let text = &status.stdout;
    assert!(text.contains("pending: 1\n"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(&left.record))
        .unwrap_or_else(|| panic!("no line for the record in\n{text}"));
    assert!(
        line.contains("pending") && line.contains("1 op, 1 depot op"),
        "{line}"
    );
    assert!(text.contains(&left.car) && text.contains(INVOICE), "{text}");
    assert!(
        text.contains("refused: 0\n") && text.contains("done: 1\n"),
        "{text}"
    );
    assert!(text.ends_with("status: pending\n"), "{text}");

    let status = korm(&args(&["wal", "status", "--json"], &left.at())).json();
    assert_eq!(status["status"], "pending", "{status}");
    assert_eq!(status["namespace"], "orders");
    assert_eq!(status["pending"][0]["id"], left.record.as_str());
    assert_eq!(status["pending"][0]["state"], "pending");
    assert_eq!(status["pending"][0]["ops"], 1);
    assert_eq!(status["pending"][0]["depotOps"], 1);
    let rns = status["pending"][0]["rns"].as_array().expect("rns");
    assert!(
        rns.iter()
            .any(|rn| rn.as_str().is_some_and(|rn| rn.contains(&left.car)))
    );
    assert!(rns.contains(&Value::from(INVOICE)), "{rns:?}");
    assert_eq!(status["refused"], Value::Array(Vec::new()));
    assert_eq!(status["done"], 1);
    // The pool id found on its own is the one a script can pass back.
    let pool_id = status["poolId"].as_str().expect("pool id").to_owned();
    let again = korm(&args(
        &["wal", "status", "--json", "--pool-id", &pool_id],
        &left.at(),
    ));
    assert_eq!(again.json()["pending"][0]["id"], left.record.as_str());

    let show = korm(&args(&["wal", "show", &left.record], &left.at()));
    assert_eq!(show.code, 0, "{show:?}");
    let text = &show.stdout;
    for expected in [
        format!("record {}  pending", left.record),
        "1 op:".to_owned(),
        "  1. insert ".to_owned(),
        "       make: \"Citroen\"".to_owned(),
        "       year: 2015".to_owned(),
        "       ssn: <encrypted>".to_owned(),
        "1 depot op:".to_owned(),
        format!("  1. put {INVOICE}"),
        "     old content: none (no file)".to_owned(),
    ] {
        assert!(
            text.contains(&expected),
            "{expected:?} missing from\n{text}"
        );
    }
    assert!(text.contains(&left.car), "{text}");
    assert!(!text.contains(SSN), "never decrypted: {text}");

    let show = korm(&args(&["wal", "show", "--json", &left.record], &left.at()));
    assert!(
        !show.stdout.contains(SSN),
        "never decrypted: {}",
        show.stdout
    );
    let record = show.json();
    assert_eq!(record["id"], left.record.as_str());
    assert_eq!(record["state"], "pending");
    assert_eq!(record["ops"][0]["type"], "insert");
    assert_eq!(record["ops"][0]["data"]["make"], "Citroen");
    assert_eq!(record["ops"][0]["data"]["ssn"]["__ENCRYPTED__"], true);
    assert_eq!(record["depotOps"][0]["rn"], INVOICE);

    // As a crash between the record and the layers would leave it: nothing applied.
    let db = rusqlite::Connection::open(left.path("cars.sqlite")).expect("sqlite");
    db.execute(
        "DELETE FROM __items__cars__suv WHERE rnId = ?1",
        [&left.car],
    )
    .expect("undo by hand");
    drop(db);
    let invoice = left.path("files/invoices/fred/invoice-001.txt");
    std::fs::remove_file(&invoice).expect("lose the file");

    let recover = korm(&args(
        &["wal", "recover", "--retention", "keep", "--locks", "cardb"],
        &left.pool_args(),
    ));
    assert_eq!(recover.code, 0, "{recover:?}");
    let text = &recover.stdout;
    assert!(text.contains("recovered: 1\n"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(&left.record))
        .unwrap_or_else(|| panic!("no line for the record in\n{text}"));
    assert!(
        line.contains("brought forward (done), 2 items or files changed, 0 superseded"),
        "{line}"
    );
    assert!(
        text.contains("refused: 0\n") && text.ends_with("status: clean\n"),
        "{text}"
    );
    assert_eq!(left.car_rows(), 1, "the car is back");
    assert_eq!(
        std::fs::read_to_string(&invoice).expect("the invoice is back"),
        "invoice of the Citroen"
    );

    let db = rusqlite::Connection::open(left.path("cars.sqlite")).expect("sqlite");
    let lock_rows: i64 = db
        .query_row("SELECT COUNT(*) FROM __korm_locks__", [], |row| row.get(0))
        .expect("--locks recovered under the shared locks");
    assert_eq!(lock_rows, 0, "and released them");
    drop(db);

    let status = korm(&args(&["wal", "status", "--json"], &left.at()));
    assert_eq!(status.code, 0);
    let status = status.json();
    assert_eq!(status["status"], "clean", "{status}");
    assert_eq!(status["pending"], Value::Array(Vec::new()));
    assert_eq!(status["done"], 2, "--retention keep kept it: {status}");
    let status = korm(&args(&["wal", "status"], &left.at()));
    assert!(status.stdout.contains("pending: 0\n"), "{status:?}");
    assert!(status.stdout.ends_with("status: clean\n"), "{status:?}");
    let show = korm(&args(&["wal", "show", &left.record], &left.at()));
    assert!(
        show.stdout
            .starts_with(&format!("record {}  done\n", left.record)),
        "{show:?}"
    );
    assert!(show.stdout.contains("\ncompleted "), "{show:?}");
}

#[tokio::test]
async fn a_tampered_record_is_refused_by_status_show_and_recover() {
    let left = leave_a_pending_record().await;
    let file = left.pending_file();
    let text = std::fs::read_to_string(&file).expect("record");
    let tampered = text.replacen("\"year\":2015", "\"year\":1900", 1);
    assert_ne!(text, tampered);
    std::fs::write(&file, tampered).expect("tamper");
    let db = rusqlite::Connection::open(left.path("cars.sqlite")).expect("sqlite");
    db.execute(
        "DELETE FROM __items__cars__suv WHERE rnId = ?1",
        [&left.car],
    )
    .expect("undo by hand");
    drop(db);

    let status = korm(&args(&["wal", "status"], &left.at()));
    assert_eq!(
        status.code, 2,
        "a refused record needs a person: {status:?}"
    );
    let text = &status.stdout;
    assert!(
        text.contains("pending: 0\n") && text.contains("refused: 1 "),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains(&left.record))
        .unwrap_or_else(|| panic!("no line for the record in\n{text}"));
    assert!(line.contains("fails its MAC check"), "{line}");
    assert!(
        text.contains(&file.display().to_string()),
        "the file is named: {text}"
    );
    assert!(text.ends_with("status: refused\n"), "{text}");

    let status = korm(&args(&["wal", "status", "--json"], &left.at()));
    assert_eq!(status.code, 2);
    let status = status.json();
    assert_eq!(status["status"], "refused", "{status}");
    assert_eq!(status["refused"][0]["id"], left.record.as_str());
    let reason = status["refused"][0]["reason"].as_str().expect("reason");
    assert!(reason.contains("MAC"), "{reason}");

    let show = korm(&args(&["wal", "show", &left.record], &left.at()));
    assert_eq!(show.code, 1, "{show:?}");
    assert!(
        show.stdout.is_empty(),
        "a refused record is not shown as if valid: {show:?}"
    );
    assert!(
        show.stderr.contains(&left.record) && show.stderr.contains("MAC"),
        "{show:?}"
    );

    let recover = korm(&args(&["wal", "recover", "--json"], &left.pool_args()));
    assert_eq!(recover.code, 2, "{recover:?}");
    let report = recover.json();
    assert_eq!(report["status"], "refused", "{report}");
    assert_eq!(report["recovered"], Value::Array(Vec::new()));
    assert_eq!(report["refused"][0]["id"], left.record.as_str());
    assert!(
        report["refused"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("MAC"))
    );
    assert_eq!(left.car_rows(), 0, "the tampered record was not replayed");
    assert!(
        file.exists(),
        "a refused record stays, for a person to look at"
    );
}

#[tokio::test]
async fn mistakes_are_reported_without_secrets_or_side_effects() {
    let left = leave_a_pending_record().await;

    // A namespace with no records: an error, and no folder made for it.
    let status = korm(&args(
        &["wal", "status"],
        &[
            "--wal-dir".into(),
            left.path("wal").display().to_string(),
            "--namespace".into(),
            "ordres".into(),
        ],
    ));
    assert_eq!(status.code, 1, "{status:?}");
    assert!(status.stderr.contains("\"ordres\""), "{status:?}");
    assert!(!left.path("wal/__korm_wal__/ordres").exists());
    let status = korm(&args(
        &["wal", "status", "--pool-id", "0000000000000000"],
        &left.at(),
    ));
    assert_eq!(status.code, 1, "{status:?}");
    assert!(
        status.stderr.contains("pools: "),
        "the pools there are listed: {status:?}"
    );

    let show = korm(&args(&["wal", "show", "no-such-record"], &left.at()));
    assert_eq!(show.code, 1, "{show:?}");
    assert!(show.stderr.contains("no such record"), "{show:?}");

    // Without the key, records can not be checked.
    let out = Command::new(env!("CARGO_BIN_EXE_korm"))
        .args(args(&["wal", "status"], &left.at()))
        .env_remove("KORM_ENCRYPTION_KEY")
        .env_remove("KORM_ENV")
        .env_remove("NODE_ENV")
        .output()
        .expect("run korm");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("KORM_ENCRYPTION_KEY"), "{stderr}");

    // A URL's password is never printed, whatever is wrong with it.
    for layer in [
        "postgres://korm:s3cret@db.invalid/app",
        "cardb=redis://korm:s3cret@cache",
        "cardb=env:KORM_CLI_TEST_NOT_SET",
    ] {
        let recover = korm(&args(
            &["wal", "recover", "--layer", layer],
            &["--namespace".into(), "orders".into()],
        ));
        assert_eq!(recover.code, 1, "{recover:?}");
        assert!(recover.stderr.starts_with("korm: "), "{recover:?}");
        assert!(!recover.stderr.contains("s3cret"), "{recover:?}");
        assert!(recover.stdout.is_empty(), "{recover:?}");
    }
    // A depot name the pool does not have is korm's own error, and nothing is recovered.
    let recover = korm(&args(
        &["wal", "recover", "--wal", "journal"],
        &left.pool_args(),
    ));
    assert_eq!(recover.code, 1, "{recover:?}");
    assert!(recover.stderr.contains("\"journal\""), "{recover:?}");
    assert!(left.pending_file().exists());
}

/// A WAL in an S3 bucket reads as one in a folder: `status` finds the pool under the
/// namespace by listing the bucket and describes the pending record a failed delete left,
/// `show` prints it, and a namespace with no records names where it looked.
#[tokio::test]
async fn status_and_show_read_a_wal_in_an_s3_bucket() {
    let Some(s3) = support::S3Server::from_env() else {
        return;
    };
    let bucket = support::S3Server::bucket_name();
    let env = s3.aws_env();
    let dir = tempfile::tempdir().expect("dir");
    let options = s3.options(&bucket).with_prefix("prod/eu");
    let inner = korm::depots::S3Depot::open("wal", options)
        .await
        .expect("s3 depot");
    let (record, car_id, pool_id) = leave_records(dir.path(), Arc::new(inner)).await;

    let at = |namespace: &str| {
        vec![
            "--wal-dir".to_owned(),
            format!("s3://{bucket}/prod/eu"),
            "--namespace".to_owned(),
            namespace.to_owned(),
        ]
    };
    let status = korm_with(&args(&["wal", "status", "--json"], &at("orders")), &env);
    assert_eq!(status.code, 0, "{status:?}");
    let status = status.json();
    assert_eq!(status["status"], "pending", "{status}");
    assert_eq!(status["poolId"], pool_id.as_str());
    assert_eq!(status["pending"][0]["id"], record.as_str());
    assert_eq!(status["done"], 1, "{status}");
    let rns = status["pending"][0]["rns"].as_array().expect("rns");
    assert!(
        rns.iter()
            .any(|rn| rn.as_str().is_some_and(|rn| rn.contains(&car_id))),
        "{rns:?}"
    );

    let show = korm_with(
        &args(&["wal", "show", &record, "--json"], &at("orders")),
        &env,
    );
    assert_eq!(show.code, 0, "{show:?}");
    assert_eq!(show.json()["id"], record.as_str());
    assert!(!show.stdout.contains(SSN), "cleartext in {show:?}");

    let none = korm_with(&args(&["wal", "status"], &at("invoices")), &env);
    assert_eq!(none.code, 1, "{none:?}");
    assert!(
        none.stderr
            .contains(&format!("s3://{bucket}/prod/eu/__korm_wal__/invoices")),
        "{none:?}"
    );
}

/// A `--wal-dir` URL that is not a lowercase `s3://` one is refused without repeating it
/// (it may carry credentials).
#[test]
fn a_wal_dir_url_is_never_repeated_in_an_error() {
    for url in [
        "S3://AKIAEXAMPLE:s3cret@bucket/prefix",
        "https://user:s3cret@minio.example/bucket",
    ] {
        let run = korm(&args(
            &["wal", "status", "--wal-dir", url, "--namespace", "app"],
            &[],
        ));
        assert_ne!(run.code, 0, "{run:?}");
        assert!(run.stderr.contains("--wal-dir"), "{run:?}");
        assert!(
            !run.stderr.contains("s3cret") && !run.stdout.contains("s3cret"),
            "{run:?}"
        );
    }
}
