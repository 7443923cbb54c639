//! Tampered encrypted fields: a changed ciphertext, tag or nonce, a plain value where an
//! envelope belongs, an unknown key id. Each read fails with a typed error naming the RN and
//! the field, holding no plaintext; never a silent skip.
//!
//! The envelope is JSON on every backend (`ENCRYPTED_JSON` text on SQLite, the
//! `korm_encrypted_json` jsonb domain on PostgreSQL, MariaDB's checked `LONGTEXT`), rewritten
//! through the test's own connection. The in-memory database has no second connection, so
//! nothing tampers with it: there the outcome is that the envelope korm wrote decrypts.

use korm::{Encrypted, Error, Rn, eq};
use serde::{Deserialize, Serialize};

use crate::{Db, Raw, all_text, create, rn};

const SSN: &str = "078-05-1120";

pub(crate) fn install_test_keys() {
    let current = korm::crypto::EncryptionKey::from_hex(&"a1".repeat(32)).expect("fixture key");
    let old = korm::crypto::EncryptionKey::from_hex(&"b2".repeat(32)).expect("old key");
    korm::crypto::install(korm::crypto::KeyRing::new(current).with_old_key(old));
}

#[derive(Debug, Serialize, Deserialize)]
struct User {
    username: String,
    ssn: Encrypted<String>,
}

fn fred() -> User {
    User {
        username: "fred".into(),
        ssn: Encrypted::new(SSN.into()),
    }
}

/// The collection `[rn]:users:{kind}:*` and its table.
fn users(kind: &str) -> (String, String) {
    (
        format!("[rn]:users:{kind}:*"),
        format!("__items__users__{kind}"),
    )
}

/// Flips one hex digit of `field` in the stored envelope of `item`.
async fn flip(raw: &Raw, table: &str, item: &Rn<User>, field: &str) {
    let sql = format!(
        "SELECT {} FROM {} WHERE {} = {}",
        raw.text_of("ssn"),
        raw.t(table),
        raw.q("rnId"),
        raw.p(1)
    );
    let id = item.id().expect("id");
    let text = raw.value(&sql, &[id.into()]).await.expect("read envelope");
    let mut envelope: serde_json::Value = serde_json::from_str(&text).expect("json");
    let hex = envelope[field].as_str().expect("hex field").to_owned();
    let first = if hex.starts_with('0') { "1" } else { "0" };
    envelope[field] = format!("{first}{}", &hex[1..]).into();
    set_ssn(raw, table, item, envelope.to_string()).await;
}

/// Writes `json` (its text) into the encrypted column of `item`.
async fn set_ssn(raw: &Raw, table: &str, item: &Rn<User>, json: String) {
    let sql = format!(
        "UPDATE {} SET {} = {} WHERE {} = {}",
        raw.t(table),
        raw.q("ssn"),
        raw.json_p(1),
        raw.q("rnId"),
        raw.p(2)
    );
    raw.exec(&sql, &[json.into(), item.id().expect("id").into()])
        .await;
}

/// What the in-memory backend shows instead of a tampered envelope: the one korm wrote
/// decrypts.
async fn decrypts(db: &Db, item: &Rn<User>) {
    let loaded = korm::item::<User>(&db.pool)
        .load(item.clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data().ssn.reveal(), SSN);
}

async fn expect_decode_error(db: &Db, collection: &str, item_rn: &str, what: &str) {
    let users = korm::item::<User>(&db.pool);
    let err = users.load(rn(item_rn)).get().await.expect_err(what);
    let text = all_text(&err);
    assert!(matches!(err, Error::Decode { .. }), "{what}: {err:?}");
    assert!(text.contains(item_rn), "{what}: names the rn: {text}");
    assert!(text.contains("ssn"), "{what}: names the field: {text}");
    // The RN's random id may hold "078" itself: only the rest must not.
    let rest = text.replace(item_rn, "");
    assert!(
        !rest.contains(SSN) && !rest.contains("078"),
        "{what}: {text}"
    );
    // A query reads it too and fails the same way, with or without an encrypted filter.
    for filter in [None, Some(eq("ssn", SSN))] {
        let mut query = users.query(rn(collection));
        if let Some(f) = filter {
            query = query.filter(f);
        }
        let err = query.get().await.expect_err(what);
        assert!(matches!(err, Error::Decode { .. }), "{what}: {err:?}");
        assert!(
            !all_text(&err).replace(item_rn, "").contains("078"),
            "{what}"
        );
    }
}

async fn tampered_ciphertext_tag_and_nonce_fail_clearly(db: &Db) {
    install_test_keys();
    for field in ["value", "authTag", "iv"] {
        // Each field tampers with an item of its own collection, which its queries read.
        let (collection, table) = users(&field.to_lowercase());
        let item = create(&db.pool, &collection, fred()).await;
        let Some(raw) = db.raw() else {
            decrypts(db, item.rn()).await;
            continue;
        };
        flip(raw, &table, item.rn(), field).await;
        expect_decode_error(db, &collection, item.rn().as_str(), field).await;
        let err = korm::item::<User>(&db.pool)
            .load(item.rn().clone())
            .get()
            .await
            .expect_err("tampered");
        assert!(err.to_string().contains("authentication failed"), "{err}");
    }
}

async fn a_plain_value_or_an_unknown_key_is_refused(db: &Db) {
    install_test_keys();
    let (collection, table) = users("freetier");
    let item = create(&db.pool, &collection, fred()).await;
    let Some(raw) = db.raw() else {
        return decrypts(db, item.rn()).await;
    };
    let item_rn = item.rn().as_str();
    // The cleartext written where the envelope belongs.
    set_ssn(raw, &table, item.rn(), format!("\"{SSN}\"")).await;
    expect_decode_error(db, &collection, item_rn, "plain value").await;
    // An envelope sealed with a key this process does not have.
    let stranger = korm::crypto::KeyRing::new(korm::crypto::EncryptionKey::generate());
    let sealed = stranger.encrypt(SSN).expect("seal");
    set_ssn(raw, &table, item.rn(), sealed.to_string()).await;
    expect_decode_error(db, &collection, item_rn, "unknown key").await;
    let err = korm::item::<User>(&db.pool)
        .load(item.rn().clone())
        .get()
        .await
        .expect_err("unknown key");
    assert!(
        err.to_string().contains("KORM_ENCRYPTION_KEYS_OLD"),
        "{err}"
    );
    // The same envelope without its key id: every key is tried, none fits.
    let mut anonymous = sealed.clone();
    anonymous.as_object_mut().expect("object").remove("keyId");
    set_ssn(raw, &table, item.rn(), anonymous.to_string()).await;
    expect_decode_error(db, &collection, item_rn, "no key fits").await;
}

/// `Unique<Encrypted<T>>` could not refuse a duplicate (each value is sealed with a fresh
/// nonce): the create is refused, naming the field, and nothing is stored.
async fn unique_around_an_encrypted_field_is_refused(db: &Db) {
    install_test_keys();
    #[derive(Debug, Serialize, Deserialize)]
    struct Member {
        ssn: korm::Unique<Encrypted<String>>,
    }
    let collection = rn::<Member>("[rn]:members:unique:*");
    for _ in 0..2 {
        let err = korm::item::<Member>(&db.pool)
            .from_data(
                collection.clone(),
                Member {
                    ssn: korm::Unique::new(Encrypted::new(SSN.into())),
                },
            )
            .expect("floating")
            .create()
            .await
            .expect_err("a unique encrypted field");
        assert!(
            matches!(&err, Error::Encode { reason, .. } if reason.contains("\"ssn\" is Unique")),
            "{err:?}"
        );
        assert!(!all_text(&err).contains(SSN), "{err}");
    }
    let stored = korm::item::<Member>(&db.pool)
        .query(collection)
        .get()
        .await
        .map(|items| items.len())
        .unwrap_or(0);
    assert_eq!(stored, 0);
}

crate::on_backends!(
    tampered_ciphertext_tag_and_nonce_fail_clearly,
    a_plain_value_or_an_unknown_key_is_refused,
    unique_around_an_encrypted_field_is_refused,
);

#[test]
fn secrets_never_reach_debug_display_or_serialized_output() {
    install_test_keys();
    let user = fred();
    let password = korm::Password::new("yabba-dabba-doo").expect("hash");
    let all = format!(
        "{user:?} {} {password:?} {password} {} {}",
        user.ssn,
        serde_json::to_string(&user).expect("json"),
        serde_json::to_string(&password).expect("json"),
    );
    assert!(!all.contains(SSN) && !all.contains("yabba"), "{all}");
}
