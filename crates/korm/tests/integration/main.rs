//! Integration tests: korm against real SQLite files, korm 1.5's fixtures, other connections
//! and processes holding the database, and pools of several layers.

mod backup;
mod compat;
mod concurrency;
mod conflicts;
mod crypto;
mod group_commit;
mod indexes;
mod locks;
mod meta;
mod mysql;
mod postgres;
mod references;
mod routing;
#[path = "../support/mod.rs"]
mod support;
mod wal;

pub use support::fixtures;

/// A JSON file of the fixtures.
pub fn manifest(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("read manifest");
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// The korm side of the shadow-without-index tests of `mysql.rs` and `postgres.rs`: two
/// accounts with a unique email on the database at `url`; `unhook` (raw SQL) drops the unique
/// index of the shadow column `__korm_unique__email` of `__items__accounts__main` and nulls
/// the shadows, giving the index's name. The field no longer counts as unique, so the next
/// unique write mends it: an old value is refused, a new one is taken, and `inspect` finds
/// the index back (its names) and every row's fingerprint (how many are set).
pub async fn assert_shadow_mended(
    url: &str,
    unhook: impl AsyncFnOnce() -> String,
    inspect: impl AsyncFnOnce() -> (Vec<String>, i64),
) {
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Account {
        email: korm::Unique<String>,
    }
    let create = async |email: &str| {
        let pool = korm::pool()
            .layer("db", korm::layers::from_url(url).expect("url"))
            .open()
            .await
            .expect("open");
        let created = korm::item::<Account>(&pool)
            .from_data(
                "[rn]:accounts:main:*".parse().expect("rn"),
                Account {
                    email: korm::Unique::new(email.to_owned()),
                },
            )
            .expect("floating")
            .create()
            .await
            .map(|_| ());
        pool.close().await;
        match created {
            Err(korm::Error::WriteFailed { source, .. }) => Err(*source),
            other => other,
        }
    };
    create("a@x").await.expect("a");
    create("b@x").await.expect("b");
    let index = unhook().await;
    let taken = create("a@x").await;
    assert!(
        matches!(&taken, Err(korm::Error::UniqueViolation { field, .. }) if field == "email"),
        "an old value was taken: {taken:?}"
    );
    // On PostgreSQL the refused write rolled its DDL back: this one mends.
    create("c@x").await.expect("a new value");
    let (indexes, filled) = inspect().await;
    assert_eq!(indexes, [index], "the index is back");
    assert_eq!(filled, 3, "the old rows have their fingerprint again");
}

/// SQLite: a shadow column without its unique index (korm 1.5, or a hand, may leave one) is
/// mended as on the servers.
#[tokio::test]
async fn sqlite_a_shadow_without_its_index_is_mended() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("accounts.sqlite");
    let url = format!("sqlite:{}", path.display());
    let unique_keys = "SELECT il.name FROM pragma_index_list('__items__accounts__main') AS il \
        WHERE il.\"unique\" AND (SELECT group_concat(name) FROM pragma_index_info(il.name)) \
        = '__korm_unique__email'";
    let connect = || rusqlite::Connection::open(&path).expect("open");
    let unhook = async || {
        let conn = connect();
        let index: String = conn
            .query_row(unique_keys, [], |r| r.get(0))
            .expect("the shadow's index");
        conn.execute(&format!("DROP INDEX \"{index}\""), [])
            .expect("drop the index");
        conn.execute(
            "UPDATE __items__accounts__main SET __korm_unique__email = NULL",
            [],
        )
        .expect("null the shadows");
        index
    };
    let inspect = async || {
        let conn = connect();
        let mut stmt = conn.prepare(unique_keys).expect("prepare");
        let indexes = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .expect("indexes")
            .collect::<Result<Vec<_>, _>>()
            .expect("indexes");
        let filled = conn
            .query_row(
                "SELECT COUNT(*) FROM __items__accounts__main \
                 WHERE __korm_unique__email IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .expect("count");
        (indexes, filled)
    };
    assert_shadow_mended(&url, unhook, inspect).await;
}
