//! The connection: a SQLite connection owned by its own thread, so that no call that may wait
//! (a lock held by another process, a sync to disk, a long scan) ever blocks a tokio worker.
//!
//! Async callers send the thread jobs. Jobs that can not wait on anything may instead run in
//! place, on the caller's thread, when the connection is free: point reads always, and
//! writes when a commit does not sync to disk (`synchronous` NORMAL or OFF in WAL mode, with
//! SQLite's checkpoint-on-commit turned off and checkpoints run by the thread). They take the
//! connection without waiting (`try_lock`) and run with a zero busy timeout, so they never
//! wait on a lock either; if the connection is busy or SQLite reports a lock, the job is sent
//! to the thread like any other. That saves the two thread wake-ups a hop costs.
//!
//! Checkpoints (which copy the WAL into the database file and sync it) run on the thread on
//! a second connection of its own, never on the shared one: reads and writes go on in place
//! while a checkpoint runs, as SQLite's WAL mode allows.
//!
//! Selects may scan, so they run in place only within a budget of SQLite VM instructions
//! ([`Worker::try_in_place`] with a limit): SQLite's progress handler interrupts one that
//! needs more, and it runs again on the thread. A small query then costs no hop, and a long
//! scan holds the caller's thread no longer than the budget takes to run. (A count of
//! instructions, not a clock: the same query always runs the same way, on a loaded machine
//! too.)
//!
//! Writes sent to the thread are group-committed ([`Worker::write`]): the writes that queued
//! up while a commit was syncing go into one transaction and one sync, each in a savepoint of
//! its own (see `apply_arriving` in the layer module and docs/design.md, "Group commit"). A batch
//! holds at most [`GROUP_PLANS`] plans and [`GROUP_OPS`] ops; when writers are concurrent the
//! thread waits for more at most [`GROUP_WAIT`] (and never longer than the last commit
//! took); a lone writer never waits. The thread applies each write as soon as it takes it, so
//! it applies one while the next writer is still preparing its own. Each caller gets its own
//! outcome once the shared COMMIT has returned, never before.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::{DbErrorKind, Error, Result};
use crate::layer::LayerOp;
use crate::layer::schema::TableSchema;

/// A map keyed by table name. Every read looks its table up in two of them, so they hash with
/// FNV-1a (a few instructions per byte of a short name) instead of SipHash: the keys are
/// table names korm made, not input an attacker picks to collide.
pub(crate) type TableMap<V> = HashMap<String, V, BuildHasherDefault<Fnv>>;

/// The FNV-1a hash (64 bits).
#[derive(Debug)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// What a job can use: the connection and the schema cache.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) conn: Connection,
    pub(crate) schemas: TableMap<TableSchema>,
    /// How to read each table's `SELECT *` rows, kept between reads (see `column_plan`).
    pub(crate) plans: TableMap<super::PlanEntry>,
    pub(crate) ident: String,
    /// A buffer for SQL text a read builds afresh each time (it keeps its capacity).
    pub(crate) sql: String,
    /// Commits since the last checkpoint, when checkpoints are korm's job (see
    /// [`State::committed`]).
    commits: u32,
    /// Checkpoint after this many commits; `None` leaves checkpoints to SQLite.
    checkpoint_every: Option<u32>,
    /// Whether the busy timeout is zero (a job ran in place since the thread's last job).
    busy_zero: bool,
}

impl State {
    /// Counts a commit. When korm runs checkpoints (writes may run in place, so SQLite's own
    /// checkpoint-on-commit, which syncs to disk, is turned off), says whether one is due.
    pub(crate) fn committed(&mut self) -> bool {
        match self.checkpoint_every {
            Some(every) => {
                self.commits += 1;
                self.commits >= every
            }
            None => false,
        }
    }

    /// Makes korm run checkpoints every `every` commits (or leaves them to SQLite).
    pub(crate) fn set_checkpoint_every(&mut self, every: Option<u32>) {
        self.checkpoint_every = every;
    }

    /// Sets the busy timeout back to `timeout` after jobs ran in place, before a job on the
    /// thread (which may wait).
    fn restore_busy_timeout(&mut self, timeout: Duration) {
        if self.busy_zero {
            match self.conn.busy_timeout(timeout) {
                Ok(()) => self.busy_zero = false,
                Err(e) => {
                    tracing::warn!(layer = %self.ident, error = %e, "could not restore the SQLite busy timeout; this job does not wait for locks");
                }
            }
        }
    }

    /// Whether a checkpoint is due; if so, counts from zero again (the caller asks the thread
    /// for one).
    fn take_checkpoint_due(&mut self) -> bool {
        let due = self
            .checkpoint_every
            .is_some_and(|every| self.commits >= every);
        if due {
            self.commits = 0;
        }
        due
    }
}

type Job = Box<dyn FnOnce(&mut State) + Send>;

/// What the connection thread is asked to do.
enum Message {
    /// Run a job on the shared connection.
    Job(Job),
    /// Apply a write plan's ops, group-committed with the writes queued beside it.
    Write(Write),
    /// Run a checkpoint, on the thread's own connection.
    Checkpoint,
}

/// One caller's write: its ops, and where its outcome goes once the batch has committed.
struct Write {
    ops: Vec<LayerOp>,
    reply: oneshot::Sender<Result<()>>,
}

/// At most this many write plans share one transaction and one sync.
pub(crate) const GROUP_PLANS: usize = 64;

/// A batch stops taking plans once it holds this many ops (its first plan always goes in,
/// however big).
pub(crate) const GROUP_OPS: usize = 4096;

/// The longest the thread waits for more writes before it starts a batch, when writers are
/// concurrent; never longer than the last group commit took either.
pub(crate) const GROUP_WAIT: Duration = Duration::from_millis(1);

/// How many writers the thread expects in a batch: the largest batch lately, decaying by
/// one per batch (so a crowd that thinned out stops costing waits after a few batches).
#[derive(Debug)]
struct Crowd {
    expected: usize,
    /// How long the last batch of more than one plan took to apply and commit.
    last_commit: Duration,
}

impl Crowd {
    /// Remembers a batch of `plans` that took `took`.
    fn saw(&mut self, plans: usize, took: Duration) {
        self.expected = plans.max(self.expected.saturating_sub(1)).max(1);
        if plans > 1 {
            self.last_commit = took;
        }
    }

    /// How long to wait for more writes: nothing for a lone writer.
    fn wait(&self) -> Duration {
        if self.expected > 1 {
            self.last_commit.min(GROUP_WAIT)
        } else {
            Duration::ZERO
        }
    }
}

/// How the thread opens its checkpoint connection: the database file and the `synchronous`
/// setting its checkpoints sync with.
#[derive(Debug, Clone)]
pub(crate) struct CheckpointFile {
    pub(crate) path: std::path::PathBuf,
    pub(crate) synchronous: &'static str,
}

/// The thread's checkpoint connection, opened on the first checkpoint.
struct Checkpointer {
    file: Option<CheckpointFile>,
    conn: Option<Connection>,
}

impl Checkpointer {
    /// Copies the WAL back into the database file: a passive checkpoint, which never waits
    /// for readers or writers, on a connection of its own, so the shared one stays free for
    /// the reads and writes running in place meanwhile. Without a file (or when the second
    /// connection can not be opened) it runs on the shared connection, under its lock.
    fn run(&mut self, ident: &str, state: &Mutex<State>) {
        if self.conn.is_none()
            && let Some(file) = &self.file
        {
            match open_checkpointer(file) {
                Ok(conn) => self.conn = Some(conn),
                Err(e) => {
                    tracing::warn!(layer = %ident, error = %e, "could not open the SQLite checkpoint connection; checkpoints use the shared one");
                    self.file = None;
                }
            }
        }
        let result = match &self.conn {
            Some(conn) => passive_checkpoint(conn),
            None => passive_checkpoint(&lock(state).conn),
        };
        if let Err(e) = result {
            tracing::warn!(layer = %ident, error = %e, "SQLite checkpoint failed; the WAL keeps growing until one succeeds");
        }
    }
}

fn open_checkpointer(file: &CheckpointFile) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags;
    let conn = Connection::open_with_flags(
        &file.path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(&format!("PRAGMA synchronous = {};", file.synchronous))?;
    Ok(conn)
}

fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

/// How many SQLite VM instructions run between two calls of the progress handler (each call
/// costs a few nanoseconds; a thousand instructions take microseconds).
const PROGRESS_OPS: u32 = 1000;

/// The budget of the job running in place (in progress handler calls, each
/// [`PROGRESS_OPS`] VM instructions), read by the connection's progress handler. Only the
/// holder of the connection touches it.
#[derive(Debug)]
struct Budget {
    /// Calls left before the job is interrupted; `u32::MAX` for no budget.
    left: AtomicU32,
    /// Whether the handler interrupted the job.
    fired: AtomicBool,
}

/// Lifts the budget when dropped.
struct LiftBudget<'a>(&'a Budget);

impl Drop for LiftBudget<'_> {
    fn drop(&mut self) {
        self.0.left.store(u32::MAX, Ordering::Relaxed);
    }
}

impl Budget {
    /// The progress handler: `true` interrupts the running statement.
    fn spent(&self) -> bool {
        match self.left.load(Ordering::Relaxed) {
            u32::MAX => false,
            0 => {
                self.fired.store(true, Ordering::Relaxed);
                true
            }
            left => {
                self.left.store(left - 1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// How long the thread keeps polling for the next job before it sleeps: a caller that sends
/// requests back to back then finds it awake.
const SPIN: Duration = Duration::from_micros(50);

/// A handle to the connection and its thread.
#[derive(Debug)]
pub(crate) struct Worker {
    state: Arc<Mutex<State>>,
    budget: Arc<Budget>,
    jobs: RwLock<Option<mpsc::Sender<Message>>>,
    finished: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Worker {
    /// Starts the thread and opens the connection on it with `open`. Checkpoints (once
    /// [`State::set_checkpoint_every`] asks for them) run on a second connection to
    /// `checkpoints`, when given.
    pub(crate) async fn start(
        ident: &str,
        busy_timeout: Duration,
        checkpoints: Option<CheckpointFile>,
        open: impl FnOnce() -> Result<Connection> + Send + 'static,
    ) -> Result<Worker> {
        let (opened_tx, opened_rx) = oneshot::channel::<Result<Arc<Mutex<State>>>>();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Message>();
        let (finished_tx, finished_rx) = oneshot::channel::<()>();
        let thread_ident = ident.to_owned();
        let budget = Arc::new(Budget {
            left: AtomicU32::new(u32::MAX),
            fired: AtomicBool::new(false),
        });
        let handler_budget = Arc::clone(&budget);
        std::thread::Builder::new()
            .name(format!("korm-sqlite-{ident}"))
            .spawn(move || {
                let conn = match open() {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                #[allow(clippy::cast_possible_wrap, reason = "a small constant")]
                let installed = conn
                    .progress_handler(PROGRESS_OPS as i32, Some(move || handler_budget.spent()));
                if let Err(e) = installed {
                    let _ = opened_tx.send(Err(Error::database(
                        thread_ident,
                        DbErrorKind::Connect,
                        format!("can not install the progress handler: {e}"),
                    )));
                    return;
                }
                let state = Arc::new(Mutex::new(State {
                    conn,
                    schemas: TableMap::default(),
                    plans: TableMap::default(),
                    ident: thread_ident.clone(),
                    sql: String::new(),
                    commits: 0,
                    checkpoint_every: None,
                    busy_zero: false,
                }));
                if opened_tx.send(Ok(Arc::clone(&state))).is_err() {
                    return;
                }
                let mut checkpointer = Checkpointer {
                    file: checkpoints,
                    conn: None,
                };
                let mut crowd = Crowd {
                    expected: 1,
                    last_commit: Duration::ZERO,
                };
                // A message taken while gathering a batch, that runs after it.
                let mut pending: Option<Message> = None;
                // Ends when every sender is gone: at close, or when the pool is dropped.
                while let Some(message) = pending.take().or_else(|| next_job(&jobs_rx)) {
                    let checkpoint = match message {
                        Message::Job(job) => {
                            let mut guard = lock(&state);
                            guard.restore_busy_timeout(busy_timeout);
                            // A job that panics (a bug) must not take the connection down
                            // with it; its caller sees its reply channel closed.
                            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut guard)));
                            guard.take_checkpoint_due()
                        }
                        Message::Write(first) => {
                            let started = Instant::now();
                            let mut gathering = Gathering::new(
                                &jobs_rx,
                                &mut pending,
                                &first,
                                crowd.wait(),
                                crowd.expected,
                            );
                            let mut guard = lock(&state);
                            guard.restore_busy_timeout(busy_timeout);
                            let outcomes = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                super::apply_arriving(&mut guard, first, || gathering.next())
                            }));
                            crowd.saw(gathering.taken, started.elapsed());
                            match outcomes {
                                // The batch has committed (or failed): now, and only now, each
                                // caller learns its own outcome.
                                Ok((batch, outcomes)) => {
                                    for (write, outcome) in batch.into_iter().zip(outcomes) {
                                        let _ = write.reply.send(outcome);
                                    }
                                }
                                // A bug: nothing of the batch may stay half-done. Its callers
                                // see their reply channels closed.
                                Err(_) => {
                                    if !guard.conn.is_autocommit() {
                                        let _ = guard.conn.execute_batch("ROLLBACK");
                                    }
                                    guard.schemas.clear();
                                    guard.plans.clear();
                                }
                            }
                            guard.take_checkpoint_due()
                        }
                        Message::Checkpoint => true,
                    };
                    if checkpoint {
                        checkpointer.run(&thread_ident, &state);
                    }
                }
                // The checkpoint connection closes first: the last connection to close
                // checkpoints what is left and removes the WAL file.
                drop(checkpointer);
                // The connection closes here, whoever still holds the state (a `Pool` clone
                // keeps its `Worker`): put an in-memory one in its place, so `close` returns
                // with the file closed (checkpointed, its `-wal` file removed).
                if let Ok(memory) = Connection::open_in_memory() {
                    let file = std::mem::replace(&mut lock(&state).conn, memory);
                    if let Err((_, e)) = file.close() {
                        tracing::warn!(layer = %thread_ident, error = %e, "closing the SQLite connection failed");
                    }
                }
                drop(state);
                let _ = finished_tx.send(());
            })
            .map_err(|e| {
                Error::database(
                    ident.to_owned(),
                    DbErrorKind::Connect,
                    format!("can not start the connection thread: {e}"),
                )
            })?;
        match opened_rx.await {
            Ok(Ok(state)) => Ok(Worker {
                state,
                budget,
                jobs: RwLock::new(Some(jobs_tx)),
                finished: tokio::sync::Mutex::new(Some(finished_rx)),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::database(
                ident.to_owned(),
                DbErrorKind::Connect,
                "the connection thread stopped while opening".to_owned(),
            )),
        }
    }

    /// Runs `f` on the connection thread and returns its result.
    ///
    /// # Cancel safety
    /// Once sent, a job runs to completion even if the returned future is dropped: a write
    /// that was sent is either applied entirely or not at all, never half.
    pub(crate) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        self.send(Message::Job(Box::new(move |state: &mut State| {
            let _ = tx.send(f(state));
        })))?;
        rx.await
            .map_err(|_| dropped("the request (internal error)"))?
    }

    /// Sends the connection thread a message: [`Error::PoolClosed`] once it is gone.
    fn send(&self, message: Message) -> Result<()> {
        let jobs = self
            .jobs
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let sender = jobs.as_ref().ok_or(Error::PoolClosed)?;
        sender.send(message).map_err(|_| Error::PoolClosed)
    }

    /// Applies a write plan's ops on the connection thread, group-committed with the other
    /// writes queued meanwhile (see the module doc): `Ok` once the shared COMMIT has returned
    /// (after its sync), or this plan's own error (its ops rolled back to its savepoint, the
    /// others unharmed), or the COMMIT's error, which every plan of the batch gets.
    ///
    /// # Cancel safety
    /// Once sent, the write is applied entirely or not at all even if the returned future is
    /// dropped.
    pub(crate) async fn write(&self, ops: Vec<LayerOp>) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Message::Write(Write { ops, reply: tx }))?;
        rx.await
            .map_err(|_| dropped("the write (internal error); it was rolled back"))?
    }

    /// Runs a job that can not wait on anything: in place when the connection is free and
    /// no lock is in the way, on the connection thread otherwise (see the module doc). `f`
    /// must leave nothing behind when it fails with a busy error (a read, or a write inside a
    /// transaction that rolls back), because it then runs again on the thread.
    pub(crate) async fn in_place<R: Send + 'static>(
        &self,
        f: impl Fn(&mut State) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        if let Some(done) = self.try_in_place(None, &f) {
            return done;
        }
        self.call(f).await
    }

    /// Runs `f` in place if the connection is free, within `limit` SQLite VM instructions if
    /// given; `None` when it did not run, or met a lock or its budget: the caller then sends
    /// it to the thread (with [`call`](Worker::call)). `f` must leave nothing behind when it
    /// fails with a busy error (a read, or a write inside a transaction that rolls back).
    /// `f` may borrow: it runs here or not at all.
    pub(crate) fn try_in_place<R>(
        &self,
        limit: Option<u32>,
        f: impl FnOnce(&mut State) -> Result<R>,
    ) -> Option<Result<R>> {
        let mut state = self.state.try_lock().ok()?;
        // Checked holding the state: a close ends the queue before its thread puts an
        // in-memory connection in place of the file's, so no job here reads that one.
        if self
            .jobs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
        {
            return Some(Err(Error::PoolClosed));
        }
        // In place, nothing waits on a lock: the busy timeout is zero. It stays zero until
        // the thread runs its next job, which restores it first (see `restore_busy_timeout`).
        if !state.busy_zero {
            state.conn.busy_timeout(Duration::ZERO).ok()?;
            state.busy_zero = true;
        }
        let result = match limit {
            None => f(&mut state),
            Some(limit) => {
                let calls = (limit / PROGRESS_OPS).min(u32::MAX - 1);
                self.budget.left.store(calls, Ordering::Relaxed);
                // Lifted when `f` returns or unwinds: no later job may inherit the budget.
                let _lift = LiftBudget(&self.budget);
                f(&mut state)
            }
        };
        // Interrupted with its budget spent: the read runs again on the thread.
        let interrupted = self.budget.fired.swap(false, Ordering::Relaxed);
        let checkpoint = state.take_checkpoint_due();
        drop(state);
        if checkpoint {
            // The checkpoint syncs to disk: it runs on the thread, and nobody waits for it
            // (a closed pool has no thread left to run it).
            let _ = self.send(Message::Checkpoint);
        }
        match result {
            _ if interrupted => None,
            Err(Error::Database {
                kind: DbErrorKind::Busy,
                ..
            }) => None,
            done => Some(done),
        }
    }

    /// Stops accepting jobs, lets the queued ones finish, and waits for the connection to close.
    pub(crate) async fn close(&self) {
        self.jobs
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(finished) = self.finished.lock().await.take() {
            let _ = finished.await;
        }
    }
}

/// The next job: polled for a short while first, then waited for.
fn next_job(jobs: &mpsc::Receiver<Message>) -> Option<Message> {
    let started = Instant::now();
    loop {
        match jobs.try_recv() {
            Ok(job) => return Some(job),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if started.elapsed() < SPIN => std::thread::yield_now(),
            Err(TryRecvError::Empty) => return jobs.recv().ok(),
        }
    }
}

/// Takes the writes of a batch after its first, for [`super::apply_arriving`]: those queued
/// behind it, and (when writers are concurrent: `wait` is not zero) those arriving within
/// `wait` until `expected` are in. Stops at a message that is not a write, kept in `pending`
/// to run after the batch, and at [`GROUP_PLANS`] plans or [`GROUP_OPS`] ops.
struct Gathering<'a> {
    jobs: &'a mpsc::Receiver<Message>,
    pending: &'a mut Option<Message>,
    deadline: Instant,
    expected: usize,
    /// Plans taken, the first included.
    taken: usize,
    ops: usize,
}

impl<'a> Gathering<'a> {
    fn new(
        jobs: &'a mpsc::Receiver<Message>,
        pending: &'a mut Option<Message>,
        first: &Write,
        wait: Duration,
        expected: usize,
    ) -> Self {
        Gathering {
            jobs,
            pending,
            deadline: Instant::now() + wait,
            expected,
            taken: 1,
            ops: first.ops.len(),
        }
    }

    fn next(&mut self) -> Option<Write> {
        if self.taken >= GROUP_PLANS || self.ops >= GROUP_OPS || self.pending.is_some() {
            return None;
        }
        let message = match self.jobs.try_recv() {
            Ok(message) => message,
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {
                let left = self.deadline.saturating_duration_since(Instant::now());
                if self.taken >= self.expected || left.is_zero() {
                    return None;
                }
                self.jobs.recv_timeout(left).ok()?
            }
        };
        match message {
            Message::Write(write) => {
                self.taken += 1;
                self.ops += write.ops.len();
                Some(write)
            }
            other => {
                *self.pending = Some(other);
                None
            }
        }
    }
}

impl AsRef<[LayerOp]> for Write {
    fn as_ref(&self) -> &[LayerOp] {
        &self.ops
    }
}

/// The error of a request the connection thread dropped unanswered: `what` it dropped.
fn dropped(what: &str) -> Error {
    Error::database(
        String::new(),
        DbErrorKind::Other,
        format!("the connection thread dropped {what}"),
    )
}
