//! `korm generate-encryption-key`, run as a user runs it.

use std::process::Command;

fn generate() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_korm"))
        .arg("generate-encryption-key")
        .output()
        .expect("run korm");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn generate_encryption_key_prints_a_fresh_usable_key() {
    let (a, b) = (generate(), generate());
    let key = a.trim_end();
    assert_eq!(key.len(), 64, "{a:?}");
    assert!(
        key.bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert!(korm::crypto::EncryptionKey::from_hex(key).is_ok());
    assert_ne!(a, b, "each key is fresh");
}
