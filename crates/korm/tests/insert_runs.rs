//! Multi-row inserts on PostgreSQL and MariaDB (#16): a plan of 600 creates into one table
//! reaches the server as three `INSERT` statements of 256, 256 and 88 rows, as sqlx's own
//! statement events (`sqlx::query`, trace level) report them. The conformance suite checks
//! that such plans land or fail whole; one statement per row would pass it too, so this
//! catches a silent fall-back to it (restores would be ~7x slower).
//!
//! A binary of its own: the test installs a process-wide `tracing` subscriber.

#[path = "support/captured.rs"]
mod captured;
#[path = "support/mod.rs"]
mod support;

use std::sync::OnceLock;

use captured::Captured;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    n: i64,
    label: String,
}

/// The process's subscriber, at trace level (sqlx's statement events are trace events).
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(Captured::install)
}

/// The `rows_affected` of each statement event whose SQL inserts into `table`, in order.
fn inserts_into(text: &str, table: &str) -> Vec<u64> {
    text.lines()
        .filter(|line| {
            line.contains("sqlx::query")
                && line.contains("summary=\"INSERT INTO")
                && line.contains(table)
        })
        .map(|line| {
            let rows = line
                .split("rows_affected=")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .expect("rows_affected in a statement event");
            rows.parse().expect("a count")
        })
        .collect()
}

async fn six_hundred_creates_are_three_statements(server: support::Server) {
    let captured = captured();
    let Some(db) = support::create(server).await else {
        return;
    };
    let spec: korm::LayerSpec = match server {
        support::Server::Postgres => korm::layers::postgres(&db.url).into(),
        support::Server::MySql => korm::layers::mysql(&db.url).into(),
    };
    let pool = korm::pool().layer("db", spec).open().await.expect("open");
    let rows = korm::item::<Row>(&pool);
    let collection = || "[rn]:runs:row:*".parse().expect("rn");
    // The table and its columns exist before the plan: no DDL inside it.
    rows.from_data(
        collection(),
        Row {
            n: -1,
            label: "first".into(),
        },
    )
    .expect("floating")
    .create()
    .await
    .expect("first create");
    let before = captured.written();
    let mut tx = korm::tx(&pool);
    for n in 0..600 {
        tx.create(
            rows.from_data(
                collection(),
                Row {
                    n,
                    label: format!("row {n}"),
                },
            )
            .expect("floating"),
        );
    }
    tx.persist().await.expect("600 creates");
    let count = rows.query(collection()).count().await.expect("count");
    assert_eq!(count, 601, "{server:?}: every create landed");
    pool.close().await;
    let text = captured.text_from(before);
    assert_eq!(
        inserts_into(&text, "__items__runs__row"),
        [256, 256, 88],
        "{server:?}: the plan's inserts, by rows each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inserts_runs_of_rows() {
    six_hundred_creates_are_three_statements(support::Server::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_inserts_runs_of_rows() {
    six_hundred_creates_are_three_statements(support::Server::MySql).await;
}

/// A PostgreSQL URL whose password would reach sqlx's log (sqlx logs the value of every
/// query parameter it does not know, at WARN) is refused at open before sqlx parses it: a
/// password under a key the driver does not read (`pass=`), or the tail of a password whose
/// unencoded `?` cut the url short. Neither appears in any log line or in the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_never_reaches_the_drivers_log() {
    let log = captured();
    let from = log.written();
    let Some(db) = support::create(support::Server::Postgres).await else {
        return;
    };
    let (base, _) = db.url.split_once("://").expect("url");
    let host_and_db = base.rsplit_once('@').map_or(base, |(_, rest)| rest);
    for url in [
        format!("postgres://postgres@{host_and_db}?pass=Hunter2-In-Query"),
        format!("postgres://postgres:123?Hunter2-In-Query@{host_and_db}"),
    ] {
        let err = korm::pool()
            .layer("pg", korm::layers::postgres(url.clone()))
            .open()
            .await
            .expect_err("refused");
        assert!(!format!("{err} {err:?}").contains("Hunter2"), "{err}");
    }
    let text = log.text_from(from);
    assert!(!text.contains("Hunter2"), "{text}");
}
