//! CPU time of this process's live threads, by thread name, from
//! `/proc/self/task/*/stat`: which part of a benchmark (the active's
//! shipping, a copy's receiving or replay) spent the CPU of a phase.

use std::collections::BTreeMap;
use std::time::Duration;

/// CPU time (user + system) of every live thread, summed per thread name.
/// Threads that have exited are not counted; compare with
/// `output::process_cpu_time` for the whole process. Empty where `/proc`
/// cannot be read.
pub fn by_name() -> BTreeMap<String, Duration> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some((name, cpu_ticks)) = parse_stat(&stat) {
            let cpu = Duration::from_secs_f64(cpu_ticks as f64 / ticks as f64);
            *out.entry(name).or_default() += cpu;
        }
    }
    out
}

/// The name and utime + stime (in clock ticks) of one `stat` line. The name
/// sits in parentheses and may itself hold spaces or parentheses, so the
/// fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// CPU each name gained from `before` to `after`, in seconds.
pub fn delta(before: &BTreeMap<String, Duration>, after: &BTreeMap<String, Duration>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(name, t)| {
            let was = before.get(name).copied().unwrap_or_default();
            (name.clone(), t.saturating_sub(was).as_secs_f64())
        })
        .collect()
}

/// Seconds summed over the names that start with any of `prefixes`.
pub fn sum_prefixed(cpu: &BTreeMap<String, f64>, prefixes: &[&str]) -> f64 {
    cpu.iter()
        .filter(|(name, _)| prefixes.iter().any(|p| name.starts_with(p)))
        .map(|(_, s)| s)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parentheses() {
        let line = "42 (copy (1) x) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("copy (1) x".to_string(), 280)));
        assert_eq!(parse_stat("42 (short) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_thread_shows_up_and_its_cpu_grows() {
        let name = "cpu-probe-test";
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let before = by_name();
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < Duration::from_millis(200) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                std::hint::black_box(x);
                let after = by_name();
                delta(&before, &after).get(name).copied()
            })
            .unwrap();
        let spent = handle.join().unwrap().expect("the probe thread is listed");
        // 200 ms of spinning; the scheduler may give it less on a busy machine.
        assert!(spent > 0.02, "{spent}");
    }
}
