//! Fast unit tests of the public API that need no database (the danger wrapper and the empty
//! item need a pool, so they use an in-memory one).

use std::collections::HashSet;

use korm::{
    ColumnKind, DbErrorKind, Error, Rn, RnForm, ShowOptions, Unique, WriteOptions, and, eq, gt,
    gte, in_list, like, lt, lte, not, or,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const UUID: &str = "3df3face-f377-4f86-9bb9-a9b4671a9441";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    username: String,
}

#[test]
fn filters_with_the_same_parts_are_equal() {
    assert_eq!(eq("age", 41), eq("age", 41));
    assert_ne!(eq("age", 41), eq("age", 42));
    assert_ne!(eq("age", 41), eq("Age", 41));
    assert_ne!(eq("age", 41), eq("age", "41"), "a number is not its text");
    assert_ne!(eq("age", 41), gt("age", 41));
    let ops = [
        eq("a", 1),
        gt("a", 1),
        gte("a", 1),
        lt("a", 1),
        lte("a", 1),
        like("a", "1"),
        in_list("a", [1]),
    ];
    for (i, x) in ops.iter().enumerate() {
        for (j, y) in ops.iter().enumerate() {
            assert_eq!(i == j, x == y, "{x:?} vs {y:?}");
        }
    }
    assert_eq!(eq("a", ()), eq("a", Value::Null));
    assert_eq!(in_list("y", [1, 2]), in_list("y", vec![json!(1), json!(2)]));
    assert_eq!(eq("m", json!({"k": [1]})), eq("m", json!({"k": [1]})));
}

#[test]
fn and_or_methods_flatten_into_the_helpers() {
    let f = eq("a", 1).and(gt("b", 2)).and(lt("c", 3));
    assert_eq!(f, and([eq("a", 1), gt("b", 2), lt("c", 3)]));
    let g = eq("a", 1).or(eq("a", 2)).or(eq("a", 3));
    assert_eq!(g, or([eq("a", 1), eq("a", 2), eq("a", 3)]));
    let mixed = eq("a", 1).or(eq("a", 2)).and(eq("b", 3));
    assert_eq!(mixed, and([or([eq("a", 1), eq("a", 2)]), eq("b", 3)]));
    assert_ne!(and([eq("a", 1), eq("b", 2)]), and([eq("b", 2), eq("a", 1)]));
    assert_ne!(and([eq("a", 1), eq("b", 2)]), or([eq("a", 1), eq("b", 2)]));
}

#[test]
fn empty_and_or_are_distinct_filters() {
    assert_eq!(and([]), and(Vec::new()));
    assert_eq!(or([]), or(Vec::new()));
    assert_ne!(and([]), or([]));
    assert_ne!(
        and([eq("a", 1)]),
        eq("a", 1),
        "a one-element and is kept as written"
    );
}

#[test]
fn the_not_operator_is_the_not_helper() {
    assert_eq!(!eq("a", 1), not(eq("a", 1)));
    assert_eq!(!!eq("a", 1), not(not(eq("a", 1))));
    assert_ne!(
        !!eq("a", 1),
        eq("a", 1),
        "double negation is kept, not simplified"
    );
    assert_eq!(!and([eq("a", 1)]), not(and([eq("a", 1)])));
}

#[test]
fn unique_is_transparent_to_serde() {
    fn same<T: Serialize + Clone + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
        value: T,
    ) {
        let wrapped = Unique::new(value.clone());
        let plain = serde_json::to_string(&value).expect("plain");
        assert_eq!(serde_json::to_string(&wrapped).expect("wrapped"), plain);
        let back: Unique<T> = serde_json::from_str(&plain).expect("deserialize");
        assert_eq!(back.into_inner(), value);
    }
    same("fred@bedrock.example".to_owned());
    same(42i64);
    same(-0.5f64);
    same(true);
    same(Some("x".to_owned()));
    same(Option::<i64>::None);
    same(vec![1, 2, 3]);
    same(json!({"b": 1, "a": [null, {"c": "d"}]}));
    same(User {
        username: "fred".into(),
    });

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Account {
        email: Unique<String>,
        alias: Option<Unique<String>>,
    }
    let account = Account {
        email: "fred@bedrock.example".to_owned().into(),
        alias: None,
    };
    let text = serde_json::to_string(&account).expect("serialize");
    assert_eq!(text, r#"{"email":"fred@bedrock.example","alias":null}"#);
    assert_eq!(
        serde_json::from_str::<Account>(&text).expect("deserialize"),
        account
    );
}

#[test]
fn unique_behaves_like_its_value() {
    let mut u = Unique::new("fred".to_owned());
    assert_eq!(u.len(), 4, "deref");
    u.push('!');
    assert_eq!(u.as_str(), "fred!", "deref_mut");
    assert_eq!(u.to_string(), "fred!", "display");
    assert_eq!(format!("{u:?}"), "Unique(\"fred!\")");
    assert_eq!(Unique::from(3), Unique::new(3));
    assert!(Unique::new(1) < Unique::new(2));
    assert_eq!(Unique::<i64>::default().into_inner(), 0);
}

#[test]
fn a_typed_rn_serializes_as_its_plain_string_inside_a_struct() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Car {
        owner: Rn<User>,
        previous: Option<Rn<User>>,
        files: Vec<Rn>,
    }
    let owner: Rn<User> = format!("[rn][from::userdb]:users:freetier:{UUID}")
        .parse()
        .expect("rn");
    let car = Car {
        owner: owner.clone(),
        previous: None,
        files: vec!["[rn][depot::files]:invoices:*".parse().expect("rn")],
    };
    let value = serde_json::to_value(&car).expect("serialize");
    assert_eq!(
        value,
        json!({
            "owner": format!("[rn][from::userdb]:users:freetier:{UUID}"),
            "previous": null,
            "files": ["[rn][depot::files]:invoices:*"],
        })
    );
    let back: Car = serde_json::from_value(value).expect("deserialize");
    assert_eq!(back, car);
    let bad = json!({ "owner": "[rn]:Users:x:*", "previous": null, "files": [] });
    let error = serde_json::from_value::<Car>(bad).expect_err("invalid rn");
    assert!(error.to_string().contains("invalid rn"), "{error}");
    let wrong_type = json!({ "owner": 5, "previous": null, "files": [] });
    assert!(serde_json::from_value::<Car>(wrong_type).is_err());
}

#[test]
fn rn_casts_keep_the_text_and_compare_by_text() {
    let typed: Rn<User> = format!("[rn]:users:freetier:{UUID}").parse().expect("rn");
    let untyped: Rn = typed.untyped();
    assert_eq!(untyped.as_str(), typed.as_str());
    let back: Rn<User> = untyped.clone().cast();
    assert_eq!(back, typed);
    assert_eq!(typed, format!("[rn]:users:freetier:{UUID}").as_str());
    let mut set: HashSet<Rn> = HashSet::new();
    set.insert(untyped.clone());
    assert!(set.contains(format!("[rn]:users:freetier:{UUID}").as_str()));
    assert_eq!(
        format!("{typed:?}"),
        format!("Rn(\"[rn]:users:freetier:{UUID}\")")
    );
    let upper = UUID.to_ascii_uppercase();
    let kept: Rn = format!("[rn][from::a][tag::v-2]:users:freetier:{upper}")
        .parse()
        .expect("rn");
    assert_eq!(
        kept.to_string(),
        format!("[rn][from::a][tag::v-2]:users:freetier:{upper}"),
        "printed back byte-identical"
    );
    assert_eq!(kept.get_mod("tag"), Some("v-2"));
    assert_eq!(kept.form(), RnForm::Item);
    let text: String = kept.to_string();
    assert_eq!(Rn::<()>::try_from(text).expect("owned"), kept);
}

#[test]
fn rn_builders_make_valid_rns() {
    let id = uuid::Uuid::parse_str(UUID).expect("uuid");
    let item = Rn::item("users", "freetier", id).expect("item");
    assert_eq!(item, format!("[rn]:users:freetier:{UUID}").as_str());
    assert_eq!(item.uuid(), Some(id));
    assert_eq!(item.collection(), "[rn]:users:freetier:*");
    let collection = Rn::collection_of("users", "freetier").expect("collection");
    assert_eq!(collection.form(), RnForm::Collection);
    assert_eq!(
        collection.table_name().as_deref(),
        Some("__items__users__freetier")
    );
    let with_layer = collection.with_layer("userdb").expect("layer");
    assert_eq!(with_layer, "[rn][from::userdb]:users:freetier:*");
    assert_eq!(with_layer.without_layer(), collection);
    let file = Rn::depot_file("files", &["invoices", "été.txt"]).expect("depot file");
    assert_eq!(file, "[rn][depot::files]:invoices:été.txt");
    assert_eq!(file.form(), RnForm::DepotFile);
    assert_eq!(file.collection(), "[rn][depot::files]:invoices:*");
    assert!(file.table_name().is_none());
    assert!(matches!(file.with_id(id), Err(Error::WrongRnForm { .. })));
    assert!(matches!(
        file.with_layer("db"),
        Err(Error::WrongRnForm { .. })
    ));
}

#[test]
fn write_and_show_options_builders() {
    assert_eq!(WriteOptions::new(), WriteOptions::default());
    assert!(!WriteOptions::new().destructive);
    assert!(WriteOptions::new().destructive(true).destructive);
    assert!(
        !WriteOptions::new()
            .destructive(true)
            .destructive(false)
            .destructive
    );
    assert_eq!(ShowOptions::new(), ShowOptions::default());
    assert!(!ShowOptions::new().color);
    assert!(ShowOptions::new().with_color(true).color);
    assert!(!ShowOptions::new().with_color(true).with_color(false).color);
}

#[test]
fn column_kind_accepts_the_same_kind_and_three_widenings() {
    let kinds = [
        ColumnKind::Text,
        ColumnKind::Integer,
        ColumnKind::Double,
        ColumnKind::Boolean,
        ColumnKind::Json,
        ColumnKind::RnRef,
        ColumnKind::Encrypted,
    ];
    for stored in kinds {
        for found in kinds {
            let expected = stored == found
                || (stored, found) == (ColumnKind::Double, ColumnKind::Integer)
                || (stored, found) == (ColumnKind::RnRef, ColumnKind::Text)
                || (stored, found) == (ColumnKind::Text, ColumnKind::RnRef);
            assert_eq!(stored.accepts(found), expected, "{stored} accepts {found}?");
        }
    }
    assert!(
        !ColumnKind::Integer.accepts(ColumnKind::Double),
        "no narrowing"
    );
    assert!(!ColumnKind::Json.accepts(ColumnKind::RnRef));
    assert!(!ColumnKind::Integer.accepts(ColumnKind::Boolean));
    let names: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    assert_eq!(
        names,
        [
            "text",
            "integer",
            "double",
            "boolean",
            "json",
            "rn_ref",
            "encrypted"
        ]
    );
    for k in kinds {
        assert_eq!(k.name(), k.to_string());
        assert_eq!(
            k.is_json(),
            matches!(k, ColumnKind::Json | ColumnKind::Encrypted)
        );
    }
}

fn assert_lowercase_start(message: &str) {
    let first = message.chars().next().expect("a message");
    assert!(!first.is_uppercase(), "starts lowercase: {message}");
}

#[test]
fn error_messages_are_lowercase_and_name_what_is_involved() {
    let rn = format!("[rn]:users:freetier:{UUID}");
    let cases: Vec<(Error, Vec<&str>)> = vec![
        (
            "[rn]:Users:freetier:*".parse::<Rn>().expect_err("invalid"),
            vec!["[rn]:Users:freetier:*", "namespace \"Users\""],
        ),
        (
            Error::WrongRnForm {
                rn: rn.clone(),
                reason: "needs a collection".into(),
            },
            vec![&rn, "needs a collection"],
        ),
        (
            Error::InvalidIdentifier {
                what: "field",
                name: "a b".into(),
                reason: "must match".into(),
            },
            vec!["field", "\"a b\""],
        ),
        (
            Error::InvalidPath {
                path: "a..b".into(),
                reason: "empty key".into(),
            },
            vec!["\"a..b\""],
        ),
        (Error::NotFound { rn: rn.clone() }, vec![&rn]),
        (Error::AlreadyExists { rn: rn.clone() }, vec![&rn]),
        (
            Error::UniqueViolation {
                table: "__items__users__freetier".into(),
                field: "email".into(),
                rn: rn.clone(),
            },
            vec!["\"email\"", "__items__users__freetier", &rn],
        ),
        (
            Error::SchemaMismatch {
                table: "__items__users__freetier".into(),
                column: "age".into(),
                stored: ColumnKind::Integer,
                found: ColumnKind::Text,
            },
            vec!["\"age\"", "integer", "text", "destructive"],
        ),
        (
            Error::UnknownLayer {
                layer: "nodb".into(),
                rn: rn.clone(),
                layers: "cardb, userdb".into(),
            },
            vec!["nodb", &rn, "cardb, userdb"],
        ),
        (
            Error::LayerNotNamed {
                rn: rn.clone(),
                layers: "cardb, userdb".into(),
            },
            vec![&rn, "[from::<layer>]"],
        ),
        (
            Error::Decode {
                rn: rn.clone(),
                reason: "missing field `username`".into(),
            },
            vec![&rn, "username"],
        ),
        (
            Error::NoMatch {
                rn: "[rn]:users:freetier:*".into(),
            },
            vec!["[rn]:users:freetier:*"],
        ),
        (Error::PoolClosed, vec!["closed"]),
        (
            Error::Database {
                layer: "db".into(),
                kind: DbErrorKind::Busy,
                code: Some("5".into()),
                message: "database is locked".into(),
                source: None,
            },
            vec!["\"db\"", "database busy"],
        ),
        (
            Error::OutcomeUnknown {
                layer: "db".into(),
                rn: rn.clone(),
                source: Box::new(Error::PoolClosed),
            },
            vec!["\"db\"", &rn, "unknown"],
        ),
    ];
    for (error, names) in cases {
        let message = error.to_string();
        assert_lowercase_start(&message);
        for name in names {
            assert!(message.contains(name), "{message:?} names {name:?}");
        }
    }
    let wrapped = Error::WriteFailed {
        op: 1,
        rn: rn.clone(),
        source: Box::new(Error::NotFound { rn: rn.clone() }),
    };
    assert_lowercase_start(&wrapped.to_string());
    let source = std::error::Error::source(&wrapped).expect("a source");
    assert_eq!(source.to_string(), format!("no item at {rn}"));
    fn is_send_sync<T: Send + Sync + 'static>() {}
    is_send_sync::<Error>();
}

#[test]
fn db_error_kinds_display_lowercase() {
    for kind in [
        DbErrorKind::Connect,
        DbErrorKind::Busy,
        DbErrorKind::UniqueViolation,
        DbErrorKind::ConstraintViolation,
        DbErrorKind::Schema,
        DbErrorKind::ConnectionLost,
        DbErrorKind::Other,
    ] {
        let text = kind.to_string();
        assert!(!text.is_empty());
        assert_eq!(text, text.to_lowercase(), "{kind:?}");
    }
}

#[tokio::test]
async fn danger_debug_prints_what_it_does_and_runs_only_through_danger() {
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .open()
        .await
        .expect("open");
    let users = korm::item::<User>(&pool);
    let fred = users
        .from_data(
            "[rn]:users:freetier:*".parse().expect("rn"),
            User {
                username: "fred".into(),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    let rn = fred.rn().clone();
    let deleted = fred.delete().await.expect("delete");
    let destroy = deleted.destroy();
    assert_eq!(destroy.what(), "destroy a deleted item");
    let debug = format!("{destroy:?}");
    assert!(debug.starts_with("Danger"), "{debug}");
    assert!(debug.contains("destroy a deleted item"), "{debug}");
    // Something is stored at the RN again, so the assertion below can only hold if destroy
    // removed it.
    users
        .from_data(
            rn.clone(),
            User {
                username: "fred again".into(),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create again");
    korm::danger(destroy).await.expect("destroy");
    assert!(
        users.load(rn).get_optional().await.expect("load").is_none(),
        "destroyed"
    );
    let empty = users.empty();
    assert!(empty.is_empty());
    assert!(format!("{empty:?}").starts_with("EmptyItem<"));
    pool.close().await;
}

/// The shape korm 1.5 checks an item id against (R2): a lowercase hyphenated UUIDv4.
fn korm15_accepts(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && id
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
        && groups[2].starts_with('4')
        && groups[3].starts_with(['8', '9', 'a', 'b'])
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis()
}

/// R2: new items get UUIDv4 ids whose first 48 bits are the time they were drawn, so ids of
/// items created later sort after earlier ones (rows land at the right edge of the
/// primary-key index); the other 74 bits are random.
#[tokio::test]
async fn new_item_ids_are_uuid_v4_prefixed_by_the_time() {
    let pool = korm::pool()
        .layer("db", korm::layers::sqlite_memory())
        .open()
        .await
        .expect("open");
    let users = korm::item::<User>(&pool);
    let collection: Rn<User> = "[rn]:users:freetier:*".parse().expect("rn");
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    for round in 0..3 {
        let before = unix_millis();
        for i in 0..200 {
            let item = users
                .from_data(
                    collection.clone(),
                    User {
                        username: format!("u{round}-{i}"),
                    },
                )
                .expect("floating");
            let id = item.rn().id().expect("an item rn has an id").to_owned();
            let uuid = uuid::Uuid::parse_str(&id).expect("a uuid");
            assert!(korm15_accepts(&id), "{id}");
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            let prefix = uuid.as_u128() >> 80;
            assert!(
                (before..=unix_millis()).contains(&prefix),
                "{id}: {prefix} is not the time it was drawn"
            );
            assert!(seen.insert(id.clone()), "{id} drawn twice");
            ids.push(id);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Across milliseconds, later ids sort later (within one, the random bits order them).
    for window in ids.chunks(200).collect::<Vec<_>>().windows(2) {
        let (earlier, later) = (&window[0], &window[1]);
        assert!(
            earlier.iter().max() < later.iter().min(),
            "ids not ordered by time"
        );
    }
    // The random part varies: 600 ids share no 74-bit tail.
    let tails: HashSet<u128> = ids
        .iter()
        .map(|id| uuid::Uuid::parse_str(id).expect("uuid").as_u128() & ((1 << 80) - 1))
        .collect();
    assert_eq!(tails.len(), ids.len());
    let direct = korm::rn::new_id().to_string();
    assert!(korm15_accepts(&direct), "{direct}");
    pool.close().await;
}

/// B1-B3: every backup future can be spawned on a multi-thread runtime (`tokio::spawn` needs
/// `Send`); a future that is not fails to build here.
#[allow(dead_code, reason = "checked by the compiler, never called")]
fn backup_futures_are_send(backups: &korm::backup::Backups<'_>, key: &korm::depots::DepotKey) {
    fn send<T: Send>(_: T) {}
    send(backups.now("db"));
    send(backups.list(None));
    send(backups.verify(key));
    send(backups.restore(key, "db", korm::backup::RestoreOptions::merge()));
}
