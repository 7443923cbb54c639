//! Half-written rows: a write that fails midway leaves no row, no new column and no changed
//! value behind (the transaction rolls back DDL too).

use korm::{Error, Unique};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{create, create_err, file_db, rn};

const THINGS: &str = "[rn]:things:mixed:*";
const THINGS_TABLE: &str = "__items__things__mixed";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Old {
    c: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct New {
    a: String,
    b: i64,
    c: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Later {
    a: String,
    b: bool,
    c: i64,
}

#[tokio::test]
async fn a_create_failing_on_its_third_field_adds_no_row_and_no_column() {
    let db = file_db().await;
    create(&db.pool, THINGS, Old { c: 1 }).await;
    assert_eq!(db.columns(THINGS_TABLE), ["rnId", "c"]);
    let error = create_err(
        &db.pool,
        THINGS,
        New {
            a: "new".into(),
            b: 2,
            c: "not an integer".into(),
        },
    )
    .await;
    match &error {
        Error::SchemaMismatch { column, .. } => assert_eq!(column, "c"),
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
    assert_eq!(
        db.columns(THINGS_TABLE),
        ["rnId", "c"],
        "the columns a and b added before the failure were rolled back"
    );
    assert_eq!(db.count(THINGS_TABLE), 1);
    // korm's schema cache forgot them too: `b` may now be created with another kind.
    let later = create(
        &db.pool,
        THINGS,
        Later {
            a: "later".into(),
            b: true,
            c: 3,
        },
    )
    .await;
    let declared: String = db
        .sql()
        .query_row(
            "SELECT type FROM pragma_table_info(?1) WHERE name = 'b'",
            [THINGS_TABLE],
            |r| r.get(0),
        )
        .expect("b's type");
    assert!(declared.starts_with("BOOLEAN"), "{declared}");
    let loaded = korm::item::<Later>(&db.pool)
        .load(later.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data(), later.data());
    db.pool.close().await;
}

#[tokio::test]
async fn a_commit_failing_on_its_third_field_changes_nothing() {
    let db = file_db().await;
    let mut data = Map::new();
    data.insert("c".into(), json!(1));
    let item = create(&db.pool, THINGS, data).await;
    let error = item
        .update(|d| {
            d.clear();
            d.insert("a".into(), json!("x"));
            d.insert("b".into(), json!(2));
            d.insert("c".into(), json!("not an integer"));
        })
        .commit()
        .await
        .expect_err("the kind of c changed");
    assert!(matches!(error, Error::SchemaMismatch { .. }), "{error:?}");
    assert_eq!(db.columns(THINGS_TABLE), ["rnId", "c"]);
    let c: i64 = db
        .sql()
        .query_row(&format!("SELECT c FROM \"{THINGS_TABLE}\""), [], |r| {
            r.get(0)
        })
        .expect("c");
    assert_eq!(c, 1);
    db.pool.close().await;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    name: String,
    email: Unique<String>,
    meta: Value,
}

fn account(name: &str, email: &str) -> Account {
    Account {
        name: name.into(),
        email: Unique::new(email.into()),
        meta: json!({ "n": name }),
    }
}

#[tokio::test]
async fn a_commit_violating_a_unique_field_leaves_the_old_row() {
    let db = file_db().await;
    let accounts = "[rn]:accounts:main:*";
    let table = "__items__accounts__main";
    create(&db.pool, accounts, account("fred", "fred@bedrock.example")).await;
    let barney = create(
        &db.pool,
        accounts,
        account("barney", "barney@bedrock.example"),
    )
    .await;
    let rows_before: Vec<(String, String, String)> = rows(&db, table);
    let error = barney
        .update(|a| {
            a.name = "changed".into();
            a.meta = json!({ "n": "changed" });
            a.email = Unique::new("fred@bedrock.example".into());
        })
        .commit()
        .await
        .expect_err("fred's email is taken");
    match &error {
        Error::UniqueViolation { field, .. } => assert_eq!(field, "email"),
        other => panic!("expected UniqueViolation, got {other:?}"),
    }
    assert_eq!(
        rows(&db, table),
        rows_before,
        "no column of the row changed"
    );
    let reloaded = korm::item::<Account>(&db.pool)
        .load(rn(&format!(
            "[rn]:accounts:main:{}",
            rows_before
                .iter()
                .find(|r| r.1 == "barney")
                .expect("barney")
                .0
        )))
        .get()
        .await
        .expect("load barney");
    assert_eq!(
        reloaded.data(),
        &account("barney", "barney@bedrock.example")
    );
    // A create with a taken value adds no row either.
    let error = create_err(
        &db.pool,
        accounts,
        account("wilma", "barney@bedrock.example"),
    )
    .await;
    assert!(matches!(error, Error::UniqueViolation { .. }), "{error:?}");
    assert_eq!(db.count(table), 2);
    db.pool.close().await;
}

fn rows(db: &crate::Db, table: &str) -> Vec<(String, String, String)> {
    let conn = db.sql();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT rnId, name, email || '|' || meta || '|' || __korm_unique__email FROM \"{table}\" ORDER BY rnId"
        ))
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test]
async fn a_create_at_an_existing_rn_overwrites_nothing() {
    let db = file_db().await;
    let first = create(&db.pool, THINGS, Old { c: 1 }).await;
    let error = korm::item::<Old>(&db.pool)
        .from_data(first.rn().clone(), Old { c: 2 })
        .expect("floating")
        .create()
        .await
        .expect_err("the rn is taken");
    assert!(matches!(error, Error::AlreadyExists { .. }), "{error:?}");
    let c: i64 = db
        .sql()
        .query_row(&format!("SELECT c FROM \"{THINGS_TABLE}\""), [], |r| {
            r.get(0)
        })
        .expect("c");
    assert_eq!(c, 1);
    assert_eq!(db.count(THINGS_TABLE), 1);
    db.pool.close().await;
}

#[tokio::test]
async fn a_commit_of_an_item_deleted_meanwhile_does_not_resurrect_it() {
    let db = file_db().await;
    let item = create(&db.pool, THINGS, Old { c: 1 }).await;
    db.exec(&format!("DELETE FROM \"{THINGS_TABLE}\""), []);
    let error = item
        .update(|o| o.c = 2)
        .commit()
        .await
        .expect_err("the row is gone");
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    assert_eq!(db.count(THINGS_TABLE), 0);
    db.pool.close().await;
}
