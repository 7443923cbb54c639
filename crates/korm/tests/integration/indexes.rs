//! Declared indexes are in the database's catalog: a pool opened later on the same database
//! uses them without declaring them again, on SQLite, PostgreSQL and MariaDB.

use korm::{IndexKind, eq};
use serde_json::{Map, Value, json};

use crate::support::{self, Server};

const ITEMS: &str = "[rn]:scale:shared:*";

async fn seed_and_declare(pool: &korm::Pool) {
    let handle = korm::item::<Map<String, Value>>(pool);
    let mut tx = korm::tx(pool);
    for n in 0..600 {
        let mut data = Map::new();
        data.insert("n".into(), json!(n));
        data.insert("meta".into(), json!({"tier": format!("tier{n}")}));
        tx.create(handle.from_data(ITEMS.parse().unwrap(), data).unwrap());
    }
    tx.persist().await.expect("seed");
    let collection: korm::Rn<Map<String, Value>> = ITEMS.parse().unwrap();
    korm::declare_index(pool, &collection, "meta.tier", IndexKind::Text)
        .await
        .expect("declare");
}

/// The plan and the result of the indexed filter, from a pool that did not declare it.
async fn check_other_pool(pool: &korm::Pool) {
    let query = || {
        korm::item::<Map<String, Value>>(pool)
            .query(ITEMS.parse().unwrap())
            .filter(eq("meta.tier", "tier42"))
    };
    let plan = query().explain().await.expect("explain");
    assert!(plan.contains("korm_ix_"), "{plan}");
    let found = query().get().await.expect("query");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].data()["n"], 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_index_is_seen_by_another_pool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let open = || async {
        korm::pool()
            .layer("db", korm::layers::sqlite(path.clone()))
            .open()
            .await
            .expect("open")
    };
    let first = open().await;
    seed_and_declare(&first).await;
    let second = open().await;
    check_other_pool(&second).await;
    first.close().await;
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_indexes_are_seen_by_another_pool() {
    for server in [Server::Postgres, Server::MySql] {
        let Some(db) = support::create(server).await else {
            return;
        };
        let open = || async {
            let layer: korm::LayerSpec = match server {
                Server::Postgres => korm::layers::postgres(db.url.clone()).into(),
                Server::MySql => korm::layers::mysql(db.url.clone()).into(),
            };
            korm::pool().layer("db", layer).open().await.expect("open")
        };
        let first = open().await;
        seed_and_declare(&first).await;
        let second = open().await;
        check_other_pool(&second).await;
        first.close().await;
        second.close().await;
    }
}
