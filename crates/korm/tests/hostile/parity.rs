//! Issue #13: korm 1.5 parity on a shared database and the hostile-input findings, one test
//! (or two) per finding, on every backend it concerns. Each test names the fix it guards in
//! its first comment line, and fails without that fix.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use korm::depots::{DepotFile, DepotFolder};
use korm::{Error, LockOptions, Ref, Rn, SortOrder, Unique, eq, in_list, like, lt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{Backend, Db, Sql, all_text, create, create_err, rn, stored};

type Doc = Map<String, Value>;

/// A map model from `json!({...})`.
fn doc(value: Value) -> Doc {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// The sorted `name` of every item a query of `collection` with `filter` finds.
async fn names(db: &Db, collection: &str, filter: korm::Filter) -> Vec<String> {
    let mut found: Vec<String> = korm::item::<Doc>(&db.pool)
        .query(rn(collection))
        .filter(filter)
        .get()
        .await
        .expect("query")
        .into_iter()
        .map(|i| i.data()["name"].as_str().expect("a name").to_owned())
        .collect();
    found.sort();
    found
}

// ---- 1. korm 1.5's integer columns --------------------------------------------------------

const NUMBERS: &str = "[rn]:numbers:narrow:*";
const NUMBERS_TABLE: &str = "__items__numbers__narrow";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Count {
    n: i64,
}

/// The integer column type korm creates by default, as the database reports it.
fn integer_type(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "integer",
        Backend::MySql => "int(11)",
        _ => "integer",
    }
}

async fn integers_use_korm_1_5_column_types_and_are_refused_outside_them(db: &Db) {
    // Guards #13 fix 1: korm 1.5's integer/INT columns, out-of-range integers refused naming the field.
    let item = create(&db.pool, NUMBERS, Count { n: 1 }).await;
    if let Some(raw) = db.raw() {
        let declared = raw.column_type(NUMBERS_TABLE, "n").await;
        assert_eq!(declared, integer_type(db.backend));
    }
    for n in [i64::from(i32::MAX), i64::from(i32::MIN)] {
        create(&db.pool, NUMBERS, Count { n }).await;
    }
    let beyond = [i64::from(i32::MAX) + 1, i64::from(i32::MIN) - 1, i64::MAX];
    for n in beyond {
        let attempt = korm::item::<Count>(&db.pool)
            .from_data(rn(NUMBERS), Count { n })
            .expect("floating")
            .create()
            .await;
        match (db.backend.integer_bits(), attempt) {
            (64, Ok(created)) => {
                let loaded = korm::item::<Count>(&db.pool)
                    .load(created.rn().clone())
                    .get()
                    .await
                    .expect("load");
                assert_eq!(loaded.data().n, n, "64-bit integers are exact");
            }
            (32, Err(error @ Error::Encode { .. })) => {
                let Error::Encode { what, reason } = &error else {
                    unreachable!()
                };
                assert!(what.contains("`n`"), "{what}");
                assert!(reason.contains("with_wide_integers"), "{reason}");
                assert!(!all_text(&error).contains(&n.to_string()), "{error:?}");
            }
            (bits, other) => panic!("{n} in a {bits}-bit column: {other:?}"),
        }
    }
    // A commit of an integer out of range changes nothing.
    let committed = item.update(|c| c.n = i64::MAX).commit().await;
    let expected_rows = if db.backend.integer_bits() == 32 {
        assert!(
            matches!(committed, Err(Error::Encode { .. })),
            "{committed:?}"
        );
        3
    } else {
        committed.expect("commit");
        6
    };
    assert_eq!(stored(&db.pool, NUMBERS).await, expected_rows);
    if let Some(raw) = db.raw() {
        assert_eq!(raw.count(NUMBERS_TABLE).await, expected_rows as i64);
    }
    // A collection whose first item is out of range: no row, and on PostgreSQL (DDL inside
    // the write's transaction) no table; MySQL's DDL commits on its own, so the empty table
    // stays there (the documented MySQL departure).
    if db.backend.integer_bits() == 32 {
        let error = create_err(&db.pool, "[rn]:numbers:fresh:*", Count { n: i64::MAX }).await;
        assert!(matches!(error, Error::Encode { .. }), "{error:?}");
        assert_eq!(stored(&db.pool, "[rn]:numbers:fresh:*").await, 0);
        let raw = db.raw().expect("a server has a second connection");
        let tables = raw.tables().await;
        match db.backend {
            Backend::Postgres => assert_eq!(tables, [NUMBERS_TABLE]),
            _ => assert_eq!(raw.count("__items__numbers__fresh").await, 0),
        }
    }
    // Wide integers are the server layers' explicit option; SQLite's are always 64-bit.
    match db.wide_layer() {
        Some(wide) => {
            let pool = korm::pool()
                .layer("db", wide)
                .open()
                .await
                .expect("open wide");
            let big = create(&pool, "[rn]:numbers:wide:*", Count { n: i64::MAX }).await;
            let loaded = korm::item::<Count>(&pool)
                .load(big.rn().clone())
                .get()
                .await
                .expect("load");
            assert_eq!(loaded.data().n, i64::MAX);
            let raw = db.raw().expect("a server has a second connection");
            let declared = raw.column_type("__items__numbers__wide", "n").await;
            assert!(declared.starts_with("bigint"), "{declared}");
            pool.close().await;
        }
        None => assert!(db.backend.is_sqlite()),
    }
}

// ---- 2. PostgreSQL's 63-byte names ---------------------------------------------------------

async fn long_collection_names_are_cut_as_postgres_cuts_them_and_never_merged(db: &Db) {
    // Guards #13 fix 2: PostgreSQL table names over 63 bytes cut like korm 1.5, the full name in the table comment refuses a second collection.
    let (first, second) = (
        long_collection('l', "first"),
        long_collection('l', "second"),
    );
    let a = create(&db.pool, &first.0, doc(json!({"name": "a"}))).await;
    let loaded = korm::item::<Doc>(&db.pool)
        .load(a.rn().clone())
        .get()
        .await
        .expect("load from a long-named collection");
    assert_eq!(loaded.data()["name"], "a");
    assert_eq!(names(db, &first.0, eq("name", "a")).await, ["a"]);
    // The second collection's item has a field the first's table lacks.
    let b = doc(json!({"name": "b", "title": "t"}));
    if db.backend == Backend::Postgres {
        let raw = db.raw().expect("second connection");
        let cut = &first.1[..63];
        assert_eq!(raw.tables().await, [cut]);
        let comment = raw
            .value(
                "SELECT obj_description(to_regclass(quote_ident($1)), 'pg_class')",
                &[cut.into()],
            )
            .await;
        assert_eq!(
            comment.as_deref(),
            Some(format!("korm collection {}", first.1).as_str())
        );
        // The second collection would share the table: refused, writing nothing.
        assert_second_is_refused(db, &second.0, b).await;
        assert_eq!(raw.tables().await, [cut]);
        assert_eq!(raw.columns(&first.1).await, ["rnId", "name"]);
        assert_eq!(raw.count(&first.1).await, 1);
    } else {
        assert_two_collections(db, &first, &second, b).await;
    }
    // A table another program (korm 1.5) made under the name the database uses for the
    // collection, without korm-rs's comment, is the collection's.
    let Some(raw) = db.raw() else { return };
    let (legacy, legacy_table) = long_collection('m', "legacy");
    let key = if raw.sql() == Sql::MySql {
        "VARCHAR(255)"
    } else {
        "TEXT"
    };
    raw.exec(
        &format!(
            "CREATE TABLE {} ({} {key} PRIMARY KEY, {} TEXT)",
            raw.t(&legacy_table),
            raw.q("rnId"),
            raw.q("name")
        ),
        &[],
    )
    .await;
    let id = "0550ec20-c747-4ef9-87d4-613fe9d0c149";
    raw.exec(
        &format!(
            "INSERT INTO {} ({}, {}) VALUES ({}, 'old')",
            raw.t(&legacy_table),
            raw.q("rnId"),
            raw.q("name"),
            raw.p(1)
        ),
        &[id.into()],
    )
    .await;
    let old: Rn<Doc> = rn(&legacy.replace('*', id));
    let loaded = korm::item::<Doc>(&db.pool)
        .load(old)
        .get()
        .await
        .expect("korm 1.5's table reads");
    assert_eq!(loaded.data()["name"], "old");
    create(&db.pool, &legacy, doc(json!({"name": "new", "title": "t"}))).await;
    assert_eq!(stored(&db.pool, &legacy).await, 2);
    if db.backend == Backend::Postgres {
        // Written by korm-rs, the table is claimed for the collection: another collection of
        // the same cut name is refused.
        let other = long_collection('m', "other").0;
        assert_second_is_refused(db, &other, doc(json!({"name": "x", "more": 1}))).await;
    }
}

async fn a_second_long_collection_of_the_same_fields_is_refused_too(db: &Db) {
    // Guards #13 fix 2: the comment refuses a second collection of the same cut name even when its fields fit the first's table.
    let (first, second) = (
        long_collection('l', "first"),
        long_collection('l', "second"),
    );
    create(&db.pool, &first.0, doc(json!({"name": "a"}))).await;
    let b = doc(json!({"name": "b"}));
    if db.backend == Backend::Postgres {
        assert_second_is_refused(db, &second.0, b).await;
        let raw = db.raw().expect("second connection");
        assert_eq!(raw.count(&first.1).await, 1);
        assert_eq!(names(db, &first.0, korm::not(eq("name", "x"))).await, ["a"]);
    } else {
        assert_two_collections(db, &first, &second, b).await;
    }
}

/// A collection whose table name passes 63 bytes (`__items__` + 60 `letter`s + `__` +
/// kind), and that table name: the first 63 bytes are the same for every kind.
fn long_collection(letter: char, kind: &str) -> (String, String) {
    let ns = letter.to_string().repeat(60);
    (
        format!("[rn]:{ns}:{kind}:*"),
        format!("__items__{ns}__{kind}"),
    )
}

/// On PostgreSQL, the collection `second` sharing a cut table name with another is refused
/// for writes and reads, and nothing is written.
async fn assert_second_is_refused(db: &Db, second: &str, data: Doc) {
    let error = create_err(&db.pool, second, data).await;
    assert!(
        matches!(error, Error::InvalidIdentifier { what: "table", .. }),
        "{error:?}"
    );
    let read = korm::item::<Doc>(&db.pool).query(rn(second)).get().await;
    assert!(
        matches!(read, Err(Error::InvalidIdentifier { .. })),
        "a read never sees the other collection's rows: {read:?}"
    );
}

/// On SQLite (whole names) and MySQL (names over 64 characters hashed), two collections of
/// long names are two tables.
async fn assert_two_collections(
    db: &Db,
    first: &(String, String),
    second: &(String, String),
    data: Doc,
) {
    create(&db.pool, &second.0, data).await;
    assert_eq!(names(db, &second.0, eq("name", "b")).await, ["b"]);
    assert_eq!(stored(&db.pool, &second.0).await, 1);
    assert_eq!(stored(&db.pool, &first.0).await, 1);
    if let Some(raw) = db.raw() {
        let mut expected = vec![raw.physical(&first.1), raw.physical(&second.1)];
        expected.sort();
        assert_eq!(raw.tables().await, expected);
    }
}

async fn column_names_over_the_servers_limit_are_refused_before_anything_is_written(db: &Db) {
    // Guards #13 fix 2: field names (and unique shadow names) over PostgreSQL's 63 / MySQL's 64 bytes are InvalidIdentifier, never cut.
    const COLS: &str = "[rn]:columns:long:*";
    let Some(limit) = db.backend.column_limit() else {
        // SQLite keeps any name korm takes (64 bytes), unique shadow columns included.
        let mut data = BTreeMap::new();
        data.insert("u".repeat(64), Unique::new("x".to_owned()));
        create(&db.pool, COLS, data).await;
        let mut plain = Doc::new();
        plain.insert("p".repeat(64), json!(1));
        create(&db.pool, COLS, plain).await;
        assert_eq!(stored(&db.pool, COLS).await, 2);
        return;
    };
    let shadow = "__korm_unique__".len();
    let raw = db.raw().expect("a server has a second connection");
    let refused = |error: Error, what: &str| {
        assert!(
            matches!(error, Error::InvalidIdentifier { what: "field", .. }),
            "{what}: {error:?}"
        );
    };
    // Over the limit, on a new table and beside an existing one: refused, nothing written.
    let mut unique = BTreeMap::new();
    unique.insert("u".repeat(limit - shadow + 1), Unique::new("x".to_owned()));
    refused(create_err(&db.pool, COLS, unique.clone()).await, "unique");
    if limit < 64 {
        let mut plain = Doc::new();
        plain.insert("p".repeat(limit + 1), json!(1));
        refused(create_err(&db.pool, COLS, plain).await, "plain");
    }
    assert!(raw.tables().await.is_empty(), "{:?}", raw.tables().await);
    let mut fits = BTreeMap::new();
    fits.insert("u".repeat(limit - shadow), Unique::new("x".to_owned()));
    let first = create(&db.pool, COLS, fits).await;
    let columns = raw.columns("__items__columns__long").await;
    refused(create_err(&db.pool, COLS, unique).await, "unique beside");
    assert_eq!(raw.columns("__items__columns__long").await, columns);
    assert_eq!(raw.count("__items__columns__long").await, 1);
    let loaded = korm::item::<BTreeMap<String, Unique<String>>>(&db.pool)
        .load(first.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data(), first.data());
}

// ---- 3. Prototype keys ---------------------------------------------------------------------

const PROTOTYPE_KEYS: [&str; 3] = ["__proto__", "constructor", "prototype"];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Person {
    name: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Pet {
    name: String,
    owner: Ref<Person>,
    links: BTreeMap<String, Ref<Person>>,
}

async fn prototype_keys_are_refused_as_fields_and_path_keys_and_skipped_by_wildcards(db: &Db) {
    // Guards #13 fix 3: __proto__, constructor and prototype refused as field names and path keys, skipped under a resolve wildcard.
    const PEOPLE: &str = "[rn]:people:proto:*";
    const PETS: &str = "[rn]:pets:proto:*";
    for key in PROTOTYPE_KEYS {
        let error = create_err(&db.pool, PETS, doc(json!({"name": "x", key: 1}))).await;
        assert!(
            matches!(error, Error::InvalidIdentifier { what: "field", .. }),
            "{key}: {error:?}"
        );
    }
    assert_eq!(stored(&db.pool, PETS).await, 0);
    if let Some(raw) = db.raw() {
        assert!(raw.tables().await.is_empty());
    }
    let ok = create(&db.pool, PEOPLE, Person { name: "ok".into() }).await;
    let proto = create(
        &db.pool,
        PEOPLE,
        Person {
            name: "proto".into(),
        },
    )
    .await;
    // Keys inside stored JSON are data (korm 1.5 may have written them).
    let mut links = BTreeMap::new();
    links.insert("ok".to_owned(), Ref::new(ok.rn().clone()));
    for key in PROTOTYPE_KEYS {
        links.insert(key.to_owned(), Ref::new(proto.rn().clone()));
    }
    let pet = create(
        &db.pool,
        PETS,
        Pet {
            name: "dino".into(),
            owner: Ref::new(ok.rn().clone()),
            links,
        },
    )
    .await;
    let pets = korm::item::<Pet>(&db.pool);
    for path in [
        "__proto__",
        "owner.__proto__",
        "owner.constructor",
        "owner.prototype.name",
        "links.*.__proto__",
        "links.constructor",
    ] {
        let load = pets.load(pet.rn().clone()).resolve([path]).get().await;
        assert!(
            matches!(load, Err(Error::InvalidPath { .. })),
            "resolve {path}: {load:?}"
        );
        let query = pets.query(rn(PETS)).resolve([path]).get().await;
        assert!(
            matches!(query, Err(Error::InvalidPath { .. })),
            "resolve {path}: {query:?}"
        );
    }
    for path in [
        "__proto__",
        "constructor",
        "links.__proto__",
        "links.prototype.x",
        "owner.constructor",
        "links.ok.__proto__",
    ] {
        let filtered = pets.query(rn(PETS)).filter(eq(path, "x")).get().await;
        assert!(
            matches!(filtered, Err(Error::InvalidPath { .. })),
            "filter {path}: {filtered:?}"
        );
        let sorted = pets
            .query(rn(PETS))
            .sort_by(path, SortOrder::Asc)
            .get()
            .await;
        assert!(
            matches!(sorted, Err(Error::InvalidPath { .. })),
            "sort {path}: {sorted:?}"
        );
    }
    // A wildcard follows `ok` and never a prototype key.
    let loaded = pets
        .load(pet.rn().clone())
        .resolve(["links.*"])
        .get()
        .await
        .expect("resolve links.*");
    let links = &loaded.data().links;
    assert_eq!(links["ok"].resolved().map(|p| p.name.as_str()), Some("ok"));
    for key in PROTOTYPE_KEYS {
        assert!(!links[key].is_resolved(), "{key} was followed");
        assert_eq!(links[key].rn(), proto.rn());
    }
}

// ---- 4. LockTimeout ------------------------------------------------------------------------

async fn lock_timeout_reports_the_configured_wait(db: &Db) {
    // Guards #13 fix 4: LockTimeout { waited } is the configured wait, not the time measured.
    let wait = Duration::from_millis(150);
    let pool = db.pool_with(|b| b.with_lock_timeout(wait)).await;
    let item = create(&pool, "[rn]:locks:held:*", Count { n: 1 }).await;
    let item_rn = item.rn().clone();
    let held = pool.locker().acquire(&item_rn).await.expect("lock");
    let started = Instant::now();
    let error = item
        .update(|c| c.n = 2)
        .commit()
        .await
        .expect_err("the lock is held");
    match error {
        Error::LockTimeout { waited, .. } => {
            assert_eq!(waited, wait, "the pool's lock timeout");
            assert!(started.elapsed() >= wait);
        }
        other => panic!("expected LockTimeout, got {other:?}"),
    }
    let within = Duration::from_millis(120);
    match pool.locker().acquire_within(&item_rn, within).await {
        Err(Error::LockTimeout { waited, .. }) => assert_eq!(waited, within),
        other => panic!("expected LockTimeout, got {other:?}"),
    }
    drop(held);
    pool.close().await;
    // Shared locks (a row in the layer) held by another pool on the same database: the same
    // report. Two in-memory layers are two databases, which share no lock rows.
    let holder = db.pool_with(|b| shared_locks(b, wait, "holder")).await;
    let waiter = db.pool_with(|b| shared_locks(b, wait, "waiter")).await;
    let target: Rn<Count> = rn("[rn]:locks:shared:0550ec20-c747-4ef9-87d4-613fe9d0c149");
    let guard = holder.locker().acquire(&target).await.expect("lock");
    let waited = waiter.locker().acquire(&target).await;
    match (db.backend, waited) {
        (Backend::SqliteMemory, Ok(other)) => drop(other),
        (_, Err(Error::LockTimeout { waited, .. })) => assert_eq!(waited, wait),
        (_, other) => panic!("expected LockTimeout, got {other:?}"),
    }
    guard.release().await.expect("release");
    holder.close().await;
    waiter.close().await;
}

fn shared_locks(builder: korm::PoolBuilder, wait: Duration, owner: &str) -> korm::PoolBuilder {
    builder.with_lock_timeout(wait).with_locks(
        "db",
        LockOptions::new()
            .with_owner_id(owner)
            .with_retry(Duration::from_millis(20)),
    )
}

// ---- 5. strict() and sorts through references ---------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct Car {
    make: String,
    owner: Ref<Person>,
}

async fn strict_applies_to_sorts_through_references(db: &Db) {
    // Guards #13 fix 5: a missing reference in sort_by("owner.name") is MissingReference under strict(), null without.
    const PEOPLE: &str = "[rn]:people:owners:*";
    const CARS: &str = "[rn]:cars:owned:*";
    let wilma = create(
        &db.pool,
        PEOPLE,
        Person {
            name: "wilma".into(),
        },
    )
    .await;
    let barney = create(
        &db.pool,
        PEOPLE,
        Person {
            name: "barney".into(),
        },
    )
    .await;
    let ghost: Rn<Person> = rn::<Person>(PEOPLE)
        .with_id(uuid::Uuid::new_v4())
        .expect("rn");
    for (make, owner) in [
        ("w", wilma.rn().clone()),
        ("g", ghost.clone()),
        ("b", barney.rn().clone()),
    ] {
        let car = Car {
            make: make.into(),
            owner: Ref::new(owner),
        };
        create(&db.pool, CARS, car).await;
    }
    let cars = korm::item::<Car>(&db.pool);
    let makes = |items: Vec<korm::Item<Car>>| -> Vec<String> {
        items.into_iter().map(|c| c.into_data().make).collect()
    };
    let asc = cars
        .query(rn(CARS))
        .sort_by("owner.name", SortOrder::Asc)
        .get()
        .await
        .expect("a missing reference sorts as null");
    assert_eq!(makes(asc), ["b", "w", "g"], "nulls last ascending");
    let desc = cars
        .query(rn(CARS))
        .sort_by("owner.name", SortOrder::Desc)
        .get()
        .await
        .expect("sort");
    assert_eq!(makes(desc), ["g", "w", "b"], "nulls first descending");
    for order in [SortOrder::Asc, SortOrder::Desc] {
        let error = cars
            .query(rn(CARS))
            .sort_by("owner.name", order)
            .strict()
            .get()
            .await
            .expect_err("strict: the missing reference is an error");
        match &error {
            Error::MissingReference { rn, .. } => assert_eq!(rn, ghost.as_str()),
            other => panic!("expected MissingReference, got {other:?}"),
        }
    }
    let present = cars
        .query(rn(CARS))
        .filter(korm::not(eq("make", "g")))
        .sort_by("owner.name", SortOrder::Asc)
        .strict()
        .get()
        .await
        .expect("strict without a missing reference");
    assert_eq!(makes(present), ["b", "w"]);
}

// ---- 6. DepotFolder ------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct Customer {
    name: String,
    invoices: DepotFolder,
}

async fn a_depot_prefix_field_is_a_folder_listing_its_files(db: &Db) {
    // Guards #13 fix 6: DepotFolder, a field holding a depot prefix RN (as korm 1.5 stores one) that lists the files under it.
    const CUSTOMERS: &str = "[rn]:customers:main:*";
    const TABLE: &str = "__items__customers__main";
    let files_dir = db.dir().join("files");
    let pool = db
        .pool_with(|b| b.depot("files", korm::depots::local(&files_dir)))
        .await;
    for (path, text) in [
        ("invoices:fred:001.txt", "one"),
        ("invoices:fred:2024:002.txt", "two"),
        ("invoices:freddie:003.txt", "not fred's"),
        ("invoices:barney:004.txt", "barney's"),
    ] {
        korm::depots::file(rn(&format!("[rn][depot::files]:{path}")), text)
            .expect("file")
            .create(&pool)
            .await
            .expect("create file");
    }
    let fred_folder: Rn = rn("[rn][depot::files]:invoices:fred:*");
    let fred = create(
        &pool,
        CUSTOMERS,
        Customer {
            name: "fred".into(),
            invoices: DepotFolder::at(fred_folder.clone()).expect("a prefix rn"),
        },
    )
    .await;
    let loaded = korm::item::<Customer>(&pool)
        .load(fred.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data().invoices.rn(), &fred_folder);
    let files = loaded.data().invoices.files(&pool).await.expect("list");
    let listed: Vec<String> = files.iter().map(|f| f.rn().to_string()).collect();
    assert_eq!(
        listed,
        [
            "[rn][depot::files]:invoices:fred:001.txt",
            "[rn][depot::files]:invoices:fred:2024:002.txt"
        ]
    );
    assert_eq!(files[1].text(&pool).await.expect("read"), "two");
    // A file RN is not a folder, and a one-file field does not take a folder.
    assert!(matches!(
        DepotFolder::at(rn("[rn][depot::files]:invoices:fred:001.txt")),
        Err(Error::WrongRnForm { .. })
    ));
    #[derive(Debug, Serialize, Deserialize)]
    struct OneFile {
        name: String,
        invoices: DepotFile,
    }
    let one = korm::item::<OneFile>(&pool)
        .load(fred.rn().clone().cast())
        .get()
        .await;
    assert!(matches!(one, Err(Error::Decode { .. })), "{one:?}");
    // The prefix RN as korm 1.5 stores it: the RN's text in the column, written by another
    // program (through the second connection), or by a map model in memory.
    let barney = create(
        &pool,
        CUSTOMERS,
        doc(json!({"name": "barney", "invoices": "[rn][depot::files]:invoices:fred:*"})),
    )
    .await;
    let barney_rn: Rn<Customer> = barney.rn().clone().cast();
    let stored_text = "[rn][depot::files]:invoices:barney:*";
    match db.raw() {
        Some(raw) => {
            let sql = format!(
                "UPDATE {} SET {} = {} WHERE {} = {}",
                raw.t(TABLE),
                raw.q("invoices"),
                raw.p(1),
                raw.q("rnId"),
                raw.p(2)
            );
            raw.exec(
                &sql,
                &[stored_text.into(), barney.rn().id().expect("id").into()],
            )
            .await;
        }
        None => {
            barney
                .update(|d| {
                    d.insert("invoices".into(), json!(stored_text));
                })
                .commit()
                .await
                .expect("commit");
        }
    }
    let barney = korm::item::<Customer>(&pool)
        .load(barney_rn)
        .get()
        .await
        .expect("a stored prefix rn decodes");
    let files = barney.data().invoices.files(&pool).await.expect("list");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].text(&pool).await.expect("read"), "barney's");
    pool.close().await;
}

// ---- 7. JSON nesting -----------------------------------------------------------------------

/// A JSON value nesting objects and arrays `depth` levels deep.
fn nested(depth: usize) -> Value {
    let mut value = json!("bottom");
    for level in 0..depth {
        value = if level % 2 == 0 {
            json!([value])
        } else {
            json!({ "k": value })
        };
    }
    value
}

const NESTS: &str = "[rn]:nests:all:*";
const NESTS_TABLE: &str = "__items__nests__all";

async fn json_nesting_over_31_levels_is_refused_on_every_backend(db: &Db) {
    // Guards #13 fix 7: at most 31 nested objects/arrays per stored value, Encode before anything is written.
    let ok = create(
        &db.pool,
        NESTS,
        doc(json!({"name": "ok", "meta": nested(31)})),
    )
    .await;
    let loaded = korm::item::<Doc>(&db.pool)
        .load(ok.rn().clone())
        .get()
        .await
        .expect("31 levels round-trip");
    assert_eq!(loaded.data()["meta"], nested(31));
    for depth in [32, 40, 200] {
        let error = create_err(
            &db.pool,
            NESTS,
            doc(json!({"name": "deep", "meta": nested(depth)})),
        )
        .await;
        match &error {
            Error::Encode { what, reason } => {
                assert!(what.contains("`meta`"), "{what}");
                assert!(reason.contains("31"), "{reason}");
            }
            other => panic!("{depth}: expected Encode, got {other:?}"),
        }
        let error = create_err(
            &db.pool,
            "[rn]:nests:fresh:*",
            doc(json!({"meta": nested(depth)})),
        )
        .await;
        assert!(matches!(error, Error::Encode { .. }), "{error:?}");
    }
    let committed = ok
        .update(|d| {
            d.insert("meta".into(), nested(32));
        })
        .commit()
        .await;
    assert!(
        matches!(committed, Err(Error::Encode { .. })),
        "{committed:?}"
    );
    assert_eq!(stored(&db.pool, NESTS).await, 1);
    if let Some(raw) = db.raw() {
        assert_eq!(raw.tables().await, [NESTS_TABLE], "no table for fresh");
        assert_eq!(raw.count(NESTS_TABLE).await, 1);
    }
}

async fn a_value_nested_deeper_by_another_program_is_decode_for_that_item_only(db: &Db) {
    // Guards #13 fix 7: a deeper stored value is Decode naming its RN; get_each isolates it; other loads and queries work.
    let mut items = Vec::new();
    for name in ["a", "b", "c"] {
        let item = create(
            &db.pool,
            NESTS,
            doc(json!({"name": name, "meta": {"k": name}})),
        )
        .await;
        items.push(item.rn().clone());
    }
    let Some(raw) = db.raw() else {
        // Nothing but korm writes an in-memory database, and korm refuses such a value.
        let error = create_err(&db.pool, NESTS, doc(json!({"meta": nested(40)}))).await;
        assert!(matches!(error, Error::Encode { .. }), "{error:?}");
        return;
    };
    let sql = format!(
        "UPDATE {} SET {} = {} WHERE {} = {}",
        raw.t(NESTS_TABLE),
        raw.q("meta"),
        raw.json_p(1),
        raw.q("rnId"),
        raw.p(2)
    );
    let deep = nested(40).to_string();
    let written = raw
        .try_exec(&sql, &[deep.into(), items[1].id().expect("id").into()])
        .await;
    if raw.sql() == Sql::MySql {
        // MariaDB's json_valid CHECK refuses more than 32 levels: no other program can
        // write such a value there.
        assert!(written.is_err(), "{written:?}");
        assert_eq!(
            names(db, NESTS, korm::not(eq("name", "x"))).await,
            ["a", "b", "c"]
        );
        return;
    }
    assert_eq!(written, Ok(1));
    let deep_rn = items[1].as_str();
    let decode_names_b = |error: &Error| match error {
        Error::Decode { rn, .. } => assert_eq!(rn, deep_rn),
        other => panic!("expected Decode naming {deep_rn}, got {other:?}"),
    };
    let docs = korm::item::<Doc>(&db.pool);
    decode_names_b(
        &docs
            .load(items[1].clone())
            .get()
            .await
            .expect_err("too deep"),
    );
    decode_names_b(&docs.query(rn(NESTS)).get().await.expect_err("too deep"));
    let each = docs
        .query(rn(NESTS))
        .sort_by("name", SortOrder::Asc)
        .get_each()
        .await
        .expect("the query itself runs");
    assert_eq!(each.len(), 3);
    assert_eq!(each[0].as_ref().expect("a").rn(), &items[0]);
    decode_names_b(each[1].as_ref().expect_err("b"));
    assert_eq!(each[2].as_ref().expect("c").rn(), &items[2]);
    for i in [0, 2] {
        docs.load(items[i].clone())
            .get()
            .await
            .expect("another item");
    }
    assert_eq!(
        names(db, NESTS, korm::not(eq("name", "b"))).await,
        ["a", "c"]
    );
    assert_eq!(names(db, NESTS, eq("meta.k", "c")).await, ["c"]);
}

// ---- 8. Case-only twins of existing columns ------------------------------------------------

async fn field_names_differing_only_in_case_from_a_column_are_encode(db: &Db) {
    // Guards #13 fix 8: a field differing only in case from an existing column is Encode on every backend.
    const TWINS: &str = "[rn]:twins:all:*";
    const TABLE: &str = "__items__twins__all";
    let fred = create(&db.pool, TWINS, doc(json!({"name": "fred", "age": 1}))).await;
    let columns = match db.raw() {
        Some(raw) => raw.columns(TABLE).await,
        None => Vec::new(),
    };
    for twin in ["NAME", "Name", "AGE"] {
        let error = create_err(&db.pool, TWINS, doc(json!({ twin: "x" }))).await;
        match &error {
            Error::Encode { what, reason } => {
                assert!(what.contains(&format!("`{twin}`")), "{what}");
                let column = twin.to_lowercase();
                assert!(reason.contains(&format!("`{column}`")), "{reason}");
            }
            other => panic!("{twin}: expected Encode, got {other:?}"),
        }
    }
    let error = fred
        .update(|d| {
            d.insert("Age".into(), json!(2));
        })
        .commit()
        .await
        .expect_err("a twin in a commit");
    assert!(matches!(error, Error::Encode { .. }), "{error:?}");
    assert_eq!(stored(&db.pool, TWINS).await, 1);
    let only = korm::item::<Doc>(&db.pool)
        .query(rn(TWINS))
        .first()
        .await
        .expect("first");
    assert_eq!(only.data(), &doc(json!({"name": "fred", "age": 1})));
    if let Some(raw) = db.raw() {
        assert_eq!(raw.columns(TABLE).await, columns);
        assert_eq!(raw.count(TABLE).await, 1);
    }
}

// ---- 9. NUL ---------------------------------------------------------------------------------

async fn nul_is_refused_on_postgres_and_kept_elsewhere(db: &Db) {
    // Guards #13 fix 9: NUL is Encode naming the field on PostgreSQL (text and JSON); other backends keep it exactly.
    const NULS: &str = "[rn]:nuls:all:*";
    let cases = [
        ("name", json!({"name": "a\0b", "meta": {}})),
        ("meta", json!({"name": "ok", "meta": {"k": "a\0b"}})),
        ("meta", json!({"name": "ok", "meta": {"k\0": 1}})),
        ("meta", json!({"name": "ok", "meta": ["\0"]})),
    ];
    for (field, data) in cases {
        let data = doc(data);
        if db.backend.stores_nul() {
            let item = create(&db.pool, NULS, data.clone()).await;
            let loaded = korm::item::<Doc>(&db.pool)
                .load(item.rn().clone())
                .get()
                .await
                .expect("load");
            assert_eq!(loaded.data(), &data, "kept exactly");
        } else {
            match create_err(&db.pool, NULS, data).await {
                Error::Encode { what, reason } => {
                    assert!(what.contains(&format!("`{field}`")), "{what}");
                    assert!(reason.contains("NUL"), "{reason}");
                }
                other => panic!("expected Encode, got {other:?}"),
            }
        }
    }
    if db.backend.stores_nul() {
        assert_eq!(names(db, NULS, eq("name", "a\0b")).await, ["a\0b"]);
        assert_eq!(names(db, NULS, eq("name", "a")).await, Vec::<String>::new());
        return;
    }
    // Nothing was written; a commit carrying NUL changes nothing either.
    assert_eq!(stored(&db.pool, NULS).await, 0);
    assert!(
        db.raw()
            .expect("second connection")
            .tables()
            .await
            .is_empty()
    );
    let item = create(&db.pool, NULS, doc(json!({"name": "ok"}))).await;
    let error = item
        .update(|d| {
            d.insert("name".into(), json!("x\0"));
        })
        .commit()
        .await
        .expect_err("NUL in a commit");
    assert!(matches!(error, Error::Encode { .. }), "{error:?}");
    assert_eq!(names(db, NULS, eq("name", "ok")).await, ["ok"]);
}

async fn a_filter_value_holding_nul_is_a_literal_value(db: &Db) {
    // #13 finding 9 on reads: a NUL in a filter value is a literal, never a raw SQLSTATE
    // (PostgreSQL, which stores none, matches nothing).
    const NULS: &str = "[rn]:nuls:filters:*";
    let stored_name = if db.backend.stores_nul() {
        "a\0b"
    } else {
        "ab"
    };
    create(
        &db.pool,
        NULS,
        doc(json!({"name": stored_name, "meta": {"k": stored_name}})),
    )
    .await;
    let expected: Vec<String> = if db.backend.stores_nul() {
        vec!["a\0b".to_owned()]
    } else {
        Vec::new()
    };
    // A like pattern holding NUL is refused on every backend: SQLite's LIKE ends the
    // pattern there (`%\0%` matched every text).
    let like_nul = korm::item::<Doc>(&db.pool)
        .query(rn(NULS))
        .filter(like("name", "a\0%"))
        .get()
        .await;
    assert!(
        matches!(&like_nul, Err(Error::InvalidFilter { path, .. }) if path == "name"),
        "{like_nul:?}"
    );
    for filter in [
        eq("name", "a\0b"),
        eq("meta.k", "a\0b"),
        in_list("name", ["a\0b", "x"]),
    ] {
        let found = korm::item::<Doc>(&db.pool)
            .query(rn(NULS))
            .filter(filter.clone())
            .get()
            .await;
        match found {
            Ok(items) => {
                let found: Vec<String> = items
                    .iter()
                    .map(|i| i.data()["name"].as_str().expect("name").to_owned())
                    .collect();
                assert_eq!(found, expected, "{filter:?}");
            }
            Err(e) => panic!("{filter:?}: expected the matching items, got {e:?}"),
        }
    }
    // An order comparison: by value where NUL can be stored; refused on PostgreSQL, where
    // its answer would depend on the collation.
    let ordered = korm::item::<Doc>(&db.pool)
        .query(rn(NULS))
        .filter(korm::gte("name", "a\0b"))
        .get()
        .await;
    if db.backend.stores_nul() {
        assert_eq!(ordered.expect("gte").len(), 1);
    } else {
        assert!(
            matches!(&ordered, Err(Error::InvalidFilter { path, .. }) if path == "name"),
            "{ordered:?}"
        );
    }
}

// ---- 10. 1 MiB strings ----------------------------------------------------------------------

async fn one_mebibyte_strings_round_trip(db: &Db) {
    // Guards #13 fix 10: 1 MiB strings round-trip on every backend (MariaDB MEDIUMTEXT, not TEXT).
    const BIG: &str = "[rn]:big:all:*";
    let unit = "ab€"; // five bytes, one of them a three-byte character
    let text = unit.repeat(1024 * 1024 / unit.len() + 1);
    assert!(text.len() >= 1024 * 1024);
    let data = doc(json!({"name": text, "meta": {"text": text}}));
    let item = create(&db.pool, BIG, data.clone()).await;
    let loaded = korm::item::<Doc>(&db.pool)
        .load(item.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data(), &data);
    let found = korm::item::<Doc>(&db.pool)
        .query(rn(BIG))
        .filter(eq("name", text.as_str()))
        .get()
        .await
        .expect("query");
    assert_eq!(found.len(), 1);
    if let Some(raw) = db.raw() {
        let sql = format!(
            "SELECT {} FROM {}",
            raw.q("name"),
            raw.t("__items__big__all")
        );
        assert_eq!(raw.value(&sql, &[]).await.as_deref(), Some(text.as_str()));
    }
}

// ---- 11. like patterns ----------------------------------------------------------------------

async fn like_patterns_over_50000_bytes_are_invalid_filter(db: &Db) {
    // Guards #13 fix 11: like patterns over 50,000 bytes are InvalidFilter naming the limit, on every backend.
    const LIKES: &str = "[rn]:likes:all:*";
    let middle = "a".repeat(49_998);
    create(&db.pool, LIKES, doc(json!({"name": format!("x{middle}y")}))).await;
    create(&db.pool, LIKES, doc(json!({"name": "short"}))).await;
    let longest = format!("%{middle}%");
    assert_eq!(longest.len(), 50_000);
    assert_eq!(names(db, LIKES, like("name", &longest)).await.len(), 1);
    let over = format!("%{middle}_%");
    let error = korm::item::<Doc>(&db.pool)
        .query(rn(LIKES))
        .filter(like("name", &over))
        .get()
        .await
        .expect_err("too long");
    match &error {
        Error::InvalidFilter { reason, .. } => assert!(reason.contains("50000"), "{reason}"),
        other => panic!("expected InvalidFilter, got {other:?}"),
    }
    assert!(error.to_string().len() < 1_000, "the pattern is not quoted");
}

// ---- 12. MariaDB's padding ------------------------------------------------------------------

async fn text_comparisons_do_not_pad(db: &Db) {
    // Guards #13 fix 12: text compares without padding (MariaDB: eq("name", "freddie") never matches "freddie "), on columns and JSON paths.
    const PADS: &str = "[rn]:pads:all:*";
    for name in ["freddie", "freddie ", "freddie  "] {
        let data = json!({"name": name, "meta": {"name": name}, "tags": [name]});
        create(&db.pool, PADS, doc(data)).await;
    }
    for filter in [
        eq("name", "freddie"),
        eq("meta.name", "freddie"),
        eq("tags[0]", "freddie"),
        eq("tags[*]", "freddie"),
        in_list("name", ["freddie", "nobody"]),
        in_list("meta.name", ["freddie", "nobody"]),
        lt("name", "freddie "),
        lt("meta.name", "freddie "),
    ] {
        assert_eq!(
            names(db, PADS, filter.clone()).await,
            ["freddie"],
            "{filter:?}"
        );
    }
    assert_eq!(names(db, PADS, eq("name", "freddie ")).await, ["freddie "]);
    assert_eq!(
        names(db, PADS, eq("meta.name", "freddie  ")).await,
        ["freddie  "]
    );
}

// ---- 13. in_list with null ------------------------------------------------------------------

async fn in_list_with_null_matches_null_and_missing_values(db: &Db) {
    // Guards #13 fix 13: in_list(path, [null, ...]) matches null and missing values, as korm 1.5 does.
    const NICKS: &str = "[rn]:nicks:all:*";
    for data in [
        json!({"name": "null", "nick": null, "meta": {"k": null}}),
        json!({"name": "y", "nick": "y", "meta": {"k": "y"}}),
        json!({"name": "missing", "meta": {}}),
        json!({"name": "z", "nick": "z", "meta": {"k": "z"}}),
    ] {
        create(&db.pool, NICKS, doc(data)).await;
    }
    let with_null = [Value::Null, json!("y")];
    assert_eq!(
        names(db, NICKS, in_list("nick", with_null.clone())).await,
        ["missing", "null", "y"]
    );
    assert_eq!(
        names(db, NICKS, in_list("meta.k", with_null)).await,
        ["missing", "null", "y"]
    );
    assert_eq!(
        names(db, NICKS, in_list("nick", [Value::Null])).await,
        ["missing", "null"]
    );
    assert_eq!(
        names(db, NICKS, korm::not(in_list("nick", [Value::Null]))).await,
        ["y", "z"]
    );
}

crate::on_backends!(
    a_second_long_collection_of_the_same_fields_is_refused_too => sqlite_file,
    sqlite_file_normal,
    sqlite_memory,
    postgres,
    mysql,
);

crate::on_backends!(
    a_filter_value_holding_nul_is_a_literal_value => sqlite_file,
    sqlite_file_normal,
    sqlite_memory,
    postgres,
    mysql,
);

crate::on_backends!(
    integers_use_korm_1_5_column_types_and_are_refused_outside_them,
    long_collection_names_are_cut_as_postgres_cuts_them_and_never_merged,
    column_names_over_the_servers_limit_are_refused_before_anything_is_written,
    prototype_keys_are_refused_as_fields_and_path_keys_and_skipped_by_wildcards,
    lock_timeout_reports_the_configured_wait,
    strict_applies_to_sorts_through_references,
    a_depot_prefix_field_is_a_folder_listing_its_files,
    json_nesting_over_31_levels_is_refused_on_every_backend,
    a_value_nested_deeper_by_another_program_is_decode_for_that_item_only,
    field_names_differing_only_in_case_from_a_column_are_encode,
    nul_is_refused_on_postgres_and_kept_elsewhere,
    one_mebibyte_strings_round_trip,
    like_patterns_over_50000_bytes_are_invalid_filter,
    text_comparisons_do_not_pad,
    in_list_with_null_matches_null_and_missing_values,
);
