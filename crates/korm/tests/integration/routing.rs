//! Pools of several layers: the `from` mod routes items; a missing or unknown one is an error.

use korm::{Error, Rn};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Car {
    make: String,
}

async fn two_layers(dir: &std::path::Path) -> korm::Pool {
    korm::pool()
        .layer("cardb", korm::layers::sqlite(dir.join("cars.sqlite")))
        .layer("userdb", korm::layers::sqlite_memory())
        .open()
        .await
        .expect("open")
}

#[tokio::test]
async fn items_go_to_the_layer_their_rn_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = two_layers(dir.path()).await;
    let cars = korm::item::<Car>(&pool);
    let in_cardb = cars
        .from_data(
            "[rn][from::cardb]:cars:suv:*".parse().expect("rn"),
            Car {
                make: "Citroen".into(),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    assert_eq!(in_cardb.rn().layer(), Some("cardb"));
    cars.from_data(
        "[rn][from::userdb]:cars:suv:*".parse().expect("rn"),
        Car {
            make: "Fiat".into(),
        },
    )
    .expect("floating")
    .create()
    .await
    .expect("create");
    let in_card: Vec<_> = cars
        .query("[rn][from::cardb]:cars:suv:*".parse().expect("rn"))
        .get()
        .await
        .expect("query")
        .into_iter()
        .map(|c| c.into_data().make)
        .collect();
    assert_eq!(in_card, ["Citroen"]);
    let in_user = cars
        .query("[rn][from::userdb]:cars:suv:*".parse().expect("rn"))
        .get()
        .await
        .expect("query");
    assert_eq!(in_user.len(), 1);
    assert_eq!(
        in_user[0].rn().layer(),
        Some("userdb"),
        "queried items keep the layer mod"
    );
    // The file really holds only the cardb car.
    let conn = rusqlite::Connection::open(dir.path().join("cars.sqlite")).expect("open");
    let count: i64 = conn
        .query_row("SELECT count(*) FROM \"__items__cars__suv\"", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(count, 1);
    pool.close().await;
}

#[tokio::test]
async fn a_missing_or_unknown_layer_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = two_layers(dir.path()).await;
    let cars = korm::item::<Car>(&pool);
    let missing = cars.from_data(
        "[rn]:cars:suv:*".parse().expect("rn"),
        Car { make: "x".into() },
    );
    match missing {
        Err(Error::LayerNotNamed { layers, .. }) => assert_eq!(layers, "cardb, userdb"),
        other => panic!("expected LayerNotNamed, got {other:?}"),
    }
    let unknown = cars
        .query("[rn][from::nodb]:cars:suv:*".parse().expect("rn"))
        .get()
        .await;
    match unknown {
        Err(e @ Error::UnknownLayer { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("nodb") && message.contains("cardb"),
                "{message}"
            );
        }
        other => panic!("expected UnknownLayer, got {other:?}"),
    }
    let item_rn: Rn<Car> = "[rn][from::nodb]:cars:suv:0550ec20-c747-4ef9-87d4-613fe9d0c149"
        .parse()
        .expect("rn");
    assert!(matches!(
        cars.load(item_rn).get().await,
        Err(Error::UnknownLayer { .. })
    ));
    pool.close().await;
}

#[tokio::test]
async fn a_single_layer_pool_takes_rns_with_or_without_from() {
    let pool = korm::pool()
        .layer("only", korm::layers::sqlite_memory())
        .open()
        .await
        .expect("open");
    let cars = korm::item::<Car>(&pool);
    let plain = cars
        .from_data(
            "[rn]:cars:suv:*".parse().expect("rn"),
            Car { make: "a".into() },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    assert_eq!(
        plain.rn().layer(),
        None,
        "a single-layer pool writes no from mod, as korm 1.5"
    );
    let named = cars
        .query("[rn][from::only]:cars:suv:*".parse().expect("rn"))
        .get()
        .await
        .expect("query");
    assert_eq!(named.len(), 1);
    let wrong = cars
        .query("[rn][from::other]:cars:suv:*".parse().expect("rn"))
        .get()
        .await;
    assert!(matches!(wrong, Err(Error::UnknownLayer { .. })));
    pool.close().await;
}

#[tokio::test]
async fn bad_pool_configurations_are_refused() {
    assert!(matches!(
        korm::pool().open().await,
        Err(Error::PoolConfig { .. })
    ));
    let twice = korm::pool()
        .layer("a", korm::layers::sqlite_memory())
        .layer("a", korm::layers::sqlite_memory())
        .open()
        .await;
    assert!(matches!(twice, Err(Error::PoolConfig { .. })));
    let bad = korm::pool()
        .layer("bad name]", korm::layers::sqlite_memory())
        .open()
        .await;
    assert!(
        matches!(bad, Err(Error::InvalidIdentifier { what: "layer", .. })),
        "{bad:?}"
    );
    let unopenable = korm::pool()
        .layer(
            "x",
            korm::layers::sqlite("/nonexistent-dir/deeper/db.sqlite"),
        )
        .open()
        .await;
    match unopenable {
        Err(Error::Database { kind, layer, .. }) => {
            assert_eq!(kind, korm::DbErrorKind::Connect);
            assert_eq!(layer, "x");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pool_spans_sqlite_postgres_and_mariadb() {
    use super::support::{self, Server};
    let (Some(pg), Some(my)) = (
        support::create(Server::Postgres).await,
        support::create(Server::MySql).await,
    ) else {
        return; // a loud skip line was printed (outside scripts/test)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = korm::pool()
        .layer(
            "cardb",
            korm::layers::sqlite(dir.path().join("cars.sqlite")),
        )
        .layer("userdb", korm::layers::postgres(pg.url.clone()))
        .layer("docsdb", korm::layers::mysql(my.url.clone()))
        .open()
        .await
        .expect("open a pool of three backends");
    let cars = korm::item::<Car>(&pool);
    for (layer, make) in [
        ("cardb", "Citroen"),
        ("userdb", "Fiat"),
        ("docsdb", "Volvo"),
    ] {
        let rn: Rn<Car> = format!("[rn][from::{layer}]:cars:suv:*")
            .parse()
            .expect("rn");
        let created = cars
            .from_data(rn, Car { make: make.into() })
            .expect("floating")
            .create()
            .await
            .unwrap_or_else(|e| panic!("create in {layer}: {e}"));
        assert_eq!(created.rn().layer(), Some(layer));
        let loaded = cars.load(created.rn().clone()).get().await.expect("load");
        assert_eq!(loaded.data().make, make);
    }
    // Each collection query goes to its own layer and sees only that layer's item.
    for (layer, make) in [
        ("cardb", "Citroen"),
        ("userdb", "Fiat"),
        ("docsdb", "Volvo"),
    ] {
        let rn: Rn<Car> = format!("[rn][from::{layer}]:cars:suv:*")
            .parse()
            .expect("rn");
        let found = cars.query(rn).get().await.expect("query");
        assert_eq!(found.len(), 1, "{layer}");
        assert_eq!(found[0].data().make, make, "{layer}");
        assert_eq!(found[0].rn().layer(), Some(layer));
    }
    let missing = cars.from_data(
        "[rn]:cars:suv:*".parse().expect("rn"),
        Car { make: "x".into() },
    );
    assert!(
        matches!(missing, Err(Error::LayerNotNamed { ref layers, .. }) if layers == "cardb, userdb, docsdb"),
        "{missing:?}"
    );
    pool.close().await;
}

/// Layers from URLs (`korm::layers::from_url`), and from sqlx pools a program already has: each
/// stores and reads back, and a URL's password never shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_open_from_urls_and_from_existing_pools() {
    use crate::support::{Server, create};
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cars.sqlite");
    let (Some(pg), Some(my)) = (create(Server::Postgres).await, create(Server::MySql).await) else {
        return;
    };
    let specs = [
        (
            "file",
            korm::layers::from_url(&format!("sqlite:{}", file.display())).expect("sqlite"),
        ),
        (
            "memory",
            korm::layers::from_url("sqlite::memory:").expect("memory"),
        ),
        ("pg", korm::layers::from_url(&pg.url).expect("postgres")),
        ("my", korm::layers::from_url(&my.url).expect("mysql")),
        (
            "pgpool",
            korm::layers::postgres_pool(sqlx::PgPool::connect_lazy(&pg.url).expect("pool")).into(),
        ),
        (
            "mypool",
            korm::layers::mysql_pool(sqlx::MySqlPool::connect_lazy(&my.url).expect("pool")).into(),
        ),
    ];
    let mut builder = korm::pool();
    for (name, spec) in specs {
        builder = builder.layer(name, spec);
    }
    let pool = builder.open().await.expect("open");
    for layer in ["file", "memory", "pg", "my", "pgpool", "mypool"] {
        let rn: Rn<Car> = format!("[rn][from::{layer}]:cars:suv:*")
            .parse()
            .expect("rn");
        let car = korm::item::<Car>(&pool)
            .from_data(rn.clone(), Car { make: layer.into() })
            .expect("floating")
            .create()
            .await
            .expect("create");
        let loaded = korm::item::<Car>(&pool).load(car.rn().clone()).get().await;
        assert_eq!(loaded.expect("load").into_data().make, layer);
    }
    pool.close().await;
    assert!(file.exists(), "the sqlite: url names the file");

    let shown = format!(
        "{:?}",
        korm::layers::from_url("mysql://u:s3cret@h/d").expect("spec")
    );
    assert!(
        !shown.contains("s3cret") && shown.contains("***"),
        "{shown}"
    );
    for bad in ["redis://cache", "s3cret-no-scheme", ""] {
        match korm::layers::from_url(bad) {
            Err(Error::PoolConfig { reason }) => {
                assert!(
                    !reason.contains("cache") && !reason.contains("s3cret"),
                    "{reason}"
                )
            }
            other => panic!("{bad}: expected a pool config error, got {other:?}"),
        }
    }
}

/// Typed collections (#18): a model bound to its layer and collection; a typo in the layer
/// or the names fails when the handle is made, never by creating a new table.
#[tokio::test]
async fn typed_collections_route_and_refuse_typos() {
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    struct Suv {
        make: String,
    }
    impl korm::Collected for Suv {
        const LAYER: &'static str = "cardb";
        const NAMESPACE: &'static str = "cars";
        const KIND: &'static str = "suv";
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = two_layers(dir.path()).await;
    let suvs = korm::collection::<Suv>(&pool).expect("collection");
    assert_eq!(suvs.rn().as_str(), "[rn][from::cardb]:cars:suv:*");
    let created = suvs
        .create(Suv {
            make: "Citroen".into(),
        })
        .await
        .expect("create");
    assert_eq!(created.rn().layer(), Some("cardb"));
    let id = created.rn().uuid().expect("uuid");
    let loaded = suvs.load(id).expect("rn").get().await.expect("load");
    assert_eq!(loaded.data(), created.data());
    let by_text = suvs
        .load(id.to_string())
        .expect("rn")
        .get()
        .await
        .expect("load");
    assert_eq!(by_text.rn(), created.rn());
    let all = suvs.query().get().await.expect("query");
    assert_eq!(all.len(), 1);
    // The same items through RN strings: one collection.
    let same = korm::item::<Suv>(&pool)
        .query("[rn][from::cardb]:cars:suv:*".parse().expect("rn"))
        .get()
        .await
        .expect("query");
    assert_eq!(same.len(), 1);

    let unknown = korm::collection_at::<Suv>(&pool, "carbd", "cars", "suv").expect_err("typo");
    assert!(
        matches!(&unknown, Error::UnknownLayer { layer, .. } if layer == "carbd"),
        "{unknown:?}"
    );
    let bad = korm::collection_at::<Suv>(&pool, "cardb", "Cars", "suv").expect_err("case");
    assert!(matches!(bad, Error::InvalidRn { .. }), "{bad:?}");
    let not_an_id = suvs.load("fred").expect_err("not a uuid");
    assert!(
        matches!(not_an_id, Error::InvalidRn { .. }),
        "{not_an_id:?}"
    );
    pool.close().await;
}
