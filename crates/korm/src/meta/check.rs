//! Comparing this pool's configuration with a stored snapshot, as korm 1.5 compares them.
//!
//! A layer or depot is the same when its fingerprint is (korm 1.5's rule: SHA-256 of its
//! canonical config, so the same path, root, URL or S3 options). Only when they differ is
//! the stored config read to say *what* differs: a path or a root is shown (korm 1.5 shows
//! them too; they are not secrets), a sealed URL or S3 options are opened and compared part
//! by part, and only the parts' names are given (`host`, `password`, `secretAccessKey`),
//! never their values. A stored config that does not open with this key ring still differs;
//! the message then says its parts can not be named.

use serde_json::Value;

use super::snapshot::{
    Current, Stored, StoredConfig, StoredEntry, depot_type, depot_value, fingerprint, layer_type,
    layer_value,
};
use crate::crypto::KeyRing;
use crate::depot::DepotSource;
use crate::error::clip;
use crate::layer::LayerSource;

/// Every difference between this pool and the stored snapshot, one line each, in korm 1.5's
/// order: pool id, meta layer, layers, depots, WAL, locks, backups.
pub(crate) fn differences(current: &Current, stored: &Stored, ring: &KeyRing) -> Vec<String> {
    let mut out = Vec::new();
    if stored.pool_id != current.pool_id {
        out.push(format!(
            "pool id: {} here, {} in the stored pool (it has other layer or depot names)",
            current.pool_id,
            clip(&stored.pool_id)
        ));
    }
    match &stored.meta_layer {
        Some(layer) if *layer == current.meta_layer => {}
        Some(layer) => out.push(format!(
            "meta layer: {:?} here, {:?} in the stored pool",
            current.meta_layer,
            clip(layer)
        )),
        None => out.push(format!(
            "meta layer: {:?} here, none in the stored pool",
            current.meta_layer
        )),
    }
    entries(
        "layer",
        current.layers.iter().map(|(ident, source)| {
            let value = layer_value(source);
            Describe {
                ident,
                kind: layer_type(source),
                fingerprint: fingerprint(&value),
                shown: match source {
                    LayerSource::Sqlite { path } => Shown::Path("path", path),
                    LayerSource::Url { .. } => Shown::Sealed(value),
                },
            }
        }),
        &stored.layers,
        ring,
        &mut out,
    );
    entries(
        "depot",
        current.depots.iter().map(|(ident, source)| {
            let value = depot_value(source);
            Describe {
                ident,
                kind: depot_type(source),
                fingerprint: fingerprint(&value),
                shown: match source {
                    DepotSource::Local { root } => Shown::Path("root", root),
                    #[cfg(feature = "s3")]
                    DepotSource::S3(_) => Shown::Sealed(value),
                },
            }
        }),
        &stored.depots,
        ring,
        &mut out,
    );
    match (&current.wal, &stored.wal) {
        (None, None) => {}
        (Some(_), None) => out.push("wal: configured here, not in the stored pool".to_owned()),
        (None, Some(wal)) => out.push(format!(
            "wal: in the stored pool (depot {:?}), not configured here",
            clip(&wal.depot)
        )),
        (Some(here), Some(there)) => {
            for (what, a, b) in [
                ("depot", &here.depot, &there.depot),
                ("namespace", &here.namespace, &there.namespace),
                ("retention", &here.retention, &there.retention),
                ("depot ops", &here.depot_ops, &there.depot_ops),
            ] {
                if a != b {
                    out.push(format!(
                        "wal {what}: {a:?} here, {:?} in the stored pool",
                        clip(b)
                    ));
                }
            }
        }
    }
    match (&current.locks, &stored.locks) {
        (None, None) => {}
        (Some(_), None) => {
            out.push("shared locks: configured here, not in the stored pool".to_owned());
        }
        (None, Some(locks)) => out.push(format!(
            "shared locks: in the stored pool (layer {:?}), not configured here",
            clip(&locks.layer)
        )),
        (Some(here), Some(there)) => {
            if here.layer != there.layer {
                out.push(format!(
                    "shared locks layer: {:?} here, {:?} in the stored pool",
                    here.layer,
                    clip(&there.layer)
                ));
            }
            for (what, a, b) in [
                ("ttl", here.ttl_ms, there.ttl_ms),
                ("retry", here.retry_ms, there.retry_ms),
                ("refresh", here.refresh_ms, there.refresh_ms),
            ] {
                if a != b {
                    out.push(format!(
                        "shared locks {what}: {a} ms here, {b} ms in the stored pool"
                    ));
                }
            }
        }
    }
    let canonical = |v: &Option<Value>| {
        v.as_ref().map(|v| {
            let mut text = Vec::new();
            crate::model::canonical_json(v, &mut text);
            text
        })
    };
    // korm-rs schedules backups outside the pool's configuration (`backup::schedule`), so a
    // pool configures no `backups` section: korm 1.5's is kept as it is, not a difference.
    if current.backups.is_some() && canonical(&current.backups) != canonical(&stored.backups) {
        out.push("backups: the schedules differ".to_owned());
    }
    out
}

/// How a configured entry is shown when it differs.
enum Shown<'a> {
    /// A path or root, shown (`what` names it).
    Path(&'static str, &'a str),
    /// A sealed value (in clear here): only its differing parts are named.
    Sealed(Value),
}

struct Describe<'a> {
    ident: &'a str,
    kind: &'static str,
    fingerprint: String,
    shown: Shown<'a>,
}

fn entries<'a>(
    noun: &str,
    current: impl Iterator<Item = Describe<'a>>,
    stored: &[StoredEntry],
    ring: &KeyRing,
    out: &mut Vec<String>,
) {
    let mut seen = Vec::new();
    for here in current {
        seen.push(here.ident);
        let Some(there) = stored.iter().find(|s| s.ident == here.ident) else {
            out.push(format!(
                "{noun} {:?}: in this pool, not in the stored one",
                here.ident
            ));
            continue;
        };
        if there.kind != here.kind {
            out.push(format!(
                "{noun} {:?}: {} here, {} in the stored pool",
                here.ident,
                here.kind,
                clip(&there.kind)
            ));
            continue;
        }
        if there.fingerprint == here.fingerprint {
            continue;
        }
        out.push(match (&here.shown, &there.config) {
            (Shown::Path(what, path), StoredConfig::Path(other) | StoredConfig::Root(other)) => {
                if path == other {
                    format!(
                        "{noun} {:?}: its stored fingerprint does not match its stored {what} \
                         (the snapshot was altered)",
                        here.ident
                    )
                } else {
                    format!(
                        "{noun} {:?}: {what} {:?} here, {:?} in the stored pool",
                        here.ident,
                        clip(path),
                        clip(other)
                    )
                }
            }
            (Shown::Sealed(value), StoredConfig::Sealed { mode, envelope }) => {
                match crate::crypto::open_value(ring, envelope) {
                    Ok(stored_value) => {
                        let parts = differing_parts(value, &stored_value, mode);
                        if parts.is_empty() {
                            format!(
                                "{noun} {:?}: its stored fingerprint does not match its stored \
                                 config (the snapshot was altered)",
                                here.ident
                            )
                        } else {
                            format!(
                                "{noun} {:?}: {} ({})",
                                here.ident,
                                differ(value),
                                parts.join(", ")
                            )
                        }
                    }
                    Err(e) => format!(
                        "{noun} {:?}: {} (the stored one does not decrypt with this key ring, \
                         so the differing parts can not be named: {e})",
                        here.ident,
                        differ(value)
                    ),
                }
            }
            _ => format!(
                "{noun} {:?}: the config differs (stored in another form)",
                here.ident
            ),
        });
    }
    for there in stored {
        if !seen.contains(&there.ident.as_str()) {
            out.push(format!(
                "{noun} {:?}: in the stored pool, not in this one",
                clip(&there.ident)
            ));
        }
    }
}

fn differ(value: &Value) -> &'static str {
    if value.is_string() {
        "the url differs"
    } else {
        "the options differ"
    }
}

/// The names of the parts in which two configs differ: URL parts (`scheme`, `user`,
/// `password`, `host`, `port`, `database`, query parameter names) or option names. Never a
/// value.
fn differing_parts(here: &Value, there: &Value, mode: &str) -> Vec<String> {
    match (here, there) {
        (Value::String(a), Value::String(b)) => url_parts(a, b),
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .map(|k| {
                    // Option names are korm's or korm 1.5's; anything else is not shown.
                    if k.len() <= 32 && k.bytes().all(|c| c.is_ascii_alphanumeric()) {
                        k.clone()
                    } else {
                        "an option".to_owned()
                    }
                })
                .collect()
        }
        _ => vec![format!("its form ({mode})")],
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn url_parts(a: &str, b: &str) -> Vec<String> {
    let (Ok(a), Ok(b)) = (url::Url::parse(a), url::Url::parse(b)) else {
        return if a == b {
            Vec::new()
        } else {
            vec!["url".to_owned()]
        };
    };
    let mut parts = Vec::new();
    let checks: [(&str, bool); 6] = [
        ("scheme", a.scheme() != b.scheme()),
        ("user", a.username() != b.username()),
        ("password", a.password() != b.password()),
        ("host", a.host_str() != b.host_str()),
        ("port", a.port() != b.port()),
        ("database", a.path() != b.path()),
    ];
    parts.extend(
        checks
            .iter()
            .filter(|(_, differs)| *differs)
            .map(|(p, _)| (*p).to_owned()),
    );
    let query = |u: &url::Url| {
        let mut pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.sort();
        pairs
    };
    let (qa, qb) = (query(&a), query(&b));
    if qa != qb {
        let mut names: Vec<String> = qa
            .iter()
            .chain(&qb)
            .filter(|pair| !(qa.contains(pair) && qb.contains(pair)))
            .map(|(k, _)| {
                if k.len() <= 32 && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    format!("query parameter {k}")
                } else {
                    "a query parameter".to_owned()
                }
            })
            .collect();
        names.sort();
        names.dedup();
        parts.extend(names);
    }
    if parts.is_empty() && a != b {
        parts.push("url".to_owned());
    }
    parts
}

#[cfg(not(any(feature = "postgres", feature = "mysql")))]
fn url_parts(a: &str, b: &str) -> Vec<String> {
    if a == b {
        Vec::new()
    } else {
        vec!["url".to_owned()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::snapshot::{LocksEntry, WalEntry, pool_id};
    use crate::wal::WalOptions;

    fn ring() -> KeyRing {
        KeyRing::new(crate::crypto::EncryptionKey::from_hex(&"a1".repeat(32)).unwrap())
    }

    fn pool(url: &str, path: &str) -> Current {
        Current {
            pool_id: pool_id(["cardb", "userdb"], ["files"]),
            meta_layer: "cardb".into(),
            layers: vec![
                ("cardb".into(), LayerSource::Sqlite { path: path.into() }),
                (
                    "userdb".into(),
                    LayerSource::Url {
                        kind: crate::layer::ServerKind::Pg,
                        url: url.to_owned().into(),
                    },
                ),
            ],
            depots: vec![("files".into(), DepotSource::Local { root: "/f".into() })],
            wal: Some(WalEntry::new("files", &WalOptions::new("orders"))),
            locks: Some(LocksEntry::new("cardb", &crate::LockOptions::new())),
            backups: None,
        }
    }

    #[test]
    fn the_same_pool_matches_whatever_nonces_sealed_it() {
        let here = pool("postgres://korm:s3cret@db:5432/app", "/a.sqlite");
        let stored = Stored::parse(&here.to_json(&ring())).unwrap();
        assert_eq!(differences(&here, &stored, &ring()), Vec::<String>::new());
    }

    #[test]
    fn differences_are_named_without_secrets() {
        let ring = ring();
        let stored = pool("postgres://korm:s3cret@db:5432/app", "/a.sqlite");
        let stored = Stored::parse(&stored.to_json(&ring)).unwrap();
        let mut here = pool("postgres://korm:other-s3cret@db2:5432/app", "/b.sqlite");
        here.wal = None;
        here.locks.as_mut().unwrap().ttl_ms = 10_000;
        here.depots.clear();
        here.pool_id = pool_id(["cardb", "userdb"], []);
        let found = differences(&here, &stored, &ring);
        let text = found.join("\n");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("pool id:"), "{text}");
        assert!(
            text.contains(
                r#"layer "cardb": path "/b.sqlite" here, "/a.sqlite" in the stored pool"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"layer "userdb": the url differs (password, host)"#),
            "{text}"
        );
        assert!(
            text.contains(r#"depot "files": in the stored pool, not in this one"#),
            "{text}"
        );
        assert!(
            text.contains(r#"wal: in the stored pool (depot "files"), not configured here"#),
            "{text}"
        );
        assert!(
            text.contains("shared locks ttl: 10000 ms here, 60000 ms in the stored pool"),
            "{text}"
        );
    }

    #[test]
    fn a_url_sealed_with_another_key_still_differs_without_its_parts() {
        let other = KeyRing::new(crate::crypto::EncryptionKey::generate());
        let stored = pool("postgres://korm:s3cret@db:5432/app", "/a.sqlite");
        let stored = Stored::parse(&stored.to_json(&other)).unwrap();
        let here = pool("postgres://korm:s3cret@db:5432/other", "/a.sqlite");
        let found = differences(&here, &stored, &ring()).join("\n");
        assert!(
            found.contains("does not decrypt with this key ring"),
            "{found}"
        );
        assert!(!found.contains("s3cret"), "{found}");
        // The same url matches by fingerprint, with no key needed.
        let same = pool("postgres://korm:s3cret@db:5432/app", "/a.sqlite");
        assert!(differences(&same, &stored, &ring()).is_empty());
    }

    #[test]
    fn a_fingerprint_that_does_not_match_its_config_is_called_altered() {
        let here = pool("postgres://korm:s3cret@db:5432/app", "/a.sqlite");
        let mut stored = Stored::parse(&here.to_json(&ring())).unwrap();
        stored.layers[0].fingerprint = "0".repeat(64);
        stored.layers[1].fingerprint = "0".repeat(64);
        let found = differences(&here, &stored, &ring()).join("\n");
        assert!(
            found.contains(
                r#"layer "cardb": its stored fingerprint does not match its stored path"#
            ),
            "{found}"
        );
        assert!(
            found.contains(r#"layer "userdb": its stored fingerprint does not match"#),
            "{found}"
        );
    }
}
