//! Faults: an S3 server that is down or refuses the credentials gives a typed error naming
//! the depot, with no secret in it, and an item whose file upload fails leaves no row.

use korm::depots::{DepotKey, FileContent};
use korm::{DepotFile, Error, Rn};
use serde::{Deserialize, Serialize};

const SECRET: &str = "s3cr3t-n0t-in-any-error-9f8e7d";
const TOKEN: &str = "t0ken-n0t-in-any-error-1a2b3c";

/// A loopback port with nothing listening (bound, then released).
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

fn assert_no_secret(err: &Error) {
    let display = err.to_string();
    let debug = format!("{err:?}");
    for secret in [SECRET, TOKEN] {
        assert!(!display.contains(secret), "secret in Display: {display}");
        assert!(!debug.contains(secret), "secret in Debug: {debug}");
    }
}

fn assert_depot_error(err: &Error) {
    match err {
        Error::Depot { depot, .. } => assert_eq!(depot, "files", "{err:?}"),
        Error::WriteFailed { source, .. } => assert_depot_error(source),
        other => panic!("expected a depot error naming the depot, got {other:?}"),
    }
    assert!(err.to_string().contains("\"files\""), "{err}");
    assert_no_secret(err);
}

fn down_options() -> korm::depots::S3Options {
    korm::depots::s3("korm-down")
        .with_endpoint(format!("http://127.0.0.1:{}", dead_port()))
        .with_access_key_id("AKIDOWN")
        .with_secret_access_key(SECRET)
        .with_session_token(TOKEN)
        .with_max_retries(1)
}

#[test]
fn options_and_depot_debug_hide_the_secret() {
    let options = down_options();
    let debug = format!("{options:?}");
    assert!(!debug.contains(SECRET) && !debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("***"), "{debug}");
    assert!(
        debug.contains("AKIDOWN"),
        "the key id is not secret: {debug}"
    );
}

#[tokio::test]
async fn server_down_at_open_with_auto_create() {
    let err = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .depot("files", down_options().with_auto_create_bucket(true))
        .open()
        .await
        .expect_err("nothing listens");
    assert_depot_error(&err);
}

#[derive(Debug, Serialize, Deserialize)]
struct Car {
    year: i64,
    invoice: DepotFile,
}

#[tokio::test]
async fn server_down_gives_a_depot_error_and_no_row() {
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .depot("files", down_options())
        .open()
        .await
        .expect("opening sends nothing");
    let depot = pool.depot("files").expect("depot");
    let k = DepotKey::parse("a/b.txt").expect("key");
    let err = depot
        .put(&k, FileContent::text("x"))
        .await
        .expect_err("down");
    assert_depot_error(&err);
    let err = depot.get(&k).await.err().expect("down");
    assert_depot_error(&err);
    let err = pool
        .files(&"[rn][depot::files]:*".parse::<Rn>().expect("rn"))
        .await
        .expect_err("down");
    assert_depot_error(&err);

    // An item whose file can not be uploaded is not stored.
    let cars = korm::item::<Car>(&pool);
    let floating = cars
        .from_data(
            "[rn]:cars:suv:*".parse().expect("rn"),
            Car {
                year: 2015,
                invoice: korm::depots::file(
                    "[rn][depot::files]:invoices:fred:invoice-001.txt"
                        .parse::<Rn>()
                        .expect("rn"),
                    "Invoice 001",
                )
                .expect("file")
                .into(),
            },
        )
        .expect("floating");
    let car_rn = floating.rn().clone();
    let err = floating.create().await.expect_err("upload fails");
    assert_depot_error(&err);
    let err = cars.load(car_rn).get().await.expect_err("no row");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let all = cars
        .query("[rn]:cars:suv:*".parse().expect("rn"))
        .get()
        .await;
    assert!(
        all.map(|v| v.is_empty()).unwrap_or(true),
        "no car row exists"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_refused_with_a_depot_error() {
    let Some((endpoint, key, secret)) = super::s3_env() else {
        return;
    };
    let bucket = super::bucket();
    // The bucket exists (made with the right secret)...
    let good = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .depot(
            "files",
            korm::depots::s3(&bucket)
                .with_endpoint(&endpoint)
                .with_access_key_id(&key)
                .with_secret_access_key(&secret)
                .with_auto_create_bucket(true),
        )
        .open()
        .await
        .expect("open with the right secret");
    good.close().await;
    // ...and the wrong secret is refused, by name, without the secret.
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .depot(
            "files",
            korm::depots::s3(&bucket)
                .with_endpoint(&endpoint)
                .with_access_key_id(&key)
                .with_secret_access_key(SECRET),
        )
        .open()
        .await
        .expect("open sends nothing");
    let depot = pool.depot("files").expect("depot");
    let err = depot
        .put(
            &DepotKey::parse("x.txt").expect("key"),
            FileContent::text("x"),
        )
        .await
        .expect_err("refused");
    assert_depot_error(&err);
    let cars = korm::item::<Car>(&pool);
    let floating = cars
        .from_data(
            "[rn]:cars:suv:*".parse().expect("rn"),
            Car {
                year: 1,
                invoice: korm::depots::file(
                    "[rn][depot::files]:x.txt".parse::<Rn>().expect("rn"),
                    "x",
                )
                .expect("file")
                .into(),
            },
        )
        .expect("floating");
    let car_rn = floating.rn().clone();
    let err = floating.create().await.expect_err("refused");
    assert_depot_error(&err);
    assert!(matches!(
        cars.load(car_rn).get().await,
        Err(Error::NotFound { .. })
    ));
    // With auto-create, the refusal already comes at open.
    let err = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .depot(
            "files",
            korm::depots::s3(super::bucket())
                .with_endpoint(&endpoint)
                .with_access_key_id(&key)
                .with_secret_access_key(SECRET)
                .with_auto_create_bucket(true),
        )
        .open()
        .await
        .expect_err("refused at open");
    assert_depot_error(&err);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_prefix_keeps_files_under_it() {
    let Some((endpoint, key, secret)) = super::s3_env() else {
        return;
    };
    let bucket = super::bucket();
    let open = |prefix: Option<&str>| {
        let mut options = korm::depots::s3(&bucket)
            .with_endpoint(&endpoint)
            .with_access_key_id(&key)
            .with_secret_access_key(&secret)
            .with_auto_create_bucket(true);
        if let Some(prefix) = prefix {
            options = options.with_prefix(prefix);
        }
        korm::pool()
            .layer("db", korm::layers::sqlite_memory())
            .depot("files", options)
            .open()
    };
    let prefixed = open(Some("tenant-a/files")).await.expect("open prefixed");
    korm::depots::file(
        "[rn][depot::files]:invoices:one.txt"
            .parse::<Rn>()
            .expect("rn"),
        "one",
    )
    .expect("file")
    .create(&prefixed)
    .await
    .expect("create");
    let whole = open(None).await.expect("open whole bucket");
    let listed: Vec<String> = whole
        .files(&"[rn][depot::files]:*".parse::<Rn>().expect("rn"))
        .await
        .expect("list")
        .iter()
        .map(|f| f.rn().to_string())
        .collect();
    assert_eq!(
        listed,
        ["[rn][depot::files]:tenant-a:files:invoices:one.txt"]
    );
    let inside: Vec<String> = prefixed
        .files(&"[rn][depot::files]:*".parse::<Rn>().expect("rn"))
        .await
        .expect("list")
        .iter()
        .map(|f| f.rn().to_string())
        .collect();
    assert_eq!(inside, ["[rn][depot::files]:invoices:one.txt"]);
    prefixed.close().await;
    whole.close().await;
}

#[tokio::test]
async fn depot_names_and_options_are_checked_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let twice = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .depot("files", korm::depots::local(dir.path().join("a")))
        .depot("files", korm::depots::local(dir.path().join("b")))
        .open()
        .await
        .expect_err("named twice");
    assert!(matches!(twice, Error::PoolConfig { .. }), "{twice:?}");
    let bad_name = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .depot("my files", korm::depots::local(dir.path().join("a")))
        .open()
        .await
        .expect_err("bad name");
    assert!(
        matches!(bad_name, Error::InvalidIdentifier { what: "depot", .. }),
        "{bad_name:?}"
    );
    let bad_bucket = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .depot("files", korm::depots::s3("a/../b"))
        .open()
        .await
        .expect_err("bad bucket");
    assert_depot_error(&bad_bucket);
    // A token a header can not carry is refused at open, without quoting it.
    let newline = format!("{TOKEN}\r\nX-Injected: 1");
    let bad_token = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .depot("files", down_options().with_session_token(newline))
        .open()
        .await
        .expect_err("bad token");
    assert_depot_error(&bad_token);
    // A missing local root is created; with creation off it is an error naming the depot.
    let err = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .depot(
            "files",
            korm::depots::local(dir.path().join("missing")).with_create(false),
        )
        .open()
        .await
        .expect_err("no root");
    assert_depot_error(&err);
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .depot("files", korm::depots::local(dir.path().join("new/root")))
        .open()
        .await
        .expect("root created");
    assert!(dir.path().join("new/root").is_dir());
    assert_eq!(pool.depot_names().collect::<Vec<_>>(), ["files"]);
    pool.close().await;
}
