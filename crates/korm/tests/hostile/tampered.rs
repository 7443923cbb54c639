//! Tampered stored data, written with rusqlite behind korm's back: loads and queries give a
//! typed error (mostly `Error::Decode`), never a panic, and never quote the stored value.

use korm::{Error, Rn};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{Db, all_text, create, file_db, rn};

const SECRET: &str = "TAMPERED-SECRET-4711";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    name: String,
    age: i64,
    meta: Value,
    flag: bool,
}

fn row() -> Row {
    Row {
        name: "fred".into(),
        age: 41,
        meta: json!({"tier": "gold"}),
        flag: true,
    }
}

/// A fresh database with one good row in `[rn]:tamper:rows:*`, then `tamper` run on it with
/// the row's id as `?1`. Returns the database, the item RN and the table.
async fn tampered(tamper: &str) -> (Db, Rn<Row>, String) {
    let db = file_db().await;
    let item = create(&db.pool, "[rn]:tamper:rows:*", row()).await;
    let table = "__items__tamper__rows".to_owned();
    let id = item.rn().id().expect("id").to_owned();
    db.exec(&tamper.replace("{t}", &format!("\"{table}\"")), [id]);
    (db, item.rn().clone(), table)
}

/// Loads and queries the tampered row; both must fail with a typed error that does not
/// quote `SECRET`. Returns the errors.
async fn read_errors(db: &Db, item: &Rn<Row>, load_too: bool) -> Vec<Error> {
    let mut errors = Vec::new();
    if load_too {
        let loaded = korm::item::<Row>(&db.pool).load(item.clone()).get().await;
        match loaded {
            Ok(found) => panic!("load read tampered data as {:?}", found.data()),
            Err(e) => errors.push(e),
        }
    }
    let queried = korm::item::<Row>(&db.pool)
        .query(item.collection())
        .get()
        .await;
    match queried {
        Ok(found) => panic!(
            "query read tampered data as {:?}",
            found.iter().map(|i| i.data()).collect::<Vec<_>>()
        ),
        Err(e) => errors.push(e),
    }
    for e in &errors {
        let text = all_text(e);
        assert!(
            !text.contains(SECRET),
            "the error quotes the stored value: {text}"
        );
        assert!(
            !text.contains("TAMPERED"),
            "the error quotes the stored value: {text}"
        );
    }
    errors
}

fn assert_decode(errors: &[Error]) {
    for e in errors {
        assert!(
            matches!(e, Error::Decode { .. }),
            "expected Decode, got {e:?}"
        );
    }
}

#[tokio::test]
async fn tampered_malformed_json_in_a_json_column_is_decode() {
    let (db, item, _) = tampered(&format!(
        "UPDATE {{t}} SET meta = '{{\"tier\": \"{SECRET}' WHERE rnId = ?1"
    ))
    .await;
    assert_decode(&read_errors(&db, &item, true).await);
    // A map model, which takes any JSON, still can not read malformed JSON.
    let any = korm::item::<Map<String, Value>>(&db.pool)
        .load(item.clone().cast())
        .get()
        .await;
    assert!(matches!(any, Err(Error::Decode { .. })), "{any:?}");
    db.pool.close().await;
}

#[tokio::test]
async fn tampered_deeply_nested_json_is_decode_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let (db, item, _) =
        tampered(&format!("UPDATE {{t}} SET meta = '{deep}' WHERE rnId = ?1")).await;
    let errors = read_errors(&db, &item, true).await;
    assert_decode(&errors);
    db.pool.close().await;
}

#[tokio::test]
async fn tampered_blob_in_a_json_column_is_decode() {
    let (db, item, _) = tampered("UPDATE {t} SET meta = x'00ff10' WHERE rnId = ?1").await;
    assert_decode(&read_errors(&db, &item, true).await);
    db.pool.close().await;
}

#[tokio::test]
async fn tampered_blob_in_a_text_column_is_decode() {
    let (db, item, _) = tampered(&format!(
        "UPDATE {{t}} SET name = CAST('{SECRET}' AS BLOB) WHERE rnId = ?1"
    ))
    .await;
    assert_decode(&read_errors(&db, &item, true).await);
    db.pool.close().await;
}

#[tokio::test]
async fn tampered_text_in_an_integer_column_is_decode() {
    let (db, item, _) = tampered(&format!(
        "UPDATE {{t}} SET age = '{SECRET}' WHERE rnId = ?1"
    ))
    .await;
    assert_decode(&read_errors(&db, &item, true).await);
    db.pool.close().await;
}

#[tokio::test]
async fn tampered_non_utf8_text_is_decode() {
    let (db, item, _) =
        tampered("UPDATE {t} SET name = CAST(x'66ff72c3' AS TEXT) WHERE rnId = ?1").await;
    assert_decode(&read_errors(&db, &item, true).await);
    let (db2, item2, _) =
        tampered("UPDATE {t} SET meta = CAST(x'7b22ff223a317d' AS TEXT) WHERE rnId = ?1").await;
    assert_decode(&read_errors(&db2, &item2, true).await);
    db.pool.close().await;
    db2.pool.close().await;
}

#[tokio::test]
async fn tampered_infinite_real_in_an_integer_column_is_decode() {
    let (db, item, _) = tampered("UPDATE {t} SET age = 9e999 WHERE rnId = ?1").await;
    assert_decode(&read_errors(&db, &item, true).await);
    db.pool.close().await;
}

#[tokio::test]
async fn tampered_rn_id_that_is_not_a_uuid_is_decode() {
    let (db, item, _) = tampered(&format!(
        "UPDATE {{t}} SET rnId = '{SECRET}' WHERE rnId = ?1"
    ))
    .await;
    assert_decode(&read_errors(&db, &item, false).await);
    db.pool.close().await;
}

#[tokio::test]
async fn tampered_rn_id_with_sql_is_decode() {
    let (db, item, table) =
        tampered("UPDATE {t} SET rnId = '''; DROP TABLE x; --' WHERE rnId = ?1").await;
    assert_decode(&read_errors(&db, &item, false).await);
    assert_eq!(db.count(&table), 1);
    db.pool.close().await;
}

#[tokio::test]
async fn tampered_rn_id_null_is_decode() {
    let (db, item, _) = tampered("UPDATE {t} SET rnId = NULL WHERE rnId = ?1").await;
    assert_decode(&read_errors(&db, &item, false).await);
    db.pool.close().await;
}

#[tokio::test]
async fn tampered_rn_id_integer_is_decode() {
    let (db, item, _) = tampered("UPDATE {t} SET rnId = 42 WHERE rnId = ?1").await;
    assert_decode(&read_errors(&db, &item, false).await);
    db.pool.close().await;
}

#[tokio::test]
async fn tampered_rn_id_non_utf8_is_decode() {
    let (db, item, _) =
        tampered("UPDATE {t} SET rnId = CAST(x'ff00ff' AS TEXT) WHERE rnId = ?1").await;
    assert_decode(&read_errors(&db, &item, false).await);
    db.pool.close().await;
}

#[tokio::test]
async fn tampered_rn_id_that_is_a_uuid_v1_is_a_typed_error() {
    let (db, item, _) =
        tampered("UPDATE {t} SET rnId = '3df3face-f377-1f86-9bb9-a9b4671a9441' WHERE rnId = ?1")
            .await;
    let errors = read_errors(&db, &item, false).await;
    for e in &errors {
        assert!(
            matches!(e, Error::Decode { .. } | Error::InvalidRn { .. }),
            "{e:?}"
        );
    }
    db.pool.close().await;
}

#[tokio::test]
async fn a_queried_item_with_an_uppercase_id_loads_and_commits() {
    let db = file_db().await;
    let upper = "[rn]:tamper:rows:3DF3FACE-F377-4F86-9BB9-A9B4671A9441";
    let created = korm::item::<Row>(&db.pool)
        .from_data(rn(upper), row())
        .expect("an uppercase uuid is a valid item rn")
        .create()
        .await
        .expect("create");
    assert_eq!(created.rn(), upper, "the rn is kept as written");
    let queried = korm::item::<Row>(&db.pool)
        .query(rn("[rn]:tamper:rows:*"))
        .first()
        .await
        .expect("query");
    let queried_rn = queried.rn().clone();
    korm::item::<Row>(&db.pool)
        .load(queried_rn.clone())
        .get()
        .await
        .expect("the queried rn loads");
    queried
        .update(|r| r.age = 42)
        .commit()
        .await
        .expect("the queried item commits");
    assert_eq!(&queried_rn, created.rn(), "a query returns the stored rn");
    db.pool.close().await;
}

#[tokio::test]
async fn a_tampered_column_with_a_hostile_name_is_read_as_data() {
    let (db, item, table) = tampered("UPDATE {t} SET age = age WHERE rnId = ?1").await;
    db.exec(
        &format!("ALTER TABLE \"{table}\" ADD COLUMN \"x\"\"; DROP TABLE {table}; --\" TEXT"),
        [],
    );
    db.exec(
        &format!("UPDATE \"{table}\" SET \"x\"\"; DROP TABLE {table}; --\" = 'v'"),
        [],
    );
    let loaded = korm::item::<Row>(&db.pool)
        .load(item.clone())
        .get()
        .await
        .expect("an unknown column is ignored by a struct model");
    assert_eq!(loaded.data(), &row());
    let committed = loaded
        .update(|r| r.age = 42)
        .commit()
        .await
        .expect("commit beside a hostile column");
    assert_eq!(committed.data().age, 42);
    let as_map = korm::item::<Map<String, Value>>(&db.pool)
        .load(item.clone().cast())
        .get()
        .await
        .expect("a map model reads every column");
    assert_eq!(
        as_map.data().get(&format!("x\"; DROP TABLE {table}; --")),
        Some(&json!("v"))
    );
    // Writing that map back is refused: the name is not a safe identifier.
    let error = as_map
        .update(|m| {
            m.insert("age".into(), json!(43));
        })
        .commit()
        .await
        .expect_err("the hostile column name can not be written");
    assert!(
        matches!(error, Error::InvalidIdentifier { what: "field", .. }),
        "{error:?}"
    );
    assert_eq!(db.tables(), [table.as_str()]);
    assert_eq!(db.count(&table), 1);
    db.pool.close().await;
}

#[tokio::test]
async fn a_tampered_boolean_is_read_without_a_panic() {
    // The CHECK constraint korm declares keeps text out of a boolean column.
    let db = file_db().await;
    create(&db.pool, "[rn]:tamper:rows:*", row()).await;
    let refused = db
        .sql()
        .execute("UPDATE \"__items__tamper__rows\" SET flag = 'yes'", []);
    assert!(refused.is_err(), "the CHECK constraint refuses text");
    db.pool.close().await;
}

#[tokio::test]
async fn a_row_of_the_wrong_model_is_decode() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Car {
        make: String,
        year: i64,
    }
    let db = file_db().await;
    let item = create(&db.pool, "[rn]:tamper:rows:*", row()).await;
    let as_car: Rn<Car> = item.rn().clone().cast();
    let error = korm::item::<Car>(&db.pool)
        .load(as_car)
        .get()
        .await
        .expect_err("a Row is not a Car");
    assert!(matches!(error, Error::Decode { .. }), "{error:?}");
    db.pool.close().await;
}
