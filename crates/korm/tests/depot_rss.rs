//! A 200 MiB file uploads and downloads through a depot without being held in memory: the
//! peak resident set rises less than 64 MiB above the baseline. This binary holds this one
//! test, so no other test shares its process (and its peak).

#[path = "../examples/depot_rss.rs"]
#[allow(unreachable_pub)]
mod rss;

#[test]
fn a_200_mib_file_streams_within_64_mib() {
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
        // Without a peak reset, the baseline is still taken before the transfers: the bound
        // then covers both together.
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = rss::local_pool(dir.path()).await.expect("open local");
        let local = rss::measure(&pool, "local", rss::FILE_SIZE)
            .await
            .expect("local transfer");
        pool.close().await;
        eprintln!("local: {local:?}");
        assert!(
            local.upload < rss::BOUND,
            "local upload peak +{} bytes",
            local.upload
        );
        assert!(
            local.download < rss::BOUND,
            "local download peak +{} bytes",
            local.download
        );
        let s3 = match rss::s3_pool().await {
            Some(pool) => pool.expect("open s3"),
            None => {
                let message = "no S3 test server (KORM_TEST_S3_* unset): the S3 half is skipped";
                if std::env::var_os("KORM_TEST_RUN").is_some() {
                    panic!("{message}");
                }
                eprintln!("\n!!!! SKIPPED: {message}\n");
                return;
            }
        };
        let figures = rss::measure(&s3, "s3", rss::FILE_SIZE)
            .await
            .expect("s3 transfer");
        s3.close().await;
        eprintln!("s3: {figures:?}");
        assert!(
            figures.upload < rss::BOUND,
            "s3 upload peak +{} bytes",
            figures.upload
        );
        assert!(
            figures.download < rss::BOUND,
            "s3 download peak +{} bytes",
            figures.download
        );
    });
}
