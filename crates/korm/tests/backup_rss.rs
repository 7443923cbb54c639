//! A backup and a restore stream: the peak resident set rises less than 64 MiB above the
//! baseline during each, on SQLite (400,000 items, a backup file larger than the bound) and on
//! PostgreSQL and MariaDB (100,000 items, whose restore through the servers is slower). The
//! bound holds whatever the table size: `examples/backup_scale.rs` measures 1,000,000.
//!
//! Each test re-runs this test binary for itself in a child process (marked by
//! `KORM_BACKUP_RSS_CHILD`), so the measurement owns a fresh process.

#[path = "support/child.rs"]
mod child;
#[path = "../examples/backup_scale.rs"]
#[allow(unreachable_pub)]
mod scale;

const CHILD: &str = "KORM_BACKUP_RSS_CHILD";
/// Items per backend: on SQLite a backup file larger than the bound.
fn rows(backend: &str) -> u64 {
    if backend == "sqlite" {
        400_000
    } else {
        100_000
    }
}

fn run(test: &str, backend: &str) {
    if std::env::var(CHILD).as_deref() == Ok(backend) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let figures = runtime.block_on(async {
            assert!(
                scale::status_bytes("VmHWM") > 0,
                "/proc/self/status has no VmHWM: this test needs Linux"
            );
            let dir = tempfile::tempdir().expect("temp dir");
            scale::measure(backend, rows(backend), dir.path())
                .await
                .expect("server configured")
                .expect("backup and restore")
        });
        println!(
            "\nfigures {} {} {} {}",
            figures.backup_peak, figures.restore_peak, figures.bytes, figures.total_peak
        );
        return;
    }
    let var = match backend {
        "pg" => Some("KORM_TEST_PG_URL"),
        "mysql" => Some("KORM_TEST_MYSQL_URL"),
        _ => None,
    };
    if let Some(var) = var
        && std::env::var(var).map_or(true, |v| v.is_empty())
    {
        let message = format!("{var} unset: no {backend} server for the backup memory test");
        if std::env::var_os("KORM_TEST_RUN").is_some() {
            panic!("{message}");
        }
        eprintln!("\n!!!! SKIPPED: {message}\n");
        return;
    }
    let figures = child::child_figures(test, CHILD, backend);
    let (backup, restore, bytes, total) = (figures[0], figures[1], figures[2], figures[3]);
    eprintln!(
        "{backend}: {} rows, {:.1} MiB file; backup +{:.1} MiB, restore +{:.1} MiB, both +{:.1} MiB",
        rows(backend),
        bytes as f64 / 1048576.0,
        backup as f64 / 1048576.0,
        restore as f64 / 1048576.0,
        total as f64 / 1048576.0
    );
    // About 19 MiB of file, whose rows parsed into JSON values take several times that:
    // gathering them would break the bound.
    assert!(
        bytes > scale::BOUND / 4,
        "the file is too small to tell: {bytes} bytes"
    );
    assert!(
        backup < scale::BOUND,
        "{backend} backup peak +{backup} bytes"
    );
    assert!(
        restore < scale::BOUND,
        "{backend} restore peak +{restore} bytes"
    );
    assert!(
        total < scale::BOUND,
        "{backend} peak +{total} bytes over backup and restore"
    );
}

#[test]
fn sqlite_backup_and_restore_stream_within_64_mib() {
    run("sqlite_backup_and_restore_stream_within_64_mib", "sqlite");
}

#[test]
fn postgres_backup_and_restore_stream_within_64_mib() {
    run("postgres_backup_and_restore_stream_within_64_mib", "pg");
}

#[test]
fn mariadb_backup_and_restore_stream_within_64_mib() {
    run("mariadb_backup_and_restore_stream_within_64_mib", "mysql");
}
