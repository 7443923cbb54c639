//! Malformed Resource Names: every one is `Error::InvalidRn` naming the offending part.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use korm::{Error, Rn};

const UUID: &str = "3df3face-f377-4f86-9bb9-a9b4671a9441";

/// Parses `input`, which must fail with `InvalidRn` whose part contains `part`.
fn assert_rejected(input: &str, part: &str) {
    let error = match input.parse::<Rn>() {
        Ok(rn) => panic!("{:?} parsed as {rn:?}", clip(input)),
        Err(e) => e,
    };
    let message = error.to_string();
    match &error {
        Error::InvalidRn {
            part: got, reason, ..
        } => {
            assert!(
                got.contains(part),
                "{:?}: part {got:?} does not name {part:?} ({reason})",
                clip(input)
            );
            assert!(!reason.is_empty(), "{:?}: empty reason", clip(input));
            assert!(
                message.contains(got.as_str()),
                "the message names the part: {message}"
            );
        }
        other => panic!("{:?}: expected InvalidRn, got {other:?}", clip(input)),
    }
    assert!(
        message.len() < 1_000,
        "{:?}: the message is {} bytes long",
        clip(input),
        message.len()
    );
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[test]
fn malformed_rns_are_invalid_rn_naming_the_part() {
    let cases: &[(&str, &str)] = &[
        ("", "prefix"),
        ("users:freetier:*", "prefix"),
        ("[RN]:users:freetier:*", "prefix"),
        (" [rn]:users:freetier:*", "prefix"),
        ("[rn ]:users:freetier:*", "prefix"),
        ("[rn]", "segments"),
        ("[rn][from::cardb]", "segments"),
        ("[rn]users:freetier:*", "separator"),
        ("[rn][from:cardb]:users:freetier:*", "mod \"[from:cardb]\""),
        ("[rn][from::]:users:freetier:*", "mod"),
        ("[rn][from::car db]:users:freetier:*", "mod"),
        ("[rn][From::cardb]:users:freetier:*", "mod"),
        ("[rn][from::cardb:users:freetier:*", "mod"),
        (
            "[rn][from::a][from::b]:users:freetier:*",
            "mod \"[from::b]\"",
        ),
        ("[rn][from::a;DROP TABLE x]:users:freetier:*", "mod"),
        ("[rn][from::a'--]:users:freetier:*", "mod"),
        ("[rn][from::a][depot::files]:x.txt", "mods"),
        ("[rn][from::../etc]:users:freetier:*", "mod"),
        ("[rn]:users;DROP TABLE x:freetier:*", "namespace"),
        ("[rn]:Users:freetier:*", "namespace \"Users\""),
        ("[rn]:users:free_tier:*", "kind \"free_tier\""),
        ("[rn]:users:FREE:*", "kind"),
        ("[rn]:users:*", "segments"),
        ("[rn]:users:freetier:x:*", "segments"),
        ("[rn]:users:freetier:123", "id \"123\""),
        ("[rn]:users:freetier:'; DROP TABLE x; --", "id"),
        ("[rn]:users:freetier:\" OR \"1\"=\"1", "id"),
        ("[rn]:users:fr*ee:*", "kind"),
        ("[rn]:*:freetier:*", "namespace"),
        ("[rn]:users:freetier:*:", "segment 4"),
        ("[rn]::freetier:*", "namespace"),
        ("[rn]:users:freetier:* ", "id"),
        ("[rn]:users:freetier:*\n", "id"),
        ("[rn]:users\0:freetier:*", "namespace"),
        ("[rn]:usérs:freetier:*", "namespace"),
        ("[rn]:users:ｆree:*", "kind"),
        ("[rn]:\"users\":freetier:*", "namespace"),
        ("[rn]:..:freetier:*", "namespace \"..\""),
        ("[rn]:users/x:freetier:*", "namespace"),
        ("[rn]:users:freetier:../../etc/passwd", "id"),
        (
            "[rn]:users:freetier:3df3face-f377-1f86-9bb9-a9b4671a9441",
            "id",
        ),
        (
            "[rn]:users:freetier:3df3face-f377-4f86-9bb9-a9b4671a944",
            "id",
        ),
        (
            "[rn]:users:freetier:{3df3face-f377-4f86-9bb9-a9b4671a9441}",
            "id",
        ),
        ("[rn]:users:freetier:3df3facef3774f869bb9a9b4671a9441", "id"),
        ("[rn][depot::files]:invoices:..:secret.txt", "segment 2"),
        ("[rn][depot::files]:.:secret.txt", "segment 1"),
        ("[rn][depot::files]:invoices:a/b.txt", "segment 2"),
        ("[rn][depot::files]:..\\windows", "segment 1"),
        ("[rn][depot::files]:a\0b", "segment 1"),
        ("[rn][depot::files]:invoices:*:x.txt", "segment 2"),
        ("[rn][depot::files]:*:*", "segment 1"),
        ("[rn][depot::files]:invoices:f*", "segment 2"),
        ("[rn][depot::files]:invoices:my invoice.txt", "segment 2"),
        ("[rn][depot::files]:", "segment 1"),
        ("[rn][depot::files]:a::b", "segment 2"),
        ("[rn][depot::fi/les]:x.txt", "mod"),
        ("[rn][depot::files]:a\tb", "segment 1"),
    ];
    assert!(cases.len() >= 30);
    for (input, part) in cases {
        assert_rejected(input, part);
    }
    let long_segment = format!("[rn][depot::files]:{}", "a".repeat(256));
    assert_rejected(&long_segment, "segment 1");
}

#[test]
fn a_ten_megabyte_rn_is_rejected_with_a_short_message() {
    let ten_mb = 10 * 1024 * 1024;
    let bad_kind = format!("[rn]:users:{}:*", "A".repeat(ten_mb));
    assert_rejected(&bad_kind, "kind");
    let garbage = format!("[rn]:{}", "x;".repeat(ten_mb / 2));
    assert_rejected(&garbage, "segments");
    let bad_namespace = format!("[rn]:{}:freetier:*", "x;".repeat(ten_mb / 2));
    assert_rejected(&bad_namespace, "namespace");
    let many_segments = format!("[rn]{}", ":a".repeat(ten_mb / 2));
    assert_rejected(&many_segments, "segments");
    let bad_id = format!("[rn]:users:freetier:{UUID}{}", "0".repeat(ten_mb));
    assert_rejected(&bad_id, "id");
    let unclosed = format!("[rn][from::{}", "a".repeat(ten_mb));
    assert_rejected(&unclosed, "mod");
    let long_value = format!("[rn][from::{}]:users:freetier:*", "a".repeat(ten_mb));
    assert_rejected(&long_value, "mod");
}

#[test]
fn a_ten_megabyte_rn_of_depot_segments_parses_in_linear_time() {
    let input = format!("[rn][depot::files]{}:f.txt", ":dir".repeat(2 * 1024 * 1024));
    let start = Instant::now();
    let rn: Rn = input
        .parse()
        .expect("many short segments are a valid depot rn");
    assert_eq!(rn.to_string(), input);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

/// Parses on another thread and gives up after `limit` (the thread is left behind).
fn parses_within(input: String, limit: Duration) -> Option<Duration> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let _ = input.parse::<Rn>();
        let _ = tx.send(start.elapsed());
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn a_ten_megabyte_rn_of_distinct_mods_parses_in_linear_time() {
    let mut input = String::from("[rn]");
    let mut i = 0u64;
    while input.len() < 10 * 1024 * 1024 {
        input.push_str(&format!("[k{i}::v]"));
        i += 1;
    }
    input.push_str(":users:freetier:*");
    let took = parses_within(input, Duration::from_secs(20));
    assert!(
        took.is_some(),
        "parsing {i} mods took more than 20 s (a hostile RN is a denial of service)"
    );
}

#[test]
fn rn_deserialization_rejects_hostile_strings() {
    for bad in [
        "\"[rn]:users;DROP TABLE x:freetier:*\"",
        "\"[rn]:Users:freetier:*\"",
        "\"\"",
        "42",
        "null",
        "{\"rn\": \"[rn]:users:freetier:*\"}",
    ] {
        let result = serde_json::from_str::<Rn>(bad);
        assert!(result.is_err(), "{bad} deserialized as {result:?}");
    }
}

#[test]
fn rn_builders_reject_hostile_parts() {
    for (namespace, kind) in [
        ("users;drop", "freetier"),
        ("users", "free tier"),
        ("", "freetier"),
        ("users", ""),
        ("Users", "freetier"),
        ("users", "x\"y"),
    ] {
        match Rn::collection_of(namespace, kind) {
            Err(Error::InvalidRn { .. }) => {}
            other => panic!("{namespace:?}:{kind:?} gave {other:?}"),
        }
    }
    for segments in [
        &["..", "x"][..],
        &["a/b"][..],
        &["*"][..],
        &[][..],
        &["a\0"][..],
    ] {
        match Rn::depot_file("files", segments) {
            Err(Error::InvalidRn { .. }) => {}
            other => panic!("{segments:?} gave {other:?}"),
        }
    }
    assert!(matches!(
        Rn::depot_file("fi les", &["x.txt"]),
        Err(Error::InvalidRn { .. })
    ));
    let users: Rn = USERS_RN.parse().expect("rn");
    for layer in [
        "",
        "a b",
        "x'; DROP TABLE t; --",
        "a]",
        "é",
        &"a".repeat(65),
    ] {
        match users.with_layer(layer) {
            Err(Error::InvalidIdentifier { what: "layer", .. }) => {}
            other => panic!("layer {layer:?} gave {other:?}"),
        }
    }
    let v1 = uuid::Uuid::parse_str("3df3face-f377-1f86-9bb9-a9b4671a9441").expect("uuid");
    assert!(matches!(users.with_id(v1), Err(Error::InvalidRn { .. })));
    assert!(matches!(
        users.with_id(uuid::Uuid::nil()),
        Err(Error::InvalidRn { .. })
    ));
}

const USERS_RN: &str = "[rn]:users:freetier:*";
