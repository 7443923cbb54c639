//! WAL records: korm 1.5's format v4 (see `FORMAT.md`), authenticated with a MAC.
//!
//! A record is JSON. korm-rs writes it with its keys sorted at every level (the canonical
//! form), then appends `mac` and `macKeyId`: `mac` is HMAC-SHA256, in hex, of the canonical
//! form of the record without those two fields, under a key derived by HKDF-SHA256 from the
//! encryption key whose id is `macKeyId`. korm 1.5 ignores both fields; a record without
//! them (korm 1.5's) is accepted only when the pool says so
//! ([`WalOptions::with_accept_unsigned`](crate::WalOptions::with_accept_unsigned)).

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::crypto::KeyRing;

/// The record format korm 1.5 writes and reads.
pub const FORMAT_VERSION: u64 = 4;

/// The HKDF info that derives the MAC key from an encryption key.
const MAC_LABEL: &str = "korm wal mac v1";

/// A WAL record (format v4): the ops of one write with their before-images.
///
/// The fields of the record types are declared in the order of their JSON names, so that
/// serializing one writes its canonical form directly (keys sorted at every level; the item
/// data through `Canonical`, `model/encode.rs`): that is what the MAC covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Record {
    /// When the write finished (done and failed records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// When the write began (ISO 8601, UTC, milliseconds).
    pub created_at: String,
    /// The depot file ops (with depot ops recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depot_ops: Vec<RecordDepotOp>,
    /// The record id (a UUID), also its file name.
    pub id: String,
    /// The WAL namespace.
    pub namespace: String,
    /// The item ops, in the order they are applied.
    pub ops: Vec<RecordOp>,
    /// The pool the record belongs to (16 hex characters).
    pub pool_id: String,
    /// Where the write stands.
    pub state: RecordState,
    /// Always [`FORMAT_VERSION`].
    pub version: u64,
}

/// Where a recorded write stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RecordState {
    /// Being applied (korm 1.5's only pending state): recovery applies it.
    Pending,
    /// Failed, and being undone (korm-rs): recovery undoes what is left of it.
    Aborting,
    /// Applied.
    Done,
    /// Failed and undone (korm-rs).
    Failed,
}

impl RecordState {
    /// The state's name in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Pending => "pending",
            RecordState::Aborting => "aborting",
            RecordState::Done => "done",
            RecordState::Failed => "failed",
        }
    }
}

/// What an item op does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RecordOpType {
    /// Stores a new item.
    Insert,
    /// Replaces an item's data.
    Update,
    /// Removes an item.
    Delete,
}

/// One item op of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecordOp {
    /// The item's data before the op (update, delete), in storage form.
    #[serde(default, serialize_with = "crate::model::canonical_map")]
    pub before: Option<Map<String, Value>>,
    /// The item's data after the op (insert, update), in storage form: encrypted fields are
    /// envelopes, never cleartext.
    #[serde(default, serialize_with = "crate::model::canonical_map")]
    pub data: Option<Map<String, Value>>,
    /// Whether columns whose kind changed may be recreated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destructive: bool,
    /// The item.
    pub rn: String,
    /// What the op does.
    #[serde(rename = "type")]
    pub kind: RecordOpType,
}

/// What a depot op does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DepotOpType {
    /// Writes a file.
    Put,
    /// Deletes a file.
    Delete,
}

/// One depot file op of a record, with its payloads in the WAL depot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RecordDepotOp {
    /// The content the op replaced or deleted (`payloads/{recordId}/{n}/before.bin`), if
    /// there was a file.
    #[serde(default)]
    pub before_payload_rn: Option<String>,
    /// The new content (`payloads/{recordId}/{n}/after.bin`), for a put.
    #[serde(default)]
    pub payload_rn: Option<String>,
    /// The file.
    pub rn: String,
    /// What the op does.
    #[serde(rename = "type")]
    pub kind: DepotOpType,
}

/// The keys that sign and check records: one per key of the ring, current first.
pub(crate) struct MacKeys {
    keys: Vec<(String, Zeroizing<[u8; 32]>)>,
}

impl std::fmt::Debug for MacKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MacKeys")
            .field(
                "ids",
                &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

type HmacSha256 = hmac::Hmac<Sha256>;

impl MacKeys {
    /// The MAC keys of every key in `ring`.
    pub(crate) fn of(ring: &KeyRing) -> Self {
        MacKeys {
            keys: ring
                .keys()
                .map(|key| (key.id().to_owned(), key.derive(MAC_LABEL)))
                .collect(),
        }
    }

    fn mac(key: &[u8; 32], canonical: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(canonical);
        mac
    }
}

/// Why a stored record is not replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal(pub(crate) String);

impl Record {
    /// The record as stored: its canonical JSON, signed with the current key.
    pub(crate) fn to_signed_json(&self, keys: &MacKeys) -> Vec<u8> {
        let mut text = Vec::with_capacity(512);
        serde_json::to_writer(&mut text, self)
            .unwrap_or_else(|_| unreachable!("a record is plain JSON data"));
        let (id, key) = &keys.keys[0];
        let mut mac = [0u8; 64];
        hex::encode_to_slice(MacKeys::mac(key, &text).finalize().into_bytes(), &mut mac)
            .unwrap_or_else(|_| unreachable!("32 bytes are 64 hex digits"));
        text.pop();
        text.extend_from_slice(b",\"mac\":\"");
        text.extend_from_slice(&mac);
        text.extend_from_slice(b"\",\"macKeyId\":\"");
        text.extend_from_slice(id.as_bytes());
        text.extend_from_slice(b"\"}");
        text
    }

    /// Parses a stored record and checks its MAC; `accept_unsigned` admits a record without
    /// one (korm 1.5's). Returns the record and whether it was signed.
    pub(crate) fn parse(
        bytes: &[u8],
        keys: &MacKeys,
        accept_unsigned: bool,
    ) -> Result<(Record, bool), Refusal> {
        let mut value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Refusal(format!("is not valid JSON ({e})")))?;
        let Some(object) = value.as_object_mut() else {
            return Err(Refusal("is not a JSON object".to_owned()));
        };
        let mac = object.shift_remove("mac");
        let key_id = object.shift_remove("macKeyId");
        let signed = match (mac, key_id) {
            (None, None) if accept_unsigned => false,
            (None, None) => {
                return Err(Refusal(
                    "has no MAC (korm 1.5 writes none): it is replayed only with \
                     WalOptions::with_accept_unsigned(true), to migrate from korm 1.5"
                        .to_owned(),
                ));
            }
            (Some(Value::String(mac)), Some(Value::String(key_id))) => {
                let Some((_, key)) = keys.keys.iter().find(|(id, _)| *id == key_id) else {
                    return Err(Refusal(format!(
                        "is signed with key {key_id:?}, which the key ring lacks"
                    )));
                };
                let expected = hex::decode(&mac)
                    .map_err(|_| Refusal("has a MAC that is not hex".to_owned()))?;
                let mut text = Vec::with_capacity(bytes.len());
                crate::model::canonical_json(&value, &mut text);
                MacKeys::mac(key, &text)
                    .verify_slice(&expected)
                    .map_err(|_| {
                        Refusal(
                            "fails its MAC check: it was changed after it was written (or \
                             signed with another key)"
                                .to_owned(),
                        )
                    })?;
                true
            }
            _ => return Err(Refusal("has a malformed mac or macKeyId".to_owned())),
        };
        let record: Record = serde_json::from_value(value)
            .map_err(|e| Refusal(format!("is not a WAL record ({e})")))?;
        if record.version != FORMAT_VERSION {
            return Err(Refusal(format!(
                "has format version {}, this korm reads {FORMAT_VERSION}",
                record.version
            )));
        }
        Ok((record, signed))
    }
}

/// The current time as korm 1.5 writes it: ISO 8601 in UTC with milliseconds
/// (`2026-11-26T16:13:58.037Z`).
pub(crate) fn now_iso() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    iso_of(since.as_millis())
}

fn iso_of(millis: u128) -> String {
    let millis = i64::try_from(millis).unwrap_or(i64::MAX);
    crate::backup::jiff_free::Utc { millis }.iso()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::EncryptionKey;

    fn keys() -> MacKeys {
        MacKeys::of(&KeyRing::new(
            EncryptionKey::from_hex(&"a1".repeat(32)).unwrap(),
        ))
    }

    fn record() -> Record {
        let mut data = Map::new();
        data.insert("name".into(), Value::from("fred"));
        data.insert("age".into(), Value::from(41));
        Record {
            version: FORMAT_VERSION,
            id: "b10aa01f-2a98-45bd-9b64-2bb7d4eb856b".into(),
            pool_id: "e5d9906025b1b75f".into(),
            namespace: "fixtures".into(),
            created_at: "2026-11-26T16:13:58.037Z".into(),
            state: RecordState::Pending,
            ops: vec![RecordOp {
                kind: RecordOpType::Insert,
                rn: "[rn]:users:free:3df3face-f377-4f86-9bb9-a9b4671a9441".into(),
                data: Some(data),
                before: None,
                destructive: false,
            }],
            depot_ops: Vec::new(),
            completed_at: None,
        }
    }

    #[test]
    fn a_signed_record_reads_back_and_any_change_is_refused() {
        let keys = keys();
        let json = record().to_signed_json(&keys);
        let (back, signed) = Record::parse(&json, &keys, false).unwrap();
        assert!(signed);
        assert_eq!(back, record());
        let text = String::from_utf8(json).unwrap();
        for (from, to) in [
            ("\"age\":41", "\"age\":42"),
            ("\"state\":\"pending\"", "\"state\":\"done\""),
            ("\"insert\"", "\"delete\""),
        ] {
            let tampered = text.replacen(from, to, 1);
            assert_ne!(tampered, text);
            let refusal = Record::parse(tampered.as_bytes(), &keys, true).unwrap_err();
            assert!(refusal.0.contains("MAC"), "{refusal:?}");
        }
        // Another key (a ring that does not hold the signing key) refuses it too.
        let other = MacKeys::of(&KeyRing::new(EncryptionKey::generate()));
        let refusal = Record::parse(text.as_bytes(), &other, true).unwrap_err();
        assert!(refusal.0.contains("lacks"), "{refusal:?}");
    }

    #[test]
    fn a_record_serializes_in_its_canonical_form() {
        let mut record = record();
        record.ops[0].before = Some(record.ops[0].data.clone().unwrap());
        record.completed_at = Some("2026-11-26T16:13:58.039Z".into());
        record.depot_ops.push(RecordDepotOp {
            before_payload_rn: None,
            payload_rn: Some("[rn][depot::wal]:a:b.bin".into()),
            rn: "[rn][depot::files]:a:b.txt".into(),
            kind: DepotOpType::Put,
        });
        let direct = serde_json::to_vec(&record).unwrap();
        let mut canonical = Vec::new();
        crate::model::canonical_json(&serde_json::to_value(&record).unwrap(), &mut canonical);
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            String::from_utf8(canonical).unwrap()
        );
    }

    #[test]
    fn an_unsigned_record_is_read_only_when_accepted() {
        let keys = keys();
        let plain = serde_json::to_vec(&record()).unwrap();
        let refusal = Record::parse(&plain, &keys, false).unwrap_err();
        assert!(refusal.0.contains("accept_unsigned"), "{refusal:?}");
        let (back, signed) = Record::parse(&plain, &keys, true).unwrap();
        assert!(!signed);
        assert_eq!(back, record());
        // Removing the MAC of a signed record makes it unsigned: refused by default.
        let json = String::from_utf8(record().to_signed_json(&keys)).unwrap();
        let cut = json.find(",\"mac\"").unwrap();
        let stripped = format!("{}}}", &json[..cut]);
        assert!(Record::parse(stripped.as_bytes(), &keys, false).is_err());
    }

    #[test]
    fn korm_1_5_records_parse() {
        let fixtures = std::env::var_os("KORM_FIXTURES")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../../shared/fixtures/korm-ts-1.5")
            });
        let dir = fixtures.join("wal/__korm_wal__/fixtures/e5d9906025b1b75f/done");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let (record, signed) = Record::parse(&bytes, &keys(), true).unwrap();
            assert!(!signed);
            assert_eq!(record.state, RecordState::Done);
            assert_eq!(record.pool_id, "e5d9906025b1b75f");
            assert!(!record.ops.is_empty());
            count += 1;
        }
        assert_eq!(count, 7);
    }

    #[test]
    fn timestamps_are_korm_1_5_s() {
        assert_eq!(iso_of(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_of(1_796_055_238_037), "2026-11-30T16:13:58.037Z");
        assert_eq!(iso_of(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
