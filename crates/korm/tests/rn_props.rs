//! Property tests of Resource Names: every valid RN prints back as parsed, and no input panics.

use korm::{Rn, RnForm};
use proptest::prelude::*;
use proptest::sample::select;

const LOWER: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's',
    't', 'u', 'v', 'w', 'x', 'y', 'z',
];
const DIGITS: &[char] = &['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
/// Characters a depot segment may hold, non-ASCII and RN punctuation included.
const SEGMENT_CHARS: &[char] = &[
    'a', 'b', 'z', 'A', 'Q', 'Z', '0', '7', '9', '.', '-', '_', '[', ']', '(', ')', '#', '@', '~',
    '+', '=', '%', ',', '!', '\'', 'é', 'ß', 'Ω', '日', '本', '🦀', '\u{200d}',
];

fn chars_of(sets: &[&[char]]) -> Vec<char> {
    sets.iter().flat_map(|set| set.iter().copied()).collect()
}

/// `[a-z][a-z0-9]*`: a namespace or kind.
fn name() -> impl Strategy<Value = String> {
    (
        select(LOWER),
        prop::collection::vec(select(chars_of(&[LOWER, DIGITS])), 0..10),
    )
        .prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect())
}

/// `[a-z][a-z0-9_]*`: a mod key.
fn mod_key() -> impl Strategy<Value = String> {
    (
        select(LOWER),
        prop::collection::vec(select(chars_of(&[LOWER, DIGITS, &['_']])), 0..8),
    )
        .prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect())
}

/// `[A-Za-z0-9_-]{1,64}`: a mod value.
fn mod_value() -> impl Strategy<Value = String> {
    let upper: Vec<char> = LOWER.iter().map(char::to_ascii_uppercase).collect();
    let all = chars_of(&[LOWER, &upper, DIGITS, &['_', '-']]);
    prop::collection::vec(select(all), 1..=64).prop_map(|chars| chars.into_iter().collect())
}

/// Mods other than `from` and `depot`, keys distinct.
fn extra_mods() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((mod_key(), mod_value()), 0..3).prop_map(|mods| {
        let mut kept: Vec<(String, String)> = Vec::new();
        for (key, value) in mods {
            if key != "from" && key != "depot" && kept.iter().all(|(k, _)| *k != key) {
                kept.push((key, value));
            }
        }
        kept
    })
}

/// A UUIDv4 in hyphenated form, lower or upper case.
fn uuid_text() -> impl Strategy<Value = String> {
    (any::<[u8; 16]>(), any::<bool>()).prop_map(|(bytes, upper)| {
        let text = uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string();
        if upper {
            text.to_ascii_uppercase()
        } else {
            text
        }
    })
}

/// A valid depot segment (never `*`).
fn depot_segment() -> impl Strategy<Value = String> {
    prop::collection::vec(select(SEGMENT_CHARS), 1..16).prop_map(|chars| {
        let segment: String = chars.into_iter().collect();
        if segment == "." || segment == ".." {
            format!("{segment}x")
        } else {
            segment
        }
    })
}

/// Mods with `special` (the `from` or `depot` mod) inserted among `extra` at `at`.
fn with_mod(
    mut extra: Vec<(String, String)>,
    special: Option<(&str, String)>,
    at: usize,
) -> Vec<(String, String)> {
    if let Some((key, value)) = special {
        let at = at % (extra.len() + 1);
        extra.insert(at, (key.to_owned(), value));
    }
    extra
}

fn render(mods: &[(String, String)], segments: &[String]) -> String {
    let mut text = String::from("[rn]");
    for (key, value) in mods {
        text.push_str(&format!("[{key}::{value}]"));
    }
    for segment in segments {
        text.push(':');
        text.push_str(segment);
    }
    text
}

fn assert_mods(rn: &Rn, mods: &[(String, String)]) {
    let got: Vec<(&str, &str)> = rn.mods().collect();
    let want: Vec<(&str, &str)> = mods.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, want);
    for (key, value) in mods {
        assert_eq!(rn.get_mod(key), Some(value.as_str()));
    }
}

/// What every parsed RN must satisfy, whatever its text.
fn assert_consistent(s: &str, rn: &Rn) {
    assert_eq!(rn.to_string(), s);
    assert_eq!(rn.as_str(), s);
    let again: Rn = rn.as_str().parse().expect("a printed rn parses again");
    assert_eq!(&again, rn);
    assert_eq!(again.segments(), rn.segments());
    assert_eq!(
        again.mods().collect::<Vec<_>>(),
        rn.mods().collect::<Vec<_>>()
    );

    assert_eq!(rn.is_depot(), rn.depot().is_some());
    assert!(!(rn.is_depot() && rn.layer().is_some()));
    assert_eq!(rn.is_item(), rn.id().is_some());
    assert_eq!(rn.is_item(), rn.uuid().is_some());
    assert_eq!(rn.namespace().is_some(), !rn.is_depot());
    assert_eq!(rn.table_name().is_some(), !rn.is_depot());
    let last = rn.segments().last().expect("an rn has a segment");
    let ends_in_star = last == "*";
    assert_eq!(
        ends_in_star,
        matches!(rn.form(), RnForm::Collection | RnForm::DepotPrefix)
    );

    let up = rn.collection();
    let up_again: Rn = up.as_str().parse().expect("a collection rn parses");
    assert_eq!(up_again, up);
    let json = serde_json::to_string(rn).expect("an rn serializes");
    let back: Rn = serde_json::from_str(&json).expect("an rn deserializes");
    assert_eq!(&back, rn);
}

/// Bits of RN syntax and hostile text that arbitrary inputs are made from.
const FRAGMENTS: &[&str] = &[
    "[rn]",
    "[",
    "]",
    "::",
    ":",
    "*",
    "..",
    ".",
    "/",
    "\\",
    "from",
    "depot",
    "files",
    "users",
    "freetier",
    "a",
    "Z",
    "0",
    "-",
    "_",
    " ",
    "\n",
    "\0",
    "\u{85}",
    "é",
    "日",
    "🦀",
    "[from::db]",
    "[depot::files]",
    "3df3face-f377-4f86-9bb9-a9b4671a9441",
    "4",
    "8",
    "-4f86-",
    "\u{feff}",
];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(FRAGMENTS).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ]
}

/// Mods, valid and not.
const MOD_FRAGMENTS: &[&str] = &["[from::db]", "[from::db2]", "[depot::files]", "[tag::x]"];
const BAD_MOD_FRAGMENTS: &[&str] = &[
    "[from:db]",
    "[From::db]",
    "[from::]",
    "[::x]",
    "[from::a b]",
    "[from::db",
    "[]",
    "[[",
    "]",
    "[tag::é]",
];

/// Segments, valid and not.
const SEGMENT_FRAGMENTS: &[&str] = &[
    "users",
    "freetier",
    "a",
    "a1",
    "*",
    "3df3face-f377-4f86-9bb9-a9b4671a9441",
    "x.txt",
    "é",
    "日",
    "🦀",
    "A",
    "_",
    "-",
    "[",
    "]",
];
const BAD_SEGMENT_FRAGMENTS: &[&str] = &[
    "3df3face-f377-1f86-9bb9-a9b4671a9441",
    ".",
    "..",
    " ",
    "/",
    "\\",
    "\0",
    "\n",
    "",
];

/// Text made of fragments, in two shapes: a flat mix of RN syntax (half the time after `[rn]`),
/// or `[rn]`, mods, `:` and segments joined by `:`, mostly valid pieces so it often parses.
fn rn_like() -> impl Strategy<Value = String> {
    let flat =
        (any::<bool>(), prop::collection::vec(fragment(), 0..24)).prop_map(|(prefixed, parts)| {
            let body: String = parts.concat();
            if prefixed {
                format!("[rn]{body}")
            } else {
                body
            }
        });
    let one_mod = prop_oneof![4 => select(MOD_FRAGMENTS), 1 => select(BAD_MOD_FRAGMENTS)];
    let piece = prop_oneof![8 => select(SEGMENT_FRAGMENTS), 1 => select(BAD_SEGMENT_FRAGMENTS)];
    let segment = prop::collection::vec(piece, 1..3).prop_map(|parts| parts.concat());
    let count = prop_oneof![3 => Just(3_usize), 1 => 1_usize..6];
    let segments = count.prop_flat_map(move |n| prop::collection::vec(segment.clone(), n));
    let shaped = (prop::collection::vec(one_mod, 0..3), segments)
        .prop_map(|(mods, segments)| format!("[rn]{}:{}", mods.concat(), segments.join(":")));
    prop_oneof![flat, shaped]
}

/// A valid RN of any form, as text.
fn valid_rn() -> impl Strategy<Value = String> {
    prop_oneof![
        (extra_mods(), name(), name(), uuid_text())
            .prop_map(|(mods, ns, kind, id)| render(&mods, &[ns, kind, id])),
        (extra_mods(), name(), name())
            .prop_map(|(mods, ns, kind)| render(&mods, &[ns, kind, "*".to_owned()])),
        (
            extra_mods(),
            mod_value(),
            prop::collection::vec(depot_segment(), 1..6)
        )
            .prop_map(|(mods, depot, segments)| render(
                &with_mod(mods, Some(("depot", depot)), 0),
                &segments
            )),
    ]
}

/// An edit applied to valid text: insert a fragment or remove a character, at a char index.
fn mutated_rn() -> impl Strategy<Value = String> {
    (valid_rn(), any::<usize>(), any::<bool>(), fragment()).prop_map(|(text, at, insert, piece)| {
        let boundaries: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .collect();
        let at = boundaries[at % boundaries.len()];
        let mut out = text.clone();
        if insert {
            out.insert_str(at, &piece);
        } else if at < text.len() {
            out.remove(at);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn item_rns_round_trip(
        extra in extra_mods(),
        layer in prop::option::of(mod_value()),
        at in any::<usize>(),
        namespace in name(),
        kind in name(),
        id in uuid_text(),
    ) {
        let mods = with_mod(extra, layer.clone().map(|l| ("from", l)), at);
        let text = render(&mods, &[namespace.clone(), kind.clone(), id.clone()]);
        let rn: Rn = text.parse().unwrap();
        assert_consistent(&text, &rn);
        prop_assert_eq!(rn.form(), RnForm::Item);
        prop_assert_eq!(rn.namespace(), Some(namespace.as_str()));
        prop_assert_eq!(rn.kind(), Some(kind.as_str()));
        prop_assert_eq!(rn.id(), Some(id.as_str()));
        prop_assert_eq!(rn.uuid(), Some(uuid::Uuid::parse_str(&id).unwrap()));
        prop_assert_eq!(rn.layer(), layer.as_deref());
        prop_assert_eq!(rn.depot(), None);
        prop_assert_eq!(rn.table_name(), Some(format!("__items__{namespace}__{kind}")));
        assert_mods(&rn, &mods);
        let collection = rn.collection();
        prop_assert_eq!(collection.form(), RnForm::Collection);
        prop_assert_eq!(collection.with_id(rn.uuid().unwrap()).unwrap().segments()[..2].to_vec(), rn.segments()[..2].to_vec());
    }

    #[test]
    fn collection_rns_round_trip(
        extra in extra_mods(),
        layer in prop::option::of(mod_value()),
        at in any::<usize>(),
        namespace in name(),
        kind in name(),
        new_layer in mod_value(),
    ) {
        let mods = with_mod(extra, layer.clone().map(|l| ("from", l)), at);
        let text = render(&mods, &[namespace.clone(), kind.clone(), "*".to_owned()]);
        let rn: Rn = text.parse().unwrap();
        assert_consistent(&text, &rn);
        prop_assert_eq!(rn.form(), RnForm::Collection);
        prop_assert_eq!(rn.namespace(), Some(namespace.as_str()));
        prop_assert_eq!(rn.kind(), Some(kind.as_str()));
        prop_assert_eq!(rn.id(), None);
        prop_assert_eq!(rn.layer(), layer.as_deref());
        assert_mods(&rn, &mods);
        prop_assert_eq!(rn.collection(), rn.clone());
        let moved = rn.with_layer(&new_layer).unwrap();
        prop_assert_eq!(moved.layer(), Some(new_layer.as_str()));
        assert_consistent(moved.as_str(), &moved);
        let grounded = moved.without_layer();
        prop_assert_eq!(grounded.layer(), None);
    }

    #[test]
    fn depot_rns_round_trip(
        extra in extra_mods(),
        depot in mod_value(),
        at in any::<usize>(),
        segments in prop::collection::vec(depot_segment(), 1..8),
        prefix in any::<bool>(),
    ) {
        let mods = with_mod(extra, Some(("depot", depot.clone())), at);
        let mut segments = segments;
        if prefix {
            *segments.last_mut().unwrap() = "*".to_owned();
        }
        let text = render(&mods, &segments);
        let rn: Rn = text.parse().unwrap();
        assert_consistent(&text, &rn);
        prop_assert_eq!(rn.form(), if prefix { RnForm::DepotPrefix } else { RnForm::DepotFile });
        prop_assert_eq!(rn.depot(), Some(depot.as_str()));
        prop_assert_eq!(rn.segments(), segments.as_slice());
        prop_assert_eq!(rn.namespace(), None);
        prop_assert_eq!(rn.layer(), None);
        assert_mods(&rn, &mods);
        if !prefix {
            let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
            let built = Rn::depot_file(&depot, &refs).unwrap();
            prop_assert_eq!(built.segments(), rn.segments());
            prop_assert_eq!(built.depot(), rn.depot());
        }
    }

    #[test]
    fn rn_like_text_never_panics_and_prints_back(s in rn_like()) {
        match s.parse::<Rn>() {
            Ok(rn) => assert_consistent(&s, &rn),
            Err(err) => prop_assert!(err.to_string().starts_with("invalid rn ")),
        }
    }

    #[test]
    fn mutated_rns_never_panic_and_print_back(s in mutated_rn()) {
        match s.parse::<Rn>() {
            Ok(rn) => assert_consistent(&s, &rn),
            Err(err) => prop_assert!(err.to_string().starts_with("invalid rn ")),
        }
    }

    #[test]
    fn arbitrary_text_never_panics(chars in prop::collection::vec(any::<char>(), 0..64), prefixed in any::<bool>()) {
        let body: String = chars.into_iter().collect();
        let s = if prefixed { format!("[rn]{body}") } else { body };
        if let Ok(rn) = s.parse::<Rn>() {
            assert_consistent(&s, &rn);
        }
    }
}
