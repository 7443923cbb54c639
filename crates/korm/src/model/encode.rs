//! Model -> fields: a serializer that reads a model's top-level fields in one pass and notices
//! the wrapper types ([`Unique`](super::Unique), [`Rn`](crate::Rn)) by their newtype markers.

use serde::Serialize;
use serde::ser::{self, Impossible, SerializeMap, SerializeStruct};
use serde_json::{Map, Value};
use sha2::{Digest, Sha512};

use super::{ColumnKind, RN_MARKER, UNIQUE_MARKER};
use crate::error::{Error, Result, clip};
use crate::layer::schema::{ID_COLUMN, UNIQUE_PREFIX};

/// One top-level field of a model, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    /// The column name (the field name, validated).
    pub(crate) name: String,
    /// The value in storage form (what korm 1.5 puts in WAL records: RNs as strings,
    /// envelopes for encrypted values).
    pub(crate) value: Value,
    /// The column kind the value asks for; `None` for null (it fits any column).
    pub(crate) kind: Option<ColumnKind>,
    /// Whether the field is a [`Unique`](super::Unique) field.
    pub(crate) unique: bool,
}

/// Encodes a model into its fields.
///
/// # Errors
/// [`Error::Encode`] when the model is not a struct or map, a key is not a string, or a value
/// can not be represented as JSON; [`Error::InvalidIdentifier`] for a field name that is not
/// a safe column name.
pub(crate) fn encode<T: Serialize + ?Sized>(data: &T) -> Result<Vec<Field>> {
    let fields = data.serialize(ModelSerializer).map_err(|e| Error::Encode {
        what: std::any::type_name::<T>().to_owned(),
        reason: e.to_string(),
    })?;
    for (i, field) in fields.iter().enumerate() {
        validate_field_name(&field.name)?;
        if nesting(&field.value) > MAX_JSON_NESTING {
            return Err(Error::Encode {
                what: format!("field `{}` of {}", field.name, std::any::type_name::<T>()),
                reason: format!(
                    "its JSON nests objects and arrays more than {MAX_JSON_NESTING} levels deep, \
                     korm's limit on every backend (MariaDB stores no more)"
                ),
            });
        }
        // SQL column names ignore case, so `name` and `Name` would be one column.
        if let Some(other) = fields[..i]
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(&field.name))
        {
            return Err(Error::Encode {
                what: std::any::type_name::<T>().to_owned(),
                reason: format!(
                    "fields {:?} and {:?} would be the same column (column names ignore case)",
                    other.name, field.name
                ),
            });
        }
    }
    Ok(fields)
}

/// How deep objects and arrays may nest in one stored JSON value: MariaDB's `JSON` columns
/// refuse more (their `json_valid` check), so it is korm's limit on every backend, and a value
/// read back deeper is a decode error naming its item.
pub(crate) const MAX_JSON_NESTING: usize = 31;

/// How deep objects and arrays nest in `value` (a scalar: 0). Iterative: the value may be
/// as deep as a hostile model makes it.
pub(crate) fn nesting(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0usize)];
    while let Some((value, depth)) = pending.pop() {
        match value {
            Value::Array(items) => pending.extend(items.iter().map(|c| (c, depth + 1))),
            Value::Object(map) => pending.extend(map.values().map(|c| (c, depth + 1))),
            _ => continue,
        }
        deepest = deepest.max(depth + 1);
    }
    deepest
}

/// How deep objects and arrays nest in JSON text, counted while scanning it (no parse, no
/// recursion); stops counting past `limit`.
pub(crate) fn text_nesting(text: &str, limit: usize) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > limit {
                        return deepest;
                    }
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Names a JavaScript reader of the same data (korm 1.5) must never meet as a key: they reach
/// an object's prototype. korm 1.5 refuses them; so does korm-rs, as field names, as keys of
/// resolve and filter paths, and (skipped) under a wildcard.
pub(crate) const PROTOTYPE_KEYS: [&str; 3] = ["__proto__", "constructor", "prototype"];

/// Checks that a field name is a safe column name: `[A-Za-z_][A-Za-z0-9_]*`, at most 64
/// characters, not `rnId`, not starting with `__korm_` (both are korm's own columns), and
/// none of [`PROTOTYPE_KEYS`].
pub(crate) fn validate_field_name(name: &str) -> Result<()> {
    let reject = |reason: &str| {
        Err(Error::InvalidIdentifier {
            what: "field",
            name: clip(name),
            reason: reason.to_owned(),
        })
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return reject("is empty"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return reject("must start with a letter or _ ([A-Za-z_][A-Za-z0-9_]*)");
        }
        _ => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return reject("must match [A-Za-z_][A-Za-z0-9_]*");
    }
    if name.len() > 64 {
        return reject("is longer than 64 characters");
    }
    if name.eq_ignore_ascii_case(ID_COLUMN) {
        return reject("is korm's key column (column names ignore case)");
    }
    if PROTOTYPE_KEYS.contains(&name) {
        return reject("reaches a JavaScript object's prototype, which korm 1.5 refuses");
    }
    // `name` is ASCII (checked above): its first 7 bytes are whole characters.
    if name
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("__korm_"))
        || name.starts_with(UNIQUE_PREFIX)
    {
        return reject("starts with __korm_, which korm reserves");
    }
    Ok(())
}

/// Whether a JSON value is a korm encryption envelope (`{"__ENCRYPTED__": true, ...}`).
pub(crate) fn is_envelope(value: &Value) -> bool {
    matches!(value, Value::Object(map) if map.get("__ENCRYPTED__") == Some(&Value::Bool(true)))
}

/// The column kind a storage-form value asks for (`None` for null, which fits any column).
pub(crate) fn infer_kind(value: &Value) -> Option<ColumnKind> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) => ColumnKind::Boolean,
        Value::Number(n) if n.is_i64() => ColumnKind::Integer,
        // Doubles, and (in before-images read back) whole numbers above i64::MAX; the encoder
        // refuses those in new data.
        Value::Number(_) => ColumnKind::Double,
        Value::String(_) => ColumnKind::Text,
        v if is_envelope(v) => ColumnKind::Encrypted,
        Value::Array(_) | Value::Object(_) => ColumnKind::Json,
    })
}

/// The unique-field fingerprint of a value: SHA-512 (lowercase hex) of its canonical JSON
/// as korm 1.5 writes it: object keys sorted recursively (by UTF-16 code units, as
/// JavaScript sorts strings) and doubles printed as JavaScript's `JSON.stringify` prints
/// them ([`js_number`]), so both runtimes compute the same fingerprint.
pub(crate) fn fingerprint(value: &Value) -> String {
    let mut text = String::new();
    js_json(value, &mut text);
    hex::encode(Sha512::digest(text.as_bytes()))
}

/// `value` as korm 1.5's canonical JSON (see [`fingerprint`]).
fn js_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                js_string(key, out);
                out.push(':');
                js_json(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                js_json(item, out);
            }
            out.push(']');
        }
        Value::String(text) => js_string(text, out),
        // A whole number korm holds as one prints its digits (beyond 2^53 JavaScript can not
        // hold it exactly anyway); a double prints as JavaScript prints it.
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => js_number(f, out),
            _ => out.push_str(&n.to_string()),
        },
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

/// A string as JSON: serde_json escapes what `JSON.stringify` escapes (`"`, `\\`, the
/// control characters, `\b\f\n\r\t` by name and the rest as lowercase `\u00xx`).
fn js_string(text: &str, out: &mut String) {
    // Serializing a `str` can not fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// A finite double as JavaScript's `Number.prototype.toString` prints it (ECMA-262,
/// Number::toString): its shortest round-trip digits, written out in full from 1e-6 up to
/// 1e21 (`100`, `0.0000015`, `1152921504606847000`) and in exponent form outside it
/// (`1e+21`, `1.5e-7`); `-0` prints as `0`.
fn js_number(f: f64, out: &mut String) {
    if f == 0.0 || !f.is_finite() {
        // JSON.stringify writes NaN and the infinities as null; korm stores them as null.
        out.push_str(if f == 0.0 { "0" } else { "null" });
        return;
    }
    if f < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, as JavaScript's do.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let (k, n) = (digits.len() as i64, exp.parse::<i64>().unwrap_or(0) + 1);
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = n - 1;
        out.push_str(if e < 0 { "e-" } else { "e+" });
        out.push_str(&e.abs().to_string());
    }
}

/// `value` as JSON with object keys sorted at every level (what WAL MACs and the pool
/// snapshot's fingerprints are computed over; unique-field fingerprints use korm 1.5's
/// canonical form, see [`fingerprint`]).
pub(crate) fn canonical_json(value: &Value, out: &mut Vec<u8>) {
    serde_json::to_writer(out, &Canonical(value))
        .unwrap_or_else(|_| unreachable!("JSON data always serializes into a Vec"));
}

/// Serializes a JSON value canonically: object keys sorted at every level, and integral
/// doubles printed as integers (as JavaScript's `JSON.stringify` prints them).
pub(crate) struct Canonical<'a>(pub(crate) &'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                // JavaScript sorts keys by UTF-16 code units; for the BMP that equals byte
                // order of UTF-8 except across surrogate ranges, which field keys do not use.
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &Canonical(value))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Canonical(item))?;
                }
                out.end()
            }
            Value::Number(n) => match n.as_f64() {
                // Below 1e21 (< 2^70) an integral double is exactly a u128.
                Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 1e21 => {
                    if f < 0.0 {
                        serializer.serialize_i128(f as i128)
                    } else {
                        serializer.serialize_u128(f as u128)
                    }
                }
                _ => n.serialize(serializer),
            },
            other => other.serialize(serializer),
        }
    }
}

/// An optional object serialized canonically (see [`Canonical`]).
pub(crate) fn canonical_map<S: ser::Serializer>(
    map: &Option<Map<String, Value>>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    match map {
        Some(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let mut out = serializer.serialize_map(Some(entries.len()))?;
            for (key, value) in entries {
                out.serialize_entry(key, &Canonical(value))?;
            }
            out.end()
        }
        None => serializer.serialize_none(),
    }
}

fn not_a_model(what: &str) -> serde_json::Error {
    ser::Error::custom(format!(
        "a model must serialize as a struct or a map, not {what}"
    ))
}

/// Serializes the top level of a model: only structs and maps are accepted.
struct ModelSerializer;

/// Collects the fields of a struct or map.
struct FieldCollector {
    fields: Vec<Field>,
    pending_key: Option<String>,
}

impl FieldCollector {
    fn push<V: Serialize + ?Sized>(
        &mut self,
        name: String,
        value: &V,
    ) -> Result<(), serde_json::Error> {
        let mut marker = Marker::default();
        let json = value.serialize(FieldSerializer {
            marker: &mut marker,
        })?;
        if (json.is_array() || json.is_object()) && holds_null(&json) {
            check_finite(value).map_err(|e| {
                <serde_json::Error as ser::Error>::custom(format!("field {name:?}: {e}"))
            })?;
        }
        let value = json;
        if let Value::Number(n) = &value
            && n.is_u64()
            && !n.is_i64()
        {
            return Err(ser::Error::custom(format!(
                "field {name:?} holds an integer above {} that an integer column can not store \
                 exactly (store it as a string, or inside an object)",
                i64::MAX
            )));
        }
        if marker.unique && is_envelope(&value) {
            return Err(ser::Error::custom(format!(
                "field {name:?} is Unique around an encrypted value or a password: each is \
                 sealed with a fresh nonce or salt, so equal values never store alike and the \
                 unique index could not refuse a duplicate (keep what must be unique in a \
                 plain Unique field)"
            )));
        }
        let kind = if marker.rn && value.is_string() {
            Some(ColumnKind::RnRef)
        } else {
            infer_kind(&value)
        };
        self.fields.push(Field {
            name,
            value,
            kind,
            unique: marker.unique,
        });
        Ok(())
    }
}

macro_rules! reject {
    ($($method:ident($($arg:ty),*) => $what:literal;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, Self::Error> {
            Err(not_a_model($what))
        })*
    };
}

impl ser::Serializer for ModelSerializer {
    type Ok = Vec<Field>;
    type Error = serde_json::Error;
    type SerializeSeq = Impossible<Vec<Field>, serde_json::Error>;
    type SerializeTuple = Impossible<Vec<Field>, serde_json::Error>;
    type SerializeTupleStruct = Impossible<Vec<Field>, serde_json::Error>;
    type SerializeTupleVariant = Impossible<Vec<Field>, serde_json::Error>;
    type SerializeMap = FieldCollector;
    type SerializeStruct = FieldCollector;
    type SerializeStructVariant = Impossible<Vec<Field>, serde_json::Error>;

    reject! {
        serialize_bool(bool) => "a boolean";
        serialize_i8(i8) => "a number";
        serialize_i16(i16) => "a number";
        serialize_i32(i32) => "a number";
        serialize_i64(i64) => "a number";
        serialize_u8(u8) => "a number";
        serialize_u16(u16) => "a number";
        serialize_u32(u32) => "a number";
        serialize_u64(u64) => "a number";
        serialize_f32(f32) => "a number";
        serialize_f64(f64) => "a number";
        serialize_char(char) => "a string";
        serialize_str(&str) => "a string";
        serialize_bytes(&[u8]) => "bytes";
        serialize_none() => "null";
        serialize_unit() => "null";
        serialize_unit_struct(&'static str) => "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) => "an enum variant";
    }

    fn serialize_some<V: Serialize + ?Sized>(self, value: &V) -> Result<Self::Ok, Self::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &V,
    ) -> Result<Self::Ok, Self::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> Result<Self::Ok, Self::Error> {
        Err(not_a_model("an enum variant"))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        Err(not_a_model("a sequence"))
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
        Err(not_a_model("a tuple"))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        Err(not_a_model("a tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        Err(not_a_model("an enum variant"))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        Ok(FieldCollector {
            fields: Vec::with_capacity(len.unwrap_or(8)),
            pending_key: None,
        })
    }

    fn serialize_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        Ok(FieldCollector {
            fields: Vec::with_capacity(len),
            pending_key: None,
        })
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        Err(not_a_model("an enum variant"))
    }
}

impl SerializeStruct for FieldCollector {
    type Ok = Vec<Field>;
    type Error = serde_json::Error;

    fn serialize_field<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), Self::Error> {
        self.push(key.to_owned(), value)
    }

    fn end(self) -> Result<Self::Ok, Self::Error> {
        Ok(self.fields)
    }
}

impl SerializeMap for FieldCollector {
    type Ok = Vec<Field>;
    type Error = serde_json::Error;

    fn serialize_key<K: Serialize + ?Sized>(&mut self, key: &K) -> Result<(), Self::Error> {
        match key.serialize(serde_json::value::Serializer)? {
            Value::String(key) => {
                self.pending_key = Some(key);
                Ok(())
            }
            _ => Err(ser::Error::custom("a model's keys must be strings")),
        }
    }

    fn serialize_value<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<(), Self::Error> {
        let key = self.pending_key.take().ok_or_else(|| {
            <serde_json::Error as ser::Error>::custom("a map value came without its key")
        })?;
        self.push(key, value)
    }

    fn end(self) -> Result<Self::Ok, Self::Error> {
        Ok(self.fields)
    }
}

/// What the wrapper markers said about one field.
#[derive(Default)]
struct Marker {
    unique: bool,
    rn: bool,
}

/// Serializes one field's value to JSON exactly as serde_json does, noting the markers on the
/// way (through `Option`s too, so `Option<Unique<T>>` is still unique).
struct FieldSerializer<'a> {
    marker: &'a mut Marker,
}

type Json = serde_json::value::Serializer;

macro_rules! delegate {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method(self, $($arg: $ty),*) -> Result<Self::Ok, Self::Error> {
            serde_json::value::Serializer.$method($($arg),*)
        })*
    };
}

impl<'a> ser::Serializer for FieldSerializer<'a> {
    type Ok = Value;
    type Error = serde_json::Error;
    type SerializeSeq = <Json as ser::Serializer>::SerializeSeq;
    type SerializeTuple = <Json as ser::Serializer>::SerializeTuple;
    type SerializeTupleStruct = <Json as ser::Serializer>::SerializeTupleStruct;
    type SerializeTupleVariant = <Json as ser::Serializer>::SerializeTupleVariant;
    type SerializeMap = <Json as ser::Serializer>::SerializeMap;
    type SerializeStruct = <Json as ser::Serializer>::SerializeStruct;
    type SerializeStructVariant = <Json as ser::Serializer>::SerializeStructVariant;

    fn serialize_f32(self, v: f32) -> Result<Self::Ok, Self::Error> {
        self.serialize_f64(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<Self::Ok, Self::Error> {
        // serde_json would quietly turn NaN and infinities into null; a field that reads back
        // as null is lost data, so it is an error instead (inside objects and arrays too:
        // `check_finite`).
        if !v.is_finite() {
            return Err(ser::Error::custom(format!(
                "a field holds {v}, which no column can store (JSON numbers are finite)"
            )));
        }
        serde_json::value::Serializer.serialize_f64(v)
    }

    delegate! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_some<V: Serialize + ?Sized>(self, value: &V) -> Result<Value, Self::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &V,
    ) -> Result<Value, Self::Error> {
        if name == UNIQUE_MARKER {
            self.marker.unique = true;
            value.serialize(self)
        } else if name == RN_MARKER {
            self.marker.rn = true;
            value.serialize(serde_json::value::Serializer)
        } else if name.starts_with("$serde_json::") {
            // serde_json's own tokens (a `RawValue`).
            serde_json::value::Serializer.serialize_newtype_struct(name, value)
        } else {
            // A user's newtype is its inner value: a `Unique` or an `Rn` inside it marks the
            // field as it would bare, and a top-level float in it is checked as one.
            value.serialize(self)
        }
    }

    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &V,
    ) -> Result<Value, Self::Error> {
        serde_json::value::Serializer.serialize_newtype_variant(name, index, variant, value)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        serde_json::value::Serializer.serialize_seq(len)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Self::Error> {
        serde_json::value::Serializer.serialize_tuple(len)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        serde_json::value::Serializer.serialize_tuple_struct(name, len)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        serde_json::value::Serializer.serialize_tuple_variant(name, index, variant, len)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        serde_json::value::Serializer.serialize_map(len)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        serde_json::value::Serializer.serialize_struct(name, len)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        serde_json::value::Serializer.serialize_struct_variant(name, index, variant, len)
    }
}

/// Whether a JSON value holds a null anywhere inside it.
fn holds_null(value: &Value) -> bool {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::Null => return true,
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.values()),
            _ => {}
        }
    }
    false
}

/// Fails when `value` holds a NaN or an infinity anywhere. serde_json writes them as null, so
/// such a value would be stored as something else than what was written (an `f64` that reads
/// back as null is an item that no longer reads at all). Walking a value again costs a
/// serialization: callers first check that what serde_json made of it holds a null.
pub(crate) fn check_finite<T: Serialize + ?Sized>(value: &T) -> Result<(), serde_json::Error> {
    // The walk serializes the value again: what a changed resolved reference records while
    // it serializes (its cascade) goes into a collector of its own and is dropped, or the
    // write would hold the cascade twice (a `CascadeConflict`).
    super::reference::collect_cascades(|| value.serialize(Finite)).0
}

/// Walks a value as serde hands it over, failing at the first non-finite float.
struct Finite;

fn finite(v: f64) -> Result<(), serde_json::Error> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(ser::Error::custom(format!(
            "it holds {v}, which JSON can not store (JSON numbers are finite; serde_json would \
             write null)"
        )))
    }
}

macro_rules! finite_scalars {
    ($($method:ident($($arg:ty),*);)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<(), serde_json::Error> {
            Ok(())
        })*
    };
}

impl ser::Serializer for Finite {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Finite;
    type SerializeTuple = Finite;
    type SerializeTupleStruct = Finite;
    type SerializeTupleVariant = Finite;
    type SerializeMap = Finite;
    type SerializeStruct = Finite;
    type SerializeStructVariant = Finite;

    fn serialize_f32(self, v: f32) -> Result<(), Self::Error> {
        finite(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), Self::Error> {
        finite(v)
    }

    finite_scalars! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<V: Serialize + ?Sized>(self, value: &V) -> Result<(), Self::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &V,
    ) -> Result<(), Self::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &V,
    ) -> Result<(), Self::Error> {
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Finite, Self::Error> {
        Ok(Finite)
    }

    fn serialize_tuple(self, _: usize) -> Result<Finite, Self::Error> {
        Ok(Finite)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Finite, Self::Error> {
        Ok(Finite)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Finite, Self::Error> {
        Ok(Finite)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Finite, Self::Error> {
        Ok(Finite)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Finite, Self::Error> {
        Ok(Finite)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Finite, Self::Error> {
        Ok(Finite)
    }
}

/// The compound parts of [`Finite`]: every element, value and key is walked the same way.
macro_rules! finite_compound {
    ($($trait:ident: $($method:ident($($arg:ty),*)),*;)*) => {
        $(impl ser::$trait for Finite {
            type Ok = ();
            type Error = serde_json::Error;
            $(fn $method<V: Serialize + ?Sized>(
                &mut self,
                $(_: $arg,)*
                value: &V,
            ) -> Result<(), Self::Error> {
                value.serialize(Finite)
            })*
            fn end(self) -> Result<(), Self::Error> {
                Ok(())
            }
        })*
    };
}

finite_compound! {
    SerializeSeq: serialize_element();
    SerializeTuple: serialize_element();
    SerializeTupleStruct: serialize_field();
    SerializeTupleVariant: serialize_field();
    SerializeMap: serialize_key(), serialize_value();
    SerializeStruct: serialize_field(&'static str);
    SerializeStructVariant: serialize_field(&'static str);
}

/// Turns fields back into the storage-form object (what WAL records and before-images hold).
pub(crate) fn fields_to_map(fields: &[Field]) -> Map<String, Value> {
    fields
        .iter()
        .map(|f| (f.name.clone(), f.value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Unique;
    use serde_json::json;

    #[derive(Serialize)]
    struct User {
        username: String,
        age: i64,
        score: f64,
        active: bool,
        nickname: Option<String>,
        email: Unique<String>,
        tags: Vec<String>,
        meta: serde_json::Value,
    }

    #[test]
    fn infers_korm_kinds_and_marks_unique() {
        let fields = encode(&User {
            username: "fred".into(),
            age: 41,
            score: 97.5,
            active: true,
            nickname: None,
            email: Unique::new("fred@bedrock.example".into()),
            tags: vec!["quarry".into()],
            meta: json!({"tier": "gold"}),
        })
        .unwrap();
        let kinds: Vec<_> = fields
            .iter()
            .map(|f| (f.name.as_str(), f.kind, f.unique))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("username", Some(ColumnKind::Text), false),
                ("age", Some(ColumnKind::Integer), false),
                ("score", Some(ColumnKind::Double), false),
                ("active", Some(ColumnKind::Boolean), false),
                ("nickname", None, false),
                ("email", Some(ColumnKind::Text), true),
                ("tags", Some(ColumnKind::Json), false),
                ("meta", Some(ColumnKind::Json), false),
            ]
        );
        assert_eq!(fields[5].value, json!("fred@bedrock.example"));
    }

    #[test]
    fn doubles_print_as_javascript_prints_them() {
        // Each pair: the double, and what node prints for JSON.stringify of it.
        let cases: [(f64, &str); 21] = [
            (0.1, "0.1"),
            (100.0, "100"),
            (1.5e-6, "0.0000015"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1.234_567_890_123_456_8e20, "123456789012345680000"),
            (2f64.powi(60), "1152921504606847000"),
            (2f64.powi(53) + 2.0, "9007199254740994"),
            (-0.0, "0"),
            (97.5, "97.5"),
            (1.0 / 3.0, "0.3333333333333333"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (-1.5e-6, "-0.0000015"),
            (3e-5, "0.00003"),
            (123.456, "123.456"),
            (-1e21, "-1e+21"),
            (0.000_123, "0.000123"),
        ];
        for (f, js) in cases {
            let mut out = String::new();
            js_number(f, &mut out);
            assert_eq!(out, js, "{f:e}");
        }
    }

    #[test]
    fn fingerprint_sorts_keys_and_prints_numbers_as_javascript_does() {
        // node: sha512 of the keys sorted by String.prototype.sort (UTF-16 code units, so
        // U+10000, a surrogate pair from 0xD800, sorts before U+E000) and JSON.stringify.
        let value = json!({
            "\u{e000}": 1.5e-6,
            "\u{10000}": [2f64.powi(60), 1e21],
            "a\u{1}\"\\/é": 0.1,
        });
        assert_eq!(
            fingerprint(&value),
            "b37d3eee16b4b575a01367bc8f96a0b1764f058af6639998a4f46a325b32ca91\
             8e372d2fb49177c77ef53841324ed73d93e4881b6df5a7bc1511bc3d05eb284b"
        );
    }

    #[test]
    fn fingerprint_matches_korm_1_5() {
        // From ../shared/fixtures/korm-ts-1.5/cardb.sqlite, fred's __korm_unique__email.
        assert!(fingerprint(&json!("fred@bedrock.example")).starts_with("a907f0e05c70c37b12a2"));
        assert_eq!(
            fingerprint(&json!({"b": 1, "a": {"d": [1, 2.0], "c": null}})),
            fingerprint(&json!({"a": {"c": null, "d": [1, 2]}, "b": 1}))
        );
    }

    #[test]
    fn rejects_non_models_and_bad_names() {
        assert!(matches!(encode(&5), Err(Error::Encode { .. })));
        assert!(matches!(encode(&vec![1]), Err(Error::Encode { .. })));
        let mut hostile = serde_json::Map::new();
        hostile.insert("x\"; DROP TABLE t; --".into(), json!(1));
        assert!(matches!(
            encode(&hostile),
            Err(Error::InvalidIdentifier { .. })
        ));
        for bad in [
            "rnId",
            "RNID",
            "__korm_unique__x",
            "__KORM_x",
            "__Korm_Meta__",
            "1a",
            "",
            "a-b",
            "é",
        ] {
            assert!(validate_field_name(bad).is_err(), "{bad}");
        }
        for good in ["__korm", "__kormx", "_korm_x", "a", "_"] {
            assert!(validate_field_name(good).is_ok(), "{good}");
        }
    }

    /// `Unique` around a sealed value could never hold: refused, naming the field.
    #[test]
    fn unique_around_a_password_is_refused() {
        #[derive(Serialize)]
        struct Login {
            secret: crate::Unique<crate::Password>,
        }
        let login = Login {
            secret: crate::Unique::new(crate::Password::from_phc(
                "$argon2id$v=19$m=65536,t=3,p=1$LZ73wkWCgjp0jFdvcp5ReEr5VL02fV0WkjrnHLJVcQc$QpCmiTTtfwQ1aIgzfATzPxDcUyoGxk+lnOb4NRCRor8",
            ).unwrap()),
        };
        match encode(&login) {
            Err(Error::Encode { reason, .. }) => {
                assert!(reason.contains("\"secret\" is Unique"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn envelopes_are_encrypted_kind() {
        let v = json!({"__ENCRYPTED__": true, "type": "symmetric", "value": "00"});
        assert_eq!(infer_kind(&v), Some(ColumnKind::Encrypted));
    }
}
