//! Field-level commits: which top-level fields a commit changes against the item's
//! before-image (the row as it was loaded or last written), and the item as stored after.
//!
//! A commit writes only those fields, each on the condition that the row still holds its
//! before-image value (see [`crate::write`]): two writers changing different fields of one
//! item both land, and two changing the same field can not both win silently.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::BeforeImage;
use crate::layer::Stored;
use crate::model::{Field, is_envelope};

/// What a commit writes, and the item as stored once it is written.
#[derive(Debug)]
pub(crate) struct FieldDiff {
    /// The fields whose value differs from the before-image, in the model's order.
    pub(crate) changed: Vec<Field>,
    /// The item as stored after the write: the before-image with the changed fields.
    pub(crate) after: BeforeImage,
}

/// Compares the encoded `fields` of an item with its before-image.
///
/// A field is unchanged when its value equals the stored one: numbers by value (a double
/// column holds a whole number as `3.0`), objects without regard to key order, and
/// encryption envelopes by what they seal, unless the stored one was sealed under another
/// key than the current one (a commit re-encrypts those, as a whole-row write did).
/// A field absent from the before-image was null.
pub(crate) fn diff(fields: Vec<Field>, before: &BeforeImage) -> FieldDiff {
    match before {
        BeforeImage::Image(entries) => diff_borrowed(
            fields,
            |name| {
                entries
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| Old::Stored(v))
            },
            || {
                entries
                    .iter()
                    .map(|(n, v)| (n.as_str(), Old::Stored(v)))
                    .collect()
            },
        ),
        BeforeImage::Fields(old) => diff_borrowed(
            fields,
            |name| {
                old.iter()
                    .find(|f| f.name == name)
                    .map(|f| Old::Value(&f.value))
            },
            || {
                old.iter()
                    .map(|f| (f.name.as_str(), Old::Value(&f.value)))
                    .collect()
            },
        ),
        // Not known (an item made from data): every field is written, nulls too.
        BeforeImage::Unknown => {
            let after = BeforeImage::Fields(fields.clone().into());
            FieldDiff {
                changed: fields,
                after,
            }
        }
        _ => diff_owned(fields, before),
    }
}

/// A field of a before-image held as values, borrowed.
#[derive(Clone, Copy)]
enum Old<'a> {
    Stored(&'a Stored),
    Value(&'a Value),
}

impl Old<'_> {
    fn same(self, new: &Value) -> bool {
        match self {
            Old::Stored(old) => same_stored(new, old),
            Old::Value(old) => same_value(new, old),
        }
    }

    /// Whether the stored value is `new` exactly (the new value can stand for it): the same
    /// JSON text. `Value` equality is not enough: it ignores key order and the sign of a
    /// zero, while SQLite and MariaDB compare the JSON text a condition binds byte for byte,
    /// so an equal object rebuilt in another order would make the next conditional write a
    /// false conflict.
    fn is_exactly(self, new: &Value) -> bool {
        match self {
            Old::Stored(Stored::Value(old)) | Old::Value(old) => same_text(old, new),
            Old::Stored(Stored::JsonText(_)) => false,
        }
    }

    fn to_stored(self) -> Stored {
        match self {
            Old::Stored(old) => old.clone(),
            Old::Value(old) => Stored::Value(old.clone()),
        }
    }
}

/// Whether `a` and `b` serialize to the same JSON text: objects with the same keys in the
/// same order, numbers of the same representation (a double by its bits), without
/// serializing either.
fn same_text(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_text(va, vb))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_text(a, b))
        }
        (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            a.is_f64() && b.is_f64() && a.as_f64().map(f64::to_bits) == b.as_f64().map(f64::to_bits)
        }
        _ => a == b,
    }
}

/// [`diff`] over a before-image of values: unchanged fields equal to what is stored move
/// into the after-image instead of copies of the stored ones (the hot path of repeated
/// commits of one item).
fn diff_borrowed<'a>(
    fields: Vec<Field>,
    find: impl Fn(&str) -> Option<Old<'a>>,
    all: impl FnOnce() -> Vec<(&'a str, Old<'a>)>,
) -> FieldDiff {
    let mut after: Vec<(String, Stored)> = Vec::with_capacity(fields.len());
    let mut changed = Vec::new();
    for field in fields {
        match find(&field.name) {
            Some(old) if old.same(&field.value) => {
                if old.is_exactly(&field.value) {
                    after.push((field.name, Stored::Value(field.value)));
                } else {
                    after.push((field.name, old.to_stored()));
                }
            }
            Some(_) => {
                after.push((field.name.clone(), Stored::Value(field.value.clone())));
                changed.push(field);
            }
            None if field.value.is_null() => {}
            None => {
                after.push((field.name.clone(), Stored::Value(field.value.clone())));
                changed.push(field);
            }
        }
    }
    // Columns the model does not write stay as they are.
    let written = after.len();
    for (name, old) in all() {
        if !after[..written].iter().any(|(n, _)| n == name) {
            after.push((name.to_owned(), old.to_stored()));
        }
    }
    FieldDiff {
        changed,
        after: BeforeImage::Image(Arc::from(after)),
    }
}

/// [`diff`] over any before-image, through its entries.
fn diff_owned(fields: Vec<Field>, before: &BeforeImage) -> FieldDiff {
    let mut entries = before.entries();
    let index: Option<HashMap<String, usize>> = (entries.len() > 16).then(|| {
        entries
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect()
    });
    let find = |entries: &[(String, Stored)], name: &str| match &index {
        Some(index) => index.get(name).copied(),
        None => entries.iter().position(|(n, _)| n == name),
    };
    let mut changed = Vec::new();
    for field in fields {
        match find(&entries, &field.name) {
            Some(i) => {
                if !same_stored(&field.value, &entries[i].1) {
                    entries[i].1 = Stored::Value(field.value.clone());
                    changed.push(field);
                }
            }
            None if field.value.is_null() => {}
            None => {
                entries.push((field.name.clone(), Stored::Value(field.value.clone())));
                changed.push(field);
            }
        }
    }
    FieldDiff {
        changed,
        after: BeforeImage::Image(Arc::from(entries)),
    }
}

/// Whether `new` (storage form) is the value `old` holds.
fn same_stored(new: &Value, old: &Stored) -> bool {
    match old {
        Stored::Value(old) => same_value(new, old),
        Stored::JsonText(text) => {
            if matches!(new, Value::Object(_) | Value::Array(_))
                && !is_envelope(new)
                && serde_json::to_string(new).is_ok_and(|t| t == *text)
            {
                return true;
            }
            same_value(new, &crate::model::Cell::Json(text).to_value())
        }
    }
}

/// Whether two storage-form values are the same (see [`diff`]).
pub(crate) fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(p), Some(q)) => p == q,
            // A whole number above i64::MAX (nested JSON may hold one) compares exactly
            // too: as doubles, numbers up to 2048 apart would be the same change-free value.
            (None, _) | (_, None) if x.is_u64() && y.is_u64() => x.as_u64() == y.as_u64(),
            _ => x.as_f64().is_some() && x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            if is_envelope(a) || is_envelope(b) {
                return same_secret(a, b);
            }
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

/// Whether two envelopes seal the same value, the stored one (`old`) under the current key.
fn same_secret(new: &Value, old: &Value) -> bool {
    if !(is_envelope(new) && is_envelope(old)) {
        return false;
    }
    let Ok(ring) = crate::crypto::boundary_ring().unwrap_or_else(crate::crypto::key_ring) else {
        return false;
    };
    let key_of = |v: &Value| {
        v.get(crate::crypto::KEY_ID_FIELD)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if key_of(old).as_deref() != Some(ring.current_key_id()) {
        return false;
    }
    match (
        crate::crypto::open_value(&ring, new),
        crate::crypto::open_value(&ring, old),
    ) {
        (Ok(x), Ok(y)) => same_value(&x, &y),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cell, StoredRow, encode};
    use serde_json::json;

    fn fields(value: Value) -> Vec<Field> {
        encode(&value).unwrap()
    }

    #[test]
    fn whole_numbers_above_i64_compare_exactly() {
        assert!(!same_value(&json!(u64::MAX), &json!(u64::MAX - 1)));
        assert!(!same_value(
            &json!(i64::MAX),
            &json!(9_223_372_036_854_775_808_u64)
        ));
        assert!(same_value(&json!(u64::MAX), &json!(u64::MAX)));
        let nested = |n: u64| json!({"meta": {"big": n}});
        assert!(!same_value(&nested(u64::MAX), &nested(u64::MAX - 1)));
        // A whole double still equals its integer.
        assert!(same_value(&json!(5), &json!(5.0)));
        assert!(!same_value(&json!(5), &json!(5.5)));
    }

    #[test]
    fn only_changed_fields_are_written() {
        let before = BeforeImage::Read(StoredRow::from_pairs(
            "id",
            vec![
                ("a", Cell::Integer(1)),
                ("b", Cell::Double(2.0)),
                ("c", Cell::Json(r#"{"y": 2, "x": 1}"#)),
                ("d", Cell::Text("same")),
                ("extra", Cell::Text("kept")),
            ],
        ));
        let d = diff(
            fields(json!({"a": 1, "b": 2, "c": {"x": 1, "y": 2}, "d": "new", "e": null})),
            &before,
        );
        let names: Vec<&str> = d.changed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["d"]);
        let after = d.after.entries();
        // Unchanged JSON keeps its stored text (the next write's condition binds it).
        assert!(after.contains(&("c".into(), Stored::JsonText(r#"{"y": 2, "x": 1}"#.into()))));
        assert!(after.contains(&("d".into(), Stored::Value(json!("new")))));
        assert!(after.contains(&("extra".into(), Stored::Value(json!("kept")))));
        let d = diff(fields(json!({"a": 2, "c": [1], "f": 1})), &before);
        let names: Vec<&str> = d.changed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "f"]);
    }

    #[test]
    fn images_of_values_diff_the_same_way() {
        let created =
            BeforeImage::Fields(fields(json!({"a": 1, "b": 2.5, "c": {"x": [1]}})).into());
        let d = diff(fields(json!({"a": 1, "b": 3, "c": {"x": [1]}})), &created);
        let names: Vec<&str> = d.changed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["b"]);
        let d = diff(fields(json!({"a": 1.0, "b": 3, "d": "new"})), &d.after);
        let names: Vec<&str> = d.changed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["d"]);
        let after = d.after.entries();
        // `a` keeps its stored form (1, not 1.0); `c`, which the model no longer writes, stays.
        assert_eq!(
            after,
            vec![
                ("a".to_owned(), Stored::Value(json!(1))),
                ("b".to_owned(), Stored::Value(json!(3))),
                ("d".to_owned(), Stored::Value(json!("new"))),
                ("c".to_owned(), Stored::Value(json!({"x": [1]}))),
            ]
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(same_value(&json!(3), &json!(3.0)));
        assert!(!same_value(&json!(3), &json!(3.5)));
        assert!(!same_value(&json!("3"), &json!(3)));
        assert!(same_value(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
    }

    #[test]
    fn envelopes_compare_by_what_they_seal() {
        let ring = crate::crypto::key_ring().unwrap();
        let a = ring.encrypt(&json!("secret")).unwrap();
        let b = ring.encrypt(&json!("secret")).unwrap();
        let c = ring.encrypt(&json!("other")).unwrap();
        assert_ne!(a, b, "a fresh nonce each time");
        assert!(same_value(&a, &b));
        assert!(!same_value(&a, &c));
        assert!(!same_value(&a, &json!({"plain": 1})));
    }
}
