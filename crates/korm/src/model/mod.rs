//! The encoding boundary: serde models in, rows out, and the wrapper types that change how a
//! field is stored.
//!
//! A model is any `Serialize + DeserializeOwned` struct (or map). Each top-level field becomes
//! one column named exactly as the field; its [`ColumnKind`] is inferred from the first value
//! written, as korm 1.5 does: strings are text, whole numbers integers, other numbers doubles,
//! booleans booleans, objects and arrays JSON, [`Rn`](crate::Rn) fields RN references, and
//! encryption envelopes encrypted JSON. A field wrapped in [`Unique`] also gets a shadow
//! fingerprint column with a unique index.

pub(crate) mod collect;
mod encode;
mod kind;
mod reference;
mod row;
mod secret;
mod unique;

pub(crate) use encode::{
    Field, MAX_JSON_NESTING, PROTOTYPE_KEYS, canonical_json, canonical_map, encode, fields_to_map,
    fingerprint, infer_kind, is_envelope, validate_field_name,
};
pub use kind::ColumnKind;
pub(crate) use kind::{EXACT_IN_DOUBLE, SqlValue, whole_double};
pub use reference::Ref;
pub(crate) use reference::{Cascade, Resolved, RnMap, collect_cascades, with_resolved};
pub(crate) use row::{Cell, RowBuilder, StoredRow, read_map};
pub use secret::{Encrypted, Password};
pub use unique::Unique;

/// The newtype-struct name by which [`Unique`] marks itself to the encoder. serde_json and
/// every other serializer ignore newtype names, so outside korm a `Unique<T>` is just a `T`.
pub(crate) const UNIQUE_MARKER: &str = "$korm::Unique";
/// The newtype-struct name by which [`Rn`](crate::Rn) marks a reference field.
pub(crate) const RN_MARKER: &str = "$korm::Rn";
