//! The filter and sort semantics of the `query` module doc, case by case, on one small data
//! set with every shape that matters (values of several types at one JSON path, nulls and
//! missing values, arrays of scalars, of objects and of arrays, hostile text). Run on every
//! backend, each case must select the same items.

use korm::{Filter, Pool, SortOrder, and, eq, gt, gte, in_list, like, lt, lte, not, or};
use serde_json::{Map, Value, json};

const ROWS: &str = "[rn]:users:freetier:*";

/// The items `u1`..`u6`, by item id (ids sort in this order, which is the sort tiebreak).
const IDS: [&str; 6] = [
    "00000000-0000-4000-8000-000000000001",
    "00000000-0000-4000-8000-000000000002",
    "00000000-0000-4000-8000-000000000003",
    "00000000-0000-4000-8000-000000000004",
    "00000000-0000-4000-8000-000000000005",
    "00000000-0000-4000-8000-000000000006",
];

const ALL: &[&str] = &["u1", "u2", "u3", "u4", "u5", "u6"];

fn rows() -> [Value; 6] {
    [
        json!({"username": "fred", "age": 41, "score": 1.5, "active": true, "tags": ["a", "b"],
               "meta": {"tier": "gold", "score": 9, "flags": {"hot": true},
                        "groups": [{"members": [{"name": "x"}, {"name": "y"}]}]},
               "addresses": [{"city": "Paris"}, {"city": "Rome"}]}),
        json!({"username": "wilma", "age": 35, "score": 2.0, "active": false,
               "tags": ["b", 1, true, null, {"x": 1}, [1, 2]],
               "meta": {"tier": "silver", "score": "9", "flags": {"hot": false}},
               "addresses": [{"city": "Berlin"}, "Paris", {"town": "Paris"}]}),
        json!({"username": "barney", "age": null, "score": null, "active": null, "tags": null,
               "meta": {"tier": null}, "addresses": {"city": "Paris"}}),
        json!({"username": "Fred", "age": 80, "score": -1.0, "active": true, "tags": [],
               "meta": {"score": 10.5, "groups": [{"members": [{"name": "z"}]}, {"members": "x"}]},
               "addresses": []}),
        json!({"username": null, "age": 90, "score": 0.0, "active": false,
               "tags": ["x' OR 1=1 --"], "meta": {"tier": "gold", "score": 1},
               "addresses": null}),
        json!({"username": "x' OR 1=1 --", "age": 20, "score": null, "active": null,
               "tags": [[1, 2], ["a"]], "meta": {"tier": "GOLD", "score": true},
               "addresses": [{"city": "Paris", "zip": [1, 2]}]}),
    ]
}

type Row = Map<String, Value>;

async fn seed(pool: &Pool) {
    let handle = korm::item::<Row>(pool);
    for (id, data) in IDS.iter().zip(rows()) {
        let Value::Object(data) = data else {
            unreachable!("rows are objects")
        };
        handle
            .from_data(format!("[rn]:users:freetier:{id}").parse().unwrap(), data)
            .expect("floating")
            .create()
            .await
            .expect("create");
    }
}

/// `u1`..`u6` of the items a query returns, in its order.
async fn query(pool: &Pool, filter: Option<Filter>, sort: &[(&str, SortOrder)]) -> Vec<String> {
    let mut q = korm::item::<Row>(pool).query(ROWS.parse().unwrap());
    if let Some(filter) = filter {
        q = q.filter(filter);
    }
    for (path, order) in sort {
        q = q.sort_by(path, *order);
    }
    q.get()
        .await
        .expect("query")
        .iter()
        .map(|item| {
            let id = item.rn().id().expect("item id").to_string();
            let n = IDS.iter().position(|i| *i == id).expect("a known id");
            format!("u{}", n + 1)
        })
        .collect()
}

/// Asserts which items match (in any order).
async fn check(pool: &Pool, filter: Filter, expected: &[&str]) {
    let mut got = query(pool, Some(filter.clone()), &[]).await;
    got.sort();
    assert_eq!(got, expected, "{filter:?}");
}

/// Asserts the order of the items a sort gives.
async fn check_sorted(pool: &Pool, sort: &[(&str, SortOrder)], expected: &[&str]) {
    assert_eq!(query(pool, None, sort).await, expected, "{sort:?}");
}

pub async fn comparisons_on_columns(pool: &Pool) {
    seed(pool).await;
    check(pool, eq("username", "fred"), &["u1"]).await;
    check(pool, gt("age", 40), &["u1", "u4", "u5"]).await;
    check(pool, gte("age", 80), &["u4", "u5"]).await;
    check(pool, lt("age", 40), &["u2", "u6"]).await;
    check(pool, lte("age", 35), &["u2", "u6"]).await;
    check(pool, gt("score", 1), &["u1", "u2"]).await;
    check(pool, lt("score", 0.5), &["u4", "u5"]).await;
    check(pool, gt("username", "w"), &["u2", "u6"]).await;
    check(pool, eq("active", true), &["u1", "u4"]).await;
    check(pool, eq("active", false), &["u2", "u5"]).await;
    check(pool, eq("rnId", IDS[2]), &["u3"]).await;
}

pub async fn different_types_never_match(pool: &Pool) {
    seed(pool).await;
    check(pool, eq("age", "41"), &[]).await;
    check(pool, eq("active", 1), &[]).await;
    check(pool, gt("username", 0), &[]).await;
    check(pool, eq("meta.score", "9"), &["u2"]).await;
    check(pool, eq("meta.score", 9), &["u1"]).await;
    // The string "9" and the boolean true are not numbers above 5.
    check(pool, gt("meta.score", 5), &["u1", "u4"]).await;
    check(pool, eq("meta.score", true), &["u6"]).await;
    check(pool, eq("meta.score", 1), &["u5"]).await;
    // An object is not a scalar.
    check(pool, eq("meta.flags", "{\"hot\":true}"), &[]).await;
    check(pool, like("meta.flags", "%hot%"), &[]).await;
}

pub async fn nulls_and_missing_values(pool: &Pool) {
    seed(pool).await;
    check(pool, eq("username", ()), &["u5"]).await;
    check(pool, eq("nickname", ()), ALL).await;
    check(pool, eq("nickname", "x"), &[]).await;
    check(pool, eq("tags", ()), &["u3"]).await;
    // JSON null and a missing key are both null.
    check(pool, eq("meta.tier", ()), &["u3", "u4"]).await;
    check(pool, eq("username.first", ()), ALL).await;
}

pub async fn not_keeps_missing_values(pool: &Pool) {
    seed(pool).await;
    check(pool, not(eq("nickname", "x")), ALL).await;
    check(
        pool,
        not(eq("username", "fred")),
        &["u2", "u3", "u4", "u5", "u6"],
    )
    .await;
    check(pool, not(gt("age", 40)), &["u2", "u3", "u6"]).await;
    check(
        pool,
        not(eq("meta.tier", "gold")),
        &["u2", "u3", "u4", "u6"],
    )
    .await;
    check(pool, !!eq("meta.tier", "gold"), &["u1", "u5"]).await;
    check(
        pool,
        not(in_list("age", [41, 35])),
        &["u3", "u4", "u5", "u6"],
    )
    .await;
    check(pool, not(and([])), &[]).await;
}

pub async fn json_paths(pool: &Pool) {
    seed(pool).await;
    check(pool, eq("meta.tier", "gold"), &["u1", "u5"]).await;
    check(pool, eq("meta.flags.hot", true), &["u1"]).await;
    check(pool, eq("meta.flags.hot", false), &["u2"]).await;
    check(pool, eq("tags[0]", "a"), &["u1"]).await;
    check(pool, eq("tags[1]", 1), &["u2"]).await;
    check(pool, eq("tags[0][1]", 2), &["u6"]).await;
    check(pool, eq("meta.groups[0].members[1].name", "y"), &["u1"]).await;
}

pub async fn like_is_ascii_case_insensitive(pool: &Pool) {
    seed(pool).await;
    check(pool, like("username", "fred"), &["u1", "u4"]).await;
    check(pool, like("username", "%'%"), &["u6"]).await;
    check(pool, like("username", "_ilma"), &["u2"]).await;
    check(pool, like("meta.tier", "gold"), &["u1", "u5", "u6"]).await;
    check(pool, like("age", "4%"), &[]).await;
    // A NUL in a pattern is refused on every backend (SQLite's LIKE stops at it, so `%\0%`
    // matched every text there).
    let err = korm::item::<Row>(pool)
        .query(ROWS.parse().unwrap())
        .filter(like("username", "%\0%"))
        .get()
        .await
        .expect_err("a NUL in a pattern");
    assert!(matches!(err, korm::Error::InvalidFilter { .. }), "{err:?}");
}

pub async fn in_lists(pool: &Pool) {
    seed(pool).await;
    check(pool, in_list("age", [41, 90]), &["u1", "u5"]).await;
    // A null in the list finds null and missing values (korm 1.5's in_list).
    let with_null = [json!(41), json!("80"), Value::Null];
    check(pool, in_list("age", with_null), &["u1", "u3"]).await;
    check(pool, in_list("age", [json!(41), json!("80")]), &["u1"]).await;
    let none: [&str; 0] = [];
    check(pool, in_list("username", none), &[]).await;
    let tiers = [json!("gold"), json!("silver"), Value::Null];
    check(
        pool,
        in_list("meta.tier", tiers),
        &["u1", "u2", "u3", "u4", "u5"],
    )
    .await;
    check(
        pool,
        in_list("meta.tier", ["gold", "silver"]),
        &["u1", "u2", "u5"],
    )
    .await;
    check(pool, in_list("tags[*]", [Value::Null]), &["u2"]).await;
    check(
        pool,
        in_list("meta.score", [json!(9), json!(true)]),
        &["u1", "u6"],
    )
    .await;
    // A long list of mixed types over a field no item has (no column): nothing matches, and
    // `not` keeps every item (PostgreSQL used to fail, casting "x" as the first value's type).
    let mut mixed: Vec<Value> = (1..=20).map(|i| json!(i)).collect();
    mixed.push(json!("x"));
    mixed.push(json!(0.5));
    check(pool, in_list("nosuchfield", mixed.clone()), &[]).await;
    check(
        pool,
        not(in_list("nosuchfield", mixed)),
        &["u1", "u2", "u3", "u4", "u5", "u6"],
    )
    .await;
}

pub async fn wildcards_match_any_element(pool: &Pool) {
    seed(pool).await;
    // u2's scalar "Paris" and {"town": "Paris"} are no city; u3's object is no array.
    check(pool, eq("addresses[*].city", "Paris"), &["u1", "u6"]).await;
    let others = &["u2", "u3", "u4", "u5"];
    check(pool, not(eq("addresses[*].city", "Paris")), others).await;
    check(pool, eq("tags[*]", "b"), &["u1", "u2"]).await;
    check(pool, eq("tags[*]", 1), &["u2"]).await;
    check(pool, eq("tags[*]", true), &["u2"]).await;
    check(pool, eq("tags[*]", ()), &["u2"]).await;
    check(pool, in_list("tags[*]", ["a", "zz"]), &["u1"]).await;
    check(pool, like("tags[*]", "X'%"), &["u5"]).await;
    check(pool, eq("tags[*]", "x' OR 1=1 --"), &["u5"]).await;
    check(pool, gt("addresses[*].zip[1]", 1), &["u6"]).await;
    // u2's "Paris" and {"town": ...} elements have no city.
    check(pool, eq("addresses[*].city", ()), &["u2"]).await;
}

pub async fn nested_wildcards(pool: &Pool) {
    seed(pool).await;
    check(pool, eq("meta.groups[*].members[*].name", "x"), &["u1"]).await;
    check(pool, eq("meta.groups[*].members[*].name", "z"), &["u4"]).await;
    check(pool, eq("tags[*][*]", 2), &["u2", "u6"]).await;
    check(pool, eq("tags[*][*]", "a"), &["u6"]).await;
    check(pool, eq("tags[1][*]", "a"), &["u6"]).await;
}

pub async fn combined_filters(pool: &Pool) {
    seed(pool).await;
    check(pool, and([eq("meta.tier", "gold"), gt("age", 80)]), &["u5"]).await;
    let either = eq("username", "wilma").or(eq("addresses[*].city", "Rome"));
    check(pool, either, &["u1", "u2"]).await;
    check(pool, and([]), ALL).await;
    check(pool, or([]), &[]).await;
}

pub async fn hostile_values_are_literal(pool: &Pool) {
    seed(pool).await;
    check(pool, eq("username", "x' OR 1=1 --"), &["u6"]).await;
    check(pool, eq("username", "' OR '1'='1"), &[]).await;
    check(pool, eq("meta.tier", "gold' OR 1=1 --"), &[]).await;
    check(pool, like("username", "%\" OR 1=1 --"), &[]).await;
    check(pool, and([]), ALL).await;
}

pub async fn sort_puts_nulls_last_ascending_and_first_descending(pool: &Pool) {
    seed(pool).await;
    let asc = ["u6", "u2", "u1", "u4", "u5", "u3"];
    check_sorted(pool, &[("age", SortOrder::Asc)], &asc).await;
    let desc = ["u3", "u5", "u4", "u1", "u2", "u6"];
    check_sorted(pool, &[("age", SortOrder::Desc)], &desc).await;
    // Text sorts byte by byte; the NULL username is last.
    let by_name = ["u4", "u3", "u1", "u2", "u6", "u5"];
    check_sorted(pool, &[("username", SortOrder::Asc)], &by_name).await;
}

pub async fn sort_json_path_orders_types_then_values(pool: &Pool) {
    seed(pool).await;
    // true (boolean), 1, 9, 10.5 (numbers), "9" (text), missing.
    let asc = ["u6", "u5", "u1", "u4", "u2", "u3"];
    check_sorted(pool, &[("meta.score", SortOrder::Asc)], &asc).await;
    let desc = ["u3", "u2", "u4", "u1", "u5", "u6"];
    check_sorted(pool, &[("meta.score", SortOrder::Desc)], &desc).await;
}

pub async fn sort_ties_and_missing_fall_back_to_rn_id(pool: &Pool) {
    seed(pool).await;
    check_sorted(pool, &[("nickname", SortOrder::Desc)], ALL).await;
    let by_active = [("active", SortOrder::Desc), ("age", SortOrder::Asc)];
    check_sorted(pool, &by_active, &["u6", "u3", "u1", "u4", "u2", "u5"]).await;
}

pub async fn limit_applies_after_sort_and_filter(pool: &Pool) {
    seed(pool).await;
    let rows = korm::item::<Row>(pool);
    let firsts = rows
        .query(ROWS.parse().unwrap())
        .sort_by("age", SortOrder::Asc)
        .first_n(2)
        .await
        .expect("query");
    let ids: Vec<String> = firsts
        .iter()
        .map(|i| i.rn().id().unwrap().to_string())
        .collect();
    assert_eq!(ids, [IDS[5], IDS[1]]);
    // "9" is text, which sorts after every number.
    let top = rows
        .query(ROWS.parse().unwrap())
        .filter(gt("age", 30))
        .sort_by("meta.score", SortOrder::Desc)
        .first_n(2)
        .await
        .expect("query");
    let ids: Vec<String> = top
        .iter()
        .map(|i| i.rn().id().unwrap().to_string())
        .collect();
    assert_eq!(ids, [IDS[1], IDS[3]]);
}

/// Text compares byte by byte, trailing spaces included, on columns, JSON paths, in lists and
/// in sorts (MariaDB's `utf8mb4_bin` pads: `"freddie" = "freddie "` held there).
pub async fn text_comparisons_do_not_pad(pool: &Pool) {
    let handle = korm::item::<Row>(pool);
    for name in ["freddie", "freddie ", "freddie  "] {
        let mut data = Map::new();
        data.insert("name".into(), json!(name));
        data.insert("meta".into(), json!({"name": name}));
        handle
            .from_data(ROWS.parse().unwrap(), data)
            .expect("floating")
            .create()
            .await
            .expect("create");
    }
    let names = |filter: Filter| async move {
        let mut found: Vec<String> = korm::item::<Row>(pool)
            .query(ROWS.parse().unwrap())
            .filter(filter)
            .get()
            .await
            .expect("query")
            .into_iter()
            .map(|i| i.data()["name"].as_str().unwrap().to_owned())
            .collect();
        found.sort();
        found
    };
    assert_eq!(names(eq("name", "freddie")).await, ["freddie"]);
    assert_eq!(names(eq("meta.name", "freddie ")).await, ["freddie "]);
    assert_eq!(names(in_list("name", ["freddie", "x"])).await, ["freddie"]);
    assert_eq!(
        names(gt("name", "freddie")).await,
        ["freddie ", "freddie  "]
    );
    assert_eq!(names(lte("meta.name", "freddie")).await, ["freddie"]);
}
