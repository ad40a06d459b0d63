//! `mailvault check DIR` of a database directory: opens the database (which
//! runs recovery), verifies a snapshot of it (every allocated page's
//! checksum, every tree, the free-space maps), optionally checks that every
//! acknowledged put is there, closes it, then checks its log as `check` does
//! a log directory.

use crate::acked::KvAckedLine;
use crate::check::{self, CheckReport};
use crate::error::{Context, Result};
use crate::output;
use mailvault::pager::{DbError, log_dir};
use mailvault::txn::{Database, DbOptions, ReadTxn, Table};
use mailvault::vfs::OsVfs;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Serialize)]
struct DbCheckReport {
    ok: bool,
    kind: &'static str,
    dir: String,
    recovery: Option<RecoveryJson>,
    verify: Option<VerifyJson>,
    /// Every page a problem names, in order.
    bad_pages: Vec<u32>,
    acked_checked: u64,
    /// The mailbox store's checks, if the database holds one.
    store: Option<mailvault::mailbox::StoreReport>,
    /// The database's problems; the log's are in `log.problems`.
    problems: Vec<String>,
    log: CheckReport,
}

#[derive(Debug, Serialize)]
struct RecoveryJson {
    records: u64,
    applied: u64,
    skipped: u64,
    log_bytes: u64,
    from: String,
    to: String,
}

#[derive(Debug, Serialize)]
struct VerifyJson {
    page_count: u32,
    pages_checked: u64,
    used_pages: u64,
    free_pages: u64,
    tables: Vec<TableJson>,
}

#[derive(Debug, Serialize)]
struct TableJson {
    name: String,
    entries: u64,
}

pub fn run(dir: &Path, acked: Option<&Path>, json: bool) -> Result<ExitCode> {
    let mut problems = Vec::new();
    let mut bad_pages = BTreeSet::new();
    let (mut recovery, mut verify, mut acked_checked) = (None, None, 0);
    let mut is_store = false;
    match Database::open(Arc::new(OsVfs), dir, DbOptions::default()) {
        Ok(db) => {
            let s = db.recovery_stats();
            recovery = Some(RecoveryJson {
                records: s.records,
                applied: s.applied,
                skipped: s.skipped,
                log_bytes: s.log_bytes,
                from: s.from.to_string(),
                to: s.to.to_string(),
            });
            let rx = db.begin_read();
            is_store = rx.open_table("mail.meta").is_ok();
            match rx.verify() {
                Ok(v) => {
                    for p in &v.problems {
                        bad_pages.insert(p.page);
                        problems.push(p.to_string());
                    }
                    verify = Some(VerifyJson {
                        page_count: v.page_count,
                        pages_checked: v.pages_checked,
                        used_pages: v.used_pages,
                        free_pages: v.free_pages,
                        tables: v
                            .tables
                            .into_iter()
                            .map(|(name, entries)| TableJson { name, entries })
                            .collect(),
                    });
                }
                Err(e) => problems.push(db_problem("verification failed", e, &mut bad_pages)),
            }
            if let Some(path) = acked.filter(|_| !is_store) {
                acked_checked = check_acked(&rx, path, &mut problems, &mut bad_pages)?;
            }
            drop(rx);
            if let Err(e) = db.close() {
                problems.push(db_problem("closing the database failed", e, &mut bad_pages));
            }
        }
        Err(e) => {
            problems.push(db_problem("opening the database (recovery) failed", e, &mut bad_pages));
            if acked.is_some() {
                problems.push("acknowledged puts not checked: the database could not be opened".into());
            }
        }
    }
    let mut store = None;
    if is_store {
        let (report, checked) = crate::check_store::run(dir, acked, &mut problems)?;
        store = report;
        acked_checked = checked;
    }
    let log = check::check_log(&log_dir(dir), None)?;
    let report = DbCheckReport {
        ok: problems.is_empty() && log.ok,
        kind: "database",
        dir: dir.display().to_string(),
        recovery,
        verify,
        bad_pages: bad_pages.into_iter().collect(),
        acked_checked,
        store,
        problems,
        log,
    };
    if json {
        output::print_json(&report)?;
    } else {
        print_text(&report);
    }
    Ok(check::exit_code(report.ok))
}

/// A library error as a problem; a corrupt page's number is noted.
fn db_problem(what: &str, e: DbError, bad_pages: &mut BTreeSet<u32>) -> String {
    if let DbError::CorruptPage { page, .. } = &e {
        bad_pages.insert(*page);
    }
    format!("{what}: {e}")
}

/// Checks every line of the acked file against the snapshot; returns the
/// number of lines checked.
fn check_acked(
    rx: &ReadTxn<'_>,
    path: &Path,
    problems: &mut Vec<String>,
    bad_pages: &mut BTreeSet<u32>,
) -> Result<u64> {
    let file = std::fs::File::open(path).context(|| format!("opening {}", path.display()))?;
    let mut tables: HashMap<String, Option<Table>> = HashMap::new();
    let mut lines = 0u64;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.context(|| format!("reading {}", path.display()))?;
        lines += 1;
        let at = format!("{} line {}", path.display(), i + 1);
        let acked = match KvAckedLine::parse(&line) {
            Ok(a) => a,
            Err(why) => {
                problems.push(format!("{at}: malformed: {why}"));
                continue;
            }
        };
        let table = tables.entry(acked.table.clone()).or_insert_with(|| {
            rx.open_table(&acked.table)
                .inspect_err(|e| problems.push(format!("{at}: table {:?}: {e}", acked.table)))
                .ok()
        });
        let Some(table) = table else { continue };
        let shown = String::from_utf8_lossy(&acked.key);
        match rx.get(table, &acked.key) {
            Ok(None) => problems.push(format!("{at}: key {shown:?} is not in table {:?}", acked.table)),
            Ok(Some(value)) if value.len() != acked.len as usize => problems.push(format!(
                "{at}: key {shown:?} holds {} bytes, acknowledged {}",
                value.len(),
                acked.len
            )),
            Ok(Some(value)) => {
                let crc = crc32c::crc32c(&value);
                if crc != acked.crc {
                    problems.push(format!(
                        "{at}: key {shown:?} holds a value with crc32c {crc:08x}, acknowledged {:08x}",
                        acked.crc
                    ));
                }
            }
            Err(e) => problems.push(db_problem(&format!("{at}: key {shown:?}"), e, bad_pages)),
        }
    }
    Ok(lines)
}

fn print_text(r: &DbCheckReport) {
    outln!("database {}", r.dir);
    if let Some(s) = &r.recovery {
        output::row(
            "recovery replayed",
            format!(
                "{} records, {} log bytes, {} to {}",
                s.records, s.log_bytes, s.from, s.to
            ),
        );
        output::row(
            "page changes applied / skipped",
            format!("{} / {}", s.applied, s.skipped),
        );
    }
    if let Some(v) = &r.verify {
        output::row("pages", v.page_count);
        output::row("pages checked (allocated)", v.pages_checked);
        output::row("pages used / free", format!("{} / {}", v.used_pages, v.free_pages));
        for t in &v.tables {
            output::row(&format!("table {:?}", t.name), format!("{} entries", t.entries));
        }
    }
    if let Some(s) = &r.store {
        output::row("mailboxes / folders", format!("{} / {}", s.mailboxes, s.folders));
        output::row("messages (bytes)", format!("{} ({})", s.messages, s.message_bytes));
        output::row("stored bodies (shared by copies)", s.bodies);
        output::row("acknowledged messages checked", r.acked_checked);
    } else {
        output::row("acknowledged puts checked", r.acked_checked);
    }
    for p in &r.problems {
        outln!("PROBLEM: {p}");
    }
    check::print_details(&r.log);
    if r.ok {
        outln!("OK");
    } else {
        let n = r.problems.len() + r.log.problems.len();
        outln!("FAILED: {n} problem(s)");
        if !r.bad_pages.is_empty() {
            let pages: Vec<String> = r.bad_pages.iter().map(u32::to_string).collect();
            outln!("bad pages: {}", pages.join(", "));
        }
    }
}
