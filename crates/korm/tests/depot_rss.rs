//! A 200 MiB file uploads and downloads through a depot without being held in memory: the
//! peak resident set rises less than 64 MiB above the baseline, on the local depot and on S3.
//!
//! Each test re-runs this test binary for itself in a child process (marked by
//! `KORM_RSS_CHILD`), so the measurement owns a fresh process: no other test, and no memory
//! an earlier transfer freed but kept resident, shares its peak.

#[path = "support/child.rs"]
mod child;
#[path = "../examples/depot_rss.rs"]
#[allow(unreachable_pub)]
mod rss;

const CHILD: &str = "KORM_RSS_CHILD";

/// In the child: measures and prints `figures <upload> <download>`. In the parent: runs the
/// child and checks its figures against the bound.
fn run(test: &str, backend: &str) {
    if std::env::var(CHILD).as_deref() == Ok(backend) {
        let figures = measure(backend);
        println!("\nfigures {} {}", figures.upload, figures.download);
        return;
    }
    if backend == "s3" && !s3_configured() {
        return;
    }
    let figures = child::child_figures(test, CHILD, backend);
    let (upload, download) = (figures[0], figures[1]);
    eprintln!(
        "{backend}: upload +{:.1} MiB, download +{:.1} MiB",
        upload as f64 / 1048576.0,
        download as f64 / 1048576.0
    );
    assert!(upload < rss::BOUND, "{backend} upload peak +{upload} bytes");
    assert!(
        download < rss::BOUND,
        "{backend} download peak +{download} bytes"
    );
}

fn s3_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    if set("KORM_TEST_S3_ENDPOINT") && set("KORM_TEST_S3_ACCESS_KEY") && set("KORM_TEST_S3_SECRET")
    {
        return true;
    }
    let message = "no S3 test server (KORM_TEST_S3_* unset; scripts/test starts one)";
    if std::env::var_os("KORM_TEST_RUN").is_some() {
        panic!("{message}");
    }
    eprintln!("\n!!!! SKIPPED: {message}\n");
    false
}

fn measure(backend: &str) -> rss::Figures {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        assert!(
            rss::status_bytes("VmHWM") > 0,
            "/proc/self/status has no VmHWM: this test needs Linux"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = match backend {
            "local" => rss::local_pool(dir.path()).await.expect("open local"),
            _ => rss::s3_pool()
                .await
                .expect("s3 configured")
                .expect("open s3"),
        };
        let figures = rss::measure(&pool, backend, rss::FILE_SIZE)
            .await
            .expect("transfer");
        pool.close().await;
        figures
    })
}

#[test]
fn local_200_mib_streams_within_64_mib() {
    run("local_200_mib_streams_within_64_mib", "local");
}

#[test]
fn s3_200_mib_streams_within_64_mib() {
    run("s3_200_mib_streams_within_64_mib", "s3");
}
