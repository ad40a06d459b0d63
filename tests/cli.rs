//! The `mailvault` binary end to end: bench a log, check it against the
//! acknowledged commits, dump it, corrupt it; the same for a database
//! (`bench kv`, `check` of a database directory, a corrupt page).

#[path = "common/cli.rs"]
mod cli_util;

use cli_util::{json, mailvault, number, text};
use serde_json::Value;
use std::path::Path;

/// Runs a short bench into `dir`, recording acknowledged commits in `acked`.
fn bench(dir: &Path, acked: &Path, extra: &[&str]) -> Value {
    let (dir, acked) = (dir.to_str().expect("utf-8 path"), acked.to_str().expect("utf-8 path"));
    let mut args = vec![
        "bench",
        "log",
        "--seconds",
        "0.3",
        "--json",
        "--dir",
        dir,
        "--acked",
        acked,
    ];
    args.extend_from_slice(extra);
    let out = mailvault(&args, None);
    assert!(out.status.success(), "bench failed:\n{}", text(&out));
    json(&out)
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).expect("read acked file").lines().count()
}

#[test]
fn help_lists_the_commands() {
    let out = mailvault(&["--help"], None);
    assert!(out.status.success());
    let help = text(&out);
    for command in ["bench", "check", "dump"] {
        assert!(help.contains(command), "--help does not list {command}:\n{help}");
    }
}

#[test]
fn bench_check_dump_and_corruption() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let acked = tmp.path().join("acked.txt");
    let report = bench(
        &dir,
        &acked,
        &["--threads", "4", "--record-size", "1024", "--generation-size", "262144"],
    );
    for field in [
        "raw.fsyncs_per_sec",
        "raw.seq_mb_per_sec",
        "log.commits",
        "log.commits_per_sec",
        "log.mb_per_sec",
        "log.fsyncs_per_sec",
        "log.mean_batch",
        "log.latency_us.p50",
        "log.latency_us.p99",
        "log.latency_us.p999",
        "ratio.commits_vs_raw_fsyncs",
        "ratio.mb_vs_raw_seq",
        // With more than one thread, a one-thread reference runs in the same rounds.
        "ratio.commits_vs_one_thread",
        "one_thread.commits_per_sec",
        "config.threads",
        "config.record_size",
        "config.seconds",
        "config.generation_size",
        "memory.peak_rss_kib",
        "memory.rss_kib",
    ] {
        assert!(number(&report, field) > 0.0, "{field} is not positive: {report:#}");
    }
    for field in ["log.generation_switches", "log.preparation_stalls"] {
        assert!(number(&report, field) >= 0.0);
    }
    assert!(report["config"]["dir"].is_string());
    assert_eq!(number(&report, "config.generation_size"), 262_144.0);
    // The one-thread reference's commits are acknowledged too.
    let commits = number(&report, "log.commits") as usize + number(&report, "one_thread.commits") as usize;
    assert_eq!(line_count(&acked), commits, "one acked line per commit");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("log dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n.ends_with(".mvlog")),
        "raw scratch files left behind: {names:?}"
    );

    let dir_s = dir.to_str().expect("utf-8 path");
    let acked_s = acked.to_str().expect("utf-8 path");
    let out = mailvault(&["check", dir_s, "--acked", acked_s, "--json"], None);
    assert!(out.status.success(), "check of a clean log failed:\n{}", text(&out));
    let check = json(&out);
    assert_eq!(check["ok"], Value::Bool(true));
    assert_eq!(number(&check, "acked_checked") as usize, commits);
    assert!(number(&check, "records") as usize >= commits);
    assert!(check["torn_tail"].is_null());
    assert_eq!(check["problems"], Value::Array(vec![]));
    let generations = number(&check, "last_generation");
    assert!(
        generations > 1.0,
        "0.3 s should fill more than one 256 KiB generation: {check:#}"
    );

    // A reader that is gone (`| head`) ends the dump quietly, not with a panic.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .args(["dump", "log", dir_s])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run mailvault");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for mailvault");
    assert!(out.status.success(), "dump into a closed pipe:\n{}", text(&out));
    assert!(out.stderr.is_empty(), "dump into a closed pipe:\n{}", text(&out));

    let out = mailvault(&["dump", "log", dir_s, "--json"], None);
    assert!(out.status.success(), "dump failed:\n{}", text(&out));
    let dump = json(&out);
    let files = dump["generations"].as_array().expect("generations");
    assert!(files.len() >= 2);
    assert_eq!(files[0]["file"], "0000000001.mvlog");
    assert_eq!(files[0]["header"]["generation"], 1);
    let records: Vec<&Value> = files
        .iter()
        .flat_map(|f| f["records"].as_array().expect("records"))
        .collect();
    assert!(!records.is_empty());
    for r in &records {
        assert!(r["lsn"].is_string() && r["lsn_u64"].is_u64() && r["checksum_ok"].is_boolean());
    }
    let sealed = files[0]["records"].as_array().expect("records of generation 1");
    assert!(sealed.iter().all(|r| r["len"] == 1024 && r["checksum_ok"] == true));

    // Flip a byte inside data frame 5 of the first, sealed generation.
    let first = dir.join("0000000001.mvlog");
    let mut bytes = std::fs::read(&first).expect("read generation 1");
    bytes[5 * 4096 + 100] ^= 0x40;
    std::fs::write(&first, &bytes).expect("write generation 1");
    let out = mailvault(&["check", dir_s, "--acked", acked_s], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "check accepted a corrupt log:\n{}",
        text(&out)
    );
    assert!(
        text(&out).contains("0000000001.mvlog"),
        "check does not name the file:\n{}",
        text(&out)
    );
    let out = mailvault(&["check", dir_s, "--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let check = json(&out);
    assert_eq!(check["ok"], Value::Bool(false));
    assert!(check["problems"].to_string().contains("0000000001.mvlog"));

    let out = mailvault(&["dump", "log", dir_s, "--json"], None);
    assert!(out.status.success(), "dump must decode a corrupt log:\n{}", text(&out));
    let dump = json(&out);
    let gen1 = &dump["generations"][0];
    assert_eq!(gen1["invalid_frames"], 1, "{gen1:#}");
    assert_eq!(gen1["invalid_frame_samples"][0]["slot"], 5);
}

#[test]
fn acked_lines_missing_from_the_log_fail_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("log");
    let acked = tmp.path().join("acked.txt");
    bench(&dir, &acked, &["--threads", "2", "--record-size", "100"]);
    let dir_s = dir.to_str().expect("utf-8 path");
    let acked_s = acked.to_str().expect("utf-8 path");
    let out = mailvault(&["check", dir_s, "--acked", acked_s], None);
    assert!(out.status.success(), "{}", text(&out));

    let lines = line_count(&acked);
    let mut content = std::fs::read_to_string(&acked).expect("read acked");
    // Generation 999 does not exist.
    content.push_str(&format!("42 {} 100 0badc0de\n", 999u64 << 32 | 0x3020));
    std::fs::write(&acked, &content).expect("write acked");
    let out = mailvault(&["check", dir_s, "--acked", acked_s, "--json"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let check = json(&out);
    assert_eq!(check["ok"], Value::Bool(false));
    let problems = check["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{problems:?}");
    let problem = problems[0].as_str().expect("string");
    assert!(
        problem.contains(&format!("line {}", lines + 1)) && problem.contains("no record"),
        "{problem}"
    );

    // A malformed line and a wrong checksum are problems too.
    let first = content.lines().next().expect("a line").to_string();
    let mut fields: Vec<&str> = first.split(' ').collect();
    fields[3] = "00000000";
    content.push_str("not a line\n");
    content.push_str(&(fields.join(" ") + "\n"));
    std::fs::write(&acked, &content).expect("write acked");
    let out = mailvault(&["check", dir_s, "--acked", acked_s], None);
    assert_eq!(out.status.code(), Some(1));
    let out = text(&out);
    assert!(out.contains(&format!("line {}: malformed", lines + 2)), "{out}");
    assert!(out.contains(&format!("line {}: record at LSN", lines + 3)), "{out}");
}

#[test]
fn bench_without_dir_leaves_nothing_behind() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = mailvault(
        &["bench", "log", "--seconds", "0.2", "--record-size", "64", "--json"],
        Some(cwd.path()),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(number(&json(&out), "log.commits") > 0.0);
    let left: Vec<_> = std::fs::read_dir(cwd.path()).expect("cwd").collect();
    assert!(left.is_empty(), "bench left {left:?} behind");
}

#[test]
fn bench_refuses_bad_arguments_before_measuring() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8 path");
    let out = mailvault(&["bench", "log", "--record-size", "5000000", "--dir", dir], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("exceeds the maximum record size"), "{}", text(&out));
    std::fs::write(tmp.path().join("other"), b"x").expect("write");
    let out = mailvault(&["bench", "log", "--dir", dir], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    let out = mailvault(&["bench", "log", "--record-size", "11"], None);
    assert!(!out.status.success());
}

/// The smallest settings that still run every phase.
const TINY: [&str; 10] = [
    "--seconds",
    "0.3",
    "--cache-mib",
    "1",
    "--recovery-mib",
    "1",
    "--page-size",
    "4096",
    "--value-size",
    "100",
];

#[test]
fn bench_kv_then_check_then_a_corrupt_page() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("db");
    let acked = tmp.path().join("acked.txt");
    let (dir_s, acked_s) = (dir.to_str().expect("utf-8"), acked.to_str().expect("utf-8"));
    let mut args = vec![
        "bench",
        "kv",
        "--json",
        "--threads",
        "4",
        "--dir",
        dir_s,
        "--acked",
        acked_s,
    ];
    args.extend_from_slice(&TINY);
    let out = mailvault(&args, None);
    assert!(out.status.success(), "bench kv failed:\n{}", text(&out));
    let report = json(&out);
    for field in [
        "raw.fsyncs_per_sec",
        "insert.commits",
        "insert.commits_per_sec",
        "insert.fsyncs_per_sec",
        "insert.mean_batch",
        "insert.latency_us.p50",
        "insert.latency_us.p99",
        "insert.latency_us.p999",
        "ratio.commits_vs_raw_fsyncs",
        "reads.per_sec",
        "reads.per_thread_per_sec",
        "reads.cpu_us_per_op",
        "reads.one_thread.per_sec",
        "scans.per_sec",
        "scans.mean_entries",
        "recovery.log_bytes",
        "recovery.mb_per_sec",
        "recovery.raw_read_mb_per_sec",
        "recovery.log_read_mb_per_sec",
        "ratio.recovery_vs_raw_read",
        "memory.peak_rss_kib",
        "memory.cache_kib",
        "memory.written_bytes",
    ] {
        assert!(number(&report, field) > 0.0, "{field} is not positive: {report:#}");
    }
    assert_eq!(number(&report, "memory.cache_kib"), 1024.0);
    assert!(number(&report, "memory.written_bytes") >= 4.0 * 1024.0 * 1024.0);
    assert!(number(&report, "recovery.log_bytes") >= 1024.0 * 1024.0, "{report:#}");
    assert_eq!(number(&report, "reads.threads"), 4.0);
    let commits = number(&report, "insert.commits") as usize;
    let content = std::fs::read_to_string(&acked).expect("read acked");
    assert_eq!(content.lines().count(), commits, "one acked line per commit");
    assert!(content.lines().all(|l| l.starts_with("messages ")), "{content}");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .expect("db dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!left.iter().any(|n| n.starts_with(".mailvault-raw")), "{left:?}");

    let out = mailvault(&["check", dir_s, "--acked", acked_s, "--json"], None);
    assert!(
        out.status.success(),
        "check of a clean database failed:\n{}",
        text(&out)
    );
    let check = json(&out);
    assert_eq!(check["ok"], Value::Bool(true));
    assert_eq!(check["kind"], "database");
    assert_eq!(number(&check, "acked_checked") as usize, commits);
    assert_eq!(check["log"]["ok"], Value::Bool(true));
    let tables = check["verify"]["tables"].as_array().expect("tables");
    let messages = tables.iter().find(|t| t["name"] == "messages").expect("messages");
    assert_eq!(messages["entries"].as_u64(), Some(commits as u64));

    // Acknowledged puts that are not there, or not as acknowledged.
    let first = content.lines().next().expect("a line");
    let fields: Vec<&str> = first.split(' ').collect();
    let mut bad = content.clone();
    bad.push_str("not a line\n");
    bad.push_str("messages 6e6f2d737563682d6b6579 100 00000000\n");
    bad.push_str(&format!("{} {} {} 00000000\n", fields[0], fields[1], fields[2]));
    bad.push_str(&format!("{} {} 7 {}\n", fields[0], fields[1], fields[3]));
    bad.push_str(&format!("nosuchtable {} {} {}\n", fields[1], fields[2], fields[3]));
    let bad_acked = tmp.path().join("bad-acked.txt");
    std::fs::write(&bad_acked, bad).expect("write acked");
    let out = mailvault(&["check", dir_s, "--acked", bad_acked.to_str().expect("utf-8")], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = text(&out);
    for expect in [
        format!("line {}: malformed", commits + 1),
        format!("line {}: key \"no-such-key\" is not in table \"messages\"", commits + 2),
        format!("line {}: key", commits + 3),
        "holds a value with crc32c".to_string(),
        format!("line {}: key", commits + 4),
        "holds 100 bytes, acknowledged 7".to_string(),
        format!("line {}: table \"nosuchtable\"", commits + 5),
    ] {
        assert!(out.contains(&expect), "missing {expect:?} in:\n{out}");
    }

    // The database's structures, read-only.
    let out = mailvault(&["dump", "header", dir_s, "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    let header = json(&out);
    let in_use = header["in_use"].as_u64().expect("a copy in use") as usize;
    assert_eq!(header["copies"][in_use]["valid"], Value::Bool(true), "{header:#}");
    assert_eq!(header["copies"][in_use]["header"]["state"], "clean", "{header:#}");
    let out = mailvault(&["dump", "checkpoint", dir_s, "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    let ck = json(&out);
    assert!(
        ck["marker"].as_str().expect("marker").starts_with("checkpoint "),
        "{ck:#}"
    );
    assert_eq!(
        ck["records_after"].as_u64(),
        Some(0),
        "a clean close leaves nothing to replay: {ck:#}"
    );
    let out = mailvault(&["dump", "page", "3", dir_s, "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    let catalog = json(&out);
    assert_eq!(catalog["valid"], Value::Bool(true), "{catalog:#}");
    let cells = catalog["node"]["cells"].as_array().expect("the catalog's cells");
    assert!(cells.iter().any(|c| c["key"] == "\"messages\""), "{catalog:#}");
    let out = mailvault(&["dump", "page", "999999999", dir_s], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("beyond the end of the file"), "{}", text(&out));

    // Flip a byte in the middle of page 5.
    let page_size = number(&report, "config.page_size") as usize;
    let data = dir.join("data.mvdb");
    let mut bytes = std::fs::read(&data).expect("read data.mvdb");
    bytes[5 * page_size + 200] ^= 0x40;
    std::fs::write(&data, &bytes).expect("write data.mvdb");
    let out = mailvault(&["check", dir_s], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "check accepted a corrupt page:\n{}",
        text(&out)
    );
    assert!(text(&out).contains("PROBLEM: page 5: "), "{}", text(&out));
    let out = mailvault(&["check", dir_s, "--acked", acked_s, "--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let check = json(&out);
    assert_eq!(check["ok"], Value::Bool(false));
    assert!(
        check["bad_pages"]
            .as_array()
            .expect("bad_pages")
            .contains(&Value::from(5)),
        "{check:#}"
    );
    assert_eq!(check["log"]["ok"], Value::Bool(true), "the log is not damaged");
    let out = mailvault(&["dump", "page", "5", dir_s, "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    let page = json(&out);
    assert_eq!(page["valid"], Value::Bool(false), "{page:#}");
    assert!(page["error"].as_str().expect("error").contains("page 5"), "{page:#}");
}

#[test]
fn bench_kv_without_dir_leaves_nothing_behind() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["bench", "kv", "--threads", "2", "--read-threads", "1"];
    args.extend_from_slice(&TINY);
    let out = mailvault(&args, Some(cwd.path()));
    assert!(out.status.success(), "{}", text(&out));
    let table = text(&out);
    for row in [
        "commits/s ÷ raw fsyncs/s",
        "read/s, 1 thread(s)",
        "scan/s",
        "replay MB/s",
        "peak RSS",
    ] {
        assert!(table.contains(row), "no {row:?} in:\n{table}");
    }
    let left: Vec<_> = std::fs::read_dir(cwd.path()).expect("cwd").collect();
    assert!(left.is_empty(), "bench left {left:?} behind");
}

#[test]
fn bad_arguments_are_refused_before_measuring() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8");
    for (args, expect) in [
        (&["--page-size", "1000"][..], "power of two from 4096 to 65536"),
        (&["--page-size", "131072"][..], "power of two from 4096 to 65536"),
        (&["--value-size", "5"][..], "--value-size"),
        (&["--threads", "0"][..], "--threads"),
        (&["--cache-mib", "0"][..], "--cache-mib"),
        (&["--seconds", "0"][..], "positive number of seconds"),
        (&["--recovery-mib", "x"][..], "--recovery-mib"),
    ] {
        let mut all = vec!["bench", "kv", "--dir", dir];
        all.extend_from_slice(args);
        let out = mailvault(&all, None);
        assert_eq!(out.status.code(), Some(2), "{args:?} accepted:\n{}", text(&out));
        assert!(
            text(&out).contains(expect),
            "{args:?}: no {expect:?} in:\n{}",
            text(&out)
        );
    }
    std::fs::write(tmp.path().join("other"), b"x").expect("write");
    let out = mailvault(&["bench", "kv", "--dir", dir], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    assert!(!tmp.path().join("data.mvdb").exists());

    // A database directory whose data file is not a database.
    let fake = tmp.path().join("fake");
    std::fs::create_dir(&fake).expect("mkdir");
    std::fs::write(fake.join("data.mvdb"), vec![0u8; 8192]).expect("write");
    let out = mailvault(&["check", fake.to_str().expect("utf-8"), "--json"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let check = json(&out);
    assert_eq!(check["kind"], "database");
    let problems = check["problems"].to_string();
    assert!(
        problems.contains("opening the database (recovery) failed"),
        "{problems}"
    );
    assert!(problems.contains("data.mvdb"), "{problems}");
}

#[test]
fn check_refuses_a_database_another_process_holds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("db");
    let db = mailvault::txn::Database::create(
        std::sync::Arc::new(mailvault::vfs::OsVfs),
        &dir,
        mailvault::txn::DbOptions::default(),
    )
    .expect("create");
    let out = mailvault(&["check", dir.to_str().expect("utf-8")], None);
    assert!(!out.status.success(), "check opened a database this process holds");
    assert!(text(&out).contains("in use"), "{}", text(&out));
    db.close().expect("close");
    let out = mailvault(&["check", dir.to_str().expect("utf-8")], None);
    assert!(out.status.success(), "check after close:\n{}", text(&out));
}
