//! The depot conformance suite: each function takes a backend whose pool has a SQLite layer
//! `db` and a depot `files`, and asserts what every depot must do.

use bytes::Bytes;
use futures_util::StreamExt;
use korm::depots::{DepotKey, FileContent};
use korm::{DepotFile, Error, Rn, Unique};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Backend;

fn rn(text: &str) -> Rn {
    text.parse().expect("valid rn")
}

fn key(text: &str) -> DepotKey {
    DepotKey::parse(text).expect("valid key")
}

pub async fn put_and_get(b: &Backend) {
    let depot = b.pool.depot("files").expect("depot");
    let size = depot
        .put(&key("a/b/c.txt"), FileContent::text("hello depot"))
        .await
        .expect("put");
    assert_eq!(size, 11);
    assert_eq!(depot.size(&key("a/b/c.txt")).await.expect("size"), Some(11));
    let file = DepotFile::at(rn("[rn][depot::files]:a:b:c.txt")).expect("file rn");
    assert_eq!(file.text(&b.pool).await.expect("text"), "hello depot");
    assert_eq!(
        file.bytes(&b.pool).await.expect("bytes"),
        Bytes::from_static(b"hello depot")
    );
    let mut stream = file.stream(&b.pool).await.expect("stream");
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(read, b"hello depot");
    // Binary content survives as is, and the empty file exists.
    let binary: Vec<u8> = (0..=255u8).collect();
    depot
        .put(&key("bin/all.bin"), FileContent::bytes(binary.clone()))
        .await
        .expect("put binary");
    let got = DepotFile::at(rn("[rn][depot::files]:bin:all.bin"))
        .expect("rn")
        .bytes(&b.pool)
        .await
        .expect("read binary");
    assert_eq!(got.as_ref(), binary.as_slice());
    depot
        .put(&key("empty.txt"), FileContent::bytes(Vec::new()))
        .await
        .expect("put empty");
    assert_eq!(depot.size(&key("empty.txt")).await.expect("size"), Some(0));
}

pub async fn list_by_prefix(b: &Backend) {
    let depot = b.pool.depot("files").expect("depot");
    for k in [
        "invoices/fred/invoice-001.txt",
        "invoices/fred/invoice-002.txt",
        "invoices/fred/2024/invoice-000.txt",
        "invoices/barney/invoice-003.txt",
        "invoices/freddie.txt",
        "photos/dino.jpg",
    ] {
        depot.put(&key(k), FileContent::text(k)).await.expect("put");
    }
    let listed: Vec<String> = b
        .pool
        .files(&rn("[rn][depot::files]:invoices:fred:*"))
        .await
        .expect("list")
        .iter()
        .map(|f| f.rn().to_string())
        .collect();
    assert_eq!(
        listed,
        [
            "[rn][depot::files]:invoices:fred:2024:invoice-000.txt",
            "[rn][depot::files]:invoices:fred:invoice-001.txt",
            "[rn][depot::files]:invoices:fred:invoice-002.txt",
        ],
        "a prefix lists whole segments only (not invoices/freddie.txt)"
    );
    let all = b
        .pool
        .files(&rn("[rn][depot::files]:*"))
        .await
        .expect("list all");
    assert_eq!(all.len(), 6);
    // Listed files resolve.
    let text = all[0].text(&b.pool).await.expect("read listed");
    assert_eq!(text, "invoices/barney/invoice-003.txt");
    let none = b
        .pool
        .files(&rn("[rn][depot::files]:nothing:here:*"))
        .await
        .expect("list empty");
    assert!(none.is_empty());
    // A file RN lists itself when it exists.
    let one = b
        .pool
        .files(&rn("[rn][depot::files]:photos:dino.jpg"))
        .await
        .expect("list one");
    assert_eq!(one.len(), 1);
    // An item RN is not a listing.
    let err = b
        .pool
        .files(&rn("[rn]:cars:suv:*"))
        .await
        .expect_err("item rn");
    assert!(matches!(err, Error::WrongRnForm { .. }), "{err:?}");
}

/// `Depot::list_level`: the folders and files directly under a prefix, one level (as the
/// default grouping of `list` gives them), korm's own `__korm_*` files left out, a linked
/// folder of a local depot too.
pub async fn list_one_level(b: &Backend) {
    use korm::depots::DepotLevel;
    let depot = b.pool.depot("files").expect("depot");
    for k in [
        "invoices/fred/invoice-001.txt",
        "invoices/fred/2024/invoice-000.txt",
        "invoices/barney/invoice-003.txt",
        "invoices/freddie.txt",
        "invoices/a.txt",
        "photos/dino.jpg",
        "top.txt",
        "__korm_backups__/db/backup.ndjson",
    ] {
        depot.put(&key(k), FileContent::text(k)).await.expect("put");
    }
    #[cfg(unix)]
    if let Some(root) = &b.root {
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("secret.txt"), "outside").expect("write");
        std::os::unix::fs::symlink(outside.path(), root.join("invoices/linked")).expect("symlink");
    }
    let level = |folders: &[&str], files: &[&str]| DepotLevel {
        folders: folders.iter().map(|f| (*f).to_owned()).collect(),
        files: files.iter().map(|f| key(f)).collect(),
    };
    let root = depot.list_level(&DepotKey::root()).await.expect("root");
    assert_eq!(root, level(&["invoices", "photos"], &["top.txt"]));
    let invoices = depot.list_level(&key("invoices")).await.expect("invoices");
    assert_eq!(
        invoices,
        level(
            &["barney", "fred"],
            &["invoices/a.txt", "invoices/freddie.txt"]
        )
    );
    let fred = depot.list_level(&key("invoices/fred")).await.expect("fred");
    assert_eq!(fred, level(&["2024"], &["invoices/fred/invoice-001.txt"]));
    assert_eq!(
        depot.list_level(&key("nothing/here")).await.expect("empty"),
        DepotLevel::default()
    );
    // The built-in level agrees with the default, which groups the whole listing.
    for prefix in [DepotKey::root(), key("invoices"), key("invoices/fred")] {
        let all = depot.list(&prefix).await.expect("list");
        assert_eq!(
            DepotLevel::of_keys(&prefix, all),
            depot.list_level(&prefix).await.expect("level"),
            "{prefix:?}"
        );
    }
}

pub async fn overwrite(b: &Backend) {
    let depot = b.pool.depot("files").expect("depot");
    let k = key("notes/n.txt");
    depot
        .put(&k, FileContent::text("first version, longer"))
        .await
        .expect("put");
    depot
        .put(&k, FileContent::text("second"))
        .await
        .expect("overwrite");
    let file = DepotFile::at(rn("[rn][depot::files]:notes:n.txt")).expect("rn");
    assert_eq!(file.text(&b.pool).await.expect("text"), "second");
    assert_eq!(depot.list(&key("notes")).await.expect("list").len(), 1);
}

pub async fn delete(b: &Backend) {
    let depot = b.pool.depot("files").expect("depot");
    let k = key("tmp/gone.txt");
    depot.put(&k, FileContent::text("x")).await.expect("put");
    depot.delete(&k).await.expect("delete");
    assert_eq!(depot.size(&k).await.expect("size"), None);
    // Deleting a missing file is not an error for the store...
    depot.delete(&k).await.expect("delete missing");
    // ...but deleting a file handle whose file is gone is.
    let err = DepotFile::at(rn("[rn][depot::files]:tmp:gone.txt"))
        .expect("rn")
        .delete(&b.pool)
        .await
        .expect_err("file is gone");
    assert!(matches!(err, Error::FileNotFound { .. }), "{err:?}");
}

pub async fn missing_file(b: &Backend) {
    let file = DepotFile::at(rn("[rn][depot::files]:no:such.txt")).expect("rn");
    let err = file.text(&b.pool).await.expect_err("missing");
    match &err {
        Error::FileNotFound { depot, key } => {
            assert_eq!(depot, "files");
            assert_eq!(key, "no/such.txt");
        }
        other => panic!("expected FileNotFound, got {other:?}"),
    }
    assert!(err.to_string().contains("no/such.txt"), "{err}");
    assert_eq!(file.size(&b.pool).await.expect("size"), None);
    // A depot the pool lacks is named.
    let err = DepotFile::at(rn("[rn][depot::other]:x.txt"))
        .expect("rn")
        .text(&b.pool)
        .await
        .expect_err("unknown depot");
    assert!(
        matches!(err, Error::UnknownDepot { ref depot, .. } if depot == "other"),
        "{err:?}"
    );
}

pub async fn traversal(b: &Backend) {
    // Keys: every hostile form is a typed error naming the segment.
    for (bad, segment) in [
        ("invoices/../../etc/passwd", "2 \"..\""),
        ("../x", "1 \"..\""),
        ("./x", "1 \".\""),
        ("/etc/passwd", "1 \"\""),
        ("a//b", "2 \"\""),
        ("a\\..\\b", "1 \"a\\\\..\\\\b\""),
        ("a/b\0c", "2 \"b\\0c\""),
        ("a/\u{7}", "2 \"\\u{7}\""),
        ("a/*", "2 \"*\""),
    ] {
        let err = DepotKey::parse(bad).expect_err(bad);
        match &err {
            Error::InvalidDepotKey { segment: s, .. } => assert_eq!(s, segment, "{bad:?}"),
            other => panic!("{bad:?}: expected InvalidDepotKey, got {other:?}"),
        }
    }
    // RNs: the parser refuses the same segments before a depot sees them.
    for bad in [
        "[rn][depot::files]:invoices:..:secret.txt",
        "[rn][depot::files]:.:x",
        "[rn][depot::files]:a/b.txt",
        "[rn][depot::files]:a\\b.txt",
        "[rn][depot::files]:a\u{0}b",
        "[rn][depot::files]:*:x.txt",
    ] {
        let err = bad.parse::<Rn>().expect_err(bad);
        assert!(
            matches!(err, Error::InvalidRn { ref part, .. } if part.contains("segment")),
            "{bad:?}: {err:?}"
        );
    }
    // Nothing was written anywhere: the depot holds no file.
    let depot = b.pool.depot("files").expect("depot");
    assert!(depot.list(&key("x")).await.expect("list").is_empty());
    assert!(
        b.pool
            .files(&rn("[rn][depot::files]:*"))
            .await
            .expect("list")
            .is_empty()
    );
    // A local depot does not follow a symbolic link planted inside its root.
    #[cfg(unix)]
    if let Some(root) = &b.root {
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("secret.txt"), "outside").expect("write");
        std::os::unix::fs::symlink(outside.path(), root.join("link")).expect("symlink");
        let file = DepotFile::at(rn("[rn][depot::files]:link:secret.txt")).expect("rn");
        let err = file.text(&b.pool).await.expect_err("through a symlink");
        assert!(
            matches!(err, Error::Depot { ref reason, .. } if reason.contains("symbolic link")),
            "{err:?}"
        );
        let err = depot
            .put(&key("link/planted.txt"), FileContent::text("x"))
            .await
            .expect_err("write through a symlink");
        assert!(matches!(err, Error::Depot { .. }), "{err:?}");
        assert!(!outside.path().join("planted.txt").exists());
        assert!(
            depot.list(&key("link")).await.is_err(),
            "a linked prefix is refused"
        );
        assert!(
            depot
                .list(&DepotKey::root())
                .await
                .expect("list")
                .is_empty()
        );
        let all = b
            .pool
            .files(&rn("[rn][depot::files]:*"))
            .await
            .expect("list all");
        assert!(all.is_empty(), "listing does not follow the link: {all:?}");
    }
}

/// 24 MiB from a stream in 64 KiB chunks: more than one part on S3.
pub async fn large_file_streams(b: &Backend) {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 384;
    let make = |i: usize| Bytes::from(vec![(i % 251) as u8; CHUNK]);
    let mut expected = Sha256::new();
    for i in 0..CHUNKS {
        expected.update(make(i));
    }
    let stream = futures_util::stream::iter((0..CHUNKS).map(move |i| Ok(make(i))));
    let file = korm::depots::file(
        rn("[rn][depot::files]:big:blob.bin"),
        FileContent::stream(stream),
    )
    .expect("file")
    .create(&b.pool)
    .await
    .expect("upload");
    assert_eq!(
        file.size(&b.pool).await.expect("size"),
        Some((CHUNK * CHUNKS) as u64)
    );
    let mut stream = file.stream(&b.pool).await.expect("download");
    let mut got = Sha256::new();
    let mut largest = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        largest = largest.max(chunk.len());
        got.update(&chunk);
    }
    assert_eq!(got.finalize(), expected.finalize());
    assert!(largest < CHUNK * CHUNKS, "the download came in chunks");
    // A stream that fails midway writes nothing.
    let failing = futures_util::stream::iter((0..200).map(move |i| {
        if i == 150 {
            Err(std::io::Error::other("disk on fire"))
        } else {
            Ok(make(i))
        }
    }));
    let err = korm::depots::file(
        rn("[rn][depot::files]:big:broken.bin"),
        FileContent::stream(failing),
    )
    .expect("file")
    .create(&b.pool)
    .await
    .expect_err("stream error");
    assert!(err.to_string().contains("disk on fire"), "{err}");
    let broken = DepotFile::at(rn("[rn][depot::files]:big:broken.bin")).expect("rn");
    assert_eq!(broken.size(&b.pool).await.expect("size"), None);
}

pub async fn file_lifecycle(b: &Backend) {
    let r = rn("[rn][depot::files]:invoices:fred:invoice-001.txt");
    let file = korm::depots::file(r.clone(), "one burger")
        .expect("floating")
        .create(&b.pool)
        .await
        .expect("create");
    assert_eq!(file.rn(), &r);
    assert!(!file.is_pending());
    assert_eq!(file.text(&b.pool).await.expect("text"), "one burger");
    // Creating over an existing file is refused and keeps it.
    let err = korm::depots::file(r.clone(), "impostor")
        .expect("floating")
        .create(&b.pool)
        .await
        .expect_err("exists");
    assert!(
        matches!(err, Error::FileExists { ref depot, ref key } if depot == "files" && key == "invoices/fred/invoice-001.txt"),
        "{err:?}"
    );
    assert_eq!(file.text(&b.pool).await.expect("text"), "one burger");
    let file = file
        .update("two burgers")
        .commit(&b.pool)
        .await
        .expect("commit");
    assert_eq!(file.text(&b.pool).await.expect("text"), "two burgers");
    let stale = file.clone();
    file.delete(&b.pool).await.expect("delete");
    assert_eq!(stale.size(&b.pool).await.expect("size"), None);
    // Committing over a deleted file is refused and writes nothing.
    let err = stale
        .update("three")
        .commit(&b.pool)
        .await
        .expect_err("deleted meanwhile");
    assert!(matches!(err, Error::FileNotFound { .. }), "{err:?}");
    assert_eq!(
        DepotFile::at(r)
            .expect("rn")
            .size(&b.pool)
            .await
            .expect("size"),
        None
    );
    // Only depot file RNs make files.
    assert!(korm::depots::file(rn("[rn]:cars:suv:*"), "x").is_err());
    assert!(korm::depots::file(rn("[rn][depot::files]:a:*"), "x").is_err());
}

#[derive(Debug, Serialize, Deserialize)]
struct Car {
    plate: Unique<String>,
    year: i64,
    invoice: DepotFile,
}

pub async fn file_in_item_is_uploaded_and_resolves(b: &Backend) {
    let invoice = korm::depots::file(
        rn("[rn][depot::files]:invoices:fred:invoice-001.txt"),
        "Invoice 001: one brontosaurus burger",
    )
    .expect("file");
    let car = korm::item::<Car>(&b.pool)
        .from_data(
            "[rn]:cars:suv:*".parse().expect("rn"),
            Car {
                plate: Unique::new("BEDROCK-1".to_owned()),
                year: 2015,
                invoice: invoice.into(),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    assert!(!car.data().invoice.is_pending(), "uploaded with the item");
    // The row stores the RN string, in an RN column.
    let shown = car.show(korm::ShowOptions::default());
    assert!(
        shown.contains("[rn][depot::files]:invoices:fred:invoice-001.txt"),
        "{shown}"
    );
    let loaded = korm::item::<Car>(&b.pool)
        .load(car.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(
        loaded.data().invoice.rn().as_str(),
        "[rn][depot::files]:invoices:fred:invoice-001.txt"
    );
    assert_eq!(
        loaded.data().invoice.text(&b.pool).await.expect("resolve"),
        "Invoice 001: one brontosaurus burger"
    );
    // The item's table types the column as an RN reference, as korm 1.5 does.
    let table = car.rn().table_name().expect("table");
    let conn = rusqlite::Connection::open(&b.db).expect("open db");
    let (declared, stored): (String, String) = conn
        .query_row(
            &format!(
                "SELECT (SELECT type FROM pragma_table_info('{table}') WHERE name = 'invoice'), \
                 invoice FROM \"{table}\""
            ),
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("read the row");
    assert_eq!(declared, "RN_REF_TEXT");
    assert_eq!(stored, "[rn][depot::files]:invoices:fred:invoice-001.txt");
    let value: serde_json::Value =
        serde_json::to_value(&loaded.data().invoice).expect("plain serde");
    assert_eq!(value, "[rn][depot::files]:invoices:fred:invoice-001.txt");
}

#[derive(Debug, Serialize, Deserialize)]
struct Album {
    title: String,
    photos: Vec<DepotFile>,
}

pub async fn files_in_an_array_field(b: &Backend) {
    let photos: Vec<DepotFile> = (1..=3)
        .map(|i| {
            korm::depots::file(
                rn(&format!("[rn][depot::files]:photos:trip:p{i}.jpg")),
                vec![i as u8; 1000 * i],
            )
            .expect("file")
            .into()
        })
        .collect();
    let album = korm::item::<Album>(&b.pool)
        .from_data(
            "[rn]:albums:trip:*".parse().expect("rn"),
            Album {
                title: "trip".into(),
                photos,
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    let loaded = korm::item::<Album>(&b.pool)
        .load(album.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(loaded.data().photos.len(), 3);
    for (i, photo) in loaded.data().photos.iter().enumerate() {
        let bytes = photo.bytes(&b.pool).await.expect("read photo");
        assert_eq!(bytes.len(), 1000 * (i + 1));
    }
    let listed = b
        .pool
        .files(&rn("[rn][depot::files]:photos:trip:*"))
        .await
        .expect("list");
    assert_eq!(listed.len(), 3);
}

pub async fn commit_uploads_a_new_file(b: &Backend) {
    let car = korm::item::<Car>(&b.pool)
        .from_data(
            "[rn]:cars:suv:*".parse().expect("rn"),
            Car {
                plate: Unique::new("BEDROCK-2".to_owned()),
                year: 2015,
                invoice: korm::depots::file(rn("[rn][depot::files]:inv:a.txt"), "A")
                    .expect("file")
                    .into(),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    let car = car
        .update(|c| {
            c.invoice = korm::depots::file(rn("[rn][depot::files]:inv:b.txt"), "B")
                .expect("file")
                .into();
        })
        .commit()
        .await
        .expect("commit");
    let loaded = korm::item::<Car>(&b.pool)
        .load(car.rn().clone())
        .get()
        .await
        .expect("load");
    assert_eq!(
        loaded.data().invoice.rn().as_str(),
        "[rn][depot::files]:inv:b.txt"
    );
    assert_eq!(loaded.data().invoice.text(&b.pool).await.expect("b"), "B");
    // A commit that changes other fields leaves the stored file alone (nothing to upload).
    let loaded = loaded
        .update(|c| c.year = 2016)
        .commit()
        .await
        .expect("commit year");
    assert_eq!(loaded.data().invoice.text(&b.pool).await.expect("b"), "B");
}

pub async fn failed_layer_write_deletes_the_upload(b: &Backend) {
    let cars = korm::item::<Car>(&b.pool);
    cars.from_data(
        "[rn]:cars:suv:*".parse().expect("rn"),
        Car {
            plate: Unique::new("SAME".to_owned()),
            year: 1,
            invoice: korm::depots::file(rn("[rn][depot::files]:inv:first.txt"), "first")
                .expect("file")
                .into(),
        },
    )
    .expect("floating")
    .create()
    .await
    .expect("create first");
    let second = cars
        .from_data(
            "[rn]:cars:suv:*".parse().expect("rn"),
            Car {
                plate: Unique::new("SAME".to_owned()),
                year: 2,
                invoice: korm::depots::file(rn("[rn][depot::files]:inv:second.txt"), "second")
                    .expect("file")
                    .into(),
            },
        )
        .expect("floating");
    let second_rn = second.rn().clone();
    let err = second.create().await.expect_err("unique violation");
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err:?}");
    // No orphan: the upload was undone; no row either.
    let orphan = DepotFile::at(rn("[rn][depot::files]:inv:second.txt")).expect("rn");
    assert_eq!(orphan.size(&b.pool).await.expect("size"), None);
    let err = cars.load(second_rn).get().await.expect_err("no row");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    // And no undo backup is left behind.
    let depot = b.pool.depot("files").expect("depot");
    assert_eq!(
        depot
            .list(&DepotKey::parse("inv").expect("key"))
            .await
            .expect("list")
            .len(),
        1
    );
    if let Some(root) = &b.root {
        assert!(
            !root.join("__korm_undo__").exists()
                || std::fs::read_dir(root.join("__korm_undo__"))
                    .expect("dir")
                    .next()
                    .is_none()
        );
    }
}

pub async fn failed_layer_write_restores_the_replaced_file(b: &Backend) {
    let cars = korm::item::<Car>(&b.pool);
    let shared = rn("[rn][depot::files]:inv:shared.txt");
    cars.from_data(
        "[rn]:cars:suv:*".parse().expect("rn"),
        Car {
            plate: Unique::new("ONE".to_owned()),
            year: 1,
            invoice: korm::depots::file(shared.clone(), "original content")
                .expect("file")
                .into(),
        },
    )
    .expect("floating")
    .create()
    .await
    .expect("create");
    let err = cars
        .from_data(
            "[rn]:cars:suv:*".parse().expect("rn"),
            Car {
                plate: Unique::new("ONE".to_owned()),
                year: 2,
                invoice: korm::depots::file(shared.clone(), "replacement")
                    .expect("file")
                    .into(),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect_err("unique violation");
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err:?}");
    let file = DepotFile::at(shared).expect("rn");
    assert_eq!(file.text(&b.pool).await.expect("text"), "original content");
    let all = b
        .pool
        .files(&rn("[rn][depot::files]:*"))
        .await
        .expect("list");
    assert_eq!(all.len(), 1, "no backup is listed or left: {all:?}");
}

pub async fn reader_content(b: &Backend) {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 7) as u8).collect();
    let reader = std::io::Cursor::new(data.clone());
    let file = korm::depots::file(
        rn("[rn][depot::files]:r:reader.bin"),
        FileContent::reader(reader),
    )
    .expect("file")
    .create(&b.pool)
    .await
    .expect("create");
    assert_eq!(
        file.bytes(&b.pool).await.expect("bytes").as_ref(),
        data.as_slice()
    );
    let err = file.text(&b.pool).await;
    assert!(err.is_ok(), "bytes 0..7 are valid UTF-8");
    let latin1 = korm::depots::file(rn("[rn][depot::files]:r:latin1.txt"), vec![0xe9u8, 0x74])
        .expect("file")
        .create(&b.pool)
        .await
        .expect("create");
    let err = latin1.text(&b.pool).await.expect_err("not utf-8");
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
}

pub async fn closed_pool_refuses_files(b: &Backend) {
    b.pool.close().await;
    let err = korm::depots::file(rn("[rn][depot::files]:x.txt"), "x")
        .expect("file")
        .create(&b.pool)
        .await
        .expect_err("closed");
    assert!(matches!(err, Error::PoolClosed), "{err:?}");
    assert!(matches!(b.pool.depot("files"), Err(Error::PoolClosed)));
}

/// Files inside items written by a transaction upload with it; a failing transaction undoes
/// every upload.
pub async fn files_in_a_transaction(b: &Backend) {
    let cars = korm::item::<Car>(&b.pool);
    let make = |plate: &str, file: &str| {
        cars.from_data(
            "[rn]:cars:suv:*".parse().expect("rn"),
            Car {
                plate: Unique::new(plate.to_owned()),
                year: 1,
                invoice: korm::depots::file(rn(&format!("[rn][depot::files]:tx:{file}")), file)
                    .expect("file")
                    .into(),
            },
        )
        .expect("floating")
    };
    let mut tx = korm::tx(&b.pool);
    let one = tx.create(make("TX-1", "one.txt"));
    let two = tx.create(make("TX-2", "two.txt"));
    let mut outcome = tx.persist().await.expect("persist");
    let one = outcome.take(one).expect("one");
    let two = outcome.take(two).expect("two");
    assert_eq!(
        one.data().invoice.text(&b.pool).await.expect("one"),
        "one.txt"
    );
    assert_eq!(
        two.data().invoice.text(&b.pool).await.expect("two"),
        "two.txt"
    );
    // The second change of this one fails (same plate): neither file stays.
    let mut tx = korm::tx(&b.pool);
    tx.create(make("TX-3", "three.txt"));
    tx.create(make("TX-1", "four.txt"));
    tx.persist().await.expect_err("unique violation");
    let listed: Vec<String> = b
        .pool
        .files(&rn("[rn][depot::files]:tx:*"))
        .await
        .expect("list")
        .iter()
        .map(|f| f.rn().to_string())
        .collect();
    assert_eq!(
        listed,
        [
            "[rn][depot::files]:tx:one.txt",
            "[rn][depot::files]:tx:two.txt"
        ]
    );
}

/// A file on a depot the pool lacks fails the item's write before anything is written.
pub async fn unknown_depot_in_item_stores_nothing(b: &Backend) {
    let cars = korm::item::<Car>(&b.pool);
    let floating = cars
        .from_data(
            "[rn]:cars:suv:*".parse().expect("rn"),
            Car {
                plate: Unique::new("NOWHERE".to_owned()),
                year: 1,
                invoice: korm::depots::file(rn("[rn][depot::elsewhere]:x.txt"), "x")
                    .expect("file")
                    .into(),
            },
        )
        .expect("floating");
    let car_rn = floating.rn().clone();
    let err = floating.create().await.expect_err("unknown depot");
    assert!(
        matches!(err, Error::UnknownDepot { ref depot, .. } if depot == "elsewhere"),
        "{err:?}"
    );
    assert!(matches!(
        cars.load(car_rn).get().await,
        Err(Error::NotFound { .. })
    ));
}

/// A file field whose stored RN was tampered with (a traversal, an item RN) does not load.
pub async fn tampered_file_rn_is_a_decode_error(b: &Backend) {
    let car = korm::item::<Car>(&b.pool)
        .from_data(
            "[rn]:cars:suv:*".parse().expect("rn"),
            Car {
                plate: Unique::new("TAMPER".to_owned()),
                year: 1,
                invoice: korm::depots::file(rn("[rn][depot::files]:ok.txt"), "ok")
                    .expect("file")
                    .into(),
            },
        )
        .expect("floating")
        .create()
        .await
        .expect("create");
    let table = car.rn().table_name().expect("table");
    for tampered in [
        "[rn][depot::files]:__korm_wal__:ns:e5d9906025b1b75f:pending:x.json",
        "[rn][depot::files]:..:etc:passwd",
        "[rn][depot::files]:invoices:*",
        "[rn]:cars:suv:*",
    ] {
        let conn = rusqlite::Connection::open(&b.db).expect("open db");
        conn.execute(&format!("UPDATE \"{table}\" SET invoice = ?1"), [tampered])
            .expect("tamper");
        drop(conn);
        let err = korm::item::<Car>(&b.pool)
            .load(car.rn().clone())
            .get()
            .await
            .expect_err(tampered);
        assert!(matches!(err, Error::Decode { .. }), "{tampered}: {err:?}");
        assert!(!err.to_string().contains("passwd"), "{err}");
    }
}

/// korm's own files in a depot (backups, the WAL's records) are out of reach of a depot file
/// RN: it can not name them to read, write or delete, and they stay whole.
pub async fn korm_own_files_are_out_of_reach_of_file_rns(b: &Backend) {
    let backups = korm::backup::Backups::new(&b.pool, "files").expect("backups");
    let taken = backups.now("db").await.expect("backup");
    let backup = taken.key.to_rn("files").expect("rn");
    assert!(backup.as_str().contains("__korm_backups__"), "{backup}");
    let refused = |e: &Error| matches!(e, Error::InvalidDepotKey { reason, .. } if reason.contains("korm's own"));
    let at = korm::depots::DepotFile::at(backup.clone())
        .map(|_| ())
        .expect_err("at");
    assert!(refused(&at), "{at:?}");
    let put = korm::depots::file(backup, "overwritten")
        .map(|_| ())
        .expect_err("file");
    assert!(refused(&put), "{put:?}");
    for wal in [
        "[rn][depot::files]:__korm_wal__:ns:e5d9906025b1b75f:pending:x.json",
        "[rn][depot::files]:__korm_x",
    ] {
        let wal: korm::Rn = wal.parse().expect("rn");
        let at = korm::depots::DepotFile::at(wal)
            .map(|_| ())
            .expect_err("at");
        assert!(refused(&at), "{at:?}");
    }
    // A key that only holds the prefix further in is a user's.
    let inner = korm::depots::file(rn("[rn][depot::files]:docs:__korm_x.txt"), "mine")
        .expect("file")
        .create(&b.pool)
        .await
        .expect("create");
    assert_eq!(inner.text(&b.pool).await.expect("text"), "mine");
    let listed = backups.list(None).await.expect("list");
    assert_eq!(listed.len(), 1);
    backups
        .verify(&taken.key)
        .await
        .expect("the backup is whole");
}

/// Every spelling of one file's RN (another mod beside `depot`, the mods in another order)
/// takes the file's one lock: a file locked under one spelling is not written meanwhile
/// under another (each spelling took a lock of its own, so two writers could both pass the
/// create check, and one's undo could delete the file the other committed).
pub async fn spellings_of_one_file_rn_share_its_lock(b: &Backend) {
    let tagged = rn("[rn][depot::files][tag::x]:locks:a.txt");
    let guard = b.pool.locker().acquire(&tagged).await.expect("lock");
    for other in [
        "[rn][depot::files]:locks:a.txt",
        "[rn][tag::x][depot::files]:locks:a.txt",
        "[rn][depot::files][tag::y]:locks:a.txt",
    ] {
        let err = b
            .pool
            .locker()
            .acquire_within(&rn(other), std::time::Duration::from_millis(20))
            .await
            .expect_err("the file is locked");
        assert!(matches!(err, Error::LockTimeout { .. }), "{other}: {err:?}");
    }
    // A write through another spelling waits for the lock.
    let pool = b.pool.clone();
    let write = tokio::spawn(async move {
        korm::depots::file(rn("[rn][tag::y][depot::files]:locks:a.txt"), "second")
            .expect("floating")
            .create(&pool)
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let plain = DepotFile::at(rn("[rn][depot::files]:locks:a.txt")).expect("rn");
    assert_eq!(
        plain.size(&b.pool).await.expect("size"),
        None,
        "the write went ahead under a held lock"
    );
    assert!(!write.is_finished());
    guard.release().await.expect("release");
    write.await.expect("task").expect("create");
    assert_eq!(plain.text(&b.pool).await.expect("text"), "second");
}
