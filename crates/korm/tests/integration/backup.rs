//! Backups (#15): snapshots taken on every backend into a local folder and an S3 bucket,
//! verified (a flipped byte and a cut named by line), and restored into the same or another
//! backend, in replace and merge mode, whole or one item; korm 1.5's own backup restored.

use korm::backup::{Backups, RestoreOptions};
use korm::{Error, LayerSpec, Rn, Unique};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::fixtures;
use super::support::{self, Server, TestDatabase};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Person {
    name: String,
    email: Unique<String>,
    age: i64,
    score: f64,
    active: bool,
    nickname: Option<String>,
    tags: Vec<String>,
    address: Value,
    friend: Option<Rn<Person>>,
}

fn person(i: i64, friend: Option<Rn<Person>>) -> Person {
    Person {
        name: format!("person {i} \"quoted\"\nline"),
        email: Unique::new(format!("p{i}@example.org")),
        age: 20 + i,
        score: 0.5 + i as f64,
        active: i % 2 == 0,
        nickname: (i % 3 == 0).then(|| format!("nick{i}")),
        tags: vec![format!("t{i}"), "shared".into()],
        address: json!({"city": "Bedrock", "n": i, "geo": {"lat": 1.5}}),
        friend,
    }
}

/// A layer on one backend, fresh for the test (the guard drops a server database).
enum Place {
    Sqlite(tempfile::TempDir),
    Server(TestDatabase),
}

impl Place {
    async fn new(backend: &str) -> Option<Place> {
        Some(match backend {
            "sqlite" => Place::Sqlite(tempfile::tempdir().expect("temp dir")),
            "pg" => Place::Server(support::create(Server::Postgres).await?),
            _ => Place::Server(support::create(Server::MySql).await?),
        })
    }

    fn spec(&self) -> LayerSpec {
        match self {
            Place::Sqlite(dir) => korm::layers::sqlite(dir.path().join("db.sqlite")).into(),
            Place::Server(db) => korm::layers::from_url(&db.url).expect("url"),
        }
    }
}

async fn open(layer: LayerSpec, depot: korm::depots::DepotSpec) -> korm::Pool {
    korm::pool()
        .layer("data", layer)
        .depot("backups", depot)
        .open()
        .await
        .expect("open pool")
}

fn coll() -> Rn<Person> {
    "[rn]:people:staff:*".parse().expect("rn")
}

async fn all(pool: &korm::Pool) -> Vec<(String, Person)> {
    items_in(pool, coll()).await
}

/// The people of `collection`, by RN text, sorted.
async fn items_in(pool: &korm::Pool, collection: Rn<Person>) -> Vec<(String, Person)> {
    let mut out: Vec<(String, Person)> = korm::item::<Person>(pool)
        .query(collection)
        .get()
        .await
        .expect("query")
        .into_iter()
        .map(|i| (i.rn().to_string(), i.into_data()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Creates `n` people without references in `collection`; by RN text, sorted.
async fn create_in(pool: &korm::Pool, collection: &Rn<Person>, n: i64) -> Vec<(String, Person)> {
    let mut made = Vec::new();
    for i in 0..n {
        let item = korm::item::<Person>(pool)
            .from_data(collection.clone(), person(i, None))
            .expect("data")
            .create()
            .await
            .expect("create");
        made.push((item.rn().to_string(), item.into_data()));
    }
    made.sort_by(|a, b| a.0.cmp(&b.0));
    made
}

/// A backup of layer `data` of `pool`, into its depot `backups`.
async fn take(pool: &korm::Pool) -> korm::backup::BackupInfo {
    Backups::new(pool, "backups")
        .expect("depot")
        .now("data")
        .await
        .expect("backup")
}

/// Restores `key` into layer `data` of `pool`, replacing what is there.
async fn restore_replace(
    pool: &korm::Pool,
    key: &korm::depots::DepotKey,
) -> korm::backup::RestoreReport {
    Backups::new(pool, "backups")
        .expect("depot")
        .restore(key, "data", RestoreOptions::replace())
        .await
        .expect("restore")
}

/// Writes `n` people (each after the first references the one before).
async fn fill(pool: &korm::Pool, n: i64) {
    let items = korm::item::<Person>(pool);
    let mut last: Option<Rn<Person>> = None;
    for i in 0..n {
        let made = items
            .from_data(coll(), person(i, last.clone()))
            .expect("data")
            .create()
            .await
            .expect("create");
        last = Some(made.rn().clone());
    }
}

/// Takes a backup of a layer on `from`, checks it, and restores it into a fresh layer on
/// `to`: the same items come back.
async fn round_trip(from: &str, to: &str) {
    let (Some(source), Some(target)) = (Place::new(from).await, Place::new(to).await) else {
        return;
    };
    let depot_dir = tempfile::tempdir().expect("temp dir");
    let pool = open(source.spec(), korm::depots::local(depot_dir.path()).into()).await;
    fill(&pool, 25).await;
    let before = all(&pool).await;
    let backups = Backups::new(&pool, "backups").expect("depot");
    let taken = backups.now("data").await.expect("backup");
    // MySQL keeps column kinds in `__korm_meta__`, which the snapshot holds too.
    let korm_tables = u64::from(from == "mysql");
    assert_eq!(taken.tables, 1 + korm_tables);
    assert!(taken.rows >= 25 && (from == "mysql" || taken.rows == 25));
    let listed = backups.list(Some("data")).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, taken.key);
    assert_eq!(listed[0].size, Some(taken.bytes));
    let report = backups.verify(&taken.key).await.expect("verify");
    assert!(report.checksummed);
    assert_eq!((report.rows, report.layer.as_str()), (taken.rows, "data"));
    let expected_type = match from {
        "sqlite" => "sqlite",
        "pg" => "pg",
        _ => "mysql",
    };
    assert_eq!(report.layer_type, expected_type);
    pool.close().await;

    let restored = open(target.spec(), korm::depots::local(depot_dir.path()).into()).await;
    let report = Backups::new(&restored, "backups")
        .expect("depot")
        .restore(&taken.key, "data", RestoreOptions::replace())
        .await
        .expect("restore");
    assert_eq!(report.rows, 25);
    assert_eq!(report.tables, ["__items__people__staff"]);
    let after = all(&restored).await;
    assert_eq!(after, before, "{from} -> {to}");
    // The unique field is still unique after the restore.
    let dup = korm::item::<Person>(&restored)
        .from_data(coll(), person(3, None))
        .expect("data")
        .create()
        .await;
    assert!(
        matches!(dup, Err(Error::UniqueViolation { .. })),
        "{from} -> {to}: {dup:?}"
    );
    restored.close().await;
}

#[tokio::test]
async fn sqlite_backup_restores_into_sqlite() {
    round_trip("sqlite", "sqlite").await;
}

#[tokio::test]
async fn sqlite_backup_restores_into_postgres() {
    round_trip("sqlite", "pg").await;
}

#[tokio::test]
async fn postgres_backup_restores_into_sqlite() {
    round_trip("pg", "sqlite").await;
}

#[tokio::test]
async fn postgres_backup_restores_into_postgres() {
    round_trip("pg", "pg").await;
}

#[tokio::test]
async fn mariadb_backup_restores_into_mariadb() {
    round_trip("mysql", "mysql").await;
}

#[tokio::test]
async fn mariadb_backup_restores_into_sqlite() {
    round_trip("mysql", "sqlite").await;
}

#[tokio::test]
async fn sqlite_backup_restores_into_mariadb() {
    round_trip("sqlite", "mysql").await;
}

/// A collection whose table name is longer than MySQL's 64 characters is stored under its
/// hash (`__items__` and 32 hex digits, as korm 1.5 names it): a backup lists that name from
/// the catalog and a restore writes it back, and the items come back under their RNs (the
/// backup used to end with `InvalidIdentifier` on the hashed name).
#[tokio::test]
async fn a_mariadb_collection_with_a_hashed_table_name_backs_up_and_restores() {
    let (Some(source), Some(target)) = (Place::new("mysql").await, Place::new("mysql").await)
    else {
        return;
    };
    let long: Rn<Person> = format!("[rn]:{}:{}:*", "n".repeat(30), "k".repeat(30))
        .parse()
        .expect("rn");
    let depot_dir = tempfile::tempdir().expect("temp dir");
    let pool = open(source.spec(), korm::depots::local(depot_dir.path()).into()).await;
    let before = create_in(&pool, &long, 3).await;
    let taken = take(&pool).await;
    assert_eq!(taken.tables, 2, "the items' table and __korm_meta__");
    pool.close().await;

    let restored = open(target.spec(), korm::depots::local(depot_dir.path()).into()).await;
    let report = restore_replace(&restored, &taken.key).await;
    assert_eq!(report.rows, 3);
    assert_eq!(report.tables.len(), 1);
    assert!(report.tables[0].len() == 9 + 32, "{:?}", report.tables);
    assert_eq!(items_in(&restored, long).await, before);
    restored.close().await;
}

/// A SQLite snapshot holds a long collection's full table name; restored into MariaDB with
/// replace, the table emptied is the one the collection is stored in (its hash): the
/// restore used to stop at an identifier too long for MySQL.
#[tokio::test]
async fn a_replace_into_mariadb_empties_the_hashed_table_of_a_long_collection() {
    let Some(target) = Place::new("mysql").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let long: Rn<Person> = format!("[rn]:{}:{}:*", "r".repeat(30), "q".repeat(30))
        .parse()
        .expect("rn");
    let depot = || korm::depots::local(dir.path().join("depot")).into();
    let source = open(
        korm::layers::sqlite(dir.path().join("source.sqlite")).into(),
        depot(),
    )
    .await;
    let before = create_in(&source, &long, 2).await;
    let taken = take(&source).await;
    source.close().await;

    let restored = open(target.spec(), depot()).await;
    // An item the replace removes.
    create_in(&restored, &long, 1).await;
    restore_replace(&restored, &taken.key).await;
    assert_eq!(items_in(&restored, long).await, before);
    restored.close().await;
}

/// A backup reads each table's columns from the database, not from its pool's cache: another
/// pool on the same file added a JSON field after this one cached the table, and the snapshot
/// used to hold that column without its kind (the JSON as a plain string), restored as text.
#[tokio::test]
async fn a_backup_knows_columns_another_pool_added() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct V1 {
        name: String,
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Meta {
        tier: String,
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct V2 {
        name: String,
        meta: Option<Meta>,
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let notes: Rn<V1> = "[rn]:notes:all:*".parse().expect("rn");
    let layer = || korm::layers::sqlite(dir.path().join("shared.sqlite")).into();
    let depot = || korm::depots::local(dir.path().join("depot")).into();
    let a = open(layer(), depot()).await;
    korm::item::<V1>(&a)
        .from_data(notes.clone(), V1 { name: "old".into() })
        .expect("data")
        .create()
        .await
        .expect("create");
    // `a` has the table cached now; `b` adds a column.
    let b = open(layer(), depot()).await;
    let made = korm::item::<V2>(&b)
        .from_data(
            notes.clone().cast(),
            V2 {
                name: "new".into(),
                meta: Some(Meta {
                    tier: "gold".into(),
                }),
            },
        )
        .expect("data")
        .create()
        .await
        .expect("create");
    b.close().await;
    let taken = take(&a).await;
    a.close().await;

    let restored = open(
        korm::layers::sqlite(dir.path().join("restored.sqlite")).into(),
        depot(),
    )
    .await;
    restore_replace(&restored, &taken.key).await;
    let back = korm::item::<V2>(&restored)
        .load(made.rn().clone())
        .get()
        .await
        .expect("the JSON field restores as JSON");
    assert_eq!(back.data(), made.data());
    restored.close().await;
}

/// A backup cut short mid-export (here its progress callback panics; a dropped future, a
/// timeout, an aborted scheduler do the same) does not hand its connection back to the pool
/// still inside its read-only snapshot: with one connection, the next write used to fail
/// (PostgreSQL: read-only transaction) or read old data.
async fn a_backup_cut_short_leaves_no_transaction_open(backend: &str) {
    let Some(Place::Server(db)) = Place::new(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = open(db.layer(1), korm::depots::local(dir.path()).into()).await;
    let items = korm::item::<Person>(&pool);
    let mut tx = korm::tx(&pool);
    for i in 0..400 {
        let mut p = person(i, None);
        p.name = "x".repeat(1000);
        tx.create(items.from_data(coll(), p).expect("data"));
    }
    tx.persist().await.expect("fill");
    let cut = {
        let pool = pool.clone();
        tokio::spawn(async move {
            Backups::new(&pool, "backups")
                .expect("depot")
                .with_progress(|_| panic!("cut short mid-export"))
                .now("data")
                .await
        })
    };
    assert!(cut.await.is_err(), "the backup was cut short");
    let made = items
        .from_data(coll(), person(1000, None))
        .expect("data")
        .create()
        .await
        .expect("the next write commits");
    // Read back through another pool: it is there, committed.
    let other = open(db.layer(2), korm::depots::local(dir.path()).into()).await;
    korm::item::<Person>(&other)
        .load(made.rn().clone())
        .get()
        .await
        .expect("committed");
    other.close().await;
    pool.close().await;
}

#[tokio::test]
async fn a_backup_cut_short_leaves_no_transaction_open_on_postgres() {
    a_backup_cut_short_leaves_no_transaction_open("pg").await;
}

#[tokio::test]
async fn a_backup_cut_short_leaves_no_transaction_open_on_mariadb() {
    a_backup_cut_short_leaves_no_transaction_open("mysql").await;
}

#[tokio::test]
async fn backups_live_in_an_s3_bucket_too() {
    let Some(s3) = super::meta::s3_options() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = open(
        korm::layers::sqlite(dir.path().join("a.sqlite")).into(),
        s3.clone().into(),
    )
    .await;
    fill(&pool, 12).await;
    let before = all(&pool).await;
    let backups = Backups::new(&pool, "backups").expect("depot");
    let taken = backups.now("data").await.expect("backup");
    assert!(taken.key.as_str().starts_with("__korm_backups__/data/"));
    assert_eq!(backups.list(None).await.expect("list").len(), 1);
    assert_eq!(backups.verify(&taken.key).await.expect("verify").rows, 12);
    pool.close().await;
    let restored = open(
        korm::layers::sqlite(dir.path().join("b.sqlite")).into(),
        s3.into(),
    )
    .await;
    Backups::new(&restored, "backups")
        .expect("depot")
        .restore(&taken.key, "data", RestoreOptions::merge())
        .await
        .expect("restore");
    assert_eq!(all(&restored).await, before);
    restored.close().await;
}

/// The backup's file on disk.
/// A pool of the SQLite layer `data` (`a.sqlite` in `dir`, holding the pool metadata, which
/// schedules need) and the local depot `backups` (`dir/depot`).
async fn sqlite_meta_pool(dir: &std::path::Path) -> korm::Pool {
    korm::pool()
        .layer("data", korm::layers::sqlite(dir.join("a.sqlite")))
        .depot("backups", korm::depots::local(dir.join("depot")))
        .with_meta("data")
        .open()
        .await
        .expect("open")
}

fn file_of(root: &std::path::Path, key: &korm::depots::DepotKey) -> std::path::PathBuf {
    root.join(key.as_str())
}

#[tokio::test]
async fn verify_names_the_line_of_a_flipped_byte_and_a_cut_and_restore_refuses_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let depot = dir.path().join("depot");
    let pool = sqlite_meta_pool(dir.path()).await;
    fill(&pool, 5).await;
    let backups = Backups::new(&pool, "backups").expect("depot");
    let taken = backups.now("data").await.expect("backup");
    // With pool metadata, the pool's table is in the snapshot, first.
    assert_eq!(taken.tables, 2);
    let path = file_of(&depot, &taken.key);
    let good = std::fs::read(&path).expect("read backup");
    let text = String::from_utf8(good.clone()).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with(r#"{"t":"header","version":2,"#));
    assert_eq!(
        lines[1], r#"{"t":"table","name":"__korm_pool__"}"#,
        "korm's pool table comes first"
    );
    assert!(lines.last().unwrap().starts_with(r#"{"t":"end","#));
    // The last row of the item table: its age digit flipped, still valid JSON.
    let row_line = lines
        .iter()
        .rposition(|l| l.starts_with(r#"{"t":"row","table":"__items__people__staff""#))
        .expect("a row");
    let at = text
        .lines()
        .take(row_line)
        .map(|l| l.len() + 1)
        .sum::<usize>()
        + lines[row_line].find("\"age\":2").expect("age")
        + 7;
    let mut flipped = good.clone();
    flipped[at] ^= 0x01;
    std::fs::write(&path, &flipped).expect("write");
    match backups.verify(&taken.key).await {
        Err(Error::BackupInvalid { line, reason, .. }) => {
            // Named: the endTable that closes the altered row's table.
            assert_eq!(line as usize, row_line + 2, "{reason}");
            assert!(reason.contains("__items__people__staff"), "{reason}");
        }
        other => panic!("a flipped byte went unnoticed: {other:?}"),
    }
    // A restore of the altered file writes nothing.
    let other = korm::pool()
        .layer("data", korm::layers::sqlite(dir.path().join("b.sqlite")))
        .depot("backups", korm::depots::local(&depot))
        .open()
        .await
        .expect("open");
    let refused = Backups::new(&other, "backups")
        .expect("depot")
        .restore(&taken.key, "data", RestoreOptions::replace())
        .await;
    assert!(matches!(refused, Err(Error::BackupInvalid { .. })));
    assert!(all(&other).await.is_empty());

    // Cut in the middle of a line, and cut at a line's end: both are truncated.
    std::fs::write(&path, &good[..good.len() / 2]).expect("write");
    match backups.verify(&taken.key).await {
        Err(Error::BackupInvalid { reason, .. }) => {
            assert!(reason.contains("truncated"), "{reason}")
        }
        other => panic!("a cut went unnoticed: {other:?}"),
    }
    let whole_lines = text.len() - lines.last().unwrap().len() - 1;
    std::fs::write(&path, &good[..whole_lines]).expect("write");
    match backups.verify(&taken.key).await {
        Err(Error::BackupInvalid { line, reason, .. }) => {
            assert!(reason.contains("without its end event"), "{reason}");
            assert_eq!(line as usize, lines.len() - 1);
        }
        other => panic!("a missing end went unnoticed: {other:?}"),
    }
    let refused = Backups::new(&other, "backups")
        .expect("depot")
        .restore(&taken.key, "data", RestoreOptions::replace())
        .await;
    assert!(matches!(refused, Err(Error::BackupInvalid { .. })));
    assert!(all(&other).await.is_empty());
    // The good file verifies.
    std::fs::write(&path, &good).expect("write");
    backups.verify(&taken.key).await.expect("verify");
    other.close().await;
    pool.close().await;
}

#[tokio::test]
async fn merge_keeps_other_rows_replace_does_not_and_only_plays_one_item() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = open(
        korm::layers::sqlite(dir.path().join("a.sqlite")).into(),
        korm::depots::local(dir.path().join("depot")).into(),
    )
    .await;
    fill(&pool, 3).await;
    let before = all(&pool).await;
    let backups = Backups::new(&pool, "backups").expect("depot");
    let taken = backups.now("data").await.expect("backup");
    let items = korm::item::<Person>(&pool);
    let load = |rn: &str| items.load(rn.parse().expect("rn"));
    // Change the first, delete the second, add a new one.
    let first = load(&before[0].0).get().await.expect("first");
    first.update(|p| p.age = 99).commit().await.expect("update");
    load(&before[1].0)
        .get()
        .await
        .expect("second")
        .delete()
        .await
        .expect("delete");
    items
        .from_data(coll(), person(7, None))
        .expect("data")
        .create()
        .await
        .expect("create");

    // One item only: the first comes back; the deleted one stays deleted.
    let one = RestoreOptions::merge()
        .with_only(&before[0].0)
        .expect("prefix");
    let report = backups.restore(&taken.key, "data", one).await.expect("one");
    assert_eq!(report.rows, 1);
    let now = all(&pool).await;
    assert_eq!(now.len(), 3);
    assert_eq!(
        now.iter().find(|(rn, _)| *rn == before[0].0).unwrap().1,
        before[0].1
    );
    assert!(!now.iter().any(|(rn, _)| *rn == before[1].0));

    // Another namespace only: nothing of this one.
    let report = backups
        .restore(
            &taken.key,
            "data",
            RestoreOptions::merge().with_only("cars").expect("prefix"),
        )
        .await
        .expect("none");
    assert_eq!((report.rows, report.tables.len()), (0, 0));

    // Merge: the deleted one back, the new one kept.
    backups
        .restore(&taken.key, "data", RestoreOptions::merge())
        .await
        .expect("merge");
    let now = all(&pool).await;
    assert_eq!(now.len(), 4);
    assert!(now.iter().any(|(_, p)| p.age == 27));

    // Replace: exactly the snapshot.
    backups
        .restore(
            &taken.key,
            "data",
            RestoreOptions::replace()
                .with_only("people:staff")
                .expect("prefix"),
        )
        .await
        .expect("replace");
    assert_eq!(all(&pool).await, before);
    pool.close().await;
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct FixtureUser {
    first_name: String,
    username: String,
    age: i64,
    score: f64,
    active: Value,
    nickname: Option<String>,
    tags: Vec<String>,
    address: Value,
    email: String,
    password: Value,
    ssn: Value,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct FixtureCar {
    make: String,
    owner: Rn<FixtureUser>,
    previous_owners: Vec<Rn<FixtureUser>>,
    registration_number: Value,
    invoice: Option<Rn>,
    meta: Value,
}

/// The fixture's backup in a local depot of its own (a copy: nothing may change the fixture).
fn fixture_depot() -> (tempfile::TempDir, korm::depots::DepotKey) {
    let dir = tempfile::tempdir().expect("temp dir");
    let from = fixtures().join("backups/__korm_backups__/cardb/20261126T161358Z");
    let name = std::fs::read_dir(&from)
        .expect("fixture backup")
        .next()
        .expect("one file")
        .expect("entry")
        .file_name();
    let to = dir.path().join("__korm_backups__/cardb/20261126T161358Z");
    std::fs::create_dir_all(&to).expect("mkdir");
    std::fs::copy(from.join(&name), to.join(&name)).expect("copy");
    let key = korm::depots::DepotKey::parse(&format!(
        "__korm_backups__/cardb/20261126T161358Z/{}",
        name.to_string_lossy()
    ))
    .expect("key");
    (dir, key)
}

async fn fixture_restores_into(backend: &str) {
    let Some(place) = Place::new(backend).await else {
        return;
    };
    let (depot, key) = fixture_depot();
    let pool = korm::pool()
        .layer("cardb", place.spec())
        .depot("backups", korm::depots::local(depot.path()))
        .open()
        .await
        .expect("open");
    let backups = Backups::new(&pool, "backups").expect("depot");
    let listed = backups.list(None).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].layer, "cardb");
    let report = backups.verify(&key).await.expect("verify");
    // korm 1.5 writes no checksums: the file is checked for shape and completeness.
    assert!(!report.checksummed);
    assert_eq!(
        (report.tables, report.rows, report.layer_type.as_str()),
        (4, 6, "sqlite")
    );
    let restored = backups
        .restore(&key, "cardb", RestoreOptions::replace())
        .await
        .expect("restore");
    assert_eq!(restored.rows, 5);
    assert_eq!(restored.skipped, ["__korm_pool__"]);

    let m = super::manifest("manifest.json");
    let items = &m["items"];
    let fred: Rn<FixtureUser> = items["fred"]["rn"].as_str().unwrap().parse().unwrap();
    let f = korm::item::<FixtureUser>(&pool)
        .load(fred.clone())
        .get()
        .await
        .unwrap_or_else(|e| panic!("{backend}: fred: {e}"))
        .into_data();
    assert_eq!(
        (f.first_name.as_str(), f.username.as_str(), f.age, f.score),
        ("Fred", "freddie", 41, 97.5)
    );
    // korm 1.5's SQLite rows do not say a 0/1 column is a boolean: without a table to
    // restore into, it becomes an integer column (docs/design.md, Backups).
    assert!(
        f.active == json!(1) || f.active == json!(true),
        "{:?}",
        f.active
    );
    assert_eq!(
        (f.nickname, f.tags),
        (None, vec!["quarry".to_owned(), "bowling".to_owned()])
    );
    assert_eq!(f.address["geo"]["lat"], json!(34.1));
    assert_eq!(f.email, "fred@bedrock.example");
    // Encrypted fields stay ciphertext: the envelope, never the cleartext.
    assert_eq!(f.ssn["__ENCRYPTED__"], true);
    assert!(
        !f.ssn
            .to_string()
            .contains(items["fred"]["ssn"].as_str().unwrap())
    );
    assert_eq!(f.password["type"], "password");

    let car: Rn<FixtureCar> = items["car"]["rn"].as_str().unwrap().parse().unwrap();
    let c = korm::item::<FixtureCar>(&pool)
        .load(car)
        .get()
        .await
        .unwrap_or_else(|e| panic!("{backend}: car: {e}"))
        .into_data();
    assert_eq!(c.make, "Citroen");
    assert_eq!(c.owner.as_str(), fred.as_str());
    assert_eq!(c.previous_owners.len(), 1);
    assert_eq!(c.registration_number["__ENCRYPTED__"], true);
    assert_eq!(
        c.invoice.map(|r| r.to_string()).as_deref(),
        Some("[rn][depot::files]:invoices:fred:invoice-001.txt")
    );
    assert_eq!(c.meta["colours"][0], "red");
    // The unique field's fingerprint was written again: a duplicate email is refused.
    let mut dup = f_clone(&pool, &fred).await;
    dup.username = "other".into();
    let refused = korm::item::<FixtureUser>(&pool)
        .from_data("[rn]:users:freetier:*".parse().unwrap(), dup)
        .expect("data")
        .create()
        .await;
    assert!(refused.is_err(), "{backend}: {refused:?}");
    pool.close().await;
}

async fn f_clone(pool: &korm::Pool, rn: &Rn<FixtureUser>) -> FixtureUser {
    korm::item::<FixtureUser>(pool)
        .load(rn.clone())
        .get()
        .await
        .expect("load")
        .into_data()
}

#[tokio::test]
async fn korm_1_5_backup_restores_into_sqlite() {
    fixture_restores_into("sqlite").await;
}

#[tokio::test]
async fn korm_1_5_backup_restores_into_postgres() {
    fixture_restores_into("pg").await;
}

#[tokio::test]
async fn korm_1_5_backup_restores_into_mariadb() {
    fixture_restores_into("mysql").await;
}

/// Two instances (two pools on one database) run the same schedule: each run happens once;
/// retention keeps the newest two.
async fn schedule_runs_once(backend: &str) {
    use korm::backup::schedule::{Retention, Scheduler};
    let Some(place) = Place::new(backend).await else {
        return;
    };
    let depot = tempfile::tempdir().expect("temp dir");
    let open_meta = || async {
        korm::pool()
            .layer("data", place.spec())
            .depot("backups", korm::depots::local(depot.path()))
            .with_meta("data")
            .open()
            .await
            .expect("open")
    };
    let a = open_meta().await;
    let b = open_meta().await;
    fill(&a, 2).await;
    let scheduler = |pool: &korm::Pool| {
        Scheduler::new(pool, "backups")
            .expect("scheduler")
            .schedule("*", "every day at 02:00 starting now")
            .expect("schedule")
            .with_retention(Retention::NewestPerLayer(2))
    };
    let (sa, sb) = (scheduler(&a), scheduler(&b));
    let t0: jiff::Timestamp = "2030-01-01T12:00:00Z".parse().unwrap();
    let (ra, rb) = tokio::join!(sa.run_due(t0), sb.run_due(t0));
    let (ra, rb) = (ra.expect("a"), rb.expect("b"));
    assert_eq!(ra.len() + rb.len(), 1, "{backend}: one instance runs it");
    // Not due again until the next 02:00.
    let later = t0.checked_add(jiff::SignedDuration::from_hours(1)).unwrap();
    let (ra, rb) = tokio::join!(sa.run_due(later), sb.run_due(later));
    assert_eq!(ra.expect("a").len() + rb.expect("b").len(), 0);
    for day in 2..=4 {
        let at: jiff::Timestamp = format!("2030-01-0{day}T02:00:00Z").parse().unwrap();
        let (ra, rb) = tokio::join!(sa.run_due(at), sb.run_due(at));
        assert_eq!(
            ra.expect("a").len() + rb.expect("b").len(),
            1,
            "{backend} day {day}"
        );
    }
    let kept = Backups::new(&a, "backups")
        .expect("depot")
        .list(Some("data"))
        .await
        .expect("list");
    assert_eq!(kept.len(), 2, "{backend}: retention keeps the newest two");
    // A pool without metadata can not schedule (B1).
    let plain = korm::pool()
        .layer("data", korm::layers::sqlite_memory())
        .depot("backups", korm::depots::local(depot.path()))
        .open()
        .await
        .expect("open");
    assert!(Scheduler::new(&plain, "backups").is_err());
    a.close().await;
    b.close().await;
}

/// Retention after a scheduled run deletes only backups older than the one the run took: a
/// newer one is another run's (two schedules of one layer due together), which prunes for
/// itself. Each run used to keep only its own, so two runs with `newest 1` deleted each
/// other's backup and the layer was left with none.
#[tokio::test]
async fn retention_leaves_backups_newer_than_the_run_alone() {
    use korm::backup::schedule::{Retention, Scheduler};
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = sqlite_meta_pool(dir.path()).await;
    fill(&pool, 2).await;
    // What other runs left: one long ago, one (another instance's, its clock ahead) after
    // this run's.
    let folder = dir.path().join("depot/__korm_backups__/data");
    for taken_at in ["20200101T000000Z", "20991231T000000Z"] {
        std::fs::create_dir_all(folder.join(taken_at)).expect("mkdir");
        std::fs::write(folder.join(taken_at).join("backup-data.ndjson"), "{}\n").expect("write");
    }
    let ran = Scheduler::new(&pool, "backups")
        .expect("scheduler")
        .schedule("data", "every day at 02:00 starting now")
        .expect("schedule")
        .with_retention(Retention::NewestPerLayer(1))
        .run_due("2030-01-01T12:00:00Z".parse().unwrap())
        .await
        .expect("run");
    assert_eq!(ran.len(), 1);
    let left: Vec<String> = Backups::new(&pool, "backups")
        .expect("depot")
        .list(Some("data"))
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.taken_at)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!left.contains(&"20200101T000000Z".to_owned()), "{left:?}");
    assert!(left.contains(&"20991231T000000Z".to_owned()), "{left:?}");

    // `newer than N days` with N beyond time's range keeps everything (it used to take the
    // limit as now, and delete every backup but the new one).
    let ran = Scheduler::new(&pool, "backups")
        .expect("scheduler")
        .schedule("data", "every day at 02:00 starting now")
        .expect("schedule")
        .with_retention(Retention::NewerThanDays(u32::MAX))
        .run_due("2030-01-02T02:00:00Z".parse().unwrap())
        .await
        .expect("run");
    assert_eq!(ran.len(), 1);
    let left = Backups::new(&pool, "backups")
        .expect("depot")
        .list(Some("data"))
        .await
        .expect("list");
    assert_eq!(left.len(), 3, "{left:?}");
    pool.close().await;
}

/// A run cut short (its process dies mid-run: here its task panics after the backup, before
/// the run ends) leaves its schedule due again an hour later, not at its next slot: the claim
/// used to move the schedule to its next run before the backups, so a weekly backup lost
/// with its process was not tried again for a week.
#[tokio::test]
async fn a_run_cut_short_is_due_again_within_the_hour() {
    use korm::backup::schedule::Scheduler;
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = sqlite_meta_pool(dir.path()).await;
    fill(&pool, 2).await;
    let weekly = |pool: &korm::Pool| {
        Scheduler::new(pool, "backups")
            .expect("scheduler")
            .schedule("data", "every week on monday at 02:00 starting now")
            .expect("schedule")
    };
    let t0: jiff::Timestamp = "2030-01-01T12:00:00Z".parse().unwrap();
    let dying = weekly(&pool).on_backup(|_| panic!("the process dies mid-run"));
    let run = tokio::spawn(async move { dying.run_due(t0).await });
    assert!(run.await.is_err(), "the run died");
    // Not due again at once (a run may be under way)...
    let soon = t0.checked_add(jiff::SignedDuration::from_mins(30)).unwrap();
    assert_eq!(weekly(&pool).run_due(soon).await.expect("run").len(), 0);
    // ...but within the hour, not next Monday.
    let later = t0.checked_add(jiff::SignedDuration::from_mins(61)).unwrap();
    assert_eq!(weekly(&pool).run_due(later).await.expect("run").len(), 1);
    // A whole run moves it on to its next slot.
    let after = later
        .checked_add(jiff::SignedDuration::from_mins(61))
        .unwrap();
    assert_eq!(weekly(&pool).run_due(after).await.expect("run").len(), 0);
    pool.close().await;
}

#[tokio::test]
async fn a_schedule_runs_once_across_instances_on_sqlite() {
    schedule_runs_once("sqlite").await;
}

#[tokio::test]
async fn a_schedule_runs_once_across_instances_on_postgres() {
    schedule_runs_once("pg").await;
}

#[tokio::test]
async fn a_schedule_runs_once_across_instances_on_mariadb() {
    schedule_runs_once("mysql").await;
}

/// A crafted backup: a table name with SQL in it is left out, a column name that is not a
/// safe field is refused with a typed error, and nothing runs as SQL.
/// A SQLite pool holding two people, and the folder of its depot crafted backups go into.
struct Crafted {
    pool: korm::Pool,
    folder: std::path::PathBuf,
    header: Value,
    _dir: tempfile::TempDir,
}

impl Crafted {
    async fn new() -> Crafted {
        let dir = tempfile::tempdir().expect("temp dir");
        let depot = dir.path().join("depot");
        let folder = depot.join("__korm_backups__/data/20300101T000000Z");
        std::fs::create_dir_all(&folder).expect("mkdir");
        let pool = open(
            korm::layers::sqlite(dir.path().join("a.sqlite")).into(),
            korm::depots::local(&depot).into(),
        )
        .await;
        fill(&pool, 2).await;
        Crafted {
            pool,
            folder,
            header: json!({"t":"header","version":2,"createdAt":"2030-01-01T00:00:00.000Z","layerIdent":"data","layerType":"sqlite"}),
            _dir: dir,
        }
    }

    /// Writes `lines` as the backup file `name`; gives its key.
    fn write(&self, name: &str, lines: &[Value]) -> korm::depots::DepotKey {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(self.folder.join(name), text).expect("write");
        korm::depots::DepotKey::parse(&format!("__korm_backups__/data/20300101T000000Z/{name}"))
            .expect("key")
    }
}

#[tokio::test]
async fn a_crafted_backup_runs_no_sql() {
    let crafted = Crafted::new().await;
    let (pool, header, write) = (&crafted.pool, &crafted.header, |n: &str, l: &[Value]| {
        crafted.write(n, l)
    });
    let evil = "__items__people__staff\"; DROP TABLE \"__items__people__staff\"; --";
    let key = write(
        "backup-evil-table.ndjson",
        &[
            header.clone(),
            json!({"t":"table","name":evil}),
            json!({"t":"row","table":evil,"row":{"rnId":"x"}}),
            json!({"t":"endTable","name":evil}),
            json!({"t":"end"}),
        ],
    );
    let backups = Backups::new(pool, "backups").expect("depot");
    let report = backups
        .restore(&key, "data", RestoreOptions::replace())
        .await
        .expect("restore");
    assert_eq!(report.skipped, [evil]);
    assert_eq!(all(pool).await.len(), 2, "the table is still there, whole");

    let table = "__items__people__staff";
    for column in ["a\"b", "__korm_x", "rnid"] {
        let key = write(
            "backup-evil-column.ndjson",
            &[
                header.clone(),
                json!({"t":"table","name":table}),
                json!({"t":"row","table":table,"row":{"rnId":"6f1c1f5e-0d47-4c55-9d6f-1d1b1c1e1f10", column: 1}}),
                json!({"t":"endTable","name":table}),
                json!({"t":"end"}),
            ],
        );
        for options in [RestoreOptions::merge(), RestoreOptions::replace()] {
            let refused = backups.restore(&key, "data", options).await;
            assert!(
                matches!(refused, Err(Error::InvalidIdentifier { .. })),
                "{column}: {refused:?}"
            );
            assert_eq!(
                all(pool).await.len(),
                2,
                "{column}: the table is kept whole"
            );
        }
    }
    pool.close().await;
}

/// A replace refuses, before it empties a table, what it could not write: a hostile column
/// or a row without its id after good rows, and a column the layer stores as another kind.
#[tokio::test]
async fn a_replace_refuses_a_bad_row_before_it_empties_the_table() {
    let crafted = Crafted::new().await;
    let (pool, header) = (&crafted.pool, &crafted.header);
    let before = all(pool).await;
    let backups = Backups::new(pool, "backups").expect("depot");
    let table = "__items__people__staff";
    let id = |i: u32| format!("6f1c1f5e-0d47-4c55-9d6f-1d1b1c1e{i:04}");
    let good = (0..600).map(|i| json!({"t":"row","table":table,"row":{"rnId":id(i),"name":"n"}}));
    let cases: [(&str, Value); 4] = [
        ("hostile column", json!({"rnId": id(9999), "a\"b": 1})),
        ("no id", json!({"name": "m"})),
        // `age` is an integer column: text in it would be refused by the layer.
        ("another kind", json!({"rnId": id(9999), "age": "forty"})),
        // `score` is a double column: a whole number a double can not hold exactly.
        (
            "inexact",
            json!({"rnId": id(9999), "score": 9_007_199_254_740_993_i64}),
        ),
    ];
    for (case, last) in cases {
        let mut lines = vec![header.clone(), json!({"t":"table","name":table})];
        lines.extend(good.clone());
        lines.push(json!({"t":"row","table":table,"row":last}));
        lines.push(json!({"t":"endTable","name":table}));
        lines.push(json!({"t":"end"}));
        let key = crafted.write("backup-bad.ndjson", &lines);
        let refused = backups
            .restore(&key, "data", RestoreOptions::replace())
            .await;
        match (case, &refused) {
            ("hostile column", Err(Error::InvalidIdentifier { .. }))
            | ("no id", Err(Error::Decode { .. })) => {}
            ("another kind", Err(Error::SchemaMismatch { column, .. })) => {
                assert_eq!(column, "age");
            }
            ("inexact", Err(Error::SchemaMismatch { column, .. })) => {
                assert_eq!(column, "score");
            }
            _ => panic!("{case}: {refused:?}"),
        }
        assert_eq!(all(pool).await, before, "{case}: the table is kept whole");
    }
    pool.close().await;
}

/// A backup that fails (the depot can not take layer `a`'s file) does not stop the other
/// layers of a `*` schedule: `b` is backed up, and the run reports `a`'s error; the run is
/// due again five minutes later.
#[tokio::test]
async fn a_failed_backup_does_not_stop_the_others_of_its_run() {
    use korm::backup::schedule::Scheduler;
    let dir = tempfile::tempdir().expect("temp dir");
    let depot = dir.path().join("depot");
    let pool = korm::pool()
        .layer("a", korm::layers::sqlite(dir.path().join("a.sqlite")))
        .layer("b", korm::layers::sqlite(dir.path().join("b.sqlite")))
        .depot("backups", korm::depots::local(&depot))
        .with_meta("b")
        .open()
        .await
        .expect("open");
    // A file where layer a's backup folder goes.
    std::fs::create_dir_all(depot.join("__korm_backups__")).expect("mkdir");
    std::fs::write(depot.join("__korm_backups__/a"), "in the way").expect("block");
    let scheduler = Scheduler::new(&pool, "backups")
        .expect("scheduler")
        .schedule("*", "every day at 02:00 starting now")
        .expect("schedule");
    let now = jiff::Timestamp::now();
    let run = scheduler.run_due(now).await;
    assert!(run.is_err(), "a's failure is reported: {run:?}");
    let backups = Backups::new(&pool, "backups").expect("depot");
    let layers = async || {
        let listed = backups.list(None).await.expect("list");
        let mut layers: Vec<String> = listed.into_iter().map(|b| b.layer).collect();
        layers.sort();
        layers
    };
    assert_eq!(layers().await, ["b"], "b was backed up all the same");
    // The missed run is due again five minutes later, not at tomorrow's 02:00.
    std::fs::remove_file(depot.join("__korm_backups__/a")).expect("unblock");
    let early = now + jiff::SignedDuration::from_mins(4);
    assert!(scheduler.run_due(early).await.expect("not due").is_empty());
    let retried = scheduler
        .run_due(now + jiff::SignedDuration::from_mins(6))
        .await
        .expect("the retry");
    let mut again: Vec<&str> = retried.iter().map(|b| b.layer.as_str()).collect();
    again.sort_unstable();
    assert_eq!(again, ["a", "b"]);
    assert_eq!(layers().await, ["a", "b", "b"]);
    pool.close().await;
}

/// A started scheduler takes a due backup on its own, once.
#[tokio::test]
async fn a_started_scheduler_takes_a_due_backup_on_its_own() {
    use korm::backup::schedule::Scheduler;
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = sqlite_meta_pool(dir.path()).await;
    fill(&pool, 1).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = Scheduler::new(&pool, "backups")
        .expect("scheduler")
        .schedule("data", "every day at 02:00 starting now")
        .expect("schedule")
        .on_backup(move |info| {
            let _ = tx.send(info.key.clone());
        })
        .start(std::time::Duration::from_millis(20));
    let key = tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
        .await
        .expect("a backup within 20 s")
        .expect("key");
    // Polled several more times: not due again until 02:00.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    handle.abort();
    assert!(rx.try_recv().is_err(), "one run only");
    let listed = Backups::new(&pool, "backups")
        .expect("depot")
        .list(None)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, key);
    pool.close().await;
}

/// A started scheduler does not keep its pool alive: once the application drops its last
/// clone of the pool (without `close`), the task stops, and with it the pool's connections
/// (it looped forever, holding the pool open).
#[tokio::test]
async fn a_started_scheduler_stops_when_the_pool_is_dropped() {
    use korm::backup::schedule::Scheduler;
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = sqlite_meta_pool(dir.path()).await;
    let handle = Scheduler::new(&pool, "backups")
        .expect("scheduler")
        .schedule("data", "every day at 02:00")
        .expect("schedule")
        .start(std::time::Duration::from_millis(10));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!handle.is_finished(), "runs while the pool is in use");
    drop(pool);
    tokio::time::timeout(std::time::Duration::from_secs(10), handle)
        .await
        .expect("the task stops once the pool is dropped")
        .expect("task");
}

/// An in-memory SQLite layer is read on its own connection: backed up and restored whole.
#[tokio::test]
async fn an_in_memory_sqlite_layer_is_backed_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = open(
        korm::layers::sqlite_memory().into(),
        korm::depots::local(dir.path()).into(),
    )
    .await;
    fill(&pool, 700).await;
    let before = all(&pool).await;
    let backups = Backups::new(&pool, "backups").expect("depot");
    let taken = backups.now("data").await.expect("backup");
    assert_eq!(taken.rows, 700);
    // The layer still answers after the backup held its connection.
    assert_eq!(all(&pool).await.len(), 700);
    pool.close().await;
    let restored = open(
        korm::layers::sqlite(dir.path().join("b.sqlite")).into(),
        korm::depots::local(dir.path()).into(),
    )
    .await;
    let report = Backups::new(&restored, "backups")
        .expect("depot")
        .restore(&taken.key, "data", RestoreOptions::replace())
        .await
        .expect("restore");
    assert_eq!(report.rows, 700);
    assert_eq!(all(&restored).await, before);
    restored.close().await;
}

/// korm-rs's snapshot of korm 1.5's fixture database has korm 1.5's own backup's shape:
/// the same events, tables in the same order and the same rows, value for value; only the
/// fields korm-rs adds (column kinds, the trailer) and the header's time differ.
#[tokio::test]
async fn a_snapshot_of_the_fixture_database_matches_korm_1_5s_backup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("cardb.sqlite");
    std::fs::copy(fixtures().join("cardb.sqlite"), &db).expect("copy");
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(&db))
        .depot("backups", korm::depots::local(dir.path().join("depot")))
        .open()
        .await
        .expect("open");
    let taken = Backups::new(&pool, "backups")
        .expect("depot")
        .now("cardb")
        .await
        .expect("backup");
    pool.close().await;
    let ours =
        std::fs::read_to_string(dir.path().join("depot").join(taken.key.as_str())).expect("read");
    let (their_depot, key) = fixture_depot();
    let theirs = std::fs::read_to_string(their_depot.path().join(key.as_str())).expect("read");
    let strip = |text: &str| -> Vec<Value> {
        text.lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).expect("json");
                let event = v.as_object_mut().expect("object");
                for added in ["columns", "unique", "rows", "sha256", "tables", "createdAt"] {
                    event.remove(added);
                }
                v
            })
            .collect()
    };
    assert_eq!(strip(&ours), strip(&theirs));
}

/// A depot whose puts read the content, then fail (a connection lost as the upload ends).
#[derive(Debug)]
struct FailsMidway(std::sync::Arc<dyn korm::depots::Depot>);

#[async_trait::async_trait]
impl korm::depots::Depot for FailsMidway {
    fn ident(&self) -> &str {
        self.0.ident()
    }
    async fn put(
        &self,
        key: &korm::depots::DepotKey,
        content: korm::depots::FileContent,
    ) -> korm::Result<u64> {
        // The whole content read (into a scratch file, removed), then the put fails: the
        // last step of an upload lost.
        let scratch = korm::depots::DepotKey::parse("scratch/upload").expect("key");
        self.0.put(&scratch, content).await?;
        self.0.delete(&scratch).await?;
        Err(Error::Depot {
            depot: self.0.ident().to_owned(),
            key: key.to_string(),
            reason: "injected: the connection was lost".to_owned(),
        })
    }
    async fn get(&self, key: &korm::depots::DepotKey) -> korm::Result<korm::depots::FileStream> {
        self.0.get(key).await
    }
    async fn size(&self, key: &korm::depots::DepotKey) -> korm::Result<Option<u64>> {
        self.0.size(key).await
    }
    async fn delete(&self, key: &korm::depots::DepotKey) -> korm::Result<()> {
        self.0.delete(key).await
    }
    async fn copy(
        &self,
        from: &korm::depots::DepotKey,
        to: &korm::depots::DepotKey,
    ) -> korm::Result<()> {
        self.0.copy(from, to).await
    }
    async fn list(
        &self,
        prefix: &korm::depots::DepotKey,
    ) -> korm::Result<Vec<korm::depots::DepotKey>> {
        self.0.list(prefix).await
    }
    async fn list_all(
        &self,
        prefix: &korm::depots::DepotKey,
    ) -> korm::Result<Vec<korm::depots::DepotKey>> {
        self.0.list_all(prefix).await
    }
    async fn close(&self) {}
}

/// A failed upload reports the depot's own error (not the read's) and stores nothing; the
/// layer is still usable.
#[tokio::test]
async fn a_failed_upload_stores_nothing_and_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = korm::depots::LocalDepot::open("backups", korm::depots::local(dir.path()))
        .await
        .expect("local");
    let depot: std::sync::Arc<dyn korm::depots::Depot> =
        std::sync::Arc::new(FailsMidway(std::sync::Arc::new(inner)));
    let pool = open(
        korm::layers::sqlite(dir.path().join("a.sqlite")).into(),
        korm::depots::DepotSpec::from(depot),
    )
    .await;
    // Enough rows for several chunks.
    fill(&pool, 1500).await;
    let backups = Backups::new(&pool, "backups").expect("depot");
    match backups.now("data").await {
        Err(Error::Depot { reason, .. }) => {
            assert!(reason.contains("connection was lost"), "{reason}")
        }
        other => panic!("expected the depot's error, got {other:?}"),
    }
    assert!(backups.list(None).await.expect("list").is_empty());
    assert_eq!(all(&pool).await.len(), 1500);
    pool.close().await;
}
