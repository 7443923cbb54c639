//! Locks (L1-L3) and transactions (T1, T2) under concurrency: tasks, pools and real child
//! processes. Every test asserts an outcome: counts, owners, refusals.
//!
//! The multi-process tests run this test binary again as a child (`child_process_role`
//! selects the role from `KORM_LOCK_CHILD`; in a normal run it does nothing).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use korm::{Error, LockOptions, Pool, Rn, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::support;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Counter {
    n: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Label {
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LabelAsNumber {
    text: i64,
}

fn new_rn<T>(collection: &str) -> Rn<T> {
    format!("{collection}{}", uuid::Uuid::new_v4())
        .parse()
        .expect("item rn")
}

async fn memory_pool() -> Pool {
    korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .with_lock_timeout(Duration::from_secs(10))
        .open()
        .await
        .expect("open")
}

async fn make_counter(pool: &Pool, rn: Rn<Counter>) -> korm::Item<Counter> {
    korm::item::<Counter>(pool)
        .from_data(rn, Counter { n: 0 })
        .expect("floating")
        .create()
        .await
        .expect("create counter")
}

/// One locked read-modify-write of a counter.
async fn increment(pool: &Pool, rn: &Rn<Counter>) -> korm::Result<()> {
    let guard = pool.locker().acquire(rn).await?;
    let item = korm::item::<Counter>(pool).load(rn.clone()).get().await?;
    let n = item.data().n;
    item.update(|c| c.n = n + 1).commit_under(&guard).await?;
    guard.release().await
}

// ---------------------------------------------------------------------------------------------
// In-process locks (L1, L2)

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_rn_exactly_one_succeeds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite(dir.path().join("one.sqlite")))
        .open()
        .await
        .expect("open");
    let rn: Rn<Counter> = new_rn("[rn]:counters:plain:");
    // The table exists first, so every create races for the row alone.
    make_counter(&pool, new_rn("[rn]:counters:plain:")).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (pool, rn) = (pool.clone(), rn.clone());
        tasks.push(tokio::spawn(async move {
            korm::item::<Counter>(&pool)
                .from_data(rn, Counter { n: i })
                .expect("floating")
                .create()
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => created += 1,
            Err(Error::AlreadyExists { rn: at }) => assert_eq!(at, rn.to_string()),
            Err(other) => panic!("expected AlreadyExists, got {other:?}"),
        }
    }
    assert_eq!(created, 1);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_process_lock_serializes_read_modify_write() {
    let pool = memory_pool().await;
    let rn: Rn<Counter> = new_rn("[rn]:counters:plain:");
    make_counter(&pool, rn.clone()).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (pool, rn) = (pool.clone(), rn.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                increment(&pool, &rn).await.expect("increment");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let item = korm::item::<Counter>(&pool)
        .load(rn)
        .get()
        .await
        .expect("load");
    assert_eq!(item.data().n, 400);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tx_on_overlapping_rns_never_deadlock() {
    let pool = memory_pool().await;
    let rns: Vec<Rn<Counter>> = (0..4).map(|_| new_rn("[rn]:counters:plain:")).collect();
    for rn in &rns {
        make_counter(&pool, rn.clone()).await;
    }
    // Each task commits a pair, added in opposite orders by neighbours: without sorted
    // locking, two of them would each hold one lock and wait for the other.
    let mut tasks = Vec::new();
    for t in 0..8usize {
        let (pool, rns) = (pool.clone(), rns.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..25usize {
                let (a, b) = (
                    rns[(t + round) % 4].clone(),
                    rns[(t + round + 1) % 4].clone(),
                );
                let (first, second) = if t % 2 == 0 { (a, b) } else { (b, a) };
                let locker = pool.locker();
                let guards = locker
                    .acquire_multiple([&first, &second])
                    .await
                    .expect("locks");
                let items = korm::item::<Counter>(&pool);
                let x = items.load(first.clone()).get().await.expect("load");
                let y = items.load(second.clone()).get().await.expect("load");
                let (nx, ny) = (x.data().n, y.data().n);
                let mut tx = korm::tx(&pool);
                tx.commit(x.update(|c| c.n = nx + 1));
                tx.commit(y.update(|c| c.n = ny + 1));
                for guard in &guards {
                    tx.under(guard);
                }
                tx.persist().await.expect("persist");
            }
        }));
    }
    let all = async {
        for task in tasks {
            task.await.expect("task");
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("no deadlock: every task completed");
    let mut total = 0;
    for rn in &rns {
        total += korm::item::<Counter>(&pool)
            .load(rn.clone())
            .get()
            .await
            .expect("load")
            .data()
            .n;
    }
    assert_eq!(total, 8 * 25 * 2);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_tx_on_overlapping_rns_complete() {
    // Transactions that take their own locks (no locker), over overlapping sets.
    let pool = memory_pool().await;
    let rns: Vec<Rn<Label>> = (0..3).map(|_| new_rn("[rn]:labels:plain:")).collect();
    for rn in &rns {
        korm::item::<Label>(&pool)
            .from_data(rn.clone(), Label { text: "0".into() })
            .expect("floating")
            .create()
            .await
            .expect("create");
    }
    let mut tasks = Vec::new();
    for t in 0..6usize {
        let (pool, rns) = (pool.clone(), rns.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..20usize {
                let items = korm::item::<Label>(&pool);
                let mut tx = korm::tx(&pool);
                for k in [(t + round) % 3, (t + round + 2) % 3] {
                    let item = items.load(rns[k].clone()).get().await.expect("load");
                    tx.commit(item.update(|l| l.text = format!("{t}-{round}")));
                }
                // Loaded without a lock, so another task may have written meanwhile: last
                // writer wins here (this test is about lock order, not conflicts).
                tx.persist_with(korm::WriteOptions::new().last_writer_wins(true))
                    .await
                    .expect("persist");
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        for task in tasks {
            task.await.expect("task");
        }
    })
    .await
    .expect("all transactions completed");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locker_acquire_try_is_locked_timeout_and_cancellation() {
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .with_lock_timeout(Duration::from_millis(100))
        .open()
        .await
        .expect("open");
    let locker = pool.locker();
    let rn: Rn<Counter> = new_rn("[rn]:counters:plain:");
    // The same item spelled with its layer is the same lock.
    let spelled: Rn<Counter> = rn.with_layer("db").expect("with layer");
    let guard = locker.acquire(&rn).await.expect("acquire");
    assert_eq!(guard.token(), None, "no shared locks: no fencing token");
    assert!(locker.is_locked(&rn) && locker.is_locked(&spelled));
    assert!(locker.try_acquire(&spelled).await.expect("try").is_none());
    let started = std::time::Instant::now();
    match locker.acquire(&spelled).await {
        Err(Error::LockTimeout { rn: at, waited }) => {
            assert!(at.ends_with(rn.id().expect("id")), "{at}");
            // The configured wait, as korm 1.5 reports it; the time spent is at least that.
            assert_eq!(waited, Duration::from_millis(100));
            assert!(started.elapsed() >= waited, "{:?}", started.elapsed());
        }
        other => panic!("expected LockTimeout, got {other:?}"),
    }
    // A write to the RN waits for the lock too, and times out naming it.
    let write = korm::item::<Counter>(&pool)
        .from_data(rn.clone(), Counter { n: 1 })
        .expect("floating")
        .create()
        .await;
    assert!(matches!(write, Err(Error::LockTimeout { .. })), "{write:?}");
    // A cancelled wait leaves nothing behind.
    let waiting = locker.acquire_within(&rn, Duration::from_secs(5));
    assert!(
        tokio::time::timeout(Duration::from_millis(20), waiting)
            .await
            .is_err()
    );
    drop(guard);
    assert!(!locker.is_locked(&rn));
    let again = locker.try_acquire(&rn).await.expect("try").expect("free");
    // acquire_multiple sorts and deduplicates: locking [b, a, b] takes two locks.
    let other: Rn<Counter> = new_rn("[rn]:counters:plain:");
    drop(again);
    let guards = locker
        .acquire_multiple([&other, &rn, &other])
        .await
        .expect("multiple");
    assert_eq!(guards.len(), 2);
    assert!(guards[0].rn() < guards[1].rn());
    drop(guards);
    assert!(!locker.is_locked(&rn) && !locker.is_locked(&other));
    pool.close().await;
}

// ---------------------------------------------------------------------------------------------
// Transactions (T1, T2)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_across_layers_undoes_the_first_layer_when_the_second_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = korm::pool()
        .layer("a", korm::layers::sqlite(dir.path().join("a.sqlite")))
        .layer("b", korm::layers::sqlite(dir.path().join("b.sqlite")))
        .open()
        .await
        .expect("open");
    // Layer b has `text` as an integer column.
    korm::item::<LabelAsNumber>(&pool)
        .from_data(
            "[rn][from::b]:labels:plain:*".parse().expect("rn"),
            LabelAsNumber { text: 1 },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    let kept = korm::item::<Counter>(&pool)
        .from_data(new_rn("[rn][from::a]:counters:plain:"), Counter { n: 5 })
        .expect("floating")
        .create()
        .await
        .expect("create");
    let first_rn: Rn<Label> = new_rn("[rn][from::a]:labels:plain:");
    let second_rn: Rn<Label> = new_rn("[rn][from::b]:labels:plain:");
    let mut tx = korm::tx(&pool);
    tx.create(
        korm::item::<Label>(&pool)
            .from_data(first_rn.clone(), Label { text: "a".into() })
            .expect("floating"),
    );
    tx.commit(kept.update(|c| c.n = 6));
    tx.create(
        korm::item::<Label>(&pool)
            .from_data(second_rn.clone(), Label { text: "b".into() })
            .expect("floating"),
    );
    match tx.persist().await {
        Err(Error::WriteFailed { op, rn, source }) => {
            assert_eq!(op, 2);
            assert_eq!(rn, second_rn.to_string());
            assert!(
                matches!(*source, Error::SchemaMismatch { ref column, .. } if column == "text"),
                "{source:?}"
            );
        }
        other => panic!("expected WriteFailed, got {other:?}"),
    }
    let labels = korm::item::<Label>(&pool);
    assert!(
        labels
            .load(first_rn.clone())
            .get_optional()
            .await
            .expect("load")
            .is_none(),
        "the insert on layer a was undone"
    );
    let counters = korm::item::<Counter>(&pool);
    let all = counters
        .query("[rn][from::a]:counters:plain:*".parse().expect("rn"))
        .get()
        .await
        .expect("query");
    assert_eq!(all[0].data().n, 5, "the update on layer a was undone");

    // With destructive, the same transaction goes through.
    let mut tx = korm::tx(&pool);
    let first = tx.create(
        labels
            .from_data(first_rn.clone(), Label { text: "a".into() })
            .expect("floating"),
    );
    let second = tx.create(
        labels
            .from_data(second_rn.clone(), Label { text: "b".into() })
            .expect("floating"),
    );
    let mut done = tx
        .persist_with(WriteOptions::new().destructive(true))
        .await
        .expect("destructive persist");
    assert_eq!(done.take(first).expect("first").data().text, "a");
    let second = done.take(second).expect("second");
    assert_eq!(
        labels
            .load(second.rn().clone())
            .get()
            .await
            .expect("load")
            .data()
            .text,
        "b"
    );
    pool.close().await;
}

#[tokio::test]
async fn tx_handles_belong_to_their_transaction() {
    let pool = memory_pool().await;
    let counters = korm::item::<Counter>(&pool);
    let mut one = korm::tx(&pool);
    let a = one.create(
        counters
            .from_data(new_rn("[rn]:counters:plain:"), Counter { n: 1 })
            .expect("floating"),
    );
    let mut two = korm::tx(&pool);
    let b = two.create(
        counters
            .from_data(new_rn("[rn]:counters:plain:"), Counter { n: 2 })
            .expect("floating"),
    );
    let mut one = one.persist().await.expect("persist");
    let two = two.persist().await.expect("persist");
    assert!(matches!(one.take(b), Err(Error::InvalidOption { .. })));
    let a = one.take(a).expect("a");
    // Delete and restore go through a tx too.
    let mut tx = korm::tx(&pool);
    let deleted = tx.delete(a);
    let mut done = tx.persist().await.expect("delete");
    let deleted = done.take(deleted).expect("deleted");
    let mut tx = korm::tx(&pool);
    let restored = tx.restore(deleted);
    let restored = tx
        .persist()
        .await
        .expect("restore")
        .take(restored)
        .expect("restored");
    assert_eq!(restored.data().n, 1);
    drop(two);
    // Items of another pool are refused.
    let other = memory_pool().await;
    let mut tx = korm::tx(&pool);
    tx.create(
        korm::item::<Counter>(&other)
            .from_data(new_rn("[rn]:counters:plain:"), Counter { n: 3 })
            .expect("floating"),
    );
    assert!(matches!(
        tx.persist().await,
        Err(Error::InvalidOption { .. })
    ));
    pool.close().await;
    other.close().await;
}

// ---------------------------------------------------------------------------------------------
// Shared locks (L3) and fencing, on every SQL layer

/// Where shared-lock tests keep their locks: two pools (two owners) on one database.
enum Store {
    Sqlite(tempfile::TempDir),
    Server(support::TestDatabase),
}

impl Store {
    async fn new(server: Option<support::Server>) -> Option<Store> {
        Some(match server {
            None => Store::Sqlite(tempfile::tempdir().expect("temp dir")),
            Some(server) => Store::Server(support::create(server).await?),
        })
    }

    fn builder(&self) -> korm::PoolBuilder {
        let pool = korm::pool();
        match self {
            Store::Sqlite(dir) => {
                pool.layer("db", korm::layers::sqlite(dir.path().join("locks.sqlite")))
            }
            Store::Server(db) if db.url.starts_with("postgres") => {
                pool.layer("db", korm::layers::postgres(db.url.clone()))
            }
            Store::Server(db) => pool.layer("db", korm::layers::mysql(db.url.clone())),
        }
    }

    async fn pool(&self, options: LockOptions) -> Pool {
        self.builder()
            .with_locks("db", options)
            .with_lock_timeout(Duration::from_secs(10))
            .open()
            .await
            .expect("open")
    }
}

async fn shared_locks_hold_expire_and_fence(server: Option<support::Server>) {
    let Some(store) = Store::new(server).await else {
        return;
    };
    let quick = LockOptions::new()
        .with_ttl(Duration::from_millis(400))
        .with_retry(Duration::from_millis(10))
        .with_refresh(Duration::from_secs(60));
    let a = store.pool(quick.clone().with_owner_id("owner-a")).await;
    let b = store.pool(quick.with_owner_id("owner-b")).await;
    assert_eq!(a.locker().owner_id(), Some("owner-a"));
    let rn: Rn<Counter> = new_rn("[rn]:counters:shared:");
    make_counter(&a, rn.clone()).await;

    // Held by a: b can not take it; released, b can.
    let held = a.locker().acquire(&rn).await.expect("a acquires");
    let first_token = held.token().expect("a shared lock has a token");
    assert!(b.locker().try_acquire(&rn).await.expect("try").is_none());
    held.release().await.expect("release");
    let by_b = b.locker().try_acquire(&rn).await.expect("try").expect("b");
    assert!(by_b.token().expect("token") > first_token);
    by_b.release().await.expect("release");

    // a's lock expires (no refresh within the ttl, as if a were paused): b takes it over
    // and writes; a's late write is refused by its stale fencing token.
    let stale = a.locker().acquire(&rn).await.expect("a acquires");
    let stale_token = stale.token().expect("token");
    let started = Instant::now();
    let fresh = b
        .locker()
        .acquire(&rn)
        .await
        .expect("b takes the expired lock over");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "taken before expiry"
    );
    assert!(fresh.token().expect("token") > stale_token);
    let current = korm::item::<Counter>(&b)
        .load(rn.clone())
        .get()
        .await
        .expect("load");
    current
        .update(|c| c.n = 10)
        .commit_under(&fresh)
        .await
        .expect("b writes");
    let late = korm::item::<Counter>(&a)
        .load(rn.clone())
        .get()
        .await
        .expect("load");
    match late.update(|c| c.n = -1).commit_under(&stale).await {
        Err(Error::StaleLock { token, .. }) => assert_eq!(token, stale_token),
        other => panic!("expected StaleLock, got {other:?}"),
    }
    // a's release must not delete b's row.
    stale.release().await.expect("release");
    assert!(a.locker().try_acquire(&rn).await.expect("try").is_none());
    fresh.release().await.expect("release");
    let n = korm::item::<Counter>(&a)
        .load(rn.clone())
        .get()
        .await
        .expect("load")
        .data()
        .n;
    assert_eq!(n, 10, "the stale write changed nothing");

    // Plain writes under shared locks are fenced too, and still work.
    let item = korm::item::<Counter>(&a)
        .load(rn.clone())
        .get()
        .await
        .expect("load");
    item.update(|c| c.n = 11)
        .commit()
        .await
        .expect("plain commit");
    a.close().await;
    b.close().await;
}

async fn shared_locks_are_refreshed(server: Option<support::Server>) {
    let Some(store) = Store::new(server).await else {
        return;
    };
    let options = LockOptions::new()
        .with_ttl(Duration::from_millis(300))
        .with_retry(Duration::from_millis(10))
        .with_refresh(Duration::from_millis(80));
    let a = store.pool(options.clone().with_owner_id("owner-a")).await;
    let b = store.pool(options.with_owner_id("owner-b")).await;
    let rn: Rn<Counter> = new_rn("[rn]:counters:shared:");
    let held = a.locker().acquire(&rn).await.expect("acquire");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        b.locker().try_acquire(&rn).await.expect("try").is_none(),
        "the refresher kept the lock past its ttl"
    );
    assert!(!held.is_lost());
    // Closing the pool stops the refresher and deletes the row.
    drop(held);
    a.close().await;
    let taken = b
        .locker()
        .acquire_within(&rn, Duration::from_millis(200))
        .await;
    assert!(taken.is_ok(), "{taken:?}");
    b.close().await;
}

/// A lock whose refreshes fail (the lock layer busy or unreachable) is lost once its
/// TTL has passed, when another owner may take the row: the holder learns it, and a write
/// under it is refused, instead of going on as if it held the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_not_refreshed_within_its_ttl_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("locks.sqlite");
    let options = LockOptions::new()
        .with_ttl(Duration::from_millis(400))
        .with_retry(Duration::from_millis(10))
        .with_refresh(Duration::from_millis(100));
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite(&file))
        .with_locks("db", options)
        .open()
        .await
        .expect("open");
    let item = korm::item::<Counter>(&pool)
        .from_data(new_rn("[rn]:counters:refreshless:"), Counter { n: 1 })
        .expect("data")
        .create()
        .await
        .expect("create");
    let held = pool.locker().acquire(item.rn()).await.expect("acquire");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!held.is_lost(), "refreshed while the table is there");
    // Another connection holds the database's write lock: every refresh waits, then fails.
    let raw = rusqlite::Connection::open(&file).expect("raw");
    raw.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(held.is_lost(), "no refresh within the ttl");
    let mut tx = korm::tx(&pool);
    tx.under(&held);
    tx.commit(item.update(|c| c.n = 2));
    let err = tx.persist().await.expect_err("a write under a lost lock");
    assert!(matches!(err, Error::StaleLock { .. }), "{err:?}");
    raw.execute_batch("COMMIT").expect("let go");
    // A refresh that gets through after the ttl does not make it held again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(held.is_lost());
    drop(held);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_locks_sqlite() {
    shared_locks_hold_expire_and_fence(None).await;
    shared_locks_are_refreshed(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_locks_postgres() {
    shared_locks_hold_expire_and_fence(Some(support::Server::Postgres)).await;
    shared_locks_are_refreshed(Some(support::Server::Postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_locks_mysql() {
    shared_locks_hold_expire_and_fence(Some(support::Server::MySql)).await;
    shared_locks_are_refreshed(Some(support::Server::MySql)).await;
}

// ---------------------------------------------------------------------------------------------
// Several processes

const ROLE: &str = "KORM_LOCK_CHILD";
const TASKS: usize = 8;
const INCREMENTS: usize = 200;

fn counter_lock_options(owner: &str) -> LockOptions {
    LockOptions::new()
        .with_ttl(Duration::from_secs(10))
        .with_retry(Duration::from_millis(2))
        .with_refresh(Duration::from_secs(3))
        .with_owner_id(owner)
}

async fn pg_pool(url: &str, owner: &str) -> Pool {
    korm::pool()
        .layer("db", korm::layers::postgres(url))
        .with_locks("db", counter_lock_options(owner))
        .with_lock_timeout(Duration::from_secs(60))
        .open()
        .await
        .expect("open")
}

async fn run_increments(pool: &Pool, rn: &Rn<Counter>) {
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (pool, rn) = (pool.clone(), rn.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                increment(&pool, &rn).await.expect("increment");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
}

/// A child process killed when the test ends, pass or fail.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn child(role: &str, envs: &[(&str, String)]) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([
            "--exact",
            "locks::child_process_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in envs {
        command.env(key, value);
    }
    command
}

/// The child side of the multi-process tests; does nothing in a normal run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn child_process_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let rn: Rn<Counter> = std::env::var("KORM_LOCK_RN")
        .expect("rn")
        .parse()
        .expect("rn");
    match role.as_str() {
        "counter" => {
            let url = std::env::var("KORM_LOCK_URL").expect("url");
            let pool = pg_pool(&url, "child").await;
            run_increments(&pool, &rn).await;
            pool.close().await;
            println!("DONE");
        }
        "holder" => {
            let path = std::env::var("KORM_LOCK_PATH").expect("path");
            let pool = korm::pool()
                .layer("db", korm::layers::sqlite(path))
                .with_locks(
                    "db",
                    LockOptions::new()
                        .with_ttl(Duration::from_millis(1000))
                        .with_refresh(Duration::from_millis(200))
                        .with_owner_id("doomed-child"),
                )
                .open()
                .await
                .expect("open");
            let guard = pool.locker().acquire(&rn).await.expect("acquire");
            println!("LOCKED {}", guard.token().expect("token"));
            tokio::time::sleep(Duration::from_secs(120)).await;
            drop(guard);
        }
        other => panic!("unknown child role {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_lost_updates_across_two_processes_on_postgres() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let Some(db) = support::create(support::Server::Postgres).await else {
        return;
    };
    let pool = pg_pool(&db.url, "parent").await;
    let rn: Rn<Counter> = new_rn("[rn]:counters:shared:");
    make_counter(&pool, rn.clone()).await;
    let mut other = child(
        "counter",
        &[
            ("KORM_LOCK_URL", db.url.clone()),
            ("KORM_LOCK_RN", rn.to_string()),
        ],
    )
    .spawn()
    .expect("spawn child");
    let started = Instant::now();
    run_increments(&pool, &rn).await;
    let status = tokio::task::spawn_blocking(move || {
        let out = other.stdout.take().expect("stdout");
        let said_done = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .iter()
            .any(|line| line.ends_with("DONE"));
        (other.wait().expect("wait"), said_done)
    })
    .await
    .expect("join");
    assert!(
        status.0.success() && status.1,
        "the child failed: {status:?}"
    );
    let n = korm::item::<Counter>(&pool)
        .load(rn.clone())
        .get()
        .await
        .expect("load")
        .data()
        .n;
    assert_eq!(
        n,
        (2 * TASKS * INCREMENTS) as i64,
        "lost updates ({:?})",
        started.elapsed()
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_is_taken_over_after_its_ttl() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("killed.sqlite");
    let rn: Rn<Counter> = new_rn("[rn]:counters:shared:");
    let mut holder = Reaper(
        child(
            "holder",
            &[
                ("KORM_LOCK_PATH", path.display().to_string()),
                ("KORM_LOCK_RN", rn.to_string()),
            ],
        )
        .spawn()
        .expect("spawn child"),
    );
    let out = holder.0.stdout.take().expect("stdout");
    let child_token: u64 = tokio::task::spawn_blocking(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                line.split_once("LOCKED ")
                    .map(|(_, token)| token.trim().to_owned())
            })
            .expect("the child took the lock")
            .parse()
            .expect("token")
    })
    .await
    .expect("join");
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite(&path))
        .with_locks(
            "db",
            LockOptions::new()
                .with_ttl(Duration::from_millis(1000))
                .with_retry(Duration::from_millis(20)),
        )
        .open()
        .await
        .expect("open");
    // The child refreshes its lock: it stays held past its ttl.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        pool.locker().try_acquire(&rn).await.expect("try").is_none(),
        "the child's lock is refreshed"
    );
    holder.0.kill().expect("SIGKILL the child");
    let _ = holder.0.wait();
    let killed = Instant::now();
    let guard = pool
        .locker()
        .acquire_within(&rn, Duration::from_secs(5))
        .await
        .expect("taken over after the ttl");
    let waited = killed.elapsed();
    assert!(
        waited <= Duration::from_millis(2500),
        "took {waited:?}, the ttl is 1 s"
    );
    assert!(guard.token().expect("token") > child_token);
    guard.release().await.expect("release");
    pool.close().await;
}

#[tokio::test]
async fn an_endless_wait_never_overflows() {
    // Duration::MAX can not be added to an Instant: it must mean "wait as long as it takes",
    // never a panic.
    let pool = memory_pool().await;
    let rn: Rn<Counter> = new_rn("[rn]:counters:main:");
    let locker = pool.locker();
    let held = locker
        .acquire_within(&rn, Duration::MAX)
        .await
        .expect("a free lock");
    let waiting = tokio::time::timeout(
        Duration::from_millis(200),
        locker.acquire_within(&rn, Duration::MAX),
    )
    .await;
    assert!(
        waiting.is_err(),
        "the second acquire waits while the lock is held"
    );
    drop(held);
    let again = tokio::time::timeout(
        Duration::from_secs(5),
        locker.acquire_within(&rn, Duration::MAX),
    )
    .await
    .expect("acquired once released")
    .expect("a lock");
    drop(again);
    pool.close().await;
}

/// Two transactions cross: each writes one item made from data (its before-image is read
/// under its lock) and one loaded item, the other way round. Every item of a plan is locked
/// in one sorted acquire, so neither holds what the other waits for (here the lock timeout
/// is 2 s: a deadlock would end in `LockTimeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossed_transactions_of_made_and_loaded_items_do_not_deadlock() {
    let dir = tempfile::tempdir().expect("dir");
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite(dir.path().join("db.sqlite")))
        .with_lock_timeout(Duration::from_secs(2))
        .open()
        .await
        .expect("open");
    let x = make_counter(&pool, new_rn("[rn]:locks:crossed:")).await;
    let y = make_counter(&pool, new_rn("[rn]:locks:crossed:")).await;
    let (x, y) = (x.rn().clone(), y.rn().clone());
    let counters = korm::item::<Counter>(&pool);
    let cross = async |made: &Rn<Counter>, loaded: &Rn<Counter>, n: i64| {
        let loaded = counters.load(loaded.clone()).get().await?;
        let mut tx = korm::tx(&pool);
        tx.commit(counters.uncommitted(made.clone(), Counter { n })?);
        tx.commit(loaded.update(|c| c.n = n));
        tx.persist().await.map(|_| ())
    };
    for round in 0..30 {
        let (one, two) = tokio::join!(cross(&x, &y, round), cross(&y, &x, -round));
        for result in [one, two] {
            // A conflict (the other tx wrote the loaded item first) is fine; waiting for
            // each other is not.
            assert!(
                !matches!(result, Err(Error::LockTimeout { .. })),
                "round {round}: {result:?}"
            );
        }
    }
    pool.close().await;
}

/// A guard dropped without `release` lets go of its row before its in-process lock: the
/// next task of the pool claims a row of its own after the late delete, so another pool
/// can not take the lock meanwhile (the dropped guard's row had expired: the next task's
/// claim took it over, and the late delete removed the new holder's row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_guard_lets_go_of_its_row_before_its_in_process_lock() {
    let Some(store) = Store::new(None).await else {
        return;
    };
    let quick = LockOptions::new()
        .with_ttl(Duration::from_millis(300))
        .with_retry(Duration::from_millis(10))
        .with_refresh(Duration::from_secs(60));
    let a = store.pool(quick.clone().with_owner_id("owner-a")).await;
    let b = store.pool(quick.with_owner_id("owner-b")).await;
    let rn: Rn<Counter> = new_rn("[rn]:counters:dropped:");
    for round in 0..8 {
        let first = a.locker().acquire(&rn).await.expect("a acquires");
        // The row expires (no refresh within the ttl).
        tokio::time::sleep(Duration::from_millis(320)).await;
        drop(first);
        let second = a.locker().acquire(&rn).await.expect("a acquires again");
        // Whatever late delete there is runs now.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let stolen = b.locker().try_acquire(&rn).await.expect("try");
        assert!(stolen.is_none(), "round {round}: b took a lock a holds");
        second.release().await.expect("release");
    }
}

/// `close` lets a write plan that holds its locks run to its end before it closes anything:
/// the plan's shared lock rows stay (another process can not take the item) until the plan
/// is done, and the write is applied whole. (Close deleted the rows and closed the layers
/// under a plan part way through: another process could take its locks, and a plan across
/// two layers could be left applied on one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_a_write_in_flight_before_it_lets_its_locks_go() {
    let dir = tempfile::tempdir().expect("dir");
    let (locks, data) = (
        dir.path().join("locks.sqlite"),
        dir.path().join("data.sqlite"),
    );
    let open = |owner: &str| {
        korm::pool()
            .layer("locks", korm::layers::sqlite(&locks))
            .layer("db", korm::layers::sqlite(&data))
            .with_locks(
                "locks",
                LockOptions::new()
                    .with_retry(Duration::from_millis(10))
                    .with_owner_id(owner),
            )
            .open()
    };
    let a = open("owner-a").await.expect("open a");
    let b = open("owner-b").await.expect("open b");
    let rn: Rn<Counter> = new_rn("[rn][from::db]:counters:closing:");
    let item = make_counter(&a, rn.clone()).await;
    // Another connection holds the data file's write lock: a's commit waits in the layer.
    let raw = rusqlite::Connection::open(&data).expect("raw");
    raw.execute_batch("BEGIN IMMEDIATE").expect("write lock");
    let commit = tokio::spawn(async move { item.update(|c| c.n = 41).commit().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closer = a.clone();
    let close = tokio::spawn(async move { closer.close().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!close.is_finished(), "close waits for the write in flight");
    assert!(
        b.locker().try_acquire(&rn).await.expect("try").is_none(),
        "the write's lock is still held"
    );
    raw.execute_batch("COMMIT").expect("let go");
    let written = commit
        .await
        .expect("task")
        .expect("the write is applied whole");
    assert_eq!(written.data().n, 41);
    close.await.expect("close");
    assert!(matches!(
        korm::item::<Counter>(&a).load(rn.clone()).get().await,
        Err(Error::PoolClosed)
    ));
    let stored = korm::item::<Counter>(&b)
        .load(rn.clone())
        .get()
        .await
        .expect("load");
    assert_eq!(stored.data().n, 41);
    b.locker()
        .try_acquire(&rn)
        .await
        .expect("try")
        .expect("free once the write is done")
        .release()
        .await
        .expect("release");
    b.close().await;
}
