//! Abort points for the crash trials (`scripts/crash-trials`, `examples/crash_trials.rs`).
//!
//! A SIGKILL at a random moment rarely lands in the narrow windows that matter most (after
//! the WAL record, between two layers); these points hit them on purpose. With the
//! `crash-trials` feature the write path calls [`reached`] at each named point, and when
//! `KORM_CRASH_AT` names that point the process aborts the `KORM_CRASH_AFTER`-th time (the
//! first, by default) it gets there: no destructor runs and nothing more is written, as in a
//! crash. Without the feature the calls compile to nothing.

/// The named points, in the order a write reaches them: the WAL record is durable; the
/// depot ops are applied; one layer is applied and another is next (also inside recovery);
/// every layer is applied and the record is not finished yet.
#[cfg(feature = "crash-trials")]
pub(crate) const POINTS: [&str; 4] = ["after-wal", "after-depot", "between-layers", "after-layers"];

/// Aborts the process if `KORM_CRASH_AT` names `point` and its countdown runs out here.
#[cfg(feature = "crash-trials")]
pub(crate) fn reached(point: &'static str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static SEEN: AtomicU64 = AtomicU64::new(0);
    debug_assert!(POINTS.contains(&point), "unknown crash point {point}");
    let target = TARGET.get_or_init(|| {
        let at = std::env::var("KORM_CRASH_AT").ok()?;
        let after = match std::env::var("KORM_CRASH_AFTER") {
            Ok(k) => k
                .parse()
                .unwrap_or_else(|_| panic!("KORM_CRASH_AFTER={k}: not a count")),
            Err(_) => 1,
        };
        Some((at, after))
    });
    if let Some((at, after)) = target
        && at == point
        && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *after
    {
        eprintln!("korm: crash point {point} reached (time {after}): aborting");
        std::process::abort();
    }
}

/// Without the `crash-trials` feature: nothing.
#[cfg(not(feature = "crash-trials"))]
#[inline(always)]
pub(crate) fn reached(_point: &'static str) {}
