//! RNs that point nowhere this pool can go: an unknown layer, a depot RN given to the item
//! API, a collection where an item is needed. Each is a typed error and nothing is written.

use korm::{Error, Rn};
use serde::{Deserialize, Serialize};

use crate::{Db, rn};

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

async fn an_rn_naming_a_layer_the_pool_lacks_is_unknown_layer(db: &Db) {
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
    assert_no_table(db).await;
}

async fn a_depot_rn_given_to_the_item_api_is_wrong_rn_form(db: &Db) {
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
    assert_no_table(db).await;
}

async fn a_collection_rn_to_load_and_an_item_rn_to_query_are_wrong_rn_form(db: &Db) {
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
}

/// Two layers of the backend (the test's storage and a second one: another file, another
/// server database, another in-memory database): an RN naming no layer is refused before
/// anything is written to either.
async fn an_rn_with_a_missing_layer_in_a_two_layer_pool_writes_nowhere(db: &Db) {
    let Some(other) = (match db.backend {
        crate::Backend::SqliteFile => crate::sqlite_file().await,
        crate::Backend::SqliteFileNormal => crate::sqlite_file_normal().await,
        crate::Backend::SqliteMemory => crate::sqlite_memory().await,
        crate::Backend::Postgres => crate::postgres().await,
        crate::Backend::MySql => crate::mysql().await,
    }) else {
        return;
    };
    let pool = korm::pool()
        .layer("a", db.layer())
        .layer("b", other.layer())
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
    for (layer, db) in [("a", db), ("b", &other)] {
        if let Some(raw) = db.raw() {
            assert!(raw.tables().await.is_empty(), "layer {layer}");
        }
    }
    other.close().await;
}

async fn a_closed_pool_refuses_every_operation(db: &Db) {
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
    if let Some(raw) = db.raw() {
        assert!(raw.tables().await.is_empty());
    }
}

/// No table exists (through the second connection where the backend has one; korm reads no
/// item in the collection everywhere).
async fn assert_no_table(db: &Db) {
    if let Some(raw) = db.raw() {
        assert!(raw.tables().await.is_empty());
    }
    let none = korm::item::<Car>(&db.pool)
        .query(rn("[rn]:cars:suv:*"))
        .get()
        .await
        .expect("query");
    assert!(none.is_empty());
}

crate::on_backends!(
    an_rn_naming_a_layer_the_pool_lacks_is_unknown_layer,
    a_depot_rn_given_to_the_item_api_is_wrong_rn_form,
    a_collection_rn_to_load_and_an_item_rn_to_query_are_wrong_rn_form,
    an_rn_with_a_missing_layer_in_a_two_layer_pool_writes_nowhere,
    a_closed_pool_refuses_every_operation,
);
