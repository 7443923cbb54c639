//! Tampered encrypted fields: a changed ciphertext, tag or nonce, a plain value where an
//! envelope belongs, an unknown key id. Each read fails with a typed error naming the RN and
//! the field, holding no plaintext; never a silent skip.

use korm::{Encrypted, Error, eq};
use serde::{Deserialize, Serialize};

use super::{USERS, USERS_TABLE, all_text, create, file_db, rn};

const SSN: &str = "078-05-1120";

fn install_test_keys() {
    let current = korm::crypto::EncryptionKey::from_hex(&"a1".repeat(32)).expect("fixture key");
    let old = korm::crypto::EncryptionKey::from_hex(&"b2".repeat(32)).expect("old key");
    korm::crypto::install(korm::crypto::KeyRing::new(current).with_old_key(old));
}

#[derive(Debug, Serialize, Deserialize)]
struct User {
    username: String,
    ssn: Encrypted<String>,
}

/// Flips one hex digit of `field` in the stored envelope of `id`.
fn flip(db: &super::Db, id: &str, field: &str) {
    let conn = db.sql();
    let text: String = conn
        .query_row(
            &format!("SELECT ssn FROM {USERS_TABLE} WHERE rnId = ?1"),
            [id],
            |r| r.get(0),
        )
        .expect("read envelope");
    let mut envelope: serde_json::Value = serde_json::from_str(&text).expect("json");
    let hex = envelope[field].as_str().expect("hex field").to_owned();
    let first = if hex.starts_with('0') { "1" } else { "0" };
    envelope[field] = format!("{first}{}", &hex[1..]).into();
    db.exec(
        &format!("UPDATE {USERS_TABLE} SET ssn = ?1 WHERE rnId = ?2"),
        [envelope.to_string(), id.to_owned()],
    );
}

async fn expect_decode_error(db: &super::Db, item_rn: &str, what: &str) {
    let users = korm::item::<User>(&db.pool);
    let err = users.load(rn(item_rn)).get().await.expect_err(what);
    let text = all_text(&err);
    assert!(matches!(err, Error::Decode { .. }), "{what}: {err:?}");
    assert!(text.contains(item_rn), "{what}: names the rn: {text}");
    assert!(text.contains("ssn"), "{what}: names the field: {text}");
    assert!(
        !text.contains(SSN) && !text.contains("078"),
        "{what}: {text}"
    );
    // A query reads it too and fails the same way, with or without an encrypted filter.
    for filter in [None, Some(eq("ssn", SSN))] {
        let mut query = users.query(rn(USERS));
        if let Some(f) = filter {
            query = query.filter(f);
        }
        let err = query.get().await.expect_err(what);
        assert!(matches!(err, Error::Decode { .. }), "{what}: {err:?}");
        assert!(!all_text(&err).contains("078"), "{what}");
    }
}

#[tokio::test]
async fn tampered_ciphertext_tag_and_nonce_fail_clearly() {
    install_test_keys();
    for field in ["value", "authTag", "iv"] {
        let db = file_db().await;
        let item = create(
            &db.pool,
            USERS,
            User {
                username: "fred".into(),
                ssn: Encrypted::new(SSN.into()),
            },
        )
        .await;
        let id = item.rn().id().expect("id").to_owned();
        flip(&db, &id, field);
        expect_decode_error(&db, item.rn().as_str(), field).await;
        let err = korm::item::<User>(&db.pool)
            .load(item.rn().clone())
            .get()
            .await
            .expect_err("tampered");
        assert!(err.to_string().contains("authentication failed"), "{err}");
        db.pool.close().await;
    }
}

#[tokio::test]
async fn a_plain_value_or_an_unknown_key_is_refused() {
    install_test_keys();
    let db = file_db().await;
    let item = create(
        &db.pool,
        USERS,
        User {
            username: "fred".into(),
            ssn: Encrypted::new(SSN.into()),
        },
    )
    .await;
    let id = item.rn().id().expect("id").to_owned();
    // The cleartext written where the envelope belongs.
    db.exec(
        &format!("UPDATE {USERS_TABLE} SET ssn = ?1 WHERE rnId = ?2"),
        [format!("\"{SSN}\""), id.clone()],
    );
    expect_decode_error(&db, item.rn().as_str(), "plain value").await;
    // An envelope sealed with a key this process does not have.
    let stranger = korm::crypto::KeyRing::new(korm::crypto::EncryptionKey::generate());
    let sealed = stranger.encrypt(SSN).expect("seal");
    db.exec(
        &format!("UPDATE {USERS_TABLE} SET ssn = ?1 WHERE rnId = ?2"),
        [sealed.to_string(), id.clone()],
    );
    expect_decode_error(&db, item.rn().as_str(), "unknown key").await;
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
    db.exec(
        &format!("UPDATE {USERS_TABLE} SET ssn = ?1 WHERE rnId = ?2"),
        [anonymous.to_string(), id],
    );
    expect_decode_error(&db, item.rn().as_str(), "no key fits").await;
    db.pool.close().await;
}

#[test]
fn secrets_never_reach_debug_display_or_serialized_output() {
    install_test_keys();
    let user = User {
        username: "fred".into(),
        ssn: Encrypted::new(SSN.into()),
    };
    let password = korm::Password::new("yabba-dabba-doo").expect("hash");
    let all = format!(
        "{user:?} {} {password:?} {password} {} {}",
        user.ssn,
        serde_json::to_string(&user).expect("json"),
        serde_json::to_string(&password).expect("json"),
    );
    assert!(!all.contains(SSN) && !all.contains("yabba"), "{all}");
}
