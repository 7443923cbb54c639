//! The encryption envelope of korm 1.5, plus a key id.
//!
//! ```text
//! {"__ENCRYPTED__":true,"type":"symmetric","value":<hex ciphertext>,"dataType":<typeof>,
//!  "iv":<hex 12 bytes>,"authTag":<hex 16 bytes>,"keyId":<8 hex>}
//! ```
//!
//! The plaintext is the JSON text of the value (a string keeps its quotes), sealed with
//! AES-256-GCM under a fresh random 96-bit nonce and no associated data, as korm 1.5 does.
//! `dataType` is JavaScript's `typeof` of the value (`string`, `number`, `boolean`, `object`
//! for objects, arrays and null); korm-rs writes it and does not need it to read. `keyId` is
//! korm-rs's addition: korm 1.5 reads the fields it knows and ignores it. An envelope without
//! it (written by korm 1.5) is opened by trying each key of the ring: GCM's tag tells the
//! right key from a wrong one.

use aes_gcm::aead::{AeadInOut, Generate, Nonce};
use aes_gcm::{Aes256Gcm, Tag};
use serde::Deserialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{EncryptionKey, KeyRing};

/// The key that marks an object as an envelope (`"__ENCRYPTED__": true`).
pub const ENVELOPE_MARKER: &str = "__ENCRYPTED__";
/// The envelope field naming the key a value was sealed with (korm-rs only).
pub const KEY_ID_FIELD: &str = "keyId";

/// Why an envelope could not be opened. The message never holds plaintext or key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecryptError(pub(crate) String);

impl std::fmt::Display for DecryptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An envelope as stored; unknown fields are ignored.
#[derive(Deserialize)]
pub(crate) struct RawEnvelope {
    #[serde(rename = "__ENCRYPTED__")]
    pub(crate) marker: bool,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) value: String,
    #[serde(default)]
    pub(crate) iv: Option<String>,
    #[serde(rename = "authTag", default)]
    pub(crate) auth_tag: Option<String>,
    #[serde(rename = "keyId", default)]
    pub(crate) key_id: Option<String>,
}

/// JavaScript's `typeof` of the value whose JSON text is `json`.
fn data_type(json: &[u8]) -> &'static str {
    match json.first() {
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'-' | b'0'..=b'9') => "number",
        _ => "object",
    }
}

/// Seals the JSON text of a value with the ring's current key.
pub(crate) fn seal(ring: &KeyRing, json: &[u8]) -> Value {
    seal_with(ring.current(), json)
}

fn seal_with(key: &EncryptionKey, json: &[u8]) -> Value {
    let nonce = Nonce::<Aes256Gcm>::generate();
    let mut buffer = json.to_vec();
    // Encrypting into a Vec never fails (aes-gcm only refuses messages above 64 GiB).
    let tag = key
        .cipher()
        .encrypt_inout_detached(&nonce, b"", buffer.as_mut_slice().into())
        .unwrap_or_default();
    let mut map = Map::with_capacity(7);
    map.insert(ENVELOPE_MARKER.into(), Value::Bool(true));
    map.insert("type".into(), Value::from("symmetric"));
    map.insert("value".into(), Value::from(hex::encode(&buffer)));
    map.insert("dataType".into(), Value::from(data_type(json)));
    map.insert("iv".into(), Value::from(hex::encode(nonce)));
    map.insert("authTag".into(), Value::from(hex::encode(tag)));
    map.insert(KEY_ID_FIELD.into(), Value::from(key.id()));
    Value::Object(map)
}

/// Seals a JSON value (for callers that hold one already).
#[cfg(test)]
pub(crate) fn seal_value(ring: &KeyRing, value: &Value) -> Value {
    seal(ring, value.to_string().as_bytes())
}

/// Opens a symmetric envelope: the JSON text of the value, in a buffer zeroized on drop.
pub(crate) fn open(
    ring: &KeyRing,
    envelope: &RawEnvelope,
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    let fail = |reason: &str| Err(DecryptError(reason.to_owned()));
    if !envelope.marker {
        return fail("not an encryption envelope (__ENCRYPTED__ is not true)");
    }
    match envelope.kind.as_str() {
        "symmetric" => {}
        "password" => {
            return fail("the envelope holds a password hash, which can not be decrypted");
        }
        _ => return fail("unknown envelope type (expected symmetric)"),
    }
    let (Some(iv), Some(tag)) = (&envelope.iv, &envelope.auth_tag) else {
        return fail("the envelope lacks its iv or authTag");
    };
    let mut iv_bytes = [0u8; 12];
    if hex::decode_to_slice(iv, &mut iv_bytes).is_err() {
        return fail("the envelope's iv is not 12 bytes of hex");
    }
    let mut tag_bytes = [0u8; 16];
    if hex::decode_to_slice(tag, &mut tag_bytes).is_err() {
        return fail("the envelope's authTag is not 16 bytes of hex");
    }
    let Ok(ciphertext) = hex::decode(&envelope.value) else {
        return fail("the envelope's value is not hex");
    };
    let nonce: &Nonce<Aes256Gcm> = (&iv_bytes).into();
    let tag: &Tag = (&tag_bytes).into();
    let try_key = |key: &EncryptionKey| {
        let mut buffer = Zeroizing::new(ciphertext.clone());
        key.cipher()
            .decrypt_inout_detached(nonce, b"", buffer.as_mut_slice().into(), tag)
            .ok()
            .map(|()| buffer)
    };
    let opened = match &envelope.key_id {
        Some(id) => match ring.key(id) {
            Some(key) => try_key(key),
            None => {
                return Err(DecryptError(format!(
                    "the value was encrypted with key {id:?}, which the key ring does not hold \
                     (add that key to KORM_ENCRYPTION_KEYS_OLD)"
                )));
            }
        },
        None => ring.keys().find_map(try_key),
    };
    opened.ok_or_else(|| {
        DecryptError(
            "authentication failed: the ciphertext, nonce or tag was altered, or the key is wrong"
                .to_owned(),
        )
    })
}

/// Opens an envelope held as a JSON value into the JSON value it seals.
pub(crate) fn open_value(ring: &KeyRing, envelope: &Value) -> Result<Value, DecryptError> {
    let raw = RawEnvelope::deserialize(envelope)
        .map_err(|_| DecryptError("the envelope is malformed".to_owned()))?;
    let json = open(ring, &raw)?;
    serde_json::from_slice(&json)
        .map_err(|_| DecryptError("the decrypted text is not JSON".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture_ring() -> KeyRing {
        KeyRing::new(EncryptionKey::from_hex(&"a1".repeat(32)).unwrap())
    }

    /// fred's ssn in fixtures/korm-ts-1.5/cardb.sqlite.
    fn fred_ssn() -> Value {
        json!({"__ENCRYPTED__":true,"type":"symmetric","value":"376f2be2d450191ba50fec3a68",
               "dataType":"string","iv":"d2d9ef584daba1079d47fdc9",
               "authTag":"67a9f7fafd152cdba7ef95e8a084290a"})
    }

    #[test]
    fn opens_korm_1_5_envelopes() {
        assert_eq!(
            open_value(&fixture_ring(), &fred_ssn()).unwrap(),
            json!("078-05-1120")
        );
    }

    #[test]
    fn seals_the_same_fields_plus_a_key_id() {
        let ring = fixture_ring();
        let sealed = seal_value(&ring, &json!("078-05-1120"));
        let keys: Vec<&str> = sealed
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let korm15: Vec<String> = fred_ssn().as_object().unwrap().keys().cloned().collect();
        assert_eq!(&keys[..6], &korm15[..]);
        assert_eq!(keys[6], KEY_ID_FIELD);
        assert_eq!(sealed["dataType"], "string");
        assert_eq!(sealed["value"].as_str().unwrap().len(), 26);
        assert_eq!(open_value(&ring, &sealed).unwrap(), json!("078-05-1120"));
        // A fresh nonce each time.
        assert_ne!(
            seal_value(&ring, &json!(1))["iv"],
            seal_value(&ring, &json!(1))["iv"]
        );
        for (v, t) in [
            (json!(1.5), "number"),
            (json!(true), "boolean"),
            (json!([1]), "object"),
        ] {
            assert_eq!(seal_value(&ring, &v)["dataType"], t);
        }
    }

    #[test]
    fn tampering_and_wrong_keys_fail_without_plaintext() {
        let ring = fixture_ring();
        for (field, position) in [("value", 0), ("iv", 3), ("authTag", 31)] {
            let mut env = fred_ssn();
            let text = env[field].as_str().unwrap().to_owned();
            let flipped = if &text[position..=position] == "0" {
                "1"
            } else {
                "0"
            };
            let mut changed = text.clone();
            changed.replace_range(position..=position, flipped);
            env[field] = json!(changed);
            let err = open_value(&ring, &env).unwrap_err();
            assert!(err.0.contains("authentication failed"), "{field}: {err}");
            assert!(!err.0.contains("078"));
        }
        let other = KeyRing::new(EncryptionKey::generate());
        assert!(open_value(&other, &fred_ssn()).is_err());
        let sealed = seal_value(&other, &json!("x"));
        let err = open_value(&ring, &sealed).unwrap_err();
        assert!(err.0.contains("does not hold"), "{err}");
        let mut short = fred_ssn();
        short["iv"] = json!("d2d9");
        assert!(open_value(&ring, &short).unwrap_err().0.contains("iv"));
    }

    #[test]
    fn old_keys_decrypt_and_the_current_key_seals() {
        let old = fixture_ring();
        let sealed_old = seal_value(&old, &json!({"price": 100000}));
        let ring = KeyRing::new(EncryptionKey::generate())
            .with_old_key(EncryptionKey::from_hex(&"a1".repeat(32)).unwrap());
        assert_eq!(
            open_value(&ring, &sealed_old).unwrap(),
            json!({"price": 100000})
        );
        assert_eq!(
            open_value(&ring, &fred_ssn()).unwrap(),
            json!("078-05-1120")
        );
        let fresh = seal_value(&ring, &json!(1));
        assert_eq!(fresh[KEY_ID_FIELD], ring.current_key_id());
    }
}
