//! Backups at scale: backs up a table of N items (default 1,000,000) into a local depot and
//! restores it into a fresh layer of the same backend, printing rows per second both ways and
//! how far the peak resident set (`VmHWM` in `/proc/self/status`) rose above the baseline
//! during each. SQLite always; PostgreSQL and MariaDB when `KORM_TEST_PG_URL` /
//! `KORM_TEST_MYSQL_URL` name a server (a database is created and dropped for the run).
//! Linux only.
//!
//! Run: `cargo run --release -p korm --example backup_scale -- [N] [sqlite|pg|mysql ...]`.
//!
//! The table is filled with the driver in one statement (the fill is not what is measured);
//! `tests/backup_rss.rs` runs the same measurement at a smaller size and asserts the bound.

#![allow(dead_code)]

use std::time::Instant;

use korm::Pool;
use korm::backup::{Backups, RestoreOptions};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection, Executor};

/// The bound the peak may rise above the baseline, whatever the table size.
pub const BOUND: u64 = 64 * 1024 * 1024;

const TABLE: &str = "__items__scale__rows";

/// One item of the table.
#[derive(Debug, Serialize, Deserialize)]
pub struct Row {
    name: String,
    n: i64,
    score: f64,
    active: bool,
    meta: serde_json::Value,
}

/// What one backend measured.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// Rows backed up (and restored).
    pub rows: u64,
    /// The backup file's size.
    pub bytes: u64,
    /// Rows per second, backing up.
    pub backup_rate: f64,
    /// Rows per second, restoring.
    pub restore_rate: f64,
    /// How far the peak rose during the backup, in bytes.
    pub backup_peak: u64,
    /// How far the peak rose during the restore, in bytes (memory the backup freed and the
    /// allocator kept is not counted again: see `total_peak`).
    pub restore_peak: u64,
    /// How far the peak rose from before the backup to after the restore, in bytes.
    pub total_peak: u64,
}

#[path = "../tests/support/peak.rs"]
mod peak;
pub use peak::{reset_peak, status_bytes};

fn fail(e: impl std::fmt::Display) -> korm::Error {
    korm::Error::PoolConfig {
        reason: e.to_string(),
    }
}

/// A database made for the run on a server, dropped by [`Place::drop_now`].
pub enum Place {
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL or MariaDB database: its URL, the admin URL and its name.
    Server {
        url: String,
        admin: String,
        name: String,
    },
}

fn with_database(admin: &str, name: &str) -> String {
    let scheme_end = admin.find("://").map_or(0, |i| i + 3);
    let path = admin[scheme_end..]
        .find('/')
        .map_or(admin.len(), |i| scheme_end + i);
    format!("{}/{name}", &admin[..path])
}

async fn admin_sql(admin: &str, sql: String) -> korm::Result<()> {
    if admin.starts_with("postgres") {
        let mut conn = sqlx::postgres::PgConnection::connect(admin)
            .await
            .map_err(fail)?;
        conn.execute(AssertSqlSafe(sql)).await.map_err(fail)?;
    } else {
        let mut conn = sqlx::mysql::MySqlConnection::connect(admin)
            .await
            .map_err(fail)?;
        conn.execute(AssertSqlSafe(sql)).await.map_err(fail)?;
    }
    Ok(())
}

impl Place {
    /// A fresh place on `backend` (`sqlite` in `dir`, `pg`, `mysql`), `None` when the
    /// environment names no such server.
    pub async fn new(
        backend: &str,
        dir: &std::path::Path,
        tag: &str,
    ) -> Option<korm::Result<Place>> {
        let var = match backend {
            "sqlite" => return Some(Ok(Place::Sqlite(dir.join(format!("{tag}.sqlite"))))),
            "pg" => "KORM_TEST_PG_URL",
            _ => "KORM_TEST_MYSQL_URL",
        };
        let admin = std::env::var(var).ok().filter(|v| !v.is_empty())?;
        let name = format!(
            "korm_scale_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let quoted = if backend == "pg" {
            format!("\"{name}\"")
        } else {
            format!("`{name}`")
        };
        Some(
            admin_sql(&admin, format!("CREATE DATABASE {quoted}"))
                .await
                .map(|()| Place::Server {
                    url: with_database(&admin, &name),
                    admin,
                    name,
                }),
        )
    }

    fn spec(&self) -> korm::Result<korm::LayerSpec> {
        Ok(match self {
            Place::Sqlite(path) => korm::layers::sqlite(path).into(),
            Place::Server { url, .. } => korm::layers::from_url(url)?,
        })
    }

    /// Drops the server database.
    pub async fn drop_now(&self) {
        if let Place::Server { admin, name, .. } = self {
            let sql = if admin.starts_with("postgres") {
                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
            } else {
                format!("DROP DATABASE IF EXISTS `{name}`")
            };
            let _ = admin_sql(admin, sql).await;
        }
    }

    /// Fills the table with `n` rows: one written by korm (which makes the table with its
    /// kinds), the rest by the driver in one statement.
    async fn fill(&self, n: u64) -> korm::Result<()> {
        let pool = open(self, None).await?;
        korm::item::<Row>(&pool)
            .from_data(
                "[rn]:scale:rows:*".parse()?,
                Row {
                    name: "row 0".into(),
                    n: 0,
                    score: 0.0,
                    active: true,
                    meta: serde_json::json!({"k": 0, "tags": ["a", "b"]}),
                },
            )?
            .create()
            .await?;
        pool.close().await;
        let more = n.saturating_sub(1);
        match self {
            Place::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).map_err(fail)?;
                conn.execute(
                    &format!(
                        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?1) \
                         INSERT INTO \"{TABLE}\" (\"rnId\", \"name\", \"n\", \"score\", \"active\", \"meta\") \
                         SELECT printf('%08x-0000-4000-8000-%012x', n, n), 'row ' || n, n, n * 0.5, \
                         n % 2, '{{\"k\":' || n || ',\"tags\":[\"a\",\"b\"]}}' FROM s"
                    ),
                    [more as i64],
                )
                .map_err(fail)?;
            }
            Place::Server { url, .. } if url.starts_with("postgres") => {
                let mut conn = sqlx::postgres::PgConnection::connect(url)
                    .await
                    .map_err(fail)?;
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO \"{TABLE}\" (\"rnId\", name, n, score, active, meta) \
                     SELECT lpad(to_hex(g), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(g), 12, '0'), 'row ' || g, g, g * 0.5, g % 2 = 0, \
                     jsonb_build_object('k', g, 'tags', jsonb_build_array('a', 'b')) \
                     FROM generate_series(1, $1) g"
                )))
                .bind(more as i64)
                .execute(&mut conn)
                .await
                .map_err(fail)?;
            }
            Place::Server { url, .. } => {
                let mut conn = sqlx::mysql::MySqlConnection::connect(url)
                    .await
                    .map_err(fail)?;
                conn.execute(AssertSqlSafe(format!(
                    "INSERT INTO `{TABLE}` (`rnId`, name, n, score, active, meta) \
                     SELECT LOWER(CONCAT(LPAD(HEX(seq), 8, '0'), '-0000-4000-8000-', LPAD(HEX(seq), 12, '0'))), \
                     CONCAT('row ', seq), seq, seq * 0.5, seq % 2, \
                     JSON_OBJECT('k', seq, 'tags', JSON_ARRAY('a', 'b')) FROM seq_1_to_{more}"
                )))
                .await
                .map_err(fail)?;
            }
        }
        Ok(())
    }
}

async fn open(place: &Place, depot: Option<&std::path::Path>) -> korm::Result<Pool> {
    let mut builder = korm::pool().layer("data", place.spec()?);
    if let Some(depot) = depot {
        builder = builder.depot("backups", korm::depots::local(depot));
    }
    builder.open().await
}

/// Backs up `n` rows on `backend` and restores them into a fresh layer of the same
/// backend; `None` when the environment names no such server.
pub async fn measure(
    backend: &str,
    n: u64,
    dir: &std::path::Path,
) -> Option<korm::Result<Figures>> {
    let source = match Place::new(backend, dir, "source").await? {
        Ok(place) => place,
        Err(e) => return Some(Err(e)),
    };
    let target = match Place::new(backend, dir, "target").await? {
        Ok(place) => place,
        Err(e) => {
            source.drop_now().await;
            return Some(Err(e));
        }
    };
    let result = run(&source, &target, n, dir).await;
    source.drop_now().await;
    target.drop_now().await;
    Some(result)
}

async fn run(
    source: &Place,
    target: &Place,
    n: u64,
    dir: &std::path::Path,
) -> korm::Result<Figures> {
    source.fill(n).await?;
    let depot = dir.join("depot");
    let pool = open(source, Some(&depot)).await?;
    let backups = Backups::new(&pool, "backups")?;
    reset_peak();
    let baseline = status_bytes("VmHWM");
    let before_all = baseline;
    let start = Instant::now();
    let taken = backups.now("data").await?;
    let backup_secs = start.elapsed().as_secs_f64();
    let backup_peak = status_bytes("VmHWM").saturating_sub(baseline);
    pool.close().await;
    if taken.rows != n {
        return Err(fail(format!("backed up {} rows of {n}", taken.rows)));
    }

    let pool = open(target, Some(&depot)).await?;
    let backups = Backups::new(&pool, "backups")?;
    reset_peak();
    let baseline = status_bytes("VmHWM");
    let start = Instant::now();
    let restored = backups
        .restore(&taken.key, "data", RestoreOptions::replace())
        .await?;
    let restore_secs = start.elapsed().as_secs_f64();
    let restore_peak = status_bytes("VmHWM").saturating_sub(baseline);
    // The peak of the restore measured from before the backup, or the backup's own.
    let total_peak = backup_peak.max(status_bytes("VmHWM").saturating_sub(before_all));
    // Spot checks through korm: the first and a late item read back.
    let items = korm::item::<Row>(&pool)
        .query("[rn]:scale:rows:*".parse()?)
        .filter(korm::eq("n", n as i64 - 1))
        .get()
        .await?;
    pool.close().await;
    if restored.rows != n || items.len() != 1 || items[0].data().name != format!("row {}", n - 1) {
        return Err(fail(format!(
            "restored {} rows of {n}; the last item {}",
            restored.rows,
            if items.len() == 1 {
                "differs"
            } else {
                "is missing"
            }
        )));
    }
    Ok(Figures {
        rows: n,
        bytes: taken.bytes,
        backup_rate: n as f64 / backup_secs,
        restore_rate: n as f64 / restore_secs,
        backup_peak,
        restore_peak,
        total_peak,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> korm::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = match args.next() {
        Some(n) => n.replace('_', "").parse().map_err(fail)?,
        None => 1_000_000,
    };
    let mut backends: Vec<String> = args.collect();
    if backends.is_empty() {
        backends = vec!["sqlite".into(), "pg".into(), "mysql".into()];
    }
    println!(
        "{n} items per backend; peak reset: {}; bound {:.0} MiB above baseline",
        if reset_peak() {
            "yes"
        } else {
            "no (peaks are cumulative)"
        },
        mib(BOUND)
    );
    for backend in &backends {
        let dir = tempfile::tempdir().map_err(fail)?;
        match measure(backend, n, dir.path()).await {
            None => println!("{backend:>6}: skipped (no server URL in the environment)"),
            Some(Err(e)) => println!("{backend:>6}: failed: {e}"),
            Some(Ok(f)) => println!(
                "{backend:>6}: {:.1} MiB file; backup {:.0} rows/s, peak +{:.1} MiB; restore {:.0} rows/s, peak +{:.1} MiB; both +{:.1} MiB",
                mib(f.bytes),
                f.backup_rate,
                mib(f.backup_peak),
                f.restore_rate,
                mib(f.restore_peak),
                mib(f.total_peak)
            ),
        }
    }
    Ok(())
}
