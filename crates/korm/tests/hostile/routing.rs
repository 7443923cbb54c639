//! RNs that point nowhere this pool can go: an unknown layer, a depot RN given to the item
//! API, a collection where an item is needed. Each is a typed error and nothing is written.

use korm::{Error, Rn};
use serde::{Deserialize, Serialize};

use crate::{file_db, rn};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Car {
    make: String,
}

fn car() -> Car {
    Car {
        make: "Citroen".into(),
    }
}

const ID: &str = "0550ec20-c747-4ef9-87d4-613fe9d0c149";

#[tokio::test]
async fn an_rn_naming_a_layer_the_pool_lacks_is_unknown_layer() {
    let db = file_db().await;
    let cars = korm::item::<Car>(&db.pool);
    for collection in [
        "[rn][from::nodb]:cars:suv:*",
        "[rn][from::DB]:cars:suv:*",
        "[rn][from::db_]:cars:suv:*",
    ] {
        match cars.from_data(rn(collection), car()) {
            Err(Error::UnknownLayer { layer, layers, .. }) => {
                assert_ne!(layer, "db");
                assert_eq!(layers, "db");
            }
            other => panic!("{collection}: expected UnknownLayer, got {other:?}"),
        }
        let queried = cars.query(rn(collection)).get().await;
        assert!(
            matches!(queried, Err(Error::UnknownLayer { .. })),
            "{queried:?}"
        );
    }
    let item: Rn<Car> = rn(&format!("[rn][from::nodb]:cars:suv:{ID}"));
    let loaded = cars.load(item.clone()).get().await;
    assert!(
        matches!(loaded, Err(Error::UnknownLayer { .. })),
        "{loaded:?}"
    );
    let optional = cars.load(item).get_optional().await;
    assert!(
        matches!(optional, Err(Error::UnknownLayer { .. })),
        "{optional:?}"
    );
    assert!(db.tables().is_empty());
    db.pool.close().await;
}

#[tokio::test]
async fn a_depot_rn_given_to_the_item_api_is_wrong_rn_form() {
    let db = file_db().await;
    let cars = korm::item::<Car>(&db.pool);
    for depot in [
        "[rn][depot::files]:invoices:fred:invoice-001.txt",
        "[rn][depot::files]:invoices:*",
        "[rn][depot::db]:cars:suv:*",
        &format!("[rn][depot::db]:cars:suv:{ID}"),
    ] {
        let floating = cars.from_data(rn(depot), car());
        assert!(
            matches!(floating, Err(Error::WrongRnForm { .. })),
            "{depot}: {floating:?}"
        );
        let queried = cars.query(rn(depot)).get().await;
        assert!(
            matches!(queried, Err(Error::WrongRnForm { .. })),
            "{depot}: {queried:?}"
        );
        let first = cars.query(rn(depot)).first().await;
        assert!(
            matches!(first, Err(Error::WrongRnForm { .. })),
            "{depot}: {first:?}"
        );
        let loaded = cars.load(rn(depot)).get().await;
        assert!(
            matches!(loaded, Err(Error::WrongRnForm { .. })),
            "{depot}: {loaded:?}"
        );
    }
    assert!(db.tables().is_empty());
    db.pool.close().await;
}

#[tokio::test]
async fn a_collection_rn_to_load_and_an_item_rn_to_query_are_wrong_rn_form() {
    let db = file_db().await;
    let cars = korm::item::<Car>(&db.pool);
    cars.from_data(rn("[rn]:cars:suv:*"), car())
        .expect("floating")
        .create()
        .await
        .expect("create");
    let loaded = cars.load(rn("[rn]:cars:suv:*")).get().await;
    assert!(
        matches!(loaded, Err(Error::WrongRnForm { .. })),
        "{loaded:?}"
    );
    let optional = cars.load(rn("[rn]:cars:suv:*")).get_optional().await;
    assert!(
        matches!(optional, Err(Error::WrongRnForm { .. })),
        "{optional:?}"
    );
    let queried = cars.query(rn(&format!("[rn]:cars:suv:{ID}"))).get().await;
    assert!(
        matches!(queried, Err(Error::WrongRnForm { .. })),
        "{queried:?}"
    );
    let message = queried.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains(ID), "the error names the rn: {message}");
    db.pool.close().await;
}

#[tokio::test]
async fn an_rn_with_a_missing_layer_in_a_two_layer_pool_writes_nowhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = dir.path().join("a.sqlite");
    let b = dir.path().join("b.sqlite");
    let pool = korm::pool()
        .layer("a", korm::layers::sqlite(&a))
        .layer("b", korm::layers::sqlite(&b))
        .open()
        .await
        .expect("open");
    let cars = korm::item::<Car>(&pool);
    assert!(matches!(
        cars.from_data(rn("[rn]:cars:suv:*"), car()),
        Err(Error::LayerNotNamed { .. })
    ));
    assert!(matches!(
        cars.query(rn("[rn]:cars:suv:*")).get().await,
        Err(Error::LayerNotNamed { .. })
    ));
    assert!(matches!(
        cars.load(rn(&format!("[rn]:cars:suv:{ID}"))).get().await,
        Err(Error::LayerNotNamed { .. })
    ));
    pool.close().await;
    for path in [a, b] {
        let conn = rusqlite::Connection::open(&path).expect("open");
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .expect("count");
        assert_eq!(tables, 0, "{}", path.display());
    }
}

#[tokio::test]
async fn a_closed_pool_refuses_every_operation() {
    let db = file_db().await;
    let cars = korm::item::<Car>(&db.pool);
    let floating = cars
        .from_data(rn("[rn]:cars:suv:*"), car())
        .expect("floating");
    db.pool.close().await;
    assert!(matches!(floating.create().await, Err(Error::PoolClosed)));
    assert!(matches!(
        cars.query(rn("[rn]:cars:suv:*")).get().await,
        Err(Error::PoolClosed)
    ));
    assert!(matches!(
        cars.load(rn(&format!("[rn]:cars:suv:{ID}"))).get().await,
        Err(Error::PoolClosed)
    ));
    assert!(db.tables().is_empty());
}
