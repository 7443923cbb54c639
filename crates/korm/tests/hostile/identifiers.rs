//! Field and layer names that would reach SQL: unsafe ones are `InvalidIdentifier` before
//! anything is written; safe ones that are SQL keywords are quoted and work.

use std::collections::BTreeMap;

use korm::{Error, SortOrder, and, eq};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{create, create_err, file_db, rn};

const HOSTILE: &str = "[rn]:hostile:names:*";
const HOSTILE_TABLE: &str = "__items__hostile__names";

fn hostile_names() -> Vec<String> {
    vec![
        "x\"; DROP TABLE __items__hostile__names; --".into(),
        "x'; DROP TABLE t; --".into(),
        "a b".into(),
        "rnId".into(),
        "__korm_unique__x".into(),
        "__korm_meta".into(),
        "é".into(),
        "naïve".into(),
        String::new(),
        "a".repeat(65),
        "1a".into(),
        "a-b".into(),
        "a.b".into(),
        "a[0]".into(),
        "a;b".into(),
        "`a`".into(),
        "[a]".into(),
        "a\0b".into(),
        "a\tb".into(),
        "a\nb".into(),
        "a\u{200b}".into(),
        "*".into(),
        "a)".into(),
        "$a".into(),
    ]
}

#[tokio::test]
async fn hostile_field_names_in_a_map_model_create_nothing() {
    let db = file_db().await;
    for name in hostile_names() {
        let mut data = Map::new();
        data.insert("ok".into(), json!(1));
        data.insert(name.clone(), json!("value"));
        match create_err(&db.pool, HOSTILE, data).await {
            Error::InvalidIdentifier { what: "field", .. } => {}
            other => panic!("field {name:?}: expected InvalidIdentifier, got {other:?}"),
        }
    }
    assert!(
        db.tables().is_empty(),
        "no table may be created: {:?}",
        db.tables()
    );
    db.pool.close().await;
}

#[tokio::test]
async fn hostile_field_names_in_a_btreemap_model_leave_an_existing_table_alone() {
    let db = file_db().await;
    let mut good = BTreeMap::new();
    good.insert("ok".to_owned(), json!(1));
    create(&db.pool, HOSTILE, good).await;
    let columns = db.columns(HOSTILE_TABLE);
    for name in hostile_names() {
        let mut data: BTreeMap<String, Value> = BTreeMap::new();
        data.insert("ok".into(), json!(2));
        data.insert(name.clone(), json!("value"));
        match create_err(&db.pool, HOSTILE, data).await {
            Error::InvalidIdentifier { what: "field", .. } => {}
            other => panic!("field {name:?}: expected InvalidIdentifier, got {other:?}"),
        }
    }
    assert_eq!(db.tables(), [HOSTILE_TABLE]);
    assert_eq!(db.columns(HOSTILE_TABLE), columns);
    assert_eq!(db.count(HOSTILE_TABLE), 1);
    db.pool.close().await;
}

#[tokio::test]
async fn hostile_field_name_in_a_commit_writes_nothing() {
    let db = file_db().await;
    let mut good = Map::new();
    good.insert("ok".to_owned(), json!(1));
    let item = create(&db.pool, HOSTILE, good).await;
    let error = item
        .update(|data| {
            data.insert("ok".into(), json!(2));
            data.insert("a\"); DROP TABLE x; --".into(), json!(3));
        })
        .commit()
        .await
        .expect_err("a hostile field name can not be committed");
    assert!(
        matches!(error, Error::InvalidIdentifier { what: "field", .. }),
        "{error:?}"
    );
    let ok: i64 = db
        .sql()
        .query_row(&format!("SELECT ok FROM \"{HOSTILE_TABLE}\""), [], |r| {
            r.get(0)
        })
        .expect("read ok");
    assert_eq!(ok, 1, "the row is unchanged");
    assert_eq!(db.columns(HOSTILE_TABLE), ["rnId", "ok"]);
    db.pool.close().await;
}

#[tokio::test]
async fn a_serde_rename_to_sql_is_an_invalid_identifier() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Renamed {
        #[serde(rename = "name\" TEXT); DROP TABLE __items__hostile__names; --")]
        name: String,
    }
    let db = file_db().await;
    let error = create_err(
        &db.pool,
        HOSTILE,
        Renamed {
            name: "fred".into(),
        },
    )
    .await;
    assert!(
        matches!(error, Error::InvalidIdentifier { what: "field", .. }),
        "{error:?}"
    );
    assert!(db.tables().is_empty());
    db.pool.close().await;
}

#[tokio::test]
async fn field_names_at_the_length_limit() {
    let db = file_db().await;
    let mut data = Map::new();
    data.insert("a".repeat(64), json!(1));
    data.insert("_".into(), json!(2));
    data.insert("_0".into(), json!(3));
    data.insert("Z9_z".into(), json!(4));
    let item = create(&db.pool, HOSTILE, data.clone()).await;
    let loaded = korm::item::<Map<String, Value>>(&db.pool)
        .load(item.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data(), &data);
    let mut long = Map::new();
    long.insert("a".repeat(10 * 1024 * 1024), json!(1));
    let error = create_err(&db.pool, HOSTILE, long).await;
    assert!(
        matches!(error, Error::InvalidIdentifier { what: "field", .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().len() < 1_000,
        "the name is clipped in the message"
    );
    db.pool.close().await;
}

#[tokio::test]
async fn sql_keywords_and_rowid_as_field_names_are_quoted() {
    let db = file_db().await;
    let data = json!({
        "select": "s",
        "from": 1,
        "where": true,
        "order": 3,
        "group": [1, 2],
        "table": {"drop": "x"},
        "rowid": 5,
        "_rowid_": "r",
        "oid": 1.5,
        "index": null,
    });
    let Value::Object(data) = data else {
        unreachable!()
    };
    let item = create(&db.pool, HOSTILE, data.clone()).await;
    let mut other = data.clone();
    other.insert("order".into(), json!(1));
    other.insert("rowid".into(), json!(6));
    create(&db.pool, HOSTILE, other).await;
    let loaded = korm::item::<Map<String, Value>>(&db.pool)
        .load(item.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data(), &data);
    let found = korm::item::<Map<String, Value>>(&db.pool)
        .query(rn(HOSTILE))
        .filter(and([
            eq("select", "s"),
            eq("rowid", 5),
            eq("where", true),
            eq("table.drop", "x"),
            eq("group[1]", 2),
        ]))
        .get()
        .await
        .expect("query on keyword columns");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].rn(), item.rn());
    let sorted: Vec<Value> = korm::item::<Map<String, Value>>(&db.pool)
        .query(rn(HOSTILE))
        .sort_by("order", SortOrder::Asc)
        .get()
        .await
        .expect("sort by a keyword column")
        .into_iter()
        .map(|i| i.data()["order"].clone())
        .collect();
    assert_eq!(sorted, [json!(1), json!(3)]);
    assert_eq!(db.count("__items__hostile__names"), 2);
    db.pool.close().await;
}

#[tokio::test]
async fn field_names_differing_only_in_case_are_a_typed_error_and_write_nothing() {
    let db = file_db().await;
    // SQLite column names are case-insensitive: `Name` and `name` are one column, and `rnid`
    // is korm's key column.
    for names in [&["Name", "name"][..], &["rnid"][..], &["RNID"][..]] {
        let mut data = Map::new();
        for name in names {
            data.insert((*name).to_owned(), json!("x"));
        }
        let error = create_err(&db.pool, HOSTILE, data).await;
        assert!(
            matches!(
                error,
                Error::InvalidIdentifier { .. } | Error::Database { .. } | Error::Encode { .. }
            ),
            "{names:?}: {error:?}"
        );
        assert!(db.tables().is_empty(), "{names:?}: {:?}", db.tables());
    }
    // The same against an existing table.
    let mut good = Map::new();
    good.insert("name".to_owned(), json!("fred"));
    create(&db.pool, HOSTILE, good).await;
    for name in ["NAME", "rnid", "RnId"] {
        let mut data = Map::new();
        data.insert(name.to_owned(), json!("x"));
        let error = create_err(&db.pool, HOSTILE, data).await;
        assert!(
            matches!(
                error,
                Error::InvalidIdentifier { .. } | Error::Database { .. } | Error::Encode { .. }
            ),
            "{name}: {error:?}"
        );
        assert_eq!(db.count(HOSTILE_TABLE), 1, "{name}");
        assert_eq!(db.columns(HOSTILE_TABLE), ["rnId", "name"], "{name}");
    }
    db.pool.close().await;
}

#[tokio::test]
async fn hostile_layer_names_are_rejected_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in [
        "",
        "a b",
        "x'; DROP TABLE t; --",
        "a]",
        "a:b",
        "é",
        &"a".repeat(65),
    ] {
        let result = korm::pool()
            .layer(name, korm::layers::sqlite(dir.path().join("x.sqlite")))
            .open()
            .await;
        match result {
            Err(Error::InvalidIdentifier { what: "layer", .. }) => {}
            other => panic!("layer {name:?}: expected InvalidIdentifier, got {other:?}"),
        }
    }
    assert!(
        !dir.path().join("x.sqlite").exists(),
        "no database is opened for a pool that is rejected"
    );
}
