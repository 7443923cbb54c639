//! The suite functions. Each asserts an observable outcome through the public API.

use korm::{
    Error, Pool, Rn, SortOrder, Unique, WriteOptions, and, eq, gt, gte, in_list, like, lt, lte,
    not, or,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use crate::refs::*;
pub use crate::scale::*;
pub use crate::semantics::*;

const USERS: &str = "[rn]:users:freetier:*";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    username: String,
    age: i64,
    score: f64,
    active: bool,
    nickname: Option<String>,
    tags: Vec<String>,
    address: Address,
    addresses: Vec<Address>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Address {
    city: String,
    zip: Option<String>,
}

fn fred() -> User {
    User {
        username: "freddie".into(),
        age: 41,
        score: 97.5,
        active: true,
        nickname: None,
        tags: vec!["quarry".into(), "bowling".into()],
        address: Address {
            city: "Bedrock".into(),
            zip: Some("70777".into()),
        },
        addresses: vec![
            Address {
                city: "Bedrock".into(),
                zip: None,
            },
            Address {
                city: "Rock Vegas".into(),
                zip: Some("1".into()),
            },
        ],
    }
}

fn barney() -> User {
    User {
        username: "barney".into(),
        age: 38,
        score: 88.25,
        active: false,
        nickname: Some("Barn".into()),
        tags: vec![],
        address: Address {
            city: "Bedrock".into(),
            zip: None,
        },
        addresses: vec![],
    }
}

fn rn<T>(s: &str) -> Rn<T> {
    s.parse().expect("valid rn")
}

async fn create<T: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static>(
    pool: &Pool,
    collection: &str,
    data: T,
) -> korm::Item<T> {
    korm::item::<T>(pool)
        .from_data(rn(collection), data)
        .expect("floating item")
        .create()
        .await
        .expect("create")
}

/// Creates a few users and returns them by name.
async fn seed(pool: &Pool) -> Vec<korm::Item<User>> {
    let mut wilma = fred();
    wilma.username = "wilma".into();
    wilma.age = 40;
    wilma.score = 99.0;
    wilma.tags = vec!["shopping".into()];
    wilma.address.city = "Rock Vegas".into();
    wilma.addresses = vec![Address {
        city: "Boulder".into(),
        zip: None,
    }];
    let mut pebbles = barney();
    pebbles.username = "pebbles".into();
    pebbles.age = 2;
    pebbles.nickname = None;
    let mut out = Vec::new();
    for user in [fred(), barney(), wilma, pebbles] {
        out.push(create(pool, USERS, user).await);
    }
    out
}

async fn names(pool: &Pool, filter: korm::Filter) -> Vec<String> {
    sorted_by(pool, USERS, filter, |u: User| u.username).await
}

/// What `name` gives for each item of `collection` that matches `filter`, sorted.
async fn sorted_by<T: korm::Model>(
    pool: &Pool,
    collection: &str,
    filter: korm::Filter,
    name: impl Fn(T) -> String,
) -> Vec<String> {
    let mut found: Vec<String> = korm::item::<T>(pool)
        .query(rn(collection))
        .filter(filter)
        .get()
        .await
        .expect("query")
        .into_iter()
        .map(|i| name(i.into_data()))
        .collect();
    found.sort();
    found
}

pub async fn create_and_load_every_kind(pool: &Pool) {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Everything {
        text: String,
        integer: i64,
        double: f64,
        boolean: bool,
        nothing: Option<i64>,
        list: Vec<Value>,
        object: Value,
        owner: Rn<User>,
        big: u64,
    }
    let owner = create(pool, USERS, fred()).await;
    let data = Everything {
        text: "héllo \"world\" ' ; --".into(),
        integer: i64::from(i32::MIN),
        double: -0.125,
        boolean: false,
        nothing: None,
        list: vec![json!(1), json!("two"), json!({"three": [3]}), Value::Null],
        object: json!({"a": {"b": [true, false]}, "z": 1.5}),
        owner: owner.rn().clone(),
        big: i32::MAX as u64,
    };
    let created = create(pool, "[rn]:things:all:*", data).await;
    assert!(created.rn().is_item());
    assert_eq!(created.rn().namespace(), Some("things"));
    let loaded = korm::item::<Everything>(pool)
        .load(created.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data(), created.data());
    assert_eq!(loaded.rn(), created.rn());
    let user = korm::item::<User>(pool)
        .load(loaded.data().owner.clone())
        .get()
        .await
        .expect("load the referenced user");
    assert_eq!(user.data(), &fred());
    assert!(!loaded.is_empty() && korm::item::<User>(pool).empty().is_empty());
}

/// A whole number outside 32 bits is stored exactly where the column holds 64 bits (SQLite,
/// or a server layer opened with wide integers), and otherwise refused before anything is
/// written, naming the field and the option, never the value (korm 1.5 makes 32-bit
/// integer columns on PostgreSQL and MySQL).
pub async fn integers_beyond_32_bits_are_exact_or_refused(pool: &Pool) {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Big {
        small: i64,
        big: i64,
    }
    let first = create(pool, "[rn]:numbers:big:*", Big { small: 1, big: 1 }).await;
    for value in [i64::MIN, i64::MAX, i64::from(i32::MAX) + 1] {
        let attempt = korm::item::<Big>(pool)
            .from_data(
                rn("[rn]:numbers:big:*"),
                Big {
                    small: 2,
                    big: value,
                },
            )
            .expect("floating")
            .create()
            .await;
        match attempt {
            Ok(created) => {
                let loaded = korm::item::<Big>(pool)
                    .load(created.rn().clone())
                    .get()
                    .await;
                assert_eq!(loaded.expect("load").data().big, value);
            }
            Err(Error::Encode { what, reason }) => {
                assert!(what.contains("`big`"), "{what}");
                assert!(reason.contains("with_wide_integers"), "{reason}");
                assert!(!reason.contains(&value.to_string()), "{reason}");
            }
            Err(other) => panic!("{value}: expected the value or an encode error, got {other:?}"),
        }
    }
    // A refused create wrote nothing: the collection holds the first item and what stored.
    let all = korm::item::<Big>(pool)
        .query(rn("[rn]:numbers:big:*"))
        .get()
        .await;
    assert!(all.expect("query").iter().any(|i| i.rn() == first.rn()));
}

/// A whole number above `i64::MAX` inside JSON (where the encoder allows it) changed by
/// less than a double can tell is still a change: stored, read back exactly.
pub async fn nested_integers_above_i64_change_exactly(pool: &Pool) {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Meta {
        big: u64,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        meta: Meta,
    }
    let made = create(
        pool,
        "[rn]:numbers:nested:*",
        Holder {
            meta: Meta { big: u64::MAX },
        },
    )
    .await;
    let rn = made.rn().clone();
    for big in [u64::MAX - 1, 9_223_372_036_854_775_808] {
        let loaded = korm::item::<Holder>(pool).load(rn.clone()).get().await;
        loaded
            .expect("load")
            .update(|h| h.meta.big = big)
            .commit()
            .await
            .expect("commit");
        let back = korm::item::<Holder>(pool).load(rn.clone()).get().await;
        assert_eq!(back.expect("load").data().meta.big, big);
    }
}

pub async fn update_commit_persists_and_adds_columns(pool: &Pool) {
    let item = create(pool, USERS, fred()).await;
    let committed = item
        .update(|u| {
            u.age = 42;
            u.tags.push("golf".into());
        })
        .commit()
        .await
        .expect("commit");
    assert_eq!(committed.data().age, 42);

    // A newer model with one more field: the column is added.
    #[derive(Debug, Serialize, Deserialize)]
    struct UserV2 {
        username: String,
        age: i64,
        email: Option<String>,
    }
    let v2 = korm::item::<UserV2>(pool)
        .load(committed.rn().clone().cast())
        .get()
        .await
        .expect("load as v2");
    assert_eq!(v2.data().email, None);
    let v2 = v2
        .update(|u| u.email = Some("fred@bedrock.example".into()))
        .commit()
        .await
        .expect("commit v2");
    let again = korm::item::<UserV2>(pool)
        .load(v2.rn().clone())
        .get()
        .await
        .expect("reload");
    assert_eq!(again.data().email.as_deref(), Some("fred@bedrock.example"));
    let as_v1 = korm::item::<User>(pool)
        .load(again.rn().clone().cast())
        .get()
        .await
        .expect("load as v1");
    assert_eq!(as_v1.data().age, 42);
    assert_eq!(as_v1.data().tags, vec!["quarry", "bowling", "golf"]);
}

/// A field added to a model after items were written: once any item writes it (adding the
/// column), the older rows hold NULL there, and read as if the field were missing, so
/// `#[serde(default)]` applies, in loads, queries and rebases. A field that can hold null
/// still reads null, and a field without a default names itself in the error.
pub async fn a_field_added_later_reads_its_default_from_old_rows(pool: &Pool) {
    const NOTES: &str = "[rn]:evolve:notes:*";
    #[derive(Debug, Serialize, Deserialize)]
    struct V1 {
        title: String,
    }
    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    struct Style {
        bold: bool,
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct V2 {
        title: String,
        #[serde(default)]
        labels: Vec<String>,
        #[serde(default)]
        pinned: bool,
        #[serde(default)]
        style: Style,
        note: Option<String>,
        extra: Value,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Strict {
        title: String,
        labels: Vec<String>,
    }
    let old = create(
        pool,
        NOTES,
        V1 {
            title: "old".into(),
        },
    )
    .await;
    let new = create(
        pool,
        NOTES,
        V2 {
            title: "new".into(),
            labels: vec!["a".into()],
            pinned: true,
            style: Style { bold: true },
            note: Some("n".into()),
            extra: json!({"k": 1}),
        },
    )
    .await;
    let notes = korm::item::<V2>(pool);
    let read = notes
        .load(old.rn().clone().cast())
        .get()
        .await
        .expect("an old row reads with the new model");
    assert_eq!(read.data().labels, Vec::<String>::new());
    assert!(!read.data().pinned);
    assert_eq!(read.data().style, Style::default());
    assert_eq!(read.data().note, None);
    // `extra` has no default: a `Value` holds null, so the NULL reads as null.
    assert_eq!(read.data().extra, Value::Null);
    let again = notes.load(new.rn().clone()).get().await.expect("load new");
    assert_eq!(again.data(), new.data());

    let all = notes.query(rn(NOTES)).get().await.expect("query");
    assert!(all.iter().any(|i| i.rn().as_str() == old.rn().as_str()));
    assert!(all.iter().any(|i| i.data() == new.data()));

    // Without a default, the error names the field (and the item).
    let err = korm::item::<Strict>(pool)
        .load(old.rn().clone().cast())
        .get()
        .await
        .expect_err("no default for labels");
    let message = err.to_string();
    assert!(matches!(err, Error::Decode { .. }), "{message}");
    assert!(message.contains("`labels`"), "{message}");

    // A rebase merges the fresh row (NULL in `labels`: the other writer's model has no such
    // field) with the change.
    let stale = notes
        .load(old.rn().clone().cast())
        .get()
        .await
        .expect("load");
    korm::item::<V1>(pool)
        .load(old.rn().clone().cast())
        .get()
        .await
        .expect("load as v1")
        .update(|n| n.title = "renamed".into())
        .commit()
        .await
        .expect("another writer");
    let mut err = stale
        .update(|n| n.title = "mine".into())
        .commit()
        .await
        .expect_err("conflict");
    let back: korm::UncommittedItem<V2> = err.take_conflicted().expect("handed back");
    let rebased = back
        .rebase()
        .await
        .expect("the rebase reads the NULL as missing");
    assert_eq!(rebased.data().labels, Vec::<String>::new());
    assert_eq!(rebased.data().title, "mine");
    rebased.commit().await.expect("commit the rebase");
    // That commit wrote the defaults its item held.
    let strict = korm::item::<Strict>(pool)
        .load(old.rn().clone().cast())
        .get()
        .await
        .expect("the defaults were written");
    assert_eq!(strict.data().labels, Vec::<String>::new());
    assert_eq!(strict.data().title, "mine");
}

/// Without sort keys, a limited read takes the items of the lowest ids: `first()` is the
/// same item on every backend, whatever order the rows were written in (SQLite's rowid
/// order, PostgreSQL's heap order and MariaDB's key order differ).
pub async fn first_without_sort_keys_is_the_lowest_id(pool: &Pool) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Tag {
        n: i64,
    }
    const TAGS: &str = "[rn]:firsts:tags:*";
    for (n, id) in ["c", "a", "d", "b"].into_iter().enumerate() {
        let at = format!("[rn]:firsts:tags:{id}0000000-0000-4000-8000-000000000000");
        create(pool, &at, Tag { n: n as i64 }).await;
    }
    let tags = korm::item::<Tag>(pool);
    let first = tags.query(rn(TAGS)).first().await.expect("first");
    assert_eq!(first.data().n, 1, "the id starting with a");
    let two: Vec<i64> = tags
        .query(rn(TAGS))
        .first_n(2)
        .await
        .expect("first_n")
        .iter()
        .map(|t| t.data().n)
        .collect();
    assert_eq!(two, [1, 3]);
    let limited: Vec<i64> = tags
        .query(rn(TAGS))
        .limit(3)
        .get()
        .await
        .expect("limit")
        .iter()
        .map(|t| t.data().n)
        .collect();
    assert_eq!(limited, [1, 3, 0]);
}

pub async fn skipped_fields_keep_their_stored_value(pool: &Pool) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Partial {
        username: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        age: Option<i64>,
    }
    let item = create(pool, USERS, fred()).await;
    let partial = korm::item::<Partial>(pool)
        .load(item.rn().clone().cast())
        .get()
        .await
        .expect("load");
    partial
        .update(|p| {
            p.username = "fred".into();
            p.age = None;
        })
        .commit()
        .await
        .expect("commit");
    let full = korm::item::<User>(pool)
        .load(item.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(full.data().username, "fred");
    assert_eq!(
        full.data().age,
        41,
        "a skipped field keeps its stored value"
    );
}

pub async fn delete_then_restore(pool: &Pool) {
    let users = korm::item::<User>(pool);
    let item = create(pool, USERS, fred()).await;
    let rn = item.rn().clone();
    let deleted = item.delete().await.expect("delete");
    assert_eq!(deleted.data(), &fred(), "the snapshot is kept");
    assert!(matches!(
        users.load(rn.clone()).get().await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        users
            .load(rn.clone())
            .get_optional()
            .await
            .expect("load")
            .is_none()
    );
    let restored = deleted.restore().await.expect("restore");
    assert_eq!(restored.rn(), &rn);
    assert_eq!(
        users.load(rn.clone()).get().await.expect("load").data(),
        &fred()
    );
    // Deleting an item someone else deleted meanwhile is NotFound.
    let stale = users.load(rn.clone()).get().await.expect("load");
    restored.delete().await.expect("delete");
    assert!(matches!(stale.delete().await, Err(Error::NotFound { .. })));
}

pub async fn destroy_runs_only_through_danger(pool: &Pool) {
    let users = korm::item::<User>(pool);
    let item = create(pool, USERS, fred()).await;
    let rn = item.rn().clone();
    let deleted = item.delete().await.expect("delete");
    let op = deleted.destroy();
    assert_eq!(op.what(), "destroy a deleted item");
    // Something was stored at the RN again; destroy removes it.
    create(pool, rn.as_str(), fred()).await;
    korm::danger(op).await.expect("destroy");
    assert!(users.load(rn).get_optional().await.expect("load").is_none());
}

pub async fn create_twice_at_one_rn_fails(pool: &Pool) {
    let item = create(pool, USERS, fred()).await;
    let again = korm::item::<User>(pool)
        .from_data(item.rn().clone(), barney())
        .expect("floating")
        .create()
        .await;
    match again {
        Err(Error::AlreadyExists { rn }) => assert_eq!(rn, item.rn().to_string()),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let kept = korm::item::<User>(pool)
        .load(item.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(kept.data(), &fred(), "the first item is untouched");
}

pub async fn load_missing_and_wrong_forms(pool: &Pool) {
    let users = korm::item::<User>(pool);
    let missing: Rn<User> = rn("[rn]:users:freetier:0550ec20-c747-4ef9-87d4-613fe9d0c149");
    assert!(matches!(
        users.load(missing).get().await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        users.load(rn(USERS)).get().await,
        Err(Error::WrongRnForm { .. })
    ));
    let item_rn: Rn<User> = rn("[rn]:users:freetier:0550ec20-c747-4ef9-87d4-613fe9d0c149");
    assert!(matches!(
        users.query(item_rn).get().await,
        Err(Error::WrongRnForm { .. })
    ));
    let depot: Rn<User> = rn("[rn][depot::files]:invoices:fred:invoice.txt");
    assert!(matches!(
        users.from_data(depot, fred()),
        Err(Error::WrongRnForm { .. })
    ));
}

pub async fn unique_fields_refuse_duplicates(pool: &Pool) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Account {
        email: Unique<String>,
        handle: Option<Unique<String>>,
    }
    let accounts = "[rn]:accounts:main:*";
    let first = create(
        pool,
        accounts,
        Account {
            email: Unique::new("a@x".into()),
            handle: None,
        },
    )
    .await;
    create(
        pool,
        accounts,
        Account {
            email: Unique::new("b@x".into()),
            handle: None,
        },
    )
    .await;
    let dup = korm::item::<Account>(pool)
        .from_data(
            rn(accounts),
            Account {
                email: Unique::new("a@x".into()),
                handle: None,
            },
        )
        .expect("floating")
        .create()
        .await;
    match dup {
        Err(Error::UniqueViolation { field, table, .. }) => {
            assert_eq!(field, "email");
            assert_eq!(table, "__items__accounts__main");
        }
        other => panic!("expected a unique violation, got {other:?}"),
    }
    let all = korm::item::<Account>(pool)
        .query(rn(accounts))
        .get()
        .await
        .expect("query");
    assert_eq!(all.len(), 2, "the duplicate was not written");
    // A commit that takes another item's value is refused too.
    let second = korm::item::<Account>(pool)
        .query(rn(accounts))
        .filter(eq("email", "b@x"))
        .first()
        .await
        .expect("b");
    let clash = second.update(|a| *a.email = "a@x".into()).commit().await;
    assert!(
        matches!(clash, Err(Error::UniqueViolation { .. })),
        "{clash:?}"
    );
    // Once the holder is deleted, the value is free.
    first.delete().await.expect("delete");
    create(
        pool,
        accounts,
        Account {
            email: Unique::new("a@x".into()),
            handle: None,
        },
    )
    .await;
}

/// A field wrapped in `Unique` after items were stored without it: when its shadow column is
/// added, the old items' fingerprints are filled in, so a new or updated item can not take an
/// old item's value. Old items holding equal values refuse the change, naming both items
/// (never the value), and nothing is written until one of them changes.
pub async fn unique_added_later_covers_old_items(pool: &Pool) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Plain {
        email: Option<String>,
        n: i64,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Strict {
        email: Option<Unique<String>>,
        n: i64,
    }
    let strict = |email: &str| Strict {
        email: Some(Unique::new(email.to_owned())),
        n: 9,
    };
    let plain = |email: Option<&str>, n| Plain {
        email: email.map(str::to_owned),
        n,
    };
    let try_create = |collection: &'static str, data: Strict| async move {
        korm::item::<Strict>(pool)
            .from_data(rn(collection), data)
            .expect("floating")
            .create()
            .await
    };
    let root = |e: Error| match e {
        Error::WriteFailed { source, .. } => *source,
        other => other,
    };

    let late = "[rn]:members:late:*";
    create(pool, late, plain(Some("a@x"), 1)).await;
    create(pool, late, plain(Some("b@x"), 2)).await;
    create(pool, late, plain(None, 3)).await;
    // More than one backfill statement's worth of old items.
    let mut tx = korm::tx(pool);
    tx.create_all((0..300).map(|i| {
        korm::item::<Plain>(pool)
            .from_data(rn(late), plain(Some(&format!("m{i}@x")), i))
            .expect("floating")
    }));
    tx.persist().await.expect("300 old items");
    // This write adds the shadow: the old items' values are taken.
    let taken = try_create(late, strict("a@x")).await.map(|_| ());
    match taken.map_err(root) {
        Err(Error::UniqueViolation { field, .. }) => assert_eq!(field, "email"),
        other => panic!("an old item's value was taken: {other:?}"),
    }
    let fresh = try_create(late, strict("c@x")).await.expect("a new value");
    let moved = fresh
        .update(|s| s.email = Some(Unique::new("b@x".into())))
        .commit()
        .await;
    assert!(
        matches!(moved.map_err(root), Err(Error::UniqueViolation { .. })),
        "an update took an old item's value"
    );
    try_create(late, strict("d@x"))
        .await
        .expect("another new value");
    for old in ["m0@x", "m255@x", "m256@x", "m299@x"] {
        let taken = try_create(late, strict(old)).await.map(|_| ());
        assert!(
            matches!(taken.map_err(root), Err(Error::UniqueViolation { .. })),
            "{old} was taken"
        );
    }
    let all = korm::item::<Plain>(pool)
        .query(rn(late))
        .get()
        .await
        .expect("query");
    assert_eq!(all.len(), 305);

    let dups = "[rn]:members:dups:*";
    let first = create(pool, dups, plain(Some("x@x"), 1)).await;
    let second = create(pool, dups, plain(Some("x@x"), 2)).await;
    let refused = try_create(dups, strict("y@x")).await.map(|_| ());
    match refused.map_err(root) {
        Err(Error::Database { kind, message, .. }) => {
            assert_eq!(kind, korm::DbErrorKind::UniqueViolation);
            for item in [&first, &second] {
                let id = item.rn().id().expect("an item rn").to_owned();
                assert!(message.contains(&id), "{message:?} names {id}");
            }
            assert!(!message.contains("x@x"), "the value is not in {message:?}");
        }
        other => panic!("duplicates became unique: {other:?}"),
    }
    let all = korm::item::<Plain>(pool)
        .query(rn(dups))
        .get()
        .await
        .expect("query");
    assert_eq!(all.len(), 2, "the refused write wrote nothing");
    // Once the old items differ, the field becomes unique and covers them.
    second
        .update(|p| p.email = Some("z@x".into()))
        .commit()
        .await
        .expect("update");
    try_create(dups, strict("y@x")).await.expect("now unique");
    let taken = try_create(dups, strict("z@x")).await.map(|_| ());
    assert!(
        matches!(taken.map_err(root), Err(Error::UniqueViolation { .. })),
        "an old item's value was taken after the change"
    );
}

/// A transaction of many creates (the server layers write runs of them as multi-row
/// INSERTs): every item lands with its own values; a duplicate unique value deep in the run
/// fails the whole transaction, names its own op, and writes nothing.
pub async fn many_creates_in_one_tx_land_or_fail_together(pool: &Pool) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Account {
        email: Unique<String>,
        n: i64,
        note: Option<String>,
    }
    let accounts = "[rn]:accounts:bulk:*";
    let make = |i: usize, email: String| {
        korm::item::<Account>(pool)
            .from_data(
                rn(accounts),
                Account {
                    email: Unique::new(email),
                    n: i as i64,
                    note: i.is_multiple_of(3).then(|| format!("note {i}")),
                },
            )
            .expect("floating")
    };
    let mut tx = korm::tx(pool);
    let handles = tx.create_all((0..600).map(|i| make(i, format!("u{i}@x"))));
    let created = tx
        .persist()
        .await
        .expect("600 creates")
        .take_all(handles)
        .expect("items");
    assert_eq!(created.len(), 600);
    let mut stored = korm::item::<Account>(pool)
        .query(rn(accounts))
        .get()
        .await
        .expect("query");
    stored.sort_by_key(|a| a.data().n);
    assert_eq!(stored.len(), 600);
    for (i, item) in stored.iter().enumerate() {
        assert_eq!(item.data().n, i as i64);
        assert_eq!(*item.data().email, format!("u{i}@x"));
        assert_eq!(
            item.data().note,
            i.is_multiple_of(3).then(|| format!("note {i}"))
        );
    }
    // Op 300 of 400 takes the email of an item stored above.
    let mut tx = korm::tx(pool);
    tx.create_all((0..400).map(|i| {
        let email = if i == 300 {
            "u7@x".to_owned()
        } else {
            format!("v{i}@x")
        };
        make(1_000 + i, email)
    }));
    match tx.persist().await {
        Err(Error::WriteFailed { op, source, .. }) => {
            assert_eq!(op, 300, "the failing op is named");
            assert!(
                matches!(*source, Error::UniqueViolation { ref field, .. } if field == "email"),
                "{source:?}"
            );
        }
        other => panic!("expected the duplicate to fail the tx, got {other:?}"),
    }
    let count = korm::item::<Account>(pool)
        .query(rn(accounts))
        .count()
        .await
        .expect("count");
    assert_eq!(count, 600, "nothing of the failed tx was written");
}

pub async fn unique_nested_objects_collide_whatever_key_order(pool: &Pool) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Doc {
        key: Unique<Value>,
    }
    let docs = "[rn]:docs:keyed:*";
    create(
        pool,
        docs,
        Doc {
            key: Unique::new(json!({"a": 1, "b": {"c": [1, 2], "d": null}})),
        },
    )
    .await;
    let dup = korm::item::<Doc>(pool)
        .from_data(
            rn(docs),
            Doc {
                key: Unique::new(json!({"b": {"d": null, "c": [1, 2]}, "a": 1})),
            },
        )
        .expect("floating")
        .create()
        .await;
    assert!(
        matches!(dup, Err(Error::UniqueViolation { ref field, .. }) if field == "key"),
        "{dup:?}"
    );
    // A different array order is a different value.
    create(
        pool,
        docs,
        Doc {
            key: Unique::new(json!({"a": 1, "b": {"c": [2, 1], "d": null}})),
        },
    )
    .await;
}

pub async fn schema_mismatch_then_destructive(pool: &Pool) {
    #[derive(Debug, Serialize, Deserialize)]
    struct AgeAsText {
        username: String,
        age: String,
    }
    let item = create(pool, USERS, fred()).await;
    let wrong = korm::item::<AgeAsText>(pool)
        .from_data(
            rn(USERS),
            AgeAsText {
                username: "x".into(),
                age: "old".into(),
            },
        )
        .expect("floating")
        .create()
        .await;
    match wrong {
        Err(Error::SchemaMismatch {
            column,
            stored,
            found,
            ..
        }) => {
            assert_eq!(column, "age");
            assert_eq!(stored, korm::ColumnKind::Integer);
            assert_eq!(found, korm::ColumnKind::Text);
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
    assert_eq!(
        korm::item::<User>(pool)
            .query(rn(USERS))
            .get()
            .await
            .expect("query")
            .len(),
        1
    );
    // A whole number into a double column is fine.
    #[derive(Debug, Serialize, Deserialize)]
    struct ScoreInt {
        username: String,
        score: i64,
    }
    create(
        pool,
        USERS,
        ScoreInt {
            username: "int".into(),
            score: 3,
        },
    )
    .await;

    let recreated = korm::item::<AgeAsText>(pool)
        .from_data(
            rn(USERS),
            AgeAsText {
                username: "x".into(),
                age: "old".into(),
            },
        )
        .expect("floating")
        .create_with(WriteOptions::new().destructive(true))
        .await
        .expect("destructive create");
    let loaded = korm::item::<AgeAsText>(pool)
        .load(recreated.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data().age, "old");
    // The old integer values were dropped with the column.
    #[derive(Debug, Deserialize, Serialize)]
    struct AgeOnly {
        age: Option<String>,
    }
    let old = korm::item::<AgeOnly>(pool)
        .load(item.rn().clone().cast())
        .get()
        .await
        .expect("load");
    assert_eq!(old.data().age, None);
}

pub async fn filter_operators(pool: &Pool) {
    seed(pool).await;
    assert_eq!(names(pool, eq("username", "freddie")).await, ["freddie"]);
    assert_eq!(names(pool, eq("active", true)).await, ["freddie", "wilma"]);
    assert_eq!(
        names(pool, eq("nickname", Value::Null)).await,
        ["freddie", "pebbles", "wilma"]
    );
    assert_eq!(names(pool, gt("age", 38)).await, ["freddie", "wilma"]);
    assert_eq!(
        names(pool, gte("age", 38)).await,
        ["barney", "freddie", "wilma"]
    );
    assert_eq!(names(pool, lt("age", 38)).await, ["pebbles"]);
    assert_eq!(
        names(pool, lte("score", 88.25)).await,
        ["barney", "pebbles"]
    );
    assert_eq!(
        names(pool, like("username", "%e%")).await,
        ["barney", "freddie", "pebbles"]
    );
    assert_eq!(
        names(pool, in_list("age", [2, 40, 99])).await,
        ["pebbles", "wilma"]
    );
    assert!(
        names(pool, in_list("age", Vec::<i64>::new()))
            .await
            .is_empty()
    );
    assert_eq!(
        names(
            pool,
            or([
                eq("username", "barney"),
                and([gt("age", 39), lt("age", 41)])
            ])
        )
        .await,
        ["barney", "wilma"]
    );
    assert_eq!(
        names(pool, not(eq("active", true))).await,
        ["barney", "pebbles"]
    );
    assert_eq!(
        names(pool, eq("username", "freddie").or(eq("username", "wilma"))).await,
        ["freddie", "wilma"]
    );
    assert_eq!(names(pool, and([])).await.len(), 4);
    let bad = korm::item::<User>(pool)
        .query(rn(USERS))
        .filter(gt("age", Value::Null))
        .get()
        .await;
    assert!(matches!(bad, Err(Error::InvalidFilter { .. })), "{bad:?}");
    let bad = korm::item::<User>(pool)
        .query(rn(USERS))
        .filter(eq("tags", json!(["a"])))
        .get()
        .await;
    assert!(matches!(bad, Err(Error::InvalidFilter { .. })), "{bad:?}");
}

pub async fn json_paths_indexes_and_wildcards(pool: &Pool) {
    seed(pool).await;
    assert_eq!(
        names(pool, eq("address.city", "Rock Vegas")).await,
        ["wilma"]
    );
    assert_eq!(
        names(pool, eq("address.zip", Value::Null)).await,
        ["barney", "pebbles"]
    );
    assert_eq!(names(pool, eq("tags[1]", "bowling")).await, ["freddie"]);
    assert_eq!(names(pool, eq("tags[*]", "bowling")).await, ["freddie"]);
    assert_eq!(
        names(pool, eq("addresses[*].city", "Boulder")).await,
        ["wilma"]
    );
    assert_eq!(
        names(pool, eq("addresses[1].city", "Rock Vegas")).await,
        ["freddie"]
    );
    assert_eq!(
        names(pool, like("addresses[*].city", "Ro%")).await,
        ["freddie"]
    );
    assert_eq!(
        names(pool, eq("address.geo.lat", 1)).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names(pool, eq("nosuchfield", "x")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names(pool, eq("username.deeper", "x")).await,
        Vec::<String>::new()
    );
    // Nested wildcards over arrays of arrays.
    #[derive(Debug, Serialize, Deserialize)]
    struct Grid {
        name: String,
        rows: Value,
    }
    let grids = "[rn]:grids:all:*";
    create(
        pool,
        grids,
        Grid {
            name: "a".into(),
            rows: json!([[{"v": 1}], [{"v": 2}, "scalar"]]),
        },
    )
    .await;
    create(
        pool,
        grids,
        Grid {
            name: "b".into(),
            rows: json!([["x"], 5]),
        },
    )
    .await;
    let found = korm::item::<Grid>(pool)
        .query(rn(grids))
        .filter(eq("rows[*][*].v", 2))
        .get()
        .await
        .expect("query");
    assert_eq!(
        found
            .iter()
            .map(|g| g.data().name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    let found = korm::item::<Grid>(pool)
        .query(rn(grids))
        .filter(eq("rows[*][*]", "x"))
        .get()
        .await
        .expect("query");
    assert_eq!(
        found
            .iter()
            .map(|g| g.data().name.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
}

/// Equality is typed: a text equals only that text, never a number, a boolean, or an object
/// or array whose JSON reads the same (SQLite's `json_extract` gives those as JSON text).
pub async fn json_equality_matches_the_type_too(pool: &Pool) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Doc {
        name: String,
        meta: Value,
    }
    let docs = "[rn]:docs:typed:*";
    let values = [
        ("text", json!("gold")),
        ("text_array", json!("[1]")),
        ("array", json!([1])),
        ("text_object", json!("{\"a\":1}")),
        ("object", json!({"a": 1})),
        ("one", json!(1)),
        ("text_one", json!("1")),
        ("true", json!(true)),
        ("text_true", json!("true")),
    ];
    for (name, v) in &values {
        create(
            pool,
            docs,
            Doc {
                name: (*name).into(),
                meta: json!({ "v": v, "list": [v] }),
            },
        )
        .await;
    }
    let found = |filter| sorted_by(pool, docs, filter, |d: Doc| d.name);
    for path in ["meta.v", "meta.list[0]", "meta.list[*]"] {
        assert_eq!(found(eq(path, "gold")).await, ["text"], "{path}");
        assert_eq!(found(eq(path, "[1]")).await, ["text_array"], "{path}");
        assert_eq!(
            found(eq(path, "{\"a\":1}")).await,
            ["text_object"],
            "{path}"
        );
        assert_eq!(found(eq(path, "1")).await, ["text_one"], "{path}");
        assert_eq!(found(eq(path, 1)).await, ["one"], "{path}");
        assert_eq!(found(eq(path, true)).await, ["true"], "{path}");
        assert_eq!(
            found(in_list(path, [json!("[1]"), json!("gold"), json!("true")])).await,
            ["text", "text_array", "text_true"],
            "{path}"
        );
        assert_eq!(
            found(not(eq(path, "gold"))).await.len(),
            values.len() - 1,
            "{path}"
        );
    }
}

pub async fn not_keeps_rows_where_the_value_is_missing(pool: &Pool) {
    seed(pool).await;
    // nickname is null for three users: not(eq) must keep them (null is not "Barn").
    assert_eq!(
        names(pool, not(eq("nickname", "Barn"))).await,
        ["freddie", "pebbles", "wilma"]
    );
    assert_eq!(names(pool, not(eq("nosuchfield", "x"))).await.len(), 4);
    assert_eq!(
        names(pool, !eq("address.zip", "70777")).await,
        ["barney", "pebbles"]
    );
}

pub async fn sort_nulls_and_stability(pool: &Pool) {
    seed(pool).await;
    let sorted = |order| async move {
        korm::item::<User>(pool)
            .query(rn(USERS))
            .sort_by("nickname", order)
            .sort_by("age", SortOrder::Asc)
            .get()
            .await
            .expect("query")
            .into_iter()
            .map(|i| i.into_data().username)
            .collect::<Vec<_>>()
    };
    // Ascending: nulls last; descending: nulls first; ties broken by age.
    assert_eq!(
        sorted(SortOrder::Asc).await,
        ["barney", "pebbles", "wilma", "freddie"]
    );
    assert_eq!(
        sorted(SortOrder::Desc).await,
        ["pebbles", "wilma", "freddie", "barney"]
    );
    let by_city = korm::item::<User>(pool)
        .query(rn(USERS))
        .sort_by("address.city", SortOrder::Desc)
        .sort_by("username", SortOrder::Asc)
        .get()
        .await
        .expect("query")
        .into_iter()
        .map(|i| i.into_data().username)
        .collect::<Vec<_>>();
    assert_eq!(by_city, ["wilma", "barney", "freddie", "pebbles"]);
    let wildcard = korm::item::<User>(pool)
        .query(rn(USERS))
        .sort_by("tags[*]", SortOrder::Asc)
        .get()
        .await;
    assert!(
        matches!(wildcard, Err(Error::InvalidPath { .. })),
        "{wildcard:?}"
    );
}

pub async fn sort_rejects_non_scalars_unless_stringified(pool: &Pool) {
    seed(pool).await;
    let refused = korm::item::<User>(pool)
        .query(rn(USERS))
        .sort_by("address", SortOrder::Asc)
        .get()
        .await;
    match refused {
        Err(Error::NonScalarSort { path, found, .. }) => {
            assert_eq!(path, "address");
            assert_eq!(found, "an object");
        }
        other => panic!("expected NonScalarSort, got {other:?}"),
    }
    let allowed = korm::item::<User>(pool)
        .query(rn(USERS))
        .sort_by("tags", SortOrder::Asc)
        .allow_stringified_sort()
        .get()
        .await
        .expect("stringified sort");
    assert_eq!(allowed.len(), 4);
}

pub async fn first_and_first_n(pool: &Pool) {
    seed(pool).await;
    let users = korm::item::<User>(pool);
    let oldest = users
        .query(rn(USERS))
        .sort_by("age", SortOrder::Desc)
        .first()
        .await
        .expect("first");
    assert_eq!(oldest.data().username, "freddie");
    let two = users
        .query(rn(USERS))
        .sort_by("age", SortOrder::Asc)
        .first_n(2)
        .await
        .expect("first_n");
    assert_eq!(
        two.iter()
            .map(|i| i.data().username.as_str())
            .collect::<Vec<_>>(),
        ["pebbles", "barney"]
    );
    let none = users
        .query(rn(USERS))
        .filter(eq("username", "nobody"))
        .first()
        .await;
    assert!(matches!(none, Err(Error::NoMatch { .. })), "{none:?}");
    assert!(
        users
            .query(rn(USERS))
            .first_n(0)
            .await
            .expect("zero")
            .is_empty()
    );
}

pub async fn options_given_twice_are_rejected(pool: &Pool) {
    seed(pool).await;
    let users = korm::item::<User>(pool);
    // Two filters are not an option given twice: they AND (#18).
    let both = users
        .query(rn(USERS))
        .filter(eq("age", 41))
        .filter(eq("age", 38))
        .get()
        .await
        .expect("two filters");
    assert!(both.is_empty());
    let both = users
        .query(rn(USERS))
        .filter(gt("age", 30))
        .filter(lt("age", 40))
        .get()
        .await
        .expect("two filters");
    let names: Vec<&str> = both.iter().map(|u| u.data().username.as_str()).collect();
    assert_eq!(names, ["barney"]);
    let twice = users
        .query(rn(USERS))
        .sort_by("age", SortOrder::Asc)
        .sort_by("age", SortOrder::Desc)
        .get()
        .await;
    assert!(
        matches!(
            twice,
            Err(Error::InvalidOption {
                option: "sort_by",
                ..
            })
        ),
        "{twice:?}"
    );
}

pub async fn query_of_a_missing_table_is_empty(pool: &Pool) {
    let users = korm::item::<User>(pool);
    let collection = "[rn]:later:made:*";
    assert!(
        users
            .query(rn(collection))
            .get()
            .await
            .expect("empty")
            .is_empty()
    );
    assert!(
        users
            .query(rn(collection))
            .filter(eq("age", 1))
            .get()
            .await
            .expect("empty")
            .is_empty()
    );
    create(pool, collection, fred()).await;
    assert_eq!(
        users
            .query(rn(collection))
            .get()
            .await
            .expect("query")
            .len(),
        1,
        "a miss is never cached"
    );
}

pub async fn hostile_values_are_literals(pool: &Pool) {
    let mut evil = fred();
    evil.username = "x'); DROP TABLE \"__items__users__freetier\"; --".into();
    evil.tags = vec!["' OR 1=1 --".into()];
    create(pool, USERS, evil.clone()).await;
    create(pool, USERS, barney()).await;
    assert_eq!(
        names(pool, eq("username", evil.username.as_str())).await,
        [evil.username.clone()]
    );
    assert_eq!(
        names(pool, eq("tags[*]", "' OR 1=1 --")).await,
        [evil.username.clone()]
    );
    assert!(names(pool, eq("username", "' OR '1'='1")).await.is_empty());
    assert_eq!(
        korm::item::<User>(pool)
            .query(rn(USERS))
            .get()
            .await
            .expect("query")
            .len(),
        2
    );
}

pub async fn decode_errors_name_the_rn_not_the_value(pool: &Pool) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Secretive {
        code: String,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Numeric {
        code: i64,
    }
    let item = create(
        pool,
        "[rn]:codes:all:*",
        Secretive {
            code: "TOPSECRET-4242".into(),
        },
    )
    .await;
    let err = korm::item::<Numeric>(pool)
        .load(item.rn().clone().cast())
        .get()
        .await
        .expect_err("a string does not decode as i64");
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(item.rn().as_str()), "{message}");
    assert!(!message.contains("TOPSECRET"), "{message}");
}

pub async fn closed_pool_refuses_work(pool: &Pool) {
    let item = create(pool, USERS, fred()).await;
    pool.close().await;
    assert!(pool.is_closed());
    let err = korm::item::<User>(pool).load(item.rn().clone()).get().await;
    assert!(matches!(err, Err(Error::PoolClosed)), "{err:?}");
    assert!(matches!(
        item.update(|u| u.age = 1).commit().await,
        Err(Error::PoolClosed)
    ));
    pool.close().await; // twice is harmless
}

/// korm 1.5's own case: a tx whose second insert hits a schema mismatch leaves the first
/// insert rolled back, and names the failing op; with destructive it goes through.
pub async fn tx_second_insert_mismatch_rolls_back_the_first(pool: &Pool) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Text {
        v: String,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Number {
        v: i64,
    }
    create(pool, "[rn]:txs:numbers:*", Number { v: 1 }).await;
    let texts = korm::item::<Text>(pool);
    let first = texts
        .from_data(rn("[rn]:txs:texts:*"), Text { v: "first".into() })
        .expect("floating");
    let first_rn = first.rn().clone();
    let second = texts
        .from_data(rn("[rn]:txs:numbers:*"), Text { v: "second".into() })
        .expect("floating");
    let second_rn = second.rn().clone();
    let mut tx = korm::tx(pool);
    tx.create(first);
    tx.create(second);
    match tx.persist().await {
        Err(Error::WriteFailed { op, rn: at, source }) => {
            assert_eq!((op, at), (1, second_rn.to_string()));
            assert!(
                matches!(*source, Error::SchemaMismatch { .. }),
                "{source:?}"
            );
        }
        other => panic!("expected WriteFailed, got {other:?}"),
    }
    assert!(
        texts
            .load(first_rn.clone())
            .get_optional()
            .await
            .expect("load")
            .is_none(),
        "the first insert was rolled back"
    );
    let mut tx = korm::tx(pool);
    let first = tx.create(
        texts
            .from_data(first_rn.clone(), Text { v: "first".into() })
            .expect("floating"),
    );
    tx.create(
        texts
            .from_data(second_rn, Text { v: "second".into() })
            .expect("floating"),
    );
    let mut done = tx
        .persist_with(WriteOptions::new().destructive(true))
        .await
        .expect("destructive tx");
    assert_eq!(done.take(first).expect("first").data().v, "first");
}

/// Several changes on one layer land together: a create, a commit and a delete.
pub async fn tx_create_commit_delete_together(pool: &Pool) {
    let made = create(pool, USERS, fred()).await;
    let gone = create(pool, USERS, barney()).await;
    let users = korm::item::<User>(pool);
    let mut tx = korm::tx(pool);
    let new = tx.create(
        users
            .from_data(rn(USERS), User { age: 7, ..barney() })
            .expect("floating"),
    );
    let changed = tx.commit(made.update(|u| u.age = 42));
    let deleted = tx.delete(gone);
    let mut done = tx.persist().await.expect("persist");
    let new = done.take(new).expect("new");
    let changed = done.take(changed).expect("changed");
    let deleted = done.take(deleted).expect("deleted");
    assert_eq!(
        users
            .load(new.rn().clone())
            .get()
            .await
            .expect("load")
            .data()
            .age,
        7
    );
    assert_eq!(
        users
            .load(changed.rn().clone())
            .get()
            .await
            .expect("load")
            .data()
            .age,
        42
    );
    assert!(
        users
            .load(deleted.rn().clone())
            .get_optional()
            .await
            .expect("load")
            .is_none()
    );
}

/// The key ring every test binary installs: korm 1.5's fixture key is current, one older key
/// decrypts only. Installing it again is harmless (same keys), so tests can race to it.
pub fn install_test_keys() {
    let current = korm::crypto::EncryptionKey::from_hex(&"a1".repeat(32)).expect("fixture key");
    let old = korm::crypto::EncryptionKey::from_hex(&"b2".repeat(32)).expect("old key");
    korm::crypto::install(korm::crypto::KeyRing::new(current).with_old_key(old));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    food: String,
    pets: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SecretUser {
    username: String,
    age: i64,
    ssn: korm::Encrypted<String>,
    profile: Option<korm::Encrypted<Profile>>,
    password: korm::Password,
}

fn secret_user(name: &str, age: i64, ssn: &str, food: &str) -> SecretUser {
    SecretUser {
        username: name.into(),
        age,
        ssn: korm::Encrypted::new(ssn.into()),
        profile: Some(korm::Encrypted::new(Profile {
            food: food.into(),
            pets: vec!["Dino".into()],
        })),
        password: korm::Password::new(&format!("{name}-pw")).expect("hash"),
    }
}

async fn secret_names(pool: &Pool, filter: korm::Filter, limit: Option<u64>) -> Vec<String> {
    let query = korm::item::<SecretUser>(pool)
        .query(rn(USERS))
        .filter(filter)
        .sort_by("username", SortOrder::Asc);
    let items = match limit {
        Some(n) => query.first_n(n).await,
        None => query.get().await,
    }
    .expect("query");
    items.iter().map(|i| i.data().username.clone()).collect()
}

/// Encrypted fields and passwords round-trip, filter with eq/in_list in memory (inside and,
/// or, not, with a limit), and refuse every other operator.
pub async fn encrypted_fields_and_passwords(pool: &Pool) {
    install_test_keys();
    let fred = create(pool, USERS, secret_user("fred", 41, "078-05-1120", "ribs")).await;
    create(
        pool,
        USERS,
        secret_user("barney", 38, "219-09-9999", "cake"),
    )
    .await;
    create(
        pool,
        USERS,
        secret_user("wilma", 40, "078-05-1120", "salad"),
    )
    .await;

    let loaded = korm::item::<SecretUser>(pool)
        .load(fred.rn().clone())
        .get()
        .await
        .expect("load");
    let data = loaded.data();
    assert_eq!(data.ssn.reveal(), "078-05-1120");
    assert_eq!(
        data.profile.as_ref().map(|p| p.reveal().food.as_str()),
        Some("ribs")
    );
    assert!(data.password.verify("fred-pw") && !data.password.verify("barney-pw"));
    let shown = format!("{loaded:?} {}", loaded.show(korm::ShowOptions::new()));
    for secret in ["078-05-1120", "ribs", "fred-pw"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }

    let both = || vec!["fred".to_owned(), "wilma".to_owned()];
    assert_eq!(
        secret_names(pool, eq("ssn", "078-05-1120"), None).await,
        both()
    );
    assert_eq!(
        secret_names(pool, in_list("ssn", ["219-09-9999", "nope"]), None).await,
        vec!["barney"]
    );
    assert_eq!(
        secret_names(pool, and([gt("age", 40), eq("ssn", "078-05-1120")]), None).await,
        vec!["fred"]
    );
    assert_eq!(
        secret_names(
            pool,
            or([eq("ssn", "219-09-9999"), eq("username", "wilma")]),
            None
        )
        .await,
        vec!["barney", "wilma"]
    );
    assert_eq!(
        secret_names(pool, not(eq("ssn", "078-05-1120")), None).await,
        vec!["barney"]
    );
    assert_eq!(
        secret_names(pool, eq("profile.food", "cake"), None).await,
        vec!["barney"]
    );
    assert_eq!(
        secret_names(pool, eq("profile.pets[*]", "Dino"), None)
            .await
            .len(),
        3
    );
    // The limit applies after the in-memory part, not before it.
    assert_eq!(
        secret_names(pool, eq("ssn", "078-05-1120"), Some(1)).await,
        vec!["fred"]
    );
    assert!(
        secret_names(pool, eq("ssn", "000-00-0000"), None)
            .await
            .is_empty()
    );

    let users = korm::item::<SecretUser>(pool);
    for filter in [
        gt("ssn", "0"),
        like("ssn", "078%"),
        or([eq("age", 1), lte("profile.food", "x")]),
        eq("password", "fred-pw"),
    ] {
        let err = users
            .query(rn(USERS))
            .filter(filter.clone())
            .get()
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::InvalidFilter { .. }),
            "{filter:?}: {err:?}"
        );
        assert!(!err.to_string().contains("078-05"), "{err}");
    }
    let err = users
        .query(rn(USERS))
        .sort_by("ssn", SortOrder::Asc)
        .get()
        .await
        .expect_err("no sort on ciphertext");
    assert!(err.to_string().contains("encrypted"), "{err}");

    // A commit writes only the fields it changed (#16): an unchanged secret sealed under the
    // current key keeps its envelope; a changed one is sealed again (fresh nonce).
    let raw = |item: &korm::Item<Value>| item.data()["ssn"].clone();
    let load_raw = || async {
        korm::item::<Value>(pool)
            .load(rn(fred.rn().as_str()))
            .get()
            .await
            .expect("raw")
    };
    let before = load_raw().await;
    let loaded = loaded
        .update(|u| u.age = 42)
        .commit()
        .await
        .expect("commit");
    let after = load_raw().await;
    assert_eq!(raw(&before), raw(&after));
    loaded
        .update(|u| *u.ssn.reveal_mut() = "078-05-1121".into())
        .commit()
        .await
        .expect("commit the secret");
    let changed = load_raw().await;
    assert_ne!(raw(&after)["iv"], raw(&changed)["iv"]);
    assert_eq!(raw(&after)["keyId"], raw(&changed)["keyId"]);
    let again = korm::item::<SecretUser>(pool)
        .load(rn(fred.rn().as_str()))
        .get()
        .await
        .expect("load");
    assert_eq!(again.data().ssn.reveal(), "078-05-1121");
    assert_eq!(again.data().age, 42);
}

/// A value sealed with an older key reads back, and a commit re-seals it with the current key.
pub async fn old_keys_decrypt_and_commits_rotate(pool: &Pool) {
    install_test_keys();
    let old = korm::crypto::KeyRing::new(
        korm::crypto::EncryptionKey::from_hex(&"b2".repeat(32)).expect("old key"),
    );
    let sealed = old.encrypt("219-09-9999").expect("seal");
    let current_id = korm::crypto::key_ring()
        .expect("ring")
        .current_key_id()
        .to_owned();
    assert_ne!(sealed["keyId"], json!(current_id));
    let password = serde_json::to_value(korm::Password::new("pebbles").expect("hash")).expect("pw");
    let item = create(
        pool,
        USERS,
        json!({"username": "barney", "age": 38, "ssn": sealed, "password": password}),
    )
    .await;
    let typed = korm::item::<SecretUser>(pool)
        .load(rn(item.rn().as_str()))
        .get()
        .await
        .expect("old key decrypts");
    assert_eq!(typed.data().ssn.reveal(), "219-09-9999");
    typed.update(|u| u.age = 39).commit().await.expect("commit");
    let raw = korm::item::<Value>(pool)
        .load(rn(item.rn().as_str()))
        .get()
        .await
        .expect("raw");
    assert_eq!(raw.data()["ssn"]["keyId"], json!(current_id));
    let back: String = korm::crypto::key_ring()
        .expect("ring")
        .decrypt(&raw.data()["ssn"])
        .expect("current key");
    assert_eq!(back, "219-09-9999");
}

/// A Rust `f64` holding a whole number goes into an integer column (the column korm 1.5
/// makes from a JavaScript number such as `41`), as the integer it is; a fraction, or a
/// double too large to be an exact integer, is still a schema mismatch and writes nothing.
pub async fn a_whole_double_goes_into_an_integer_column(pool: &Pool) {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct AgeAsDouble {
        username: String,
        age: f64,
    }
    create(pool, USERS, fred()).await;
    let items = korm::item::<AgeAsDouble>(pool);
    let made = items
        .from_data(
            rn(USERS),
            AgeAsDouble {
                username: "double".into(),
                age: 42.0,
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("a whole double fits the integer column");
    let found = korm::item::<Value>(pool)
        .load(made.rn().clone().cast())
        .get()
        .await
        .expect("load");
    assert_eq!(found.data()["age"], json!(42), "stored as the integer");
    let updated = items
        .load(made.rn().clone())
        .get()
        .await
        .expect("load")
        .update(|d| d.age = -7_000.0)
        .commit()
        .await
        .expect("update");
    assert_eq!(updated.data().age, -7_000.0);
    let matched = korm::item::<AgeAsDouble>(pool)
        .query(rn(USERS))
        .filter(eq("age", -7_000))
        .get()
        .await
        .expect("query");
    assert_eq!(matched.len(), 1);
    // The item's before-image holds the double it wrote: a condition on it still holds
    // like the integer stored, so another writer's change is a conflict, not lost.
    korm::item::<Value>(pool)
        .load(made.rn().clone().cast())
        .get()
        .await
        .expect("load")
        .update(|v| v["age"] = json!(50))
        .commit()
        .await
        .expect("another writer");
    let lost = updated.update(|d| d.age = 43.0).commit().await;
    assert!(
        matches!(lost, Err(Error::Conflict { ref fields, .. }) if fields == &["age"]),
        "{lost:?}"
    );
    for refused in [42.5, 1e300] {
        let result = items
            .load(made.rn().clone())
            .get()
            .await
            .expect("load")
            .update(|d| d.age = refused)
            .commit()
            .await;
        assert!(
            matches!(
                result,
                Err(Error::SchemaMismatch {
                    stored: korm::ColumnKind::Integer,
                    found: korm::ColumnKind::Double,
                    ..
                })
            ),
            "{refused}: {result:?}"
        );
    }
    let kept = items.load(made.rn().clone()).get().await.expect("load");
    assert_eq!(kept.data().age, 50.0);
    // Outside a narrow (32-bit) integer column's range, a whole double is refused before
    // anything is written, as the integer would be; where the column holds 64 bits, stored.
    let wide = kept.update(|d| d.age = 3e9).commit().await;
    match wide {
        Ok(item) => assert_eq!(item.data().age, 3e9),
        Err(Error::Encode { what, reason }) => {
            assert!(what.contains("`age`"), "{what}");
            assert!(reason.contains("with_wide_integers"), "{reason}");
            let stored = items.load(made.rn().clone()).get().await.expect("load");
            assert_eq!(stored.data().age, 50.0, "nothing written");
        }
        Err(other) => panic!("expected the value or an encode error, got {other:?}"),
    }
}

/// A page filtered on an encrypted field (the filter runs in memory) reads whole chunks once
/// a chunk shows rows dropped: a page of 10 over 300 items with one match at the end takes
/// a few statements, not one per 11 rows read (a million rows took 90,000 statements).
pub async fn a_page_filtered_in_memory_reads_whole_chunks(pool: &Pool) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Holder {
        n: i64,
        ssn: korm::Encrypted<String>,
    }
    install_test_keys();
    let holders = korm::item::<Holder>(pool);
    let mut tx = korm::tx(pool);
    for n in 0..300 {
        let ssn = if n == 299 {
            "078-05-1120".to_owned()
        } else {
            format!("000-{n}")
        };
        tx.create(
            holders
                .from_data(
                    rn("[rn]:people:holders:*"),
                    Holder {
                        n,
                        ssn: korm::Encrypted::new(ssn),
                    },
                )
                .expect("floating"),
        );
    }
    tx.persist().await.expect("persist");
    let before = pool.read_statements("db").expect("layer");
    let page = holders
        .query(rn("[rn]:people:holders:*"))
        .filter(eq("ssn", "078-05-1120"))
        .sort_by("n", SortOrder::Asc)
        .page(10)
        .await
        .expect("page");
    let statements = pool.read_statements("db").expect("layer") - before;
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].data().n, 299);
    assert!(page.next.is_none());
    assert!(statements <= 4, "{statements} statements for one page");
}

/// An object rebuilt with the same content in another key order is unchanged, and the next
/// conditional write still holds: SQLite and MariaDB compare the JSON text a condition binds
/// byte for byte, so the before-image keeps the text as stored (it took the rebuilt order,
/// and the next commit of the object was a false conflict).
pub async fn an_object_rebuilt_in_another_key_order_is_no_conflict(pool: &Pool) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Tagged {
        n: i64,
        attrs: Value,
    }
    let items = korm::item::<Tagged>(pool);
    let made = items
        .from_data(
            rn("[rn]:people:tagged:*"),
            Tagged {
                n: 1,
                attrs: json!({"a": 1, "b": 2, "z": -0.0}),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    // The same content: other key order, the zero's sign lost (equal values, other text).
    let reordered = made
        .update(|t| {
            t.n = 2;
            t.attrs = json!({"b": 2, "a": 1, "z": 0.0});
        })
        .commit()
        .await
        .expect("commit n");
    let changed = reordered
        .update(|t| t.attrs = json!({"a": 1, "b": 3}))
        .commit()
        .await
        .expect("no conflict: nobody else wrote");
    let deleted = changed.delete().await;
    assert!(deleted.is_ok(), "{:?}", deleted.map(|_| ()));
}

/// A newtype model (`struct Doc(Inner)`) is written as its inner model and read back the
/// same way, by load, query and commit (it was written, then every read failed with
/// "invalid type: map, expected tuple struct").
pub async fn a_newtype_model_round_trips(pool: &Pool) {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Inner {
        title: String,
        pages: i64,
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Doc(Inner);
    let docs = korm::item::<Doc>(pool);
    let made = docs
        .from_data(
            rn("[rn]:docs:newtype:*"),
            Doc(Inner {
                title: "Quarry log".into(),
                pages: 3,
            }),
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    let loaded = docs.load(made.rn().clone()).get().await.expect("load");
    assert_eq!(loaded.data().0.title, "Quarry log");
    let updated = loaded
        .update(|d| d.0.pages = 4)
        .commit()
        .await
        .expect("commit");
    assert_eq!(updated.data().0.pages, 4);
    let found = docs
        .query(rn("[rn]:docs:newtype:*"))
        .filter(eq("pages", 4))
        .get()
        .await
        .expect("query");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].data(), updated.data());
    // A rebase reads the newtype from the merged row too.
    let stale = docs.load(made.rn().clone()).get().await.expect("load");
    updated
        .update(|d| d.0.pages = 5)
        .commit()
        .await
        .expect("another writer");
    let mut err = stale
        .update(|d| d.0.pages = 6)
        .commit()
        .await
        .expect_err("conflict");
    let back: korm::UncommittedItem<Doc> = err.take_conflicted().expect("handed back");
    let rebased = back.rebase().await.expect("rebase a newtype model");
    assert_eq!(rebased.data().0.pages, 6);
}

/// A field that is a user's newtype around `Unique` (or a float) is what the bare field
/// would be: unique (the newtype hid the marker, and duplicates went in), a top-level float
/// checked (NaN refused at encode). A whole number into a double column above 2^53, which a
/// double can not hold exactly, is a schema mismatch (it was rounded silently).
pub async fn newtype_fields_keep_their_markers_and_doubles_stay_exact(pool: &Pool) {
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Email(Unique<String>);
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Celsius(f64);
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Member {
        email: Email,
        temp: Celsius,
    }
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct WholeTemp {
        email: Email,
        temp: i64,
    }
    const MEMBERS: &str = "[rn]:people:members:*";
    let member = |email: &str, temp: f64| Member {
        email: Email(Unique::new(email.to_owned())),
        temp: Celsius(temp),
    };
    create(pool, MEMBERS, member("fred@example.com", 36.6)).await;
    let members = korm::item::<Member>(pool);
    let twice = members
        .from_data(rn(MEMBERS), member("fred@example.com", 37.0))
        .expect("floating")
        .create()
        .await;
    assert!(
        matches!(twice, Err(Error::UniqueViolation { .. })),
        "{:?}",
        twice.map(|_| ())
    );
    let nan = members
        .from_data(rn(MEMBERS), member("nan@example.com", f64::NAN))
        .expect("floating")
        .create()
        .await
        .map(|_| ());
    assert!(matches!(nan, Err(Error::Encode { .. })), "{nan:?}");
    let whole = |email: &str, temp: i64| {
        korm::item::<WholeTemp>(pool).from_data(
            rn(MEMBERS),
            WholeTemp {
                email: Email(Unique::new(email.to_owned())),
                temp,
            },
        )
    };
    whole("exact@example.com", 1 << 53)
        .expect("floating")
        .create()
        .await
        .expect("2^53 is exact as a double");
    let rounded = whole("big@example.com", (1 << 53) + 1)
        .expect("floating")
        .create()
        .await;
    assert!(
        matches!(
            rounded,
            Err(Error::SchemaMismatch {
                stored: korm::ColumnKind::Double,
                found: korm::ColumnKind::Integer,
                ..
            })
        ),
        "{:?}",
        rounded.map(|_| ())
    );
}
