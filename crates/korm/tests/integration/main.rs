//! Integration tests: korm against real SQLite files, korm 1.5's fixtures, other connections
//! and processes holding the database, and pools of several layers.

mod compat;
mod concurrency;
mod crypto;
mod locks;
mod mysql;
mod postgres;
mod references;
mod routing;
#[path = "../support/mod.rs"]
mod support;

/// The fixtures korm 1.5 wrote (`../shared/fixtures/korm-ts-1.5`, beside the repository),
/// or `KORM_FIXTURES` when set.
pub fn fixtures() -> std::path::PathBuf {
    let dir = std::env::var_os("KORM_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/fixtures/korm-ts-1.5")
        });
    assert!(
        dir.join("manifest.json").exists(),
        "korm 1.5 fixtures not found at {} (they live in ../shared beside the repository; set KORM_FIXTURES)",
        dir.display()
    );
    dir
}

/// A JSON file of the fixtures.
pub fn manifest(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("read manifest");
    serde_json::from_str(&text).expect("manifest is JSON")
}
