//! SQL in values, filter paths, sort paths and patterns: values are stored and matched
//! literally, hostile paths are `InvalidPath`, and the table is intact afterwards.

use korm::{Error, Filter, SortOrder, eq, gt, in_list, like, not, or};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Db, USERS, USERS_TABLE, create, create_err, rn, stored};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    username: String,
    age: i64,
    meta: Value,
    tags: Vec<String>,
}

fn user(username: &str, age: i64) -> User {
    User {
        username: username.to_owned(),
        age,
        meta: json!({ "k": username, "n": [username] }),
        tags: vec![username.to_owned()],
    }
}

const HOSTILE_VALUES: &[&str] = &[
    "'; DROP TABLE __items__users__freetier; --",
    "Robert'); DROP TABLE students;--",
    "\" OR \"1\"=\"1",
    "' OR '1'='1",
    "%' OR 1=1 --",
    "x'||(SELECT sqlite_version())||'",
    "'); ATTACH DATABASE '/tmp/pwn.db' AS pwn; --",
    "?1",
    ":name",
    "$x",
    "@p",
    "\\'; SELECT load_extension('x'); --",
    "*/ DROP TABLE x; /*",
    "$.username",
    "a\0b",
    "\0",
    "]]>",
    "é'\u{202e}",
    "",
];

async fn names(pool: &korm::Pool, filter: Filter) -> Vec<String> {
    let mut found: Vec<String> = korm::item::<User>(pool)
        .query(rn(USERS))
        .filter(filter)
        .get()
        .await
        .expect("query")
        .into_iter()
        .map(|i| i.into_data().username)
        .collect();
    found.sort();
    found
}

/// Every hostile value is stored and matched literally; PostgreSQL can not hold the NUL
/// character, so there the values holding it are refused (naming the field) and not stored.
async fn sql_in_values_is_stored_and_matched_literally(db: &Db) {
    let mut items = Vec::new();
    let mut values = Vec::new();
    for (i, value) in HOSTILE_VALUES.iter().enumerate() {
        if !db.backend.stores_nul() && value.contains('\0') {
            match create_err(&db.pool, USERS, user(value, i as i64)).await {
                Error::Encode { what, .. } => assert!(what.contains("`username`"), "{what}"),
                other => panic!("{value:?}: expected Encode, got {other:?}"),
            }
            continue;
        }
        items.push(create(&db.pool, USERS, user(value, i as i64)).await);
        values.push(*value);
    }
    if let Some(raw) = db.raw() {
        assert_eq!(raw.tables().await, [USERS_TABLE]);
        assert_eq!(raw.count(USERS_TABLE).await, values.len() as i64);
    }
    assert_eq!(stored(&db.pool, USERS).await, values.len());
    for (item, value) in items.iter().zip(&values) {
        let loaded = korm::item::<User>(&db.pool)
            .load(item.rn().clone())
            .get()
            .await
            .expect("load");
        assert_eq!(loaded.data(), &user(value, loaded.data().age), "{value:?}");
        assert_eq!(names(&db.pool, eq("username", *value)).await, [*value]);
        assert_eq!(names(&db.pool, eq("meta.k", *value)).await, [*value]);
        assert_eq!(names(&db.pool, eq("meta.n[0]", *value)).await, [*value]);
        assert_eq!(names(&db.pool, eq("tags[*]", *value)).await, [*value]);
        assert_eq!(
            names(&db.pool, in_list("username", [*value, "nobody"])).await,
            [*value]
        );
    }
    if let Some(raw) = db.raw() {
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = {}",
            raw.q("username"),
            raw.t(USERS_TABLE),
            raw.q("rnId"),
            raw.p(1)
        );
        let stored = raw
            .value(&sql, &[items[0].rn().id().expect("id").into()])
            .await;
        assert_eq!(stored.as_deref(), Some(HOSTILE_VALUES[0]));
    }
}

/// A NUL character is text like any other, stored whole; PostgreSQL can not store it, and
/// refuses it naming the field (see `parity::nul_is_refused_on_postgres_and_kept_elsewhere`).
async fn a_nul_byte_in_text_round_trips_whole(db: &Db) {
    if !db.backend.stores_nul() {
        let error = create_err(&db.pool, USERS, user("before\0after", 1)).await;
        assert!(matches!(error, Error::Encode { .. }), "{error:?}");
        assert_eq!(stored(&db.pool, USERS).await, 0);
        return;
    }
    let item = create(&db.pool, USERS, user("before\0after", 1)).await;
    let loaded = korm::item::<User>(&db.pool)
        .load(item.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data().username, "before\0after");
    assert_eq!(
        names(&db.pool, eq("username", "before")).await,
        Vec::<String>::new()
    );
}

async fn sql_in_like_patterns_is_a_pattern_not_sql(db: &Db) {
    for (i, name) in ["fred", "wilma", "'; DROP TABLE x; --"].iter().enumerate() {
        create(&db.pool, USERS, user(name, i as i64)).await;
    }
    assert_eq!(
        names(&db.pool, like("username", "%' OR 1=1 --")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        names(&db.pool, like("username", "'; DROP%")).await,
        ["'; DROP TABLE x; --"]
    );
    assert_eq!(
        names(&db.pool, like("username", "fred' ESCAPE '\\")).await,
        Vec::<String>::new()
    );
    assert_eq!(names(&db.pool, like("username", "%")).await.len(), 3);
    assert_table_intact(db, 3).await;
}

/// The users table is the only table and holds `rows` rows (through the second connection
/// where the backend has one; korm reads as many items everywhere).
async fn assert_table_intact(db: &Db, rows: i64) {
    if let Some(raw) = db.raw() {
        assert_eq!(raw.tables().await, [USERS_TABLE]);
        assert_eq!(raw.count(USERS_TABLE).await, rows);
    }
    assert_eq!(stored(&db.pool, USERS).await as i64, rows);
}

/// No table exists yet (through the second connection where the backend has one).
async fn assert_no_table(db: &Db) {
    if let Some(raw) = db.raw() {
        assert!(raw.tables().await.is_empty());
    }
    assert_eq!(stored(&db.pool, USERS).await, 0);
}

const HOSTILE_PATHS: &[&str] = &[
    "age; DROP TABLE __items__users__freetier",
    "a'--",
    "a[0]]",
    "a.b)",
    "age\"; DROP TABLE x; --",
    "age) OR (1=1",
    "a b",
    "a..b",
    ".a",
    "a.",
    "a[",
    "a[-1]",
    "a[1e3]",
    "a[0x1]",
    "a[ 0 ]",
    "a[9999999999]",
    "a['b']",
    "a[\"b\"]",
    "*",
    "a.*",
    "é",
    "meta.é",
    "a/**/b",
    "",
    " age",
    "age ",
    "a\0",
    "json_extract(meta, '$')",
    "meta->>'$.k'",
    "$.meta",
    "a[*",
    "meta.k'",
    "1age",
    "meta.1k",
];

fn hostile_filters(path: &str) -> Vec<Filter> {
    vec![
        eq(path, 1),
        gt(path, "x"),
        like(path, "%"),
        in_list(path, [1, 2]),
        not(eq(path, Value::Null)),
        or([eq("age", 1), eq(path, 1)]),
    ]
}

async fn sql_in_filter_paths_is_invalid_path(db: &Db) {
    create(&db.pool, USERS, user("fred", 41)).await;
    let mut deep = String::from("meta");
    for _ in 0..40 {
        deep.push_str(".k");
    }
    let mut paths: Vec<String> = HOSTILE_PATHS.iter().map(|p| (*p).to_owned()).collect();
    paths.push(deep);
    for path in &paths {
        for filter in hostile_filters(path) {
            let result = korm::item::<User>(&db.pool)
                .query(rn(USERS))
                .filter(filter.clone())
                .get()
                .await;
            match result {
                Err(Error::InvalidPath { .. }) => {}
                Err(e) => panic!("{path:?}: expected InvalidPath, got {e:?}"),
                Ok(items) => panic!("{path:?}: {filter:?} ran and found {} items", items.len()),
            }
        }
    }
    assert_table_intact(db, 1).await;
}

async fn sql_in_sort_paths_is_invalid_path(db: &Db) {
    create(&db.pool, USERS, user("fred", 41)).await;
    for path in HOSTILE_PATHS.iter().chain(&["tags[*]", "meta.n[*]"]) {
        for order in [SortOrder::Asc, SortOrder::Desc] {
            let result = korm::item::<User>(&db.pool)
                .query(rn(USERS))
                .sort_by(path, order)
                .get()
                .await;
            match result {
                Err(Error::InvalidPath { .. }) => {}
                Err(e) => panic!("{path:?}: expected InvalidPath, got {e:?}"),
                Ok(items) => panic!("{path:?}: the sort ran and found {} items", items.len()),
            }
        }
    }
    assert_table_intact(db, 1).await;
}

async fn sql_in_sort_paths_is_invalid_path_before_the_table_exists(db: &Db) {
    let result = korm::item::<User>(&db.pool)
        .query(rn(USERS))
        .sort_by("age; DROP TABLE x", SortOrder::Asc)
        .get()
        .await;
    assert!(
        matches!(result, Err(Error::InvalidPath { .. })),
        "{result:?}"
    );
    assert_no_table(db).await;
}

async fn sql_in_filter_paths_is_invalid_path_before_the_table_exists(db: &Db) {
    for path in HOSTILE_PATHS {
        let result = korm::item::<User>(&db.pool)
            .query(rn(USERS))
            .filter(eq(path, 1))
            .get()
            .await;
        assert!(
            matches!(result, Err(Error::InvalidPath { .. })),
            "{path:?}: {:?}",
            result.map(|items| items.len())
        );
    }
    assert_no_table(db).await;
}

async fn hostile_object_keys_inside_json_values_are_data(db: &Db) {
    let hostile_key = "k'); DROP TABLE __items__users__freetier; --";
    let mut u = user("fred", 1);
    u.meta = json!({ hostile_key: "v", "a.b": 1, "$": 2, "[0]": 3, "": 4, "é": 5 });
    let item = create(&db.pool, USERS, u.clone()).await;
    let loaded = korm::item::<User>(&db.pool)
        .load(item.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data(), &u);
    // Such keys can not be named by a path: that is InvalidPath, not a SQL fragment.
    let result = korm::item::<User>(&db.pool)
        .query(rn(USERS))
        .filter(eq(&format!("meta.{hostile_key}"), "v"))
        .get()
        .await;
    assert!(
        matches!(result, Err(Error::InvalidPath { .. })),
        "{result:?}"
    );
    assert_table_intact(db, 1).await;
}

async fn huge_and_deep_filters_are_an_answer_or_a_typed_error(db: &Db) {
    create(&db.pool, USERS, user("fred", 41)).await;
    let many: Vec<i64> = (0..40_000).collect();
    let result = korm::item::<User>(&db.pool)
        .query(rn(USERS))
        .filter(in_list("age", many))
        .get()
        .await;
    match result {
        Ok(items) => assert_eq!(items.len(), 1),
        Err(e) => assert!(
            matches!(e, Error::Database { .. } | Error::InvalidFilter { .. }),
            "{e:?}"
        ),
    }
    let wide = or((0..5_000).map(|i| eq("age", i)).collect::<Vec<_>>());
    let result = korm::item::<User>(&db.pool)
        .query(rn(USERS))
        .filter(wide)
        .get()
        .await;
    match result {
        Ok(items) => assert_eq!(items.len(), 1),
        Err(e) => assert!(
            matches!(e, Error::Database { .. } | Error::InvalidFilter { .. }),
            "{e:?}"
        ),
    }
    let long = "a".repeat(1024 * 1024);
    let result = korm::item::<User>(&db.pool)
        .query(rn(USERS))
        .filter(eq(&long, 1))
        .get()
        .await;
    match result {
        Ok(items) => assert!(items.is_empty(), "a field never stored is null"),
        Err(e) => {
            assert!(matches!(e, Error::InvalidPath { .. }), "{e:?}");
            assert!(e.to_string().len() < 1_000, "the path is clipped");
        }
    }
    assert_table_intact(db, 1).await;
}

/// A filter of `depth` nested `not`s around `eq("age", 41)` (matching when `depth` is even).
fn nested_not(depth: usize) -> Filter {
    let mut deep = eq("age", 41);
    for _ in 0..depth {
        deep = not(deep);
    }
    deep
}

async fn a_moderately_nested_filter_is_an_answer_or_a_typed_error(db: &Db) {
    create(&db.pool, USERS, user("fred", 41)).await;
    for depth in [10, 100, DEPTH_PROBE] {
        let result = korm::item::<User>(&db.pool)
            .query(rn(USERS))
            .filter(nested_not(depth))
            .get()
            .await;
        match result {
            Ok(items) => assert_eq!(items.len(), 1, "{depth}"),
            Err(e) => assert!(
                matches!(e, Error::Database { .. } | Error::InvalidFilter { .. }),
                "{depth}: {e:?}"
            ),
        }
    }
}

/// A filter at the nesting limit (64 levels) is a query's own: pages after the first and a
/// second `filter` combine it with another condition under one `and`, which does not count
/// (the second page used to fail with `InvalidFilter`). One level more is refused.
async fn a_filter_at_the_depth_limit_pages_and_combines(db: &Db) {
    for (name, age) in [("fred", 41), ("wilma", 40), ("barney", 38)] {
        create(&db.pool, USERS, user(name, age)).await;
    }
    // 63 nots around one comparison: 64 levels, matching every age but 0.
    let at_limit = || {
        let mut f = eq("age", 0);
        for _ in 0..63 {
            f = not(f);
        }
        f
    };
    let users = korm::item::<User>(&db.pool);
    let mut page = users
        .query(rn(USERS))
        .filter(at_limit())
        .page(1)
        .await
        .expect("first page");
    let mut seen = page.items.len();
    while let Some(next) = page.next.take() {
        page = users
            .query(rn(USERS))
            .filter(at_limit())
            .after(&next)
            .page(1)
            .await
            .expect("a later page");
        seen += page.items.len();
    }
    assert_eq!(seen, 3);
    let both = users
        .query(rn(USERS))
        .filter(at_limit())
        .filter(gt("age", 39))
        .count()
        .await
        .expect("two filters");
    assert_eq!(both, 2);
    let err = users
        .query(rn(USERS))
        .filter(not(not(at_limit())))
        .get()
        .await
        .expect_err("66 levels");
    assert!(matches!(err, Error::InvalidFilter { .. }), "{err:?}");
}

const DEPTH_PROBE: usize = 500;

async fn a_deeply_nested_filter_is_an_answer_or_a_typed_error(db: &Db) {
    create(&db.pool, USERS, user("fred", 41)).await;
    let deep = nested_not(4_000);
    let result = korm::item::<User>(&db.pool)
        .query(rn(USERS))
        .filter(deep)
        .get()
        .await;
    match result {
        Ok(items) => assert_eq!(items.len(), 1),
        Err(e) => assert!(
            matches!(e, Error::Database { .. } | Error::InvalidFilter { .. }),
            "{e:?}"
        ),
    }
    assert_table_intact(db, 1).await;
}

/// More sort keys than `MAX_SORT_KEYS` are refused however they come: by `sort_by`, by
/// `parse_sort`, and in a cursor written by hand for them (each key multiplies a keyset
/// page's filter, so thousands of them built a tree of millions of conditions).
async fn too_many_sort_keys_are_invalid_option_even_in_a_forged_cursor(db: &Db) {
    create(&db.pool, USERS, user("fred", 41)).await;
    let max = korm::query::MAX_SORT_KEYS;
    let paths: Vec<String> = (0..=max).map(|i| format!("meta.k{i}")).collect();
    let sorted = |n: usize| {
        paths[..n]
            .iter()
            .fold(korm::item::<User>(&db.pool).query(rn(USERS)), |q, p| {
                q.sort_by(p, SortOrder::Asc)
            })
    };
    assert_eq!(sorted(max).get().await.expect("at the limit").len(), 1);
    let result = sorted(max + 1).get().await;
    assert!(
        matches!(
            result,
            Err(Error::InvalidOption {
                option: "sort_by",
                ..
            })
        ),
        "{:?}",
        result.map(|items| items.len())
    );
    assert!(korm::query::parse_sort(&paths[..max].join(",")).is_ok());
    assert!(matches!(
        korm::query::parse_sort(&paths.join(",")),
        Err(Error::InvalidOption { option: "sort", .. })
    ));
    // The cursor a page would make for the keys, written by hand past the limit.
    let sort: Vec<(&str, bool)> = paths.iter().map(|p| (p.as_str(), false)).collect();
    let keys = vec![Value::from(1); paths.len()];
    let forged = hex::encode(json!([sort, keys, "x"]).to_string());
    assert!(matches!(
        forged.parse::<korm::Cursor>(),
        Err(Error::InvalidOption {
            option: "after",
            ..
        })
    ));
    assert_table_intact(db, 1).await;
}

crate::on_backends!(
    too_many_sort_keys_are_invalid_option_even_in_a_forged_cursor,
    sql_in_values_is_stored_and_matched_literally,
    a_nul_byte_in_text_round_trips_whole,
    sql_in_like_patterns_is_a_pattern_not_sql,
    sql_in_filter_paths_is_invalid_path,
    sql_in_sort_paths_is_invalid_path,
    sql_in_sort_paths_is_invalid_path_before_the_table_exists,
    sql_in_filter_paths_is_invalid_path_before_the_table_exists,
    hostile_object_keys_inside_json_values_are_data,
    huge_and_deep_filters_are_an_answer_or_a_typed_error,
    a_moderately_nested_filter_is_an_answer_or_a_typed_error,
    a_deeply_nested_filter_is_an_answer_or_a_typed_error,
    a_filter_at_the_depth_limit_pages_and_combines,
);
