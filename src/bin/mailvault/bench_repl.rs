//! `mailvault bench replication`: the active's durable delivery with two
//! copies on loopback against the same delivery alone, how fast a copy
//! that fell behind catches up against how fast the active makes log, the
//! replication lag against the active's own commit latency, and the seed's
//! bandwidth against the raw disk: each a ratio from one run.

use crate::bench;
use crate::deliver::{self, Mix, Plan};
use crate::error::{CliError, Result};
use crate::histogram::Histogram;
use crate::output;
use crate::raw::RawDisk;
use crate::repl_cmds::serve_loop;
use crate::thread_cpu;
use clap::Args;
use mailvault::log::Lsn;
use mailvault::mailbox::{Store, StoreOptions};
use mailvault::repl::{ClusterKey, CopyRegistry, Follower};
use mailvault::vfs::{OsVfs, SharedVfs};
use parking_lot::Mutex;
use serde::Serialize;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchReplicationArgs {
    /// Directory for the stores; must be empty or absent, and is kept.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Where the copies' stores go [default: beside the active, in DIR].
    /// Another file system (another disk, or tmpfs) stands in for the
    /// copies' own servers: their writes then no longer share the active's
    /// disk, only its CPU.
    #[arg(long, value_name = "DIR")]
    copies_dir: Option<PathBuf>,
    /// Concurrent durable deliveries.
    #[arg(long, value_name = "T", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: u32,
    /// Seconds of each delivery phase.
    #[arg(long, value_name = "S", default_value_t = 6.0, value_parser = bench::parse_seconds)]
    seconds: f64,
    /// The steady load the lag is measured under, as a fraction of the
    /// delivery rate alone.
    #[arg(long, value_name = "F", default_value_t = 0.25, value_parser = parse_fraction)]
    steady: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_fraction(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!("{s}: a fraction in (0, 1]")),
    }
}

#[derive(Debug, Serialize)]
struct Report {
    dir: String,
    threads: u32,
    alone_messages_per_sec: f64,
    with_copies_messages_per_sec: f64,
    /// With two copies over alone (target ≥ 0.9).
    ratio_throughput: f64,
    /// The active's log rate alone, at full load.
    active_log_mb_per_sec: f64,
    active_log_mb_per_sec_with_copies: f64,
    catch_up_mb_per_sec: f64,
    /// A copy catching up over the active making log (target ≥ 3).
    ratio_catch_up: f64,
    /// Under the steady load.
    steady_messages_per_sec: f64,
    commit_p99_ms: f64,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    /// Replication lag p99 over the commit p99 (target ≤ 2).
    ratio_lag: f64,
    seed_bytes: u64,
    seed_mb_per_sec: f64,
    raw_seq_mb_per_sec: f64,
    /// Seeding over raw sequential writes (target ≥ 0.8).
    ratio_seed: f64,
    identical: bool,
    /// Where the CPU went (seconds of CPU per message, over both cores).
    cpu: CpuSplit,
}

/// CPU per delivered message: alone, and with two copies split into the
/// active's own work, its shipping threads, and the copies (receive and
/// replay threads). On one machine the copies' share is taken from the
/// active's two cores; on separate servers it would not be.
#[derive(Debug, Serialize)]
struct CpuSplit {
    alone_ms_per_message: f64,
    with_copies_active_ms_per_message: f64,
    with_copies_ship_ms_per_message: f64,
    with_copies_copies_ms_per_message: f64,
    /// CPU seconds per second of the phase (2.0 = both cores busy).
    alone_cores_busy: f64,
    with_copies_cores_busy: f64,
}

/// Thread names of the copies' work in this process (`copy-N` receive
/// loops; replay threads, whose name the kernel cuts to 15 bytes).
const COPY_THREADS: [&str; 2] = ["copy-", "mailvault-repla"];
const SHIP_THREADS: [&str; 1] = ["mailvault-ship"];

/// Process CPU and per-thread CPU at one moment.
struct CpuMark {
    process: Duration,
    threads: std::collections::BTreeMap<String, Duration>,
    at: Instant,
}

fn cpu_mark() -> CpuMark {
    CpuMark {
        process: output::process_cpu_time(),
        threads: thread_cpu::by_name(),
        at: Instant::now(),
    }
}

/// (process, ship, copies) CPU seconds, and wall seconds, from `before` to now.
fn cpu_since(before: &CpuMark) -> (f64, f64, f64, f64) {
    let now = cpu_mark();
    let per_thread = thread_cpu::delta(&before.threads, &now.threads);
    (
        now.process.saturating_sub(before.process).as_secs_f64(),
        thread_cpu::sum_prefixed(&per_thread, &SHIP_THREADS),
        thread_cpu::sum_prefixed(&per_thread, &COPY_THREADS),
        (now.at - before.at).as_secs_f64(),
    )
}

/// A copy running on its own thread; `pause` makes it end its session.
struct RunningCopy {
    handle: std::thread::JoinHandle<std::result::Result<Follower, mailvault::repl::ReplError>>,
    pause: Arc<AtomicBool>,
    replayed: Arc<AtomicU64>,
    /// (when, replayed) samples, for the lag.
    seen: Arc<Mutex<Vec<(Instant, Lsn)>>>,
    seeded_at: Arc<Mutex<Option<Instant>>>,
}

fn start_copy(vfs: &SharedVfs, dir: PathBuf, key: &ClusterKey, addr: &str) -> Result<RunningCopy> {
    let (pause, replayed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let seen: Arc<Mutex<Vec<(Instant, Lsn)>>> = Arc::default();
    let seeded_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (vfs, key, addr) = (vfs.clone(), key.clone(), addr.to_string());
    let (p, r, s, sa) = (pause.clone(), replayed.clone(), seen.clone(), seeded_at.clone());
    let name = dir
        .file_name()
        .map_or("copy".into(), |n| n.to_string_lossy().into_owned());
    let handle = std::thread::Builder::new().name(name).spawn(move || {
        let mut copy = Follower::open(vfs, &dir, key, 32 << 20)?;
        let until = |f: &Follower| {
            let now = Instant::now();
            sa.lock().get_or_insert(now);
            let replayed = f.replayed();
            if replayed.0 > r.load(Ordering::Relaxed) {
                r.store(replayed.0, Ordering::Relaxed);
                s.lock().push((now, replayed));
            }
            p.load(Ordering::Relaxed)
        };
        copy.session(&addr, Duration::from_secs(30), Some(&until))?;
        Ok(copy)
    });
    let handle = handle.map_err(|e| CliError::msg(format!("starting a copy's thread: {e}")))?;
    Ok(RunningCopy {
        handle,
        pause,
        replayed,
        seen,
        seeded_at,
    })
}

fn finish(copy: RunningCopy) -> Result<Follower> {
    copy.pause.store(true, Ordering::Relaxed);
    copy.handle
        .join()
        .map_err(|_| CliError::msg("a copy's thread panicked"))?
        .map_err(CliError::from)
}

fn log_mb(store: &Store) -> f64 {
    store.database().pager().log().stats().bytes_written as f64 / 1e6
}

pub fn run(args: &BenchReplicationArgs) -> Result<()> {
    let (dir, _temp) = bench::bench_dir(args.dir.as_deref())?;
    // Kept afterwards, like --dir.
    let copies = match &args.copies_dir {
        Some(d) => bench::bench_dir(Some(d))?.0,
        None => dir.clone(),
    };
    let vfs: SharedVfs = Arc::new(OsVfs);
    let key = ClusterKey::new(b"bench replication cluster key, 32b")?;
    let store = Arc::new(Store::create(vfs.clone(), dir.join("active"), StoreOptions::default())?);
    let validity = deliver::ensure_mailboxes(&store, 16)?;
    let pool = deliver::pool(Mix::Realistic, 3, 600);
    let phase = Duration::from_secs_f64(args.seconds);
    let plan = |d: Duration| Plan {
        messages: None,
        duration: Some(d),
        threads: args.threads,
        mailboxes: 16,
        progress: false,
        rate: None,
    };
    let mut raw = RawDisk::new(&dir, 4096)?;
    let raw_floor = raw.round(Duration::from_secs(1))?;
    raw.close()?;

    // Alone.
    let alone_from = log_mb(&store);
    tracing::info!("phase: full load alone");
    let alone_mark = cpu_mark();
    let alone = deliver::deliver(&store, &pool, &validity, &plan(phase), None)?;
    let (alone_cpu, _, _, alone_wall) = cpu_since(&alone_mark);
    let alone_rate = alone.messages as f64 / alone.elapsed.as_secs_f64();
    // How fast the active makes log at full load, with nothing else running.
    let alone_log_rate = (log_mb(&store) - alone_from) / alone.elapsed.as_secs_f64();

    // The listener, then two copies: the first one's seed is timed.
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| CliError::msg(format!("listening: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::msg(format!("listening: {e}")))?
        .to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let registry = Arc::new(CopyRegistry::with_retention_cap(16 << 30));
    let server = {
        let source: Arc<dyn mailvault::repl::ShipSource> = store.clone();
        let (key, stop, registry) = (key.clone(), stop.clone(), registry.clone());
        std::thread::spawn(move || serve_loop(&source, listener, &key, &stop, &registry, &Default::default()))
    };
    let seed_bytes = u64::from(store.database().pager().page_count()) * store.database().pager().page_size() as u64;
    let seed_start = Instant::now();
    let first = start_copy(&vfs, copies.join("copy-0"), &key, &addr)?;
    while first.seeded_at.lock().is_none() && !first.handle.is_finished() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let seed_secs = first
        .seeded_at
        .lock()
        .map_or(f64::NAN, |t| (t - seed_start).as_secs_f64());
    let second = start_copy(&vfs, copies.join("copy-1"), &key, &addr)?;
    let target = store.database().pager().log().durable_lsn();
    while (first.replayed.load(Ordering::Relaxed) < target.0 || second.replayed.load(Ordering::Relaxed) < target.0)
        && !first.handle.is_finished()
        && !second.handle.is_finished()
    {
        std::thread::sleep(Duration::from_millis(5));
    }

    // With two copies at full load: the throughput.
    let log_before = log_mb(&store);
    tracing::info!("phase: full load with two copies");
    let with_mark = cpu_mark();
    let with = deliver::deliver(&store, &pool, &validity, &plan(phase), None)?;
    let (with_cpu, ship_cpu, copies_cpu, with_wall) = cpu_since(&with_mark);
    tracing::info!("phase: steady load with two copies");
    let with_rate = with.messages as f64 / with.elapsed.as_secs_f64();
    let active_log_rate = (log_mb(&store) - log_before) / with.elapsed.as_secs_f64();
    let end = store.database().pager().log().durable_lsn();
    while first.replayed.load(Ordering::Relaxed) < end.0 && !first.handle.is_finished() {
        std::thread::sleep(Duration::from_millis(2));
    }

    // With two copies under a steady load (a fraction of the rate alone):
    // the active's durable end is sampled to time the first copy's lag.
    let sampling = Arc::new(AtomicBool::new(true));
    let samples: Arc<Mutex<Vec<(Instant, Lsn)>>> = Arc::default();
    let sampler = {
        let (store, sampling, samples) = (store.clone(), sampling.clone(), samples.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                samples
                    .lock()
                    .push((Instant::now(), store.database().pager().log().durable_lsn()));
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    first.seen.lock().clear();
    let steady_plan = Plan {
        rate: Some(alone_rate * args.steady),
        ..plan(phase)
    };
    let steady = deliver::deliver(&store, &pool, &validity, &steady_plan, None)?;
    sampling.store(false, Ordering::Relaxed);
    sampler.join().map_err(|_| CliError::msg("the sampler panicked"))?;
    let end = store.database().pager().log().durable_lsn();
    while first.replayed.load(Ordering::Relaxed) < end.0 && !first.handle.is_finished() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut lag = Histogram::default();
    {
        let seen = first.seen.lock();
        for (t, lsn) in samples.lock().iter() {
            if let Some((at, _)) = seen.iter().find(|(_, r)| r >= lsn) {
                lag.record(at.saturating_duration_since(*t).as_micros() as u64);
            }
        }
    }

    // A copy away during a phase catches up afterwards: timed.
    let away = finish(second)?;
    drop(away);
    let behind_from = log_mb(&store);
    let gone = deliver::deliver(&store, &pool, &validity, &plan(phase / 2), None)?;
    let backlog_mb = log_mb(&store) - behind_from;
    let target = store.database().pager().log().durable_lsn();
    tracing::info!("phase: catch-up");
    let catch_start = Instant::now();
    let back = start_copy(&vfs, copies.join("copy-1"), &key, &addr)?;
    while back.replayed.load(Ordering::Relaxed) < target.0 && !back.handle.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let catch_secs = catch_start.elapsed().as_secs_f64();
    let _ = gone;

    let copy0 = finish(first)?;
    let copy1 = finish(back)?;
    drop((copy0, copy1));
    stop.store(true, Ordering::Relaxed);
    server.join().map_err(|_| CliError::msg("the server panicked"))??;
    store.database().checkpoint()?;
    let identical = ["copy-0", "copy-1"]
        .iter()
        .map(|c| mailvault::repl::compare(&vfs, &dir.join("active"), &copies.join(c)).map(|r| r.identical()))
        .collect::<std::result::Result<Vec<_>, _>>()?
        .iter()
        .all(|&x| x);
    let catch_up = backlog_mb / catch_secs.max(1e-9);
    let commit_p99 = steady.latency_us.quantile(0.99) / 1000.0;
    let report = Report {
        dir: dir.display().to_string(),
        threads: args.threads,
        alone_messages_per_sec: alone_rate,
        with_copies_messages_per_sec: with_rate,
        ratio_throughput: with_rate / alone_rate.max(1e-9),
        active_log_mb_per_sec: alone_log_rate,
        active_log_mb_per_sec_with_copies: active_log_rate,
        catch_up_mb_per_sec: catch_up,
        ratio_catch_up: catch_up / alone_log_rate.max(1e-9),
        steady_messages_per_sec: steady.messages as f64 / steady.elapsed.as_secs_f64(),
        commit_p99_ms: commit_p99,
        lag_p50_ms: lag.quantile(0.5) / 1000.0,
        lag_p99_ms: lag.quantile(0.99) / 1000.0,
        ratio_lag: lag.quantile(0.99) / 1000.0 / commit_p99.max(1e-9),
        seed_bytes,
        seed_mb_per_sec: seed_bytes as f64 / seed_secs / 1e6,
        raw_seq_mb_per_sec: raw_floor.seq_mb_per_sec,
        ratio_seed: seed_bytes as f64 / seed_secs / 1e6 / raw_floor.seq_mb_per_sec.max(1e-9),
        identical,
        cpu: {
            let per = |cpu: f64, n: u64| 1e3 * cpu / (n.max(1) as f64);
            CpuSplit {
                alone_ms_per_message: per(alone_cpu, alone.messages),
                with_copies_active_ms_per_message: per(with_cpu - ship_cpu - copies_cpu, with.messages),
                with_copies_ship_ms_per_message: per(ship_cpu, with.messages),
                with_copies_copies_ms_per_message: per(copies_cpu, with.messages),
                alone_cores_busy: alone_cpu / alone_wall.max(1e-9),
                with_copies_cores_busy: with_cpu / with_wall.max(1e-9),
            }
        },
    };
    if args.json {
        return output::print_json(&report);
    }
    println!(
        "bench replication {} ({} threads, realistic mix)",
        report.dir, report.threads
    );
    output::row(
        "messages/s alone / with 2 copies",
        format!(
            "{:.0} / {:.0}",
            report.alone_messages_per_sec, report.with_copies_messages_per_sec
        ),
    );
    output::row(
        "ratio with / alone (target >= 0.9)",
        format!("{:.3}", report.ratio_throughput),
    );
    let c = &report.cpu;
    output::row(
        "CPU ms/message alone / with: active + ship + copies",
        format!(
            "{:.2} / {:.2} + {:.2} + {:.2}",
            c.alone_ms_per_message,
            c.with_copies_active_ms_per_message,
            c.with_copies_ship_ms_per_message,
            c.with_copies_copies_ms_per_message
        ),
    );
    output::row(
        "cores busy alone / with copies",
        format!("{:.2} / {:.2}", c.alone_cores_busy, c.with_copies_cores_busy),
    );
    output::row(
        "active log MB/s alone / copy catch-up MB/s",
        format!(
            "{:.1} / {:.1}",
            report.active_log_mb_per_sec, report.catch_up_mb_per_sec
        ),
    );
    output::row(
        "ratio catch-up / log made (target >= 3)",
        format!("{:.2}", report.ratio_catch_up),
    );
    output::row(
        "steady load: messages/s, commit p99 ms / lag p50, p99 ms",
        format!(
            "{:.0}: {:.2} / {:.2}, {:.2}",
            report.steady_messages_per_sec, report.commit_p99_ms, report.lag_p50_ms, report.lag_p99_ms
        ),
    );
    output::row(
        "ratio lag p99 / commit p99 (target <= 2)",
        format!("{:.2}", report.ratio_lag),
    );
    output::row(
        "seed MB/s / raw sequential MB/s",
        format!("{:.1} / {:.1}", report.seed_mb_per_sec, report.raw_seq_mb_per_sec),
    );
    output::row("ratio seed / raw (target >= 0.8)", format!("{:.3}", report.ratio_seed));
    output::row("copies identical to the active", report.identical);
    Ok(())
}
