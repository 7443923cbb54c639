//! `korm backup now | list | verify | restore` run as a user runs them, on a SQLite file,
//! PostgreSQL and MariaDB, backups in a local folder: a damaged backup exits 2 naming the
//! line, and a restore into another backend brings the items back.

use std::process::{Command, Output};

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[path = "../../korm/tests/support/mod.rs"]
mod support;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    text: String,
    n: i64,
    tags: Vec<String>,
    done: bool,
}

fn korm(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_korm"))
        .args(args)
        .env_remove("KORM_ENV")
        .envs(env.iter().copied())
        .output()
        .expect("run korm")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "korm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf8")
}

async fn notes(pool: &korm::Pool, layer: &str) -> Vec<Note> {
    let mut out: Vec<Note> = korm::item::<Note>(pool)
        .query(
            format!("[rn][from::{layer}]:notes:plain:*")
                .parse()
                .expect("rn"),
        )
        .get()
        .await
        .expect("query")
        .into_iter()
        .map(korm::Item::into_data)
        .collect();
    out.sort_by_key(|n| n.n);
    out
}

/// Where the backups go: a local folder, or an S3 bucket (its settings as `AWS_*`).
enum Store {
    Local,
    S3 {
        bucket: String,
        env: Vec<(&'static str, String)>,
    },
}

async fn backup_commands(source_url: &str, store: Store) {
    let dir = tempfile::tempdir().expect("dir");
    let depot = dir.path().join("backups");
    std::fs::create_dir_all(&depot).expect("mkdir");
    let depot_arg = match &store {
        Store::Local => format!("backups={}", depot.display()),
        Store::S3 { bucket, .. } => format!("backups=s3://{bucket}/nightly"),
    };
    let mut env: Vec<(&str, String)> = vec![("KORM_CLI_TEST_URL", source_url.to_owned())];
    if let Store::S3 { env: aws, .. } = &store {
        env.extend(aws.iter().cloned());
    }
    let pool = korm::pool()
        .layer("db", korm::layers::from_url(source_url).expect("url"))
        .open()
        .await
        .expect("open");
    for n in 0..30 {
        korm::item::<Note>(&pool)
            .from_data(
                "[rn][from::db]:notes:plain:*".parse().expect("rn"),
                Note {
                    text: format!("note {n}"),
                    n,
                    tags: vec!["a".into()],
                    done: n % 2 == 0,
                },
            )
            .expect("data")
            .create()
            .await
            .expect("create");
    }
    let before = notes(&pool, "db").await;
    pool.close().await;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let pool_args = ["--layer", "db=env:KORM_CLI_TEST_URL", "--depot", &depot_arg];
    let with = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| (*s).to_owned()).collect();
        v.extend(pool_args.iter().map(|s| (*s).to_owned()));
        v
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        korm(&refs, &env)
    };

    // now, --json.
    let out = ok(&run(with(&["backup", "now", "--json"])));
    let taken: Value = serde_json::from_str(out.trim()).expect("json");
    let key = taken["backups"][0]["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with("__korm_backups__/db/"), "{key}");
    assert!(taken["backups"][0]["rows"].as_u64().expect("rows") >= 30);
    // list, as text and JSON.
    let out = ok(&run(with(&["backup", "list"])));
    assert!(out.contains(&key), "{out}");
    let out = ok(&run(with(&["backup", "list", "--of", "db", "--json"])));
    let listed: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(listed["backups"][0]["key"], key.as_str());
    // verify.
    let out = ok(&run(with(&["backup", "verify", &key])));
    assert!(out.starts_with("ok "), "{out}");
    assert!(out.contains("SHA-256"), "{out}");

    // A flipped byte (in the local folder): exit code 2, the line named.
    if let Store::Local = store {
        let file = depot.join(&key);
        let good = std::fs::read(&file).expect("read");
        let mut bad = good.clone();
        let at = good.len() / 2;
        bad[at] = if bad[at] == b'7' { b'8' } else { b'7' };
        std::fs::write(&file, &bad).expect("write");
        let out = run(with(&["backup", "verify", &key]));
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(": line "), "{stderr}");
        std::fs::write(&file, &good).expect("write");
    }

    // Restore into another backend (a SQLite file), merge, then one item only.
    let target = dir.path().join("target.sqlite");
    let target_arg = format!("other=sqlite:{}", target.display());
    let mut args = with(&[
        "backup", "restore", &key, "--into", "other", "--mode", "merge",
    ]);
    args.extend(["--layer".to_owned(), target_arg.clone()]);
    let out = ok(&run(args));
    assert!(out.starts_with("restored "), "{out}");
    let restored = korm::pool()
        .layer("other", korm::layers::sqlite(&target))
        .open()
        .await
        .expect("open");
    assert_eq!(notes(&restored, "other").await, before);
    restored.close().await;
    // An unknown mode or a bad --only is refused before anything runs.
    let mut args = with(&["backup", "restore", &key, "--into", "db", "--only", "a b"]);
    args.push("--json".into());
    assert!(!run(args).status.success());
}

#[tokio::test]
async fn backup_commands_on_a_sqlite_file() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite:{}", dir.path().join("src.sqlite").display());
    backup_commands(&url, Store::Local).await;
}

#[tokio::test]
async fn backup_commands_with_an_s3_bucket() {
    let Some(s3) = support::S3Server::from_env() else {
        return;
    };
    let bucket = support::S3Server::bucket_name();
    // The bucket made once by the library (the command does not create buckets).
    let pool = korm::pool()
        .layer("x", korm::layers::sqlite_memory())
        .depot("b", s3.options(&bucket))
        .open()
        .await
        .expect("bucket");
    pool.close().await;
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite:{}", dir.path().join("src.sqlite").display());
    let env = s3.aws_env();
    backup_commands(&url, Store::S3 { bucket, env }).await;
}

#[tokio::test]
async fn backup_commands_on_postgres() {
    let Some(db) = support::create(support::Server::Postgres).await else {
        return;
    };
    backup_commands(&db.url, Store::Local).await;
}

#[tokio::test]
async fn backup_commands_on_mariadb() {
    let Some(db) = support::create(support::Server::MySql).await else {
        return;
    };
    backup_commands(&db.url, Store::Local).await;
}
