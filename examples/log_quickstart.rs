//! Create a log, commit records from several threads, reopen it (recovery)
//! and read everything back from an LSN.
//!
//! cargo run --example log_quickstart

use mailvault::log::{Log, LogOptions, Lsn};
use mailvault::vfs::OsVfs;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("log");
    let log = Arc::new(Log::create(Arc::new(OsVfs), &path, LogOptions::default())?);

    // Four committers; group commit covers many of them with one fdatasync.
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || -> mailvault::log::Result<Lsn> {
                let mut last = Lsn::ZERO;
                for i in 0..250 {
                    last = log.commit(format!("message {i} from thread {t}").as_bytes())?.lsn;
                }
                Ok(last)
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker thread")?;
    }
    let stats = log.stats();
    println!(
        "{} records in {} batches ({:.1} per fdatasync), durable up to {}",
        stats.records,
        stats.batches,
        stats.records as f64 / stats.batches.max(1) as f64,
        stats.durable
    );
    Arc::try_unwrap(log).expect("workers are done").close()?;

    // Reopening runs recovery; the report says what it found.
    let log = Log::open(Arc::new(OsVfs), &path, LogOptions::default())?;
    let report = log.recovery_report();
    println!(
        "recovered {} records, end {}, torn tail: {:?}",
        report.records, report.end, report.torn_tail
    );
    let first_five: Vec<String> = log
        .reader(Lsn::ZERO)?
        .take(5)
        .map(|r| r.map(|r| format!("{} {}", r.lsn, String::from_utf8_lossy(&r.data))))
        .collect::<Result<_, _>>()?;
    for line in first_five {
        println!("  {line}");
    }
    Ok(())
}
