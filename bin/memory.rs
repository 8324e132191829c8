//! The process's peak memory, for the summary and `--json`.

/// The peak resident set size of this process so far, in bytes: Linux's `VmHWM` from
/// `/proc/self/status`. `None` where that is not available (other systems).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// [`peak_rss_bytes`] for people: `187.5 MiB`, or `unknown`.
pub fn peak_rss_shown() -> String {
    match peak_rss_bytes() {
        Some(bytes) => format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0)),
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_peak_grows_with_what_the_process_touches() {
        let before = peak_rss_bytes().expect("Linux reports VmHWM");
        // 64 MiB written (so resident), well above any noise.
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = peak_rss_bytes().expect("Linux reports VmHWM");
        assert!(after >= before + (60 << 20), "{before} -> {after}");
        assert!(peak_rss_shown().ends_with(" MiB"));
    }
}
