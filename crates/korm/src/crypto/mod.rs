//! Encryption keys: the key rings that [`Encrypted`](crate::Encrypted) fields are sealed and
//! opened with.
//!
//! A pool seals and opens with its own ring when it was given one
//! ([`PoolBuilder::key_ring`](crate::PoolBuilder::key_ring)), so two pools in one process can
//! hold two keys; otherwise with the process ring: [`install`] one explicitly, or let korm
//! load it from the environment the first time an encrypted value is sealed or opened:
//!
//! - `KORM_ENCRYPTION_KEY`: the current key, 64 hex characters (32 bytes). New values are
//!   encrypted with it. `korm generate-encryption-key` prints a fresh one.
//! - `KORM_ENCRYPTION_KEYS_OLD`: older keys, comma-separated, used only to decrypt values
//!   written before a rotation. Committing an item re-encrypts its fields with the current key.
//! - Production is `KORM_ENV=production`, or, when `KORM_ENV` is unset, `NODE_ENV=production`
//!   (the variable korm 1.5 services already set). There a missing key is
//!   [`Error::Key`]. Anywhere else korm creates a temporary random key for the life of the
//!   process and logs one warning: data encrypted with it can not be read after a restart.
//!
//! A malformed key is [`Error::Key`] saying what is wrong (length, a non-hex character and
//! where), never echoing the key. Keys are zeroized on drop and their `Debug` shows only the
//! key id.
//!
//! ```
//! use korm::crypto::{EncryptionKey, KeyRing};
//! let current = EncryptionKey::generate();
//! let old = EncryptionKey::from_hex(&"a1".repeat(32))?;
//! let ring = KeyRing::new(current).with_old_key(old);
//! assert_eq!(ring.current_key_id().len(), 8);
//! assert!(!format!("{ring:?}").contains("a1a1"));
//! # Ok::<(), korm::Error>(())
//! ```

mod envelope;

use std::fmt;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Generate, KeyInit};
use aes_gcm::{Aes256Gcm, Key};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

pub use envelope::{ENVELOPE_MARKER, KEY_ID_FIELD};
pub(crate) use envelope::{RawEnvelope, open, open_value, seal};

/// The environment variable holding the current key (64 hex characters).
pub const KEY_VAR: &str = "KORM_ENCRYPTION_KEY";
/// The environment variable holding older keys, comma-separated, for decryption only.
pub const OLD_KEYS_VAR: &str = "KORM_ENCRYPTION_KEYS_OLD";

/// One AES-256 key and its id.
pub struct EncryptionKey {
    bytes: Zeroizing<[u8; 32]>,
    id: String,
    cipher: Aes256Gcm,
}

impl EncryptionKey {
    /// A key from its 64 hex characters (either case; surrounding whitespace is ignored).
    ///
    /// # Errors
    /// [`Error::Key`] naming what is wrong: the length, or the position of a character that
    /// is not hex. The key itself is never part of the message.
    pub fn from_hex(hex: &str) -> Result<Self> {
        Self::parse(hex, KEY_VAR)
    }

    fn parse(text: &str, source: &str) -> Result<Self> {
        let text = text.trim();
        let fail = |reason: String| Error::Key {
            reason: format!("{source}: {reason}"),
        };
        if let Some(pos) = text.chars().position(|c| !c.is_ascii_hexdigit()) {
            return Err(fail(format!(
                "character {} is not a hex digit (a key is 64 characters 0-9, a-f)",
                pos + 1
            )));
        }
        if text.len() != 64 {
            return Err(fail(format!(
                "a key is 64 hex characters (32 bytes), this one has {}",
                text.len()
            )));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text, bytes.as_mut_slice())
            .map_err(|_| fail("is not valid hex".to_owned()))?;
        Ok(Self::from_bytes(bytes))
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        Self::from_bytes(Zeroizing::new(<[u8; 32]>::generate()))
    }

    fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        EncryptionKey {
            id: key_id(&bytes),
            cipher: Aes256Gcm::new(<&Key<Aes256Gcm>>::from(&*bytes)),
            bytes,
        }
    }

    /// The key id written into new envelopes: the first 8 hex characters of
    /// SHA-256(`"korm key id v1:"` + key bytes). It names the key without revealing it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as 64 lowercase hex characters (what `KORM_ENCRYPTION_KEY` holds), in a buffer
    /// that is zeroized when dropped.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.bytes.as_slice()))
    }

    pub(crate) fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }

    /// A 32-byte key for another purpose, derived from this one with HKDF-SHA256 and `label`
    /// as its info (the WAL's MAC key): knowing it reveals nothing of this key.
    pub(crate) fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(None, self.bytes.as_slice())
            .expand(label.as_bytes(), out.as_mut_slice())
            .unwrap_or_else(|_| unreachable!("32 bytes is within HKDF-SHA256's output limit"));
        out
    }
}

fn key_id(bytes: &[u8; 32]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"korm key id v1:");
    hash.update(bytes);
    hex::encode(&hash.finalize()[..4])
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The keys of a process: one current key that encrypts, older keys that only decrypt.
#[derive(Debug)]
pub struct KeyRing {
    current: EncryptionKey,
    old: Vec<EncryptionKey>,
    temporary: bool,
}

impl KeyRing {
    /// A ring with one key, which encrypts and decrypts.
    pub fn new(current: EncryptionKey) -> Self {
        KeyRing {
            current,
            old: Vec::new(),
            temporary: false,
        }
    }

    /// Adds an older key, used only to decrypt values sealed with it.
    pub fn with_old_key(mut self, key: EncryptionKey) -> Self {
        if key.id != self.current.id && !self.old.iter().any(|k| k.id == key.id) {
            self.old.push(key);
        }
        self
    }

    /// The ring the environment describes (see the [module docs](self)).
    ///
    /// # Errors
    /// [`Error::Key`] for a malformed key, or a missing `KORM_ENCRYPTION_KEY` in production.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](KeyRing::from_env) over any variable source (tests, config files).
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut ring = match var(KEY_VAR).filter(|v| !v.trim().is_empty()) {
            Some(hex) => KeyRing::new(EncryptionKey::parse(&hex, KEY_VAR)?),
            None if is_production(&var) => {
                return Err(Error::Key {
                    reason: format!(
                        "{KEY_VAR} is not set and this is production ({}); set it to 64 hex \
                         characters (`korm generate-encryption-key` prints a new key)",
                        production_reason(&var)
                    ),
                });
            }
            None => KeyRing {
                temporary: true,
                ..KeyRing::new(EncryptionKey::generate())
            },
        };
        if let Some(list) = var(OLD_KEYS_VAR) {
            for (i, hex) in list.split(',').map(str::trim).enumerate() {
                if hex.is_empty() {
                    continue;
                }
                let key = EncryptionKey::parse(hex, &format!("{OLD_KEYS_VAR} entry {}", i + 1))?;
                ring = ring.with_old_key(key);
            }
        }
        Ok(ring)
    }

    /// The id of the key new values are encrypted with.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Whether the current key is a temporary one made because no key was configured.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// Encrypts a value with this ring's current key into an envelope (what an
    /// [`Encrypted`](crate::Encrypted) field stores), e.g. for migration scripts.
    ///
    /// # Errors
    /// [`Error::Encode`] if the value can not be serialized as JSON.
    pub fn encrypt<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<serde_json::Value> {
        let json = Zeroizing::new(serde_json::to_vec(value).map_err(|e| Error::Encode {
            what: std::any::type_name::<T>().to_owned(),
            reason: e.to_string(),
        })?);
        Ok(seal(self, &json))
    }

    /// Decrypts an envelope with this ring's keys.
    ///
    /// # Errors
    /// [`Error::Decrypt`] for a malformed or tampered envelope, an unknown key id, or a
    /// value that does not fit `T`; the message never holds plaintext.
    pub fn decrypt<T: serde::de::DeserializeOwned>(
        &self,
        envelope: &serde_json::Value,
    ) -> Result<T> {
        let value = open_value(self, envelope).map_err(|e| Error::Decrypt { reason: e.0 })?;
        serde_json::from_value(value).map_err(|_| Error::Decrypt {
            reason: format!(
                "the decrypted value does not fit {}",
                std::any::type_name::<T>()
            ),
        })
    }

    pub(crate) fn current(&self) -> &EncryptionKey {
        &self.current
    }

    /// The key with this id, current or old.
    pub(crate) fn key(&self, id: &str) -> Option<&EncryptionKey> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
    }

    /// Every key, current first.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &EncryptionKey> {
        std::iter::once(&self.current).chain(&self.old)
    }
}

fn is_production(var: &impl Fn(&str) -> Option<String>) -> bool {
    let prod = |v: Option<String>| v.is_some_and(|v| v.trim().eq_ignore_ascii_case("production"));
    match var("KORM_ENV") {
        Some(env) => prod(Some(env)),
        None => prod(var("NODE_ENV")),
    }
}

fn production_reason(var: &impl Fn(&str) -> Option<String>) -> &'static str {
    if var("KORM_ENV").is_some() {
        "KORM_ENV=production"
    } else {
        "NODE_ENV=production"
    }
}

/// The key ring a pool seals and opens with: its own ([`PoolBuilder::key_ring`]) or, by
/// default, the process's ([`key_ring`], looked up at each use so [`install`] still applies).
///
/// [`PoolBuilder::key_ring`]: crate::PoolBuilder::key_ring
#[derive(Clone, Default)]
pub(crate) struct RingChoice(Option<Arc<KeyRing>>);

impl RingChoice {
    /// A pool's own ring.
    pub(crate) fn own(ring: KeyRing) -> Self {
        RingChoice(Some(Arc::new(ring)))
    }

    /// The ring to use now.
    pub(crate) fn get(&self) -> Result<Arc<KeyRing>> {
        match &self.0 {
            Some(ring) => Ok(Arc::clone(ring)),
            None => key_ring(),
        }
    }
}

impl fmt::Debug for RingChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(ring) => write!(f, "own(key {})", ring.current_key_id()),
            None => f.write_str("process"),
        }
    }
}

thread_local! {
    /// The ring of the item encoding or decoding running on this thread, if any.
    static BOUNDARY: std::cell::RefCell<Option<RingChoice>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f`, korm's own encoding or decoding of item data (synchronous serde), at the
/// encoding boundary: [`Encrypted`](crate::Encrypted) fields seal and open with `choice`
/// there, and only there.
pub(crate) fn at_boundary<R>(choice: &RingChoice, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<RingChoice>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            BOUNDARY.with(|b| *b.borrow_mut() = previous);
        }
    }
    let previous = BOUNDARY.with(|b| b.replace(Some(choice.clone())));
    let _restore = Restore(previous);
    f()
}

/// The ring of the encoding boundary this runs in; `None` outside korm's encoding (a model
/// serialized by the application itself).
pub(crate) fn boundary_ring() -> Option<Result<Arc<KeyRing>>> {
    let choice = BOUNDARY.with(|b| b.borrow().clone())?;
    Some(choice.get())
}

static RING: RwLock<Option<Arc<KeyRing>>> = RwLock::new(None);

/// Makes `ring` the process's key ring, replacing any other (a ring already loaded from the
/// environment included). Values sealed from now on use its current key.
pub fn install(ring: KeyRing) {
    let mut slot = RING.write().unwrap_or_else(|e| e.into_inner());
    *slot = Some(Arc::new(ring));
}

/// The process's key ring: the installed one, or the one the environment describes, loaded
/// on first use. A temporary key is logged once, when it is made.
///
/// # Errors
/// [`Error::Key`] when the environment holds a malformed key, or no key in production.
pub fn key_ring() -> Result<Arc<KeyRing>> {
    if let Some(ring) = RING.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return Ok(ring.clone());
    }
    let mut slot = RING.write().unwrap_or_else(|e| e.into_inner());
    if let Some(ring) = slot.as_ref() {
        return Ok(ring.clone());
    }
    let ring = Arc::new(KeyRing::from_env()?);
    if ring.temporary {
        tracing::warn!(
            key_id = ring.current_key_id(),
            "{KEY_VAR} is not set: encrypting with a temporary key that is lost when the process \
             ends (set {KEY_VAR}; `korm generate-encryption-key` prints one)"
        );
    }
    *slot = Some(ring.clone());
    Ok(ring)
}

/// A new random key as 64 hex characters, ready for `KORM_ENCRYPTION_KEY`.
pub fn generate_encryption_key() -> Zeroizing<String> {
    EncryptionKey::generate().to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn malformed_keys_say_why_without_the_key() {
        let secret_ish = "a1".repeat(31) + "zz";
        let err = EncryptionKey::from_hex(&secret_ish)
            .unwrap_err()
            .to_string();
        assert!(err.contains("character 63"), "{err}");
        assert!(!err.contains("a1a1"), "{err}");
        let err = EncryptionKey::from_hex(&"ab".repeat(10))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has 20"), "{err}");
        assert!(!err.contains("abab"), "{err}");
        let err = KeyRing::from_vars(vars(&[
            (KEY_VAR, &"a1".repeat(32)),
            (OLD_KEYS_VAR, "b2b2, nothex"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("entry 1"), "{err}");
    }

    #[test]
    fn production_needs_a_key_elsewhere_a_temporary_one() {
        for prod in [
            vars(&[("KORM_ENV", "production")]),
            vars(&[("NODE_ENV", "Production")]),
        ] {
            let err = KeyRing::from_vars(prod).unwrap_err();
            assert!(matches!(err, Error::Key { .. }), "{err}");
            assert!(err.to_string().contains("generate-encryption-key"));
        }
        // KORM_ENV wins over NODE_ENV.
        let ring =
            KeyRing::from_vars(vars(&[("KORM_ENV", "dev"), ("NODE_ENV", "production")])).unwrap();
        assert!(ring.is_temporary());
        let ring = KeyRing::from_vars(vars(&[(KEY_VAR, &"A1".repeat(32))])).unwrap();
        assert!(!ring.is_temporary());
        assert_eq!(ring.current_key_id(), fixture_id());
    }

    fn fixture_id() -> String {
        EncryptionKey::from_hex(&"a1".repeat(32))
            .unwrap()
            .id()
            .to_owned()
    }

    #[test]
    fn old_keys_join_the_ring_once() {
        let ring = KeyRing::from_vars(vars(&[
            (KEY_VAR, &"b2".repeat(32)),
            (
                OLD_KEYS_VAR,
                &format!("{0},{0}, ,{1}", "a1".repeat(32), "b2".repeat(32)),
            ),
        ]))
        .unwrap();
        assert_eq!(ring.keys().count(), 2);
        assert!(ring.key(&fixture_id()).is_some());
    }

    #[test]
    fn generated_keys_are_fresh_hex() {
        let (a, b) = (generate_encryption_key(), generate_encryption_key());
        assert_eq!(a.len(), 64);
        assert_ne!(*a, *b);
        let key = EncryptionKey::from_hex(&a).unwrap();
        assert_eq!(*key.to_hex(), *a);
        assert!(!format!("{key:?}").contains(a.as_str()));
    }
}
