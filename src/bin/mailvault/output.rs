//! Output helpers shared by the commands: JSON documents, aligned rows,
//! timestamps, and the process's memory use.

use crate::error::{Context, Result};
use serde::Serialize;
use std::io::Write;

/// Prints `value` as one JSON document on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).context(|| "writing JSON to stdout")?;
    writeln!(out).context(|| "writing to stdout")?;
    out.flush().context(|| "writing to stdout")
}

/// Writes `text` to stdout; a closed pipe (`| head`) ends output quietly.
pub fn print_text(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(crate::error::CliError::msg(format!("writing to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// One line on stdout (`outln!`). A reader gone (`| head`) ends the
/// process with status 0, as a tool killed by SIGPIPE would end; any other
/// failure with status 1 and a message.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("mailvault: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// An indented `label  value` row with the labels aligned.
pub fn row(label: &str, value: impl std::fmt::Display) {
    outln!("  {label:<44} {value}");
}

/// Formats microseconds since the Unix epoch as an RFC 3339 UTC time.
pub fn format_unix_us(us: u64) -> String {
    let secs = us / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        us % 1_000_000
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Peak and current resident set size in KiB (`VmHWM`, `VmRSS` of
/// `/proc/self/status`); `None` where that file does not exist.
pub fn memory_kib() -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.trim().strip_suffix("kB")?.trim().parse().ok()
        })
    };
    (field("VmHWM"), field("VmRSS"))
}

/// CPU time the whole process has used so far, every thread, user and
/// system (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn process_cpu_time() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(format_unix_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_unix_us(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(format_unix_us(1_700_000_000_123_456), "2023-11-14T22:13:20.123456Z");
    }

    #[test]
    fn memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let (peak, now) = memory_kib();
            assert!(peak.is_some_and(|p| p > 0) && now.is_some_and(|n| n > 0));
        }
    }
}
