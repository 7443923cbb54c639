//! Unique fields.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A field whose value must be unique across the items of its table.
///
/// The value is stored in its own column as usual, and beside it in a shadow column
/// `__korm_unique__{field}` holding the SHA-512 fingerprint of the value's canonical JSON
/// (object keys sorted recursively), covered by a unique index. Equal nested objects therefore
/// collide whatever their key order. Writing a duplicate fails with
/// [`Error::UniqueViolation`](crate::Error::UniqueViolation) naming the field.
///
/// Outside korm a `Unique<T>` serializes and deserializes exactly as `T`.
///
/// `Unique` marks a top-level field: around an [`Encrypted`](crate::Encrypted) value or a
/// [`Password`](crate::Password) it is refused with [`Error::Encode`](crate::Error::Encode)
/// (each is sealed with a fresh nonce or salt, so no index could see two equal values), and
/// inside one (`Encrypted<Unique<T>>`) it marks nothing.
///
/// ```
/// use korm::Unique;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct User { email: Unique<String> }
/// let user = User { email: Unique::new("fred@bedrock.example".to_owned()) };
/// assert_eq!(user.email.as_str(), "fred@bedrock.example");
/// assert_eq!(serde_json::to_string(&user).unwrap(), r#"{"email":"fred@bedrock.example"}"#);
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unique<T>(T);

impl<T> Unique<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Unique(value)
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Unique<T> {
    fn from(value: T) -> Self {
        Unique(value)
    }
}

impl<T> Deref for Unique<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Unique<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Unique<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Unique").field(&self.0).finish()
    }
}

impl<T: fmt::Display> fmt::Display for Unique<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize> Serialize for Unique<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(super::UNIQUE_MARKER, &self.0)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Unique<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Unique)
    }
}
