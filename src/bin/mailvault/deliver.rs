//! Concurrent durable delivery of generated mail, shared by `load` and
//! `bench ingest`: a pool of messages generated up front (so the generator's
//! cost is not measured), threads that each compress and deliver one message
//! per durable transaction, and acknowledgement lines written only after the
//! commit returned.

use crate::acked::AckedWriter;
use crate::error::{CliError, Result};
use crate::histogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use mailvault::mailbox::workload::{GeneratedMessage, MailGenerator, MessageKind};
use mailvault::mailbox::{AppendOptions, MailView, Quota, Store};
use parking_lot::Mutex;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Which messages to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// The generator's realistic mix.
    Realistic,
    /// Plain-text messages of this many bytes.
    Fixed(usize),
}

pub fn parse_mix(s: &str) -> Result<Mix, String> {
    if s == "realistic" {
        return Ok(Mix::Realistic);
    }
    match s.parse::<usize>() {
        Ok(n) if (256..=64 << 20).contains(&n) => Ok(Mix::Fixed(n)),
        _ => Err(format!(
            "{s:?}: expected \"realistic\" or a size of 256 to 67108864 bytes"
        )),
    }
}

/// Generates `count` messages of the mix.
pub fn pool(mix: Mix, seed: u64, count: usize) -> Vec<GeneratedMessage> {
    let mut g = MailGenerator::new(seed);
    (0..count)
        .map(|_| match mix {
            Mix::Realistic => g.message(),
            Mix::Fixed(n) => g.message_of(MessageKind::Plain, n),
        })
        .collect()
}

/// The mailbox a message index goes to.
pub fn mailbox_name(i: u64, mailboxes: u32) -> String {
    format!("user{:04}", i % u64::from(mailboxes))
}

/// Creates the mailboxes `load` delivers to, where missing; returns each
/// one's INBOX UIDVALIDITY.
pub fn ensure_mailboxes(store: &Store, mailboxes: u32) -> Result<Vec<u32>> {
    let mut validity = Vec::with_capacity(mailboxes as usize);
    for i in 0..mailboxes {
        let name = mailbox_name(u64::from(i), mailboxes);
        if store.read().mailbox_info(&name).is_err() {
            store.create_mailbox(&name, Quota::default())?;
        }
        validity.push(store.read().folder_info(&name, "INBOX")?.uid_validity);
    }
    Ok(validity)
}

/// What to deliver: a message count, a duration, or both (whichever ends first).
pub struct Plan {
    pub messages: Option<u64>,
    pub duration: Option<Duration>,
    pub threads: u32,
    pub mailboxes: u32,
    pub progress: bool,
    /// Deliveries per second in all, paced (`None`: as fast as they go).
    pub rate: Option<f64>,
}

/// What a delivery run did.
#[derive(Default)]
pub struct Delivered {
    pub messages: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram,
}

pub fn progress_bar(len: Option<u64>, enabled: bool) -> Option<ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} messages {per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

/// Delivers messages from `pool` with `plan.threads` threads, one durable
/// transaction each.
pub fn deliver(
    store: &Store,
    pool: &[GeneratedMessage],
    validity: &[u32],
    plan: &Plan,
    acked: Option<&Mutex<AckedWriter>>,
) -> Result<Delivered> {
    if pool.is_empty() {
        return Err(CliError::msg("no messages to deliver"));
    }
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let bar = progress_bar(plan.messages, plan.progress);
    let start = Instant::now();
    let deadline = plan.duration.map(|d| start + d);
    let results: Vec<Result<Delivered>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..plan.threads)
            .map(|_| {
                let (next, failed, bar) = (&next, &failed, bar.as_ref());
                s.spawn(move || -> Result<Delivered> {
                    let mut mine = Delivered::default();
                    loop {
                        if failed.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if plan.messages.is_some_and(|n| i >= n) {
                            break;
                        }
                        if let Some(rate) = plan.rate.filter(|r| *r > 0.0) {
                            // Message i is due at i / rate: a steady offered load.
                            let due = start + Duration::from_secs_f64(i as f64 / rate);
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                        }
                        let m = &pool[(i % pool.len() as u64) as usize];
                        let mailbox = mailbox_name(i, plan.mailboxes);
                        let opts = AppendOptions {
                            internal_date: m.internal_date,
                            ..AppendOptions::default()
                        };
                        let t0 = Instant::now();
                        let body = store.prepare_body(&mut &m.bytes[..])?;
                        let stored = body.stored_len();
                        let crc = body.checksum();
                        let uid = store
                            .append_prepared(&mailbox, "INBOX", &opts, body)
                            .inspect_err(|_| failed.store(true, Ordering::Relaxed))?;
                        mine.latency_us.record(t0.elapsed().as_micros() as u64);
                        mine.messages += 1;
                        mine.raw_bytes += m.bytes.len() as u64;
                        mine.stored_bytes += stored;
                        if let Some(w) = acked {
                            let v = validity[(i % u64::from(plan.mailboxes)) as usize];
                            w.lock().write(&format_args!(
                                "mail\t{mailbox}\tINBOX\t{uid}\t{v}\t{}\t{crc:08x}",
                                m.bytes.len()
                            ))?;
                        }
                        if let Some(b) = bar {
                            b.inc(1);
                        }
                    }
                    Ok(mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(CliError::msg("a delivery thread panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut total = Delivered {
        elapsed,
        ..Delivered::default()
    };
    for r in results {
        let r = r?;
        total.messages += r.messages;
        total.raw_bytes += r.raw_bytes;
        total.stored_bytes += r.stored_bytes;
        total.latency_us.merge(&r.latency_us);
    }
    Ok(total)
}

/// Bytes of every file under `dir`.
pub fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
