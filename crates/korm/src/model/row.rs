//! Rows as read back: cells in storage kinds, turned into a model without an intermediate
//! JSON tree. JSON columns stay text until a model asks for them, and are then parsed straight
//! into the field's type (a field the model lacks is never parsed at all).

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// One stored value, by its column kind, as read from a [`StoredRow`] (text borrowed from it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell<'a> {
    /// SQL NULL.
    Null,
    /// A whole number.
    Integer(i64),
    /// A double.
    Double(f64),
    /// A boolean (stored as 0/1 on SQLite).
    Boolean(bool),
    /// Text (also RN strings).
    Text(&'a str),
    /// JSON text: an object, an array or an encryption envelope.
    Json(&'a str),
}

impl Cell<'_> {
    /// The value in storage form. JSON text that does not parse is kept as a string, so a
    /// before-image writes back exactly what was stored.
    pub(crate) fn to_value(self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Integer(i) => Value::from(i),
            Cell::Double(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            Cell::Boolean(b) => Value::Bool(b),
            Cell::Text(s) => Value::String(s.to_owned()),
            Cell::Json(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
            }
        }
    }
}

impl<'a> Cell<'a> {
    /// The cell as a column of `kind` holds it (`None`: a column the schema does not know):
    /// drivers hand booleans (SQLite, MySQL) and whole doubles over as integers, and JSON as
    /// text; the column's kind says what they are.
    pub(crate) fn for_kind(self, kind: Option<crate::model::ColumnKind>) -> Cell<'a> {
        use crate::model::ColumnKind;
        match (self, kind) {
            (Cell::Integer(i), Some(ColumnKind::Boolean)) => Cell::Boolean(i != 0),
            (Cell::Integer(i), Some(ColumnKind::Double)) => Cell::Double(i as f64),
            (Cell::Text(text), Some(ColumnKind::Json | ColumnKind::Encrypted)) => Cell::Json(text),
            (cell, _) => cell,
        }
    }
}

/// How a row holds a cell: text as a range of the row's one text buffer.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Null,
    Integer(i64),
    Double(f64),
    Boolean(bool),
    Text(u32, u32),
    Json(u32, u32),
}

/// One stored item: its id and its field cells, named. The id and every text cell live in
/// one buffer, so a row read back is three allocations whatever its text columns: the
/// buffer, the cell list and (shared by the rows of a result) the column names.
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    /// The id, then the text of the text and JSON cells.
    text: String,
    /// Where the item UUID (`rnId`) is in `text`.
    id: (u32, u32),
    /// The field columns' names, shared by the rows of one result: `names[i]` names
    /// `slots[i]`.
    names: Arc<[Arc<str>]>,
    slots: Vec<Slot>,
}

impl PartialEq for StoredRow {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id() && self.cells().eq(other.cells())
    }
}

/// Builds a [`StoredRow`] from the cells of a result row, in column order.
#[derive(Debug)]
pub(crate) struct RowBuilder {
    text: String,
    id: Option<(u32, u32)>,
    slots: Vec<Slot>,
}

impl RowBuilder {
    /// A builder for a row of `fields` field cells holding about `text` bytes of text.
    pub(crate) fn new(fields: usize, text: usize) -> Self {
        RowBuilder {
            text: String::with_capacity(text),
            id: None,
            slots: Vec::with_capacity(fields),
        }
    }

    fn put(&mut self, text: &str) -> Option<(u32, u32)> {
        let start = u32::try_from(self.text.len()).ok()?;
        let end = u32::try_from(self.text.len() + text.len()).ok()?;
        self.text.push_str(text);
        Some((start, end))
    }

    /// Sets the row's id (`rnId`).
    pub(crate) fn id(&mut self, id: &str) {
        self.id = self.put(id);
    }

    /// Adds the next field cell.
    pub(crate) fn push(&mut self, cell: Cell<'_>) {
        let slot = match cell {
            Cell::Null => Slot::Null,
            Cell::Integer(i) => Slot::Integer(i),
            Cell::Double(f) => Slot::Double(f),
            Cell::Boolean(b) => Slot::Boolean(b),
            // A row of 4 GiB of text is not one korm reads: such a cell reads as NULL.
            Cell::Text(t) => self.put(t).map_or(Slot::Null, |(a, b)| Slot::Text(a, b)),
            Cell::Json(t) => self.put(t).map_or(Slot::Null, |(a, b)| Slot::Json(a, b)),
        };
        self.slots.push(slot);
    }

    /// The row, its cells named by `names` in order; `None` when no id was set.
    pub(crate) fn finish(self, names: &Arc<[Arc<str>]>) -> Option<StoredRow> {
        debug_assert_eq!(names.len(), self.slots.len(), "a row has a name per cell");
        Some(StoredRow {
            text: self.text,
            id: self.id?,
            names: Arc::clone(names),
            slots: self.slots,
        })
    }
}

impl StoredRow {
    /// A row from named cells (the names are not shared with other rows).
    #[cfg(test)]
    pub(crate) fn from_pairs(id: &str, cells: Vec<(&str, Cell<'_>)>) -> Self {
        let mut row = RowBuilder::new(cells.len(), 64);
        row.id(id);
        let mut names: Vec<Arc<str>> = Vec::with_capacity(cells.len());
        for (name, cell) in cells {
            names.push(Arc::from(name));
            row.push(cell);
        }
        row.finish(&names.into())
            .unwrap_or_else(|| unreachable!("the id was set"))
    }

    /// How much text the row holds (its id and text cells).
    pub(crate) fn text_len(&self) -> usize {
        self.text.len()
    }

    /// The item UUID (`rnId`).
    pub(crate) fn id(&self) -> &str {
        self.text
            .get(self.id.0 as usize..self.id.1 as usize)
            .unwrap_or_default()
    }

    fn cell_of(&self, slot: Slot) -> Cell<'_> {
        let text = |a: u32, b: u32| self.text.get(a as usize..b as usize).unwrap_or_default();
        match slot {
            Slot::Null => Cell::Null,
            Slot::Integer(i) => Cell::Integer(i),
            Slot::Double(f) => Cell::Double(f),
            Slot::Boolean(b) => Cell::Boolean(b),
            Slot::Text(a, b) => Cell::Text(text(a, b)),
            Slot::Json(a, b) => Cell::Json(text(a, b)),
        }
    }

    /// The field cells with their column names, in column order.
    pub(crate) fn cells(&self) -> impl ExactSizeIterator<Item = (&str, Cell<'_>)> {
        self.names
            .iter()
            .map(|n| &**n)
            .zip(self.slots.iter().map(|slot| self.cell_of(*slot)))
    }

    /// The row in storage form (what before-images and WAL records hold).
    pub(crate) fn to_map(&self) -> Map<String, Value> {
        self.cells()
            .map(|(name, cell)| (name.to_owned(), cell.to_value()))
            .collect()
    }

    /// The cell of a column.
    pub(crate) fn cell(&self, column: &str) -> Option<Cell<'_>> {
        self.cells()
            .find(|(name, _)| *name == column)
            .map(|(_, cell)| cell)
    }

    /// Reads the row as a model `T`: see [`read_model`].
    pub(crate) fn read<T: DeserializeOwned>(&self) -> Result<T, Error> {
        read_model(|nulls| {
            T::deserialize(ModelDeserializer(RowMap {
                row: self,
                names: self.names.iter(),
                slots: self.slots.iter().enumerate(),
                value: None,
                nulls,
            }))
        })
    }
}

type Error = serde_json::Error;

/// The NULL fields a read skips (so they read as missing), and the one whose field's type
/// refused null in the last attempt.
#[derive(Debug, Default)]
struct NullFields {
    skip: Vec<usize>,
    refused: std::cell::Cell<Option<usize>>,
}

impl NullFields {
    fn skips(&self, index: usize) -> bool {
        !self.skip.is_empty() && self.skip.contains(&index)
    }

    /// Runs one field's read: a NULL whose field's type fails on it is noted, so the next
    /// attempt reads it as missing.
    fn field<T>(&self, index: usize, null: bool, read: Result<T, Error>) -> Result<T, Error> {
        if null && read.is_err() {
            self.refused.set(Some(index));
        }
        read
    }
}

/// Reads a model from stored fields. SQL NULL is how korm (and korm 1.5) stores null and also
/// what a column added after a row was written holds for that row; a NULL field whose type
/// cannot hold null (a `Vec`, a `bool`, a struct) reads as a missing field instead, so
/// `#[serde(default)]` applies (and `Option` reads `None`) as it does for a column that was
/// never added. A field that can hold null (`serde_json::Value`, `()`) still reads null.
/// `attempt` reads once with the given NULL fields skipped; it is retried, skipping one more
/// each time, while the failure was a NULL refused by its field's type. When that fails too,
/// the first error (the one that names the NULL field) is returned, or the last one when it
/// failed for another reason.
fn read_model<T>(mut attempt: impl FnMut(&NullFields) -> Result<T, Error>) -> Result<T, Error> {
    let mut nulls = NullFields::default();
    let first = match attempt(&nulls) {
        Ok(model) => return Ok(model),
        Err(e) => e,
    };
    let mut last: Option<Error> = None;
    loop {
        match nulls.refused.take() {
            Some(index) if !nulls.skips(index) => nulls.skip.push(index),
            // Failed for another reason than a NULL: that reason, unless it is only that a
            // field left out is missing (then the first error, which names its NULL, says
            // more).
            _ => {
                return Err(match last {
                    Some(e) if !e.to_string().starts_with("missing field") => e,
                    _ => first,
                });
            }
        }
        match attempt(&nulls) {
            Ok(model) => return Ok(model),
            Err(e) => last = Some(e),
        }
    }
}

/// Reads a model from a map of stored values (a before-image merged with changed fields),
/// with NULL read as [`read_model`] reads it from a row.
pub(crate) fn read_map<T: DeserializeOwned>(map: &Map<String, Value>) -> Result<T, Error> {
    read_model(|nulls| {
        T::deserialize(ModelDeserializer(ValueMap {
            entries: map.iter().enumerate(),
            value: None,
            nulls,
        }))
    })
}

/// Deserializes a model, a map of field names to values, from `M` (a row's cells, or a map
/// of stored values). A newtype model (`struct Doc(Inner)`, which the encoder writes as its
/// inner model) reads its inner model from the same map.
struct ModelDeserializer<M>(M);

impl<'de, M: MapAccess<'de, Error = Error>> de::Deserializer<'de> for ModelDeserializer<M> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(self.0)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct ValueMap<'de> {
    entries: std::iter::Enumerate<serde_json::map::Iter<'de>>,
    value: Option<(usize, &'de Value)>,
    nulls: &'de NullFields,
}

impl<'de> MapAccess<'de> for ValueMap<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        for (index, (name, value)) in self.entries.by_ref() {
            if value.is_null() && self.nulls.skips(index) {
                continue;
            }
            self.value = Some((index, value));
            return seed
                .deserialize(de::value::BorrowedStrDeserializer::new(name))
                .map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (index, value) = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("a value was asked for before its key"))?;
        self.nulls
            .field(index, value.is_null(), seed.deserialize(value))
    }
}

struct RowMap<'de> {
    row: &'de StoredRow,
    names: std::slice::Iter<'de, Arc<str>>,
    slots: std::iter::Enumerate<std::slice::Iter<'de, Slot>>,
    value: Option<(usize, &'de str, Cell<'de>)>,
    nulls: &'de NullFields,
}

impl<'de> MapAccess<'de> for RowMap<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        while let Some((name, (index, slot))) = self.names.next().zip(self.slots.next()) {
            if matches!(slot, Slot::Null) && self.nulls.skips(index) {
                continue;
            }
            self.value = Some((index, name, self.row.cell_of(*slot)));
            return seed
                .deserialize(de::value::BorrowedStrDeserializer::new(name))
                .map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (index, name, cell) = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("a value was asked for before its key"))?;
        // The field's name goes into the message (back-ticked, so redaction keeps it).
        let read = seed
            .deserialize(CellDeserializer(cell))
            .map_err(|e| <Error as de::Error>::custom(format!("field `{name}`: {e}")));
        self.nulls.field(index, cell == Cell::Null, read)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.slots.len())
    }
}

/// Deserializes one cell. JSON cells hand every request to serde_json, so the field's own
/// type drives the parse.
struct CellDeserializer<'de>(Cell<'de>);

/// Runs `f` on a serde_json deserializer over `text`, and checks nothing follows the value.
fn json<'de, R>(
    text: &'de str,
    f: impl FnOnce(&mut serde_json::Deserializer<serde_json::de::StrRead<'de>>) -> Result<R, Error>,
) -> Result<R, Error> {
    let nesting = super::encode::text_nesting(text, super::MAX_JSON_NESTING);
    if nesting > super::MAX_JSON_NESTING {
        return Err(de::Error::custom(format_args!(
            "its JSON nests objects and arrays more than {} levels deep, korm's limit (a \
             program other than korm wrote it)",
            super::MAX_JSON_NESTING
        )));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = f(&mut de)?;
    de.end()?;
    Ok(value)
}

macro_rules! through_json {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Cell::Json(text) => json(text, |de| de::Deserializer::$method(de, $($arg,)* visitor)),
                _ => self.deserialize_any(visitor),
            }
        })*
    };
}

impl<'de> de::Deserializer<'de> for CellDeserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Cell::Null => visitor.visit_unit(),
            Cell::Integer(i) => visitor.visit_i64(i),
            Cell::Double(f) => visitor.visit_f64(f),
            Cell::Boolean(b) => visitor.visit_bool(b),
            Cell::Text(s) => visitor.visit_borrowed_str(s),
            Cell::Json(text) => json(text, |de| de::Deserializer::deserialize_any(de, visitor)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Cell::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Cell::Json(text) => json(text, |de| {
                de::Deserializer::deserialize_enum(de, name, variants, visitor)
            }),
            Cell::Text(s) => visitor.visit_enum(IntoDeserializer::<Error>::into_deserializer(s)),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    through_json! {
        deserialize_seq();
        deserialize_map();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        identifier
    }
}

impl fmt::Debug for CellDeserializer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CellDeserializer").field(&self.0).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn row(cells: Vec<(&str, Cell)>) -> StoredRow {
        StoredRow::from_pairs("id", cells)
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Model {
        name: String,
        age: i64,
        score: f64,
        active: bool,
        nick: Option<String>,
        meta: Meta,
        tags: Option<Vec<String>>,
        kind: Kind,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Meta {
        tier: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    enum Kind {
        Suv,
    }

    #[test]
    fn a_model_reads_straight_from_cells() {
        let r = row(vec![
            ("name", Cell::Text("fred")),
            ("age", Cell::Integer(41)),
            ("score", Cell::Integer(97)),
            ("active", Cell::Boolean(true)),
            ("nick", Cell::Null),
            ("meta", Cell::Json(r#"{"tier":"gold"}"#)),
            ("tags", Cell::Json(r#"["a"]"#)),
            ("kind", Cell::Text("Suv")),
            ("unknown", Cell::Json("not json, never parsed")),
        ]);
        let m = r.read::<Model>().unwrap();
        assert_eq!(m.meta.tier, "gold");
        assert_eq!(m.score, 97.0);
        assert_eq!(m.tags, Some(vec!["a".to_owned()]));
        assert_eq!(m.nick, None);
        assert_eq!(m.kind, Kind::Suv);
        let map = r.to_map();
        assert_eq!(map["meta"], serde_json::json!({"tier": "gold"}));
        assert_eq!(
            map["unknown"],
            Value::String("not json, never parsed".into())
        );
    }

    #[test]
    fn a_row_keeps_its_id_and_texts_in_one_buffer() {
        let names: Arc<[Arc<str>]> = vec![Arc::from("a"), Arc::from("b"), Arc::from("c")].into();
        let mut built = RowBuilder::new(3, 0);
        built.push(Cell::Text("x"));
        built.id("id-1");
        built.push(Cell::Integer(4));
        built.push(Cell::Json("[1]"));
        let row = built.finish(&names).expect("the id was set");
        assert_eq!(row.id(), "id-1");
        assert_eq!(
            row.cells().collect::<Vec<_>>(),
            [
                ("a", Cell::Text("x")),
                ("b", Cell::Integer(4)),
                ("c", Cell::Json("[1]"))
            ]
        );
        assert_eq!(row.cell("c"), Some(Cell::Json("[1]")));
        assert_eq!(row, row.clone());
        // A row without an id is refused.
        assert!(
            RowBuilder::new(0, 0)
                .finish(&Arc::from(Vec::new()))
                .is_none()
        );
    }

    #[test]
    fn a_null_that_its_field_cannot_hold_reads_as_missing() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Evolved {
            #[serde(default)]
            tags: Vec<String>,
            any: Value,
            #[serde(default)]
            on: bool,
            nick: Option<String>,
            #[serde(default = "seven")]
            n: i64,
            name: String,
        }
        fn seven() -> i64 {
            7
        }
        let r = row(vec![
            ("tags", Cell::Null),
            ("any", Cell::Null),
            ("on", Cell::Null),
            ("nick", Cell::Null),
            ("n", Cell::Null),
            ("name", Cell::Text("x")),
        ]);
        let expected = Evolved {
            tags: Vec::new(),
            any: Value::Null,
            on: false,
            nick: None,
            n: 7,
            name: "x".into(),
        };
        assert_eq!(r.read::<Evolved>().unwrap(), expected);
        assert_eq!(read_map::<Evolved>(&r.to_map()).unwrap(), expected);

        // Without a default, the error is the first one: it names the NULL field.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Strict {
            on: bool,
            tags: Vec<String>,
        }
        let err = r.read::<Strict>().unwrap_err().to_string();
        assert!(err.contains("field `tags`"), "{err}");
        assert!(read_map::<Strict>(&r.to_map()).is_err());
        // A stored value of the wrong type is still an error.
        let r = row(vec![("tags", Cell::Integer(1)), ("name", Cell::Text("x"))]);
        assert!(r.read::<Evolved>().is_err());
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        let r = row(vec![("meta", Cell::Json("{\"tier\":"))]);
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct M {
            meta: Meta,
        }
        assert!(r.read::<M>().is_err());
        let r = row(vec![("meta", Cell::Json("{\"tier\":\"x\"} trailing"))]);
        assert!(r.read::<M>().is_err());
    }
}
