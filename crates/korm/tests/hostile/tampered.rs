//! Tampered stored data, written through the test's own connection behind korm's back: loads
//! and queries give a typed error (mostly `Error::Decode`), never a panic, and never quote the
//! stored value.
//!
//! Each backend is tampered with in its own SQL. A server's typed columns refuse much of what
//! SQLite's type affinity takes (text in an integer column, bytes that are not UTF-8, malformed
//! JSON in `jsonb` or in MariaDB's `json_valid`-checked `LONGTEXT`): there the refusal is the
//! outcome, and the row reads back as korm wrote it. The in-memory database has no second
//! connection, so nothing but korm writes it: there each test's outcome is that the row korm
//! wrote reads back whole.

use korm::{Error, Rn};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{Db, Param, Raw, Sql, all_text, create, rn};

const SECRET: &str = "TAMPERED-SECRET-4711";
const ROWS: &str = "[rn]:tamper:rows:*";
const TABLE: &str = "__items__tamper__rows";

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

/// One good row in `[rn]:tamper:rows:*`.
async fn good_row(db: &Db) -> Rn<Row> {
    create(&db.pool, ROWS, row()).await.rn().clone()
}

/// Runs `UPDATE <table> SET <set> WHERE "rnId" = <the item's id>` on the raw connection:
/// `{v}` in `set` is the first placeholder (bound to `value`), `{c}` quotes a column name.
async fn tamper(raw: &Raw, item: &Rn<Row>, set: &str, value: Option<Param>) -> Result<u64, String> {
    let set = set.replace("{v}", &raw.p(1));
    let set = quote_columns(raw, &set);
    let id_p = if value.is_some() { 2 } else { 1 };
    let sql = format!(
        "UPDATE {} SET {set} WHERE {} = {}",
        raw.t(TABLE),
        raw.q("rnId"),
        raw.p(id_p)
    );
    let mut params: Vec<Param> = value.into_iter().collect();
    params.push(item.id().expect("id").into());
    raw.try_exec(&sql, &params).await
}

/// `{c:name}` quoted as the raw connection quotes identifiers.
fn quote_columns(raw: &Raw, sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(start) = rest.find("{c:") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').expect("closing brace");
        out.push_str(&raw.q(&rest[start + 3..end]));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The tampering statement ran.
fn stored(result: Result<u64, String>) {
    assert_eq!(result, Ok(1), "the tampering statement changes the row");
}

/// The database refused the tampering statement (a server's typed column).
fn refused(result: Result<u64, String>) {
    assert!(result.is_err(), "the database took it: {result:?}");
}

/// The row reads back as korm wrote it, by load and by query.
async fn reads_back(db: &Db, item: &Rn<Row>) {
    let loaded = korm::item::<Row>(&db.pool)
        .load(item.clone())
        .get()
        .await
        .expect("load the untouched row");
    assert_eq!(loaded.data(), &row());
    let all = korm::item::<Row>(&db.pool)
        .query(rn(ROWS))
        .get()
        .await
        .expect("query the untouched row");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].data(), &row());
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

async fn tampered_malformed_json_in_a_json_column_is_decode(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    let malformed = format!("{{\"tier\": \"{SECRET}");
    match raw.sql() {
        Sql::Sqlite => {
            stored(tamper(raw, &item, "{c:meta} = {v}", Some(malformed.into())).await);
            assert_decode(&read_errors(db, &item, true).await);
            // A map model, which takes any JSON, still can not read malformed JSON.
            let any = korm::item::<Map<String, Value>>(&db.pool)
                .load(item.clone().cast())
                .get()
                .await;
            assert!(matches!(any, Err(Error::Decode { .. })), "{any:?}");
        }
        // jsonb parses what it stores; MariaDB's JSON column checks json_valid.
        Sql::Postgres | Sql::MySql => {
            refused(tamper(raw, &item, "{c:meta} = {v}", Some(malformed.into())).await);
            reads_back(db, &item).await;
        }
    }
}

async fn tampered_deeply_nested_json_is_decode_not_a_stack_overflow(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let set = format!("{{c:meta}} = {}", raw.json_p(1));
    match raw.sql() {
        Sql::Sqlite => {
            stored(tamper(raw, &item, &set, Some(deep.into())).await);
            assert_decode(&read_errors(db, &item, true).await);
        }
        // PostgreSQL's jsonb parser stops at its stack depth limit; MariaDB's json_valid at
        // 32 levels.
        Sql::Postgres | Sql::MySql => {
            refused(tamper(raw, &item, &set, Some(deep.into())).await);
            reads_back(db, &item).await;
        }
    }
}

async fn tampered_blob_in_a_json_column_is_decode(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    match raw.sql() {
        Sql::Sqlite => {
            stored(tamper(raw, &item, "{c:meta} = x'00ff10'", None).await);
            assert_decode(&read_errors(db, &item, true).await);
        }
        Sql::Postgres => {
            refused(tamper(raw, &item, "{c:meta} = '\\x00ff10'::bytea", None).await);
            reads_back(db, &item).await;
        }
        Sql::MySql => {
            refused(tamper(raw, &item, "{c:meta} = x'00ff10'", None).await);
            reads_back(db, &item).await;
        }
    }
}

async fn tampered_blob_in_a_text_column_is_decode(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    match raw.sql() {
        Sql::Sqlite => {
            let set = "{c:name} = CAST({v} AS BLOB)";
            stored(tamper(raw, &item, set, Some(SECRET.into())).await);
            assert_decode(&read_errors(db, &item, true).await);
        }
        // PostgreSQL assigns bytes to text as their text form, `\x` and hex digits: text, read
        // as the text it is.
        Sql::Postgres => {
            let set = "{c:name} = CAST({v} AS bytea)";
            stored(tamper(raw, &item, set, Some(SECRET.into())).await);
            let loaded = korm::item::<Row>(&db.pool)
                .load(item.clone())
                .get()
                .await
                .expect("the text form of bytes is text");
            assert_eq!(loaded.data().name, format!("\\x{}", hex::encode(SECRET)));
        }
        // A MySQL text column converts bytes to its character set: the value is text again,
        // and reads as the text it is.
        Sql::MySql => {
            let set = "{c:name} = CAST({v} AS BINARY)";
            stored(tamper(raw, &item, set, Some(SECRET.into())).await);
            let loaded = korm::item::<Row>(&db.pool)
                .load(item.clone())
                .get()
                .await
                .expect("text converted from bytes is text");
            assert_eq!(loaded.data().name, SECRET);
        }
    }
}

async fn tampered_text_in_an_integer_column_is_decode(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    let result = tamper(raw, &item, "{c:age} = {v}", Some(SECRET.into())).await;
    match raw.sql() {
        Sql::Sqlite => {
            stored(result);
            assert_decode(&read_errors(db, &item, true).await);
        }
        // Typed integer columns refuse text; another program changing the column to text
        // first gets it in, and korm reads text where the model wants an integer.
        Sql::Postgres | Sql::MySql => {
            refused(result);
            reads_back(db, &item).await;
            let alter = match raw.sql() {
                Sql::Postgres => format!(
                    "ALTER TABLE {} ALTER COLUMN {} TYPE text",
                    raw.t(TABLE),
                    raw.q("age")
                ),
                _ => format!("ALTER TABLE {} MODIFY {} TEXT", raw.t(TABLE), raw.q("age")),
            };
            raw.exec(&alter, &[]).await;
            stored(tamper(raw, &item, "{c:age} = {v}", Some(SECRET.into())).await);
            assert_decode(&read_errors(db, &item, true).await);
        }
    }
}

async fn tampered_non_utf8_text_is_decode(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    match raw.sql() {
        Sql::Sqlite => {
            stored(tamper(raw, &item, "{c:name} = CAST(x'66ff72c3' AS TEXT)", None).await);
            assert_decode(&read_errors(db, &item, true).await);
            stored(tamper(raw, &item, "{c:name} = 'fred'", None).await);
            reads_back(db, &item).await;
            let set = "{c:meta} = CAST(x'7b22ff223a317d' AS TEXT)";
            stored(tamper(raw, &item, set, None).await);
            assert_decode(&read_errors(db, &item, true).await);
        }
        // PostgreSQL checks every text against the database encoding.
        Sql::Postgres => {
            let set = "{c:name} = convert_from('\\x66ff72c3'::bytea, 'UTF8')";
            refused(tamper(raw, &item, set, None).await);
            let set = "{c:meta} = convert_from('\\x7b22ff223a317d'::bytea, 'UTF8')::jsonb";
            refused(tamper(raw, &item, set, None).await);
            reads_back(db, &item).await;
        }
        // utf8mb4 columns refuse bytes that are not UTF-8 (strict mode).
        Sql::MySql => {
            refused(tamper(raw, &item, "{c:name} = x'66ff72c3'", None).await);
            refused(tamper(raw, &item, "{c:meta} = x'7b22ff223a317d'", None).await);
            reads_back(db, &item).await;
        }
    }
}

async fn tampered_infinite_real_in_an_integer_column_is_decode(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    match raw.sql() {
        Sql::Sqlite => {
            stored(tamper(raw, &item, "{c:age} = 9e999", None).await);
            assert_decode(&read_errors(db, &item, true).await);
        }
        Sql::Postgres => {
            refused(tamper(raw, &item, "{c:age} = 'Infinity'::float8", None).await);
            reads_back(db, &item).await;
        }
        // MySQL has no infinite DOUBLE at all.
        Sql::MySql => {
            refused(tamper(raw, &item, "{c:age} = 9e999", None).await);
            reads_back(db, &item).await;
        }
    }
}

async fn tampered_rn_id_that_is_not_a_uuid_is_decode(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    stored(tamper(raw, &item, "{c:rnId} = {v}", Some(SECRET.into())).await);
    assert_decode(&read_errors(db, &item, false).await);
}

async fn tampered_rn_id_with_sql_is_decode(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    let set = "{c:rnId} = '''; DROP TABLE x; --'";
    stored(tamper(raw, &item, set, None).await);
    assert_decode(&read_errors(db, &item, false).await);
    assert_eq!(raw.count(TABLE).await, 1);
}

async fn tampered_rn_id_null_is_decode(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    let result = tamper(raw, &item, "{c:rnId} = NULL", None).await;
    match raw.sql() {
        // SQLite lets a non-integer primary key be NULL (a documented quirk).
        Sql::Sqlite => {
            stored(result);
            assert_decode(&read_errors(db, &item, false).await);
        }
        Sql::Postgres | Sql::MySql => {
            refused(result);
            reads_back(db, &item).await;
        }
    }
}

async fn tampered_rn_id_integer_is_decode(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    // SQLite stores the integer; the servers' text key columns store its text, `42`.
    stored(tamper(raw, &item, "{c:rnId} = 42", None).await);
    assert_decode(&read_errors(db, &item, false).await);
}

async fn tampered_rn_id_non_utf8_is_decode(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    match raw.sql() {
        Sql::Sqlite => {
            let set = "{c:rnId} = CAST(x'ff00ff' AS TEXT)";
            stored(tamper(raw, &item, set, None).await);
            assert_decode(&read_errors(db, &item, false).await);
        }
        Sql::Postgres => {
            let set = "{c:rnId} = convert_from('\\xff00ff'::bytea, 'UTF8')";
            refused(tamper(raw, &item, set, None).await);
            reads_back(db, &item).await;
        }
        Sql::MySql => {
            refused(tamper(raw, &item, "{c:rnId} = x'ff00ff'", None).await);
            reads_back(db, &item).await;
        }
    }
}

async fn tampered_rn_id_that_is_a_uuid_v1_is_a_typed_error(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    let set = "{c:rnId} = '3df3face-f377-1f86-9bb9-a9b4671a9441'";
    stored(tamper(raw, &item, set, None).await);
    let errors = read_errors(db, &item, false).await;
    for e in &errors {
        assert!(
            matches!(e, Error::Decode { .. } | Error::InvalidRn { .. }),
            "{e:?}"
        );
    }
}

async fn a_queried_item_with_an_uppercase_id_loads_and_commits(db: &Db) {
    let upper = "[rn]:tamper:rows:3DF3FACE-F377-4F86-9BB9-A9B4671A9441";
    let created = korm::item::<Row>(&db.pool)
        .from_data(rn(upper), row())
        .expect("an uppercase uuid is a valid item rn")
        .create()
        .await
        .expect("create");
    assert_eq!(created.rn(), upper, "the rn is kept as written");
    let queried = korm::item::<Row>(&db.pool)
        .query(rn(ROWS))
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
}

async fn a_tampered_column_with_a_hostile_name_is_read_as_data(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    let hostile = format!("x\"; DROP TABLE {TABLE}; --");
    let text = match raw.sql() {
        Sql::Postgres => "text",
        _ => "TEXT",
    };
    raw.exec(
        &format!(
            "ALTER TABLE {} ADD COLUMN {} {text}",
            raw.t(TABLE),
            raw.q(&hostile)
        ),
        &[],
    )
    .await;
    raw.exec(
        &format!("UPDATE {} SET {} = 'v'", raw.t(TABLE), raw.q(&hostile)),
        &[],
    )
    .await;
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
    assert_eq!(as_map.data().get(&hostile), Some(&json!("v")));
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
    assert_eq!(raw.tables().await, [TABLE]);
    assert_eq!(raw.count(TABLE).await, 1);
}

async fn a_tampered_boolean_is_read_without_a_panic(db: &Db) {
    let item = good_row(db).await;
    let Some(raw) = db.raw() else {
        return reads_back(db, &item).await;
    };
    let result = tamper(raw, &item, "{c:flag} = 'yes'", None).await;
    match raw.sql() {
        // The CHECK constraint korm declares keeps text out of a boolean column.
        Sql::Sqlite => refused(result),
        // PostgreSQL reads 'yes' as a boolean literal: true.
        Sql::Postgres => {
            stored(result);
            reads_back(db, &item).await;
            stored(tamper(raw, &item, "{c:flag} = 'no'", None).await);
            let loaded = korm::item::<Row>(&db.pool)
                .load(item.clone())
                .get()
                .await
                .expect("load");
            assert!(!loaded.data().flag);
        }
        // BOOLEAN is TINYINT(1): strict mode refuses text; any other small integer fits,
        // and reads as SQL reads it, true when not 0.
        Sql::MySql => {
            refused(result);
            stored(tamper(raw, &item, "{c:flag} = 0", None).await);
            let loaded = korm::item::<Row>(&db.pool).load(item.clone()).get().await;
            assert!(!loaded.expect("load").data().flag);
            stored(tamper(raw, &item, "{c:flag} = 2", None).await);
            reads_back(db, &item).await;
        }
    }
}

async fn a_row_of_the_wrong_model_is_decode(db: &Db) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Car {
        make: String,
        year: i64,
    }
    let item = create(&db.pool, ROWS, row()).await;
    let as_car: Rn<Car> = item.rn().clone().cast();
    let error = korm::item::<Car>(&db.pool)
        .load(as_car)
        .get()
        .await
        .expect_err("a Row is not a Car");
    assert!(matches!(error, Error::Decode { .. }), "{error:?}");
}

crate::on_backends!(
    tampered_malformed_json_in_a_json_column_is_decode,
    tampered_deeply_nested_json_is_decode_not_a_stack_overflow,
    tampered_blob_in_a_json_column_is_decode,
    tampered_blob_in_a_text_column_is_decode,
    tampered_text_in_an_integer_column_is_decode,
    tampered_non_utf8_text_is_decode,
    tampered_infinite_real_in_an_integer_column_is_decode,
    tampered_rn_id_that_is_not_a_uuid_is_decode,
    tampered_rn_id_with_sql_is_decode,
    tampered_rn_id_null_is_decode,
    tampered_rn_id_integer_is_decode,
    tampered_rn_id_non_utf8_is_decode,
    tampered_rn_id_that_is_a_uuid_v1_is_a_typed_error,
    a_queried_item_with_an_uppercase_id_loads_and_commits,
    a_tampered_column_with_a_hostile_name_is_read_as_data,
    a_tampered_boolean_is_read_without_a_panic,
    a_row_of_the_wrong_model_is_decode,
);
