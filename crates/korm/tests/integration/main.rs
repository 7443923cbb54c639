//! Integration tests: korm against real SQLite files, korm 1.5's fixtures, other connections
//! and processes holding the database, and pools of several layers.

mod backup;
mod compat;
mod concurrency;
mod conflicts;
mod crypto;
mod group_commit;
mod indexes;
mod locks;
mod meta;
mod mysql;
mod postgres;
mod references;
mod routing;
#[path = "../support/mod.rs"]
mod support;
mod wal;

pub use support::fixtures;

/// A JSON file of the fixtures.
pub fn manifest(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("read manifest");
    serde_json::from_str(&text).expect("manifest is JSON")
}
