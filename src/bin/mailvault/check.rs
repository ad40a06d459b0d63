//! `mailvault check DIR` of a log directory (a database directory goes to
//! [`crate::check_db`]): opens the log (running recovery, which cuts off a
//! torn tail), closes it, then verifies every header, chain, frame and record
//! read-only, and optionally that every acknowledged commit is in the log.
//!
//! A torn tail is reported but is not a problem by itself: it is what a crash
//! leaves, and it holds nothing that was acknowledged. With `--acked`, any
//! acknowledged record it took with it is a problem.

use crate::acked::AckedLine;
use crate::error::{Context, Result};
use crate::output;
use clap::Args;
use mailvault::log::{Log, Lsn, Record, RecoveryReport};
use mailvault::vfs::OsVfs;
use serde::Serialize;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A log directory, or a database directory (one that holds data.mvdb).
    dir: PathBuf,
    /// A file of acknowledged commits: for a log, `<id> <lsn> <len> <crc32c>`
    /// per line (`bench log --acked`), each must be in the log; for a database,
    /// `<table> <key hex> <value len> <crc32c>` (`bench kv --acked`), each key
    /// must hold a value of that length and checksum.
    #[arg(long, value_name = "FILE")]
    acked: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// What the check of a log directory found.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    dir: String,
    first_generation: Option<u32>,
    last_generation: Option<u32>,
    end_lsn: Option<String>,
    end_lsn_u64: Option<u64>,
    records: Option<u64>,
    torn_tail: Option<TornTailJson>,
    acked_checked: u64,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct TornTailJson {
    file: String,
    offset: u64,
    reason: String,
}

/// What `check --acked` compares: a record's length, checksum and first bytes.
struct Seen {
    len: u32,
    crc: u32,
    head: Option<u64>,
}

pub fn run(args: &CheckArgs) -> Result<ExitCode> {
    if mailvault::pager::data_path(&args.dir).exists() {
        return crate::check_db::run(&args.dir, args.acked.as_deref(), args.json);
    }
    let report = check_log(&args.dir, args.acked.as_deref())?;
    if args.json {
        output::print_json(&report)?;
    } else {
        print_text(&report);
    }
    Ok(exit_code(report.ok))
}

/// Success only if the check found nothing.
pub fn exit_code(ok: bool) -> ExitCode {
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Checks the log in `dir` and, if given, the acknowledged commits of `acked`.
pub fn check_log(dir: &Path, acked: Option<&Path>) -> Result<CheckReport> {
    let mut problems = Vec::new();
    let mut report = CheckReport {
        ok: false,
        dir: dir.display().to_string(),
        first_generation: None,
        last_generation: None,
        end_lsn: None,
        end_lsn_u64: None,
        records: None,
        torn_tail: None,
        acked_checked: 0,
        problems: Vec::new(),
    };
    let verified = open_then_verify(dir, acked.is_some(), &mut report, &mut problems);
    if let (Some(path), Some(records)) = (acked, &verified) {
        report.acked_checked = check_acked(path, records, &mut problems)?;
    } else if acked.is_some() {
        problems.push("acknowledged commits not checked: the log could not be verified".into());
    }
    report.ok = problems.is_empty();
    report.problems = problems;
    Ok(report)
}

/// Recovery, then read-only verification. Library errors become problems.
/// Returns the records by LSN (only if `keep_records`) if verification succeeded.
fn open_then_verify(
    dir: &Path,
    keep_records: bool,
    report: &mut CheckReport,
    problems: &mut Vec<String>,
) -> Option<HashMap<u64, Seen>> {
    let opened = Log::open(Arc::new(OsVfs), dir, mailvault::log::LogOptions::default()).and_then(|log| {
        let recovery = log.recovery_report().clone();
        log.close().map(|()| recovery)
    });
    match opened {
        Ok(recovery) => {
            summarize(report, &recovery);
            report.torn_tail = recovery.torn_tail.map(|(file, torn)| TornTailJson {
                file: file.display().to_string(),
                offset: torn.offset,
                reason: torn.reason,
            });
        }
        Err(e) => {
            problems.push(format!("recovery failed: {e}"));
            return None;
        }
    }
    let mut records = HashMap::new();
    let mut visit = |r: Record| {
        if !keep_records {
            return Ok(());
        }
        let head = r
            .data
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let seen = Seen {
            len: r.data.len() as u32,
            crc: crc32c::crc32c(&r.data),
            head,
        };
        records.insert(r.lsn.0, seen);
        Ok(())
    };
    match Log::verify(&OsVfs, dir, None, &mut visit) {
        Ok(verified) => {
            summarize(report, &verified);
            if let Some((file, torn)) = &verified.torn_tail {
                problems.push(format!(
                    "{} at offset {}: torn tail still present after recovery: {}",
                    file.display(),
                    torn.offset,
                    torn.reason
                ));
            }
            Some(records)
        }
        Err(e) => {
            problems.push(format!("verification failed: {e}"));
            None
        }
    }
}

fn summarize(report: &mut CheckReport, r: &RecoveryReport) {
    report.first_generation = Some(r.first_generation);
    report.last_generation = Some(r.last_generation);
    report.end_lsn = Some(r.end.to_string());
    report.end_lsn_u64 = Some(r.end.0);
    report.records = Some(r.records);
}

/// Checks every line of the acked file against the records; returns the
/// number of lines checked.
fn check_acked(path: &Path, records: &HashMap<u64, Seen>, problems: &mut Vec<String>) -> Result<u64> {
    let file = std::fs::File::open(path).context(|| format!("opening {}", path.display()))?;
    let mut lines = 0u64;
    let mut claimed: HashMap<u64, u64> = HashMap::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.context(|| format!("reading {}", path.display()))?;
        let number = i as u64 + 1;
        lines += 1;
        let at = || format!("{} line {number}", path.display());
        let acked = match AckedLine::parse(&line) {
            Ok(a) => a,
            Err(why) => {
                problems.push(format!("{}: malformed: {why}", at()));
                continue;
            }
        };
        let lsn = Lsn(acked.lsn);
        if let Some(first) = claimed.insert(acked.lsn, number) {
            problems.push(format!("{}: LSN {lsn} was already acknowledged on line {first}", at()));
        }
        let Some(seen) = records.get(&acked.lsn) else {
            problems.push(format!("{}: no record at LSN {lsn} ({}) in the log", at(), acked.lsn));
            continue;
        };
        if seen.len != acked.len {
            problems.push(format!(
                "{}: record at LSN {lsn} has {} bytes, acknowledged {}",
                at(),
                seen.len,
                acked.len
            ));
        } else if seen.crc != acked.crc {
            problems.push(format!(
                "{}: record at LSN {lsn} has crc32c {:08x}, acknowledged {:08x}",
                at(),
                seen.crc,
                acked.crc
            ));
        } else if let Some(head) = seen.head.filter(|h| *h != acked.id) {
            problems.push(format!(
                "{}: record at LSN {lsn} carries id {head}, acknowledged {}",
                at(),
                acked.id
            ));
        }
    }
    Ok(lines)
}

fn print_text(r: &CheckReport) {
    print_details(r);
    if r.ok {
        outln!("OK");
    } else {
        outln!("FAILED: {} problem(s)", r.problems.len());
    }
}

/// The text of a log check without the verdict.
pub fn print_details(r: &CheckReport) {
    outln!("log {}", r.dir);
    if let (Some(first), Some(last), Some(end), Some(records)) =
        (r.first_generation, r.last_generation, &r.end_lsn, r.records)
    {
        output::row("generations", format!("{first}..={last}"));
        output::row("end", format!("{end} ({})", r.end_lsn_u64.unwrap_or_default()));
        output::row("records verified", records);
        match &r.torn_tail {
            Some(t) => output::row(
                "torn tail (cut off)",
                format!("{} at offset {}: {}", t.file, t.offset, t.reason),
            ),
            None => output::row("torn tail", "none"),
        }
    }
    output::row("acknowledged commits checked", r.acked_checked);
    for p in &r.problems {
        outln!("PROBLEM: {p}");
    }
}
