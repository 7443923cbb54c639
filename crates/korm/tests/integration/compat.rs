//! Compatibility with korm 1.5 (TypeScript): reads what it wrote, writes what it writes.

use korm::{Rn, SortOrder, Unique, eq};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{fixtures, manifest};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    first_name: String,
    last_name: String,
    username: String,
    age: i64,
    score: f64,
    active: bool,
    nickname: Option<String>,
    tags: Vec<String>,
    address: Value,
    addresses: Vec<Value>,
    email: Unique<String>,
    password: Value,
    ssn: Value,
    profile: Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Car {
    make: String,
    model: String,
    year: i64,
    registered: bool,
    owner: Rn<User>,
    previous_owners: Vec<Rn<User>>,
    registration_number: Value,
    invoice: Option<Rn>,
    meta: Value,
}

/// A copy of the fixture database in a temp folder (korm may add tables; the fixture stays
/// untouched).
fn fixture_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cardb.sqlite");
    std::fs::copy(fixtures().join("cardb.sqlite"), &path).expect("copy fixture");
    (dir, path)
}

#[tokio::test]
async fn reads_every_plain_field_korm_1_5_wrote() {
    let (_dir, path) = fixture_db();
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(&path))
        .open()
        .await
        .expect("open");
    let m = manifest("manifest.json");
    let items = &m["items"];

    let fred_rn: Rn<User> = items["fred"]["rn"]
        .as_str()
        .unwrap()
        .parse()
        .expect("fred rn");
    let fred = korm::item::<User>(&pool)
        .load(fred_rn.clone())
        .get()
        .await
        .expect("load fred");
    assert_eq!(fred.rn().as_str(), items["fred"]["rn"].as_str().unwrap());
    let f = fred.data();
    assert_eq!(
        (
            f.first_name.as_str(),
            f.last_name.as_str(),
            f.username.as_str()
        ),
        ("Fred", "Flintstone", "freddie")
    );
    assert_eq!((f.age, f.score, f.active), (41, 97.5, true));
    assert_eq!(f.nickname, None);
    assert_eq!(f.tags, ["quarry", "bowling"]);
    assert_eq!(
        f.address,
        json!({"city":"Bedrock","zip":"70777","geo":{"lat":34.1,"lng":-118.3},"lines":["301 Cobblestone Way"]})
    );
    assert_eq!(
        f.addresses,
        [
            json!({"city":"Bedrock","kind":"home"}),
            json!({"city":"Rock Vegas","kind":"work"})
        ]
    );
    assert_eq!(f.email.as_str(), "fred@bedrock.example");
    // Encrypted fields come back as their envelopes until field encryption lands; never
    // as cleartext.
    assert_eq!(f.password["type"], "password");
    assert_eq!(f.ssn["__ENCRYPTED__"], true);
    assert!(
        !f.ssn
            .to_string()
            .contains(items["fred"]["ssn"].as_str().unwrap())
    );

    let barney_rn: Rn<User> = items["barney"]["rn"].as_str().unwrap().parse().expect("rn");
    let b = korm::item::<User>(&pool)
        .load(barney_rn.clone())
        .get()
        .await
        .expect("barney")
        .into_data();
    assert_eq!(
        (b.username.as_str(), b.age, b.score, b.active),
        ("barney", 38, 88.25, false)
    );
    assert_eq!(b.nickname.as_deref(), Some("Barn"));
    assert!(b.tags.is_empty() && b.addresses.is_empty());

    let car_rn: Rn<Car> = items["car"]["rn"]
        .as_str()
        .unwrap()
        .parse()
        .expect("car rn");
    let car = korm::item::<Car>(&pool)
        .load(car_rn)
        .get()
        .await
        .expect("load car")
        .into_data();
    assert_eq!((car.make.as_str(), car.model.as_str()), ("Citroen", "C4"));
    assert_eq!(car.year, items["car"]["year"].as_i64().unwrap());
    assert!(car.registered);
    assert_eq!(car.owner, fred_rn);
    assert_eq!(car.previous_owners, [barney_rn]);
    assert_eq!(
        car.invoice.as_ref().map(Rn::as_str),
        items["car"]["invoiceRn"].as_str()
    );
    assert_eq!(car.meta, json!({"flags":{"hot":false},"colours":["red"]}));

    // The deleted car is gone; the notes written by a tx are there.
    let deleted: Rn<Car> = items["deletedCar"]["rn"]
        .as_str()
        .unwrap()
        .parse()
        .expect("rn");
    assert!(
        korm::item::<Car>(&pool)
            .load(deleted)
            .get_optional()
            .await
            .expect("load")
            .is_none()
    );
    #[derive(Debug, Serialize, Deserialize)]
    struct Note {
        text: String,
        n: i64,
    }
    let notes = korm::item::<Note>(&pool)
        .query("[rn]:notes:plain:*".parse().expect("rn"))
        .sort_by("n", SortOrder::Asc)
        .get()
        .await
        .expect("notes");
    assert_eq!(
        notes
            .iter()
            .map(|n| n.data().text.as_str())
            .collect::<Vec<_>>(),
        ["tx one", "tx two"]
    );

    // Queries work on korm 1.5's tables: an RN column, a JSON path, a unique column.
    let owned = korm::item::<Car>(&pool)
        .query("[rn]:cars:suv:*".parse().expect("rn"))
        .filter(eq("owner", fred_rn.as_str()))
        .get()
        .await
        .expect("query");
    assert_eq!(owned.len(), 1);
    let bedrock = korm::item::<User>(&pool)
        .query("[rn]:users:freetier:*".parse().expect("rn"))
        .filter(eq("addresses[*].city", "Rock Vegas"))
        .first()
        .await
        .expect("first");
    assert_eq!(bedrock.data().username, "freddie");

    // korm 1.5's unique index holds: a duplicate email is refused by korm-rs.
    let dup = korm::item::<User>(&pool)
        .from_data("[rn]:users:freetier:*".parse().expect("rn"), {
            let mut copy = korm::item::<User>(&pool)
                .load(fred_rn)
                .get()
                .await
                .expect("fred")
                .into_data();
            copy.username = "fake".into();
            copy
        })
        .expect("floating")
        .create()
        .await;
    assert!(
        matches!(dup, Err(korm::Error::UniqueViolation { ref field, .. }) if field == "email"),
        "{dup:?}"
    );
    pool.close().await;
}

/// `(name, declared type)` of every column, in order.
fn columns(path: &std::path::Path, table: &str) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(path).expect("open");
    let mut stmt = conn
        .prepare("SELECT name, type FROM pragma_table_info(?1)")
        .expect("prepare");
    stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

fn indexes(path: &std::path::Path, table: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).expect("open");
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL")
        .expect("prepare");
    stmt.query_map([table], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[tokio::test]
async fn writes_the_tables_korm_1_5_writes() {
    // Read korm 1.5's items, write the same data through korm-rs into a fresh file, and
    // compare the tables: same column names, same declared types, same unique index.
    let (_src_dir, src) = fixture_db();
    let source = korm::pool()
        .layer("cardb", korm::layers::sqlite(&src))
        .open()
        .await
        .expect("open");
    let m = manifest("manifest.json");
    let fred_rn: Rn<User> = m["items"]["fred"]["rn"]
        .as_str()
        .unwrap()
        .parse()
        .expect("rn");
    let car_rn: Rn<Car> = m["items"]["car"]["rn"]
        .as_str()
        .unwrap()
        .parse()
        .expect("rn");
    let fred = korm::item::<User>(&source)
        .load(fred_rn.clone())
        .get()
        .await
        .expect("fred")
        .into_data();
    let car = korm::item::<Car>(&source)
        .load(car_rn.clone())
        .get()
        .await
        .expect("car")
        .into_data();
    source.close().await;

    let dir = tempfile::tempdir().expect("temp dir");
    let dst = dir.path().join("rs.sqlite");
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(&dst))
        .open()
        .await
        .expect("open");
    korm::item::<User>(&pool)
        .from_data(fred_rn, fred)
        .expect("floating")
        .create()
        .await
        .expect("create fred");
    korm::item::<Car>(&pool)
        .from_data(car_rn, car)
        .expect("floating")
        .create()
        .await
        .expect("create car");
    pool.close().await;

    for table in ["__items__users__freetier", "__items__cars__suv"] {
        assert_eq!(
            columns(&dst, table),
            columns(&src, table),
            "columns of {table}"
        );
        assert_eq!(
            indexes(&dst, table),
            indexes(&src, table),
            "indexes of {table}"
        );
    }
    // The unique fingerprints are byte-identical to korm 1.5's.
    let fingerprint = |path: &std::path::Path| -> String {
        rusqlite::Connection::open(path)
            .expect("open")
            .query_row(
                "SELECT \"__korm_unique__email\" FROM \"__items__users__freetier\" WHERE \"username\" = 'freddie'",
                [],
                |r| r.get(0),
            )
            .expect("fingerprint")
    };
    assert_eq!(fingerprint(&dst), fingerprint(&src));
}
