//! Field encryption: seal and open a 64-byte and a 64 KiB value (throughput in bytes, so
//! criterion reports MB/s), and creating an item with two encrypted fields against one with
//! the same fields in the clear (SQLite in memory).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use korm::Encrypted;
use korm::crypto::{EncryptionKey, KeyRing};
use serde::{Deserialize, Serialize};

fn ring() -> KeyRing {
    KeyRing::new(EncryptionKey::from_hex(&"a1".repeat(32)).expect("key"))
}

fn seal_and_open(c: &mut Criterion) {
    let ring = ring();
    let mut group = c.benchmark_group("envelope");
    for size in [64usize, 64 * 1024] {
        // A string whose JSON text is `size` bytes (quotes included).
        let value = "x".repeat(size - 2);
        let sealed = ring.encrypt(&value).expect("seal");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encrypt", size), &value, |b, v| {
            b.iter(|| ring.encrypt(v).expect("seal"))
        });
        group.bench_with_input(BenchmarkId::new("decrypt", size), &sealed, |b, s| {
            b.iter(|| ring.decrypt::<String>(s).expect("open"))
        });
    }
    group.finish();
}

#[derive(Serialize, Deserialize)]
struct Plain {
    username: String,
    ssn: String,
    note: String,
}

#[derive(Serialize, Deserialize)]
struct Secret {
    username: String,
    ssn: Encrypted<String>,
    note: Encrypted<String>,
}

fn create_items(c: &mut Criterion) {
    korm::crypto::install(ring());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pool = rt.block_on(async {
        korm::pool()
            .layer("db", korm::layers::sqlite_memory())
            .open()
            .await
            .expect("pool")
    });
    let mut group = c.benchmark_group("create");
    let plain = korm::item::<Plain>(&pool);
    let secret = korm::item::<Secret>(&pool);
    group.bench_function("plain_fields", |b| {
        b.iter(|| {
            rt.block_on(async {
                plain
                    .from_data(
                        "[rn]:users:plain:*".parse().expect("rn"),
                        Plain {
                            username: "fred".into(),
                            ssn: "078-05-1120".into(),
                            note: "brontosaurus ribs".into(),
                        },
                    )
                    .expect("floating")
                    .create()
                    .await
                    .expect("create")
            })
        })
    });
    group.bench_function("two_encrypted_fields", |b| {
        b.iter(|| {
            rt.block_on(async {
                secret
                    .from_data(
                        "[rn]:users:secret:*".parse().expect("rn"),
                        Secret {
                            username: "fred".into(),
                            ssn: Encrypted::new("078-05-1120".into()),
                            note: Encrypted::new("brontosaurus ribs".into()),
                        },
                    )
                    .expect("floating")
                    .create()
                    .await
                    .expect("create")
            })
        })
    });
    group.finish();
    rt.block_on(pool.close());
}

criterion_group!(benches, seal_and_open, create_items);
criterion_main!(benches);
