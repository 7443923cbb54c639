//! A process's peak memory, read from Linux's `/proc/self/status`: the memory examples and
//! their tests share it (`#[path]`).

/// A `/proc/self/status` field in bytes (`VmHWM`, `VmRSS`); 0 where it can not be read.
pub fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Resets the peak (`VmHWM`) to the current resident set; `false` where the kernel does not
/// allow it (then the peak is the process's peak so far).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
