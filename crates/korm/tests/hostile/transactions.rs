//! Half-written rows: a write that fails midway leaves no row, no new column and no changed
//! value behind (the transaction rolls back DDL too). The schema checks that fail here come
//! before any DDL, so this holds on MySQL too, whose DDL commits on its own.

use korm::{Error, Unique};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{Backend, Db, create, create_err, rn, stored};

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

/// The declared type of a boolean column on each backend: SQLite's korm declaration,
/// PostgreSQL's `boolean`, MySQL's `BOOLEAN` (`tinyint(1)`).
fn boolean_type(db: &Db) -> &'static str {
    match db.backend {
        Backend::Postgres => "boolean",
        Backend::MySql => "tinyint(1)",
        _ => "boolean",
    }
}

/// The columns of the things table (through the second connection), or `None` in memory.
async fn columns(db: &Db) -> Option<Vec<String>> {
    match db.raw() {
        Some(raw) => Some(raw.columns(THINGS_TABLE).await),
        None => None,
    }
}

fn expect_columns(db: &Db, columns: Option<Vec<String>>, expected: &[&str], what: &str) {
    match columns {
        Some(columns) => assert_eq!(columns, expected, "{what}"),
        None => assert_eq!(db.backend, Backend::SqliteMemory),
    }
}

async fn a_create_failing_on_its_third_field_adds_no_row_and_no_column(db: &Db) {
    create(&db.pool, THINGS, Old { c: 1 }).await;
    expect_columns(db, columns(db).await, &["rnId", "c"], "created");
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
    expect_columns(
        db,
        columns(db).await,
        &["rnId", "c"],
        "the columns a and b added before the failure were rolled back",
    );
    assert_eq!(stored(&db.pool, THINGS).await, 1);
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
    if let Some(raw) = db.raw() {
        let declared = raw.column_type(THINGS_TABLE, "b").await;
        assert!(declared.starts_with(boolean_type(db)), "{declared}");
    }
    let loaded = korm::item::<Later>(&db.pool)
        .load(later.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data(), later.data());
}

async fn a_commit_failing_on_its_third_field_changes_nothing(db: &Db) {
    let mut data = Map::new();
    data.insert("c".into(), json!(1));
    let item = create(&db.pool, THINGS, data).await;
    let item_rn = item.rn().clone();
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
    expect_columns(db, columns(db).await, &["rnId", "c"], "unchanged");
    assert_c(db, &item_rn.cast()).await;
}

/// The things row `item` still holds `c = 1` (read through the second connection where the
/// backend has one, and by korm).
async fn assert_c(db: &Db, item: &korm::Rn<Old>) {
    if let Some(raw) = db.raw() {
        let sql = format!("SELECT {} FROM {}", raw.q("c"), raw.t(THINGS_TABLE));
        assert_eq!(raw.value(&sql, &[]).await.as_deref(), Some("1"));
    }
    let loaded = korm::item::<Old>(&db.pool)
        .load(item.clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data(), &Old { c: 1 });
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

async fn a_commit_violating_a_unique_field_leaves_the_old_row(db: &Db) {
    let accounts = "[rn]:accounts:main:*";
    let table = "__items__accounts__main";
    create(&db.pool, accounts, account("fred", "fred@bedrock.example")).await;
    let barney = create(
        &db.pool,
        accounts,
        account("barney", "barney@bedrock.example"),
    )
    .await;
    let barney_rn = barney.rn().clone();
    let rows_before = rows(db, table).await;
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
        rows(db, table).await,
        rows_before,
        "no column of the row changed"
    );
    let reloaded = korm::item::<Account>(&db.pool)
        .load(barney_rn)
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
    if let Some(raw) = db.raw() {
        assert_eq!(raw.count(table).await, 2);
    }
    assert_eq!(stored(&db.pool, accounts).await, 2);
}

/// Every column of every row of `table`, sorted by id, read through the second connection;
/// in memory (no second connection), korm's reading of the rows.
async fn rows(db: &Db, table: &str) -> Vec<Vec<Option<String>>> {
    let Some(raw) = db.raw() else {
        let mut rows: Vec<Vec<Option<String>>> = korm::item::<Account>(&db.pool)
            .query(rn("[rn]:accounts:main:*"))
            .get()
            .await
            .expect("query")
            .into_iter()
            .map(|i| {
                let a = i.data();
                vec![
                    i.rn().id().map(str::to_owned),
                    Some(a.name.clone()),
                    Some((*a.email).clone()),
                    Some(a.meta.to_string()),
                ]
            })
            .collect();
        rows.sort();
        return rows;
    };
    let sql = format!(
        "SELECT {}, {}, {}, {}, {} FROM {}",
        raw.q("rnId"),
        raw.q("name"),
        raw.q("email"),
        raw.text_of("meta"),
        raw.q("__korm_unique__email"),
        raw.t(table)
    );
    let mut rows = raw.rows(&sql, &[]).await;
    rows.sort();
    rows
}

async fn a_create_at_an_existing_rn_overwrites_nothing(db: &Db) {
    let first = create(&db.pool, THINGS, Old { c: 1 }).await;
    let error = korm::item::<Old>(&db.pool)
        .from_data(first.rn().clone(), Old { c: 2 })
        .expect("floating")
        .create()
        .await
        .expect_err("the rn is taken");
    assert!(matches!(error, Error::AlreadyExists { .. }), "{error:?}");
    assert_c(db, first.rn()).await;
    assert_eq!(stored(&db.pool, THINGS).await, 1);
}

/// The row is deleted behind korm's back (through the second connection; in memory, which
/// nothing else reaches, by korm itself from a second copy of the item).
async fn a_commit_of_an_item_deleted_meanwhile_does_not_resurrect_it(db: &Db) {
    let item = create(&db.pool, THINGS, Old { c: 1 }).await;
    match db.raw() {
        Some(raw) => {
            raw.exec(&format!("DELETE FROM {}", raw.t(THINGS_TABLE)), &[])
                .await;
        }
        None => {
            korm::item::<Old>(&db.pool)
                .load(item.rn().clone())
                .get()
                .await
                .expect("load a second copy")
                .delete()
                .await
                .expect("delete it");
        }
    }
    let error = item
        .update(|o| o.c = 2)
        .commit()
        .await
        .expect_err("the row is gone");
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    if let Some(raw) = db.raw() {
        assert_eq!(raw.count(THINGS_TABLE).await, 0);
    }
    assert_eq!(stored(&db.pool, THINGS).await, 0);
}

crate::on_backends!(
    a_create_failing_on_its_third_field_adds_no_row_and_no_column,
    a_commit_failing_on_its_third_field_changes_nothing,
    a_commit_violating_a_unique_field_leaves_the_old_row,
    a_create_at_an_existing_rn_overwrites_nothing,
    a_commit_of_an_item_deleted_meanwhile_does_not_resurrect_it,
);
