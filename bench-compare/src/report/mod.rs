//! Turns a results file into BENCHMARKS.md (one table per workload,
//! engines as rows, medians over the rounds, ratios against the best
//! durable peer and against the raw floor) and plots.

mod plots;
mod tables;

use crate::engines::EngineKind;
use crate::error::BenchResult;
use crate::results::Campaign;
use crate::workloads::Workload;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Results file written by `run`.
    #[arg(long, default_value = "bench-compare/results.json")]
    pub results: PathBuf,
    /// Markdown file to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Directory for the plots (SVG); BENCHMARKS.md links them relative to itself.
    #[arg(long, default_value = "docs/plots")]
    pub plots: PathBuf,
    /// Hand-written analysis (why a target is missed, what would close the
    /// gap), included verbatim if the file exists, so regenerating the
    /// tables never loses it.
    #[arg(long, default_value = "bench-compare/analysis.md")]
    pub analysis: PathBuf,
}

/// Whether a larger figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// The median of one figure over the successful rounds of (engine, workload).
pub fn median_of(campaign: &Campaign, engine: EngineKind, workload: Workload, metric: &str) -> Option<f64> {
    let mut values: Vec<f64> = campaign
        .runs
        .iter()
        .filter(|r| r.engine == engine && r.workload == workload && r.error.is_none())
        .filter_map(|r| {
            if metric == "peak_rss_bytes" {
                Some(r.peak_rss_bytes as f64)
            } else {
                r.metrics.get(metric).copied()
            }
        })
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

/// The best durable peer's median and name, if any peer ran.
pub fn best_peer(campaign: &Campaign, workload: Workload, metric: &str, better: Better) -> Option<(EngineKind, f64)> {
    campaign
        .engines
        .iter()
        .filter(|e| e.is_durable_peer())
        .filter_map(|&e| median_of(campaign, e, workload, metric).map(|v| (e, v)))
        .reduce(|a, b| {
            let b_wins = match better {
                Better::Higher => b.1 > a.1,
                Better::Lower => b.1 < a.1,
            };
            if b_wins { b } else { a }
        })
}

/// How many times better `value` is than `reference` (above 1: better).
pub fn advantage(value: f64, reference: f64, better: Better) -> f64 {
    match better {
        Better::Higher => value / reference,
        Better::Lower => reference / value,
    }
}

pub fn write(args: &ReportArgs) -> BenchResult<()> {
    let campaign = Campaign::load(&args.results)?;
    std::fs::create_dir_all(&args.plots)?;
    let plot_files = plots::draw(&campaign, &args.plots)?;
    let analysis = std::fs::read_to_string(&args.analysis).ok();
    let markdown = render(&campaign, args, &plot_files, analysis.as_deref());
    std::fs::write(&args.out, markdown)?;
    eprintln!(
        "wrote {} and {} plots in {}",
        args.out.display(),
        plot_files.len(),
        args.plots.display()
    );
    Ok(())
}

/// A path to a plot as BENCHMARKS.md links it.
fn relative_to_out(args: &ReportArgs, plot: &std::path::Path) -> String {
    let base = args.out.parent().unwrap_or(std::path::Path::new(""));
    plot.strip_prefix(base).unwrap_or(plot).display().to_string()
}

fn render(campaign: &Campaign, args: &ReportArgs, plot_files: &[PathBuf], analysis: Option<&str>) -> String {
    let mut md = String::new();
    let p = &campaign.params;
    let _ = writeln!(
        md,
        "# Benchmarks: mailvault and the engines a user would pick instead\n"
    );
    let _ = writeln!(
        md,
        "Generated from `{}` by `cargo run --release -p mailvault-bench-compare -- report`; \
         the tables are rewritten on every run of it, the analysis comes from `{}`.\n",
        args.results.display(),
        args.analysis.display()
    );
    let _ = writeln!(md, "## Setting\n");
    let m = &campaign.machine;
    let _ = writeln!(
        md,
        "- Date: {} (mailvault commit `{}`)",
        campaign.date, campaign.mailvault_commit
    );
    let _ = writeln!(
        md,
        "- Machine: {} × {}, {:.1} GiB RAM, Linux {}, {}",
        m.cpus, m.cpu, m.memory_gib, m.kernel, m.filesystem
    );
    let versions: Vec<String> = campaign.versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(md, "- Versions: {}", versions.join(", "));
    let _ = writeln!(md, "- Reproduce: `{}`", campaign.command);
    let _ = writeln!(
        md,
        "- Then: `cargo run --release -p mailvault-bench-compare -- report --results {}`",
        args.results.display()
    );
    let _ = writeln!(
        md,
        "- Sizes: timed phases of {} s; {} messages ingested; {} records bulk-loaded; {} records read; \
         a folder of {} messages; seed {}; {} rounds\n",
        p.seconds, p.ingest_messages, p.bulk_records, p.read_records, p.folder_messages, p.seed, campaign.rounds
    );
    md.push_str(METHOD);
    md.push('\n');
    for plot in plot_files {
        let name = plot.file_stem().and_then(|s| s.to_str()).unwrap_or("plot");
        let _ = writeln!(md, "![{name}]({})\n", relative_to_out(args, plot));
    }
    tables::targets(&mut md, campaign);
    tables::workloads(&mut md, campaign);
    tables::failures(&mut md, campaign);
    if let Some(text) = analysis {
        let _ = writeln!(md, "## Analysis\n");
        md.push_str(text.trim_end());
        md.push('\n');
    }
    md
}

const METHOD: &str = "\
## Method

Every engine runs with its defaults and the durability the issue names:
mailvault's defaults (`Durability::Durable`: a commit returns after its log
record is fdatasynced; concurrent committers go through `Database::write`
or `Store::append`, which combine writers); SQLite (rusqlite, bundled) in
WAL mode with `synchronous=FULL`, and a second row with `NORMAL`, which can
lose the last commits at a power cut and is therefore not counted as a
durable peer; redb with `Durability::Immediate`; fjall with write batches
committed with `PersistMode::SyncAll`; RocksDB (`DB::open_default`) with
`WriteOptions::set_sync(true)`; and the raw floor, one pwrite plus one
fdatasync per durable write on a preallocated file, no engine at all.
SQLite's writes go through one connection behind a mutex (what an
application does rather than spin on SQLITE_BUSY), its reads through a pool
of connections.

Compression: by default mailvault compresses a body of one 16 KiB chunk
(most mail) as one LZ4 block, and a longer one chunk by chunk: base64 lines
packed to the bytes they encode, other text with LZ4, raw where nothing
shrinks; SQLite and redb store bodies as given; fjall compresses its deeper
LSM levels with LZ4 by default and RocksDB its blocks with Snappy by
default (both are what a user gets without asking). The key-value
workloads' values are random bytes, which no engine can compress.

Schema: in SQLite, message metadata in a `WITHOUT ROWID` table keyed by
(mailbox, folder, UID) and bodies in a table with the same primary key; in
the key-value engines, one table of composite keys (a metadata key and a
body key per message, so a folder's metadata is one prefix scan). The
workload hands out UIDs (one writer per mailbox), so every engine stores
the same rows; mailvault additionally keeps its folder counters, MODSEQs
and search indexes exact on every delivery, which the peers do not do.

Every (engine, workload, round) runs in a child process of its own, so
peak RSS (workload 8, the child's `VmHWM`) is the engine's own and no
engine shares a heap with another. Within a round each workload runs on
every engine back to back, in an order that rotates from round to round,
so the disk's drift hits all engines alike; tables give the median over
the rounds. Every workload checks what it reads back (values carry their
own index and version; bodies are compared by digest; listings row by
row), so a broken engine fails the run instead of posting a figure.
Ratios: \"× best peer\" is how many times better than the best durable
peer (SQLite FULL, redb, fjall, RocksDB) the engine is on that figure
(above 1: better); \"× raw\" the same against the raw floor of the same
round set.

Workloads: 1, each thread commits one 1 KiB record per durable
transaction (keys in random order); 2, 16 writers each deliver their share
of messages from mailvault's seeded realistic-mix generator (60 % 2–8 KiB
text, 30 % 8–64 KiB HTML, 9 % 64 KiB–1 MiB and 1 % 1–10 MiB with
attachments), one durable transaction per message, MB/s of message bytes
given; 3, one transaction of small records (16-byte key, 32-byte value),
timed until durable; 4, random point reads of 100-byte values from a warm
cache (every record read once before the clock starts); 5, the median time
to list the metadata of a folder (UID, flags, internal date, size) whose
messages are interleaved with as many in a second folder, then bodies
fetched by random UID; 6, 8 threads, each operation a random read (90 %)
or a durable overwrite (10 %); 7, the bytes the ingest run leaves on disk
after a clean close (allocated blocks, as `du` counts them: preallocated
log files count in full); 8, each run's peak RSS.
";
