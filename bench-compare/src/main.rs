//! `mailvault-bench-compare`: mailvault against other engines, same data,
//! same run. Built only on request (`cargo run -p mailvault-bench-compare`),
//! never by the main crate's `cargo test`.
//!
//! `list`: listing the metadata of a 10,000-message folder from a warm
//! cache (IMAP `FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ)`), on
//! mailvault's mailbox store and on SQLite with an indexed table.

use clap::{Parser, Subcommand};
use mailvault::mailbox::{AppendOptions, Flags, MailView, Quota, Store, StoreOptions, UidSet};
use mailvault::vfs::OsVfs;
use rusqlite::{Connection, params};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(name = "mailvault-bench-compare", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List a folder's message metadata: mailvault against SQLite.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Messages in the listed folder.
    #[arg(long, default_value_t = 10_000)]
    messages: u32,
    /// Messages in other folders (the table is shared, as in a real store).
    #[arg(long, default_value_t = 20_000)]
    others: u32,
    /// Timed listings per engine, alternating.
    #[arg(long, default_value_t = 200)]
    repeats: u32,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// One row of a listing, as both engines return it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    uid: u32,
    modseq: u64,
    internal_date: i64,
    size: u64,
    flags: u32,
    keywords: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ListReport {
    messages: u32,
    mailvault_ms_median: f64,
    sqlite_ms_median: f64,
    /// SQLite's time over mailvault's: above 1, mailvault is faster.
    ratio_sqlite_vs_mailvault: f64,
    sqlite_version: String,
}

fn flags_of(i: u32) -> u32 {
    // A realistic spread: most seen, some answered or flagged.
    let mut f = 0;
    if i % 10 < 7 {
        f |= Flags::SEEN.bits();
    }
    if i.is_multiple_of(9) {
        f |= Flags::ANSWERED.bits();
    }
    if i.is_multiple_of(23) {
        f |= Flags::FLAGGED.bits();
    }
    f
}

fn keywords_of(i: u32) -> Vec<String> {
    if i.is_multiple_of(5) {
        vec!["$Label1".into()]
    } else {
        Vec::new()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn list(args: &ListArgs) -> Result<ListReport, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir_in(".")?;
    let store = Store::create(Arc::new(OsVfs), dir.path().join("mailvault"), StoreOptions::default())?;
    store.create_mailbox("u", Quota::default())?;
    store.create_folder("u", "Other")?;
    let conn = Connection::open(dir.path().join("sqlite.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE messages (
             folder_id INTEGER NOT NULL, uid INTEGER NOT NULL, modseq INTEGER NOT NULL,
             internal_date INTEGER NOT NULL, size INTEGER NOT NULL, flags INTEGER NOT NULL,
             keywords TEXT NOT NULL, body_id INTEGER NOT NULL,
             PRIMARY KEY (folder_id, uid)) WITHOUT ROWID;
         CREATE TABLE bodies (id INTEGER PRIMARY KEY, data BLOB NOT NULL);",
    )?;
    // Interleave the two folders, as deliveries do.
    let total = args.messages + args.others;
    let (mut uid_list, mut uid_other) = (0u32, 0u32);
    let mut batch = Vec::new();
    let tx = conn.unchecked_transaction()?;
    for i in 0..total {
        let listed = u64::from(i) * u64::from(args.messages) / u64::from(total)
            != u64::from(i + 1) * u64::from(args.messages) / u64::from(total);
        let (folder, uid) = if listed && uid_list < args.messages {
            uid_list += 1;
            (1, uid_list)
        } else {
            uid_other += 1;
            (2, uid_other)
        };
        let body = format!("Subject: message {i}\r\n\r\n{}", "text ".repeat(40));
        let date = 1_700_000_000 + i64::from(i) * 60;
        let flags = flags_of(i);
        let kw = keywords_of(i);
        tx.execute(
            "INSERT INTO bodies (id, data) VALUES (?1, ?2)",
            params![i, body.as_bytes()],
        )?;
        tx.execute(
            "INSERT INTO messages VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![folder, uid, i + 2, date, body.len() as i64, flags, kw.join(" "), i],
        )?;
        batch.push((if folder == 1 { "INBOX" } else { "Other" }, body, date, flags, kw));
        if batch.len() == 500 || i + 1 == total {
            let items = std::mem::take(&mut batch);
            store.transaction(move |t| {
                for (folder, body, date, flags, kw) in &items {
                    let opts = AppendOptions {
                        internal_date: *date,
                        flags: Flags::from_bits(*flags).unwrap_or_default(),
                        keywords: kw.clone(),
                    };
                    t.append("u", folder, &opts, body.as_bytes())?;
                }
                Ok(())
            })?;
        }
    }
    tx.commit()?;
    let mut stmt = conn.prepare_cached(
        "SELECT uid, modseq, internal_date, size, flags, keywords FROM messages WHERE folder_id = ?1 ORDER BY uid",
    )?;
    let sqlite_list = |stmt: &mut rusqlite::CachedStatement<'_>| -> rusqlite::Result<Vec<Row>> {
        stmt.query_map([1], |r| {
            let kw: String = r.get(5)?;
            Ok(Row {
                uid: r.get(0)?,
                modseq: r.get(1)?,
                internal_date: r.get(2)?,
                size: r.get(3)?,
                flags: r.get(4)?,
                keywords: kw.split_whitespace().map(str::to_string).collect(),
            })
        })?
        .collect()
    };
    let mailvault_list = |store: &Store| -> Result<Vec<Row>, mailvault::mailbox::MailError> {
        let rx = store.read();
        Ok(rx
            .fetch("u", "INBOX", &UidSet::all())?
            .into_iter()
            .map(|m| Row {
                uid: m.uid,
                modseq: m.modseq,
                internal_date: m.internal_date,
                size: m.size,
                flags: m.flags.bits(),
                keywords: m.keywords,
            })
            .collect())
    };
    // Same answer from both (MODSEQs differ by numbering; compare the rest).
    let a = mailvault_list(&store)?;
    let b = sqlite_list(&mut stmt)?;
    assert_eq!(a.len(), args.messages as usize, "mailvault listed {} messages", a.len());
    assert_eq!(b.len(), a.len(), "SQLite listed {} messages", b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.uid, x.internal_date, x.size, x.flags, &x.keywords),
            (y.uid, y.internal_date, y.size, y.flags, &y.keywords)
        );
    }
    let (mut mv, mut sq) = (Vec::new(), Vec::new());
    for _ in 0..args.repeats {
        let t = Instant::now();
        let n = mailvault_list(&store)?.len();
        mv.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let m = sqlite_list(&mut stmt)?.len();
        sq.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(n, m);
    }
    drop(stmt);
    store.close()?;
    let (mv, sq) = (median(mv), median(sq));
    Ok(ListReport {
        messages: args.messages,
        mailvault_ms_median: mv,
        sqlite_ms_median: sq,
        ratio_sqlite_vs_mailvault: sq / mv,
        sqlite_version: rusqlite::version().to_string(),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Command::List(args) => {
            let r = list(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "list the metadata of a {}-message folder, warm (medians of {} alternating runs)",
                    r.messages, args.repeats
                );
                println!("  mailvault            {:.3} ms", r.mailvault_ms_median);
                println!(
                    "  SQLite {} (WAL, indexed, prepared)  {:.3} ms",
                    r.sqlite_version, r.sqlite_ms_median
                );
                println!(
                    "  SQLite / mailvault   {:.2} (above 1: mailvault faster)",
                    r.ratio_sqlite_vs_mailvault
                );
            }
            Ok(())
        }
    }
}
