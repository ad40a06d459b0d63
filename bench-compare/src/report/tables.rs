//! The Markdown tables: the targets, one table per workload, the failures.

use super::{Better, advantage, best_peer, median_of};
use crate::engines::EngineKind;
use crate::results::Campaign;
use crate::workloads::Workload;
use std::fmt::Write as _;

/// A figure with thousands separators and `decimals` decimals.
pub fn grouped(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let (int, frac) = text
        .split_once('.')
        .map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// A figure with as many decimals as its size deserves.
fn figure(value: f64) -> String {
    let decimals = if value.abs() >= 100.0 {
        0
    } else if value.abs() >= 10.0 {
        1
    } else {
        2
    };
    grouped(value, decimals)
}

/// One column of a workload table.
struct Column {
    header: &'static str,
    workload: Workload,
    metric: &'static str,
    better: Better,
    /// Divides the stored figure for display (bytes to MB, ...).
    scale: f64,
    /// Adds "× best peer" and "× raw" columns after this one.
    ratios: bool,
}

const fn col(header: &'static str, workload: Workload, metric: &'static str, better: Better, ratios: bool) -> Column {
    Column {
        header,
        workload,
        metric,
        better,
        scale: 1.0,
        ratios,
    }
}

const fn scaled(mut column: Column, scale: f64) -> Column {
    column.scale = scale;
    column
}

const MB: f64 = 1e6;
const MIB: f64 = 1_048_576.0;

fn tables() -> Vec<(&'static str, Vec<Column>)> {
    use Better::{Higher, Lower};
    use Workload::*;
    let rss = |header, workload| scaled(col(header, workload, "peak_rss_bytes", Lower, false), MIB);
    vec![
        (
            "Workload 1: durable commits of one 1 KiB record (commits/s)",
            vec![
                col("1 thread", Commits1, "commits_per_sec", Higher, true),
                col("8 threads", Commits8, "commits_per_sec", Higher, true),
                col("64 threads", Commits64, "commits_per_sec", Higher, true),
                col("p99 µs, 64 threads", Commits64, "p99_us", Lower, false),
            ],
        ),
        (
            "Workload 2: realistic-mix mail ingest, 16 writers, one durable delivery each",
            vec![
                col("MB/s", Ingest, "mb_per_sec", Higher, true),
                col("messages/s", Ingest, "messages_per_sec", Higher, false),
                col("p99 ms", Ingest, "p99_ms", Lower, false),
            ],
        ),
        (
            "Workload 3: bulk load of small records in one transaction",
            vec![
                col("records/s", BulkLoad, "records_per_sec", Higher, true),
                col("seconds", BulkLoad, "seconds", Lower, false),
            ],
        ),
        (
            "Workload 4: random point reads from a warm cache (reads/s)",
            vec![
                col("1 thread", Reads1, "reads_per_sec", Higher, true),
                col("8 threads", Reads8, "reads_per_sec", Higher, true),
            ],
        ),
        (
            "Workload 5: a folder's metadata listed, bodies fetched by UID",
            vec![
                col("listing, ms", Folder, "list_ms", Lower, true),
                col("bodies/s", Folder, "bodies_per_sec", Higher, true),
            ],
        ),
        (
            "Workload 6: 90 % reads, 10 % durable writes, 8 threads",
            vec![
                col("operations/s", Mixed, "ops_per_sec", Higher, true),
                col("of which writes/s", Mixed, "writes_per_sec", Higher, false),
            ],
        ),
        (
            "Workload 7: on-disk size after workload 2 (MB, after a clean close)",
            vec![
                scaled(col("allocated", Ingest, "disk_allocated_bytes", Lower, true), MB),
                scaled(col("file lengths", Ingest, "disk_apparent_bytes", Lower, false), MB),
                scaled(col("message bytes given", Ingest, "input_bytes", Lower, false), MB),
            ],
        ),
        (
            "Workload 8: peak resident memory of each run (MiB)",
            vec![
                rss("commits, 64 threads", Commits64),
                rss("ingest", Ingest),
                rss("bulk load", BulkLoad),
                rss("reads, 8 threads", Reads8),
                rss("folder", Folder),
                rss("mixed", Mixed),
            ],
        ),
    ]
}

fn ratio_cell(campaign: &Campaign, engine: EngineKind, c: &Column, reference: Option<f64>) -> String {
    match (median_of(campaign, engine, c.workload, c.metric), reference) {
        (Some(value), Some(reference)) if value > 0.0 && reference > 0.0 => {
            format!("{:.2}", advantage(value, reference, c.better))
        }
        _ => "–".into(),
    }
}

/// One table per workload: engines as rows, medians over the rounds.
pub fn workloads(md: &mut String, campaign: &Campaign) {
    for (title, columns) in tables() {
        let columns: Vec<Column> = columns
            .into_iter()
            .filter(|c| campaign.workloads.contains(&c.workload))
            .collect();
        if columns.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {title}\n");
        let mut header = String::from("| engine |");
        let mut rule = String::from("|---|");
        for c in &columns {
            let _ = write!(header, " {} |", c.header);
            rule.push_str("---:|");
            if c.ratios {
                header.push_str(" × best peer | × raw |");
                rule.push_str("---:|---:|");
            }
        }
        let _ = writeln!(md, "{header}\n{rule}");
        for &engine in &campaign.engines {
            let mut row = format!("| {} |", engine.name());
            for c in &columns {
                let cell = match median_of(campaign, engine, c.workload, c.metric) {
                    Some(value) => figure(value / c.scale),
                    None if !c.workload.runs_on(engine) => "n/a".into(),
                    None => "failed".into(),
                };
                let _ = write!(row, " {cell} |");
                if c.ratios {
                    let peer = best_peer(campaign, c.workload, c.metric, c.better).map(|(_, v)| v);
                    let raw = median_of(campaign, EngineKind::Raw, c.workload, c.metric);
                    let _ = write!(
                        row,
                        " {} | {} |",
                        ratio_cell(campaign, engine, c, peer),
                        ratio_cell(campaign, engine, c, raw)
                    );
                }
            }
            let _ = writeln!(md, "{row}");
        }
        md.push('\n');
    }
}

/// The targets, each with mailvault's median, the best peer's and the verdict.
pub fn targets(md: &mut String, campaign: &Campaign) {
    use Better::{Higher, Lower};
    use Workload::*;
    let within = 1.0 / 1.2;
    // (label, workload, figure, better, needed advantage, display scale)
    let rows: [(&str, Workload, &str, Better, f64, f64); 12] = [
        ("1: commits, 64 threads", Commits64, "commits_per_sec", Higher, 2.0, 1.0),
        ("2: ingest MB/s", Ingest, "mb_per_sec", Higher, 2.0, 1.0),
        ("1: commits, 1 thread", Commits1, "commits_per_sec", Higher, within, 1.0),
        (
            "1: commits, 8 threads",
            Commits8,
            "commits_per_sec",
            Higher,
            within,
            1.0,
        ),
        (
            "3: bulk load records/s",
            BulkLoad,
            "records_per_sec",
            Higher,
            within,
            1.0,
        ),
        ("4: reads/s, 1 thread", Reads1, "reads_per_sec", Higher, within, 1.0),
        ("4: reads/s, 8 threads", Reads8, "reads_per_sec", Higher, within, 1.0),
        ("5: folder listing ms", Folder, "list_ms", Lower, within, 1.0),
        ("5: bodies fetched/s", Folder, "bodies_per_sec", Higher, within, 1.0),
        ("6: mixed operations/s", Mixed, "ops_per_sec", Higher, within, 1.0),
        (
            "7: MB on disk after 2",
            Ingest,
            "disk_allocated_bytes",
            Lower,
            within,
            MB,
        ),
        (
            "8: peak RSS during 2, MiB",
            Ingest,
            "peak_rss_bytes",
            Lower,
            within,
            MIB,
        ),
    ];
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(
        md,
        "Workload 1 at 64 threads and workload 2: mailvault at least 2 × the best durable peer; every \
         other figure within 1.2 × of it or better (an advantage of at least 0.83).\n"
    );
    let _ = writeln!(
        md,
        "| figure | mailvault | best durable peer | advantage | needed | met |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---|");
    for (label, workload, metric, better, needed, scale) in rows {
        if !campaign.workloads.contains(&workload) {
            continue;
        }
        let mine = median_of(campaign, EngineKind::Mailvault, workload, metric);
        let peer = best_peer(campaign, workload, metric, better);
        let (advantage_text, met) = match (mine, peer) {
            (Some(m), Some((_, p))) if m > 0.0 && p > 0.0 => {
                let a = advantage(m, p, better);
                (format!("{a:.2}"), if a >= needed { "yes" } else { "**no**" })
            }
            _ => ("–".into(), "–"),
        };
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {advantage_text} | {needed:.2} | {met} |",
            mine.map(|m| figure(m / scale)).unwrap_or_else(|| "failed".into()),
            peer.map(|(e, v)| format!("{} {}", e.name(), figure(v / scale)))
                .unwrap_or_else(|| "–".into()),
        );
    }
    md.push('\n');
}

/// Runs that failed, with their errors (a refused workload is a result too).
pub fn failures(md: &mut String, campaign: &Campaign) {
    let failed: Vec<_> = campaign
        .runs
        .iter()
        .filter(|r| r.error.is_some() && r.workload.runs_on(r.engine))
        .collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Failed runs\n");
    for run in failed {
        let _ = writeln!(
            md,
            "- {} / {} / round {}: {}",
            run.engine.name(),
            run.workload.name(),
            run.round + 1,
            run.error.as_deref().unwrap_or_default()
        );
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    #[test]
    fn grouping() {
        assert_eq!(super::grouped(1_234_567.0, 0), "1,234,567");
        assert_eq!(super::grouped(999.5, 1), "999.5");
        assert_eq!(super::grouped(-12_345.25, 2), "-12,345.25");
    }
}
