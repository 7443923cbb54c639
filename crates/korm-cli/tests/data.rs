//! `korm get | query | count` run as a user runs them, on a SQLite file, PostgreSQL and
//! MariaDB (fresh databases on the local servers), with the pool named by `--layer`,
//! `--config` or `--sqlite`.

use std::process::{Command, Output};

use korm::Encrypted;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[path = "../../korm/tests/support/mod.rs"]
mod support;

const KEY: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const SSN: &str = "078-05-1120-cleartext";

#[derive(Debug, Serialize, Deserialize)]
struct Car {
    make: String,
    year: i64,
    meta: Value,
    ssn: Encrypted<String>,
}

fn korm(args: &[&str]) -> Output {
    korm_with(args, &[])
}

fn korm_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_korm"))
        .args(args)
        .env("KORM_ENCRYPTION_KEY", KEY)
        .env_remove("KORM_ENV")
        .envs(env.iter().copied())
        .output()
        .expect("run korm")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "korm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf8")
}

/// Writes four cars into layer `layer` of `pool`; returns their RNs by make.
async fn cars(pool: &korm::Pool, layer: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (make, year, tier) in [
        ("Citroen", 2015, "gold"),
        ("Fiat", 1999, "gold"),
        ("Renault", 2021, "silver"),
        ("Peugeot", 2018, "gold"),
    ] {
        let item = korm::item::<Car>(pool)
            .from_data(
                format!("[rn][from::{layer}]:cars:suv:*")
                    .parse()
                    .expect("rn"),
                Car {
                    make: make.into(),
                    year,
                    meta: serde_json::json!({"tier": tier, "flags": {"hot": year > 2010}}),
                    ssn: Encrypted::new(SSN.into()),
                },
            )
            .expect("floating")
            .create()
            .await
            .expect("create");
        out.push((make.to_owned(), item.rn().to_string()));
    }
    out
}

/// Every data command against one pool, named by `pool_args` (with `env` for the children).
fn commands_work(pool_args: &[&str], env: &[(&str, &str)], layer: &str, rns: &[(String, String)]) {
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|s| s.to_string())
            .chain(pool_args.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |args: &[&str]| {
        let args = with(args);
        korm_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), env)
    };
    let collection = format!("[rn][from::{layer}]:cars:suv:*");
    let citroen = &rns[0].1;

    // get, for people and as JSON; the secret is never shown.
    let text = stdout(&run(&["get", citroen]));
    assert!(text.contains("Citroen") && text.contains("2015"), "{text}");
    assert!(!text.contains(SSN), "{text}");
    let json: Value =
        serde_json::from_str(&stdout(&run(&["get", citroen, "--json"]))).expect("json");
    // (With --sqlite the file is the only layer, and RNs are shown without one.)
    let shown = json["rn"].as_str().expect("rn");
    assert!(
        shown == citroen || shown == citroen.replace(&format!("[from::{layer}]"), ""),
        "{shown}"
    );
    assert_eq!(json["data"]["make"], "Citroen");
    assert_eq!(json["data"]["meta"]["tier"], "gold");
    assert_eq!(json["data"]["ssn"], "<encrypted>");

    // inspect: the collection, its rows, its columns and their kinds.
    let found: Vec<Value> =
        serde_json::from_str(&stdout(&run(&["inspect", "--json"]))).expect("json");
    let suv = found
        .iter()
        .find(|c| c["collection"] == "cars:suv")
        .unwrap_or_else(|| panic!("cars:suv is listed: {found:?}"));
    assert_eq!(suv["rows"], 4);
    let kinds: Vec<(String, String)> = suv["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("make", "text"),
        ("year", "integer"),
        ("meta", "json"),
        ("ssn", "encrypted"),
    ] {
        assert!(
            kinds
                .iter()
                .any(|(n, k)| n == expected.0 && k == expected.1),
            "{expected:?} in {kinds:?}"
        );
    }
    // -vvv: the library's spans and each SQL statement (trace level), never a value.
    let out = run(&["count", &collection, "--filter", "year > 2000", "-vvv"]);
    let logs = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        logs.contains("korm.query") && logs.contains("statement"),
        "{logs}"
    );
    assert!(logs.contains("TRACE"), "{logs}");
    assert!(!logs.contains(SSN) && !logs.contains("Citroen"), "{logs}");
    let text = stdout(&run(&["inspect"]));
    assert!(
        text.contains("cars:suv") && text.contains("4 row(s)"),
        "{text}"
    );

    // query with a filter, a sort and a limit.
    let out = run(&[
        "query",
        &collection,
        "--filter",
        r#"year > 2000 and meta.tier = "gold""#,
        "--sort",
        "-year",
        "--json",
    ]);
    let found: Vec<Value> = serde_json::from_str(&stdout(&out)).expect("json");
    let makes: Vec<&str> = found
        .iter()
        .map(|i| i["data"]["make"].as_str().expect("make"))
        .collect();
    assert_eq!(makes, ["Peugeot", "Citroen"]);
    let out = run(&[
        "query",
        &collection,
        "--sort",
        "year",
        "--limit",
        "2",
        "--json",
    ]);
    let found: Vec<Value> = serde_json::from_str(&stdout(&out)).expect("json");
    let makes: Vec<&str> = found
        .iter()
        .map(|i| i["data"]["make"].as_str().expect("make"))
        .collect();
    assert_eq!(makes, ["Fiat", "Citroen"]);
    let out = run(&[
        "query",
        &collection,
        "--filter",
        r#"make in ["Fiat", "Renault"] or not meta.flags.hot = true"#,
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("Fiat") && text.contains("Renault") && !text.contains("Peugeot"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 item(s)"));

    // count.
    assert_eq!(stdout(&run(&["count", &collection])).trim(), "4");
    let out = run(&[
        "count",
        &collection,
        "--filter",
        r#"make like "%e%""#,
        "--json",
    ]);
    let json: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(json["count"], 3, "Citroen, Renault, Peugeot");

    // A filter with a mistake: the error says where; nothing on stdout.
    let out = run(&["query", &collection, "--filter", "year > gold"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at character 8") && err.contains("quoted"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // A path korm refuses, and a missing item.
    let out = run(&["count", &collection, "--filter", "__proto__.x = 1"]);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let missing = citroen.rsplit_once(':').expect("id").0.to_owned()
        + ":00000000-0000-4000-8000-000000000000";
    let out = run(&["get", &missing]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no item at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn install_key() {
    korm::crypto::install(korm::crypto::KeyRing::new(
        korm::crypto::EncryptionKey::from_hex(KEY).expect("key"),
    ));
}

#[tokio::test]
async fn on_a_sqlite_file_by_layer_config_and_sqlite_flag() {
    install_key();
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cars.sqlite");
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(&file))
        .open()
        .await
        .expect("open");
    let rns = cars(&pool, "cardb").await;
    pool.close().await;
    let url = format!("cardb=sqlite:{}", file.display());
    commands_work(&["--layer", &url], &[], "cardb", &rns);
    let config = dir.path().join("korm.json");
    std::fs::write(
        &config,
        serde_json::json!({"layers": {"cardb": format!("sqlite:{}", file.display())}}).to_string(),
    )
    .expect("config");
    commands_work(
        &["--config", config.to_str().expect("path")],
        &[],
        "cardb",
        &rns,
    );
    // --sqlite: the file is the only layer, whatever the RNs name.
    commands_work(
        &["--sqlite", file.to_str().expect("path")],
        &[],
        "cardb",
        &rns,
    );
    // A config file larger than any config (a device, say) is refused, not read whole.
    let out = korm(&["count", "[rn]:cars:suv:*", "--config", "/dev/zero"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("larger than"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No layer named: an error that says how.
    let out = korm(&["count", "[rn]:cars:suv:*"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--layer NAME=URL"));
}

async fn on_a_server(server: support::Server) {
    install_key();
    let Some(db) = support::create(server).await else {
        return;
    };
    let pool = korm::pool()
        .layer("db", korm::layers::from_url(&db.url).expect("url"))
        .open()
        .await
        .expect("open");
    let rns = cars(&pool, "db").await;
    pool.close().await;
    // The URL through a variable, as the help advises: never on the command line.
    let layer = "db=env:KORM_CLI_TEST_URL";
    commands_work(
        &["--layer", layer],
        &[("KORM_CLI_TEST_URL", db.url.as_str())],
        "db",
        &rns,
    );
}

#[tokio::test]
async fn on_postgres() {
    on_a_server(support::Server::Postgres).await;
}

#[tokio::test]
async fn on_mariadb() {
    on_a_server(support::Server::MySql).await;
}

/// A SQLite file in `dir` holding [`cars`] `times` over (four cars each time).
async fn sqlite_of_cars(dir: &std::path::Path, times: usize) -> std::path::PathBuf {
    let file = dir.join("cars.sqlite");
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite(&file))
        .open()
        .await
        .expect("open");
    for _ in 0..times {
        cars(&pool, "db").await;
    }
    pool.close().await;
    file
}

/// A column name holding a terminal escape (a hand-made column) reaches `korm inspect`'s
/// output escaped, never raw.
#[tokio::test]
async fn inspect_escapes_control_characters_in_column_names() {
    let dir = tempfile::tempdir().expect("dir");
    let file = sqlite_of_cars(dir.path(), 1).await;
    let conn = rusqlite::Connection::open(&file).expect("sqlite");
    conn.execute(
        "ALTER TABLE __items__cars__suv ADD COLUMN \"x\u{1b}]52;c;aGk=\u{7}\" TEXT",
        [],
    )
    .expect("add the column");
    drop(conn);
    let path = file.to_str().expect("utf8");
    let text = stdout(&korm(&["inspect", "--sqlite", path]));
    assert!(text.contains("cars:suv"), "{text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("x\\u{1b}]52"), "{text}");
}

/// `korm query ... | head`: the reader closes the pipe early, and korm ends quietly with
/// success (no panic about a broken pipe).
#[tokio::test]
async fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("dir");
    let file = sqlite_of_cars(dir.path(), 200).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_korm"))
        .args(["query", "[rn]:cars:suv:*", "--sqlite"])
        .arg(&file)
        .env("KORM_ENCRYPTION_KEY", KEY)
        .env_remove("KORM_ENV")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run korm");
    let mut head = [0u8; 64];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut head)
        .expect("the first bytes");
    // The pipe's reader is gone now.
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}
