//! Everything at once: a pool of every layer kind (SQLite, PostgreSQL, MariaDB) and depot kind
//! (a local folder, an S3 bucket), with pool metadata, shared locks and a write-ahead log;
//! encrypted fields and passwords; references across databases, filtered and resolved; a
//! transaction across three databases with a file upload; a lock held around a
//! read-modify-write.
//!
//! `scripts/test` runs it against the local services. By hand:
//! `KORM_ENCRYPTION_KEY=$(cargo run -q -p korm-cli -- generate-encryption-key) cargo run -p korm
//! --example maximal`. It creates a fresh database on each server (from `KORM_TEST_PG_URL`
//! and `KORM_TEST_MYSQL_URL`, the local services by default) and drops them at the end; the
//! S3 part runs when `KORM_TEST_S3_ENDPOINT`, `KORM_TEST_S3_ACCESS_KEY` and
//! `KORM_TEST_S3_SECRET` name a server (a local folder stands in otherwise). It checks what it
//! prints, and exits non-zero if anything differs.

use korm::{
    DepotFile, Encrypted, LockOptions, Password, Ref, SortOrder, WalOptions, and, eq, gt, in_list,
};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection, Executor};

#[derive(Debug, Serialize, Deserialize)]
struct User {
    username: String,
    password: Password,
    ssn: Encrypted<String>,
    age: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Car {
    make: String,
    year: i64,
    owner: Ref<User>,
    invoice: DepotFile,
}

#[derive(Debug, Serialize, Deserialize)]
struct Note {
    text: String,
    about: Ref<Car>,
    count: i64,
}

/// A fresh database on a server, from its admin URL; dropped by [`drop_database`].
async fn create_database(admin: &str, mysql: bool) -> Result<String, sqlx::Error> {
    let name = format!("korm_maximal_{}", uuid::Uuid::new_v4().simple());
    let sql = format!("CREATE DATABASE {name}");
    if mysql {
        let mut conn = sqlx::MySqlConnection::connect(admin).await?;
        conn.execute(AssertSqlSafe(sql)).await?;
    } else {
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        conn.execute(AssertSqlSafe(sql)).await?;
    }
    let (base, _) = admin.rsplit_once('/').unwrap_or((admin, ""));
    Ok(format!("{base}/{name}"))
}

async fn drop_database(admin: &str, url: &str, mysql: bool) {
    let name = url.rsplit('/').next().unwrap_or_default();
    let sql = format!("DROP DATABASE IF EXISTS {name}");
    let dropped = if mysql {
        match sqlx::MySqlConnection::connect(admin).await {
            Ok(mut conn) => conn.execute(AssertSqlSafe(sql)).await.map(|_| ()),
            Err(e) => Err(e),
        }
    } else {
        match sqlx::PgConnection::connect(admin).await {
            Ok(mut conn) => conn
                .execute(AssertSqlSafe(format!("{sql} WITH (FORCE)")))
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        }
    };
    if let Err(e) = dropped {
        eprintln!("could not drop {name}: {e}");
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pg_admin = env(
        "KORM_TEST_PG_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let my_admin = env("KORM_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test");
    let pg = create_database(&pg_admin, false).await?;
    let my = create_database(&my_admin, true).await?;
    let result = run(&pg, &my).await;
    drop_database(&pg_admin, &pg, false).await;
    drop_database(&my_admin, &my, true).await;
    result
}

async fn run(pg: &str, my: &str) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let archive: korm::depots::DepotSpec = match (
        std::env::var("KORM_TEST_S3_ENDPOINT"),
        std::env::var("KORM_TEST_S3_ACCESS_KEY"),
        std::env::var("KORM_TEST_S3_SECRET"),
    ) {
        (Ok(endpoint), Ok(key), Ok(secret)) => {
            println!("archive: an S3 bucket at {endpoint}");
            korm::depots::s3(format!(
                "korm-maximal-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            ))
            .with_endpoint(endpoint)
            .with_access_key_id(key)
            .with_secret_access_key(secret)
            .with_auto_create_bucket(true)
            .into()
        }
        _ => {
            println!("archive: a local folder (no S3 server named)");
            korm::depots::local(dir.path().join("archive")).into()
        }
    };
    let pool = korm::pool()
        .layer("userdb", korm::layers::postgres(pg))
        .layer("cardb", korm::layers::mysql(my))
        .layer(
            "notes",
            korm::layers::sqlite(dir.path().join("notes.sqlite")),
        )
        .depot("files", korm::depots::local(dir.path().join("files")))
        .depot("archive", archive)
        .depot("wal", korm::depots::local(dir.path().join("wal")))
        .with_meta("notes")
        .with_locks("notes", LockOptions::new())
        .with_wal("wal", WalOptions::new("maximal"))
        .open()
        .await?;
    println!(
        "pool {} opened: layers {:?}",
        pool.pool_id(),
        pool.layer_names().collect::<Vec<_>>()
    );
    let users = korm::item::<User>(&pool);
    let cars = korm::item::<Car>(&pool);
    let notes = korm::item::<Note>(&pool);

    // Users on PostgreSQL: a password hashed with argon2id, an encrypted field.
    let mut owners = Vec::new();
    for (name, age) in [("fred", 41), ("barney", 38), ("wilma", 40)] {
        let user = users
            .from_data(
                "[rn][from::userdb]:users:people:*".parse()?,
                User {
                    username: name.into(),
                    password: Password::new(&format!("{name}-secret"))?,
                    ssn: Encrypted::new(format!("078-05-{age}")),
                    age,
                },
            )?
            .create()
            .await?;
        owners.push(user);
    }
    let fred = &owners[0];
    assert!(fred.data().password.verify("fred-secret"));
    assert!(!fred.data().password.verify("wrong"));

    // A transaction across three databases and a depot: a car on MariaDB with its invoice
    // uploaded to the archive, and a note on SQLite about it. All of it, or none.
    let mut tx = korm::tx(&pool);
    let car = tx.create(
        cars.from_data(
            "[rn][from::cardb]:cars:suv:*".parse()?,
            Car {
                make: "Citroen".into(),
                year: 2015,
                owner: Ref::new(fred.rn().clone()),
                invoice: korm::depots::file(
                    "[rn][depot::archive]:invoices:fred:c4.txt".parse()?,
                    "Invoice: one Citroen C4",
                )?
                .into(),
            },
        )?,
    );
    let mut done = tx.persist().await?;
    let car = done.take(car)?;
    let note = notes
        .from_data(
            "[rn][from::notes]:notes:plain:*".parse()?,
            Note {
                text: "first car".into(),
                about: Ref::new(car.rn().clone()),
                count: 0,
            },
        )?
        .create()
        .await?;
    for (make, year, owner) in [("Fiat", 1999, &owners[1]), ("Volvo", 2021, &owners[2])] {
        cars.from_data(
            "[rn][from::cardb]:cars:suv:*".parse()?,
            Car {
                make: make.into(),
                year,
                owner: Ref::new(owner.rn().clone()),
                invoice: korm::depots::file(
                    format!("[rn][depot::files]:invoices:{make}.txt").parse()?,
                    format!("Invoice: one {make}"),
                )?
                .into(),
            },
        )?
        .create()
        .await?;
    }

    // A filter through a reference into another database, the owner resolved in one batch.
    let found = cars
        .query("[rn][from::cardb]:cars:suv:*".parse()?)
        .filter(and([
            gt("owner.age", 39),
            in_list("make", ["Citroen", "Volvo"]),
        ]))
        .sort_by("year", SortOrder::Asc)
        .resolve(["owner"])
        .get()
        .await?;
    let shown: Vec<String> = found
        .iter()
        .map(|c| {
            let owner = c
                .data()
                .owner
                .resolved()
                .map_or("?", |u| u.username.as_str());
            format!("{} of {owner}", c.data().make)
        })
        .collect();
    println!("cars of owners over 39: {shown:?}");
    assert_eq!(shown, ["Citroen of fred", "Volvo of wilma"]);
    let invoice = found[0].data().invoice.text(&pool).await?;
    assert_eq!(invoice, "Invoice: one Citroen C4");

    // A note resolved two hops: note -> car (MariaDB) -> owner (PostgreSQL).
    let loaded = notes
        .load(note.rn().clone())
        .resolve(["about.owner"])
        .get()
        .await?;
    let owner = loaded
        .data()
        .about
        .resolved()
        .and_then(|car| car.owner.resolved())
        .map(|u| u.username.clone());
    println!("the note is about a car of {owner:?}");
    assert_eq!(owner.as_deref(), Some("fred"));

    // A lock held around a read-modify-write (shared through the notes layer, so other
    // processes of this pool wait too), ten times.
    for _ in 0..10 {
        let guard = pool.locker().acquire(note.rn()).await?;
        let current = notes.load(note.rn().clone()).get().await?;
        current
            .update(|n| n.count += 1)
            .commit_under(&guard)
            .await?;
        guard.release().await?;
    }
    let counted = notes.load(note.rn().clone()).get().await?;
    println!("note counted {}", counted.data().count);
    assert_eq!(counted.data().count, 10);

    // Encrypted fields are ciphertext in the database, cleartext in the program.
    let fred_again = users
        .query("[rn][from::userdb]:users:people:*".parse()?)
        .filter(eq("username", "fred"))
        .first()
        .await?;
    assert_eq!(fred_again.data().ssn.reveal(), "078-05-41");
    let mut conn = sqlx::PgConnection::connect(pg).await?;
    let stored: String = sqlx::query_scalar("SELECT ssn::text FROM __items__users__people LIMIT 1")
        .fetch_one(&mut conn)
        .await?;
    assert!(stored.contains("__ENCRYPTED__") && !stored.contains("078-05"));
    println!(
        "ssn in PostgreSQL: an envelope of {} characters",
        stored.len()
    );

    // The write-ahead log finished every record.
    let wal = pool.wal().ok_or("the pool has a WAL")?;
    assert!(wal.pending().await?.is_empty());
    println!("WAL {}: nothing pending", wal.folder());
    pool.close().await;
    println!("maximal: every check passed");
    Ok(())
}
