//! The snapshot's JSON: korm 1.5's `PoolMetaConfig`, written and read field for field.
//!
//! ```text
//! {"version":1,"poolId":<16 hex>,"metaLayerIdent":<layer>,
//!  "layers":[{"ident","type":"sqlite"|"pg"|"mysql","fingerprint":<64 hex>,
//!             "config":{"mode":"path","path":…} | {"mode":"url","encrypted":<envelope>}}],
//!  "depots":[{"ident","type":"local"|"s3","fingerprint",
//!             "config":{"mode":"local","root":…} | {"mode":"s3","encrypted":<envelope>}}],
//!  "wal":{"depotIdent","walNamespace","retention":"keep"|"delete","depotOps":"off"|"record"},
//!  "locks":{"layerIdent","ttlMs","retryMs","refreshMs"}}
//! ```
//!
//! - `fingerprint` is SHA-256 (hex) of the canonical JSON (korm 1.5's `stableStringify`:
//!   keys sorted, no spaces) of the config's value: the path, the root or the URL as a JSON
//!   string (`"/data/cardb.sqlite"`, quotes included), the S3 options as an object.
//! - `poolId` is the first 16 hex characters of SHA-256 of
//!   `{"layers":[<idents sorted>],"depots":[<idents sorted>]}`: pools with the same layer
//!   and depot names have the same id, in korm 1.5 and here.
//! - `encrypted` is the encryption envelope of the value's JSON text under the pool's key,
//!   in korm 1.5's field order (`__ENCRYPTED__`, `value`, `type`, `iv`, `authTag`) plus
//!   korm-rs's `keyId` (korm 1.5 ignores it).
//! - `wal`, `locks` and `backups` are absent when the pool has none (korm-rs writes no
//!   `backups` section; one korm 1.5 wrote is kept as it is).
//!
//! Reading never trusts the stored text: a field of the wrong shape is
//! [`Error::MetaInvalid`](crate::Error::MetaInvalid) naming the field, never quoting a
//! stored value.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::crypto::KeyRing;
use crate::depot::DepotSource;
use crate::layer::{LayerSource, ServerKind};
use crate::wal::{WalDepotOps, WalOptions, WalRetention};

/// The snapshot format version korm 1.5 writes and reads.
pub(crate) const VERSION: u64 = 1;

/// SHA-256 (hex) of the canonical JSON of `value`: korm 1.5's `hashValue`.
pub(crate) fn fingerprint(value: &Value) -> String {
    let mut text = Vec::new();
    crate::model::canonical_json(value, &mut text);
    hex::encode(Sha256::digest(&text))
}

/// korm 1.5's pool id: derived from the names of the layers and depots.
pub(crate) fn pool_id<'a>(
    layers: impl IntoIterator<Item = &'a str>,
    depots: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut layers: Vec<&str> = layers.into_iter().collect();
    let mut depots: Vec<&str> = depots.into_iter().collect();
    // JavaScript's default sort (UTF-16 code units): byte order for the ASCII names allowed.
    layers.sort_unstable();
    depots.sort_unstable();
    let seed = json!({ "layers": layers, "depots": depots }).to_string();
    hex::encode(Sha256::digest(seed.as_bytes()))[..16].to_owned()
}

/// A layer's type as the snapshot names it.
pub(crate) fn layer_type(source: &LayerSource) -> &'static str {
    match source {
        LayerSource::Sqlite { .. } => "sqlite",
        LayerSource::Url {
            kind: ServerKind::Pg,
            ..
        } => "pg",
        LayerSource::Url {
            kind: ServerKind::MySql,
            ..
        } => "mysql",
    }
}

/// A depot's type as the snapshot names it.
pub(crate) fn depot_type(source: &DepotSource) -> &'static str {
    match source {
        DepotSource::Local { .. } => "local",
        #[cfg(feature = "s3")]
        DepotSource::S3(_) => "s3",
    }
}

/// The value a layer's fingerprint and envelope are made of. Holds a URL in clear: for
/// hashing and sealing only.
pub(crate) fn layer_value(source: &LayerSource) -> Value {
    use secrecy::ExposeSecret;
    match source {
        LayerSource::Sqlite { path } => Value::String(path.clone()),
        LayerSource::Url { url, .. } => Value::String(url.expose_secret().to_owned()),
    }
}

/// The value a depot's fingerprint and envelope are made of (S3 secrets in clear: for
/// hashing and sealing only).
pub(crate) fn depot_value(source: &DepotSource) -> Value {
    match source {
        DepotSource::Local { root } => Value::String(root.clone()),
        #[cfg(feature = "s3")]
        DepotSource::S3(options) => Value::Object(options.pool_config()),
    }
}

/// The WAL settings as the snapshot holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalEntry {
    pub(crate) depot: String,
    pub(crate) namespace: String,
    pub(crate) retention: String,
    pub(crate) depot_ops: String,
}

impl WalEntry {
    pub(crate) fn new(depot: &str, options: &WalOptions) -> WalEntry {
        WalEntry {
            depot: depot.to_owned(),
            namespace: options.namespace.clone(),
            retention: match options.retention {
                WalRetention::Keep => "keep",
                WalRetention::Delete => "delete",
            }
            .to_owned(),
            depot_ops: match options.depot_ops {
                WalDepotOps::Off => "off",
                WalDepotOps::Record => "record",
            }
            .to_owned(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "depotIdent": self.depot,
            "walNamespace": self.namespace,
            "retention": self.retention,
            "depotOps": self.depot_ops,
        })
    }
}

/// The shared-lock settings as the snapshot holds them (milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocksEntry {
    pub(crate) layer: String,
    pub(crate) ttl_ms: u64,
    pub(crate) retry_ms: u64,
    pub(crate) refresh_ms: u64,
}

impl LocksEntry {
    pub(crate) fn new(layer: &str, options: &crate::LockOptions) -> LocksEntry {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        LocksEntry {
            layer: layer.to_owned(),
            ttl_ms: ms(options.ttl),
            retry_ms: ms(options.retry),
            refresh_ms: ms(options.refresh),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "layerIdent": self.layer,
            "ttlMs": self.ttl_ms,
            "retryMs": self.retry_ms,
            "refreshMs": self.refresh_ms,
        })
    }
}

/// This pool's configuration, as its snapshot describes it.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub(crate) pool_id: String,
    pub(crate) meta_layer: String,
    /// Sorted by name (korm 1.5 sorts them too).
    pub(crate) layers: Vec<(String, LayerSource)>,
    pub(crate) depots: Vec<(String, DepotSource)>,
    pub(crate) wal: Option<WalEntry>,
    pub(crate) locks: Option<LocksEntry>,
    /// A `backups` section carried over by discovery (korm-rs configures none: its schedules
    /// live outside the pool's configuration).
    pub(crate) backups: Option<Value>,
}

impl Current {
    /// Whether the snapshot seals anything (a server URL, S3 options): only then is the
    /// encryption key needed.
    pub(crate) fn seals_anything(&self) -> bool {
        let layers = self
            .layers
            .iter()
            .any(|(_, s)| matches!(s, LayerSource::Url { .. }));
        let depots = self
            .depots
            .iter()
            .any(|(_, s)| !matches!(s, DepotSource::Local { .. }));
        layers || depots
    }

    /// The snapshot's JSON text, secrets sealed with the ring's current key.
    pub(crate) fn to_json(&self, ring: &KeyRing) -> String {
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|(ident, source)| {
                let value = layer_value(source);
                let config = match source {
                    LayerSource::Sqlite { path } => json!({ "mode": "path", "path": path }),
                    LayerSource::Url { .. } => {
                        json!({ "mode": "url", "encrypted": seal(ring, &value) })
                    }
                };
                json!({
                    "ident": ident,
                    "type": layer_type(source),
                    "fingerprint": fingerprint(&value),
                    "config": config,
                })
            })
            .collect();
        let depots: Vec<Value> = self
            .depots
            .iter()
            .map(|(ident, source)| {
                let value = depot_value(source);
                let config = match source {
                    DepotSource::Local { root } => json!({ "mode": "local", "root": root }),
                    #[cfg(feature = "s3")]
                    DepotSource::S3(_) => json!({ "mode": "s3", "encrypted": seal(ring, &value) }),
                };
                json!({
                    "ident": ident,
                    "type": depot_type(source),
                    "fingerprint": fingerprint(&value),
                    "config": config,
                })
            })
            .collect();
        let mut map = Map::new();
        map.insert("version".into(), Value::from(VERSION));
        map.insert("poolId".into(), Value::from(self.pool_id.clone()));
        map.insert(
            "metaLayerIdent".into(),
            Value::from(self.meta_layer.clone()),
        );
        map.insert("layers".into(), Value::Array(layers));
        map.insert("depots".into(), Value::Array(depots));
        if let Some(wal) = &self.wal {
            map.insert("wal".into(), wal.to_json());
        }
        if let Some(locks) = &self.locks {
            map.insert("locks".into(), locks.to_json());
        }
        if let Some(backups) = &self.backups {
            map.insert("backups".into(), backups.clone());
        }
        Value::Object(map).to_string()
    }
}

/// Seals a value's JSON text into korm 1.5's pool envelope (its field order, no
/// `dataType`), plus `keyId`.
fn seal(ring: &KeyRing, value: &Value) -> Value {
    let text = zeroize::Zeroizing::new(value.to_string());
    let sealed = crate::crypto::seal(ring, text.as_bytes());
    let mut out = Map::new();
    for field in [
        crate::crypto::ENVELOPE_MARKER,
        "value",
        "type",
        "iv",
        "authTag",
        crate::crypto::KEY_ID_FIELD,
    ] {
        if let Some(v) = sealed.get(field) {
            out.insert(field.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A layer's or depot's config as stored.
#[derive(Debug, Clone)]
pub(crate) enum StoredConfig {
    /// `{"mode":"path","path":…}` (a SQLite layer).
    Path(String),
    /// `{"mode":"local","root":…}` (a local depot).
    Root(String),
    /// `{"mode":"url"|"options"|"s3","encrypted":…}`: a sealed value, opened on demand.
    Sealed {
        /// The mode (`url`, `options`, `s3`).
        mode: String,
        /// The envelope.
        envelope: Value,
    },
}

/// A layer or depot as stored.
#[derive(Debug, Clone)]
pub(crate) struct StoredEntry {
    pub(crate) ident: String,
    pub(crate) kind: String,
    pub(crate) fingerprint: String,
    pub(crate) config: StoredConfig,
}

/// A snapshot as read back. Fields korm does not know are ignored.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) pool_id: String,
    pub(crate) meta_layer: Option<String>,
    pub(crate) layers: Vec<StoredEntry>,
    pub(crate) depots: Vec<StoredEntry>,
    pub(crate) wal: Option<WalEntry>,
    pub(crate) locks: Option<LocksEntry>,
    pub(crate) backups: Option<Value>,
}

/// Why a stored snapshot can not be read (names a field, never quotes a value).
pub(crate) type Invalid = String;

impl Stored {
    /// Parses the snapshot's JSON text: an object, or (PostgreSQL, as korm 1.5's driver
    /// stores it) a JSON string holding the object's text.
    pub(crate) fn parse(text: &str) -> Result<Stored, Invalid> {
        let not_json = |e: serde_json::Error| {
            format!(
                "the config is not JSON (syntax error at line {}, column {})",
                e.line(),
                e.column()
            )
        };
        let mut value: Value = serde_json::from_str(text).map_err(not_json)?;
        if let Value::String(inner) = &value {
            value = serde_json::from_str(inner).map_err(not_json)?;
        }
        let root = value
            .as_object()
            .ok_or_else(|| "the config is not a JSON object".to_owned())?;
        let version = match root.get("version") {
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| "version is not a number".to_owned())?,
            None => return Err("version is missing".to_owned()),
        };
        if version != VERSION {
            return Err(format!(
                "version {version} is not supported (korm reads version {VERSION})"
            ));
        }
        let pool_id = text_field(root, "poolId", "")?.ok_or("poolId is missing")?;
        let meta_layer = text_field(root, "metaLayerIdent", "")?;
        let layers = entries(root, "layers")?;
        let depots = entries(root, "depots")?;
        let wal = match root.get("wal") {
            None | Some(Value::Null) => None,
            Some(Value::Object(w)) => Some(WalEntry {
                depot: required(w, "depotIdent", "wal.")?,
                namespace: required(w, "walNamespace", "wal.")?,
                retention: required(w, "retention", "wal.")?,
                depot_ops: required(w, "depotOps", "wal.")?,
            }),
            Some(_) => return Err("wal is not an object".to_owned()),
        };
        let locks = match root.get("locks") {
            None | Some(Value::Null) => None,
            Some(Value::Object(l)) => Some(LocksEntry {
                layer: required(l, "layerIdent", "locks.")?,
                ttl_ms: millis(l, "ttlMs")?,
                retry_ms: millis(l, "retryMs")?,
                refresh_ms: millis(l, "refreshMs")?,
            }),
            Some(_) => return Err("locks is not an object".to_owned()),
        };
        let backups = match root.get("backups") {
            None | Some(Value::Null) => None,
            Some(b) => Some(b.clone()),
        };
        Ok(Stored {
            pool_id,
            meta_layer,
            layers,
            depots,
            wal,
            locks,
            backups,
        })
    }

    /// Checks that each layer's and depot's config matches its fingerprint (a path or root
    /// always; a sealed config when it opens with `ring`: the key is not needed to open a
    /// pool, so one that does not open is left to the comparison). A config that does not
    /// match was altered after korm wrote it.
    pub(crate) fn verify(&self, ring: &KeyRing) -> Result<(), Invalid> {
        let entries = self
            .layers
            .iter()
            .map(|e| ("layer", e))
            .chain(self.depots.iter().map(|e| ("depot", e)));
        for (noun, entry) in entries {
            let value = match &entry.config {
                StoredConfig::Path(path) | StoredConfig::Root(path) => {
                    Some(Value::String(path.clone()))
                }
                StoredConfig::Sealed { envelope, .. } => {
                    crate::crypto::open_value(ring, envelope).ok()
                }
            };
            if value.is_some_and(|v| fingerprint(&v) != entry.fingerprint) {
                return Err(altered(noun, &entry.ident));
            }
        }
        Ok(())
    }

    /// Whether a sealed config is not sealed with the ring's current key (korm 1.5 wrote it,
    /// or the key was rotated since): the snapshot is then written again. Only when the ring
    /// opens every sealed config: a process without the sealing key (another key, or a
    /// temporary one outside production) would otherwise seal the shared snapshot under a
    /// key the other processes do not hold.
    pub(crate) fn needs_reseal(&self, ring: &KeyRing) -> bool {
        let sealed: Vec<&Value> = self
            .layers
            .iter()
            .chain(&self.depots)
            .filter_map(|entry| match &entry.config {
                StoredConfig::Sealed { envelope, .. } => Some(envelope),
                _ => None,
            })
            .collect();
        sealed.iter().any(|envelope| {
            envelope
                .get(crate::crypto::KEY_ID_FIELD)
                .and_then(Value::as_str)
                != Some(ring.current_key_id())
        }) && sealed
            .iter()
            .all(|envelope| crate::crypto::open_value(ring, envelope).is_ok())
    }
}

/// The message for a config that does not match its fingerprint.
pub(crate) fn altered(noun: &str, ident: &str) -> Invalid {
    format!(
        "the config of {noun} {:?} does not match its fingerprint: the snapshot was altered",
        crate::error::clip(ident)
    )
}

fn text_field(map: &Map<String, Value>, field: &str, at: &str) -> Result<Option<String>, Invalid> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{at}{field} is not a string")),
    }
}

fn required(map: &Map<String, Value>, field: &str, at: &str) -> Result<String, Invalid> {
    text_field(map, field, at)?.ok_or_else(|| format!("{at}{field} is missing"))
}

fn millis(map: &Map<String, Value>, field: &str) -> Result<u64, Invalid> {
    let v = map
        .get(field)
        .ok_or_else(|| format!("locks.{field} is missing"))?;
    v.as_u64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15)
                .map(|f| f as u64)
        })
        .ok_or_else(|| format!("locks.{field} is not a whole number of milliseconds"))
}

fn entries(root: &Map<String, Value>, field: &str) -> Result<Vec<StoredEntry>, Invalid> {
    let list = match root.get(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(format!("{field} is not an array")),
    };
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            let at = format!("{field}[{i}].");
            let entry = entry
                .as_object()
                .ok_or_else(|| format!("{field}[{i}] is not an object"))?;
            let config = entry
                .get("config")
                .and_then(Value::as_object)
                .ok_or_else(|| format!("{at}config is missing or not an object"))?;
            let at_config = format!("{at}config.");
            let mode = required(config, "mode", &at_config)?;
            let config = match mode.as_str() {
                "path" => StoredConfig::Path(required(config, "path", &at_config)?),
                "local" => StoredConfig::Root(required(config, "root", &at_config)?),
                "url" | "options" | "s3" => StoredConfig::Sealed {
                    envelope: config
                        .get("encrypted")
                        .filter(|e| e.is_object())
                        .cloned()
                        .ok_or_else(|| {
                            format!("{at_config}encrypted is missing or not an object")
                        })?,
                    mode,
                },
                _ => {
                    return Err(format!(
                        "{at_config}mode is none of path, url, options, local, s3"
                    ));
                }
            };
            Ok(StoredEntry {
                ident: required(entry, "ident", &at)?,
                kind: required(entry, "type", &at)?,
                fingerprint: required(entry, "fingerprint", &at)?,
                config,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `__korm_pool__` config of `fixtures/korm-ts-1.5/cardb.sqlite`.
    const CARDB: &str = r#"{"version":1,"poolId":"e5d9906025b1b75f","metaLayerIdent":"cardb","layers":[{"ident":"cardb","type":"sqlite","fingerprint":"eb44e5952b8ee8fc1d77caa6b2cc50b61611041869e67509fe1f0bcd15a98a61","config":{"mode":"path","path":"/data/korm-fixtures/cardb.sqlite"}}],"depots":[{"ident":"backups","type":"local","fingerprint":"2c36957960d1cf7a7951b99a273391ec23e774e2aef0407e98d77b4588386364","config":{"mode":"local","root":"/data/korm-fixtures/backups"}},{"ident":"files","type":"local","fingerprint":"51561fe96da00ffc4062dc2a09f8f5e2997b48aa605682e582a19bd5f9f858eb","config":{"mode":"local","root":"/data/korm-fixtures/files"}},{"ident":"wal","type":"local","fingerprint":"6946836bffa6b820b5812bd17030245bb9812ad4d40cc50007ad1ea687a8cd7d","config":{"mode":"local","root":"/data/korm-fixtures/wal"}}],"wal":{"depotIdent":"wal","walNamespace":"fixtures","retention":"keep","depotOps":"record"},"locks":{"layerIdent":"cardb","ttlMs":60000,"retryMs":50,"refreshMs":30000}}"#;

    fn fixture_ring() -> KeyRing {
        KeyRing::new(crate::crypto::EncryptionKey::from_hex(&"a1".repeat(32)).unwrap())
    }

    #[test]
    fn fingerprints_and_pool_ids_are_korm_1_5s() {
        // Found by reading korm 1.5's poolMeta.ts: SHA-256 of stableStringify(path).
        assert_eq!(
            fingerprint(&json!("/data/korm-fixtures/cardb.sqlite")),
            "eb44e5952b8ee8fc1d77caa6b2cc50b61611041869e67509fe1f0bcd15a98a61"
        );
        assert_eq!(
            fingerprint(&json!("/data/korm-fixtures/files")),
            "51561fe96da00ffc4062dc2a09f8f5e2997b48aa605682e582a19bd5f9f858eb"
        );
        // postgres.sql's two server layers, their urls decrypted with the fixture key.
        assert_eq!(
            fingerprint(&json!("postgres://postgres@127.0.0.1:5432/kormfx")),
            "0e09356365d695f3a4708a21873e3876da7f2fb6e169d44e5d5edc396008145c"
        );
        assert_eq!(
            fingerprint(&json!("mysql://root@127.0.0.1:3306/kormfx")),
            "69cdcce48bac29faa2c18cc90df5288920113d7120e535d662aa5988409a4559"
        );
        assert_eq!(
            pool_id(["cardb"], ["wal", "files", "backups"]),
            "e5d9906025b1b75f"
        );
        assert_eq!(pool_id(["userdb", "docsdb"], []), "5650645e09047517");
        // Object keys in any order hash alike.
        assert_eq!(
            fingerprint(&json!({"b": 1, "a": [true, null]})),
            fingerprint(&json!({"a": [true, null], "b": 1}))
        );
    }

    #[test]
    fn the_cardb_fixture_snapshot_reads_and_writes_back_byte_for_byte() {
        let stored = Stored::parse(CARDB).expect("parses");
        assert_eq!(stored.pool_id, "e5d9906025b1b75f");
        assert_eq!(stored.meta_layer.as_deref(), Some("cardb"));
        assert_eq!(stored.layers.len(), 1);
        assert_eq!(stored.depots.len(), 3);
        assert_eq!(
            stored.wal.as_ref().map(|w| w.retention.as_str()),
            Some("keep")
        );
        assert_eq!(stored.locks.as_ref().map(|l| l.refresh_ms), Some(30_000));
        // The same pool described by korm-rs writes the same text (nothing is sealed).
        let current = Current {
            pool_id: pool_id(["cardb"], ["backups", "files", "wal"]),
            meta_layer: "cardb".into(),
            layers: vec![(
                "cardb".into(),
                LayerSource::Sqlite {
                    path: "/data/korm-fixtures/cardb.sqlite".into(),
                },
            )],
            depots: ["backups", "files", "wal"]
                .map(|d| {
                    (
                        d.to_owned(),
                        DepotSource::Local {
                            root: format!("/data/korm-fixtures/{d}"),
                        },
                    )
                })
                .into(),
            wal: Some(WalEntry::new(
                "wal",
                &WalOptions::new("fixtures")
                    .with_retention(WalRetention::Keep)
                    .with_depot_ops(WalDepotOps::Record),
            )),
            locks: Some(LocksEntry::new("cardb", &crate::LockOptions::new())),
            backups: None,
        };
        assert_eq!(current.to_json(&fixture_ring()), CARDB);
    }

    #[test]
    fn a_postgres_jsonb_string_is_unwrapped() {
        let wrapped = Value::String(CARDB.to_owned()).to_string();
        assert_eq!(
            Stored::parse(&wrapped).expect("parses").pool_id,
            "e5d9906025b1b75f"
        );
    }

    #[test]
    fn malformed_snapshots_name_the_field_never_the_value() {
        let cases = [
            ("not json s3cret", "not JSON"),
            ("[1]", "not a JSON object"),
            (
                r#"{"version":2,"poolId":"x"}"#,
                "version 2 is not supported",
            ),
            (r#"{"poolId":"x"}"#, "version is missing"),
            (
                r#"{"version":1,"poolId":"x","layers":{}}"#,
                "layers is not an array",
            ),
            (
                r#"{"version":1,"poolId":"x","layers":[{"ident":"a","type":"pg","fingerprint":"f","config":{"mode":"url","encrypted":"postgres://u:s3cret@h/d"}}]}"#,
                "layers[0].config.encrypted is missing or not an object",
            ),
            (
                r#"{"version":1,"poolId":"x","layers":[{"ident":"a","type":"sqlite","fingerprint":"f","config":{"mode":"s3cret"}}]}"#,
                "layers[0].config.mode is none of",
            ),
            (
                r#"{"version":1,"poolId":"x","locks":{"layerIdent":"a","ttlMs":"s3cret","retryMs":1,"refreshMs":1}}"#,
                "locks.ttlMs is not a whole number",
            ),
        ];
        for (text, expected) in cases {
            let err = Stored::parse(text).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn sealed_configs_are_korm_1_5s_envelope_and_open_again() {
        let ring = fixture_ring();
        let current = Current {
            pool_id: pool_id(["userdb"], []),
            meta_layer: "userdb".into(),
            layers: vec![(
                "userdb".into(),
                LayerSource::Url {
                    kind: ServerKind::Pg,
                    url: "postgres://korm:s3cret@db/app".to_owned().into(),
                },
            )],
            depots: Vec::new(),
            wal: None,
            locks: None,
            backups: None,
        };
        let text = current.to_json(&ring);
        assert!(!text.contains("s3cret"), "{text}");
        let stored = Stored::parse(&text).expect("parses");
        let StoredConfig::Sealed { mode, envelope } = &stored.layers[0].config else {
            panic!("sealed");
        };
        assert_eq!(mode, "url");
        let fields: Vec<&str> = envelope
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            ["__ENCRYPTED__", "value", "type", "iv", "authTag", "keyId"]
        );
        let opened = crate::crypto::open_value(&ring, envelope).expect("opens");
        assert_eq!(opened, json!("postgres://korm:s3cret@db/app"));
        assert_eq!(stored.layers[0].fingerprint, fingerprint(&opened));
        assert!(!stored.needs_reseal(&ring));
        // A rotated ring (the sealing key kept as an old one) seals it again; a ring that
        // can not open it leaves it as it is.
        let rotated = KeyRing::new(crate::crypto::EncryptionKey::generate())
            .with_old_key(crate::crypto::EncryptionKey::from_hex(&"a1".repeat(32)).unwrap());
        assert!(stored.needs_reseal(&rotated));
        let other = KeyRing::new(crate::crypto::EncryptionKey::generate());
        assert!(!stored.needs_reseal(&other));
    }
}
