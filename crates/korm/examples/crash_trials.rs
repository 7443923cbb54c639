//! Crash trials (#14): kill a process that writes across SQLite, PostgreSQL, MariaDB and a
//! depot under the write-ahead log, reopen, and check that every write is all or nothing and
//! that no write the process saw finish is lost.
//!
//! Run it through `scripts/crash-trials N`, which builds it with the `crash-trials` feature
//! (the abort points of the write path) and ends with one line:
//! `crash trials: N, half-applied: H, lost: L` (exit status 0 only when both are 0). By hand:
//! `cargo run -p korm --features crash-trials --example crash_trials -- N [--seed S]
//! [--verbose]`; the servers come from `KORM_TEST_PG_URL` and `KORM_TEST_MYSQL_URL`, with the
//! test suites' defaults. Without the feature every trial is a SIGKILL at a random moment.
//!
//! 1. The parent creates a database on each server, a folder for the SQLite file and the
//!    depots (`files`, and `wal` for the log), and one counter item in each layer with
//!    `n = 0`; the SQLite one carries the depot file `counter/f0.txt`, holding `0`.
//! 2. Each trial runs this binary again as a child (`child`), which opens the pool and loops
//!    transactions: tx `n` sets `n` in the three items, in a rotating layer order, and writes
//!    `n` into the file the SQLite item carries (`counter/f{n - n % 3}.txt`: a new file every
//!    third tx, replaced by the next two); odd txs also create a marker item in each layer,
//!    even ones delete it, so recovery has inserts and deletes to finish as well as updates.
//!    After a new file, a write of its own deletes the previous one. The child prints each
//!    write once it returned (`tx n`, `del n`), before the next one starts.
//! 3. The parent stops the child: even trials with SIGKILL at a random moment (0-300 ms after
//!    it is ready), odd trials at an abort point (`KORM_CRASH_AT`, `KORM_CRASH_AFTER`), each
//!    point in turn after a random count. Some trials crash the recovery too: a `recover`
//!    child opens the pool and is killed at a random moment (every fourth SIGKILL trial) or,
//!    after a crash that leaves all three layers to recovery (`after-wal`, `after-depot`),
//!    every other time aborted between two layers of the recovery. Every third trial runs the
//!    WAL with retention keep (records moved to `done/`), the others with delete.
//! 4. The parent reopens the pool (recovery runs) and checks: the three items and the file
//!    hold the same `n`, and the markers are there or gone as `n` says (else the trial is
//!    half-applied); `n` is the last tx the child printed or the next (lower: lost); no file
//!    of a later tx is left (half-applied), no file whose delete finished is back (lost); no
//!    record is left pending or refused. The next trial goes on from there (after a
//!    half-applied one, from a repaired state).
//!
//! The seed is printed: `--seed S` replays the same schedule (the moments of the SIGKILLs
//! vary with the machine's speed; the abort points do not).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use korm::{DepotFile, Pool, Rn};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection, Executor};

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The abort points of the write path (see the `crash-trials` feature), in the order a write
/// reaches them.
const POINTS: [&str; 4] = ["after-wal", "after-depot", "between-layers", "after-layers"];

/// How long a child may take to get ready, or to reach its abort point.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

const LITE_RN: &str = "[rn][from::litedb]:crash:counter:6c1b7f0e-3a7e-4c55-9a43-0d2d6e5b1a01";
const PG_RN: &str = "[rn][from::pgdb]:crash:counter:6c1b7f0e-3a7e-4c55-9a43-0d2d6e5b1a02";
const MY_RN: &str = "[rn][from::mydb]:crash:counter:6c1b7f0e-3a7e-4c55-9a43-0d2d6e5b1a03";
/// One marker item per layer: there after an odd tx (created by it), gone after an even one.
const MARKER_RNS: [&str; 3] = [
    "[rn][from::litedb]:crash:marker:6c1b7f0e-3a7e-4c55-9a43-0d2d6e5b1b01",
    "[rn][from::pgdb]:crash:marker:6c1b7f0e-3a7e-4c55-9a43-0d2d6e5b1b02",
    "[rn][from::mydb]:crash:marker:6c1b7f0e-3a7e-4c55-9a43-0d2d6e5b1b03",
];

/// The SQLite item: the counter and the file that holds it too.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Counter {
    n: i64,
    label: String,
    meta: Meta,
    file: DepotFile,
}

/// The PostgreSQL and MariaDB items.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tally {
    n: i64,
    label: String,
    meta: Meta,
}

/// The marker items: created and deleted by turns, so recovery inserts and deletes too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Marker {
    n: i64,
    note: String,
}

impl Marker {
    fn of(n: i64) -> Self {
        Marker {
            n,
            note: format!("created by tx {n}"),
        }
    }
}

/// The marker items, by layer.
async fn load_markers(pool: &Pool) -> korm::Result<Vec<Option<korm::Item<Marker>>>> {
    let mut markers = Vec::new();
    for text in MARKER_RNS {
        markers.push(
            korm::item::<Marker>(pool)
                .load(rn(text))
                .get_optional()
                .await?,
        );
    }
    Ok(markers)
}

/// A JSON column, so recovery compares nested values too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    n: i64,
    even: bool,
}

impl Meta {
    fn of(n: i64) -> Self {
        Meta {
            n,
            even: n % 2 == 0,
        }
    }
}

fn label(n: i64) -> String {
    format!("n={n}")
}

/// The tx whose new file holds `n` (files rotate every third tx).
fn slot(n: i64) -> i64 {
    n - n % 3
}

fn file_rn(slot: i64) -> Rn {
    format!("[rn][depot::files]:counter:f{slot}.txt")
        .parse()
        .expect("a depot file rn")
}

fn rn<T>(text: &str) -> Rn<T> {
    text.parse().expect("an item rn")
}

/// Where a run keeps its data: the folder and the two server databases.
#[derive(Debug, Clone)]
struct Setup {
    dir: PathBuf,
    pg: String,
    my: String,
    /// WAL retention keep (delete otherwise).
    keep: bool,
}

impl Setup {
    fn from_args(args: &[String]) -> Result<Self, Failure> {
        match args {
            [dir, pg, my, retention] if matches!(retention.as_str(), "keep" | "delete") => {
                Ok(Setup {
                    dir: dir.into(),
                    pg: pg.clone(),
                    my: my.clone(),
                    keep: retention == "keep",
                })
            }
            _ => Err("usage: crash_trials child|recover DIR PG-URL MYSQL-URL keep|delete".into()),
        }
    }

    fn args(&self) -> [&std::ffi::OsStr; 4] {
        let retention = if self.keep { "keep" } else { "delete" };
        [
            self.dir.as_os_str(),
            self.pg.as_ref(),
            self.my.as_ref(),
            retention.as_ref(),
        ]
    }

    async fn open(&self) -> korm::Result<Pool> {
        korm::pool()
            .layer("litedb", korm::layers::sqlite(self.dir.join("lite.sqlite")))
            .layer("pgdb", korm::layers::postgres(self.pg.clone()))
            .layer("mydb", korm::layers::mysql(self.my.clone()))
            .depot("files", korm::depots::local(self.dir.join("files")))
            .depot("wal", korm::depots::local(self.dir.join("wal")))
            .with_wal(
                "wal",
                korm::WalOptions::new("crash").with_retention(if self.keep {
                    korm::WalRetention::Keep
                } else {
                    korm::WalRetention::Delete
                }),
            )
            .open()
            .await
    }

    /// The names of the files in the counter folder of the `files` depot.
    fn counter_files(&self) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        match std::fs::read_dir(self.dir.join("files").join("counter")) {
            Ok(entries) => {
                for entry in entries {
                    names.push(entry?.file_name().to_string_lossy().into_owned());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        names.sort();
        Ok(names)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("child") => report_child(Setup::from_args(&args[1..]), run_child).await,
        Some("recover") => report_child(Setup::from_args(&args[1..]), run_recover).await,
        _ => match Options::parse(&args) {
            Ok(options) => run_parent(options).await,
            Err(e) => {
                eprintln!("crash_trials: {e}");
                2
            }
        },
    };
    std::process::exit(code);
}

// ---- the child ------------------------------------------------------------------------------

async fn report_child<F, Fut>(setup: Result<Setup, Failure>, run: F) -> i32
where
    F: FnOnce(Setup) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    match async { run(setup?).await }.await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("crash_trials child: {e}");
            1
        }
    }
}

/// Tells the parent, through the pipe: once `write` returns, the parent gets the line even if
/// this process is killed at once.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .expect("stdout");
}

async fn run_child(setup: Setup) -> Result<(), Failure> {
    let pool = setup.open().await?;
    let mut lite = korm::item::<Counter>(&pool).load(rn(LITE_RN)).get().await?;
    let mut pg = korm::item::<Tally>(&pool).load(rn(PG_RN)).get().await?;
    let mut my = korm::item::<Tally>(&pool).load(rn(MY_RN)).get().await?;
    let mut markers = load_markers(&pool).await?;
    let mut n = lite.data().n;
    if markers.iter().any(|m| m.is_some() != (n % 2 == 1)) {
        return Err(format!("the markers do not match n = {n}: {markers:?}").into());
    }
    say(&format!("ready {n}"));
    // A crash after a new file and before the old one's delete: finish it first.
    if n >= 3 && n % 3 == 0 {
        delete_old_file(&pool, n).await?;
    }
    loop {
        n += 1;
        let file: DepotFile = korm::depots::file(file_rn(slot(n)), n.to_string())?.into();
        let lite_next = lite.update(|c| {
            c.n = n;
            c.label = label(n);
            c.meta = Meta::of(n);
            c.file = file;
        });
        let tally = |t: &mut Tally| {
            t.n = n;
            t.label = label(n);
            t.meta = Meta::of(n);
        };
        let (pg_next, my_next) = (pg.update(tally), my.update(tally));
        // The layers in a rotating order: each pair is "between layers" some of the time.
        let mut tx = korm::tx(&pool);
        let (l, p, m) = match (n / 3) % 3 {
            0 => {
                let l = tx.commit(lite_next);
                (l, tx.commit(pg_next), tx.commit(my_next))
            }
            1 => {
                let p = tx.commit(pg_next);
                let m = tx.commit(my_next);
                (tx.commit(lite_next), p, m)
            }
            _ => {
                let m = tx.commit(my_next);
                let l = tx.commit(lite_next);
                (l, tx.commit(pg_next), m)
            }
        };
        // Odd txs create the markers, even ones delete them.
        let mut created = Vec::new();
        for (marker, text) in markers.iter_mut().zip(MARKER_RNS) {
            match marker.take() {
                Some(item) => {
                    tx.delete(item);
                }
                None => created.push(
                    tx.create(korm::item::<Marker>(&pool).from_data(rn(text), Marker::of(n))?),
                ),
            }
        }
        let mut done = tx.persist().await?;
        (lite, pg, my) = (done.take(l)?, done.take(p)?, done.take(m)?);
        for (marker, handle) in markers.iter_mut().zip(created) {
            *marker = Some(done.take(handle)?);
        }
        say(&format!("tx {n}"));
        if n % 3 == 0 {
            delete_old_file(&pool, n).await?;
        }
    }
}

/// Deletes the file tx `n - 3` created (tx `n` made a new one), if it is there.
async fn delete_old_file(pool: &Pool, n: i64) -> Result<(), Failure> {
    let old = DepotFile::at(file_rn(n - 3))?;
    if old.size(pool).await?.is_some() {
        old.delete(pool).await?;
    }
    say(&format!("del {n}"));
    Ok(())
}

/// Opens the pool (recovery runs, and may be aborted) and closes it.
async fn run_recover(setup: Setup) -> Result<(), Failure> {
    say("ready");
    let pool = setup.open().await?;
    pool.close().await;
    Ok(())
}

// ---- the parent -----------------------------------------------------------------------------

#[derive(Debug)]
struct Options {
    trials: u64,
    seed: u64,
    verbose: bool,
    /// Keep the folder of the run (it is kept anyway when a trial fails).
    keep: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, Failure> {
        let usage = "usage: crash_trials [N] [--seed S] [--verbose] [--keep]";
        let mut options = Options {
            trials: 20,
            seed: match std::env::var("KORM_CRASH_SEED") {
                Ok(seed) => seed.parse()?,
                Err(_) => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_nanos() as u64,
            },
            verbose: false,
            keep: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--seed" => options.seed = args.next().ok_or(usage)?.parse()?,
                "--verbose" | "-v" => options.verbose = true,
                "--keep" => options.keep = true,
                "-h" | "--help" => return Err(usage.into()),
                n => options.trials = n.parse().map_err(|_| usage)?,
            }
        }
        Ok(options)
    }
}

/// A tiny xorshift64: the schedule of the trials, from the seed.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 once, so seeds 0, 1, 2... start far apart (and never at 0).
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// How a process is stopped.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// SIGKILL this long after it is ready.
    Kill { after: Duration },
    /// Abort at `point` the `count`-th time it gets there.
    Abort { point: &'static str, count: u64 },
}

impl Stop {
    fn env(self) -> Vec<(&'static str, String)> {
        match self {
            Stop::Kill { .. } => Vec::new(),
            Stop::Abort { point, count } => vec![
                ("KORM_CRASH_AT", point.to_owned()),
                ("KORM_CRASH_AFTER", count.to_string()),
            ],
        }
    }

    fn kill_after(self) -> Option<Duration> {
        match self {
            Stop::Kill { after } => Some(after),
            Stop::Abort { .. } => None,
        }
    }

    /// Whether `status` is the end this stop brings.
    fn ended(self, status: ExitStatus) -> bool {
        status.signal()
            == Some(match self {
                Stop::Kill { .. } => libc_signal::KILL,
                Stop::Abort { .. } => libc_signal::ABRT,
            })
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Kill { after } => write!(f, "SIGKILL {} ms after ready", after.as_millis()),
            Stop::Abort { point, count } => write!(f, "abort at {point} #{count}"),
        }
    }
}

/// One trial: how the writing child stops, whether a recovery is crashed too, and the
/// retention its WAL runs with.
#[derive(Debug, Clone, Copy)]
struct Trial {
    child: Stop,
    recovery: Option<Stop>,
    keep: bool,
}

impl std::fmt::Display for Trial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.child)?;
        if let Some(recovery) = self.recovery {
            write!(f, ", then its recovery: {recovery}")?;
        }
        if self.keep {
            write!(f, " (retention keep)")?;
        }
        Ok(())
    }
}

/// The schedule: even trials SIGKILL the child (every fourth of them its recovery too, at a
/// random moment), odd ones abort it at each point in turn (after `after-wal` and
/// `after-depot`, every other time its recovery too, between two layers); every third trial
/// keeps its WAL records.
fn schedule(trial: u64, rng: &mut Rng) -> Trial {
    let keep = trial % 3 == 2;
    if !cfg!(feature = "crash-trials") || trial.is_multiple_of(2) {
        let child = Stop::Kill {
            after: Duration::from_millis(rng.between(0, 300)),
        };
        let recovery = (trial % 8 == 2).then(|| Stop::Kill {
            after: Duration::from_millis(rng.between(0, 60)),
        });
        return Trial {
            child,
            recovery,
            keep,
        };
    }
    let point = POINTS[((trial / 2) % POINTS.len() as u64) as usize];
    // A tx reaches between-layers twice (three layers); the others once.
    let per_tx = if point == "between-layers" { 2 } else { 1 };
    let child = Stop::Abort {
        point,
        count: rng.between(1, 4 * per_tx),
    };
    let whole_tx_left = matches!(point, "after-wal" | "after-depot");
    let recovery =
        (whole_tx_left && (trial / 2 / POINTS.len() as u64).is_multiple_of(2)).then(|| {
            Stop::Abort {
                point: "between-layers",
                count: rng.between(1, 2),
            }
        });
    Trial {
        child,
        recovery,
        keep,
    }
}

/// What the children of a trial printed.
#[derive(Debug, Default)]
struct Printed {
    /// The last tx reported persisted.
    last_tx: Option<i64>,
    /// The file slots reported deleted.
    deleted: Vec<i64>,
    txs: u64,
}

/// A finished child and what it printed.
#[derive(Debug)]
struct Ended {
    status: ExitStatus,
    printed: Printed,
}

/// Runs a child in `mode` with `env`, stops it as `stop` says, and collects what it printed.
fn run_trial_child(
    setup: &Setup,
    key: &str,
    mode: &str,
    env: &[(&str, String)],
    kill_after: Option<Duration>,
    log: &std::fs::File,
) -> Result<Ended, Failure> {
    let mut child: Child = Command::new(std::env::current_exe()?)
        .arg(mode)
        .args(setup.args())
        .env(korm::crypto::KEY_VAR, key)
        .env_remove("KORM_CRASH_AT")
        .env_remove("KORM_CRASH_AFTER")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let started = Instant::now();
    let status = match kill_after {
        Some(after) => {
            // Ready first: the kill is to land in the write loop, not in the pool's open.
            let ready = loop {
                match lines.recv_timeout(Duration::from_millis(20)) {
                    Ok(line) => {
                        let ready = line.starts_with("ready");
                        seen.push(line);
                        if ready {
                            break true;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break false,
                }
                if child.try_wait()?.is_some() || started.elapsed() > CHILD_TIMEOUT {
                    break false;
                }
            };
            if ready {
                std::thread::sleep(after);
            }
            // A child that already ended is reaped below; kill only fails then.
            let _ = child.kill();
            child.wait()?
        }
        None => loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > CHILD_TIMEOUT {
                let _ = child.kill();
                child.wait()?;
                return Err(format!(
                    "the {mode} child did not crash within {} s",
                    CHILD_TIMEOUT.as_secs()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(2));
        },
    };
    reader.join().map_err(|_| "the reader thread panicked")?;
    seen.extend(lines.try_iter());
    let mut printed = Printed::default();
    for line in seen.iter().filter(|line| *line != "ready") {
        match line.split_once(' ') {
            Some(("tx", n)) => {
                printed.last_tx = Some(n.parse()?);
                printed.txs += 1;
            }
            Some(("del", n)) => printed.deleted.push(n.parse::<i64>()? - 3),
            Some(("ready", _)) => {}
            _ => return Err(format!("the child printed {line:?}").into()),
        }
    }
    Ok(Ended { status, printed })
}

/// What the parent knows between trials.
#[derive(Debug, Default)]
struct Known {
    /// The `n` the stores held at the last check.
    n: i64,
    /// File slots whose delete a child reported finished.
    deleted: BTreeSet<i64>,
}

/// The outcome of one check.
#[derive(Debug, Default)]
struct Verdict {
    half_applied: Vec<String>,
    lost: Vec<String>,
    /// What the recovery at open did.
    recovered: String,
    /// The `n` the stores agree on (`None`: they do not).
    n: Option<i64>,
}

async fn check(setup: &Setup, known: &Known, printed: &Printed) -> Result<Verdict, Failure> {
    let mut verdict = Verdict::default();
    let pool = setup.open().await.map_err(|e| {
        format!(
            "the pool does not open (recovery failed?): {e}; the data is left in {}",
            setup.dir.display()
        )
    })?;
    let wal = pool.wal().ok_or("the pool has no WAL")?;
    let report = wal.opened_with().ok_or("no recovery report")?;
    verdict.recovered = report
        .recovered
        .iter()
        .map(|r| format!("{:?} {} applied", r.outcome, r.applied))
        .collect::<Vec<_>>()
        .join(", ");
    for r in &report.recovered {
        if !r.superseded.is_empty() {
            verdict.half_applied.push(format!(
                "recovery of {} left {:?} alone as written since (nothing else writes here)",
                r.id, r.superseded
            ));
        }
    }
    for r in &report.refused {
        verdict
            .half_applied
            .push(format!("record {} refused: {}", r.id, r.reason));
    }
    let pending = wal.pending().await?;
    if !pending.is_empty() {
        verdict.half_applied.push(format!(
            "{} record(s) still pending after recovery",
            pending.len()
        ));
    }

    let lite = korm::item::<Counter>(&pool).load(rn(LITE_RN)).get().await?;
    let pg = korm::item::<Tally>(&pool).load(rn(PG_RN)).get().await?;
    let my = korm::item::<Tally>(&pool).load(rn(MY_RN)).get().await?;
    let lite = lite.data();
    let n = lite.n;
    let mut views = vec![
        ("litedb label", lite.label == label(n)),
        ("litedb meta", lite.meta == Meta::of(n)),
    ];
    for (layer, tally) in [("pgdb", pg.data()), ("mydb", my.data())] {
        if tally.n != n || tally.label != label(tally.n) || tally.meta != Meta::of(tally.n) {
            verdict.half_applied.push(format!(
                "litedb holds n = {n}, {layer} holds n = {} ({:?}, {:?})",
                tally.n, tally.label, tally.meta
            ));
        }
    }
    views.push(("litedb file", *lite.file.rn() == file_rn(slot(n))));
    for (marker, text) in load_markers(&pool).await?.iter().zip(MARKER_RNS) {
        let held = marker.as_ref().map(|m| m.data().clone());
        let wanted = (n % 2 == 1).then(|| Marker::of(n));
        if held != wanted {
            verdict.half_applied.push(format!(
                "the counters hold n = {n}, the marker {text} holds {held:?}"
            ));
        }
    }
    for (what, ok) in views {
        if !ok {
            verdict
                .half_applied
                .push(format!("{what} does not match n = {n}: {lite:?}"));
        }
    }
    match lite.file.text(&pool).await {
        Ok(text) if text == n.to_string() => {}
        Ok(text) => verdict.half_applied.push(format!(
            "the items hold n = {n}, their file {} holds {text:?}",
            lite.file.rn()
        )),
        Err(e) => verdict.half_applied.push(format!(
            "the items hold n = {n}, their file {} can not be read: {e}",
            lite.file.rn()
        )),
    }
    // Every other file: one the last delete has not reached yet, or none.
    for name in setup.counter_files()? {
        let Some(k) = name
            .strip_prefix('f')
            .and_then(|rest| rest.strip_suffix(".txt"))
            .and_then(|k| k.parse::<i64>().ok())
        else {
            continue; // a depot's temporary file, never an item's
        };
        if k == slot(n) {
            continue;
        }
        if k > slot(n) {
            verdict.half_applied.push(format!(
                "{name} is left by a tx the items do not hold (they hold n = {n})"
            ));
        } else if known.deleted.contains(&k) || printed.deleted.contains(&k) {
            verdict
                .lost
                .push(format!("{name} is back after its delete finished"));
        } else if !(n % 3 == 0 && k == n - 3) {
            verdict.lost.push(format!(
                "{name} is there, but its delete finished before tx {n} began"
            ));
        }
    }
    let last = printed.last_tx.unwrap_or(known.n).max(known.n);
    if verdict.half_applied.is_empty() {
        if n < last {
            verdict.lost.push(format!(
                "the stores hold n = {n}, tx {last} was reported persisted"
            ));
        } else if n > last + 1 {
            verdict.half_applied.push(format!(
                "the stores hold n = {n}, beyond tx {} (the last possible)",
                last + 1
            ));
        }
        verdict.n = Some(n);
    }
    pool.close().await;
    Ok(verdict)
}

/// After a half-applied trial: every store to one new `n`, and the other files deleted, so
/// the next trials start whole.
async fn repair(setup: &Setup) -> Result<i64, Failure> {
    let pool = setup.open().await?;
    let lite = korm::item::<Counter>(&pool).load(rn(LITE_RN)).get().await?;
    let pg = korm::item::<Tally>(&pool).load(rn(PG_RN)).get().await?;
    let my = korm::item::<Tally>(&pool).load(rn(MY_RN)).get().await?;
    let n = [lite.data().n, pg.data().n, my.data().n]
        .into_iter()
        .max()
        .unwrap_or(0)
        + 3;
    let n = slot(n);
    let file: DepotFile = korm::depots::file(file_rn(n), n.to_string())?.into();
    let mut tx = korm::tx(&pool);
    tx.commit(lite.update(|c| {
        c.n = n;
        c.label = label(n);
        c.meta = Meta::of(n);
        c.file = file;
    }));
    let tally = |t: &mut Tally| {
        t.n = n;
        t.label = label(n);
        t.meta = Meta::of(n);
    };
    tx.commit(pg.update(tally));
    tx.commit(my.update(tally));
    for (marker, text) in load_markers(&pool).await?.into_iter().zip(MARKER_RNS) {
        match (marker, n % 2 == 1) {
            (Some(item), true) => {
                tx.commit(item.replace(Marker::of(n)));
            }
            (Some(item), false) => {
                tx.delete(item);
            }
            (None, true) => {
                tx.create(korm::item::<Marker>(&pool).from_data(rn(text), Marker::of(n))?);
            }
            (None, false) => {}
        }
    }
    tx.persist().await?;
    for name in setup.counter_files()? {
        if name != format!("f{n}.txt") {
            std::fs::remove_file(setup.dir.join("files").join("counter").join(name))?;
        }
    }
    pool.close().await;
    Ok(n)
}

/// The items of a fresh run: `n = 0` everywhere.
async fn seed_stores(setup: &Setup) -> Result<(), Failure> {
    let pool = setup.open().await?;
    let file: DepotFile = korm::depots::file(file_rn(0), "0")?.into();
    let mut tx = korm::tx(&pool);
    tx.create(korm::item::<Counter>(&pool).from_data(
        rn(LITE_RN),
        Counter {
            n: 0,
            label: label(0),
            meta: Meta::of(0),
            file,
        },
    )?);
    for text in [PG_RN, MY_RN] {
        tx.create(korm::item::<Tally>(&pool).from_data(
            rn(text),
            Tally {
                n: 0,
                label: label(0),
                meta: Meta::of(0),
            },
        )?);
    }
    tx.persist().await?;
    pool.close().await;
    Ok(())
}

async fn run_parent(options: Options) -> i32 {
    if std::env::var_os("KORM_CRASH_AT").is_some() {
        // The parent's own recoveries would abort.
        eprintln!("crash_trials: unset KORM_CRASH_AT: the trials set it for their children");
        return 2;
    }
    let key = match std::env::var(korm::crypto::KEY_VAR) {
        Ok(key) => key,
        Err(_) => korm::crypto::EncryptionKey::generate().to_hex().to_string(),
    };
    match korm::crypto::EncryptionKey::from_hex(&key) {
        Ok(k) => korm::crypto::install(korm::crypto::KeyRing::new(k)),
        Err(e) => {
            eprintln!("crash_trials: {}: {e}", korm::crypto::KEY_VAR);
            return 2;
        }
    }
    let dir = match tempfile::Builder::new().prefix("korm-crash-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("crash_trials: no temporary folder: {e}");
            return 2;
        }
    };
    let databases = match Databases::create().await {
        Ok(databases) => databases,
        Err(e) => {
            eprintln!("crash_trials: {e}");
            return 2;
        }
    };
    let setup = Setup {
        dir: dir.path().to_owned(),
        pg: databases.pg.url.clone(),
        my: databases.my.url.clone(),
        keep: false,
    };
    eprintln!(
        "crash trials: {} trials, seed {}, data in {}{}",
        options.trials,
        options.seed,
        setup.dir.display(),
        if cfg!(feature = "crash-trials") {
            ""
        } else {
            " (built without the crash-trials feature: SIGKILLs only)"
        }
    );
    let outcome = trials(&setup, &key, &options).await;
    drop(databases);
    let (run, half_applied, lost, harness_error) = outcome;
    let failed = half_applied > 0 || lost > 0 || harness_error;
    if failed || options.keep {
        let kept = dir.keep();
        eprintln!("crash trials: the data is kept in {}", kept.display());
    }
    println!("crash trials: {run}, half-applied: {half_applied}, lost: {lost}");
    i32::from(failed)
}

/// Runs the trials: (trials run, half-applied, lost, whether the harness itself failed).
async fn trials(setup: &Setup, key: &str, options: &Options) -> (u64, u64, u64, bool) {
    let started = Instant::now();
    let log_path = setup.dir.join("children.log");
    let mut log = match std::fs::File::create(&log_path) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("crash_trials: {e}");
            return (0, 0, 0, true);
        }
    };
    if let Err(e) = seed_stores(setup).await {
        eprintln!("crash_trials: the stores could not be set up: {e}");
        return (0, 0, 0, true);
    }
    let mut rng = Rng::new(options.seed);
    let mut known = Known::default();
    let (mut half_applied, mut lost, mut txs, mut forward) = (0, 0, 0, 0);
    let mut run = 0;
    for trial in 0..options.trials {
        let stop = schedule(trial, &mut rng);
        let _ = writeln!(log, "---- trial {trial}: {stop}");
        let setup = &Setup {
            keep: stop.keep,
            ..setup.clone()
        };
        let child = stop.child;
        let ended = run_trial_child(setup, key, "child", &child.env(), child.kill_after(), &log);
        let ended = match ended {
            Ok(ended) if child.ended(ended.status) => ended,
            Ok(ended) => {
                eprintln!(
                    "crash trials: trial {trial} ({stop}): the child ended with {} instead (see {})",
                    ended.status,
                    log_path.display()
                );
                return (run, half_applied, lost, true);
            }
            Err(e) => {
                eprintln!(
                    "crash trials: trial {trial} ({stop}): {e} (see {})",
                    log_path.display()
                );
                return (run, half_applied, lost, true);
            }
        };
        if let Some(recovery) = stop.recovery {
            let _ = writeln!(log, "---- trial {trial}: its recovery: {recovery}");
            // The recovery may be over first (or need fewer layers than the count): then it
            // just finishes.
            let ended = run_trial_child(
                setup,
                key,
                "recover",
                &recovery.env(),
                recovery.kill_after(),
                &log,
            );
            match ended {
                Ok(ended) if recovery.ended(ended.status) || ended.status.success() => {}
                Ok(ended) => {
                    eprintln!(
                        "crash trials: trial {trial}: the recover child ended with {} (see {})",
                        ended.status,
                        log_path.display()
                    );
                    return (run, half_applied, lost, true);
                }
                Err(e) => {
                    eprintln!("crash trials: trial {trial}: recover child: {e}");
                    return (run, half_applied, lost, true);
                }
            }
        }
        run += 1;
        txs += ended.printed.txs;
        let verdict = match check(setup, &known, &ended.printed).await {
            Ok(verdict) => verdict,
            Err(e) => {
                // The stores can not even be read back: as bad as half-applied, and final.
                eprintln!("crash trials: trial {trial} ({stop}): HALF-APPLIED: {e}");
                half_applied += 1;
                return (run, half_applied, lost, true);
            }
        };
        if !verdict.recovered.is_empty() {
            forward += 1;
        }
        for problem in &verdict.half_applied {
            eprintln!("crash trials: trial {trial} ({stop}): HALF-APPLIED: {problem}");
        }
        for problem in &verdict.lost {
            eprintln!("crash trials: trial {trial} ({stop}): LOST: {problem}");
        }
        half_applied += u64::from(!verdict.half_applied.is_empty());
        lost += u64::from(!verdict.lost.is_empty());
        known.deleted.extend(&ended.printed.deleted);
        if options.verbose {
            eprintln!(
                "trial {trial:>4}: {stop}: {} tx printed, last {:?}, stores at {:?}; recovery: {}",
                ended.printed.txs,
                ended.printed.last_tx,
                verdict.n,
                if verdict.recovered.is_empty() {
                    "nothing pending"
                } else {
                    &verdict.recovered
                }
            );
        }
        known.n = match verdict.n {
            Some(n) => n,
            None => match repair(setup).await {
                Ok(n) => {
                    known.deleted.clear();
                    n
                }
                Err(e) => {
                    eprintln!("crash trials: the stores could not be repaired: {e}");
                    return (run, half_applied, lost, true);
                }
            },
        };
    }
    eprintln!(
        "crash trials: {run} trials in {:.1} s, {txs} transactions persisted, {forward} \
         recoveries with a pending record; left behind: {}",
        started.elapsed().as_secs_f64(),
        leftovers(setup)
    );
    (run, half_applied, lost, false)
}

/// What crashes left that no item points at: undo backups in the `files` depot, WAL
/// payloads (recovery removes those of finished records), temporary files of the depot.
fn leftovers(setup: &Setup) -> String {
    fn count(dir: &std::path::Path, keep: &dyn Fn(&str) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|entry| match entry.file_type() {
                Ok(kind) if kind.is_dir() => count(&entry.path(), keep),
                _ => usize::from(keep(&entry.file_name().to_string_lossy())),
            })
            .sum()
    }
    let all = |_: &str| true;
    let undo = count(&setup.dir.join("files").join("__korm_undo__"), &all);
    // Payloads of records no longer there (retention keep keeps them with a done record).
    let mut payloads = 0;
    for pool in std::fs::read_dir(setup.dir.join("wal/__korm_wal__/crash"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let base = pool.path();
        for record in std::fs::read_dir(base.join("payloads"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = record.file_name().to_string_lossy().into_owned();
            let json = format!("{id}.json");
            if !base.join("pending").join(&json).exists() && !base.join("done").join(&json).exists()
            {
                payloads += count(&record.path(), &|name| name.ends_with(".bin"));
            }
        }
    }
    let temporary = count(&setup.dir.join("files").join("counter"), &|name| {
        !(name.starts_with('f') && name.ends_with(".txt"))
    });
    format!("{undo} undo backup(s), {payloads} WAL payload(s), {temporary} temporary file(s)")
}

/// The signal numbers the trials expect (Linux and the BSDs agree on these).
mod libc_signal {
    pub(crate) const ABRT: i32 = 6;
    pub(crate) const KILL: i32 = 9;
}

// ---- the databases --------------------------------------------------------------------------

/// The two databases of a run, dropped when this drops.
#[derive(Debug)]
struct Databases {
    pg: Database,
    my: Database,
}

#[derive(Debug)]
struct Database {
    url: String,
    name: String,
    admin_url: String,
    postgres: bool,
}

impl Databases {
    async fn create() -> Result<Self, Failure> {
        let name = format!("korm_crash_{}", uuid::Uuid::new_v4().simple());
        let pg = Database::create(true, &name).await?;
        let my = Database::create(false, &name).await?;
        Ok(Databases { pg, my })
    }
}

impl Database {
    async fn create(postgres: bool, name: &str) -> Result<Self, Failure> {
        let (var, default) = if postgres {
            (
                "KORM_TEST_PG_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            )
        } else {
            ("KORM_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
        };
        let admin_url = std::env::var(var).unwrap_or_else(|_| default.to_owned());
        let quoted = if postgres {
            format!("\"{name}\"")
        } else {
            format!("`{name}`")
        };
        admin(postgres, &admin_url, format!("CREATE DATABASE {quoted}"))
            .await
            .map_err(|e| {
                format!("can not create a database with {var} ({e}); see ../shared/services.md")
            })?;
        Ok(Database {
            url: with_database(&admin_url, name),
            name: name.to_owned(),
            admin_url,
            postgres,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = if self.postgres {
            format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)
        } else {
            format!("DROP DATABASE IF EXISTS `{}`", self.name)
        };
        let (postgres, admin_url, name) =
            (self.postgres, self.admin_url.clone(), self.name.clone());
        // Drop runs inside the runtime: the cleanup gets a small runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt
                && let Err(e) = rt.block_on(admin(postgres, &admin_url, sql))
            {
                eprintln!("crash_trials: could not drop database {name}: {e}");
            }
        });
        let _ = cleanup.join();
    }
}

async fn admin(postgres: bool, admin_url: &str, sql: String) -> Result<(), sqlx::Error> {
    if postgres {
        let mut conn = sqlx::postgres::PgConnection::connect(admin_url).await?;
        conn.execute(AssertSqlSafe(sql)).await?;
        conn.close().await
    } else {
        let mut conn = sqlx::mysql::MySqlConnection::connect(admin_url).await?;
        conn.execute(AssertSqlSafe(sql)).await?;
        conn.close().await
    }
}

/// `admin_url` with its database (the path) replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{}", &base[..path_start], name);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}
