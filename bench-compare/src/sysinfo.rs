//! What the harness reads from the system: disk usage of a directory, the
//! process's peak resident memory, and a description of the machine.

use crate::error::BenchResult;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes a directory tree takes.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskUsage {
    /// Blocks allocated (what `du` reports): preallocated files count in full.
    pub allocated: u64,
    /// Sum of file lengths.
    pub apparent: u64,
}

/// Sums the files under `dir`.
pub fn disk_usage(dir: &Path) -> BenchResult<DiskUsage> {
    let mut usage = DiskUsage::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let inner = disk_usage(&entry.path())?;
            usage.allocated += inner.allocated;
            usage.apparent += inner.apparent;
        } else {
            usage.allocated += meta.blocks() * 512;
            usage.apparent += meta.len();
        }
    }
    Ok(usage)
}

/// This process's peak resident set (`VmHWM`), in bytes; 0 if unknown.
pub fn peak_rss_bytes() -> u64 {
    status_field("/proc/self/status", "VmHWM:").unwrap_or(0) * 1024
}

/// A `Name:   N kB` field of a /proc file, as N.
fn status_field(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// The machine a campaign ran on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// File system and device of the benchmark directory.
    pub filesystem: String,
}

impl Machine {
    pub fn describe(dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            memory_gib: status_field("/proc/meminfo", "MemTotal:").unwrap_or(0) as f64 / (1 << 20) as f64,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            filesystem: filesystem_of(dir),
        }
    }
}

/// The mount holding `dir`, as "ext4 on /dev/vda (mounted at /)".
fn filesystem_of(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [device, point, kind, ..] if dir.starts_with(point) => Some((point.len(), *device, *point, *kind)),
                _ => None,
            }
        })
        .max_by_key(|(len, ..)| *len)
        .map(|(_, device, point, kind)| format!("{kind} on {device} (mounted at {point})"))
        .unwrap_or_else(|| "unknown".into())
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_000), (2024, 10, 4));
    }
}
