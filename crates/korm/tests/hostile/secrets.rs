//! Errors never contain a value that was written: provoke every error a stored secret can
//! reach and search its Display, Debug and sources for the secret.

use korm::{Error, Rn, SortOrder, Unique, eq, gt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{Db, all_text, create, create_err, rn};

/// A distinctive value that must never appear in an error.
const SECRET: &str = "zq-078-05-1120-SECRET-SSN";

fn assert_no_secret(what: &str, error: &Error) {
    let text = all_text(error);
    assert!(
        !text.contains(SECRET),
        "{what}: the error leaks the value: {text}"
    );
    assert!(
        !text.contains("SECRET"),
        "{what}: the error leaks part of the value: {text}"
    );
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Person {
    name: String,
    ssn: Unique<String>,
    age: i64,
    meta: Value,
}

fn person(ssn: &str) -> Person {
    Person {
        name: "fred".into(),
        ssn: Unique::new(ssn.into()),
        age: 41,
        meta: json!({"ssn": ssn, "list": [ssn]}),
    }
}

async fn write_errors_never_contain_the_written_value(db: &Db) {
    let people = "[rn]:people:all:*";
    let fred = create(&db.pool, people, person(SECRET)).await;

    let duplicate = create_err(&db.pool, people, person(SECRET)).await;
    assert!(
        matches!(duplicate, Error::UniqueViolation { .. }),
        "{duplicate:?}"
    );
    assert_no_secret("unique violation", &duplicate);

    let existing = korm::item::<Person>(&db.pool)
        .from_data(fred.rn().clone(), person("other"))
        .expect("floating")
        .create()
        .await
        .expect_err("already exists");
    assert_no_secret("already exists", &existing);

    // The kind of `age` changes to text: a schema mismatch.
    let mut wrong_kind = Map::new();
    wrong_kind.insert("age".into(), json!(SECRET));
    let mismatch = create_err(&db.pool, people, wrong_kind).await;
    assert!(
        matches!(mismatch, Error::SchemaMismatch { .. }),
        "{mismatch:?}"
    );
    assert_no_secret("schema mismatch", &mismatch);

    // A boolean written into an integer column, with the secret beside it.
    let mut bool_age = Map::new();
    bool_age.insert("name".into(), json!(SECRET));
    bool_age.insert("age".into(), json!(true));
    let mismatch = create_err(&db.pool, people, bool_age).await;
    assert_no_secret("schema mismatch beside a secret", &mismatch);

    let other = create(&db.pool, people, person("someone-else")).await;
    let commit = other
        .update(|p| p.ssn = Unique::new(SECRET.into()))
        .commit()
        .await
        .expect_err("duplicate on commit");
    assert_no_secret("unique violation on commit", &commit);
}

async fn query_errors_never_contain_a_value(db: &Db) {
    let people = "[rn]:people:all:*";
    create(&db.pool, people, person(SECRET)).await;
    let query = || korm::item::<Person>(&db.pool).query(rn(people));
    let errors = [
        query()
            .filter(eq("meta", json!({ "ssn": SECRET })))
            .get()
            .await,
        query().filter(eq("meta", json!([SECRET]))).get().await,
        query().filter(gt("age", Value::Null)).get().await,
        query().sort_by("meta", SortOrder::Asc).get().await,
        query().sort_by("meta.list", SortOrder::Desc).get().await,
        // A count with a limit is refused (a second filter is not: filters AND).
        query()
            .filter(eq("name", SECRET))
            .limit(1)
            .count()
            .await
            .map(|_| Vec::new()),
        query()
            .filter(eq("name", "nobody"))
            .first()
            .await
            .map(|i| vec![i]),
    ];
    for (i, result) in errors.into_iter().enumerate() {
        let error = result.expect_err("the query must fail");
        assert_no_secret(&format!("query error {i}"), &error);
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Typed {
    age: i64,
}

/// Stores `value` in field `age` through a map model, in a collection of its own
/// (`[rn]:people:{kind}:*`), then loads it as [`Typed`].
async fn decode_error_for(db: &Db, kind: &str, value: Value) -> Error {
    let mut data = Map::new();
    data.insert("age".into(), value);
    let item = create(&db.pool, &format!("[rn]:people:{kind}:*"), data).await;
    let error = korm::item::<Typed>(&db.pool)
        .load(item.rn().clone().cast())
        .get()
        .await
        .expect_err("the stored value is not an i64");
    assert!(matches!(error, Error::Decode { .. }), "{error:?}");
    error
}

async fn decode_errors_never_contain_the_stored_value(db: &Db) {
    for (i, value) in [
        json!(SECRET),
        json!({ "ssn": SECRET }),
        json!([SECRET]),
        json!(format!("{SECRET}`")),
        json!(format!("`{SECRET}")),
        json!(format!("a'{SECRET}'")),
        json!(format!("{SECRET}\\")),
    ]
    .into_iter()
    .enumerate()
    {
        let error = decode_error_for(db, &format!("raw{i}"), value.clone()).await;
        assert_no_secret(&format!("decode of {value}"), &error);
    }
}

async fn decode_errors_never_contain_a_stored_value_with_quotes(db: &Db) {
    for (i, value) in [
        json!(format!("x\"{SECRET}")),
        json!(format!("\"{SECRET}\"")),
        json!(format!("x\\\"{SECRET}")),
    ]
    .into_iter()
    .enumerate()
    {
        let error = decode_error_for(db, &format!("quoted{i}"), value.clone()).await;
        assert_no_secret(&format!("decode of {value}"), &error);
    }
}

async fn decode_errors_never_contain_an_unknown_enum_variant(db: &Db) {
    #[derive(Debug, Serialize, Deserialize)]
    enum Tier {
        Gold,
        Silver,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Member {
        tier: Tier,
    }
    let mut data = Map::new();
    data.insert("tier".into(), json!(SECRET));
    let item = create(&db.pool, "[rn]:people:members:*", data).await;
    let error = korm::item::<Member>(&db.pool)
        .load(item.rn().clone().cast())
        .get()
        .await
        .expect_err("not a variant");
    assert!(matches!(error, Error::Decode { .. }), "{error:?}");
    assert_no_secret("unknown variant", &error);
}

async fn decode_errors_of_other_types_never_contain_the_stored_value(db: &Db) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Reference {
        owner: Rn,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Flag {
        on: bool,
    }
    #[derive(Debug, Serialize, Deserialize)]
    struct Letter {
        c: char,
    }
    for (field, value) in [
        ("owner", json!(format!("[rn]:{SECRET}:x:*"))),
        ("owner", json!(format!("not an rn {SECRET}"))),
        ("on", json!(SECRET)),
        ("c", json!(SECRET)),
    ] {
        let mut data = Map::new();
        data.insert(field.into(), value);
        let item = create(&db.pool, &format!("[rn]:people:{field}:*"), data).await;
        let error = match field {
            "owner" => korm::item::<Reference>(&db.pool)
                .load(item.rn().clone().cast())
                .get()
                .await
                .map(|_| ()),
            "on" => korm::item::<Flag>(&db.pool)
                .load(item.rn().clone().cast())
                .get()
                .await
                .map(|_| ()),
            _ => korm::item::<Letter>(&db.pool)
                .load(item.rn().clone().cast())
                .get()
                .await
                .map(|_| ()),
        }
        .expect_err("does not decode");
        assert!(matches!(error, Error::Decode { .. }), "{field}: {error:?}");
        assert_no_secret(field, &error);
    }
}

async fn encode_errors_never_contain_the_value(db: &Db) {
    #[derive(Debug, Serialize, Deserialize)]
    struct Huge {
        secret: String,
        n: i128,
    }
    let error = create_err(
        &db.pool,
        "[rn]:people:huge:*",
        Huge {
            secret: SECRET.into(),
            n: i128::MAX,
        },
    )
    .await;
    assert!(matches!(error, Error::Encode { .. }), "{error:?}");
    assert_no_secret("encode", &error);
}

crate::on_backends!(
    write_errors_never_contain_the_written_value,
    query_errors_never_contain_a_value,
    decode_errors_never_contain_the_stored_value,
    decode_errors_never_contain_a_stored_value_with_quotes,
    decode_errors_never_contain_an_unknown_enum_variant,
    decode_errors_of_other_types_never_contain_the_stored_value,
    encode_errors_never_contain_the_value,
);
