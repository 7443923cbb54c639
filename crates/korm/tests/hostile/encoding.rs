//! Models korm can not store: each is `Error::Encode` (or `InvalidIdentifier`) at create, and
//! nothing is written.

use std::collections::{BTreeMap, HashMap};

use korm::Error;
use serde::de::DeserializeOwned;
use serde::ser::{Error as _, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::json;

use crate::{Db, create, create_err, rn, stored};

const THINGS: &str = "[rn]:things:odd:*";
const THINGS_TABLE: &str = "__items__things__odd";

/// Creates `data`, which must fail with `Error::Encode`, and checks that nothing was written
/// (no table, through the second connection where the backend has one; no item, through korm).
async fn assert_not_encodable<T>(db: &Db, what: &str, data: T)
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let error = create_err(&db.pool, THINGS, data).await;
    assert!(matches!(error, Error::Encode { .. }), "{what}: {error:?}");
    let message = error.to_string();
    assert!(message.starts_with("can not encode"), "{what}: {message}");
    assert_nothing_written(db, what).await;
}

/// No table on the database (where a second connection reaches it), no item in korm's reads.
async fn assert_nothing_written(db: &Db, what: &str) {
    if let Some(raw) = db.raw() {
        let tables = raw.tables().await;
        assert!(tables.is_empty(), "{what}: {tables:?}");
    }
    assert_eq!(stored(&db.pool, THINGS).await, 0, "{what}");
}

#[derive(Debug, Serialize, Deserialize)]
enum Shape {
    Unit,
    Newtype(i64),
    Tuple(i64, i64),
    Struct { a: i64 },
}

#[derive(Debug, Serialize, Deserialize)]
struct UnitStruct;

#[derive(Debug, Serialize, Deserialize)]
struct TupleStruct(i64, String);

#[derive(Debug, Serialize, Deserialize)]
struct Newtype(i64);

/// A model whose Serialize impl fails.
#[derive(Debug, Deserialize)]
struct Refuses {
    a: i64,
}

impl Serialize for Refuses {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        let _ = self.a;
        Err(S::Error::custom("refusing to serialize"))
    }
}

/// A model whose Serialize impl fails on its second field, after writing the first.
#[derive(Debug, Deserialize)]
struct FailsMidway {
    a: i64,
    b: Refuses,
}

impl Serialize for FailsMidway {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("FailsMidway", 2)?;
        s.serialize_field("a", &self.a)?;
        s.serialize_field("b", &self.b)?;
        s.end()
    }
}

/// A model that writes the same field twice.
#[derive(Debug, Deserialize)]
struct Twice {
    a: i64,
}

impl Serialize for Twice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Twice", 2)?;
        s.serialize_field("a", &self.a)?;
        s.serialize_field("a", &(self.a + 1))?;
        s.end()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct WithTupleKeys {
    name: String,
    grid: HashMap<(i32, i32), i32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WithHugeInt {
    n: i128,
}

async fn non_json_able_models_are_encode_errors(db: &Db) {
    assert_not_encodable(db, "a tuple", (1i64, "two".to_owned())).await;
    assert_not_encodable(db, "a vec", vec![1i64, 2, 3]).await;
    assert_not_encodable(db, "an empty vec", Vec::<i64>::new()).await;
    assert_not_encodable(db, "a number", 5i64).await;
    assert_not_encodable(db, "a float", 1.5f64).await;
    assert_not_encodable(db, "a bool", true).await;
    assert_not_encodable(db, "a string", "users".to_owned()).await;
    assert_not_encodable(db, "unit", ()).await;
    assert_not_encodable(db, "none", Option::<BTreeMap<String, i64>>::None).await;
    assert_not_encodable(db, "a unit struct", UnitStruct).await;
    assert_not_encodable(db, "a tuple struct", TupleStruct(1, "x".into())).await;
    assert_not_encodable(db, "a newtype of a number", Newtype(1)).await;
    assert_not_encodable(db, "a unit variant", Shape::Unit).await;
    assert_not_encodable(db, "a newtype variant", Shape::Newtype(1)).await;
    assert_not_encodable(db, "a tuple variant", Shape::Tuple(1, 2)).await;
    assert_not_encodable(db, "a struct variant", Shape::Struct { a: 1 }).await;
    assert_not_encodable(db, "a failing Serialize", Refuses { a: 1 }).await;
    assert_not_encodable(
        db,
        "a Serialize failing midway",
        FailsMidway {
            a: 1,
            b: Refuses { a: 2 },
        },
    )
    .await;
    assert_not_encodable(db, "a field written twice", Twice { a: 1 }).await;
    assert_not_encodable(db, "an i128 past u64", WithHugeInt { n: i128::MAX }).await;
    assert_not_encodable(db, "an i128 below i64", WithHugeInt { n: i128::MIN }).await;
}

async fn maps_with_non_string_keys_are_encode_errors(db: &Db) {
    let mut ints: BTreeMap<i64, i64> = BTreeMap::new();
    ints.insert(1, 2);
    assert_not_encodable(db, "a map with integer keys", ints).await;
    let mut tuples: HashMap<(i32, i32), i32> = HashMap::new();
    tuples.insert((1, 2), 3);
    assert_not_encodable(db, "a map with tuple keys", tuples).await;
    let mut bools: BTreeMap<bool, i64> = BTreeMap::new();
    bools.insert(true, 1);
    assert_not_encodable(db, "a map with bool keys", bools).await;
    let mut grid = HashMap::new();
    grid.insert((1, 2), 3);
    assert_not_encodable(
        db,
        "a field holding a map with tuple keys",
        WithTupleKeys {
            name: "x".into(),
            grid,
        },
    )
    .await;
}

async fn integer_keys_inside_a_field_become_json_string_keys(db: &Db) {
    // serde_json turns integer map keys into strings; inside a field that is plain JSON data
    // and round-trips, while at the top level (column names) it is refused above.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Scores {
        by_year: BTreeMap<i64, String>,
    }
    let mut by_year = BTreeMap::new();
    by_year.insert(2024, "gold".to_owned());
    by_year.insert(-1, "none".to_owned());
    let item = create(&db.pool, THINGS, Scores { by_year }).await;
    if let Some(raw) = db.raw() {
        let sql = format!(
            "SELECT {} FROM {}",
            raw.text_of("by_year"),
            raw.t(THINGS_TABLE)
        );
        let stored = raw.value(&sql, &[]).await.expect("raw json");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&stored).expect("json"),
            json!({"-1": "none", "2024": "gold"})
        );
    }
    let loaded = korm::item::<Scores>(&db.pool)
        .load(item.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data(), item.data());
}

async fn a_commit_of_a_model_that_stops_serializing_writes_nothing(db: &Db) {
    #[derive(Debug, Deserialize)]
    struct Flaky {
        a: i64,
        fail: bool,
    }
    impl Serialize for Flaky {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut s = serializer.serialize_struct("Flaky", 2)?;
            s.serialize_field("a", &self.a)?;
            if self.fail {
                return Err(S::Error::custom("flaky"));
            }
            s.serialize_field("fail", &self.fail)?;
            s.end()
        }
    }
    let item = create(&db.pool, THINGS, Flaky { a: 1, fail: false }).await;
    let rn = item.rn().clone();
    let error = item
        .update(|f| {
            f.a = 2;
            f.fail = true;
        })
        .commit()
        .await
        .expect_err("a failing Serialize can not be committed");
    assert!(matches!(error, Error::Encode { .. }), "{error:?}");
    if let Some(raw) = db.raw() {
        let sql = format!("SELECT {} FROM {}", raw.q("a"), raw.t(THINGS_TABLE));
        let a = raw.value(&sql, &[]).await;
        assert_eq!(a.as_deref(), Some("1"), "the stored row is unchanged");
    }
    let loaded = korm::item::<Flaky>(&db.pool)
        .load(rn)
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data().a, 1, "the stored row is unchanged");
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Measure {
    x: f64,
}

async fn a_non_finite_float_is_an_encode_error(db: &Db) {
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let result = korm::item::<Measure>(&db.pool)
            .from_data(rn(THINGS), Measure { x })
            .expect("floating item")
            .create()
            .await;
        assert!(
            matches!(result, Err(Error::Encode { .. })),
            "{x}: {result:?}"
        );
        assert_nothing_written(db, &format!("{x}: nothing is written")).await;
    }
}

/// serde_json writes a NaN or an infinity inside an object or an array as null: stored so,
/// the item would read back changed, or not at all (`null` is no `f64`). Refused wherever it
/// sits, in an encrypted field too (sealed, it was the same null); a null that is a `None`
/// stays a null.
async fn a_non_finite_float_inside_a_field_is_an_encode_error(db: &Db) {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        y: f32,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Circle(f64),
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Nested {
        list: Vec<Option<f64>>,
        inner: Option<Inner>,
        map: BTreeMap<String, f64>,
        shape: Option<Shape>,
    }
    fn fine() -> Nested {
        Nested {
            list: vec![Some(1.5), None],
            inner: Some(Inner { y: 2.0 }),
            map: BTreeMap::from([("a".to_owned(), 3.0)]),
            shape: None,
        }
    }
    let cases = [
        Nested {
            list: vec![Some(1.0), Some(f64::NAN)],
            ..fine()
        },
        Nested {
            inner: Some(Inner { y: f32::INFINITY }),
            ..fine()
        },
        Nested {
            map: BTreeMap::from([("a".to_owned(), f64::NEG_INFINITY)]),
            ..fine()
        },
        Nested {
            shape: Some(Shape::Circle(f64::NAN)),
            ..fine()
        },
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let error = create_err(&db.pool, THINGS, case).await;
        let message = error.to_string();
        assert!(matches!(error, Error::Encode { .. }), "case {i}: {message}");
        assert!(
            message.contains("which JSON can not store"),
            "case {i}: {message}"
        );
        assert_nothing_written(db, &format!("case {i}")).await;
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Sealed {
        reading: korm::Encrypted<f64>,
    }
    crate::crypto::install_test_keys();
    let error = create_err(
        &db.pool,
        THINGS,
        Sealed {
            reading: korm::Encrypted::new(f64::NAN),
        },
    )
    .await;
    assert!(matches!(error, Error::Encode { .. }), "{error:?}");
    assert_nothing_written(db, "an encrypted NaN").await;

    // A `None` inside is a null, and reads back as `None`.
    let item = create(&db.pool, THINGS, fine()).await;
    let back = korm::item::<Nested>(&db.pool)
        .load(item.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(back.data(), &fine());
}

async fn a_u64_above_i64_max_is_an_encode_error(db: &Db) {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Big {
        n: u64,
    }
    let result = korm::item::<Big>(&db.pool)
        .from_data(rn(THINGS), Big { n: u64::MAX })
        .expect("floating item")
        .create()
        .await;
    assert!(matches!(result, Err(Error::Encode { .. })), "{result:?}");
    assert_nothing_written(db, "nothing is written").await;
}

crate::on_backends!(
    non_json_able_models_are_encode_errors,
    maps_with_non_string_keys_are_encode_errors,
    integer_keys_inside_a_field_become_json_string_keys,
    a_commit_of_a_model_that_stops_serializing_writes_nothing,
    a_non_finite_float_is_an_encode_error,
    a_non_finite_float_inside_a_field_is_an_encode_error,
    a_u64_above_i64_max_is_an_encode_error,
);
