//! Writers without locks (#16): field-level commits and optimistic conflict detection, on
//! SQLite, PostgreSQL and MariaDB, in one process and in two.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use korm::{Encrypted, Error, Item, Pool, Rn, UncommittedItem, WriteOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::support;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Counter {
    n: i64,
    a: i64,
    b: i64,
    label: String,
    meta: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Secretive {
    name: String,
    ssn: Encrypted<String>,
    tags: Vec<String>,
}

const COUNTERS: &str = "[rn]:conflicts:counter:*";
const TABLE: &str = "__items__conflicts__counter";
const TASKS: usize = 8;
const INCREMENTS: usize = 25;
const FIELD_WRITES: usize = 100;
const ROLE: &str = "KORM_CONFLICT_CHILD";

/// Where a test's data lives.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres(String),
    MySql(String),
}

impl Backend {
    fn spec(&self) -> korm::LayerSpec {
        match self {
            Backend::Sqlite(path) => korm::layers::sqlite(path)
                .with_busy_timeout(std::time::Duration::from_secs(30))
                .into(),
            Backend::Postgres(url) => korm::layers::postgres(url).into(),
            Backend::MySql(url) => korm::layers::mysql(url).into(),
        }
    }

    async fn pool(&self) -> Pool {
        korm::pool()
            .layer("db", self.spec())
            .open()
            .await
            .expect("open")
    }

    /// The env a child process opens the same backend from.
    fn to_env(&self) -> (String, String) {
        match self {
            Backend::Sqlite(path) => ("sqlite".into(), path.display().to_string()),
            Backend::Postgres(url) => ("postgres".into(), url.clone()),
            Backend::MySql(url) => ("mysql".into(), url.clone()),
        }
    }

    fn from_env(kind: &str, target: String) -> Backend {
        match kind {
            "sqlite" => Backend::Sqlite(target.into()),
            "postgres" => Backend::Postgres(target),
            "mysql" => Backend::MySql(target),
            other => panic!("unknown backend {other}"),
        }
    }

    /// Sets `column` of the item `id` to `value` with a raw statement, as korm 1.5 (or any
    /// other program) writes: a whole-row UPDATE of every column it knows.
    async fn raw_update(&self, id: &str, label: &str, n: i64) {
        match self {
            Backend::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).expect("open raw");
                let changed = conn
                    .execute(
                        &format!(
                            "UPDATE \"{TABLE}\" SET \"label\" = ?1, \"n\" = ?2 WHERE \"rnId\" = ?3"
                        ),
                        rusqlite::params![label, n, id],
                    )
                    .expect("raw update");
                assert_eq!(changed, 1);
            }
            Backend::Postgres(url) => {
                use sqlx::Connection;
                let mut conn = sqlx::postgres::PgConnection::connect(url)
                    .await
                    .expect("connect");
                let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE \"{TABLE}\" SET \"label\" = $1, \"n\" = $2 WHERE \"rnId\" = $3"
                )))
                .bind(label)
                .bind(n as i32)
                .bind(id)
                .execute(&mut conn)
                .await
                .expect("raw update");
                assert_eq!(done.rows_affected(), 1);
            }
            Backend::MySql(url) => {
                use sqlx::Connection;
                let mut conn = sqlx::mysql::MySqlConnection::connect(url)
                    .await
                    .expect("connect");
                let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE `{TABLE}` SET `label` = ?, `n` = ? WHERE `rnId` = ?"
                )))
                .bind(label)
                .bind(n)
                .bind(id)
                .execute(&mut conn)
                .await
                .expect("raw update");
                assert_eq!(done.rows_affected(), 1);
            }
        }
    }
}

/// Another writer's open transaction that changed a row's `n` and holds its lock (SQLite:
/// the database's write lock) until [`Held::commit`].
enum Held {
    Sqlite(rusqlite::Connection),
    Postgres(sqlx::postgres::PgConnection),
    MySql(sqlx::mysql::MySqlConnection),
}

impl Backend {
    /// Opens a transaction on a connection of its own that sets `n` of row `id`, and leaves it
    /// open.
    async fn hold_update(&self, id: &str, n: i64) -> Held {
        use sqlx::{Connection, Executor};
        match self {
            Backend::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).expect("open raw");
                conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
                let changed = conn
                    .execute(
                        &format!("UPDATE \"{TABLE}\" SET \"n\" = ?1 WHERE \"rnId\" = ?2"),
                        rusqlite::params![n, id],
                    )
                    .expect("raw update");
                assert_eq!(changed, 1);
                Held::Sqlite(conn)
            }
            Backend::Postgres(url) => {
                let mut conn = sqlx::postgres::PgConnection::connect(url)
                    .await
                    .expect("connect");
                conn.execute("BEGIN").await.expect("begin");
                let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE \"{TABLE}\" SET \"n\" = $1 WHERE \"rnId\" = $2"
                )))
                .bind(n as i32)
                .bind(id)
                .execute(&mut conn)
                .await
                .expect("raw update");
                assert_eq!(done.rows_affected(), 1);
                Held::Postgres(conn)
            }
            Backend::MySql(url) => {
                let mut conn = sqlx::mysql::MySqlConnection::connect(url)
                    .await
                    .expect("connect");
                conn.execute("BEGIN").await.expect("begin");
                let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE `{TABLE}` SET `n` = ? WHERE `rnId` = ?"
                )))
                .bind(n)
                .bind(id)
                .execute(&mut conn)
                .await
                .expect("raw update");
                assert_eq!(done.rows_affected(), 1);
                Held::MySql(conn)
            }
        }
    }
}

impl Held {
    async fn commit(self) {
        use sqlx::Executor;
        match self {
            Held::Sqlite(conn) => conn.execute_batch("COMMIT").expect("commit"),
            Held::Postgres(mut conn) => {
                conn.execute("COMMIT").await.expect("commit");
            }
            Held::MySql(mut conn) => {
                conn.execute("COMMIT").await.expect("commit");
            }
        }
    }
}

/// A backend for a test, or `None` (a loud skip outside scripts/test) when its server is not
/// there; the guard keeps a server database or a temporary directory alive.
async fn backend(which: &str) -> Option<(Backend, Box<dyn std::any::Any + Send>)> {
    match which {
        "sqlite" => {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("conflicts.sqlite");
            Some((Backend::Sqlite(path), Box::new(dir)))
        }
        "postgres" => {
            let db = support::create(support::Server::Postgres).await?;
            Some((Backend::Postgres(db.url.clone()), Box::new(db)))
        }
        "mysql" => {
            let db = support::create(support::Server::MySql).await?;
            Some((Backend::MySql(db.url.clone()), Box::new(db)))
        }
        other => panic!("unknown backend {other}"),
    }
}

/// The fixture key the other suites of this binary install too (one ring per process).
fn install_keys() {
    let current = korm::crypto::EncryptionKey::from_hex(&"a1".repeat(32)).expect("fixture key");
    let old = korm::crypto::EncryptionKey::from_hex(&"b2".repeat(32)).expect("old key");
    korm::crypto::install(korm::crypto::KeyRing::new(current).with_old_key(old));
}

fn counter() -> Counter {
    Counter {
        n: 0,
        a: 0,
        b: 0,
        label: "start".into(),
        meta: json!({"tier": "gold", "limits": [1, 2.5, {"z": null}]}),
    }
}

async fn create_counter(pool: &Pool) -> Item<Counter> {
    korm::item::<Counter>(pool)
        .from_data(COUNTERS.parse().expect("rn"), counter())
        .expect("floating")
        .create()
        .await
        .expect("create")
}

async fn load(pool: &Pool, rn: &Rn<Counter>) -> Item<Counter> {
    korm::item::<Counter>(pool)
        .load(rn.clone())
        .get()
        .await
        .expect("load")
}

/// `TASKS` tasks each making `INCREMENTS` load-increment-commit rounds without a lock; the
/// number of commits that landed (the others must be conflicts).
async fn increment_race(pool: &Pool, rn: &Rn<Counter>) -> usize {
    let landed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (pool, rn, landed) = (pool.clone(), rn.clone(), Arc::clone(&landed));
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                let item = load(&pool, &rn).await;
                match item.update(|c| c.n += 1).commit().await {
                    Ok(_) => {
                        landed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.is_conflict() => {
                        assert!(matches!(&e, Error::Conflict { fields, .. } if fields == &["n"]));
                    }
                    Err(e) => panic!("an increment failed with {e}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    landed.load(Ordering::Relaxed)
}

/// `FIELD_WRITES` load-change-commit rounds of field `a` (or `b`), none of which may fail.
async fn field_writes(pool: &Pool, rn: &Rn<Counter>, field_a: bool) {
    for _ in 0..FIELD_WRITES {
        load(pool, rn)
            .await
            .update(|c| {
                if field_a {
                    c.a += 1;
                } else {
                    c.b += 1;
                }
            })
            .commit()
            .await
            .expect("a writer of its own field never conflicts");
    }
}

async fn increments_end_exact(which: &str) {
    let Some((backend, _guard)) = backend(which).await else {
        return;
    };
    let pool = backend.pool().await;
    let rn = create_counter(&pool).await.rn().clone();
    let landed = increment_race(&pool, &rn).await;
    eprintln!(
        "{which}: {landed} of {} increments landed, the others were conflicts",
        TASKS * INCREMENTS
    );
    let stored = load(&pool, &rn).await;
    assert_eq!(
        stored.data().n,
        landed as i64,
        "{which}: every landed increment counts"
    );
    assert!(landed >= INCREMENTS, "{which}: {landed} landed");
    assert!(
        landed < TASKS * INCREMENTS,
        "{which}: a race without any conflict proves nothing ({landed})"
    );
    // The other fields were never written over.
    assert_eq!(stored.data().meta, counter().meta);
    assert_eq!(stored.data().label, "start");

    // With retry_on_conflict every increment lands.
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (pool, rn) = (pool.clone(), rn.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                korm::item::<Counter>(&pool)
                    .retry_on_conflict(rn.clone(), |c| c.n += 1)
                    .await
                    .expect("retried increment");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(
        load(&pool, &rn).await.data().n,
        (landed + TASKS * INCREMENTS) as i64,
        "{which}: retry_on_conflict lands every increment"
    );
    pool.close().await;
}

async fn two_fields_end_exact(which: &str) {
    let Some((backend, _guard)) = backend(which).await else {
        return;
    };
    let pool = backend.pool().await;
    let rn = create_counter(&pool).await.rn().clone();
    let (p1, p2, r1, r2) = (pool.clone(), pool.clone(), rn.clone(), rn.clone());
    let a = tokio::spawn(async move { field_writes(&p1, &r1, true).await });
    let b = tokio::spawn(async move { field_writes(&p2, &r2, false).await });
    a.await.expect("writer a");
    b.await.expect("writer b");
    let stored = load(&pool, &rn).await;
    assert_eq!(
        (stored.data().a, stored.data().b),
        (FIELD_WRITES as i64, FIELD_WRITES as i64),
        "{which}"
    );
    pool.close().await;
}

/// A conflicting item fails the whole transaction: the other item keeps its value.
async fn tx_with_a_conflict_writes_nothing(which: &str) {
    let Some((backend, _guard)) = backend(which).await else {
        return;
    };
    let pool = backend.pool().await;
    let first = create_counter(&pool).await;
    let second = create_counter(&pool).await;
    let (first_rn, second_rn) = (first.rn().clone(), second.rn().clone());
    // Another writer changes the first item after it was loaded.
    load(&pool, &first_rn)
        .await
        .update(|c| c.n = 7)
        .commit()
        .await
        .expect("other writer");
    let mut tx = korm::tx(&pool);
    tx.commit(second.update(|c| c.label = "from the tx".into()));
    tx.commit(first.update(|c| c.n = 1));
    let e = tx.persist().await.expect_err("the tx must fail");
    assert!(e.is_conflict(), "{which}: {e}");
    assert!(!e.is_retryable());
    assert!(
        matches!(&e, Error::WriteFailed { op: 1, source, .. } if matches!(&**source, Error::Conflict { fields, .. } if fields == &["n"])),
        "{which}: {e:?}"
    );
    assert_eq!(
        load(&pool, &second_rn).await.data().label,
        "start",
        "{which}"
    );
    assert_eq!(load(&pool, &first_rn).await.data().n, 7, "{which}");
    pool.close().await;
}

/// Under a WAL, a tx over two layers whose second part conflicts: the first layer's part is
/// undone, the record finished as failed, nothing left pending.
async fn tx_conflict_under_a_wal(which: &str) {
    install_keys();
    let Some((backend, _guard)) = backend(which).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let pool = korm::pool()
        .layer(
            "first",
            korm::layers::sqlite(dir.path().join("first.sqlite")),
        )
        .layer("db", backend.spec())
        .depot("wal", korm::depots::local(dir.path().join("wal")))
        .with_wal(
            "wal",
            korm::WalOptions::new("conflicts").with_retention(korm::WalRetention::Keep),
        )
        .open()
        .await
        .expect("open");
    let first = korm::item::<Counter>(&pool)
        .from_data(
            "[rn][from::first]:conflicts:counter:*".parse().expect("rn"),
            counter(),
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    let second = korm::item::<Counter>(&pool)
        .from_data(
            "[rn][from::db]:conflicts:counter:*".parse().expect("rn"),
            counter(),
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    let (first_rn, second_rn) = (first.rn().clone(), second.rn().clone());
    load(&pool, &second_rn)
        .await
        .update(|c| c.meta = json!({"changed": true}))
        .commit()
        .await
        .expect("other writer");
    let mut tx = korm::tx(&pool);
    tx.commit(first.update(|c| c.n = 1));
    tx.commit(second.update(|c| c.meta = json!({"mine": 1})));
    let e = tx.persist().await.expect_err("conflict");
    assert!(
        matches!(&e, Error::WriteFailed { op: 1, source, .. } if matches!(&**source, Error::Conflict { fields, .. } if fields == &["meta"])),
        "{which}: {e:?}"
    );
    assert_eq!(load(&pool, &first_rn).await.data().n, 0, "{which}: undone");
    assert_eq!(
        load(&pool, &second_rn).await.data().meta,
        json!({"changed": true})
    );
    let wal = pool.wal().expect("wal");
    assert!(wal.pending().await.expect("pending").is_empty(), "{which}");
    let states: Vec<_> = wal
        .done()
        .await
        .expect("done")
        .into_iter()
        .map(|(_, r)| r.expect("record").state)
        .collect();
    assert!(
        states.contains(&korm::wal::RecordState::Failed),
        "{which}: {states:?}"
    );
    pool.close().await;
}

/// Last writer wins on request; deletes are conditional too; a conflict hands the item back.
async fn last_writer_wins_and_deletes(which: &str) {
    let Some((backend, _guard)) = backend(which).await else {
        return;
    };
    let pool = backend.pool().await;
    let rn = create_counter(&pool).await.rn().clone();
    let stale = load(&pool, &rn).await;
    let stale_too = load(&pool, &rn).await;
    let stale_delete = load(&pool, &rn).await;
    load(&pool, &rn)
        .await
        .update(|c| c.n = 5)
        .commit()
        .await
        .expect("first writer");

    // The default refuses, hands the change back, and a rebase lands it.
    let mut e = stale
        .update(|c| {
            c.n = 9;
            c.label = "mine".into()
        })
        .commit()
        .await
        .expect_err("conflict");
    assert!(
        matches!(&e, Error::Conflict { fields, .. } if fields == &["n"]),
        "{e}"
    );
    let back: UncommittedItem<Counter> = e.take_conflicted().expect("the item comes back");
    assert_eq!(back.data().n, 9);
    assert!(e.take_conflicted::<UncommittedItem<Counter>>().is_none());
    let rebased = back.rebase().await.expect("rebase");
    assert_eq!(rebased.data().n, 9);
    let landed = rebased.commit().await.expect("the rebased change lands");
    assert_eq!(landed.data().label, "mine");

    // Last writer wins overwrites.
    let overwritten = stale_too
        .update(|c| c.n = 42)
        .commit_with(WriteOptions::new().last_writer_wins(true))
        .await
        .expect("last writer wins");
    assert_eq!(overwritten.data().n, 42);
    let stored = load(&pool, &rn).await;
    assert_eq!(
        (stored.data().n, stored.data().label.as_str()),
        (42, "mine")
    );

    // A delete of a changed item is a conflict and deletes nothing.
    let mut e = stale_delete.delete().await.expect_err("delete conflict");
    assert!(e.is_conflict(), "{e}");
    let back: Item<Counter> = e.take_conflicted().expect("the item comes back");
    assert_eq!(load(&pool, &rn).await.data().n, 42);
    back.delete_with(WriteOptions::new().last_writer_wins(true))
        .await
        .expect("forced delete");
    let gone = korm::item::<Counter>(&pool)
        .load(rn.clone())
        .get_optional()
        .await
        .expect("load");
    assert!(gone.is_none());
    // A delete of the item as loaded succeeds.
    let fresh = create_counter(&pool).await;
    let fresh = load(&pool, fresh.rn()).await;
    fresh.delete().await.expect("delete as loaded");
    pool.close().await;
}

/// korm 1.5 writes whole rows with a plain UPDATE: a field it changed is a conflict for a
/// commit changing the same field, and no obstacle for one changing another field.
async fn a_raw_update_is_detected(which: &str) {
    let Some((backend, _guard)) = backend(which).await else {
        return;
    };
    let pool = backend.pool().await;
    let rn = create_counter(&pool).await.rn().clone();
    let id = rn.id().expect("id").to_owned();
    let same_field = load(&pool, &rn).await;
    let other_field = load(&pool, &rn).await;
    backend.raw_update(&id, "raw", 100).await;
    let e = same_field
        .update(|c| c.n += 1)
        .commit()
        .await
        .expect_err("the raw update must be detected");
    assert!(
        matches!(&e, Error::Conflict { fields, .. } if fields == &["n"]),
        "{which}: {e}"
    );
    let done = other_field
        .update(|c| c.a = 3)
        .commit()
        .await
        .expect("another field lands");
    assert_eq!(done.data().a, 3);
    let stored = load(&pool, &rn).await;
    assert_eq!(
        (
            stored.data().n,
            stored.data().a,
            stored.data().label.as_str()
        ),
        (100, 3, "raw"),
        "{which}"
    );
    pool.close().await;
}

/// JSON, jsonb and encrypted columns compare as stored: commits in a row (over what korm
/// wrote, and over what it read back) never conflict with themselves, and an unchanged
/// encrypted field is not written again.
async fn json_and_encrypted_fields_compare_as_stored(which: &str) {
    install_keys();
    let Some((backend, _guard)) = backend(which).await else {
        return;
    };
    let pool = backend.pool().await;
    let counter = create_counter(&pool).await;
    let counter = counter
        .update(|c| c.meta["tier"] = json!("silver"))
        .commit()
        .await
        .expect("json over what was written");
    let counter = counter
        .update(|c| c.meta["limits"] = json!([3, 4.5]))
        .commit()
        .await
        .expect("json twice");
    let loaded = load(&pool, counter.rn()).await;
    let loaded = loaded
        .update(|c| c.meta["tier"] = json!("bronze"))
        .commit()
        .await
        .expect("json over what was read");
    assert_eq!(
        load(&pool, loaded.rn()).await.data().meta,
        json!({"tier": "bronze", "limits": [3, 4.5]})
    );

    let person = korm::item::<Secretive>(&pool)
        .from_data(
            "[rn]:conflicts:people:*".parse().expect("rn"),
            Secretive {
                name: "fred".into(),
                ssn: Encrypted::new("078-05-1120".into()),
                tags: vec!["a".into()],
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    let rn = person.rn().clone();
    let load_person = || async {
        korm::item::<Secretive>(&pool)
            .load(rn.clone())
            .get()
            .await
            .expect("load")
    };
    // Two writers: one changes the name, one the secret; both land.
    let names = load_person().await;
    let secrets = load_person().await;
    names
        .update(|p| p.name = "wilma".into())
        .commit()
        .await
        .expect("the name");
    let secrets = secrets
        .update(|p| *p.ssn.reveal_mut() = "123-45-6789".into())
        .commit()
        .await
        .expect("the secret: the name writer did not touch it");
    let secrets = secrets
        .update(|p| p.tags.push("b".into()))
        .commit()
        .await
        .expect("over what was written");
    drop(secrets);
    let stored = load_person().await;
    assert_eq!(stored.data().name, "wilma");
    assert_eq!(stored.data().ssn.reveal(), "123-45-6789");
    assert_eq!(stored.data().tags, ["a", "b"]);
    let stored = stored
        .update(|p| *p.ssn.reveal_mut() = "000-00-0000".into())
        .commit()
        .await
        .expect("the secret over what was read");
    assert_eq!(stored.data().ssn.reveal(), "000-00-0000");
    pool.close().await;
}

/// An uncommitted item made from (rn, data) (#18): its commit writes every field (a field
/// set back to its default too), last writer wins over a change made meanwhile, in a tx with
/// a loaded item; an RN nothing is stored at is NotFound; a collection RN is refused.
async fn uncommitted_from_data_writes_every_field(which: &str) {
    install_keys();
    let Some((backend, _keep)) = backend(which).await else {
        return;
    };
    let pool = backend.pool().await;
    let counters = korm::item::<Counter>(&pool);
    let one = create_counter(&pool).await;
    let two = create_counter(&pool).await;
    // Another writer changes `one` after our data was computed: ours wins, whole.
    load(&pool, one.rn())
        .await
        .update(|c| c.label = "theirs".into())
        .commit()
        .await
        .expect("their commit");
    let ours = Counter {
        n: 7,
        label: "ours".into(),
        meta: json!(null),
        ..counter()
    };
    let mut tx = korm::tx(&pool);
    let handles = tx.commit_all([counters
        .uncommitted(one.rn().clone(), ours.clone())
        .expect("uncommitted")]);
    let two_handle = tx.commit(load(&pool, two.rn()).await.update(|c| c.n = 2));
    let mut done = tx.persist().await.expect("tx");
    let stored = done.take_all(handles).expect("taken");
    done.take(two_handle).expect("taken");
    assert_eq!(stored[0].data(), &ours);
    assert_eq!(
        load(&pool, one.rn()).await.data(),
        &ours,
        "every field, meta null too"
    );
    assert_eq!(load(&pool, two.rn()).await.data().n, 2);
    // The committed item goes on as a loaded one: a later commit is conditional again.
    let next = stored
        .into_iter()
        .next()
        .expect("one")
        .update(|c| c.n = 8)
        .commit()
        .await
        .expect("commit after");
    assert_eq!(next.data().n, 8);

    // Several items made from data in one tx: their rows are read in one statement.
    let reads = pool.read_statements("db").expect("layer");
    let mut tx = korm::tx(&pool);
    tx.commit_all([
        counters
            .uncommitted(one.rn().clone(), Counter { n: 10, ..counter() })
            .expect("one"),
        counters
            .uncommitted(two.rn().clone(), Counter { n: 20, ..counter() })
            .expect("two"),
    ]);
    tx.persist().await.expect("tx of two");
    assert_eq!(pool.read_statements("db").expect("layer") - reads, 1);
    assert_eq!(load(&pool, two.rn()).await.data().n, 20);

    // One item written twice from data in one tx (its second before-image would be the
    // stored row, not what the first leaves): refused, naming it, and nothing is written.
    let mut tx = korm::tx(&pool);
    tx.commit_all([
        counters
            .uncommitted(one.rn().clone(), Counter { n: 11, ..counter() })
            .expect("one"),
        counters
            .uncommitted(one.rn().clone(), Counter { n: 12, ..counter() })
            .expect("one again"),
    ]);
    let twice = tx.persist().await.map(|_| ());
    assert!(
        matches!(&twice, Err(Error::InvalidOption { option: "tx", reason }) if reason.contains(one.rn().as_str())),
        "{twice:?}"
    );
    assert_eq!(load(&pool, one.rn()).await.data().n, 10);

    // Nothing at the RN: NotFound, and nothing is created.
    let missing: Rn<Counter> = format!("[rn]:conflicts:counter:{}", uuid::Uuid::new_v4())
        .parse()
        .expect("rn");
    let refused = counters
        .uncommitted(missing.clone(), counter())
        .expect("uncommitted")
        .commit()
        .await;
    assert!(
        matches!(refused, Err(Error::NotFound { .. })),
        "{refused:?}"
    );
    let found = counters.load(missing).get_optional().await.expect("load");
    assert!(found.is_none());
    assert!(matches!(
        counters.uncommitted(COUNTERS.parse().expect("rn"), counter()),
        Err(Error::WrongRnForm { .. })
    ));
    pool.close().await;
}

/// A pool of two layers: `first` on a SQLite file (returned, for another process's raw
/// writes) and `db` on `backend`.
async fn two_layers(backend: &Backend, dir: &std::path::Path) -> (Pool, std::path::PathBuf) {
    let first_path = dir.join("first.sqlite");
    let pool = korm::pool()
        .layer("first", korm::layers::sqlite(&first_path))
        .layer("db", backend.spec())
        .open()
        .await
        .expect("open");
    (pool, first_path)
}

/// Another process, on the `first` layer's file: waits until row `id` holds `n == written`
/// (the tx's first part has committed), sets `n` to 42, then lets `held` go (the tx's second
/// part then conflicts).
async fn other_process_changes(
    first_path: &std::path::Path,
    id: &str,
    written: i64,
    held: Held,
    which: &str,
) {
    let raw = rusqlite::Connection::open(first_path).expect("raw");
    raw.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    let waited = std::time::Instant::now();
    loop {
        let changed = raw
            .execute(
                &format!("UPDATE \"{TABLE}\" SET \"n\" = 42 WHERE \"rnId\" = ?1 AND \"n\" = ?2"),
                rusqlite::params![id, written],
            )
            .expect("other writer");
        if changed == 1 {
            break;
        }
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(30),
            "{which}: the tx's first part never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    held.commit().await;
}

/// `e` is the `UndoFailed` of a tx whose undo of `kept` was a conflict (another writer's
/// change stays) while `undone` was undone, after its own conflict.
fn assert_undo_kept(e: &Error, kept: &str, undone: &str, which: &str) {
    match e {
        Error::UndoFailed { rns, source, undo } => {
            assert!(rns.contains(kept), "{which}: {rns}");
            assert!(!rns.contains(undone), "{which}: {rns}");
            assert!(source.is_conflict(), "{which}: {source:?}");
            assert!(undo.is_conflict(), "{which}: {undo:?}");
        }
        other => panic!("{which}: expected UndoFailed, got {other:?}"),
    }
}

/// A tx over two layers whose second part fails (a conflict) after another process changed
/// the first part's item in between: the undo does not write the old value over the other
/// writer's (it is conditional on what the tx wrote, so it is a conflict: `UndoFailed`), and
/// the first layer's other item is still undone.
async fn undo_keeps_another_writers_change(which: &str) {
    let Some((backend, _guard)) = backend(which).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let (pool, first_path) = two_layers(&backend, dir.path()).await;
    let mut items = Vec::new();
    for layer in ["first", "first", "db"] {
        let rn = format!("[rn][from::{layer}]:conflicts:counter:*");
        items.push(
            korm::item::<Counter>(&pool)
                .from_data(rn.parse().expect("rn"), counter())
                .expect("floating")
                .create()
                .await
                .expect("create"),
        );
    }
    let rns: Vec<Rn<Counter>> = items.iter().map(|i| i.rn().clone()).collect();
    let id = |i: usize| rns[i].id().expect("id").to_owned();
    let mut items = items.into_iter();
    let (first, untouched, second) = (
        items.next().expect("first"),
        items.next().expect("untouched"),
        items.next().expect("second"),
    );
    // Another writer's transaction changed the second item and holds it: the tx's second
    // part waits for it, after its first part has committed.
    let held = backend.hold_update(&id(2), 7).await;
    let mut tx = korm::tx(&pool);
    tx.commit(first.update(|c| c.n = 1));
    tx.commit(untouched.update(|c| c.a = 1));
    tx.commit(second.update(|c| c.n = 1));
    let first_id = id(0);
    let (persisted, ()) = tokio::join!(
        tx.persist(),
        other_process_changes(&first_path, &first_id, 1, held, which)
    );
    let e = persisted.expect_err("the second part conflicts");
    assert_undo_kept(&e, &id(0), &id(1), which);
    assert_eq!(
        load(&pool, &rns[0]).await.data().n,
        42,
        "{which}: the other writer's value stays"
    );
    let untouched = load(&pool, &rns[1]).await;
    assert_eq!(untouched.data().a, 0, "{which}: the other item is undone");
    assert_eq!(load(&pool, &rns[2]).await.data().n, 7, "{which}");
    pool.close().await;
}

/// The same window for a create: a tx's first part creates an item, its second part fails,
/// and another process changed the new item in between. The undo deletes only the item as
/// the tx wrote it, so the other writer's item stays (`UndoFailed`); an item nobody touched
/// is deleted as before.
async fn undo_keeps_a_created_item_another_writer_changed(which: &str) {
    let Some((backend, _guard)) = backend(which).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let (pool, first_path) = two_layers(&backend, dir.path()).await;
    let counters = korm::item::<Counter>(&pool);
    let in_layer = |layer: &str| -> Rn<Counter> {
        format!("[rn][from::{layer}]:conflicts:counter:*")
            .parse()
            .expect("rn")
    };
    // The first layer's table exists before the tx.
    counters
        .from_data(in_layer("first"), counter())
        .expect("floating")
        .create()
        .await
        .expect("create");
    let second = counters
        .from_data(in_layer("db"), counter())
        .expect("floating")
        .create()
        .await
        .expect("create");
    let changed = counters
        .from_data(in_layer("first"), counter())
        .expect("floating");
    let untouched = counters
        .from_data(in_layer("first"), counter())
        .expect("floating");
    let (changed_rn, untouched_rn) = (changed.rn().clone(), untouched.rn().clone());
    let changed_id = changed_rn.id().expect("id").to_owned();
    let untouched_id = untouched_rn.id().expect("id").to_owned();
    let held = backend.hold_update(second.rn().id().expect("id"), 7).await;
    let mut tx = korm::tx(&pool);
    tx.create(changed);
    tx.create(untouched);
    tx.commit(second.update(|c| c.n = 1));
    // The new item is written with `n == 0` (`counter()`).
    let (persisted, ()) = tokio::join!(
        tx.persist(),
        other_process_changes(&first_path, &changed_id, 0, held, which)
    );
    let e = persisted.expect_err("the second part conflicts");
    assert_undo_kept(&e, &changed_id, &untouched_id, which);
    assert_eq!(
        load(&pool, &changed_rn).await.data().n,
        42,
        "{which}: the item another writer changed stays"
    );
    let gone = counters
        .load(untouched_rn)
        .get_optional()
        .await
        .expect("load");
    assert!(gone.is_none(), "{which}: the untouched item is deleted");
    pool.close().await;
}

macro_rules! on_every_backend {
    ($($name:ident => $body:ident;)*) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    if std::env::var_os(super::ROLE).is_some() { return; }
                    super::$body("sqlite").await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    if std::env::var_os(super::ROLE).is_some() { return; }
                    super::$body("postgres").await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn mysql() {
                    if std::env::var_os(super::ROLE).is_some() { return; }
                    super::$body("mysql").await;
                }
            }
        )*
    };
}

on_every_backend! {
    increment_race => increments_end_exact;
    two_field_race => two_fields_end_exact;
    tx_conflict => tx_with_a_conflict_writes_nothing;
    tx_conflict_wal => tx_conflict_under_a_wal;
    last_writer_wins => last_writer_wins_and_deletes;
    raw_update => a_raw_update_is_detected;
    stored_forms => json_and_encrypted_fields_compare_as_stored;
    uncommitted_from_data => uncommitted_from_data_writes_every_field;
    undo_keeps_other_writer => undo_keeps_another_writers_change;
    undo_keeps_changed_creation => undo_keeps_a_created_item_another_writer_changed;
}

// ---------------------------------------------------------------------------------------------
// Two processes

/// The child side of the two-process races; does nothing in a normal run. It runs the
/// increment race on one item and the `b` writer on another, and prints how many increments
/// landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn child_process_role() {
    let Ok(kind) = std::env::var(ROLE) else {
        return;
    };
    let backend = Backend::from_env(
        &kind,
        std::env::var("KORM_CONFLICT_TARGET").expect("target"),
    );
    let counter: Rn<Counter> = std::env::var("KORM_CONFLICT_COUNTER")
        .expect("rn")
        .parse()
        .expect("rn");
    let fields: Rn<Counter> = std::env::var("KORM_CONFLICT_FIELDS")
        .expect("rn")
        .parse()
        .expect("rn");
    let pool = backend.pool().await;
    let (p, r) = (pool.clone(), fields.clone());
    let writer = tokio::spawn(async move { field_writes(&p, &r, false).await });
    let landed = increment_race(&pool, &counter).await;
    writer.await.expect("writer b");
    pool.close().await;
    println!("LANDED {landed}");
}

async fn two_processes(which: &str) {
    let Some((backend, _guard)) = backend(which).await else {
        return;
    };
    let pool = backend.pool().await;
    let counter = create_counter(&pool).await.rn().clone();
    let fields = create_counter(&pool).await.rn().clone();
    let (kind, target) = backend.to_env();
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "conflicts::child_process_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, kind)
        .env("KORM_CONFLICT_TARGET", target)
        .env("KORM_CONFLICT_COUNTER", counter.to_string())
        .env("KORM_CONFLICT_FIELDS", fields.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let (p, r) = (pool.clone(), fields.clone());
    let writer = tokio::spawn(async move { field_writes(&p, &r, true).await });
    let landed_here = increment_race(&pool, &counter).await;
    writer.await.expect("writer a");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("child output");
    assert!(output.status.success(), "{which}: the child failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let landed_there: usize = stdout
        .lines()
        .find_map(|l| l.split_once("LANDED ").map(|(_, count)| count))
        .unwrap_or_else(|| panic!("{which}: the child did not report: {stdout}"))
        .trim()
        .parse()
        .expect("count");
    let stored = load(&pool, &counter).await;
    eprintln!(
        "{which}, two processes: {landed_here} + {landed_there} of {} increments landed, n = {}",
        2 * TASKS * INCREMENTS,
        stored.data().n
    );
    assert_eq!(
        stored.data().n,
        (landed_here + landed_there) as i64,
        "{which}: {landed_here} + {landed_there} increments landed"
    );
    assert!(landed_here > 0 && landed_there > 0, "{which}");
    let stored = load(&pool, &fields).await;
    assert_eq!(
        (stored.data().a, stored.data().b),
        (FIELD_WRITES as i64, FIELD_WRITES as i64),
        "{which}: both processes' fields"
    );
    pool.close().await;
}

on_every_backend! {
    two_process_races => two_processes;
}
