//! What the process asks Linux: CPU time, wall-clock time, memory, sockets.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Result;

/// User plus system CPU seconds of the whole process (every thread) so far.
pub fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the zeroed struct we own; RUSAGE_SELF
    // is always valid, so it cannot fail.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// CPU seconds used since a [`cpu_secs`] reading.
pub fn cpu_since(start: f64) -> f64 {
    cpu_secs() - start
}

/// CLOCK_REALTIME in nanoseconds since the epoch (what nginx's Lua reader
/// compares stamps with).
pub fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A `Vm*` line of /proc/self/status (`VmRSS`, `VmHWM`), in KiB.
pub fn vm_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/self/status").into())
}

/// Resets the peak resident set size (`VmHWM`) to the current one.
pub fn reset_peak_rss() -> Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
        .map_err(|e| format!("cannot reset the peak RSS via /proc/self/clear_refs: {e}").into())
}

/// ESTABLISHED TCP connections of this process to `port`, counted in the
/// output of `ss`.
pub fn connections_to(port: u16) -> Result<u64> {
    let filter = format!("( dport = :{port} )");
    let out = Command::new("ss")
        .args(["-tnpH", "state", "established", &filter])
        .output()
        .map_err(|e| format!("cannot run ss: {e}"))?;
    if !out.status.success() {
        return Err(format!("ss failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let mine = format!("pid={},", std::process::id());
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().filter(|l| l.contains(&mine)).count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_clocks() {
        assert!(vm_kib("VmRSS").unwrap() > 0);
        assert!(vm_kib("VmNope").is_err());
        assert!(realtime_ns() > 1_500_000_000_000_000_000);
        assert!(cpu_secs() >= 0.0);
    }
}
