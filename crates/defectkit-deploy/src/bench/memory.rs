//! Peak resident memory of this process, Linux only: `VmHWM` (the high-water mark of the
//! resident set) from `/proc/self/status`, reset by writing `5` to `/proc/self/clear_refs`.
//! The bench resets it before loading a variant and reports the peak during load + runs
//! minus the resident set just before loading. Elsewhere (or when the kernel refuses the
//! reset) every function returns `None` / `false` and the column reads "n/a".

/// The resident set size now (`VmRSS`), bytes.
pub fn rss_bytes() -> Option<u64> {
    status_kb("VmRSS:").map(|kb| kb * 1024)
}

/// The resident set's high-water mark since the process started or the last
/// [`reset_peak`] (`VmHWM`), bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// Resets the high-water mark to the current resident set; false when the kernel does not
/// allow it (then [`peak_rss_bytes`] is the process-lifetime peak and must not be used).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

/// Measures the peak resident growth of `f`: resets the high-water mark, runs `f`, and
/// returns its result with `VmHWM − VmRSS(before)` (None when not measurable here).
pub fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    let before = rss_bytes();
    let reset = reset_peak();
    let out = f();
    let peak = peak_rss_bytes();
    let growth = match (reset, before, peak) {
        (true, Some(b), Some(p)) => Some(p.saturating_sub(b)),
        _ => None,
    };
    (out, growth)
}

fn status_kb(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kb(&status, key)
}

/// The value in kB of the `key` line (`VmHWM:\t  1234 kB`) of a `/proc/<pid>/status` text.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        let s = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_status_kb(s, "VmHWM:"), Some(2048));
        assert_eq!(parse_status_kb(s, "VmRSS:"), Some(1024));
        assert_eq!(parse_status_kb(s, "VmSwap:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_big_allocation_raises_the_peak() {
        let (_, growth) = peak_growth(|| {
            let v = vec![1u8; 64 << 20];
            std::hint::black_box(&v);
            v.iter().map(|&b| b as u64).sum::<u64>()
        });
        if let Some(g) = growth {
            assert!(g >= 32 << 20, "{g}");
        }
    }
}
