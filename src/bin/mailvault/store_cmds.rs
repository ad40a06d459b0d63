//! Mailbox-store commands: `init`, `load`, `ls` and `fetch`.

use crate::acked::AckedWriter;
use crate::deliver::{self, Mix, Plan};
use crate::error::{CliError, Result};
use crate::output;
use clap::Args;
use mailvault::mailbox::{MailView, Store, StoreOptions, UidSet};
use mailvault::pager::DEFAULT_PAGE_SIZE;
use mailvault::vfs::OsVfs;
use parking_lot::Mutex;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory of the new store (created; must not hold a store).
    dir: PathBuf,
    /// Page size: a power of two, 4096 to 65536.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_PAGE_SIZE, value_parser = crate::bench_kv::parse_page_size)]
    page_size: usize,
    /// Log generation size in MiB.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    generation_mib: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn open(dir: &Path) -> Result<Store> {
    Ok(Store::open(Arc::new(OsVfs), dir, StoreOptions::default())?)
}

pub fn init(args: &InitArgs) -> Result<()> {
    let opts = StoreOptions {
        page_size: args.page_size,
        generation_size: args.generation_mib << 20,
        ..StoreOptions::default()
    };
    let store = Store::create(Arc::new(OsVfs), &args.dir, opts)?;
    store.close()?;
    #[derive(Serialize)]
    struct Out<'a> {
        created: &'a str,
        page_size: usize,
        generation_size: u64,
    }
    let out = Out {
        created: &args.dir.to_string_lossy(),
        page_size: args.page_size,
        generation_size: args.generation_mib << 20,
    };
    if args.json {
        output::print_json(&out)
    } else {
        outln!(
            "created store {} (page size {}, log generations of {} MiB)",
            out.created,
            out.page_size,
            args.generation_mib
        );
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Store directory (created if it holds no store).
    dir: PathBuf,
    /// Messages to deliver.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    messages: u64,
    /// Concurrent deliveries (each a durable transaction).
    #[arg(long, value_name = "T", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: u32,
    /// Mailboxes the messages are spread over (user0000, user0001, ...).
    #[arg(long, value_name = "M", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    mailboxes: u32,
    /// The realistic mix, or a fixed message size in bytes.
    #[arg(long, value_name = "realistic|BYTES", default_value = "realistic", value_parser = deliver::parse_mix)]
    mix: Mix,
    /// Seed of the message generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Append a line per message to FILE once its commit is durable:
    /// `mail<TAB>mailbox<TAB>folder<TAB>uid<TAB>uidvalidity<TAB>length<TAB>crc32c`.
    #[arg(long, value_name = "FILE")]
    acked: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Act as the active meanwhile: serve passive copies on ADDR.
    #[arg(long, value_name = "ADDR", requires = "key_file")]
    serve: Option<String>,
    /// The cluster key for `--serve`.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    #[command(flatten)]
    ship: crate::repl_cmds::ShipArgs,
    /// After the load, keep serving until every copy has replayed
    /// everything, or this long at most.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    linger: f64,
    /// With `--serve`: after the load, wait (up to `--linger`) until at
    /// least this many copies have connected and replayed everything.
    #[arg(long, value_name = "N", default_value_t = 0)]
    wait_copies: usize,
}

/// Throughput of a delivery run.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub messages: u64,
    pub seconds: f64,
    pub messages_per_sec: f64,
    /// Bytes delivered (as the sender sent them), in MB/s.
    pub logical_mb_per_sec: f64,
    /// Bytes stored after compression, in MB/s.
    pub stored_mb_per_sec: f64,
    /// Bytes the log wrote to disk, in MB/s.
    pub log_written_mb_per_sec: f64,
    pub logical_bytes: u64,
    pub stored_bytes: u64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
}

pub fn report(store: &Store, d: &deliver::Delivered, log_bytes_before: u64) -> LoadReport {
    let secs = d.elapsed.as_secs_f64().max(1e-9);
    let log_written = store.database().pager().log().stats().bytes_written - log_bytes_before;
    LoadReport {
        messages: d.messages,
        seconds: secs,
        messages_per_sec: d.messages as f64 / secs,
        logical_mb_per_sec: d.raw_bytes as f64 / secs / 1e6,
        stored_mb_per_sec: d.stored_bytes as f64 / secs / 1e6,
        log_written_mb_per_sec: log_written as f64 / secs / 1e6,
        logical_bytes: d.raw_bytes,
        stored_bytes: d.stored_bytes,
        latency_ms_p50: d.latency_us.quantile(0.5) / 1000.0,
        latency_ms_p99: d.latency_us.quantile(0.99) / 1000.0,
    }
}

pub fn print_load(r: &LoadReport) {
    output::row("messages", r.messages);
    output::row("seconds", format!("{:.2}", r.seconds));
    output::row("messages/s", format!("{:.0}", r.messages_per_sec));
    output::row("logical MB/s (as delivered)", format!("{:.1}", r.logical_mb_per_sec));
    output::row("stored MB/s (compressed)", format!("{:.1}", r.stored_mb_per_sec));
    output::row("log written MB/s", format!("{:.1}", r.log_written_mb_per_sec));
    output::row(
        "compression (stored / logical)",
        format!("{:.3}", r.stored_bytes as f64 / r.logical_bytes.max(1) as f64),
    );
    output::row(
        "latency p50 / p99 ms",
        format!("{:.2} / {:.2}", r.latency_ms_p50, r.latency_ms_p99),
    );
}

pub fn load(args: &LoadArgs) -> Result<()> {
    let store = Arc::new(if mailvault::pager::data_path(&args.dir).exists() {
        open(&args.dir)?
    } else {
        Store::create(Arc::new(OsVfs), &args.dir, StoreOptions::default())?
    });
    let validity = deliver::ensure_mailboxes(&store, args.mailboxes)?;
    let pool = deliver::pool(args.mix, args.seed, args.messages.min(1000) as usize);
    let acked = match &args.acked {
        Some(p) => Some(Mutex::new(AckedWriter::create(p)?)),
        None => None,
    };
    let plan = Plan {
        messages: Some(args.messages),
        duration: None,
        threads: args.threads,
        mailboxes: args.mailboxes,
        progress: !args.json,
        rate: None,
    };
    let serving = match (&args.serve, &args.key_file) {
        (Some(addr), Some(key)) => Some(Serving::start(&store, &args.dir, addr, key, args.ship.options())?),
        _ => None,
    };
    let before = store.database().pager().log().stats().bytes_written;
    let delivered = deliver::deliver(&store, &pool, &validity, &plan, acked.as_ref())?;
    let r = report(&store, &delivered, before);
    if let Some(w) = acked {
        w.into_inner().finish()?;
    }
    // Kept until the store has closed: its closing checkpoint must leave
    // the log the copies hold.
    let holds = match serving {
        Some(s) => Some(s.finish(
            &store,
            std::time::Duration::from_secs_f64(args.linger.max(0.0)),
            args.wait_copies,
        )?),
        None => None,
    };
    Arc::try_unwrap(store)
        .map_err(|_| CliError::msg("a replication session still holds the store"))?
        .close()?;
    drop(holds);
    if args.json {
        output::print_json(&r)
    } else {
        outln!("load {}", args.dir.display());
        print_load(&r);
        output::row(
            "store size on disk (MB)",
            format!("{:.1}", deliver::dir_size(&args.dir) as f64 / 1e6),
        );
        Ok(())
    }
}

/// `load --serve`: the replication listener beside the deliveries.
struct Serving {
    stop: Arc<std::sync::atomic::AtomicBool>,
    registry: Arc<mailvault::repl::CopyRegistry>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Serving {
    fn start(
        store: &Arc<Store>,
        dir: &Path,
        addr: &str,
        key_file: &Path,
        opts: mailvault::repl::ShipOptions,
    ) -> Result<Serving> {
        let key = mailvault::repl::ClusterKey::from_file(key_file)?;
        let listener =
            std::net::TcpListener::bind(addr).map_err(|e| CliError::msg(format!("listening on {addr}: {e}")))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let registry = Arc::new(mailvault::repl::CopyRegistry::persistent(
            Arc::new(mailvault::vfs::OsVfs),
            dir.join("copies.state"),
            Some(4 << 30),
        ));
        registry.restore(store.as_ref());
        let s: Arc<dyn mailvault::repl::ShipSource> = store.clone();
        let (st, r) = (stop.clone(), registry.clone());
        let thread = std::thread::spawn(move || crate::repl_cmds::serve_loop(&s, listener, &key, &st, &r, &opts));
        Ok(Serving { stop, registry, thread })
    }

    /// Serves until every copy (and at least `copies`) has replayed the
    /// whole log, or for `linger` at most; returns the registry, whose
    /// holds must outlive the store's close.
    fn finish(
        self,
        store: &Store,
        linger: std::time::Duration,
        copies: usize,
    ) -> Result<Arc<mailvault::repl::CopyRegistry>> {
        let deadline = std::time::Instant::now() + linger;
        let end = store.database().pager().log().durable_lsn();
        let copies_wanted = copies;
        while std::time::Instant::now() < deadline {
            let copies = self.registry.all();
            let done = copies.iter().filter(|(_, p)| p.replayed >= end).count();
            if done >= copies_wanted && copies.iter().all(|(_, p)| p.replayed >= end || p.needs_reseed) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| CliError::msg("the replication listener panicked"))??;
        Ok(self.registry)
    }
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Store directory.
    dir: PathBuf,
    /// List this mailbox's folders.
    mailbox: Option<String>,
    /// List this folder's messages.
    folder: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn ls(args: &LsArgs) -> Result<()> {
    let store = open(&args.dir)?;
    let rx = store.read();
    let mut text = String::new();
    match (&args.mailbox, &args.folder) {
        (None, _) => {
            let list = rx.list_mailboxes()?;
            if args.json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|m| {
                        serde_json::json!({"name": m.name, "messages": m.used_messages, "bytes": m.used_bytes,
                        "quota_bytes": m.quota_bytes, "quota_messages": m.quota_messages})
                    })
                    .collect();
                output::print_json(&rows)?;
            } else {
                for m in list {
                    let _ = writeln!(
                        text,
                        "{:<32} {:>10} messages {:>14} bytes",
                        m.name, m.used_messages, m.used_bytes
                    );
                }
            }
        }
        (Some(mailbox), None) => {
            let list = rx.list_folders(mailbox)?;
            if args.json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|f| {
                        serde_json::json!({"name": f.name, "uidvalidity": f.uid_validity, "uidnext": f.uid_next,
                        "highestmodseq": f.highest_modseq, "messages": f.messages, "unseen": f.unseen,
                        "bytes": f.bytes, "subscribed": f.subscribed})
                    })
                    .collect();
                output::print_json(&rows)?;
            } else {
                for f in list {
                    let _ = writeln!(
                        text,
                        "{:<32} {:>8} messages {:>8} unseen {:>12} bytes  UIDVALIDITY {} UIDNEXT {} HIGHESTMODSEQ {}",
                        f.name, f.messages, f.unseen, f.bytes, f.uid_validity, f.uid_next, f.highest_modseq
                    );
                }
            }
        }
        (Some(mailbox), Some(folder)) => {
            let list = rx.fetch(mailbox, folder, &UidSet::all())?;
            if args.json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|m| {
                        serde_json::json!({"uid": m.uid, "modseq": m.modseq, "internal_date": m.internal_date,
                        "size": m.size, "flags": m.flags.names(), "keywords": m.keywords})
                    })
                    .collect();
                output::print_json(&rows)?;
            } else {
                for m in list {
                    let mut flags = m.flags.names().join(" ");
                    for k in &m.keywords {
                        flags.push(' ');
                        flags.push_str(k);
                    }
                    let _ = writeln!(
                        text,
                        "{:>8} {:>10} bytes  date {}  modseq {}  ({})",
                        m.uid,
                        m.size,
                        output::format_unix_us(m.internal_date.max(0) as u64 * 1_000_000),
                        m.modseq,
                        flags.trim()
                    );
                }
            }
        }
    }
    drop(rx);
    store.close()?;
    output::print_text(&text)
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Store directory.
    dir: PathBuf,
    mailbox: String,
    folder: String,
    uid: u32,
    /// First byte to print (IMAP partial fetch).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Bytes to print [default: to the end].
    #[arg(long)]
    length: Option<u64>,
    /// Print the message's metadata as JSON instead of its body.
    #[arg(long)]
    json: bool,
}

pub fn fetch(args: &FetchArgs) -> Result<()> {
    let store = open(&args.dir)?;
    let rx = store.read();
    if args.json {
        let meta = rx.fetch(&args.mailbox, &args.folder, &UidSet::single(args.uid))?;
        let m = meta
            .first()
            .ok_or_else(|| CliError::msg(format!("no message with UID {} in {}", args.uid, args.folder)))?;
        let (len, crc) = rx.body_checksum(&args.mailbox, &args.folder, args.uid)?;
        output::print_json(
            &serde_json::json!({"uid": m.uid, "modseq": m.modseq, "internal_date": m.internal_date,
            "size": len, "crc32c": format!("{crc:08x}"), "flags": m.flags.names(), "keywords": m.keywords,
            "body_id": m.body_id}),
        )?;
    } else {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        rx.read_body_range(
            &args.mailbox,
            &args.folder,
            args.uid,
            args.offset,
            args.length.unwrap_or(u64::MAX),
            &mut out,
        )?;
        out.flush()
            .map_err(|e| CliError::msg(format!("writing to stdout: {e}")))?;
    }
    drop(rx);
    store.close()?;
    Ok(())
}
