//! Other connections and processes: locked databases (K7), tables created elsewhere (K8), and
//! a runtime that keeps running while SQLite waits.

use std::time::{Duration, Instant};

use korm::eq;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Note {
    text: String,
    n: i64,
}

const NOTES: &str = "[rn]:notes:plain:*";

async fn create_note(pool: &korm::Pool, n: i64) -> korm::Item<Note> {
    korm::item::<Note>(pool)
        .from_data(
            NOTES.parse().expect("rn"),
            Note {
                text: format!("note {n}"),
                n,
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create")
}

/// Holds an exclusive lock on the database from another connection for `hold`.
fn hold_exclusive_lock(path: std::path::PathBuf, hold: Duration) -> std::sync::mpsc::Receiver<()> {
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS other (x);")
            .expect("lock");
        locked_tx.send(()).expect("signal");
        std::thread::sleep(hold);
        conn.execute_batch("COMMIT").expect("unlock");
    });
    locked_rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_locked_database_does_not_fail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("locked.sqlite");
    // A fresh file, held with an exclusive lock by another connection for 400 ms.
    let locked = hold_exclusive_lock(path.clone(), Duration::from_millis(400));
    locked.recv().expect("locked");
    let pool = korm::pool()
        .layer(
            "db",
            korm::layers::sqlite(&path).with_busy_timeout(Duration::from_secs(10)),
        )
        .open()
        .await
        .expect("opening a locked database must not fail");
    // A write waits for the lock (busy timeout) and then succeeds.
    let note = create_note(&pool, 1).await;
    let loaded = korm::item::<Note>(&pool)
        .load(note.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data().n, 1);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_busy_timeout_is_a_busy_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("busy.sqlite");
    let pool = korm::pool()
        .layer(
            "db",
            korm::layers::sqlite(&path).with_busy_timeout(Duration::from_millis(100)),
        )
        .open()
        .await
        .expect("open");
    create_note(&pool, 1).await;
    let locked = hold_exclusive_lock(path.clone(), Duration::from_millis(1500));
    locked.recv().expect("locked");
    let err = korm::item::<Note>(&pool)
        .from_data(
            NOTES.parse().expect("rn"),
            Note {
                text: "x".into(),
                n: 2,
            },
        )
        .expect("floating")
        .create()
        .await
        .expect_err("the database is locked");
    match err {
        korm::Error::Database { kind, layer, .. } => {
            assert_eq!(kind, korm::DbErrorKind::Busy);
            assert_eq!(layer, "db");
        }
        other => panic!("expected a busy error, got {other:?}"),
    }
    pool.close().await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_runtime_keeps_running_while_sqlite_waits() {
    // On a single-threaded runtime, a write waiting for a lock held elsewhere must not stop
    // other tasks: SQLite runs on its own thread.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wait.sqlite");
    let pool = korm::pool()
        .layer(
            "db",
            korm::layers::sqlite(&path).with_busy_timeout(Duration::from_secs(10)),
        )
        .open()
        .await
        .expect("open");
    create_note(&pool, 1).await;
    let locked = hold_exclusive_lock(path.clone(), Duration::from_millis(600));
    locked.recv().expect("locked");
    let ticker = tokio::spawn(async {
        let mut ticks = 0u32;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(400) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            ticks += 1;
        }
        ticks
    });
    let started = Instant::now();
    create_note(&pool, 2).await;
    let waited = started.elapsed();
    let ticks = ticker.await.expect("ticker");
    assert!(
        waited >= Duration::from_millis(300),
        "the write should have waited for the lock ({waited:?})"
    );
    assert!(
        ticks >= 10,
        "the runtime was blocked while SQLite waited: only {ticks} ticks"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_created_later_by_another_pool_is_seen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shared.sqlite");
    let reader = korm::pool()
        .layer("db", korm::layers::sqlite(&path))
        .open()
        .await
        .expect("open reader");
    let writer = korm::pool()
        .layer("db", korm::layers::sqlite(&path))
        .open()
        .await
        .expect("open writer");
    let notes = korm::item::<Note>(&reader);
    assert!(
        notes
            .query(NOTES.parse().expect("rn"))
            .get()
            .await
            .expect("query")
            .is_empty()
    );
    assert!(
        notes
            .query(NOTES.parse().expect("rn"))
            .filter(eq("n", 1))
            .get()
            .await
            .expect("query")
            .is_empty()
    );
    let made = create_note(&writer, 1).await;
    assert!(
        notes
            .load(made.rn().clone())
            .get_optional()
            .await
            .expect("load")
            .is_some(),
        "a miss was cached"
    );
    assert_eq!(
        notes
            .query(NOTES.parse().expect("rn"))
            .filter(eq("n", 1))
            .get()
            .await
            .expect("query")
            .len(),
        1
    );

    // A column the other pool adds later is seen too.
    #[derive(Debug, Serialize, Deserialize)]
    struct NoteV2 {
        text: String,
        n: i64,
        colour: String,
    }
    let v2 = korm::item::<NoteV2>(&writer)
        .from_data(
            NOTES.parse().expect("rn"),
            NoteV2 {
                text: "v2".into(),
                n: 2,
                colour: "red".into(),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create v2");
    let seen = korm::item::<NoteV2>(&reader)
        .load(v2.rn().clone())
        .get()
        .await
        .expect("load v2");
    assert_eq!(seen.data().colour, "red");
    let filtered = korm::item::<NoteV2>(&reader)
        .query(NOTES.parse().expect("rn"))
        .filter(eq("colour", "red"))
        .get()
        .await
        .expect("query");
    assert_eq!(filtered.len(), 1);
    reader.close().await;
    writer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_one_file_all_land() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("many.sqlite");
    let a = korm::pool()
        .layer("db", korm::layers::sqlite(&path))
        .open()
        .await
        .expect("open");
    let b = korm::pool()
        .layer("db", korm::layers::sqlite(&path))
        .open()
        .await
        .expect("open");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let pool = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { create_note(&pool, i).await }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let all = korm::item::<Note>(&a)
        .query(NOTES.parse().expect("rn"))
        .get()
        .await
        .expect("query");
    assert_eq!(all.len(), 40);
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_writes_leave_checkpoints_to_the_connection_thread() {
    // With synchronous = NORMAL, writes run in place and SQLite's own checkpoint-on-commit is
    // off; the connection thread checkpoints every 1,000 commits instead. Without that, the
    // data would stay in the -wal file and the main file would not grow.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("normal.sqlite");
    let pool = korm::pool()
        .layer(
            "db",
            korm::layers::sqlite(&path).with_synchronous(korm::layers::Synchronous::Normal),
        )
        .open()
        .await
        .expect("open");
    let small = std::fs::metadata(&path).expect("db file").len();
    // In WAL mode, so the main file grows only by checkpoints.
    assert_eq!(journal_mode(&path), "wal");
    for n in 0..1_100 {
        create_note(&pool, n).await;
    }
    // The checkpoint runs on the thread, after the 1,000th commit; wait for it to land.
    let started = Instant::now();
    let mut size = std::fs::metadata(&path).expect("db file").len();
    while size < 40_000 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        size = std::fs::metadata(&path).expect("db file").len();
    }
    assert!(
        size >= 40_000,
        "no checkpoint reached the main file: {small} -> {size} bytes"
    );
    let all = korm::item::<Note>(&pool)
        .query(NOTES.parse().expect("rn"))
        .get()
        .await
        .expect("query");
    assert_eq!(all.len(), 1_100);
    pool.close().await;
}

/// The journal mode of a database file, read by a connection of its own.
fn journal_mode(path: &std::path::Path) -> String {
    rusqlite::Connection::open(path)
        .expect("open")
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_journal_is_the_default_and_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wal_path = dir.path().join("wal.sqlite");
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite(&wal_path))
        .open()
        .await
        .expect("open");
    create_note(&pool, 1).await;
    assert_eq!(journal_mode(&wal_path), "wal");
    pool.close().await;

    // Without WAL, NORMAL commits sync in SQLite's rollback journal, so writes go to the
    // connection thread; they must still land, one by one and concurrently.
    let plain_path = dir.path().join("plain.sqlite");
    let layer = korm::layers::sqlite(&plain_path)
        .with_wal_journal(false)
        .with_synchronous(korm::layers::Synchronous::Normal);
    let pool = korm::pool().layer("db", layer).open().await.expect("open");
    let mut tasks = Vec::new();
    for n in 0..20 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move { create_note(&pool, n).await }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(journal_mode(&plain_path), "delete");
    let all = korm::item::<Note>(&pool)
        .query(NOTES.parse().expect("rn"))
        .get()
        .await
        .expect("query");
    assert_eq!(all.len(), 20);
    pool.close().await;
}

/// A query too long to run in place (on the caller's thread) is interrupted there and runs
/// again on the connection thread: every row comes back, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_query_moves_to_the_connection_thread_and_returns_every_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("long.sqlite");
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite(&path))
        .open()
        .await
        .expect("open");
    create_note(&pool, 0).await;
    // Far more rows than the in-place budget scans, written by another connection (fast).
    let rows = 30_000i64;
    {
        let mut conn = rusqlite::Connection::open(&path).expect("open raw");
        let tx = conn.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare("INSERT INTO \"__items__notes__plain\" (\"rnId\", \"text\", \"n\") VALUES (?, ?, ?)")
                .expect("prepare");
            for n in 1..rows {
                insert
                    .execute(rusqlite::params![
                        uuid::Uuid::new_v4().to_string(),
                        format!("note {n}"),
                        n
                    ])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let notes = korm::item::<Note>(&pool);
    for _ in 0..2 {
        let found = notes
            .query(NOTES.parse().expect("rn"))
            .filter(korm::gt("n", -1))
            .get()
            .await
            .expect("query");
        assert_eq!(found.len() as i64, rows);
        let mut seen: Vec<i64> = found.iter().map(|item| item.data().n).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len() as i64, rows, "no row twice");
    }
    // A short query afterwards still runs (in place), and a load too.
    let few = notes
        .query(NOTES.parse().expect("rn"))
        .filter(eq("n", 7))
        .get()
        .await
        .expect("short query");
    assert_eq!(few.len(), 1);
    let again = notes.load(few[0].rn().clone()).get().await.expect("load");
    assert_eq!(again.data().n, 7);
    pool.close().await;
}
