//! korm 1.5 compatibility: the car's invoice in the fixtures resolves from the car item.

use korm::DepotFile;
use serde::{Deserialize, Serialize};

use super::support::fixtures;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Car {
    year: i64,
    invoice: DepotFile,
}

#[tokio::test]
async fn the_korm_1_5_invoice_resolves_from_the_car() {
    let fixtures = fixtures();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let car = &manifest["items"]["car"];
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        fixtures.join("cardb.sqlite"),
        dir.path().join("cardb.sqlite"),
    )
    .expect("copy");
    copy_dir(&fixtures.join("files"), &dir.path().join("files"));
    let pool = korm::pool()
        .layer(
            "cardb",
            korm::layers::sqlite(dir.path().join("cardb.sqlite")),
        )
        .depot("files", korm::depots::local(dir.path().join("files")))
        .open()
        .await
        .expect("open");
    let rn = car["rn"].as_str().expect("car rn").parse().expect("rn");
    let loaded = korm::item::<Car>(&pool)
        .load(rn)
        .get()
        .await
        .expect("load car");
    assert_eq!(loaded.data().year, 2015);
    assert_eq!(
        loaded.data().invoice.rn().as_str(),
        car["invoiceRn"].as_str().expect("invoiceRn")
    );
    assert_eq!(
        loaded
            .data()
            .invoice
            .text(&pool)
            .await
            .expect("read invoice"),
        car["invoiceText"].as_str().expect("invoiceText")
    );
    // The prefix lists it too.
    let listed = pool
        .files(
            &"[rn][depot::files]:invoices:fred:*"
                .parse::<korm::Rn>()
                .expect("rn"),
        )
        .await
        .expect("list");
    assert!(listed.iter().any(|f| f.rn() == loaded.data().invoice.rn()));
    pool.close().await;
}
