//! The PostgreSQL layer against the real server: korm 1.5's dump, unique and key violations,
//! wrong URLs, an unreachable server, a connection killed mid-query. Each test runs in its own
//! freshly created database, dropped afterwards.

use std::time::{Duration, Instant};

use korm::{DbErrorKind, Error, Unique, eq};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};

use super::{fixtures, manifest};
use crate::support::{self, Server, TestDatabase};

async fn database() -> Option<TestDatabase> {
    support::create(Server::Postgres).await
}

async fn open(db: &TestDatabase, layer: &str) -> korm::Pool {
    korm::pool()
        .layer(layer, korm::layers::postgres(db.url.clone()))
        .open()
        .await
        .expect("open postgres")
}

#[derive(Debug, Serialize, Deserialize)]
struct FixtureUser {
    username: String,
    age: i64,
    score: f64,
    active: bool,
    nickname: Option<String>,
    tags: Vec<String>,
    address: Value,
    email: Unique<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_what_korm_1_5_wrote_to_postgres() {
    let Some(db) = database().await else { return };
    let dump = fixtures().join("postgres.sql");
    let status = std::process::Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
        .arg(&dump)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run psql (the PostgreSQL client must be installed)");
    assert!(status.success(), "psql could not load {}", dump.display());

    let m = manifest("manifest-sql.json");
    let m = &m["postgres.sql"];
    let layer = m["layer"].as_str().expect("layer");
    let pool = open(&db, layer).await;
    let fred: korm::Rn<FixtureUser> = m["fred"].as_str().expect("rn").parse().expect("rn parses");
    let users = korm::item::<FixtureUser>(&pool);
    let loaded = users.load(fred.clone()).get().await.expect("load fred");
    let data = loaded.data();
    assert_eq!(data.username, "freddie");
    assert_eq!(
        data.age, 41,
        "korm 1.5's `integer` column reads as an integer"
    );
    assert_eq!(data.score, 97.5);
    assert!(data.active);
    assert_eq!(data.nickname, None);
    assert_eq!(data.tags, ["quarry"]);
    assert_eq!(
        data.address,
        json!({"city": "Bedrock", "geo": {"lat": 34.1}})
    );
    assert_eq!(*data.email, m["email"].as_str().expect("email"));

    // Queries reach into korm 1.5's jsonb and its domains.
    let collection: korm::Rn<FixtureUser> =
        "[rn][from::userdb]:users:freetier:*".parse().expect("rn");
    let found = users
        .query(collection.clone())
        .filter(eq("address.geo.lat", 34.1).and(eq("tags[*]", "quarry")))
        .get()
        .await
        .expect("query");
    assert_eq!(found.len(), 1);

    // Same fingerprint, same index name: korm-rs collides with korm 1.5's unique value.
    let dup = users
        .from_data(
            collection.clone(),
            FixtureUser {
                username: "impostor".into(),
                age: 1,
                score: 0.0,
                active: false,
                nickname: None,
                tags: vec![],
                address: json!({}),
                email: Unique::new(data.email.to_string()),
            },
        )
        .expect("floating")
        .create()
        .await;
    assert!(
        matches!(&dup, Err(Error::UniqueViolation { field, .. }) if field == "email"),
        "{dup:?}"
    );
    // A value beyond korm 1.5's 32-bit column is refused before it is sent, naming the
    // field and the option that makes wider columns, never the value.
    let big = loaded.update(|u| u.age = i64::MAX).commit().await;
    match &big {
        Err(Error::Encode { what, reason }) => {
            assert!(
                what.contains("`age`") && reason.contains("with_wide_integers"),
                "{reason}"
            );
            assert!(!reason.contains(&i64::MAX.to_string()), "{reason}");
        }
        other => panic!("expected an encode error, got {other:?}"),
    }
    pool.close().await;
}

/// The columns of a table as PostgreSQL's catalog has them: name, declared type (a domain by
/// its name), nullability; then its indexes, and the domains of the database.
async fn catalog(
    url: &str,
    table: &str,
) -> (Vec<(String, String, String)>, Vec<String>, Vec<String>) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let columns = sqlx::query_as(
        "SELECT column_name::text, coalesce(domain_name, data_type)::text, is_nullable::text \
         FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut conn)
    .await
    .expect("columns");
    let indexes: Vec<(String,)> =
        sqlx::query_as("SELECT indexdef::text FROM pg_indexes WHERE tablename = $1 ORDER BY 1")
            .bind(table)
            .fetch_all(&mut conn)
            .await
            .expect("indexes");
    let domains: Vec<(String,)> = sqlx::query_as(
        "SELECT typname::text || ' ' || format_type(typbasetype, NULL) FROM pg_type \
         WHERE typtype = 'd' AND typnamespace = 'public'::regnamespace ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("domains");
    conn.close().await.ok();
    let strip = |v: Vec<(String,)>| v.into_iter().map(|(s,)| s).collect();
    (columns, strip(indexes), strip(domains))
}

/// korm 1.5's data (its dump), read and written again by korm-rs into an empty database,
/// gives korm 1.5's tables: the same columns, declared types (`integer`, the domains),
/// nullability and indexes, so a korm 1.5 service can keep writing into them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_the_tables_korm_1_5_creates() {
    let (Some(theirs), Some(ours)) = (database().await, database().await) else {
        return;
    };
    let status = std::process::Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &theirs.url, "-f"])
        .arg(fixtures().join("postgres.sql"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run psql");
    assert!(status.success(), "psql could not load postgres.sql");
    let m = manifest("manifest-sql.json");
    let key = korm::crypto::EncryptionKey::from_hex(m["encryptionKeyHex"].as_str().unwrap());
    korm::crypto::install(korm::crypto::KeyRing::new(key.expect("key")));
    #[derive(Debug, Serialize, Deserialize)]
    struct Fred {
        username: String,
        age: i64,
        score: f64,
        active: bool,
        nickname: Option<String>,
        tags: Vec<String>,
        address: Value,
        email: Unique<String>,
        password: korm::Password,
        ssn: korm::Encrypted<String>,
    }
    let rn: korm::Rn<Fred> = m["postgres.sql"]["fred"].as_str().unwrap().parse().unwrap();
    let source = open(&theirs, "userdb").await;
    let fred = korm::item::<Fred>(&source)
        .load(rn.clone())
        .get()
        .await
        .expect("load");
    source.close().await;
    let target = open(&ours, "userdb").await;
    korm::item::<Fred>(&target)
        .from_data(rn, fred.into_data())
        .expect("floating")
        .create()
        .await
        .expect("create");
    target.close().await;
    let table = "__items__users__freetier";
    let (ours, theirs) = (
        catalog(&ours.url, table).await,
        catalog(&theirs.url, table).await,
    );
    assert_eq!(ours.0, theirs.0, "columns");
    assert_eq!(ours.1, theirs.1, "indexes");
    assert_eq!(ours.2, theirs.2, "domains");
    assert!(
        ours.0.iter().any(|(c, t, _)| c == "age" && t == "integer"),
        "{:?}",
        ours.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tables_use_korm_1_5_types_and_names() {
    let Some(db) = database().await else { return };
    #[derive(Debug, Serialize, Deserialize)]
    struct Everything {
        text: String,
        integer: i64,
        double: f64,
        boolean: bool,
        list: Vec<i64>,
        owner: korm::Rn,
        email: Unique<String>,
    }
    let pool = korm::pool()
        .layer(
            "db",
            korm::layers::postgres(db.url.clone()).with_wide_integers(true),
        )
        .open()
        .await
        .expect("open postgres");
    korm::item::<Everything>(&pool)
        .from_data(
            "[rn]:users:freetier:*".parse().expect("rn"),
            Everything {
                text: "t".into(),
                integer: i64::MIN,
                double: 0.5,
                boolean: true,
                list: vec![1],
                owner: "[rn]:users:freetier:0550ec20-c747-4ef9-87d4-613fe9d0c149"
                    .parse()
                    .expect("rn"),
                email: Unique::new("a@x".into()),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, coalesce(domain_name, data_type)::text \
         FROM information_schema.columns WHERE table_name = '__items__users__freetier' \
         ORDER BY ordinal_position",
    )
    .fetch_all(&mut conn)
    .await
    .expect("columns");
    let expect = [
        ("rnId", "text"),
        ("text", "text"),
        ("integer", "bigint"),
        ("double", "double precision"),
        ("boolean", "boolean"),
        ("list", "jsonb"),
        ("owner", "korm_rn_ref_text"),
        ("email", "text"),
        ("__korm_unique__email", "text"),
    ];
    let got: Vec<(&str, &str)> = columns
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(got, expect);
    let indexes: Vec<(String,)> = sqlx::query_as(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = '__items__users__freetier' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("indexes");
    let names: Vec<&str> = indexes.iter().map(|(n,)| n.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.contains(&"__items__users__freetier_pkey"),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("__korm_u_") && n.len() == 9 + 24),
        "{names:?}"
    );
    conn.close().await.ok();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_and_key_violations_are_typed() {
    let Some(db) = database().await else { return };
    #[derive(Debug, Serialize, Deserialize)]
    struct Account {
        email: Unique<String>,
    }
    let pool = open(&db, "db").await;
    let accounts = korm::item::<Account>(&pool);
    let collection: korm::Rn<Account> = "[rn]:accounts:main:*".parse().expect("rn");
    let first = accounts
        .from_data(
            collection.clone(),
            Account {
                email: Unique::new("a@x".into()),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    let dup = accounts
        .from_data(
            collection.clone(),
            Account {
                email: Unique::new("a@x".into()),
            },
        )
        .expect("floating")
        .create()
        .await;
    match dup {
        Err(Error::UniqueViolation { table, field, .. }) => {
            assert_eq!(
                (table.as_str(), field.as_str()),
                ("__items__accounts__main", "email")
            );
        }
        other => panic!("expected UniqueViolation, got {other:?}"),
    }
    let again = accounts
        .from_data(
            first.rn().clone(),
            Account {
                email: Unique::new("b@x".into()),
            },
        )
        .expect("floating")
        .create()
        .await;
    assert!(
        matches!(again, Err(Error::AlreadyExists { .. })),
        "{again:?}"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_fail_typed_without_the_password() {
    let secret = "hunter2-s3cret";
    for url in [
        format!("postgres://nosuchuser:{secret}@127.0.0.1:5432/korm_no_such_db"),
        format!("postgres://u:{secret}@[::1"),
        format!("mysql://u:{secret}@127.0.0.1:5432/x"),
        // sqlx would log the value of a parameter it does not know: refused before it runs.
        format!("postgres://postgres@127.0.0.1:5432/postgres?pass={secret}"),
    ] {
        let options =
            korm::layers::postgres(url.clone()).with_connect_timeout(Duration::from_secs(5));
        assert!(!format!("{options:?}").contains(secret));
        let err = korm::pool()
            .layer("pg", options)
            .open()
            .await
            .expect_err(&url);
        let text = format!("{err} {err:?}");
        assert!(!text.contains(secret), "{text}");
        assert!(
            matches!(&err, Error::Database { layer, kind: DbErrorKind::Connect, .. } if layer == "pg"),
            "{err:?}"
        );
    }
    // A password with an unencoded `#` cuts the url's authority short: shown as `<url>`.
    let options = korm::layers::postgres(format!("postgres://u:#{secret}@db/d"));
    assert!(!format!("{options:?}").contains(secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_connect_error() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let started = Instant::now();
    let err = korm::pool()
        .layer(
            "pg",
            korm::layers::postgres(format!("postgres://korm:pw-s3cret@127.0.0.1:{port}/x"))
                .with_connect_timeout(Duration::from_secs(2)),
        )
        .open()
        .await
        .expect_err("nothing listens there");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(
            &err,
            Error::Database {
                kind: DbErrorKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("pw-s3cret"));
}

/// A note, the collection `[rn]:notes:plain`.
#[derive(Debug, Serialize, Deserialize)]
struct Note {
    text: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_query_is_connection_lost() {
    let Some(db) = database().await else { return };
    let pool = open(&db, "db").await;
    let notes = korm::item::<Note>(&pool);
    let collection: korm::Rn<Note> = "[rn]:notes:plain:*".parse().expect("rn");
    notes
        .from_data(collection.clone(), Note { text: "x".into() })
        .expect("floating")
        .create()
        .await
        .expect("create");

    // Hold the table locked so korm's next query waits on the server, then kill its backend.
    let mut admin = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    admin.execute("BEGIN").await.expect("begin");
    admin
        .execute("LOCK TABLE \"__items__notes__plain\" IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let query = tokio::spawn({
        let pool = pool.clone();
        let collection = collection.clone();
        async move {
            korm::item::<Note>(&pool)
                .query(collection)
                .get()
                .await
                .map(|found| found.len())
        }
    });
    // Watched from another connection: inside the admin's transaction pg_stat_activity
    // is a snapshot taken at its first read, which would never show korm's query waiting
    // if korm had not reached the lock by then (a loaded machine).
    let mut watcher = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let killed: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND wait_event_type = 'Lock' AND state = 'active' \
             AND query NOT LIKE '%pg_stat_activity%'",
        )
        .fetch_all(&mut watcher)
        .await
        .expect("terminate");
        if !killed.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "korm's query never waited on the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let result = query.await.expect("no panic");
    assert!(
        matches!(&result, Err(Error::Database { layer, kind: DbErrorKind::ConnectionLost, .. }) if layer == "db"),
        "{result:?}"
    );
    admin.execute("COMMIT").await.expect("commit");
    admin.close().await.ok();
    watcher.close().await.ok();
    // The pool replaces the dead connection.
    assert_eq!(
        notes
            .query(collection)
            .get()
            .await
            .expect("query after")
            .len(),
        1
    );
    pool.close().await;
}

#[tokio::test]
async fn a_recreated_column_never_reuses_a_stale_prepared_statement() {
    // One connection, so the INSERT prepared while `n` was a bigint is the one the next
    // INSERT of the same shape would reuse after `n` became text. korm writes the parameter
    // types into the statement text, so the second INSERT is a different statement.
    let Some(db) = database().await else { return };
    let pool = korm::pool()
        .layer(
            "db",
            korm::layers::postgres(db.url.clone()).with_max_connections(1),
        )
        .open()
        .await
        .expect("open");
    #[derive(Debug, Serialize, Deserialize)]
    struct AsNumber {
        n: i64,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct AsText {
        n: String,
    }
    let rn = "[rn]:stale:statements:*";
    for i in 0..3 {
        korm::item::<AsNumber>(&pool)
            .from_data(rn.parse().expect("rn"), AsNumber { n: i })
            .expect("floating")
            .create()
            .await
            .expect("create as a number");
    }
    let created = korm::item::<AsText>(&pool)
        .from_data(rn.parse().expect("rn"), AsText { n: "seven".into() })
        .expect("floating")
        .create_with(korm::WriteOptions::new().destructive(true))
        .await
        .expect("destructive create as text");
    let loaded = korm::item::<AsText>(&pool)
        .load(created.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data().n, "seven");
    let again = korm::item::<AsText>(&pool)
        .from_data(rn.parse().expect("rn"), AsText { n: "eight".into() })
        .expect("floating")
        .create()
        .await
        .expect("a plain create after the recreation");
    assert_eq!(
        korm::item::<AsText>(&pool)
            .load(again.rn().clone())
            .get()
            .await
            .expect("load")
            .data()
            .n,
        "eight"
    );
    pool.close().await;
}

/// A unique field's shadow column without its unique index (korm 1.5, or a hand, may add the
/// two apart), its rows' shadows null, does not count the field as unique; the next unique
/// write that succeeds adds the index and fills the old rows' fingerprints in, so an old
/// value is refused again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_without_its_index_is_mended() {
    let Some(db) = database().await else {
        return;
    };
    let connect = || sqlx::PgConnection::connect(&db.url);
    let unique_keys = "SELECT c.relname::text FROM pg_index i \
        JOIN pg_class c ON c.oid = i.indexrelid \
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
        WHERE i.indrelid = '__items__accounts__main'::regclass AND i.indisunique \
        AND a.attname = '__korm_unique__email'";
    let unhook = async || {
        let mut conn = connect().await.expect("connect");
        let index: String = sqlx::query_scalar(unique_keys)
            .fetch_one(&mut conn)
            .await
            .expect("the shadow's index");
        let drop = format!("DROP INDEX \"{index}\"");
        conn.execute(sqlx::AssertSqlSafe(drop))
            .await
            .expect("drop the index");
        conn.execute("UPDATE \"__items__accounts__main\" SET \"__korm_unique__email\" = NULL")
            .await
            .expect("null the shadows");
        index
    };
    let inspect = async || {
        let mut conn = connect().await.expect("connect");
        let indexes = sqlx::query_scalar(unique_keys)
            .fetch_all(&mut conn)
            .await
            .expect("indexes");
        let filled = sqlx::query_scalar(
            "SELECT COUNT(*) FROM \"__items__accounts__main\" \
             WHERE \"__korm_unique__email\" IS NOT NULL",
        )
        .fetch_one(&mut conn)
        .await
        .expect("count");
        (indexes, filled)
    };
    crate::assert_shadow_mended(&db.url, unhook, inspect).await;
}

/// Creates a note in `[rn]:notes:plain` (table `__items__notes__plain`).
async fn create_note(pool: &korm::Pool, text: &str) {
    korm::item::<Note>(pool)
        .from_data(
            "[rn]:notes:plain:*".parse().expect("rn"),
            Note { text: text.into() },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
}

/// A layer whose current schema is named in mixed case (`search_path = "Tenant"`) is backed
/// up: the catalog query cast the schema's name back through `regnamespace`, which folds it
/// to lower case (`schema "tenant" does not exist`), so every backup and inspect failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_named_in_mixed_case_is_backed_up() {
    let Some(db) = database().await else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    conn.execute(r#"CREATE SCHEMA "Tenant""#)
        .await
        .expect("schema");
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}options=-c%20search_path%3D%22Tenant%22", db.url);
    let dir = tempfile::tempdir().expect("dir");
    let pool = korm::pool()
        .layer("pg", korm::layers::postgres(url))
        .depot("backups", korm::depots::local(dir.path()))
        .open()
        .await
        .expect("open");
    create_note(&pool, "in Tenant").await;
    let in_tenant: i64 =
        sqlx::query_scalar(r#"SELECT COUNT(*) FROM "Tenant"."__items__notes__plain""#)
            .fetch_one(&mut conn)
            .await
            .expect("the table is in the Tenant schema");
    assert_eq!(in_tenant, 1);
    let taken = korm::backup::Backups::new(&pool, "backups")
        .expect("depot")
        .now("pg")
        .await
        .expect("backup");
    assert_eq!((taken.tables, taken.rows), (1, 1));
    pool.close().await;
}

/// `korm::inspect` leaves out a table under korm's prefix that no korm RN names (another
/// program's `__items__Legacy`) instead of failing for the whole pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_leaves_out_a_table_no_rn_names() {
    let Some(db) = database().await else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    conn.execute(r#"CREATE TABLE "__items__Legacy" ("rnId" TEXT PRIMARY KEY)"#)
        .await
        .expect("a foreign table");
    let pool = open(&db, "pg").await;
    create_note(&pool, "n").await;
    let found = korm::inspect(&pool).await.expect("inspect");
    let tables: Vec<&str> = found.iter().map(|c| c.table.as_str()).collect();
    assert_eq!(tables, ["__items__notes__plain"]);
    pool.close().await;
}
