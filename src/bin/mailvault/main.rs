//! `mailvault`: operator and benchmark commands for a mailvault store.
//!
//! Every command uses only the library's public API. Errors propagate to
//! [`main`], which prints them to stderr and exits with status 1; `check`
//! also exits 1 when it finds problems.

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;

/// `println!` for the commands' output: a closed pipe (`| head`) ends the
/// process quietly instead of panicking.
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}

mod acked;
mod bench;
mod bench_kv;
mod bench_mail;
mod bench_repl;
mod bench_repl_report;
mod bench_report;
mod check;
mod check_db;
mod check_store;
mod deliver;
mod dump;
mod dump_db;
mod error;
mod histogram;
mod kv_keys;
mod kv_phases;
mod kv_recovery;
mod kv_report;
mod output;
mod raw;
mod repl_cmds;
mod store_cmds;
mod thread_cpu;
mod workers;

/// A paged mailbox store with a write-ahead log: operator tools.
#[derive(Debug, Parser)]
#[command(name = "mailvault", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an empty mailbox store.
    Init(store_cmds::InitArgs),
    /// Deliver generated mail with durable commits, and report throughput.
    Load(store_cmds::LoadArgs),
    /// List mailboxes, a mailbox's folders, or a folder's messages.
    Ls(store_cmds::LsArgs),
    /// Print a message's body (or a byte range of it) to stdout.
    Fetch(store_cmds::FetchArgs),
    /// Serve passive copies of a store (the active side of replication).
    Serve(repl_cmds::ServeArgs),
    /// Run a passive copy: seed it if empty, then receive and replay the log.
    Follow(repl_cmds::FollowArgs),
    /// Throw a copy's database and log away and seed it again, then follow.
    Seed(repl_cmds::SeedArgs),
    /// A passive copy's queues and positions (while `follow` runs).
    Status(repl_cmds::StatusArgs),
    /// Compare two stores page by page.
    Compare(repl_cmds::CompareArgs),
    /// Measure performance against the raw disk.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Verify a log or database directory: recovery, every page, frame and record, and optionally acknowledged commits.
    Check(check::CheckArgs),
    /// Print the on-disk structures of a store, decoded leniently.
    #[command(subcommand)]
    Dump(DumpCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Concurrent commits to the write-ahead log, compared with the raw fsync and sequential-write floor.
    Log(bench::BenchLogArgs),
    /// A database: inserts with one put per durable commit against the raw fsync floor, point reads, range scans, memory and recovery.
    Kv(bench_kv::BenchKvArgs),
    /// The mailbox store: concurrent durable deliveries of the realistic mix against the raw sequential bandwidth.
    Ingest(bench_mail::BenchIngestArgs),
    /// The mailbox store: whole-body reads against raw preads, a 10,000-message folder listing, a partial fetch.
    Read(bench_mail::BenchReadArgs),
    /// Replication on loopback: delivery with two copies against alone, catch-up, lag and seeding.
    Replication(bench_repl::BenchReplicationArgs),
}

#[derive(Debug, Subcommand)]
enum DumpCommand {
    /// Every generation file of a log directory: header, records, invalid frames.
    Log(dump::DumpLogArgs),
    /// Both copies of a database's header, each checked on its own.
    Header(dump_db::DumpDbArgs),
    /// The checkpoint an open would start from, and the log recovery would replay after it.
    Checkpoint(dump_db::DumpDbArgs),
    /// One page of the database file: header fields, checks, and a node's cells.
    Page(dump_db::DumpPageArgs),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(cli: Cli) -> error::Result<ExitCode> {
    match cli.command {
        Command::Bench(BenchCommand::Log(args)) => bench::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Kv(args)) => bench_kv::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Ingest(args)) => bench_mail::ingest(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Read(args)) => bench_mail::read(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Replication(args)) => bench_repl::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Check(args) => check::run(&args),
        Command::Serve(args) => repl_cmds::serve(&args).map(|()| ExitCode::SUCCESS),
        Command::Follow(args) => repl_cmds::follow(&args),
        Command::Seed(args) => repl_cmds::seed(&args),
        Command::Status(args) => repl_cmds::status(&args).map(|()| ExitCode::SUCCESS),
        Command::Compare(args) => repl_cmds::run_compare(&args),
        Command::Init(args) => store_cmds::init(&args).map(|()| ExitCode::SUCCESS),
        Command::Load(args) => store_cmds::load(&args).map(|()| ExitCode::SUCCESS),
        Command::Ls(args) => store_cmds::ls(&args).map(|()| ExitCode::SUCCESS),
        Command::Fetch(args) => store_cmds::fetch(&args).map(|()| ExitCode::SUCCESS),
        Command::Dump(DumpCommand::Log(args)) => dump::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Dump(DumpCommand::Header(args)) => dump_db::run_header(&args).map(|()| ExitCode::SUCCESS),
        Command::Dump(DumpCommand::Checkpoint(args)) => dump_db::run_checkpoint(&args).map(|()| ExitCode::SUCCESS),
        Command::Dump(DumpCommand::Page(args)) => dump_db::run_page(&args).map(|()| ExitCode::SUCCESS),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mailvault: error: {e}");
            ExitCode::FAILURE
        }
    }
}
