//! The recovery phase of `bench kv`: reopen the database with checkpoints
//! held off, write a deep log of one-put transactions, stop without a checkpoint (as a crash does,
//! minus the torn tail), drop the log from the OS page cache and time
//! `Database::open`. The disk's cold sequential read of a file of the same
//! size, measured just before and just after, is the floor; reading and
//! decoding the same log records with the log reader, also cold, shows how
//! much of the open is spent getting the log in.

use crate::bench::{fill_body, stamp};
use crate::error::{CliError, Context, Result};
use crate::kv_keys::{KeySpace, Rng};
use crate::kv_phases::new_table;
use crate::kv_report::Recovery;
use crate::raw;
use mailvault::log::{LogReader, Lsn};
use mailvault::pager::log_dir;
use mailvault::pager::redo::DbRecord;
use mailvault::txn::{Database, DbOptions, Durability, Table};
use mailvault::vfs::OsVfs;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// `opts` are the bench's options; the build uses them with checkpoints by
/// depth off and a cache large enough that dirty pages never force one.
pub fn run(dir: &Path, opts: &DbOptions, value_size: usize, target: u64) -> Result<Recovery> {
    let build_opts = DbOptions {
        checkpoint_depth: u64::MAX,
        cache_bytes: opts.cache_bytes.max(usize::try_from(4 * target).unwrap_or(usize::MAX)),
        ..opts.clone()
    };
    let build = Instant::now();
    let db = Database::open(Arc::new(OsVfs), dir, build_opts)?;
    let table = new_table(&db, "recovery")?;
    let log = db.pager().log();
    // Where this open's replay started: a record boundary just before the
    // log the phase writes (the next open replays from just after it).
    let (first, from) = (log.stats().record_bytes, db.recovery_stats().from);
    lazy_puts(&db, &table, value_size, || log.stats().record_bytes - first >= target)?;
    let to = log.flush()?;
    let written = log.stats().record_bytes - first;
    // A stop without checkpoint: the background thread first, so that it
    // cannot start one; dropping the database then closes nothing cleanly.
    db.pager().stop_background();
    drop(db);
    let build_sec = build.elapsed().as_secs_f64();
    let before = raw::cold_read_mb_per_sec(dir, written)?;
    evict_dir(&log_dir(dir))?;
    let log_read = read_log(dir, from, to, opts.page_size)
        .inspect_err(|e| tracing::warn!(error = %e, "the cold read of the log with the log reader failed"))
        .ok();
    evict_dir(&log_dir(dir))?;
    tracing::info!(bytes = written, "timing recovery");
    let start = Instant::now();
    let db = Database::open(Arc::new(OsVfs), dir, opts.clone())?;
    let open_sec = start.elapsed().as_secs_f64();
    let stats = db.recovery_stats().clone();
    db.close()?;
    let after = raw::cold_read_mb_per_sec(dir, written)?;
    Ok(Recovery {
        build_sec,
        records: stats.records,
        applied: stats.applied,
        skipped: stats.skipped,
        flushes: stats.flushes,
        log_bytes: stats.log_bytes,
        from: stats.from.to_string(),
        to: stats.to.to_string(),
        open_sec,
        mb_per_sec: stats.log_bytes as f64 / 1e6 / open_sec.max(1e-9),
        replay_sec: stats.replay_secs,
        replay_mb_per_sec: stats.log_bytes as f64 / 1e6 / stats.replay_secs.max(1e-9),
        log_open_sec: stats.log_open_secs,
        checkpoint_sec: stats.checkpoint_secs,
        raw_read_mb_per_sec: (before + after) / 2.0,
        raw_read_runs_mb_per_sec: [before, after],
        raw_read_bytes: written.max(1 << 20),
        log_read_bytes: log_read.map(|(bytes, _)| bytes),
        log_read_mb_per_sec: log_read.map(|(bytes, secs)| bytes as f64 / 1e6 / secs.max(1e-9)),
        evicted: "the log files",
    })
}

/// One put of a random new key per transaction, committed lazily (the log
/// a busy server leaves), until `done`.
fn lazy_puts(db: &Database, table: &Table, value_size: usize, mut done: impl FnMut() -> bool) -> Result<()> {
    let keys = KeySpace::default();
    let mut rng = Rng::new(0x7265_636f);
    let mut value = vec![0u8; value_size];
    fill_body(&mut value, 0);
    let mut key = Vec::with_capacity(64);
    let mut n = 0u64;
    while !done() {
        keys.allocate(&mut rng, &mut key);
        stamp(&mut value, n, 0);
        let mut tx = db.begin_write();
        tx.put(table, &key, &value)?;
        tx.commit_with(Durability::Lazy)?;
        n += 1;
    }
    Ok(())
}

/// Reads the records from `from` to `to` with the library's log reader and
/// decodes each as a database record, as replay does before it applies the
/// changes; returns the bytes and the seconds.
fn read_log(dir: &Path, from: Lsn, to: Lsn, page_size: usize) -> Result<(u64, f64)> {
    let start = Instant::now();
    let mut bytes = 0;
    for record in LogReader::new(Arc::new(OsVfs), log_dir(dir), from, to)? {
        let record = record?;
        DbRecord::decode(&record.data, page_size)
            .map_err(|e| CliError::msg(format!("the record at {} does not decode: {e}", record.lsn)))?;
        bytes += record.end.0 - record.lsn.0;
    }
    Ok((bytes, start.elapsed().as_secs_f64()))
}

/// Drops every file of `dir` from the OS page cache (after syncing it).
fn evict_dir(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry.context(|| format!("listing {}", dir.display()))?.path();
        if path.is_file() {
            let file = std::fs::File::open(&path).context(|| format!("opening {}", path.display()))?;
            raw::evict(&file).context(|| format!("dropping {} from the page cache", path.display()))?;
        }
    }
    Ok(())
}
