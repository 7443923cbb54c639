//! Group commit on SQLite (#16): writes queued at a layer's connection thread while a commit
//! syncs share one transaction and one sync; each plan is isolated by a savepoint; every
//! caller learns its outcome only after the shared COMMIT. Real files, `synchronous = FULL`
//! (the default).

use std::path::{Path, PathBuf};
use std::time::Duration;

use korm::{Error, Unique};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Account {
    email: Unique<String>,
    n: i64,
}

const ACCOUNTS: &str = "[rn]:accounts:main:*";
const TABLE: &str = "__items__accounts__main";

async fn open(path: &Path) -> korm::Pool {
    korm::pool()
        .layer("db", korm::layers::sqlite(path))
        .open()
        .await
        .expect("open")
}

fn account(pool: &korm::Pool, email: &str, n: i64) -> korm::FloatingItem<Account> {
    korm::item::<Account>(pool)
        .from_data(
            ACCOUNTS.parse().expect("rn"),
            Account {
                email: Unique::new(email.to_owned()),
                n,
            },
        )
        .expect("floating")
}

/// The emails stored, read by a connection of its own (sorted).
fn stored_emails(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).expect("open raw");
    let mut stmt = conn
        .prepare(&format!("SELECT email FROM \"{TABLE}\" ORDER BY email"))
        .expect("prepare");
    stmt.query_map([], |row| row.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

/// The number of frames in the database's WAL file (every commit appends at least one per
/// page it changed).
fn wal_frames(path: &Path, page_size: u64) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let len = std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len());
    len.saturating_sub(32) / (24 + page_size)
}

/// Another connection holding SQLite's write lock until [`WriteLock::release`]: writes sent
/// to korm meanwhile queue at the connection thread (the first one waits in SQLite's busy
/// handler), so they reach the thread together.
struct WriteLock(rusqlite::Connection);

impl WriteLock {
    fn take(path: &Path) -> (WriteLock, u64) {
        let conn = rusqlite::Connection::open(path).expect("open raw");
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page size");
        let page_size = u64::try_from(page_size).expect("a page size");
        conn.execute_batch("BEGIN IMMEDIATE").expect("write lock");
        (WriteLock(conn), page_size)
    }

    fn release(self) {
        self.0.execute_batch("COMMIT").expect("release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plan_in_a_group_commit_fails_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("group.sqlite");
    let pool = open(&path).await;
    account(&pool, "taken@x", 0)
        .create()
        .await
        .expect("first account");

    let (lock, page_size) = WriteLock::take(&path);
    let frames_before = wal_frames(&path, page_size);
    // 16 single creates, one of them a duplicate of a unique email; a tx of two creates
    // whose second is a duplicate (all of it must fail); a tx of two good creates.
    let mut singles = Vec::new();
    for k in 0..16 {
        let pool = pool.clone();
        let email = if k == 5 {
            "taken@x".to_owned()
        } else {
            format!("{k:02}@x")
        };
        singles.push(tokio::spawn(async move {
            account(&pool, &email, k).create().await.map(|_| ())
        }));
    }
    let bad_tx = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut tx = korm::tx(&pool);
            tx.create(account(&pool, "tx-a@x", 100));
            tx.create(account(&pool, "taken@x", 101));
            tx.persist().await.map(|_| ())
        })
    };
    let good_tx = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut tx = korm::tx(&pool);
            tx.create(account(&pool, "tx-b@x", 200));
            tx.create(account(&pool, "tx-c@x", 201));
            tx.persist().await.map(|_| ())
        })
    };
    // Every write reaches the connection thread and waits behind the lock.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        singles.iter().all(|t| !t.is_finished()) && !bad_tx.is_finished(),
        "no write finishes while another connection holds the write lock"
    );
    lock.release();

    for (k, task) in singles.into_iter().enumerate() {
        let outcome = task.await.expect("task");
        if k == 5 {
            match outcome {
                Err(Error::UniqueViolation { table, field, .. }) => {
                    assert_eq!((table.as_str(), field.as_str()), (TABLE, "email"));
                }
                other => panic!("the duplicate gets its own unique violation, not {other:?}"),
            }
        } else {
            outcome.unwrap_or_else(|e| panic!("create {k} commits beside the failing one: {e}"));
        }
    }
    match bad_tx.await.expect("task") {
        Err(Error::WriteFailed { op: 1, source, .. }) => {
            assert!(
                matches!(*source, Error::UniqueViolation { .. }),
                "{source:?}"
            );
        }
        other => panic!("the tx with a duplicate fails at its op 1, not {other:?}"),
    }
    good_tx.await.expect("task").expect("the good tx commits");

    let mut expected: Vec<String> = (0..16)
        .filter(|&k| k != 5)
        .map(|k| format!("{k:02}@x"))
        .collect();
    expected.extend(["taken@x", "tx-b@x", "tx-c@x"].map(String::from));
    expected.sort();
    // tx-a@x is not there: the failing tx rolled back to its savepoint, its first op too.
    assert_eq!(stored_emails(&path), expected);

    // One commit per write would append at least one frame per write (17 writes, each
    // touching the table and its unique index); the writes shared a few commits.
    let frames = wal_frames(&path, page_size) - frames_before;
    assert!(
        frames < 17,
        "17 writes were group-committed into a few commits, yet they appended {frames} WAL frames"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_all_land_after_the_pool_is_dropped_and_reopened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("many.sqlite");
    let pool = open(&path).await;
    let mut tasks = Vec::new();
    for t in 0..16i64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let n = t * 25 + i;
                account(&pool, &format!("{n}@x"), n)
                    .create()
                    .await
                    .expect("create");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    // Dropped, not closed: whatever was reported done is on disk.
    drop(pool);
    let pool = open(&path).await;
    let all = korm::item::<Account>(&pool)
        .query(ACCOUNTS.parse().expect("rn"))
        .get()
        .await
        .expect("query");
    let mut ns: Vec<i64> = all.iter().map(|a| a.data().n).collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..400).collect::<Vec<_>>());
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_reported_only_after_its_group_commit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("order.sqlite");
    let pool = open(&path).await;
    account(&pool, "first@x", -1).create().await.expect("table");
    // The writes start behind a lock so that the first ones are grouped for sure.
    let (lock, _) = WriteLock::take(&path);
    let mut tasks = Vec::new();
    for t in 0..16i64 {
        let pool = pool.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            // A reader of its own: in WAL mode it sees only committed rows.
            let reader = rusqlite::Connection::open(&path).expect("open reader");
            let mut unseen = Vec::new();
            for i in 0..15 {
                let n = t * 15 + i;
                let item = account(&pool, &format!("{n}@x"), n)
                    .create()
                    .await
                    .expect("create");
                let id = item.rn().id().expect("item rn").to_owned();
                let seen: i64 = reader
                    .query_row(
                        &format!("SELECT count(*) FROM \"{TABLE}\" WHERE \"rnId\" = ?1"),
                        [&id],
                        |r| r.get(0),
                    )
                    .expect("read");
                if seen != 1 {
                    unseen.push(n);
                }
            }
            unseen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.release();
    for task in tasks {
        let unseen = task.await.expect("task");
        assert!(
            unseen.is_empty(),
            "writes reported done before their commit (another connection did not see them): {unseen:?}"
        );
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_commit_fails_every_write_in_it() {
    // In the rollback journal a COMMIT needs every reader gone: a reader that stays makes the
    // shared COMMIT fail (busy), and every write of the batch must get that error and be
    // left out.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal.sqlite");
    let pool = korm::pool()
        .layer(
            "db",
            korm::layers::sqlite(&path)
                .with_wal_journal(false)
                .with_busy_timeout(Duration::from_millis(300)),
        )
        .open()
        .await
        .expect("open");
    account(&pool, "first@x", 0).create().await.expect("table");

    let reader = rusqlite::Connection::open(&path).expect("open reader");
    reader
        .execute_batch(&format!("BEGIN; SELECT count(*) FROM \"{TABLE}\";"))
        .expect("a read transaction holds a shared lock");
    // The first write waits for its own COMMIT in SQLite's busy handler while the others
    // queue behind it: they form one batch, whose COMMIT fails as well.
    let mut tasks = Vec::new();
    for k in 0..8 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            account(&pool, &format!("{k}@x"), k)
                .create()
                .await
                .map(|_| ())
        }));
    }
    let mut busy = 0;
    for task in tasks {
        match task.await.expect("task") {
            Err(Error::Database {
                kind: korm::DbErrorKind::Busy,
                ..
            }) => busy += 1,
            other => panic!("a write whose COMMIT could not happen is busy, not {other:?}"),
        }
    }
    assert_eq!(busy, 8);
    reader.execute_batch("COMMIT").expect("end the read");
    assert_eq!(stored_emails(&path), vec!["first@x".to_owned()]);

    // With the reader gone the same writes go through.
    account(&pool, "later@x", 9)
        .create()
        .await
        .expect("a write after the reader left");
    assert_eq!(
        stored_emails(&path),
        vec!["first@x".to_owned(), "later@x".to_owned()]
    );
    pool.close().await;
}

#[derive(Debug, Serialize, Deserialize)]
struct AccountWithNote {
    email: Unique<String>,
    n: i64,
    note: String,
}

fn account_with_note(
    pool: &korm::Pool,
    email: &str,
    n: i64,
) -> korm::FloatingItem<AccountWithNote> {
    korm::item::<AccountWithNote>(pool)
        .from_data(
            ACCOUNTS.parse().expect("rn"),
            AccountWithNote {
                email: Unique::new(email.to_owned()),
                n,
                note: format!("note {n}"),
            },
        )
        .expect("floating")
}

/// The columns of the accounts table, read by a connection of its own.
fn columns(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).expect("open raw");
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY name")
        .expect("prepare");
    stmt.query_map([TABLE], |row| row.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plan_s_new_column_rolls_back_with_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ddl.sqlite");
    let pool = open(&path).await;
    account(&pool, "taken@x", 0).create().await.expect("table");

    let (lock, _) = WriteLock::take(&path);
    // In one batch: a write that adds the column `note` and then collides on its email, and
    // plain writes before and after it.
    let mut tasks = Vec::new();
    for k in 1..=6 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            if k == 3 {
                account_with_note(&pool, "taken@x", k)
                    .create()
                    .await
                    .map(|_| ())
            } else {
                account(&pool, &format!("{k}@x"), k)
                    .create()
                    .await
                    .map(|_| ())
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    lock.release();
    for (i, task) in tasks.into_iter().enumerate() {
        let outcome = task.await.expect("task");
        if i == 2 {
            assert!(
                matches!(outcome, Err(Error::UniqueViolation { .. })),
                "{outcome:?}"
            );
        } else {
            outcome.expect("the plain writes commit");
        }
    }
    assert!(
        !columns(&path).contains(&"note".to_owned()),
        "the failed write's new column rolled back with it: {:?}",
        columns(&path)
    );
    assert_eq!(stored_emails(&path).len(), 6);

    // korm does not believe in the column that was rolled back: a write with it adds it again.
    account_with_note(&pool, "noted@x", 7)
        .create()
        .await
        .expect("a write adding the column");
    assert!(columns(&path).contains(&"note".to_owned()));
    let noted = korm::item::<AccountWithNote>(&pool)
        .query(ACCOUNTS.parse().expect("rn"))
        .filter(korm::eq("n", 7))
        .first()
        .await
        .expect("query");
    assert_eq!(noted.data().note, "note 7");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_rolls_the_whole_transaction_back_fails_alone() {
    // A trigger that rolls back the whole transaction (as SQLite does by itself on a full
    // disk or an I/O error) takes the plans before it in the batch with it: they must run
    // again and commit; only the plan that hit it fails.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("rollback.sqlite");
    let pool = open(&path).await;
    account(&pool, "first@x", 0).create().await.expect("table");
    rusqlite::Connection::open(&path)
        .expect("open raw")
        .execute_batch(&format!(
            "CREATE TRIGGER boom BEFORE INSERT ON \"{TABLE}\" WHEN NEW.email = 'boom@x' \
             BEGIN SELECT RAISE(ROLLBACK, 'boom refused'); END;"
        ))
        .expect("trigger");

    let (lock, _) = WriteLock::take(&path);
    let mut tasks = Vec::new();
    for k in 1..=8 {
        let pool = pool.clone();
        let email = if k == 4 {
            "boom@x".to_owned()
        } else {
            format!("{k}@x")
        };
        tasks.push(tokio::spawn(async move {
            account(&pool, &email, k).create().await.map(|_| ())
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    lock.release();
    for (i, task) in tasks.into_iter().enumerate() {
        let outcome = task.await.expect("task");
        if i == 3 {
            match outcome {
                Err(Error::Database { message, .. }) => {
                    assert!(message.contains("boom refused"), "{message}");
                }
                other => panic!("the write the trigger refused fails, not with {other:?}"),
            }
        } else {
            outcome.unwrap_or_else(|e| panic!("write {} commits: {e}", i + 1));
        }
    }
    let mut expected: Vec<String> = [1, 2, 3, 5, 6, 7, 8]
        .iter()
        .map(|k| format!("{k}@x"))
        .collect();
    expected.push("first@x".to_owned());
    expected.sort();
    assert_eq!(stored_emails(&path), expected);
    pool.close().await;
}

/// `close` closes the SQLite connection itself, though a clone of the pool still holds the
/// layer: the file is checkpointed and its `-wal` file removed, so the database file alone
/// (copied after the close) holds every write. (The connection stayed open until the last
/// clone dropped, and a copy of the file missed what was still in the `-wal` file.)
#[tokio::test]
async fn close_closes_the_file_while_a_clone_of_the_pool_lives() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("closing.sqlite");
    let pool = open(&path).await;
    let clone = pool.clone();
    for n in 0..20 {
        account(&pool, &format!("{n}@example.com"), n)
            .create()
            .await
            .expect("create");
    }
    pool.close().await;
    assert!(
        !dir.path().join("closing.sqlite-wal").exists(),
        "the last connection checkpoints and removes the -wal file"
    );
    let copy = dir.path().join("copy.sqlite");
    std::fs::copy(&path, &copy).expect("copy the file alone");
    let rows: i64 = rusqlite::Connection::open(&copy)
        .expect("open the copy")
        .query_row(&format!("SELECT COUNT(*) FROM {TABLE}"), [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 20);
    assert!(matches!(
        korm::item::<Account>(&clone)
            .query(ACCOUNTS.parse().expect("rn"))
            .get()
            .await,
        Err(Error::PoolClosed)
    ));
}

/// A table another connection dropped reads as empty (a query) or missing (a load), as a
/// table that never existed does: the cached schema is read again when a read fails (it
/// said the table existed, so every read failed with `no such table` until a write failed
/// and evicted it).
#[tokio::test]
async fn a_table_dropped_by_another_connection_reads_as_missing() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("dropped.sqlite");
    let pool = open(&path).await;
    let made = account(&pool, "a@example.com", 1)
        .create()
        .await
        .expect("create");
    let accounts = korm::item::<Account>(&pool);
    let all = || accounts.query(ACCOUNTS.parse().expect("rn")).get();
    assert_eq!(all().await.expect("query").len(), 1);
    rusqlite::Connection::open(&path)
        .expect("raw")
        .execute_batch(&format!("DROP TABLE {TABLE}"))
        .expect("drop");
    assert!(
        all()
            .await
            .expect("an empty answer, not an error")
            .is_empty()
    );
    assert!(matches!(
        accounts.load(made.rn().clone()).get().await,
        Err(Error::NotFound { .. })
    ));
    account(&pool, "b@example.com", 2)
        .create()
        .await
        .expect("the table is made again");
    assert_eq!(all().await.expect("query").len(), 1);
    pool.close().await;
}
