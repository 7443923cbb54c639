//! Field and layer names that would reach SQL: unsafe ones are `InvalidIdentifier` before
//! anything is written; safe ones that are SQL keywords are quoted and work.

use std::collections::BTreeMap;

use korm::{Error, SortOrder, and, eq};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{Db, create, create_err, rn, stored};

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

async fn hostile_field_names_in_a_map_model_create_nothing(db: &Db) {
    for name in hostile_names() {
        let mut data = Map::new();
        data.insert("ok".into(), json!(1));
        data.insert(name.clone(), json!("value"));
        match create_err(&db.pool, HOSTILE, data).await {
            Error::InvalidIdentifier { what: "field", .. } => {}
            other => panic!("field {name:?}: expected InvalidIdentifier, got {other:?}"),
        }
    }
    assert_no_table(db).await;
}

/// No table was created: through the second connection where the backend has one, and
/// through korm's reads everywhere.
async fn assert_no_table(db: &Db) {
    if let Some(raw) = db.raw() {
        let tables = raw.tables().await;
        assert!(tables.is_empty(), "no table may be created: {tables:?}");
    }
    assert_eq!(stored(&db.pool, HOSTILE).await, 0);
}

async fn hostile_field_names_in_a_btreemap_model_leave_an_existing_table_alone(db: &Db) {
    let mut good = BTreeMap::new();
    good.insert("ok".to_owned(), json!(1));
    create(&db.pool, HOSTILE, good).await;
    let columns = match db.raw() {
        Some(raw) => raw.columns(HOSTILE_TABLE).await,
        None => Vec::new(),
    };
    for name in hostile_names() {
        let mut data: BTreeMap<String, Value> = BTreeMap::new();
        data.insert("ok".into(), json!(2));
        data.insert(name.clone(), json!("value"));
        match create_err(&db.pool, HOSTILE, data).await {
            Error::InvalidIdentifier { what: "field", .. } => {}
            other => panic!("field {name:?}: expected InvalidIdentifier, got {other:?}"),
        }
    }
    if let Some(raw) = db.raw() {
        assert_eq!(raw.tables().await, [HOSTILE_TABLE]);
        assert_eq!(raw.columns(HOSTILE_TABLE).await, columns);
        assert_eq!(raw.count(HOSTILE_TABLE).await, 1);
    }
    assert_eq!(stored(&db.pool, HOSTILE).await, 1);
}

async fn hostile_field_name_in_a_commit_writes_nothing(db: &Db) {
    let mut good = Map::new();
    good.insert("ok".to_owned(), json!(1));
    let item = create(&db.pool, HOSTILE, good).await;
    let rn = item.rn().clone();
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
    if let Some(raw) = db.raw() {
        let sql = format!("SELECT {} FROM {}", raw.q("ok"), raw.t(HOSTILE_TABLE));
        let ok = raw.value(&sql, &[]).await;
        assert_eq!(ok.as_deref(), Some("1"), "the row is unchanged");
        assert_eq!(raw.columns(HOSTILE_TABLE).await, ["rnId", "ok"]);
    }
    let loaded = korm::item::<Map<String, Value>>(&db.pool)
        .load(rn)
        .get()
        .await
        .expect("load");
    assert_eq!(
        loaded.data().get("ok"),
        Some(&json!(1)),
        "the row is unchanged"
    );
    assert_eq!(loaded.data().len(), 1, "no column was added");
}

async fn a_serde_rename_to_sql_is_an_invalid_identifier(db: &Db) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Renamed {
        #[serde(rename = "name\" TEXT); DROP TABLE __items__hostile__names; --")]
        name: String,
    }
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
    assert_no_table(db).await;
}

/// The longest field name korm takes is 64 bytes; PostgreSQL keeps column names of 63 bytes
/// at most (it would cut longer ones), so there the longest is 63 and 64 is refused.
async fn field_names_at_the_length_limit(db: &Db) {
    let longest = db.backend.column_limit().unwrap_or(64).min(64);
    if longest < 64 {
        let mut over = Map::new();
        over.insert("a".repeat(64), json!(1));
        let error = create_err(&db.pool, HOSTILE, over).await;
        assert!(
            matches!(error, Error::InvalidIdentifier { what: "field", .. }),
            "{error:?}"
        );
        assert_no_table(db).await;
    }
    let mut data = Map::new();
    data.insert("a".repeat(longest), json!(1));
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
}

async fn sql_keywords_and_rowid_as_field_names_are_quoted(db: &Db) {
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
    if let Some(raw) = db.raw() {
        assert_eq!(raw.count("__items__hostile__names").await, 2);
    }
    assert_eq!(stored(&db.pool, HOSTILE).await, 2);
}

async fn field_names_differing_only_in_case_are_a_typed_error_and_write_nothing(db: &Db) {
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
        assert_no_table(db).await;
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
        if let Some(raw) = db.raw() {
            assert_eq!(raw.count(HOSTILE_TABLE).await, 1, "{name}");
            assert_eq!(raw.columns(HOSTILE_TABLE).await, ["rnId", "name"], "{name}");
        }
        assert_eq!(stored(&db.pool, HOSTILE).await, 1, "{name}");
    }
}

/// A pool naming its layer with a hostile name is refused at open, before the layer is
/// opened: nothing is created on the backend (on a SQLite file, not even the file).
async fn hostile_layer_names_are_rejected_at_open(db: &Db) {
    let fresh_file = db.dir().join("x.sqlite");
    for name in [
        "",
        "a b",
        "x'; DROP TABLE t; --",
        "a]",
        "a:b",
        "é",
        &"a".repeat(65),
    ] {
        let layer = match db.backend {
            crate::Backend::SqliteFile | crate::Backend::SqliteFileNormal => {
                korm::layers::sqlite(&fresh_file).into()
            }
            _ => db.layer(),
        };
        let result = korm::pool().layer(name, layer).open().await;
        match result {
            Err(Error::InvalidIdentifier { what: "layer", .. }) => {}
            other => panic!("layer {name:?}: expected InvalidIdentifier, got {other:?}"),
        }
    }
    assert!(
        !fresh_file.exists(),
        "no database is opened for a pool that is rejected"
    );
    if let Some(raw) = db.raw() {
        assert!(raw.tables().await.is_empty());
    }
}

crate::on_backends!(
    hostile_field_names_in_a_map_model_create_nothing,
    hostile_field_names_in_a_btreemap_model_leave_an_existing_table_alone,
    hostile_field_name_in_a_commit_writes_nothing,
    a_serde_rename_to_sql_is_an_invalid_identifier,
    field_names_at_the_length_limit,
    sql_keywords_and_rowid_as_field_names_are_quoted,
    field_names_differing_only_in_case_are_a_typed_error_and_write_nothing,
    hostile_layer_names_are_rejected_at_open,
);
