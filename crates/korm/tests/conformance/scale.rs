//! Reading at scale (#17): counts, limits and offsets, keyset pages, long `in_list`s and
//! streams, on every backend. Each case compares against what `get()` returns for the same
//! query, so paging and streaming must give exactly the items of the query, in its order.

use futures_util::StreamExt;
use korm::{Cursor, Error, Pool, SortOrder, eq, gt, in_list, lt};
use serde_json::{Map, Value, json};

const ITEMS: &str = "[rn]:scale:things:*";

type Row = Map<String, Value>;

/// The `n`th test item: `n`, a JSON path holding values of every scalar type (and nulls and
/// missing values) with ties, a typed column with nulls, a text column.
fn row(n: usize) -> Row {
    let score = match n % 7 {
        0 => json!(n % 3),
        1 => json!(format!("s{}", n % 4)),
        2 => Value::Null,
        3 => json!(n.is_multiple_of(2)),
        4 => json!(2.5),
        5 => json!(-(i64::try_from(n % 5).unwrap())),
        _ => json!("s1"),
    };
    let mut meta = Map::new();
    if n % 11 != 6 {
        meta.insert("score".into(), score);
    }
    meta.insert("n".into(), json!(n));
    meta.insert("tag".into(), json!(format!("t{n}")));
    let mut row = Map::new();
    row.insert("n".into(), json!(n));
    row.insert(
        "age".into(),
        if n % 5 == 1 {
            Value::Null
        } else {
            json!(n % 9)
        },
    );
    row.insert("name".into(), json!(format!("name{n:05}")));
    row.insert("meta".into(), Value::Object(meta));
    row
}

/// Creates items `0..count` in transactions of 500.
async fn seed_n(pool: &Pool, count: usize) {
    let handle = korm::item::<Row>(pool);
    let mut n = 0;
    while n < count {
        let mut tx = korm::tx(pool);
        for i in n..(n + 500).min(count) {
            tx.create(
                handle
                    .from_data(ITEMS.parse().unwrap(), row(i))
                    .expect("floating"),
            );
        }
        tx.persist().await.expect("persist");
        n += 500;
    }
}

fn query(pool: &Pool) -> korm::Query<Row> {
    korm::item::<Row>(pool).query(ITEMS.parse().unwrap())
}

fn ns(items: &[korm::Item<Row>]) -> Vec<u64> {
    items
        .iter()
        .map(|i| i.data()["n"].as_u64().expect("n"))
        .collect()
}

/// `count`, `limit`, `offset`, `first_optional`, and chained filters that AND.
pub async fn count_limit_offset_and_chained_filters(pool: &Pool) {
    assert_eq!(query(pool).count().await.expect("count of nothing"), 0);
    assert!(
        query(pool)
            .first_optional()
            .await
            .expect("first_optional")
            .is_none()
    );
    seed_n(pool, 40).await;
    assert_eq!(query(pool).count().await.expect("count"), 40);
    assert_eq!(
        query(pool)
            .filter(lt("n", 10))
            .count()
            .await
            .expect("count"),
        10
    );
    // A second filter ANDs with the first.
    let both = query(pool)
        .filter(gt("n", 4))
        .filter(lt("n", 8))
        .sort_by("n", SortOrder::Asc)
        .get()
        .await
        .expect("chained filters");
    assert_eq!(ns(&both), [5, 6, 7]);
    assert_eq!(
        query(pool)
            .filter(gt("n", 4))
            .filter(lt("n", 8))
            .count()
            .await
            .expect("count"),
        3
    );
    let all = ns(&query(pool)
        .sort_by("meta.score", SortOrder::Desc)
        .get()
        .await
        .expect("all"));
    // limit and offset window the sorted result.
    let window = query(pool)
        .sort_by("meta.score", SortOrder::Desc)
        .offset(5)
        .limit(7)
        .get()
        .await
        .expect("window");
    assert_eq!(ns(&window), all[5..12]);
    // Offset alone, without sort keys: ordered by id, so offsets tile the collection.
    let by_id = ns(&query(pool).offset(0).get().await.expect("by id"));
    let tail = ns(&query(pool).offset(30).get().await.expect("tail"));
    assert_eq!(tail, by_id[30..]);
    assert!(query(pool).offset(40).get().await.expect("past").is_empty());
    let first = query(pool)
        .filter(eq("n", 17))
        .first_optional()
        .await
        .expect("first_optional")
        .expect("found");
    assert_eq!(first.data()["n"], 17);
    let err = query(pool).limit(1).limit(2).get().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "limit",
                ..
            }
        ),
        "{err:?}"
    );
    let err = query(pool).limit(3).count().await.unwrap_err();
    assert!(matches!(err, Error::InvalidOption { .. }), "{err:?}");
}

/// Keyset pages, for several sort keys (values of every type, nulls, missing values, ties)
/// and page sizes, give exactly the query's items in its order, each once; a cursor
/// survives its text form and refuses a query with other sort keys.
pub async fn keyset_pages_walk_every_item_once(pool: &Pool) {
    seed_n(pool, 45).await;
    let sorts: [&[(&str, SortOrder)]; 5] = [
        &[],
        &[("meta.score", SortOrder::Asc)],
        &[("meta.score", SortOrder::Desc)],
        &[("age", SortOrder::Desc), ("meta.score", SortOrder::Asc)],
        &[("name", SortOrder::Desc)],
    ];
    for sort in sorts {
        let sorted = |mut q: korm::Query<Row>| {
            for (path, order) in sort {
                q = q.sort_by(path, *order);
            }
            q
        };
        let mut expected = ns(&sorted(query(pool)).get().await.expect("get"));
        if sort.is_empty() {
            // Without sort keys pages go by id; get() promises no order.
            expected = query(pool)
                .offset(0)
                .get()
                .await
                .map(|items| ns(&items))
                .expect("by id");
        }
        for size in [1, 4, 45, 100, u64::MAX] {
            let mut seen = Vec::new();
            let mut page = sorted(query(pool)).page(size).await.expect("first page");
            let mut pages = 1;
            loop {
                assert!(page.items.len() as u64 <= size);
                seen.extend(ns(&page.items));
                let Some(next) = page.next.take() else { break };
                // The cursor's text reads back as the same cursor.
                let next: Cursor = next.to_string().parse().expect("cursor text");
                page = sorted(query(pool))
                    .after(&next)
                    .page(size)
                    .await
                    .expect("next page");
                pages += 1;
                assert!(pages <= 46, "pages never end ({sort:?}, {size})");
            }
            assert_eq!(seen, expected, "sort {sort:?}, page size {size}");
            // The last page has no cursor, a full one too: no empty page after it.
            assert_eq!(
                pages,
                expected.len().div_ceil(size as usize).max(1),
                "sort {sort:?}, page size {size}"
            );
        }
        // Streaming gives the same items in the same order.
        let streamed: Vec<u64> = sorted(query(pool))
            .stream()
            .map(|item| item.expect("item").data()["n"].as_u64().unwrap())
            .collect()
            .await;
        assert_eq!(streamed, expected, "stream, sort {sort:?}");
    }
    // A page with a filter, and after a cursor taken from a filtered page.
    let first = query(pool)
        .filter(gt("n", 9))
        .sort_by("meta.score", SortOrder::Asc)
        .page(5)
        .await
        .expect("page");
    let rest = query(pool)
        .filter(gt("n", 9))
        .sort_by("meta.score", SortOrder::Asc)
        .after(first.next.as_ref().expect("more"))
        .get()
        .await
        .expect("rest");
    let all = query(pool)
        .filter(gt("n", 9))
        .sort_by("meta.score", SortOrder::Asc)
        .get()
        .await
        .expect("all");
    let mut joined = ns(&first.items);
    joined.extend(ns(&rest));
    assert_eq!(joined, ns(&all));
    // After a cursor, count counts what is left.
    assert_eq!(
        query(pool)
            .filter(gt("n", 9))
            .sort_by("meta.score", SortOrder::Asc)
            .after(first.next.as_ref().unwrap())
            .count()
            .await
            .expect("count after"),
        (all.len() - 5) as u64
    );
    // A cursor of other sort keys, or text that is not a cursor, is refused.
    let err = query(pool)
        .sort_by("n", SortOrder::Asc)
        .after(first.next.as_ref().unwrap())
        .page(5)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "after",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        "not a cursor".parse::<Cursor>(),
        Err(Error::InvalidOption {
            option: "after",
            ..
        })
    ));
}

/// `in_list` with a million values is one parameter on every backend, and finds exactly the
/// items whose value is listed: on a column, on a JSON path, numbers and text.
pub async fn in_list_of_a_million_values(pool: &Pool) {
    seed_n(pool, 30).await;
    // The multiples of 3 from 0 to 2,999,997 (a million values): items 0, 3, ..., 27.
    let numbers: Vec<i64> = (0..1_000_000).map(|i| i * 3).collect();
    let expected: Vec<u64> = (0..30).filter(|n| n % 3 == 0).collect();
    for path in ["n", "meta.n"] {
        let found = query(pool)
            .filter(in_list(path, numbers.iter().copied()))
            .sort_by("n", SortOrder::Asc)
            .get()
            .await
            .expect("in_list of numbers");
        assert_eq!(ns(&found), expected, "{path}");
        let outside = query(pool)
            .filter(korm::not(in_list(path, numbers.iter().copied())))
            .count()
            .await
            .expect("not in_list");
        assert_eq!(outside, 20, "{path}");
    }
    // Texts: name00000 .. with every odd one, a million in all (most match nothing).
    let names: Vec<String> = (0..1_000_000)
        .map(|i| format!("name{:05}", i * 2 + 1))
        .collect();
    let expected: Vec<u64> = (0..30).filter(|n| n % 2 == 1).collect();
    let found = query(pool)
        .filter(in_list("name", names.iter().map(String::as_str)))
        .sort_by("n", SortOrder::Asc)
        .get()
        .await
        .expect("in_list of texts");
    assert_eq!(ns(&found), expected);
    let tags: Vec<String> = (0..1_000_000).map(|i| format!("t{}", i * 5)).collect();
    let found = query(pool)
        .filter(in_list("meta.tag", tags.iter().map(String::as_str)))
        .sort_by("n", SortOrder::Asc)
        .get()
        .await
        .expect("in_list of texts on a path");
    assert_eq!(ns(&found), [0, 5, 10, 15, 20, 25]);
    // Mixed types in one long list: each value matches only its own type.
    let mut mixed: Vec<Value> = (0..100).map(|i| json!(format!("{i}"))).collect();
    mixed.extend((0..100).map(|i| json!(i * 10)));
    mixed.push(json!(2.5));
    let found = query(pool)
        .filter(in_list("n", mixed))
        .sort_by("n", SortOrder::Asc)
        .get()
        .await
        .expect("mixed list");
    assert_eq!(ns(&found), [0, 10, 20]);
}

/// A stream sorted by a path holding whole numbers above `i64::MAX` (no keyset filter holds
/// them) continues past them by offset, instead of ending with an error at the chunk
/// boundary: every item once, in order, with offset and limit too.
pub async fn stream_continues_past_integers_above_i64(pool: &Pool) {
    const HUGE: &str = "[rn]:scale:huge:*";
    let count = usize::try_from(korm::STREAM_CHUNK).unwrap() * 2 + 150;
    let big = |n: usize| -> u64 {
        let n = u64::try_from(n).unwrap();
        if n < 999 { n } else { (1 << 63) + n }
    };
    let handle = korm::item::<Row>(pool);
    for start in (0..count).step_by(500) {
        let mut tx = korm::tx(pool);
        for n in start..(start + 500).min(count) {
            let mut row = Row::new();
            row.insert("n".into(), json!(n));
            row.insert("meta".into(), json!({ "big": big(n) }));
            tx.create(
                handle
                    .from_data(HUGE.parse().unwrap(), row)
                    .expect("floating"),
            );
        }
        tx.persist().await.expect("persist");
    }
    let sorted = |order: SortOrder| {
        handle
            .query(HUGE.parse().unwrap())
            .sort_by("meta.big", order)
    };
    let streamed = async |order: SortOrder, offset: u64, limit: Option<u64>| -> Vec<u64> {
        let mut query = sorted(order).offset(offset);
        if let Some(limit) = limit {
            query = query.limit(limit);
        }
        query
            .stream()
            .map(|item| item.expect("item").data()["n"].as_u64().unwrap())
            .collect()
            .await
    };
    for order in [SortOrder::Asc, SortOrder::Desc] {
        // The order `get()` gives (SQLite reads such numbers as doubles: equal ones keep
        // the id order), every item once.
        let expected = ns(&sorted(order).get().await.expect("get"));
        let mut each = expected.clone();
        each.sort_unstable();
        assert_eq!(each, (0..count as u64).collect::<Vec<_>>());
        assert_eq!(streamed(order, 0, None).await, expected, "{order:?}");
        assert_eq!(
            streamed(order, 1500, Some(400)).await,
            expected[1500..1900],
            "{order:?}"
        );
    }
}

/// A stream reads more items than one chunk holds, in order, with offset and limit; a
/// read-only stream gives the same data.
pub async fn stream_reads_in_chunks(pool: &Pool) {
    let count = usize::try_from(korm::STREAM_CHUNK).unwrap() * 2 + 150;
    seed_n(pool, count).await;
    let all: Vec<u64> = query(pool)
        .sort_by("n", SortOrder::Desc)
        .stream()
        .map(|item| item.expect("item").data()["n"].as_u64().unwrap())
        .collect()
        .await;
    let expected: Vec<u64> = (0..count as u64).rev().collect();
    assert_eq!(all, expected);
    let window: Vec<u64> = query(pool)
        .sort_by("n", SortOrder::Asc)
        .offset(900)
        .limit(1200)
        .stream_read_only()
        .map(|item| {
            let item = item.expect("item");
            assert_eq!(
                item.rn().to_string().rsplit(':').next(),
                item.rn().id().map(|id| id.to_string()).as_deref()
            );
            item.data()["n"].as_u64().unwrap()
        })
        .collect()
        .await;
    assert_eq!(window, (900..2100).collect::<Vec<u64>>());
    let filtered = query(pool)
        .filter(lt("meta.n", 50))
        .stream_read_only()
        .count()
        .await;
    assert_eq!(filtered, 50);
    // A bad query is the stream's only item.
    let bad: Vec<_> = query(pool).filter(eq("a..b", 1)).stream().collect().await;
    assert!(
        matches!(bad.as_slice(), [Err(Error::InvalidPath { .. })]),
        "{bad:?}"
    );
}

/// The items of the collection matching `filter`, by `Filter::matches` on their data (korm's
/// semantics without a database).
async fn expected(pool: &Pool, filter: &korm::Filter) -> Vec<u64> {
    let mut out: Vec<u64> = query(pool)
        .get()
        .await
        .expect("all")
        .iter()
        .filter(|item| {
            filter
                .matches(&Value::Object(item.data().clone()))
                .expect("matches")
        })
        .map(|item| item.data()["n"].as_u64().unwrap())
        .collect();
    out.sort_unstable();
    out
}

/// Declared indexes on JSON paths: the rendered filter uses them (the database's plan names
/// the index), results are what the filter means, declaring is idempotent, and bad
/// declarations are refused.
pub async fn declared_indexes_are_used(pool: &Pool) {
    let collection: korm::Rn<Row> = ITEMS.parse().unwrap();
    let err = korm::declare_index(pool, &collection, "meta.tag", korm::IndexKind::Text)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidPath { .. }), "{err:?}");
    seed_n(pool, 1500).await;
    // Values that must not match a text or number index wrongly: a number where text is
    // indexed, text where numbers are, a text longer than MariaDB's index column keeps, a
    // whole number just past 2^53 (exact in JSON, the double 2^53 in MariaDB's index).
    let handle = korm::item::<Row>(pool);
    let long = "x".repeat(300);
    for (n, tag, num) in [
        (5000, json!(5000), json!("1499")),
        (5001, json!(format!("{long}a")), json!(1499.5)),
        (5002, json!(format!("{long}b")), json!(true)),
        (5003, json!("big"), json!(9_007_199_254_740_993_i64)),
    ] {
        let mut data = Map::new();
        data.insert("n".into(), json!(n));
        data.insert("meta".into(), json!({"tag": tag, "n": num}));
        handle
            .from_data(ITEMS.parse().unwrap(), data)
            .expect("floating")
            .create()
            .await
            .expect("create");
    }
    let by_tag = || query(pool).filter(eq("meta.tag", "t77"));
    let plan = by_tag().explain().await.expect("explain");
    assert!(!plan.contains("korm_ix_"), "no index yet: {plan}");
    for _ in 0..2 {
        korm::declare_index(pool, &collection, "meta.tag", korm::IndexKind::Text)
            .await
            .expect("declare text index");
        korm::declare_index(pool, &collection, "meta.n", korm::IndexKind::Number)
            .await
            .expect("declare number index");
    }
    let tags: Vec<String> = (0..40).map(|i| format!("t{}", i * 37)).collect();
    let filters = [
        eq("meta.tag", "t77"),
        in_list("meta.tag", ["t1", "t2", "t3"]),
        in_list("meta.tag", tags.iter().map(String::as_str)),
        korm::and([korm::gte("meta.tag", "t1490"), lt("meta.tag", "t1495")]),
        korm::and([gt("meta.n", 1495), lt("meta.n", 5000)]),
        eq("meta.n", 1499),
    ];
    for filter in filters {
        let plan = query(pool)
            .filter(filter.clone())
            .explain()
            .await
            .expect("explain");
        assert!(
            plan.contains("korm_ix_"),
            "{filter:?} does not use the index: {plan}"
        );
        let found = query(pool)
            .filter(filter.clone())
            .sort_by("n", SortOrder::Asc)
            .get()
            .await
            .expect("indexed query");
        let want = expected(pool, &filter).await;
        assert!(!want.is_empty(), "{filter:?}");
        assert_eq!(ns(&found), want, "{filter:?}");
    }
    // Values the index does not hold exactly (long texts, 2^53 itself) still compare
    // exactly.
    for filter in [
        eq("meta.tag", format!("{long}a")),
        gt("meta.tag", format!("{long}a")),
        in_list("meta.tag", [format!("{long}b"), "t5".to_owned()]),
        eq("meta.n", 9_007_199_254_740_992_i64),
        gt("meta.n", 9_007_199_254_740_992_i64),
        korm::lte("meta.n", 9_007_199_254_740_992_i64),
    ] {
        let found = query(pool)
            .filter(filter.clone())
            .sort_by("n", SortOrder::Asc)
            .get()
            .await
            .expect("inexact in the index");
        assert_eq!(ns(&found), expected(pool, &filter).await, "{filter:?}");
    }
    // Writes after the declaration are indexed too.
    let mut data = Map::new();
    data.insert("n".into(), json!(6000));
    data.insert("meta".into(), json!({"tag": "fresh", "n": -3}));
    handle
        .from_data(ITEMS.parse().unwrap(), data)
        .expect("floating")
        .create()
        .await
        .expect("create");
    let found = query(pool)
        .filter(eq("meta.tag", "fresh"))
        .get()
        .await
        .expect("fresh");
    assert_eq!(ns(&found), [6000]);
    assert_eq!(
        query(pool)
            .filter(lt("meta.n", 0))
            .count()
            .await
            .expect("count"),
        1
    );
    for (path, why) in [
        ("meta.tags[*]", "[*]"),
        ("nothing.x", "no such field"),
        ("name.x", "not a JSON"),
        ("meta", "inside a JSON field"),
    ] {
        let err = korm::declare_index(pool, &collection, path, korm::IndexKind::Text)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidPath { reason, .. } if reason.contains(why)),
            "{path}: {err:?}"
        );
    }
}

/// A keyset page without sort keys is a range of the primary key, wherever it starts: the
/// database's plan seeks to the cursor's id instead of reading the rows before it.
pub async fn keyset_pages_seek_the_key(pool: &Pool) {
    seed_n(pool, 1500).await;
    let first = query(pool).page(10).await.expect("page");
    let next = first.next.expect("more");
    let plan = query(pool)
        .after(&next)
        .limit(10)
        .explain()
        .await
        .expect("explain");
    let seeks = plan.contains("rnId>?")
        || plan.contains("_pkey")
        || (plan.contains("key=PRIMARY") && plan.contains("type=range"));
    assert!(seeks, "{plan}");
}

/// Item ids are UUID texts of either case (an item created at an RN with an uppercase UUID
/// keeps it). Sorted by `rnId`, pages of any size walk every item once, in the order `get`
/// gives: the sort and the keyset condition compare ids alike.
pub async fn keyset_pages_by_rn_id_walk_ids_of_either_case(pool: &Pool) {
    let ids = [
        "B0000000-0000-4000-8000-000000000001",
        "a0000000-0000-4000-8000-000000000002",
        "C0000000-0000-4000-8000-000000000003",
        "b1000000-0000-4000-8000-000000000004",
        "0a000000-0000-4000-8000-000000000005",
        "A1000000-0000-4000-8000-000000000006",
    ];
    let handle = korm::item::<Row>(pool);
    for (n, id) in ids.iter().enumerate() {
        handle
            .from_data(format!("[rn]:scale:idcase:{id}").parse().unwrap(), row(n))
            .expect("floating")
            .create()
            .await
            .expect("create");
    }
    let collection = || handle.query("[rn]:scale:idcase:*".parse().unwrap());
    for order in [SortOrder::Asc, SortOrder::Desc] {
        let expected = ns(&collection()
            .sort_by("rnId", order)
            .get()
            .await
            .expect("get"));
        assert_eq!(expected.len(), ids.len());
        for size in [1, 2, 4] {
            let mut seen = Vec::new();
            let mut page = collection()
                .sort_by("rnId", order)
                .page(size)
                .await
                .expect("first page");
            loop {
                seen.extend(ns(&page.items));
                let Some(next) = page.next.take() else { break };
                assert!(seen.len() <= ids.len(), "pages never end");
                page = collection()
                    .sort_by("rnId", order)
                    .after(&next)
                    .page(size)
                    .await
                    .expect("next page");
            }
            assert_eq!(seen, expected, "{order:?}, page size {size}");
        }
    }
}
