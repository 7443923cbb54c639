//! Secret fields: [`Encrypted<T>`] (AES-256-GCM) and [`Password`] (argon2id).

use std::fmt;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::crypto::{ENVELOPE_MARKER, RawEnvelope, boundary_ring, open, seal};
use crate::error::{Error, Result};

/// A field stored encrypted: AES-256-GCM with a fresh random nonce per value, in korm 1.5's
/// envelope (see `docs/design.md`), with the pool's key ring
/// ([`PoolBuilder::key_ring`](crate::PoolBuilder::key_ring), by default the process ring of
/// [`korm::crypto`](crate::crypto)).
///
/// [`reveal`](Encrypted::reveal) gives the cleartext. `Debug` and `Display` print a redaction,
/// never the value.
///
/// Encryption happens at korm's encoding boundary only: when korm stores an item, each
/// `Encrypted` field is sealed with the pool's current key and a fresh nonce (so committing
/// an item re-encrypts values written under an older key); when korm reads one, the envelope
/// is opened and anything else is refused (a plain value where an envelope belongs is
/// tampering). Anywhere else (the model serialized by the application, as an API response
/// say) no key ring is touched: the field serializes as the string `"<encrypted>"`, and
/// deserializes from a plain value (an API request's cleartext). Reading back
/// `"<encrypted>"` or an envelope there is an error, never a silently wrong value.
///
/// Filters can compare an encrypted field with [`eq`](crate::eq) and
/// [`in_list`](crate::in_list) (evaluated in memory after decryption); other operators on it
/// are [`Error::InvalidFilter`].
///
/// ```
/// use korm::Encrypted;
/// let ssn = Encrypted::new("078-05-1120".to_owned());
/// assert_eq!(ssn.reveal(), "078-05-1120");
/// assert_eq!(format!("{ssn:?}"), "Encrypted(<redacted>)");
/// // Outside korm's encoding: a redaction, and cleartext in.
/// assert_eq!(serde_json::to_string(&ssn).unwrap(), r#""<encrypted>""#);
/// let input: Encrypted<String> = serde_json::from_str(r#""078-05-1120""#).unwrap();
/// assert_eq!(input, ssn);
/// assert!(serde_json::from_str::<Encrypted<String>>(r#""<encrypted>""#).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Encrypted<T>(T);

impl<T> Encrypted<T> {
    /// Wraps a cleartext value; it is encrypted whenever it is serialized.
    pub fn new(value: T) -> Self {
        Encrypted(value)
    }

    /// The cleartext.
    pub fn reveal(&self) -> &T {
        &self.0
    }

    /// The cleartext, to change.
    pub fn reveal_mut(&mut self) -> &mut T {
        &mut self.0
    }

    /// Unwraps the cleartext.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Encrypted<T> {
    fn from(value: T) -> Self {
        Encrypted(value)
    }
}

impl<T> fmt::Debug for Encrypted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Encrypted(<redacted>)")
    }
}

impl<T> fmt::Display for Encrypted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<encrypted>")
    }
}

/// What an encrypted field shows outside korm's encoding boundary.
const REDACTED: &str = "<encrypted>";

impl<T: Serialize> Serialize for Encrypted<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(ring) = boundary_ring() else {
            return serializer.serialize_str(REDACTED);
        };
        let ring = ring.map_err(S::Error::custom)?;
        let not_json =
            |e| S::Error::custom(format!("can not encrypt: the value is not JSON ({e})"));
        let json = Zeroizing::new(serde_json::to_vec(&self.0).map_err(not_json)?);
        // A NaN or an infinity would be sealed as null: refused instead.
        if json.windows(4).any(|w| w == b"null") {
            super::encode::check_finite(&self.0).map_err(not_json)?;
        }
        seal(&ring, &json).serialize(serializer)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Encrypted<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Some(ring) = boundary_ring() else {
            return plain(deserializer);
        };
        // The inner error may quote the stored value (a plain value in an encrypted column);
        // it is replaced, never passed on.
        let raw = RawEnvelope::deserialize(deserializer).map_err(|_| {
            D::Error::custom(
                "expected an encryption envelope; a plain value in an encrypted field is refused \
                 (tampered or foreign data)",
            )
        })?;
        let ring = ring.map_err(D::Error::custom)?;
        let json =
            open(&ring, &raw).map_err(|e| D::Error::custom(format!("can not decrypt: {e}")))?;
        serde_json::from_slice(&json).map(Encrypted).map_err(|_| {
            D::Error::custom(format!(
                "the decrypted value does not fit {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// An encrypted field read outside korm's encoding boundary: a plain value (never quoted in
/// an error), not a redaction or an envelope.
fn plain<'de, T: DeserializeOwned, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Encrypted<T>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    if value.as_str() == Some(REDACTED) {
        return Err(D::Error::custom(
            "an encrypted field serialized outside korm shows only \"<encrypted>\", which can not \
             be read back; load the item through its pool",
        ));
    }
    if value.get(ENVELOPE_MARKER).is_some() {
        return Err(D::Error::custom(
            "an encryption envelope is opened only when korm reads an item (load it through its \
             pool) or with KeyRing::decrypt",
        ));
    }
    serde_json::from_value(value).map(Encrypted).map_err(|_| {
        D::Error::custom(format!(
            "the value does not fit {}",
            std::any::type_name::<T>()
        ))
    })
}

/// What korm 1.5 hashes: the JSON text of the password (`"yabba-dabba-doo"`, quotes
/// included), so a hash either side writes verifies on the other.
fn json_text(password: &str) -> Zeroizing<String> {
    Zeroizing::new(Value::from(password).to_string())
}

/// The most memory (KiB) a stored hash may ask argon2 for: 2 GiB, RFC 9106's costliest
/// recommendation (korm 1.5 and korm-rs hash with 64 MiB).
pub(crate) const MAX_MEMORY_KIB: u32 = 2 * 1024 * 1024;

/// The most memory times passes (KiB) a stored hash may ask for: 8 GiB (RFC 9106's first
/// recommendation, 2 GiB x 1 pass, four times over; korm's 64 MiB x 3 passes is 192 MiB).
pub(crate) const MAX_WORK_KIB: u64 = 8 * 1024 * 1024;

/// The most lanes a stored hash may ask for.
pub(crate) const MAX_LANES: u32 = 64;

/// The argon2id parameters of new hashes: korm 1.5's (m = 64 MiB, t = 3, p = 1).
fn hasher() -> Argon2<'static> {
    // These constants are valid argon2 parameters; `Params::new` only fails outside its ranges.
    let params = Params::new(65536, 3, 1, Some(32)).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A password, hashed with argon2id (m = 64 MiB, t = 3, p = 1, as korm 1.5) when it is made
/// (korm 1.5 hashes the password's JSON text, quotes included, and so does korm-rs);
/// only the PHC string is kept and stored, in korm 1.5's password envelope
/// (`{"__ENCRYPTED__":true,"type":"password","value":"$argon2id$...","dataType":"string"}`).
///
/// `Debug` and `Display` are redacted. Hashes korm 1.5 wrote verify, whatever their
/// parameters (they are read from the PHC string). In async code prefer
/// [`new_async`](Password::new_async) and [`verify_async`](Password::verify_async), which
/// run argon2 off the async threads.
///
/// ```
/// use korm::Password;
/// let pw = Password::new("yabba-dabba-doo")?;
/// assert!(pw.verify("yabba-dabba-doo"));
/// assert!(!pw.verify("wilma"));
/// assert!(pw.phc().starts_with("$argon2id$v=19$m=65536,t=3,p=1$"));
/// # Ok::<(), korm::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Password {
    phc: String,
}

impl Password {
    /// Hashes `password` with a fresh random salt.
    ///
    /// # Errors
    /// [`Error::Encode`] if argon2 refuses the input (longer than 4 GiB).
    pub fn new(password: &str) -> Result<Self> {
        // A fresh random 16-byte salt, drawn by argon2.
        let phc = hasher()
            .hash_password(json_text(password).as_bytes())
            .map_err(|e| Error::Encode {
                what: "password".to_owned(),
                reason: e.to_string(),
            })?
            .to_string();
        Ok(Password { phc })
    }

    /// [`new`](Password::new) on tokio's blocking threads: argon2id at korm 1.5's cost
    /// (64 MiB, 3 passes) takes tens of milliseconds of CPU, which would stall the other
    /// tasks of an async thread. Use this one in async code.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> korm::Result<()> {
    /// let pw = korm::Password::new_async("yabba-dabba-doo").await?;
    /// assert!(pw.verify_async("yabba-dabba-doo").await);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`new`](Password::new).
    pub async fn new_async(password: &str) -> Result<Self> {
        let password = zeroize::Zeroizing::new(password.to_owned());
        tokio::task::spawn_blocking(move || Password::new(&password))
            .await
            .unwrap_or_else(|e| {
                Err(Error::Encode {
                    what: "password".to_owned(),
                    reason: format!("the hashing task failed: {e}"),
                })
            })
    }

    /// [`verify`](Password::verify) on tokio's blocking threads (see
    /// [`new_async`](Password::new_async)).
    pub async fn verify_async(&self, candidate: &str) -> bool {
        let (phc, candidate) = (
            self.phc.clone(),
            zeroize::Zeroizing::new(candidate.to_owned()),
        );
        tokio::task::spawn_blocking(move || Password { phc }.verify(&candidate))
            .await
            .unwrap_or(false)
    }

    /// A password from a stored PHC hash string (`$argon2id$v=19$...`).
    ///
    /// `verify` runs argon2 with the parameters the string names, so a string that asks for
    /// more than 2 GiB of memory (RFC 9106's costliest recommendation), more than 8 GiB of
    /// memory times passes, or more than 64 lanes is refused: a tampered hash could otherwise
    /// make one `verify` run for hours or exhaust memory. (korm 1.5 and korm-rs hash with
    /// 64 MiB and 3 passes.)
    ///
    /// # Errors
    /// [`Error::Decode`] if the string is not an argon2 PHC hash, or asks for more than those
    /// bounds.
    pub fn from_phc(phc: &str) -> Result<Self> {
        let refuse = |reason: String| Error::Decode {
            rn: "password".to_owned(),
            reason,
        };
        let hash = PasswordHash::new(phc)
            .map_err(|_| refuse("not a PHC password hash string".to_owned()))?;
        let params = Params::try_from(&hash)
            .map_err(|e| refuse(format!("not an argon2 password hash ({e})")))?;
        let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
        if m > MAX_MEMORY_KIB || u64::from(m) * u64::from(t) > MAX_WORK_KIB || p > MAX_LANES {
            return Err(refuse(format!(
                "the hash asks argon2 for m = {m} KiB, t = {t}, p = {p}: above korm's bounds \
                 (m <= {MAX_MEMORY_KIB} KiB, m x t <= {MAX_WORK_KIB} KiB, p <= {MAX_LANES}), \
                 so it is taken for tampered"
            )));
        }
        Ok(Password {
            phc: phc.to_owned(),
        })
    }

    /// Whether `candidate` is the password (argon2's verification, constant time in the
    /// candidate's hash).
    pub fn verify(&self, candidate: &str) -> bool {
        let Ok(hash) = PasswordHash::new(&self.phc) else {
            return false;
        };
        Argon2::default()
            .verify_password(json_text(candidate).as_bytes(), &hash)
            .is_ok()
    }

    /// The PHC hash string (safe to store; never the password).
    pub fn phc(&self) -> &str {
        &self.phc
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<password>")
    }
}

impl Serialize for Password {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = Map::with_capacity(4);
        map.insert(ENVELOPE_MARKER.into(), Value::Bool(true));
        map.insert("type".into(), Value::from("password"));
        map.insert("value".into(), Value::from(self.phc.as_str()));
        map.insert("dataType".into(), Value::from("string"));
        Value::Object(map).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawEnvelope::deserialize(deserializer).map_err(|_| {
            D::Error::custom("expected a password envelope; a plain value is refused")
        })?;
        if !raw.marker || raw.kind != "password" {
            return Err(D::Error::custom(
                "expected a password envelope (type \"password\")",
            ));
        }
        Password::from_phc(&raw.value)
            .map_err(|_| D::Error::custom("the password envelope holds no PHC hash string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verifies_korm_1_5_hashes() {
        // fred's password in fixtures/korm-ts-1.5/cardb.sqlite.
        let stored = json!({"__ENCRYPTED__":true,"type":"password","value":"$argon2id$v=19$m=65536,t=3,p=1$LZ73wkWCgjp0jFdvcp5ReEr5VL02fV0WkjrnHLJVcQc$QpCmiTTtfwQ1aIgzfATzPxDcUyoGxk+lnOb4NRCRor8","dataType":"string"});
        let pw: Password = serde_json::from_value(stored.clone()).unwrap();
        assert!(pw.verify("yabba-dabba-doo"));
        assert!(!pw.verify("yabba-dabba-do"));
        assert_eq!(serde_json::to_value(&pw).unwrap(), stored);
        assert_eq!(format!("{pw:?} {pw}"), "Password(<redacted>) <password>");
    }

    /// A stored hash that asks argon2 for hours of work or more memory than a machine has
    /// (a tampered row) is refused when it is read, in microseconds; the costliest hash RFC
    /// 9106 recommends is read (not verified here: it needs 2 GiB).
    #[test]
    fn a_hash_asking_for_unbounded_work_is_refused() {
        let salt_and_hash = "LZ73wkWCgjp0jFdvcp5ReEr5VL02fV0WkjrnHLJVcQc$QpCmiTTtfwQ1aIgzfATzPxDcUyoGxk+lnOb4NRCRor8";
        for params in [
            "m=8,t=4294967295,p=1",
            "m=4294967295,t=1,p=1",
            "m=2097152,t=5,p=1",
            "m=65536,t=3,p=255",
        ] {
            let phc = format!("$argon2id$v=19${params}${salt_and_hash}");
            let started = std::time::Instant::now();
            let stored =
                json!({"__ENCRYPTED__":true,"type":"password","value":phc,"dataType":"string"});
            assert!(
                serde_json::from_value::<Password>(stored).is_err(),
                "{params}"
            );
            match Password::from_phc(&phc) {
                Err(Error::Decode { reason, .. }) => {
                    assert!(reason.contains("tampered"), "{params}: {reason}")
                }
                other => panic!("{params}: {other:?}"),
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
        for params in ["m=2097152,t=1,p=4", "m=65536,t=3,p=1", "m=19456,t=2,p=1"] {
            let phc = format!("$argon2id$v=19${params}${salt_and_hash}");
            assert!(Password::from_phc(&phc).is_ok(), "{params}");
        }
        assert!(Password::from_phc("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA").is_err());
    }

    /// The async forms yield while argon2 runs elsewhere: a task joined with them runs
    /// before they finish (with the blocking forms, on one thread, it could not).
    #[tokio::test(flavor = "current_thread")]
    async fn async_forms_leave_the_async_thread_free() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let order = AtomicUsize::new(0);
        let (hashed, other) = tokio::join!(
            async {
                let pw = Password::new_async("pebbles").await.unwrap();
                (pw, order.fetch_add(1, Ordering::SeqCst))
            },
            async { order.fetch_add(1, Ordering::SeqCst) }
        );
        assert_eq!((other, hashed.1), (0, 1), "the other task ran first");
        let (ok, other) = tokio::join!(
            async {
                let ok = hashed.0.verify_async("pebbles").await;
                (ok, order.fetch_add(1, Ordering::SeqCst))
            },
            async { order.fetch_add(1, Ordering::SeqCst) }
        );
        assert_eq!((other, ok.1), (2, 3));
        assert!(ok.0);
        assert!(!hashed.0.verify_async("bambam").await);
    }

    #[test]
    fn plain_values_are_refused_without_quoting_them() {
        let err = serde_json::from_value::<Password>(json!("hunter2"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        // At korm's encoding boundary a plain value is tampering, refused without quoting it.
        let boundary = crate::crypto::RingChoice::own(crate::crypto::KeyRing::new(
            crate::crypto::EncryptionKey::generate(),
        ));
        let err = crate::crypto::at_boundary(&boundary, || {
            serde_json::from_value::<Encrypted<String>>(json!("078-05-1120"))
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("plain value"), "{err}");
        assert!(!err.contains("078"), "{err}");
        // Outside it a value of the wrong type is refused, not quoted either.
        let err = serde_json::from_value::<Encrypted<u32>>(json!("078-05-1120"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("078"), "{err}");
    }

    #[test]
    fn outside_the_boundary_no_key_is_used_and_nothing_leaks() {
        let ssn = Encrypted::new("078-05-1120".to_owned());
        assert_eq!(serde_json::to_value(&ssn).unwrap(), json!("<encrypted>"));
        let ring = crate::crypto::KeyRing::new(crate::crypto::EncryptionKey::generate());
        let envelope = ring.encrypt("078-05-1120").unwrap();
        let err = serde_json::from_value::<Encrypted<String>>(envelope.clone())
            .unwrap_err()
            .to_string();
        assert!(err.contains("KeyRing::decrypt"), "{err}");
        // The same envelope opens at the boundary of a pool holding the ring.
        let choice = crate::crypto::RingChoice::own(ring);
        let back = crate::crypto::at_boundary(&choice, || {
            serde_json::from_value::<Encrypted<String>>(envelope)
        })
        .unwrap();
        assert_eq!(back, ssn);
        // And the boundary ends with its closure, even nested.
        assert_eq!(serde_json::to_value(&ssn).unwrap(), json!("<encrypted>"));
    }
}
