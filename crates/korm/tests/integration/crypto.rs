//! Encryption against korm 1.5's fixtures on every layer, and the leak test: secrets written
//! through korm are nowhere in the SQLite files or the PostgreSQL / MariaDB dumps.

use std::process::{Command, Stdio};

use korm::{Encrypted, Password, eq};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{fixtures, manifest};
use crate::support::{self, Server, TestDatabase};

fn install_test_keys() {
    let current = korm::crypto::EncryptionKey::from_hex(&"a1".repeat(32)).expect("fixture key");
    let old = korm::crypto::EncryptionKey::from_hex(&"b2".repeat(32)).expect("old key");
    korm::crypto::install(korm::crypto::KeyRing::new(current).with_old_key(old));
}

#[derive(Debug, Serialize, Deserialize)]
struct FixtureUser {
    username: String,
    password: Password,
    ssn: Encrypted<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<Encrypted<Value>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FixtureCar {
    year: i64,
    #[serde(rename = "registrationNumber")]
    registration_number: Encrypted<String>,
}

fn rn<T>(s: &str) -> korm::Rn<T> {
    s.parse().expect("rn")
}

/// The korm 1.5 envelope fields, in korm 1.5's order.
const KORM_1_5_FIELDS: [&str; 6] = [
    "__ENCRYPTED__",
    "type",
    "value",
    "dataType",
    "iv",
    "authTag",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cardb_secrets_decrypt_verify_and_reencrypt_on_commit() {
    install_test_keys();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cardb.sqlite");
    std::fs::copy(fixtures().join("cardb.sqlite"), &path).expect("copy fixture");
    let pool = korm::pool()
        .layer("cardb", korm::layers::sqlite(&path))
        .open()
        .await
        .expect("open");
    let m = manifest("manifest.json");
    assert_eq!(m["encryptionKeyHex"], "a1".repeat(32));
    let users = korm::item::<FixtureUser>(&pool);
    for who in ["fred", "barney"] {
        let e = &m["items"][who];
        let item = users
            .load(rn(e["rn"].as_str().expect("rn")))
            .get()
            .await
            .expect("load");
        assert_eq!(
            item.data().ssn.reveal(),
            e["ssn"].as_str().expect("ssn"),
            "{who}"
        );
        assert!(
            item.data()
                .password
                .verify(e["password"].as_str().expect("pw")),
            "{who}"
        );
        assert!(!item.data().password.verify("wilma"));
        if let Some(profile) = e.get("profile") {
            assert_eq!(
                item.data().profile.as_ref().expect("profile").reveal(),
                profile
            );
        }
    }
    let car = &m["items"]["car"];
    let loaded = korm::item::<FixtureCar>(&pool)
        .load(rn(car["rn"].as_str().expect("rn")))
        .get()
        .await
        .expect("car");
    assert_eq!(
        loaded.data().registration_number.reveal(),
        car["registrationNumber"].as_str().expect("reg")
    );
    // In-memory filters over korm 1.5's envelopes.
    let found = users
        .query(rn("[rn]:users:freetier:*"))
        .filter(eq("ssn", "219-09-9999"))
        .get()
        .await
        .expect("query");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].data().username, "barney");

    // A commit re-encrypts with the current key: korm 1.5's fields plus a key id.
    let fred = users
        .load(rn(m["items"]["fred"]["rn"].as_str().expect("rn")))
        .get()
        .await
        .expect("fred");
    let fred_rn = fred.rn().clone();
    fred.update(|u| u.username = "freddie2".into())
        .commit()
        .await
        .expect("commit");
    let conn = rusqlite::Connection::open(&path).expect("rusqlite");
    let (ssn, password): (String, String) = conn
        .query_row(
            "SELECT ssn, password FROM __items__users__freetier WHERE rnId = ?1",
            [fred_rn.id().expect("id")],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("raw row");
    let ssn: Value = serde_json::from_str(&ssn).expect("envelope");
    let keys: Vec<&str> = ssn
        .as_object()
        .expect("object")
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(&keys[..6], &KORM_1_5_FIELDS[..]);
    assert_eq!(keys[6], "keyId");
    let ring = korm::crypto::key_ring().expect("ring");
    assert_eq!(ssn["keyId"], ring.current_key_id());
    assert_eq!(ssn["dataType"], "string");
    assert_eq!(
        ring.decrypt::<String>(&ssn).expect("decrypt"),
        "078-05-1120"
    );
    // The password envelope is korm 1.5's, unchanged.
    let password: Value = serde_json::from_str(&password).expect("envelope");
    assert_eq!(password["type"], "password");
    assert!(
        password["value"]
            .as_str()
            .expect("phc")
            .starts_with("$argon2id$v=19$m=65536,t=3,p=1$")
    );
    pool.close().await;
}

/// New passwords hash at least as strongly as korm 1.5's, in its envelope.
#[test]
fn new_passwords_use_korm_1_5_parameters() {
    let pw = Password::new("yabba-dabba-doo").expect("hash");
    let stored = serde_json::to_value(&pw).expect("json");
    assert_eq!(stored["__ENCRYPTED__"], true);
    assert_eq!(stored["type"], "password");
    assert_eq!(stored["dataType"], "string");
    assert!(
        pw.phc().starts_with("$argon2id$v=19$m=65536,t=3,p=1$"),
        "{}",
        pw.phc()
    );
    assert!(pw.verify("yabba-dabba-doo"));
}

async fn load_postgres_dump(db: &TestDatabase) {
    let status = Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
        .arg(fixtures().join("postgres.sql"))
        .stdout(Stdio::null())
        .status()
        .expect("run psql");
    assert!(status.success(), "psql could not load postgres.sql");
}

fn load_mysql_dump(db: &TestDatabase) {
    let dump = std::fs::read(fixtures().join("mysql.sql")).expect("read mysql.sql");
    let mut child = Command::new("mariadb")
        .args(["--protocol=tcp", "-h", "127.0.0.1", "-uroot", &db.name])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run the mariadb client");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&dump)
            .expect("feed the dump");
    }
    assert!(
        child.wait().expect("mariadb exits").success(),
        "loading mysql.sql failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fixture_secrets_decrypt_and_verify() {
    install_test_keys();
    let Some(db) = support::create(Server::Postgres).await else {
        return;
    };
    load_postgres_dump(&db).await;
    let m = manifest("manifest-sql.json");
    let m = &m["postgres.sql"];
    let pool = korm::pool()
        .layer(
            m["layer"].as_str().expect("layer"),
            korm::layers::postgres(db.url.clone()),
        )
        .open()
        .await
        .expect("open");
    let users = korm::item::<FixtureUser>(&pool);
    let fred = users
        .load(rn(m["fred"].as_str().expect("rn")))
        .get()
        .await
        .expect("fred");
    assert_eq!(fred.data().ssn.reveal(), m["ssn"].as_str().expect("ssn"));
    assert!(
        fred.data()
            .password
            .verify(m["password"].as_str().expect("pw"))
    );
    let found = users
        .query(rn("[rn][from::userdb]:users:freetier:*"))
        .filter(eq("ssn", m["ssn"].as_str().expect("ssn")))
        .get()
        .await
        .expect("query");
    assert_eq!(found.len(), 1);
    fred.update(|u| u.username = "fred2".into())
        .commit()
        .await
        .expect("commit");
    let again = users
        .load(rn(m["fred"].as_str().expect("rn")))
        .get()
        .await
        .expect("fred");
    assert_eq!(again.data().ssn.reveal(), m["ssn"].as_str().expect("ssn"));
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_fixture_secret_decrypts() {
    install_test_keys();
    let Some(db) = support::create(Server::MySql).await else {
        return;
    };
    load_mysql_dump(&db);
    let m = manifest("manifest-sql.json");
    let m = &m["mysql.sql"];
    #[derive(Debug, Serialize, Deserialize)]
    struct Doc {
        title: String,
        secret: Encrypted<Value>,
    }
    let pool = korm::pool()
        .layer("docsdb", korm::layers::mysql(db.url.clone()))
        .open()
        .await
        .expect("open");
    let docs = korm::item::<Doc>(&pool);
    let doc = docs
        .load(rn(m["doc"].as_str().expect("rn")))
        .get()
        .await
        .expect("doc");
    assert_eq!(doc.data().secret.reveal(), &m["secret"]);
    let collection = m["doc"].as_str().expect("rn");
    let collection = format!("{}*", &collection[..collection.rfind(':').expect("id") + 1]);
    let found = docs
        .query(rn(&collection))
        .filter(eq("secret.price", 100000))
        .get()
        .await
        .expect("query");
    assert_eq!(found.len(), 1);
    pool.close().await;
}

#[derive(Debug, Serialize, Deserialize)]
struct Leaky {
    username: String,
    ssn: Encrypted<String>,
    profile: Encrypted<Value>,
    password: Password,
}

const CANARIES: [&str; 4] = [
    "CANARY-SSN-5f1e",
    "CANARY-FOOD-77ab",
    "CANARY-PET-09cd",
    "CANARY-PASSWORD-3c2a",
];

/// Creates, commits and deletes items holding the canaries, through `pool`.
async fn write_canaries(pool: &korm::Pool, collection: &str) {
    let users = korm::item::<Leaky>(pool);
    let make = |n: usize| Leaky {
        username: format!("user{n}"),
        ssn: Encrypted::new(format!("{}-{n}", CANARIES[0])),
        profile: Encrypted::new(serde_json::json!({"food": CANARIES[1], "pets": [CANARIES[2]]})),
        password: Password::new(CANARIES[3]).expect("hash"),
    };
    let mut items = Vec::new();
    for n in 0..3 {
        items.push(
            users
                .from_data(rn(collection), make(n))
                .expect("floating")
                .create()
                .await
                .expect("create"),
        );
    }
    let first = items.remove(0);
    first
        .update(|u| *u.ssn.reveal_mut() = format!("{}-changed", CANARIES[0]))
        .commit()
        .await
        .expect("commit");
    items.remove(0).delete().await.expect("delete");
    // Reads (with an in-memory filter) leave nothing behind either.
    let found = users
        .query(rn(collection))
        .filter(eq("ssn", format!("{}-2", CANARIES[0])))
        .get()
        .await
        .expect("query");
    assert_eq!(found.len(), 1);
}

fn hits(haystack: &[u8]) -> Vec<&'static str> {
    CANARIES
        .iter()
        .copied()
        .filter(|c| haystack.windows(c.len()).any(|w| w == c.as_bytes()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cleartext_in_sqlite_postgres_or_mariadb() {
    install_test_keys();
    // SQLite: every byte of the database, its WAL and shared-memory files.
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite(dir.path().join("db.sqlite")))
        .open()
        .await
        .expect("open sqlite");
    write_canaries(&pool, "[rn]:users:freetier:*").await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        bytes.extend(std::fs::read(entry.expect("entry").path()).expect("read file"));
    }
    pool.close().await;
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        bytes.extend(std::fs::read(entry.expect("entry").path()).expect("read file"));
    }
    assert!(bytes.len() > 4096, "the files were read");
    assert_eq!(
        hits(&bytes),
        Vec::<&str>::new(),
        "cleartext in the SQLite files"
    );

    // PostgreSQL: a full pg_dump of the database.
    if let Some(db) = support::create(Server::Postgres).await {
        let pool = korm::pool()
            .layer("db", korm::layers::postgres(db.url.clone()))
            .open()
            .await
            .expect("open postgres");
        write_canaries(&pool, "[rn]:users:freetier:*").await;
        pool.close().await;
        let out = Command::new("pg_dump")
            .args(["-d", &db.url])
            .output()
            .expect("run pg_dump");
        assert!(out.status.success(), "pg_dump failed");
        assert!(String::from_utf8_lossy(&out.stdout).contains("__ENCRYPTED__"));
        assert_eq!(
            hits(&out.stdout),
            Vec::<&str>::new(),
            "cleartext in pg_dump"
        );
    }

    // MariaDB: a full dump of the database.
    if let Some(db) = support::create(Server::MySql).await {
        let pool = korm::pool()
            .layer("db", korm::layers::mysql(db.url.clone()))
            .open()
            .await
            .expect("open mysql");
        write_canaries(&pool, "[rn]:users:freetier:*").await;
        pool.close().await;
        let out = Command::new("mariadb-dump")
            .args(["--protocol=tcp", "-h", "127.0.0.1", "-uroot", &db.name])
            .output()
            .expect("run mariadb-dump");
        assert!(out.status.success(), "mariadb-dump failed");
        assert!(String::from_utf8_lossy(&out.stdout).contains("__ENCRYPTED__"));
        assert_eq!(
            hits(&out.stdout),
            Vec::<&str>::new(),
            "cleartext in mariadb-dump"
        );
    }
}

/// Two pools in one process, each with its own key ring (#18): each seals with its own key
/// (the envelope names it), opens only its own data, and never touches the process ring; the
/// same model serialized by the application shows `"<encrypted>"`, never the cleartext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_hold_two_keys_and_models_serialize_redacted() {
    use korm::crypto::{EncryptionKey, KeyRing};
    #[derive(Debug, Serialize, Deserialize)]
    struct Patient {
        name: String,
        ssn: Encrypted<String>,
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (file_a, file_b) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"));
    let (hex_a, hex_b) = ("c3".repeat(32), "d4".repeat(32));
    let ring = |hex: &str| KeyRing::new(EncryptionKey::from_hex(hex).expect("key"));
    let open = |file: std::path::PathBuf, hex: String| async move {
        korm::pool()
            .layer("clinic", korm::layers::sqlite(file))
            .key_ring(ring(&hex))
            .open()
            .await
            .expect("open")
    };
    let (a, b) = (
        open(file_a.clone(), hex_a.clone()).await,
        open(file_b.clone(), hex_b.clone()).await,
    );
    let collection = || rn::<Patient>("[rn]:patients:open:*");
    let mut made = Vec::new();
    for (pool, ssn) in [(&a, "111-11-1111"), (&b, "222-22-2222")] {
        let item = korm::item::<Patient>(pool)
            .from_data(
                collection(),
                Patient {
                    name: "wilma".into(),
                    ssn: Encrypted::new(ssn.into()),
                },
            )
            .expect("item")
            .create()
            .await
            .expect("create");
        // The application's own serialization: redacted, no key ring involved.
        let shown = serde_json::to_string(item.data()).expect("json");
        assert_eq!(shown, r#"{"name":"wilma","ssn":"<encrypted>"}"#);
        made.push(item.rn().clone());
    }
    for (pool, rn, ssn) in [(&a, &made[0], "111-11-1111"), (&b, &made[1], "222-22-2222")] {
        let loaded = korm::item::<Patient>(pool)
            .load(rn.clone())
            .get()
            .await
            .expect("load");
        assert_eq!(loaded.data().ssn.reveal(), ssn);
        let found = korm::item::<Patient>(pool)
            .query(collection())
            .filter(eq("ssn", ssn))
            .get()
            .await
            .expect("filter on an encrypted field");
        assert_eq!(
            found.len(),
            1,
            "the residual filter decrypts with the pool's ring"
        );
        let counted = korm::item::<Patient>(pool)
            .query(collection())
            .filter(eq("ssn", ssn))
            .count()
            .await
            .expect("count on an encrypted field");
        assert_eq!(counted, 1);
        use futures_util::StreamExt as _;
        let streamed: Vec<_> = korm::item::<Patient>(pool)
            .query(collection())
            .stream_read_only()
            .collect()
            .await;
        assert_eq!(streamed.len(), 1);
        let read = streamed
            .into_iter()
            .next()
            .expect("one")
            .expect("decrypted");
        assert_eq!(read.data().ssn.reveal(), ssn);
    }
    // A commit that leaves the secret alone leaves its envelope alone: the field-level diff
    // opens it with the pool's ring (the process ring would see a foreign key and re-seal).
    let stored_ssn = |file: &std::path::Path| -> String {
        let conn = rusqlite::Connection::open(file).expect("sqlite");
        conn.query_row("select ssn from __items__patients__open", [], |r| r.get(0))
            .expect("row")
    };
    let before = stored_ssn(&file_a);
    let loaded = korm::item::<Patient>(&a)
        .load(made[0].clone())
        .get()
        .await
        .expect("load");
    loaded
        .update(|p| p.name = "wilma f.".into())
        .commit()
        .await
        .expect("commit");
    assert_eq!(
        stored_ssn(&file_a),
        before,
        "an unchanged secret is not sealed again"
    );
    a.close().await;
    b.close().await;
    // Each file's envelope names its pool's key.
    for (file, hex) in [(&file_a, &hex_a), (&file_b, &hex_b)] {
        let conn = rusqlite::Connection::open(file).expect("sqlite");
        let stored: String = conn
            .query_row("select ssn from __items__patients__open", [], |r| r.get(0))
            .expect("row");
        let envelope: Value = serde_json::from_str(&stored).expect("envelope");
        assert_eq!(envelope["keyId"], Value::from(ring(hex).current_key_id()));
    }
    // A's data under B's key: refused with a typed error.
    let stranger = open(file_a, hex_b).await;
    let refused = korm::item::<Patient>(&stranger)
        .load(made[0].clone())
        .get()
        .await;
    assert!(
        matches!(refused, Err(korm::Error::Decode { .. })),
        "{refused:?}"
    );
    stranger.close().await;
}
