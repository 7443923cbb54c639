//! References across layers (X1-X4, Q4, K1): SQLite, PostgreSQL and MariaDB in one pool,
//! batched lookups counted per layer, filters through references into another database,
//! cascades into another database and their undo.

use korm::{Error, Pool, Ref, Rn, SortOrder, Unique, eq, gt, not};
use serde::{Deserialize, Serialize};

use super::support::{self, Server, TestDatabase};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct City {
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    username: Unique<String>,
    age: i64,
    home: Ref<City>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Car {
    year: i64,
    owner: Ref<User>,
}

fn rn<T>(text: &str) -> Rn<T> {
    text.parse().expect("valid rn")
}

/// A pool of SQLite (cars), PostgreSQL (users) and MariaDB (cities).
async fn three_backends() -> Option<(Pool, tempfile::TempDir, TestDatabase, TestDatabase)> {
    let (Some(pg), Some(my)) = (
        support::create(Server::Postgres).await,
        support::create(Server::MySql).await,
    ) else {
        return None; // a loud skip line was printed (outside scripts/test)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = korm::pool()
        .layer(
            "cardb",
            korm::layers::sqlite(dir.path().join("cars.sqlite")),
        )
        .layer("userdb", korm::layers::postgres(pg.url.clone()))
        .layer("geodb", korm::layers::mysql(my.url.clone()))
        .open()
        .await
        .expect("open three backends");
    Some((pool, dir, pg, my))
}

async fn seed(pool: &Pool, users: usize, cars: usize) -> (Vec<Rn<User>>, Vec<Rn<Car>>) {
    let city = korm::item::<City>(pool)
        .from_data(
            rn("[rn][from::geodb]:geo:city:*"),
            City {
                name: "Bedrock".into(),
            },
        )
        .unwrap()
        .create()
        .await
        .unwrap();
    let mut user_rns = Vec::with_capacity(users);
    for i in 0..users {
        let user = korm::item::<User>(pool)
            .from_data(
                rn("[rn][from::userdb]:users:free:*"),
                User {
                    username: Unique::new(format!("user{i:04}")),
                    age: 20 + i64::try_from(i % 50).unwrap(),
                    home: Ref::new(city.rn().clone()),
                },
            )
            .unwrap()
            .create()
            .await
            .unwrap();
        user_rns.push(user.rn().clone());
    }
    let mut tx = korm::tx(pool);
    for i in 0..cars {
        let car = korm::item::<Car>(pool)
            .from_data(
                rn("[rn][from::cardb]:cars:suv:*"),
                Car {
                    year: 2000 + i64::try_from(i % 25).unwrap(),
                    owner: Ref::new(user_rns[i % users].clone()),
                },
            )
            .unwrap();
        tx.create(car);
    }
    tx.persist().await.unwrap();
    let car_rns = korm::item::<Car>(pool)
        .query(rn("[rn][from::cardb]:cars:suv:*"))
        .get()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.rn().clone())
        .collect();
    (user_rns, car_rns)
}

/// X2: resolving 1,000 cars whose owners are 100 users in PostgreSQL costs one statement on
/// the user layer (and one on the city layer for `owner.home`), never one per car.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_is_batched_per_layer_and_table() {
    let Some((pool, _dir, _pg, _my)) = three_backends().await else {
        return;
    };
    seed(&pool, 100, 1000).await;
    let users_before = pool.read_statements("userdb").unwrap();
    let cities_before = pool.read_statements("geodb").unwrap();
    let cars_before = pool.read_statements("cardb").unwrap();
    let cars = korm::item::<Car>(&pool)
        .query(rn("[rn][from::cardb]:cars:suv:*"))
        .resolve(["owner.home"])
        .get()
        .await
        .unwrap();
    assert_eq!(cars.len(), 1000);
    assert!(cars.iter().all(|c| {
        let owner = c.data().owner.resolved().expect("owner resolved");
        owner.home.resolved().is_some_and(|h| h.name == "Bedrock")
    }));
    assert_eq!(pool.read_statements("userdb").unwrap() - users_before, 1);
    assert_eq!(pool.read_statements("geodb").unwrap() - cities_before, 1);
    assert_eq!(pool.read_statements("cardb").unwrap() - cars_before, 1);
    assert_eq!(pool.read_statements("nowhere"), None);
    pool.close().await;
}

/// Long id lists are chunked: 1,200 distinct owners in SQLite are fetched 500 at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_id_lists_are_fetched_in_chunks() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Owner {
        n: i64,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Thing {
        owner: Ref<Owner>,
    }
    let pool = korm::pool()
        .layer("a", korm::layers::sqlite_memory())
        .layer("b", korm::layers::sqlite_memory())
        .open()
        .await
        .unwrap();
    let mut tx = korm::tx(&pool);
    let mut owners = Vec::new();
    for n in 0..1200 {
        let owner = korm::item::<Owner>(&pool)
            .from_data(rn("[rn][from::b]:people:x:*"), Owner { n })
            .unwrap();
        owners.push(owner.rn().clone());
        tx.create(owner);
    }
    for owner in &owners {
        tx.create(
            korm::item::<Thing>(&pool)
                .from_data(
                    rn("[rn][from::a]:things:x:*"),
                    Thing {
                        owner: Ref::new(owner.clone()),
                    },
                )
                .unwrap(),
        );
    }
    tx.persist().await.unwrap();
    let before = pool.read_statements("b").unwrap();
    let things = korm::item::<Thing>(&pool)
        .query(rn("[rn][from::a]:things:x:*"))
        .resolve(["owner"])
        .get()
        .await
        .unwrap();
    assert_eq!(things.len(), 1200);
    assert!(things.iter().all(|t| t.data().owner.is_resolved()));
    assert_eq!(
        pool.read_statements("b").unwrap() - before,
        3,
        "500 ids per chunk"
    );
    pool.close().await;
}

/// Q4 / K1 across databases: the referenced layer is queried first, then the cars by
/// `owner IN (...)`; a sort through the reference and a two-hop filter into a third database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_sorts_through_references_into_other_databases() {
    let Some((pool, _dir, _pg, _my)) = three_backends().await else {
        return;
    };
    let (users, _) = seed(&pool, 10, 40).await;
    let cars = korm::item::<Car>(&pool);
    let coll = || rn::<Car>("[rn][from::cardb]:cars:suv:*");

    let users_before = pool.read_statements("userdb").unwrap();
    let found = cars
        .query(coll())
        .filter(eq("owner.username", "user0003"))
        .get()
        .await
        .unwrap();
    assert_eq!(found.len(), 4);
    assert!(found.iter().all(|c| c.data().owner.rn() == &users[3]));
    assert_eq!(
        pool.read_statements("userdb").unwrap() - users_before,
        1,
        "one filtered query on the referenced layer"
    );

    let found = cars
        .query(coll())
        .filter(not(eq("owner.username", "user0003")))
        .get()
        .await
        .unwrap();
    assert_eq!(found.len(), 36);

    // Two hops: car -> user (PostgreSQL) -> city (MariaDB).
    let found = cars
        .query(coll())
        .filter(eq("owner.home.name", "Bedrock"))
        .get()
        .await
        .unwrap();
    assert_eq!(found.len(), 40);
    let none = cars
        .query(coll())
        .filter(eq("owner.home.name", "Rock Vegas"))
        .get()
        .await
        .unwrap();
    assert!(none.is_empty());

    // Sort by the owner's age (PostgreSQL), then by year, with a limit after the sort.
    let sorted = cars
        .query(coll())
        .filter(gt("year", 2004))
        .sort_by("owner.age", SortOrder::Desc)
        .sort_by("year", SortOrder::Asc)
        .resolve(["owner"])
        .first_n(5)
        .await
        .unwrap();
    let keys: Vec<(i64, i64)> = sorted
        .iter()
        .map(|c| (c.data().owner.resolved().unwrap().age, c.data().year))
        .collect();
    let mut all: Vec<(i64, i64)> = cars
        .query(coll())
        .filter(gt("year", 2004))
        .resolve(["owner"])
        .get()
        .await
        .unwrap()
        .iter()
        .map(|c| (c.data().owner.resolved().unwrap().age, c.data().year))
        .collect();
    all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    assert_eq!(keys, all[..5]);
    pool.close().await;
}

/// X3 across databases: the cascade lands in PostgreSQL; when it fails there (a unique
/// violation), the car's own change in SQLite is undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascades_cross_databases_and_undo_together() {
    let Some((pool, dir, _pg, _my)) = three_backends().await else {
        return;
    };
    let (users, car_rns) = seed(&pool, 2, 2).await;
    let cars = korm::item::<Car>(&pool);
    let car = cars
        .load(car_rns[0].clone())
        .resolve(["owner"])
        .get()
        .await
        .unwrap();
    let owner_rn = car.data().owner.rn().clone();
    let car = car
        .update(|c| {
            c.year = 1999;
            c.owner.resolved_mut().unwrap().age = 77;
        })
        .commit()
        .await
        .unwrap();
    let owner = korm::item::<User>(&pool)
        .load(owner_rn.clone())
        .get()
        .await
        .unwrap();
    assert_eq!(owner.data().age, 77);

    // The owner column in SQLite holds the RN string, declared RN_REF_TEXT.
    let (stored, declared) = stored_owner(&dir.path().join("cars.sqlite"), car.rn());
    assert_eq!(stored, owner_rn.as_str());
    assert_eq!(declared, "RN_REF_TEXT");

    // A cascade that violates a unique field in PostgreSQL: the car's change is undone.
    let other = users.iter().find(|u| **u != owner_rn).unwrap();
    let other_name = korm::item::<User>(&pool)
        .load(other.clone())
        .get()
        .await
        .unwrap()
        .data()
        .username
        .to_string();
    let err = car
        .update(|c| {
            c.year = 1234;
            c.owner.resolved_mut().unwrap().username = Unique::new(other_name.clone());
        })
        .commit()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WriteFailed { source, .. } if matches!(**source, Error::UniqueViolation { .. })),
        "{err:?}"
    );
    let again = cars.load(car_rns[0].clone()).get().await.unwrap();
    assert_eq!(again.data().year, 1999, "the car's own change was undone");
    pool.close().await;
}

/// The stored owner column of a car and its declared type, read with rusqlite directly.
/// `retry_on_conflict` reloads an item resolving what its read resolved, so a change made
/// through a resolved reference (a cascade) is applied on the retry too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_resolves_again_what_the_load_resolved() {
    let Some((pool, _dir, _pg, _my)) = three_backends().await else {
        return;
    };
    let (users, car_rns) = seed(&pool, 1, 1).await;
    let cars = korm::item::<Car>(&pool);
    let load = || cars.load(car_rns[0].clone()).resolve(["owner"]).get();
    let owner_age = async || {
        let owner = korm::item::<User>(&pool).load(users[0].clone()).get().await;
        owner.expect("owner").data().age
    };
    // Another writer changes the owner after the car (and its owner) were read: the
    // cascade's condition fails once, and the retry reloads.
    let car = load().await.expect("load");
    korm::item::<User>(&pool)
        .load(users[0].clone())
        .get()
        .await
        .expect("owner")
        .update(|u| u.age = 50)
        .commit()
        .await
        .expect("other writer");
    let mut attempts = 0;
    car.retry_on_conflict(|c| {
        attempts += 1;
        if let Some(owner) = c.owner.resolved_mut() {
            owner.age += 1;
        }
    })
    .await
    .expect("retry");
    assert_eq!(attempts, 2);
    assert_eq!(owner_age().await, 51, "the cascade of the retry landed");

    pool.close().await;
}

fn stored_owner(path: &std::path::Path, car: &Rn<Car>) -> (String, String) {
    let conn = rusqlite::Connection::open(path).expect("open");
    let owner: String = conn
        .query_row(
            "SELECT \"owner\" FROM \"__items__cars__suv\" WHERE \"rnId\" = ?",
            [car.id().unwrap()],
            |row| row.get(0),
        )
        .expect("stored row");
    let declared: String = conn
        .query_row(
            "SELECT type FROM pragma_table_info('__items__cars__suv') WHERE name = 'owner'",
            [],
            |row| row.get(0),
        )
        .expect("column");
    (owner, declared)
}

/// References to a layer the pool does not have: left unresolved, an error in strict mode,
/// and matching nothing in a filter through them.
#[tokio::test]
async fn references_to_unknown_layers() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Person {
        name: String,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Pet {
        owner: Ref<Person>,
    }
    let pool = korm::pool()
        .layer("a", korm::layers::sqlite_memory())
        .layer("b", korm::layers::sqlite_memory())
        .open()
        .await
        .unwrap();
    let ghost: Rn<Person> = rn::<Person>("[rn][from::elsewhere]:people:x:*")
        .with_id(uuid::Uuid::new_v4())
        .unwrap();
    let pets = korm::item::<Pet>(&pool);
    let pet = pets
        .from_data(
            rn("[rn][from::a]:pets:x:*"),
            Pet {
                owner: Ref::new(ghost.clone()),
            },
        )
        .unwrap()
        .create()
        .await
        .unwrap();
    let loaded = pets
        .load(pet.rn().clone())
        .resolve(["owner"])
        .get()
        .await
        .unwrap();
    assert!(!loaded.data().owner.is_resolved());
    let err = pets
        .load(pet.rn().clone())
        .resolve(["owner"])
        .strict()
        .get()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::MissingReference { rn, reason } if rn == ghost.as_str() && reason.contains("elsewhere")),
        "{err:?}"
    );
    let none = pets
        .query(rn("[rn][from::a]:pets:x:*"))
        .filter(eq("owner.name", "x"))
        .get()
        .await
        .unwrap();
    assert!(none.is_empty());
    pool.close().await;
}

/// The SQLite layer caches the reference prefixes a filter through a reference needs; a
/// write by another connection (another pool on the same file) or by this one is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_prefix_cache_sees_other_connections() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Person {
        name: String,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Pet {
        owner: Ref<Person>,
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pets.sqlite");
    let open = || async {
        korm::pool()
            .layer("db", korm::layers::sqlite(&file))
            .open()
            .await
            .unwrap()
    };
    let (a, b) = (open().await, open().await);
    let person = |pool: &Pool, coll: &str, name: &str| {
        let item = korm::item::<Person>(pool)
            .from_data(rn(coll), Person { name: name.into() })
            .unwrap();
        async move { item.create().await.unwrap().rn().clone() }
    };
    let pet = |pool: &Pool, owner: Rn<Person>| {
        let item = korm::item::<Pet>(pool)
            .from_data(
                rn("[rn]:pets:dog:*"),
                Pet {
                    owner: Ref::new(owner),
                },
            )
            .unwrap();
        async move { item.create().await.unwrap() }
    };
    let fred = person(&a, "[rn]:people:a:*", "fred").await;
    pet(&a, fred).await;
    let count = |pool: Pool| async move {
        korm::item::<Pet>(&pool)
            .query(rn("[rn]:pets:dog:*"))
            .filter(eq("owner.name", "fred"))
            .get()
            .await
            .unwrap()
            .len()
    };
    assert_eq!(count(a.clone()).await, 1);
    // Another connection adds a pet whose owner is in another collection.
    let other_fred = person(&b, "[rn]:people:b:*", "fred").await;
    pet(&b, other_fred).await;
    assert_eq!(
        count(a.clone()).await,
        2,
        "a commit of another connection is seen"
    );
    // And this connection's own write.
    let third = person(&a, "[rn]:people:c:*", "fred").await;
    pet(&a, third).await;
    assert_eq!(count(a.clone()).await, 3, "an own write is seen");
    a.close().await;
    b.close().await;
}

/// The `owner IN (<list>)` form on PostgreSQL and MariaDB: cars there, users in SQLite, and a
/// filter on an encrypted field beside the reference (evaluated in memory) on the same layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_lists_on_server_layers() {
    let (Some(pg), Some(my)) = (
        support::create(Server::Postgres).await,
        support::create(Server::MySql).await,
    ) else {
        return;
    };
    #[derive(Debug, Serialize, Deserialize)]
    struct Person {
        name: String,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Pet {
        kind: String,
        owner: Ref<Person>,
    }
    let pool = korm::pool()
        .layer("people", korm::layers::sqlite_memory())
        .layer("pg", korm::layers::postgres(pg.url.clone()))
        .layer("my", korm::layers::mysql(my.url.clone()))
        .open()
        .await
        .unwrap();
    let mut owners = Vec::new();
    for name in ["fred", "barney", "wilma"] {
        let person = korm::item::<Person>(&pool)
            .from_data(
                rn("[rn][from::people]:people:x:*"),
                Person { name: name.into() },
            )
            .unwrap()
            .create()
            .await
            .unwrap();
        owners.push(person.rn().clone());
    }
    for layer in ["pg", "my"] {
        let coll = rn::<Pet>(&format!("[rn][from::{layer}]:pets:x:*"));
        for (i, owner) in owners.iter().enumerate() {
            for kind in ["dog", "cat"] {
                korm::item::<Pet>(&pool)
                    .from_data(
                        coll.clone(),
                        Pet {
                            kind: format!("{kind}{i}"),
                            owner: Ref::new(owner.clone()),
                        },
                    )
                    .unwrap()
                    .create()
                    .await
                    .unwrap();
            }
        }
        let pets = korm::item::<Pet>(&pool);
        let mut kinds: Vec<String> = pets
            .query(coll.clone())
            .filter(eq("owner.name", "barney"))
            .resolve(["owner"])
            .get()
            .await
            .unwrap()
            .into_iter()
            .map(|p| {
                assert_eq!(p.data().owner.resolved().unwrap().name, "barney");
                p.into_data().kind
            })
            .collect();
        kinds.sort();
        assert_eq!(kinds, ["cat1", "dog1"], "{layer}");
        let others = pets
            .query(coll.clone())
            .filter(korm::or([
                eq("owner.name", "fred"),
                korm::in_list("owner.name", ["wilma"]),
            ]))
            .get()
            .await
            .unwrap();
        assert_eq!(others.len(), 4, "{layer}");
        let none = pets
            .query(coll.clone())
            .filter(eq("owner.name", "nobody"))
            .get()
            .await
            .unwrap();
        assert!(none.is_empty(), "{layer}");
        let sorted = pets
            .query(coll)
            .sort_by("owner.name", SortOrder::Asc)
            .sort_by("kind", SortOrder::Desc)
            .get()
            .await
            .unwrap();
        let kinds: Vec<&str> = sorted.iter().map(|p| p.data().kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["dog1", "cat1", "dog0", "cat0", "dog2", "cat2"],
            "{layer}"
        );
    }
    pool.close().await;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Member {
    name: String,
    nickname: Option<String>,
    secret: Option<korm::Encrypted<String>>,
    meta: Option<serde_json::Value>,
    friend: Option<Ref<Member>>,
}

async fn members(spellings: &[&str]) -> (Pool, Vec<Rn<Member>>) {
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .open()
        .await
        .unwrap();
    let mut rns: Vec<Rn<Member>> = Vec::new();
    for (i, name) in ["m0", "m1", "m2", "m3"].iter().enumerate() {
        let member = korm::item::<Member>(&pool)
            .from_data(
                rn("[rn]:club:member:*"),
                Member {
                    name: (*name).into(),
                    nickname: None,
                    secret: Some(korm::Encrypted::new(format!("s{i}"))),
                    meta: Some(serde_json::json!({"k": i})),
                    friend: None,
                },
            )
            .unwrap()
            .create()
            .await
            .unwrap();
        rns.push(member.rn().clone());
    }
    // Each member's friend is the next one, each reference spelled another way.
    for i in 0..rns.len() {
        let next = &rns[(i + 1) % rns.len()];
        let spelled: Rn<Member> = format!(
            "{}:club:member:{}",
            spellings[i % spellings.len()],
            next.id().unwrap()
        )
        .parse()
        .unwrap();
        korm::item::<Member>(&pool)
            .load(rns[i].clone())
            .get()
            .await
            .unwrap()
            .update(|m| m.friend = Some(Ref::new(spelled)))
            .commit()
            .await
            .unwrap();
    }
    (pool, rns)
}

/// A filter through references whose RNs spell one collection several ways is planned once
/// per referenced table and hop, not once per spelling (no exponential fan-out).
#[tokio::test]
async fn spellings_of_one_collection_are_planned_once() {
    install_keys();
    let (pool, rns) = members(&["[rn]", "[rn][from::db]", "[rn][x::v1]", "[rn][y::v2]"]).await;
    let before = pool.read_statements("db").unwrap();
    let path = format!("friend{}.name", ".friend".repeat(7));
    let found = korm::item::<Member>(&pool)
        .query(rn("[rn]:club:member:*"))
        .filter(eq(&path, "m0"))
        .get()
        .await
        .unwrap();
    // Eight hops around a ring of four: each member's 8th friend is itself.
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].rn(), &rns[0]);
    let statements = pool.read_statements("db").unwrap() - before;
    // One prefix scan and one schema-checked plan per hop, and the select: linear in hops.
    assert!(
        statements <= 2 * 8 + 1,
        "{statements} statements for 8 hops"
    );
    // Resolution of two spellings of one RN in one batch resolves both (strict holds).
    let all = korm::item::<Member>(&pool)
        .query(rn("[rn]:club:member:*"))
        .resolve(["friend"])
        .strict()
        .get()
        .await
        .unwrap();
    assert!(
        all.iter()
            .all(|m| m.data().friend.as_ref().unwrap().is_resolved())
    );
    pool.close().await;
}

fn install_keys() {
    let key = korm::crypto::EncryptionKey::from_hex(&"a1".repeat(32)).expect("key");
    korm::crypto::install(korm::crypto::KeyRing::new(key));
}

/// Sorts through references keep the checks of SQL sorts, and follow several hops.
#[tokio::test]
async fn sorts_through_references_check_their_keys_and_follow_hops() {
    install_keys();
    let (pool, _) = members(&["[rn]"]).await;
    let members = korm::item::<Member>(&pool);
    let q = || members.query(rn("[rn]:club:member:*"));
    let err = q()
        .sort_by("friend.secret", SortOrder::Asc)
        .get()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidPath { .. }), "{err:?}");
    let err = q()
        .sort_by("friend.meta", SortOrder::Asc)
        .get()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NonScalarSort { .. }), "{err:?}");
    let ok = q()
        .sort_by("friend.meta", SortOrder::Asc)
        .allow_stringified_sort()
        .get()
        .await
        .unwrap();
    assert_eq!(ok.len(), 4);
    let err = q()
        .sort_by("friend.meta.k[*]", SortOrder::Asc)
        .get()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidPath { .. }), "{err:?}");
    // Two hops: m_i's friend's friend is m_(i+2).
    let names: Vec<String> = q()
        .sort_by("friend.friend.name", SortOrder::Desc)
        .get()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.into_data().name)
        .collect();
    assert_eq!(names, ["m1", "m0", "m3", "m2"]);
    pool.close().await;
}

/// Two changes of one item in a transaction (two changed copies, or the item and a changed
/// copy spelled another way) are refused, never applied one over the other.
#[tokio::test]
async fn a_transaction_never_writes_one_item_twice() {
    install_keys();
    let (pool, rns) = members(&["[rn][from::db]"]).await;
    let members = korm::item::<Member>(&pool);
    let load = |i: usize| members.load(rns[i].clone()).resolve(["friend"]).get();
    // Case A: two copies of m1 (the friend of m0), changed differently.
    let a = load(0).await.unwrap();
    let b = load(0).await.unwrap();
    let mut tx = korm::tx(&pool);
    tx.commit(a.update(|m| m.friend.as_mut().unwrap().resolved_mut().unwrap().name = "A".into()));
    tx.commit(b.update(|m| {
        m.friend.as_mut().unwrap().resolved_mut().unwrap().nickname = Some("B".into())
    }));
    let err = tx.persist().await.unwrap_err();
    assert!(matches!(err, Error::CascadeConflict { .. }), "{err:?}");
    // Case B: m1 committed directly, and m0's changed copy of it (spelled with a mod).
    let m1 = members.load(rns[1].clone()).get().await.unwrap();
    let m0 = load(0).await.unwrap();
    let mut tx = korm::tx(&pool);
    tx.commit(m1.update(|m| m.nickname = Some("direct".into())));
    tx.commit(m0.update(|m| m.friend.as_mut().unwrap().resolved_mut().unwrap().name = "x".into()));
    let err = tx.persist().await.unwrap_err();
    assert!(matches!(err, Error::CascadeConflict { .. }), "{err:?}");
    let m1 = members.load(rns[1].clone()).get().await.unwrap();
    assert_eq!(m1.data().name, "m1");
    assert_eq!(m1.data().nickname, None);
    pool.close().await;
}

/// Editing through resolved references with `try_update` and `Ref::get_mut` (#18): two hops
/// deep across PostgreSQL and MariaDB from a SQLite car in one line; a reference the read did
/// not resolve is `Error::NotResolved` naming it, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_update_edits_two_hops_and_refuses_unresolved_references() {
    let Some((pool, _dir, _pg, _my)) = three_backends().await else {
        return;
    };
    let (_, car_rns) = seed(&pool, 1, 1).await;
    let cars = korm::item::<Car>(&pool);
    let car = cars
        .load(car_rns[0].clone())
        .resolve(["owner", "owner.home"])
        .get()
        .await
        .expect("load");
    let city_rn = car.data().owner.get().expect("owner").home.rn().clone();
    car.try_update(|c| {
        c.owner.get_mut()?.home.get_mut()?.name = "Rock Vegas".into();
        c.owner.get_mut()?.age += 1;
        Ok(())
    })
    .expect("resolved")
    .commit()
    .await
    .expect("commit");
    let city = korm::item::<City>(&pool)
        .load(city_rn.clone())
        .get()
        .await
        .expect("city");
    assert_eq!(city.data().name, "Rock Vegas");

    // Resolved one hop only: the second is refused, naming the city, and nothing changes.
    let car = cars
        .load(car_rns[0].clone())
        .resolve(["owner"])
        .get()
        .await
        .expect("load");
    let refused = car.try_update(|c| {
        c.owner.get_mut()?.age = 1;
        c.owner.get_mut()?.home.get_mut()?.name = "Nowhere".into();
        Ok(())
    });
    match refused {
        Err(Error::NotResolved { rn }) => assert_eq!(rn, city_rn.to_string()),
        other => panic!("expected NotResolved, got {:?}", other.map(|_| ())),
    }
    let city = korm::item::<City>(&pool)
        .load(city_rn)
        .get()
        .await
        .expect("city");
    assert_eq!(city.data().name, "Rock Vegas");
    pool.close().await;
}
