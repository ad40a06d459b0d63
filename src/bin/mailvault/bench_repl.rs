//! `mailvault bench replication`: the active's durable delivery with two
//! copies on loopback against the same delivery alone, how fast a copy
//! that fell behind catches up against how fast the active makes log, the
//! replication lag against the active's own commit latency, and the seed's
//! bandwidth against the raw disk: each a ratio from one run.

use crate::bench;
use crate::bench_repl_report;
use crate::bench_repl_report::{CpuSplit, Report};
use crate::deliver::{self, Mix, Plan};
use crate::error::{CliError, Result};
use crate::histogram::Histogram;
use crate::output;
use crate::raw::RawDisk;
use crate::repl_cmds::serve_loop;
use crate::thread_cpu;
use clap::Args;
use mailvault::log::Lsn;
use mailvault::mailbox::workload::GeneratedMessage;
use mailvault::mailbox::{Store, StoreOptions};
use mailvault::repl::{ClusterKey, CopyRegistry, Follower};
use mailvault::vfs::{OsVfs, SharedVfs};
use parking_lot::Mutex;
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
    /// Rounds of full load: the twin store alone, then the active with two
    /// copies, each a phase of --seconds.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
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

/// Thread names of the copies' work in this process (`copy-N` receive
/// loops; replay threads, whose name the kernel cuts to 15 bytes; the
/// copies' page spills, which only a passive pager runs).
const COPY_THREADS: [&str; 3] = ["copy-", "mailvault-repla", "mailvault-spill"];
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
        let mut copy = Follower::open(vfs, &dir, key, mailvault::pager::PagerOptions::default().cache_bytes)?;
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

/// One full-load phase: what was delivered, the log it made, and where the
/// CPU went (process, ship threads, copies' threads; seconds) over its wall time.
struct LoadPhase {
    delivered: deliver::Delivered,
    log_mb: f64,
    cpu: f64,
    ship_cpu: f64,
    copies_cpu: f64,
    wall: f64,
}

fn full_load(store: &Store, pool: &[GeneratedMessage], validity: &[u32], plan: &Plan) -> Result<LoadPhase> {
    let from = log_mb(store);
    let mark = cpu_mark();
    let delivered = deliver::deliver(store, pool, validity, plan, None)?;
    let (cpu, ship_cpu, copies_cpu, wall) = cpu_since(&mark);
    Ok(LoadPhase {
        delivered,
        log_mb: log_mb(store) - from,
        cpu,
        ship_cpu,
        copies_cpu,
        wall,
    })
}

/// Totals of several phases: (messages, seconds, log MB, cpu, ship, copies, wall).
fn totals(phases: &[LoadPhase]) -> (u64, f64, f64, f64, f64, f64, f64) {
    phases.iter().fold((0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), |t, p| {
        (
            t.0 + p.delivered.messages,
            t.1 + p.delivered.elapsed.as_secs_f64(),
            t.2 + p.log_mb,
            t.3 + p.cpu,
            t.4 + p.ship_cpu,
            t.5 + p.copies_cpu,
            t.6 + p.wall,
        )
    })
}

/// Waits until every copy has replayed `store`'s durable end (or one ended).
fn wait_caught_up(store: &Store, copies: &[&RunningCopy]) {
    let target = store.database().pager().log().durable_lsn();
    while copies
        .iter()
        .any(|c| c.replayed.load(Ordering::Relaxed) < target.0 && !c.handle.is_finished())
    {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Writes a new file of `bytes` in `dir` as a seed writes one (reserved
/// ahead, 1 MiB uncached writes where the file system allows them, one
/// fdatasync at the end), removes it, and returns its MB/s. The raw floor
/// overwrites blocks written before; a seed writes blocks new to the file,
/// which this virtual disk writes about a third slower.
fn fresh_file_floor(vfs: &SharedVfs, dir: &std::path::Path, bytes: u64) -> Result<f64> {
    use mailvault::vfs::{OpenMode, UNCACHED_ALIGN};
    let path = dir.join("fresh-file-floor.tmp");
    let io = |e: std::io::Error| CliError::msg(format!("{}: {e}", path.display()));
    const BLOCK: usize = 1 << 20;
    let mut storage = vec![0x5au8; BLOCK + UNCACHED_ALIGN];
    let skip = storage.as_ptr().align_offset(UNCACHED_ALIGN);
    let block = &mut storage[skip..skip + BLOCK];
    let start = Instant::now();
    let file = vfs.open(&path, OpenMode::CreateNew).map_err(io)?;
    let uncached = vfs.open_uncached(&path).map_err(io)?;
    let mut at = 0u64;
    while at < bytes {
        if at.is_multiple_of(64 << 20) {
            file.reserve((at + (64 << 20)).min(bytes.next_multiple_of(BLOCK as u64)))
                .map_err(io)?;
        }
        block[..8].copy_from_slice(&at.to_le_bytes());
        match &uncached {
            Some(direct) => direct.write_at(block, at).map_err(io)?,
            None => file.write_at(block, at).map_err(io)?,
        }
        at += BLOCK as u64;
    }
    file.sync_data().map_err(io)?;
    let secs = start.elapsed().as_secs_f64();
    drop((file, uncached));
    vfs.remove(&path).map_err(io)?;
    Ok(at as f64 / secs.max(1e-9) / 1e6)
}

/// Waits until the process is idle: its background work (checkpoints of
/// either store, the copies' replay and checkpoints) done, so that a phase
/// is not charged for the one before it. Idle: under 5 % of one core over
/// 100 ms; gives up after 20 s.
fn quiesce() {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let before = output::process_cpu_time();
        std::thread::sleep(Duration::from_millis(100));
        if output::process_cpu_time().saturating_sub(before) < Duration::from_millis(5) {
            return;
        }
    }
    tracing::warn!("the process did not go idle between phases");
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
    // Two actives fed the same load in turn: "twin" never has copies, "active"
    // has two. Alternating them, round after round, gives both the same
    // store size and the same moments of the disk's drift.
    let store = Arc::new(Store::create(vfs.clone(), dir.join("active"), StoreOptions::default())?);
    // The twin does the active's work without copies: an active whose log
    // copies hold cannot write bodies once, so neither does the twin (a
    // store nobody follows does, and is faster: README, ingest).
    let twin_options = StoreOptions {
        write_large_values_once: false,
        ..StoreOptions::default()
    };
    let twin = Store::create(vfs.clone(), dir.join("twin"), twin_options)?;
    let validity = deliver::ensure_mailboxes(&store, 16)?;
    let twin_validity = deliver::ensure_mailboxes(&twin, 16)?;
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
    let first = start_copy(&vfs, copies.join("copy-0"), &key, &addr)?;
    let second = start_copy(&vfs, copies.join("copy-1"), &key, &addr)?;

    // Full load: the twin alone, then the active with its two copies, in
    // rounds; before every phase the copies are caught up and the process
    // is idle.
    let (mut alone, mut with) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        wait_caught_up(&store, &[&first, &second]);
        quiesce();
        tracing::info!(round, "phase: full load alone");
        alone.push(full_load(&twin, &pool, &twin_validity, &plan(phase))?);
        wait_caught_up(&store, &[&first, &second]);
        quiesce();
        tracing::info!(round, "phase: full load with two copies");
        with.push(full_load(&store, &pool, &validity, &plan(phase))?);
    }
    drop(twin);
    let (alone_n, alone_secs, alone_log, alone_cpu, _, _, alone_wall) = totals(&alone);
    let (with_n, with_secs, with_log, with_cpu, ship_cpu, copies_cpu, with_wall) = totals(&with);
    let alone_rate = alone_n as f64 / alone_secs.max(1e-9);
    let with_rate = with_n as f64 / with_secs.max(1e-9);
    // How fast an active makes log at full load, with nothing else running.
    let alone_log_rate = alone_log / alone_secs.max(1e-9);
    let active_log_rate = with_log / with_secs.max(1e-9);
    wait_caught_up(&store, &[&first]);

    // With two copies under a steady load (a fraction of the rate alone):
    // the active's durable end is sampled to time the first copy's lag.
    quiesce();
    tracing::info!("phase: steady load with two copies");
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
    quiesce();
    tracing::info!("phase: catch-up");
    let catch_start = Instant::now();
    let back = start_copy(&vfs, copies.join("copy-1"), &key, &addr)?;
    while back.replayed.load(Ordering::Relaxed) < target.0 && !back.handle.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let catch_secs = catch_start.elapsed().as_secs_f64();
    let _ = gone;

    // Seeding: a third copy, empty, seeded from the active as it is now.
    let seed_bytes = u64::from(store.database().pager().page_count()) * store.database().pager().page_size() as u64;
    quiesce();
    tracing::info!("phase: seed");
    let seed_start = Instant::now();
    let third = start_copy(&vfs, copies.join("copy-2"), &key, &addr)?;
    while third.seeded_at.lock().is_none() && !third.handle.is_finished() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let seed_secs = third
        .seeded_at
        .lock()
        .map_or(f64::NAN, |t| (t - seed_start).as_secs_f64());
    wait_caught_up(&store, &[&third]);
    // After the seed, not before, so that neither finds the other's blocks
    // freed just before.
    quiesce();
    let fresh_file_mb_per_sec = fresh_file_floor(&vfs, &copies, seed_bytes)?;

    let copy0 = finish(first)?;
    let copy1 = finish(back)?;
    let copy2 = finish(third)?;
    drop((copy0, copy1, copy2));
    stop.store(true, Ordering::Relaxed);
    server.join().map_err(|_| CliError::msg("the server panicked"))??;
    store.database().checkpoint()?;
    let identical = ["copy-0", "copy-1", "copy-2"]
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
        fresh_file_mb_per_sec,
        ratio_seed_vs_fresh_file: seed_bytes as f64 / seed_secs / 1e6 / fresh_file_mb_per_sec.max(1e-9),
        identical,
        rounds: args.rounds,
        ratio_throughput_per_round: alone
            .iter()
            .zip(&with)
            .map(|(a, w)| {
                let rate = |p: &LoadPhase| p.delivered.messages as f64 / p.delivered.elapsed.as_secs_f64().max(1e-9);
                rate(w) / rate(a).max(1e-9)
            })
            .collect(),
        cpu: {
            let per = |cpu: f64, n: u64| 1e3 * cpu / (n.max(1) as f64);
            CpuSplit {
                alone_ms_per_message: per(alone_cpu, alone_n),
                with_copies_active_ms_per_message: per(with_cpu - ship_cpu - copies_cpu, with_n),
                with_copies_ship_ms_per_message: per(ship_cpu, with_n),
                with_copies_copies_ms_per_message: per(copies_cpu, with_n),
                alone_cores_busy: alone_cpu / alone_wall.max(1e-9),
                with_copies_cores_busy: with_cpu / with_wall.max(1e-9),
            }
        },
    };
    if args.json {
        return output::print_json(&report);
    }
    bench_repl_report::print(&report);
    Ok(())
}
