//! `mailvault bench ingest` and `bench read`: the mailbox store on the
//! realistic mix, each against the raw disk measured in the same run and
//! the same directory.

use crate::bench;
use crate::deliver::{self, Mix, Plan};
use crate::error::{Context, Result};
use crate::output;
use crate::raw::RawDisk;
use crate::store_cmds::{self, LoadReport};
use clap::Args;
use mailvault::mailbox::workload::{MailGenerator, MessageKind};
use mailvault::mailbox::{AppendOptions, MailView, Quota, Store, StoreOptions, TextCompression, UidSet};
use mailvault::vfs::OsVfs;
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Directory for the store; must be empty or absent, and is kept.
    /// Default: a temporary directory in the current directory, removed at the end.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Concurrent durable deliveries.
    #[arg(long, value_name = "T", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: u32,
    /// Seconds of delivery, over all rounds.
    #[arg(long, value_name = "S", default_value_t = 12.0, value_parser = bench::parse_seconds)]
    seconds: f64,
    /// Rounds of raw sequential phase then delivery phase.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Mailboxes the messages are spread over.
    #[arg(long, value_name = "M", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    mailboxes: u32,
    /// The realistic mix, or a fixed message size in bytes.
    #[arg(long, value_name = "realistic|BYTES", default_value = "realistic", value_parser = deliver::parse_mix)]
    mix: Mix,
    /// Messages generated before the run and delivered in turn.
    #[arg(long, value_name = "N", default_value_t = 800, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pool: u64,
    /// Compress the text of long bodies with zstd at this level instead of
    /// the store's default, LZ4.
    #[arg(long, value_name = "L", allow_hyphen_values = true)]
    level: Option<i32>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct IngestReport {
    dir: String,
    threads: u32,
    rounds: Vec<IngestRound>,
    raw_seq_mb_per_sec: f64,
    ingest: LoadReport,
    /// Median over rounds of logical MB/s against the raw sequential MB/s.
    ratio_logical_vs_raw_seq: f64,
    data_file_bytes: u64,
    log_dir_bytes: u64,
    /// Data file size against the bytes delivered (after a checkpoint).
    ratio_data_file_vs_logical: f64,
    /// "lz4", or "zstd N".
    text_compression: String,
}

#[derive(Debug, Serialize)]
struct IngestRound {
    raw_seq_mb_per_sec: f64,
    logical_mb_per_sec: f64,
    ratio: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn ingest(args: &BenchIngestArgs) -> Result<()> {
    let (dir, _temp) = bench::bench_dir(args.dir.as_deref())?;
    let opts = StoreOptions {
        text_compression: args.level.map_or(TextCompression::default(), TextCompression::Zstd),
        ..StoreOptions::default()
    };
    let store = Store::create(Arc::new(OsVfs), &dir, opts.clone())?;
    let validity = deliver::ensure_mailboxes(&store, args.mailboxes)?;
    let pool = deliver::pool(args.mix, 7, args.pool as usize);
    let mut raw = RawDisk::new(&dir, 4096)?;
    let slice = Duration::from_secs_f64(args.seconds / f64::from(args.rounds));
    let raw_phase = Duration::from_secs_f64((args.seconds / f64::from(args.rounds) / 2.0).clamp(0.5, 2.0));
    let before = store.database().pager().log().stats().bytes_written;
    let mut total = deliver::Delivered::default();
    let mut rounds = Vec::new();
    for _ in 0..args.rounds {
        let floor = raw.round(raw_phase)?;
        let plan = Plan {
            messages: None,
            duration: Some(slice),
            threads: args.threads,
            mailboxes: args.mailboxes,
            progress: !args.json,
            rate: None,
        };
        let d = deliver::deliver(&store, &pool, &validity, &plan, None)?;
        let logical = d.raw_bytes as f64 / d.elapsed.as_secs_f64() / 1e6;
        rounds.push(IngestRound {
            raw_seq_mb_per_sec: floor.seq_mb_per_sec,
            logical_mb_per_sec: logical,
            ratio: logical / floor.seq_mb_per_sec.max(1e-9),
        });
        total.messages += d.messages;
        total.raw_bytes += d.raw_bytes;
        total.stored_bytes += d.stored_bytes;
        total.elapsed += d.elapsed;
        total.latency_us.merge(&d.latency_us);
    }
    let ingest = store_cmds::report(&store, &total, before);
    let raw_total = raw.total();
    raw.close()?;
    store.close()?;
    let data_file_bytes = std::fs::metadata(mailvault::pager::data_path(&dir)).map_or(0, |m| m.len());
    let report = IngestReport {
        dir: dir.display().to_string(),
        threads: args.threads,
        raw_seq_mb_per_sec: raw_total.seq_mb_per_sec,
        ratio_logical_vs_raw_seq: median(rounds.iter().map(|r| r.ratio).collect()),
        rounds,
        data_file_bytes,
        log_dir_bytes: deliver::dir_size(&mailvault::pager::log_dir(&dir)),
        ratio_data_file_vs_logical: data_file_bytes as f64 / ingest.logical_bytes.max(1) as f64,
        ingest,
        text_compression: match opts.text_compression {
            TextCompression::Zstd(level) => format!("zstd {level}"),
            TextCompression::Lz4 => "lz4".into(),
        },
    };
    if args.json {
        return output::print_json(&report);
    }
    outln!(
        "bench ingest {} ({} threads, text compressed with {})",
        report.dir,
        report.threads,
        report.text_compression
    );
    for (i, r) in report.rounds.iter().enumerate() {
        output::row(
            &format!("round {i}: raw seq MB/s, logical MB/s, ratio"),
            format!(
                "{:.1}  {:.1}  {:.3}",
                r.raw_seq_mb_per_sec, r.logical_mb_per_sec, r.ratio
            ),
        );
    }
    store_cmds::print_load(&report.ingest);
    output::row(
        "raw sequential MB/s (1 MiB + fdatasync)",
        format!("{:.1}", report.raw_seq_mb_per_sec),
    );
    output::row(
        "ratio logical / raw sequential (median)",
        format!("{:.3}", report.ratio_logical_vs_raw_seq),
    );
    output::row("data file bytes", report.data_file_bytes);
    output::row("log directory bytes (preallocated)", report.log_dir_bytes);
    output::row(
        "ratio data file / logical",
        format!("{:.3}", report.ratio_data_file_vs_logical),
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct BenchReadArgs {
    /// Directory for the store; must be empty or absent, and is kept.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Realistic-mix messages to read back.
    #[arg(long, value_name = "N", default_value_t = 1500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    messages: u64,
    /// Messages in the folder whose metadata is listed.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    folder_size: u64,
    /// Seconds of each read phase.
    #[arg(long, value_name = "S", default_value_t = 3.0, value_parser = bench::parse_seconds)]
    seconds: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct ReadReport {
    dir: String,
    messages: u64,
    /// Whole bodies in random order, each once, from a cold cache: the same
    /// bodies read with pread from one plain file, then from the store.
    raw_cold_read_mb_per_sec: f64,
    store_cold_read_mb_per_sec: f64,
    ratio_cold_read_vs_raw: f64,
    /// The same bodies read with pread from one plain file (warm).
    raw_read_mb_per_sec: f64,
    /// Whole bodies read from the store (warm), decompressed.
    store_read_mb_per_sec: f64,
    ratio_read_vs_raw: f64,
    folder_messages: u64,
    list_ms_median: f64,
    list_messages_per_sec: f64,
    partial_fetch_body_bytes: u64,
    partial_fetch_pages: u64,
    partial_fetch_us: f64,
}

pub fn read(args: &BenchReadArgs) -> Result<()> {
    let (dir, _temp) = bench::bench_dir(args.dir.as_deref())?;
    let store = Store::create(Arc::new(OsVfs), &dir, StoreOptions::default())?;
    let validity = deliver::ensure_mailboxes(&store, 1)?;
    store.create_mailbox("reader", Quota::default())?;
    store.create_folder("reader", "Big")?;
    let pool = deliver::pool(Mix::Realistic, 11, args.messages as usize);
    let plan = Plan {
        messages: Some(args.messages),
        duration: None,
        // One thread: message i of the pool gets UID i + 1.
        threads: 1,
        mailboxes: 1,
        progress: !args.json,
        rate: None,
    };
    deliver::deliver(&store, &pool, &validity, &plan, None)?;
    // The listing folder, filled in large transactions.
    let mut g = MailGenerator::new(5);
    let mut left = args.folder_size;
    while left > 0 {
        let n = left.min(500);
        left -= n;
        let batch: Vec<_> = (0..n).map(|_| g.message_of(MessageKind::Plain, 3000)).collect();
        store.transaction(move |tx| {
            for m in &batch {
                let opts = AppendOptions {
                    internal_date: m.internal_date,
                    ..AppendOptions::default()
                };
                tx.append("reader", "Big", &opts, &m.bytes)?;
            }
            Ok(())
        })?;
    }
    let huge = g.message_of(MessageKind::Large, 10 << 20);
    let huge_uid = store.append("reader", "INBOX", &AppendOptions::default(), &huge.bytes)?;
    store.close()?;

    // The raw side: the same bodies in one plain file, read back with pread.
    let raw_path = dir.join(".raw-bodies");
    let mut offsets = Vec::new();
    {
        let mut f = std::fs::File::create(&raw_path).context(|| format!("creating {}", raw_path.display()))?;
        let mut at = 0u64;
        for i in 0..args.messages {
            let m = &pool[(i % pool.len() as u64) as usize];
            f.write_all(&m.bytes)
                .context(|| format!("writing {}", raw_path.display()))?;
            offsets.push((at, m.bytes.len()));
            at += m.bytes.len() as u64;
        }
        f.sync_all().context(|| format!("syncing {}", raw_path.display()))?;
    }
    let raw_file = std::fs::File::open(&raw_path).context(|| format!("opening {}", raw_path.display()))?;
    let data_path = mailvault::pager::data_path(&dir);
    let data_file = std::fs::File::open(&data_path).context(|| format!("opening {}", data_path.display()))?;
    for (f, p) in [(&raw_file, &raw_path), (&data_file, &data_path)] {
        crate::raw::evict(f).context(|| format!("dropping {} from the page cache", p.display()))?;
    }
    let store = Store::open(Arc::new(OsVfs), &dir, StoreOptions::default())?;
    let order: Vec<u64> = {
        let mut g = MailGenerator::new(99);
        (0..100_000).map(|_| g.next_u64() % args.messages).collect()
    };
    let mut buf = vec![0u8; 11 << 20];
    let mut sink = Vec::with_capacity(11 << 20);
    let cold_count = (args.messages as usize).min(400);
    let rx = store.read();
    let start = Instant::now();
    let mut bytes = 0;
    for &i in &order[..cold_count] {
        sink.clear();
        bytes += rx.read_body_range("user0000", "INBOX", i as u32 + 1, 0, u64::MAX, &mut sink)?;
    }
    let store_cold_mb = bytes as f64 / start.elapsed().as_secs_f64() / 1e6;
    drop(rx);
    let start = Instant::now();
    let mut bytes = 0;
    for &i in &order[..cold_count] {
        let (off, len) = offsets[i as usize];
        raw_file
            .read_exact_at(&mut buf[..len], off)
            .context(|| format!("reading {}", raw_path.display()))?;
        bytes += len as u64;
    }
    let raw_cold_mb = bytes as f64 / start.elapsed().as_secs_f64() / 1e6;
    let phase = Duration::from_secs_f64(args.seconds);
    let timed = |f: &mut dyn FnMut(u64) -> Result<u64>| -> Result<f64> {
        // One warm-up pass, then the timed phase.
        for &i in order.iter().take(args.messages as usize) {
            f(i)?;
        }
        let (start, mut bytes, mut k) = (Instant::now(), 0u64, 0usize);
        while start.elapsed() < phase {
            bytes += f(order[k % order.len()])?;
            k += 1;
        }
        Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
    };
    let raw_mb = timed(&mut |i| {
        let (off, len) = offsets[i as usize];
        raw_file
            .read_exact_at(&mut buf[..len], off)
            .context(|| format!("reading {}", raw_path.display()))?;
        Ok(len as u64)
    })?;
    let rx = store.read();
    let store_mb = timed(&mut |i| {
        sink.clear();
        Ok(rx.read_body_range("user0000", "INBOX", i as u32 + 1, 0, u64::MAX, &mut sink)?)
    })?;
    let mut list_ms = Vec::new();
    let start = Instant::now();
    let mut listed = 0;
    while start.elapsed() < phase || list_ms.len() < 3 {
        let t = Instant::now();
        listed = rx.fetch("reader", "Big", &UidSet::all())?.len() as u64;
        list_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let list_ms_median = median(list_ms);
    let before = rx.pages_read();
    let t = Instant::now();
    let mut head = Vec::new();
    rx.read_body_range("reader", "INBOX", huge_uid, 0, 4096, &mut head)?;
    let partial_us = t.elapsed().as_secs_f64() * 1e6;
    let partial_pages = rx.pages_read() - before;
    drop(rx);
    store.close()?;
    std::fs::remove_file(&raw_path).context(|| format!("removing {}", raw_path.display()))?;
    let report = ReadReport {
        dir: dir.display().to_string(),
        messages: args.messages,
        raw_cold_read_mb_per_sec: raw_cold_mb,
        store_cold_read_mb_per_sec: store_cold_mb,
        ratio_cold_read_vs_raw: store_cold_mb / raw_cold_mb.max(1e-9),
        raw_read_mb_per_sec: raw_mb,
        store_read_mb_per_sec: store_mb,
        ratio_read_vs_raw: store_mb / raw_mb.max(1e-9),
        folder_messages: listed,
        list_ms_median,
        list_messages_per_sec: listed as f64 / (list_ms_median / 1e3).max(1e-9),
        partial_fetch_body_bytes: huge.bytes.len() as u64,
        partial_fetch_pages: partial_pages,
        partial_fetch_us: partial_us,
    };
    if args.json {
        return output::print_json(&report);
    }
    outln!("bench read {}", report.dir);
    output::row(
        "raw pread of the bodies MB/s (cold)",
        format!("{:.1}", report.raw_cold_read_mb_per_sec),
    );
    output::row(
        "store whole-body reads MB/s (cold)",
        format!("{:.1}", report.store_cold_read_mb_per_sec),
    );
    output::row(
        "ratio store / raw (cold)",
        format!("{:.3}", report.ratio_cold_read_vs_raw),
    );
    output::row(
        "raw pread of the same bodies MB/s (warm)",
        format!("{:.1}", report.raw_read_mb_per_sec),
    );
    output::row(
        "store whole-body reads MB/s (warm)",
        format!("{:.1}", report.store_read_mb_per_sec),
    );
    output::row("ratio store / raw", format!("{:.3}", report.ratio_read_vs_raw));
    output::row(
        &format!("list metadata of {} messages, ms (median)", report.folder_messages),
        format!("{:.2}", report.list_ms_median),
    );
    output::row("listed messages/s", format!("{:.0}", report.list_messages_per_sec));
    output::row(
        &format!(
            "partial fetch 4 KiB of a {} B body: pages",
            report.partial_fetch_body_bytes
        ),
        report.partial_fetch_pages,
    );
    output::row("partial fetch time us", format!("{:.0}", report.partial_fetch_us));
    Ok(())
}
