//! Replication commands: `serve` (the active side for a store at rest),
//! `follow` (a passive copy), `status` (of a copy, while `follow` runs) and
//! `compare` (two stores, page by page).

use crate::error::{CliError, Context, Result};
use crate::output;
use clap::Args;
use mailvault::mailbox::{Store, StoreOptions};
use mailvault::repl::{
    ClusterKey, CopyRegistry, CopyStatus, Follower, ReplError, ShipOptions, ShipSource, compare, serve_copy,
};
use mailvault::vfs::{OsVfs, SharedVfs};
use serde::Serialize;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::bench::parse_seconds(s.trim_end_matches('s')).map(Duration::from_secs_f64)
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Store directory.
    dir: PathBuf,
    /// Address to listen on, such as 127.0.0.1:7070.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// File holding the cluster key (16 to 1024 bytes).
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// Stop after this long [default: serve until killed].
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    linger: Option<Duration>,
    /// Most MiB of log one copy may hold back; past it, it needs a reseed.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    retention_mib: u64,
    #[command(flatten)]
    ship: ShipArgs,
}

/// How the active ships to copies.
#[derive(Debug, Args, Clone)]
pub struct ShipArgs {
    /// Most MiB/s of seed to each copy [default: unlimited].
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    seed_rate_mib: Option<u64>,
    /// Compress what is shipped with zstd at this level.
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(i32).range(1..=19))]
    compress: Option<i32>,
}

impl ShipArgs {
    pub fn options(&self) -> ShipOptions {
        ShipOptions {
            seed_rate: self.seed_rate_mib.map(|m| m << 20),
            compress: self.compress,
            ..ShipOptions::default()
        }
    }
}

/// Accepts copies on `listener` until `stop`, one thread per copy.
pub fn serve_loop(
    source: &Arc<dyn ShipSource>,
    listener: TcpListener,
    key: &ClusterKey,
    stop: &Arc<AtomicBool>,
    registry: &Arc<CopyRegistry>,
    opts: &ShipOptions,
) -> Result<()> {
    listener.set_nonblocking(true).context(|| "listening")?;
    std::thread::scope(|s| {
        while !stop.load(Ordering::Relaxed) {
            for copy in registry.enforce(source.as_ref()) {
                tracing::warn!(copy = ?&copy[..4], "a copy fell past the retention cap and needs a reseed");
            }
            match listener.accept() {
                Ok((stream, peer)) => {
                    let (source, key, stop, registry, opts) = (
                        source.clone(),
                        key.clone(),
                        stop.clone(),
                        registry.clone(),
                        opts.clone(),
                    );
                    let ship = std::thread::Builder::new().name("mailvault-ship".into());
                    let spawned = ship.spawn_scoped(s, move || {
                        let _ = stream.set_nonblocking(false);
                        match serve_copy(source.as_ref(), stream, &key, &opts, &stop, &registry) {
                            Ok(()) => tracing::info!(%peer, "a copy's session ended"),
                            Err(e) => tracing::warn!(%peer, error = %e, "a copy's session failed"),
                        }
                    });
                    if let Err(e) = spawned {
                        tracing::warn!(%peer, error = %e, "no thread for a copy's session");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(CliError::msg(format!("accepting a copy: {e}"))),
            }
        }
        Ok(())
    })
}

pub fn serve(args: &ServeArgs) -> Result<()> {
    let key = ClusterKey::from_file(&args.key_file).map_err(|e| CliError::msg(e.to_string()))?;
    let store = Arc::new(Store::open(Arc::new(OsVfs), &args.dir, StoreOptions::default())?);
    let listener = TcpListener::bind(&args.listen).context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "serving {} on {}",
        args.dir.display(),
        listener.local_addr().context(|| "listening")?
    );
    let stop = Arc::new(AtomicBool::new(false));
    // Kept in the store, so that a restarted active still holds its copies' log.
    let registry = Arc::new(CopyRegistry::persistent(
        Arc::new(OsVfs),
        args.dir.join("copies.state"),
        Some(args.retention_mib << 20),
    ));
    let restored = registry.restore(store.as_ref());
    if restored > 0 {
        eprintln!("holding the log of {restored} known copies");
    }
    if let Some(linger) = args.linger {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(linger);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let source: Arc<dyn ShipSource> = store.clone();
    serve_loop(&source, listener, &key, &stop, &registry, &args.ship.options())?;
    drop(source);
    Arc::try_unwrap(store)
        .map_err(|_| CliError::msg("a session still holds the store"))?
        .close()?;
    // Only now: the closing checkpoint must leave the log the copies hold.
    drop(registry);
    Ok(())
}

#[derive(Debug, Args)]
pub struct FollowArgs {
    /// Directory of the copy (seeded first if it holds no database).
    dir: PathBuf,
    /// The active's replication address.
    #[arg(long, value_name = "ADDR")]
    source: String,
    /// File holding the cluster key.
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// Keep reconnecting, with back-off, for this long after a failure.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_duration)]
    retry_for: Duration,
    /// A lagged copy: replay log only once it is this old here.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    replay_lag: Option<Duration>,
    /// Keep replayed log in the copy this long before removing it.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    truncation_lag: Option<Duration>,
    /// Also serve other copies from this one on ADDR: they are seeded from
    /// its data file and follow its log.
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
    /// Print the final status as JSON.
    #[arg(long)]
    json: bool,
    /// Throw the copy's database and log away first, and seed again.
    #[arg(skip)]
    reseed: bool,
}

/// The status file `follow` keeps up to date for `status`.
fn status_path(dir: &Path) -> PathBuf {
    dir.join("copy.status.json")
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct StatusJson {
    state: String,
    active_durable: String,
    inspected: String,
    replayed: String,
    copy_queue_bytes: u64,
    replay_queue_bytes: u64,
    copy_queue_generations: u32,
    replay_queue_generations: u32,
    /// How long the oldest received, unreplayed log has waited.
    replay_lag_secs: f64,
    /// Seconds since the active was last heard from, when written.
    last_heard_secs: Option<f64>,
    /// Why the copy needs a reseed, or failed.
    reason: Option<String>,
    /// Whole-database digests of the active checked, and skipped.
    digests_verified: u64,
    digests_skipped: u64,
    /// Microseconds since the epoch when written.
    updated_us: u64,
}

fn status_json(s: &CopyStatus) -> StatusJson {
    StatusJson {
        state: format!("{:?}", s.state),
        active_durable: s.active_durable.to_string(),
        inspected: s.inspected.to_string(),
        replayed: s.replayed.to_string(),
        copy_queue_bytes: s.copy_queue_bytes,
        replay_queue_bytes: s.replay_queue_bytes,
        copy_queue_generations: s.copy_queue_generations,
        replay_queue_generations: s.replay_queue_generations,
        replay_lag_secs: s.replay_lag_secs,
        last_heard_secs: s.last_heard_secs,
        reason: s.reason.clone(),
        digests_verified: s.digests_verified,
        digests_skipped: s.digests_skipped,
        updated_us: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64),
    }
}

fn write_status(dir: &Path, s: &CopyStatus) {
    let path = status_path(dir);
    let tmp = path.with_extension("json.tmp");
    if let Ok(text) = serde_json::to_vec_pretty(&status_json(s))
        && std::fs::write(&tmp, text).is_ok()
    {
        let _ = std::fs::rename(&tmp, &path);
    }
}

pub fn follow(args: &FollowArgs) -> Result<ExitCode> {
    let key = ClusterKey::from_file(&args.key_file).map_err(|e| CliError::msg(e.to_string()))?;
    let vfs: SharedVfs = Arc::new(OsVfs);
    let mut copy = Follower::open(
        vfs,
        &args.dir,
        key,
        mailvault::pager::PagerOptions::default().cache_bytes,
    )?;
    if args.reseed {
        copy.reset()?;
    }
    if let Some(lag) = args.replay_lag {
        copy.set_replay_lag(lag);
    }
    if let Some(lag) = args.truncation_lag {
        copy.set_truncation_lag(lag);
    }
    let _serving = match &args.serve {
        Some(addr) => Some(ServingCopies::start(copy.source(), addr, &args.key_file)?),
        None => None,
    };
    let mut failing_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    let mut last_write = Instant::now() - Duration::from_secs(1);
    loop {
        let dir = args.dir.clone();
        let mut publish = |f: &Follower| {
            if last_write.elapsed() >= Duration::from_millis(200) {
                write_status(&dir, &f.status());
                last_write = Instant::now();
            }
            false
        };
        let publish_cell = std::cell::RefCell::new(&mut publish);
        let until = |f: &Follower| (publish_cell.borrow_mut())(f);
        let before = (copy.replica().end(), copy.replayed());
        match copy.session(&args.source, Duration::from_secs(10), Some(&until)) {
            Ok(()) => break,
            Err(ReplError::Refused { code, reason })
                if code != mailvault::repl::auth::codes::SHUTDOWN
                    && code != mailvault::repl::auth::codes::NOT_READY =>
            {
                if code != mailvault::repl::auth::codes::NEEDS_RESEED {
                    copy.mark_failed(format!("refused by the active (code {code}): {reason}"));
                }
                write_status(&args.dir, &copy.status());
                return Err(CliError::msg(format!(
                    "the active refused this copy (code {code}): {reason}"
                )));
            }
            Err(e @ ReplError::Db(mailvault::pager::DbError::NotWritten { .. })) => {
                // The status says needs-reseed; retrying would meet the same record.
                write_status(&args.dir, &copy.status());
                return Err(CliError::msg(format!("this copy needs a reseed: {e}")));
            }
            Err(e @ ReplError::Db(mailvault::pager::DbError::Diverged { .. })) => {
                // Replaying again would meet the same digest: stop now.
                copy.mark_failed(format!("diverged from the active: {e}"));
                write_status(&args.dir, &copy.status());
                return Err(CliError::msg(format!("this copy diverged from the active: {e}")));
            }
            Err(e) if copy.status().state == mailvault::repl::CopyState::Failed => {
                // A failed write or sync stopped the copy's log: no retry.
                write_status(&args.dir, &copy.status());
                return Err(CliError::msg(format!("this copy stopped: {e}")));
            }
            Err(e) => {
                // A session that moved the copy forward resets the back-off.
                if (copy.replica().end(), copy.replayed()) != before {
                    failing_since = None;
                    backoff = Duration::from_millis(100);
                }
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= args.retry_for {
                    copy.mark_failed(format!("gave up after {:?}: {e}", args.retry_for));
                    write_status(&args.dir, &copy.status());
                    return Err(CliError::msg(format!("giving up after {:?}: {e}", args.retry_for)));
                }
                tracing::warn!(error = %e, ?backoff, "replication session failed; reconnecting");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    let status = copy.status();
    write_status(&args.dir, &status);
    if args.json {
        output::print_json(&status_json(&status))?;
    } else {
        outln!(
            "copy {}: {:?}, replayed to {}",
            args.dir.display(),
            status.state,
            status.replayed
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `follow --serve`: this copy serving others until `follow` ends.
struct ServingCopies {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl ServingCopies {
    fn start(source: Arc<mailvault::repl::PassiveSource>, addr: &str, key_file: &Path) -> Result<ServingCopies> {
        let key = ClusterKey::from_file(key_file).map_err(|e| CliError::msg(e.to_string()))?;
        let listener = TcpListener::bind(addr).context(|| format!("listening on {addr}"))?;
        eprintln!("serving copies on {}", listener.local_addr().context(|| "listening")?);
        let stop = Arc::new(AtomicBool::new(false));
        let registry = Arc::new(CopyRegistry::with_retention_cap(4 << 30));
        let source: Arc<dyn ShipSource> = source;
        let st = stop.clone();
        let thread =
            std::thread::spawn(move || serve_loop(&source, listener, &key, &st, &registry, &ShipOptions::default()));
        Ok(ServingCopies {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ServingCopies {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Err(e)) => tracing::warn!(error = %e, "serving copies failed"),
                Err(_) => tracing::warn!("the thread serving copies panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    follow: FollowArgs,
}

/// `seed`: a forced reseed, then following as `follow` does.
pub fn seed(args: &SeedArgs) -> Result<ExitCode> {
    let follow = FollowArgs {
        dir: args.follow.dir.clone(),
        source: args.follow.source.clone(),
        key_file: args.follow.key_file.clone(),
        retry_for: args.follow.retry_for,
        replay_lag: args.follow.replay_lag,
        truncation_lag: args.follow.truncation_lag,
        serve: args.follow.serve.clone(),
        json: args.follow.json,
        reseed: true,
    };
    self::follow(&follow)
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Directory of a copy that `follow` runs (or ran) in.
    dir: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn status(args: &StatusArgs) -> Result<()> {
    let path = status_path(&args.dir);
    let text = std::fs::read(&path).context(|| format!("reading {} (is `follow` running here?)", path.display()))?;
    let s: StatusJson = serde_json::from_slice(&text).context(|| format!("parsing {}", path.display()))?;
    if args.json {
        return output::print_json(&s);
    }
    outln!("copy {}", args.dir.display());
    output::row("state", &s.state);
    output::row("active's durable end (last heard)", &s.active_durable);
    output::row("inspected (written, checked, synced)", &s.inspected);
    output::row("replayed", &s.replayed);
    output::row(
        "copy queue (bytes, generations)",
        format!("{}, {}", s.copy_queue_bytes, s.copy_queue_generations),
    );
    output::row(
        "replay queue (bytes, generations)",
        format!("{}, {}", s.replay_queue_bytes, s.replay_queue_generations),
    );
    output::row("replay lag (seconds)", format!("{:.3}", s.replay_lag_secs));
    output::row(
        "whole-database digests (verified, skipped)",
        format!("{}, {}", s.digests_verified, s.digests_skipped),
    );
    if let Some(heard) = s.last_heard_secs {
        output::row("active last heard (seconds before update)", format!("{heard:.3}"));
    }
    if let Some(reason) = &s.reason {
        output::row("reason", reason);
    }
    output::row("updated", output::format_unix_us(s.updated_us));
    Ok(())
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    dir_a: PathBuf,
    dir_b: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run_compare(args: &CompareArgs) -> Result<ExitCode> {
    let vfs: SharedVfs = Arc::new(OsVfs);
    let c = compare(&vfs, &args.dir_a, &args.dir_b)?;
    #[derive(Serialize)]
    struct Out {
        identical: bool,
        same_database: bool,
        pages_compared: u32,
        page_counts: (u32, u32),
        redo: (String, String),
        differing: Vec<u32>,
    }
    let out = Out {
        identical: c.identical(),
        same_database: c.same_database,
        pages_compared: c.pages,
        page_counts: c.page_counts,
        redo: (c.redo.0.to_string(), c.redo.1.to_string()),
        differing: c.differing.clone(),
    };
    if args.json {
        output::print_json(&out)?;
    } else if out.identical {
        outln!("identical: {} pages", out.pages_compared);
    } else if !out.same_database {
        outln!("different databases");
    } else {
        outln!(
            "differ: {} of {} pages: {:?}",
            out.differing.len(),
            out.pages_compared,
            out.differing
        );
    }
    Ok(crate::check::exit_code(out.identical))
}
