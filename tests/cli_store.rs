//! The mailbox-store commands end to end: `init`, `load --acked`, `ls`,
//! `fetch`, `check --acked` (clean, then with a forged acknowledgement),
//! `bench ingest` and `bench read`, and refusals.

#[path = "common/cli.rs"]
mod cli_util;

use cli_util::{json, mailvault, number, text};

#[test]
fn init_load_ls_fetch_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = dir.to_str().unwrap();
    let acked = tmp.path().join("acked");
    let a = acked.to_str().unwrap();
    let out = mailvault(&["init", d, "--page-size", "8192", "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(number(&json(&out), "page_size"), 8192.0);
    let again = mailvault(&["init", d], None);
    assert!(!again.status.success(), "a second init over a store must fail");

    let out = mailvault(
        &[
            "load",
            d,
            "--messages",
            "60",
            "--threads",
            "4",
            "--mailboxes",
            "3",
            "--acked",
            a,
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let load = json(&out);
    assert_eq!(number(&load, "messages"), 60.0);
    assert!(number(&load, "logical_mb_per_sec") > 0.0);
    assert!(
        number(&load, "stored_bytes") < number(&load, "logical_bytes"),
        "the mix compresses"
    );
    let lines = std::fs::read_to_string(&acked).unwrap();
    assert_eq!(lines.lines().count(), 60);

    let out = mailvault(&["ls", d, "--json"], None);
    let boxes = json(&out);
    assert_eq!(boxes.as_array().map(Vec::len), Some(3), "{boxes}");
    assert_eq!(
        boxes
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["messages"].as_f64().unwrap())
            .sum::<f64>(),
        60.0
    );
    let out = mailvault(&["ls", d, "user0001", "INBOX", "--json"], None);
    assert_eq!(json(&out).as_array().map(Vec::len), Some(20));

    // fetch prints the body; its length and crc32c match the acknowledgement.
    let first: Vec<&str> = lines
        .lines()
        .find(|l| l.contains("\tuser0001\t"))
        .unwrap()
        .split('\t')
        .collect();
    let out = mailvault(&["fetch", d, first[1], first[2], first[3]], None);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout.len().to_string(), first[5]);
    assert_eq!(format!("{:08x}", crc32c::crc32c(&out.stdout)), first[6]);
    let out = mailvault(
        &[
            "fetch", d, first[1], first[2], first[3], "--offset", "10", "--length", "20",
        ],
        None,
    );
    assert_eq!(out.stdout.len(), 20);
    let out = mailvault(&["fetch", d, "user0001", "INBOX", "999"], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("no message with UID 999"), "{}", text(&out));

    let out = mailvault(&["check", d, "--acked", a, "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["ok"], true);
    assert_eq!(number(&report, "acked_checked"), 60.0);
    assert_eq!(number(&report, "store.messages"), 60.0);

    // A forged acknowledgement (a message never delivered, a wrong checksum)
    // fails the check and is named.
    let mut forged = lines.clone();
    forged.push_str("mail\tuser0000\tINBOX\t77\t1\t10\t00000000\n");
    let bad = first.iter().take(6).cloned().collect::<Vec<_>>().join("\t") + "\tdeadbeef\n";
    forged.push_str(&bad);
    std::fs::write(&acked, forged).unwrap();
    let out = mailvault(&["check", d, "--acked", a], None);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("line 61"), "{t}");
    assert!(t.contains("line 62") && t.contains("acknowledged"), "{t}");
}

#[test]
fn bench_ingest_and_read_report_ratios() {
    let tmp = tempfile::tempdir().unwrap();
    let out = mailvault(
        &[
            "bench",
            "ingest",
            "--seconds",
            "1",
            "--rounds",
            "1",
            "--pool",
            "40",
            "--threads",
            "4",
            "--json",
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "{}", text(&out));
    let r = json(&out);
    assert!(number(&r, "raw_seq_mb_per_sec") > 0.0);
    assert!(number(&r, "ingest.messages") > 0.0);
    assert!(number(&r, "ratio_logical_vs_raw_seq") > 0.0);
    let out = mailvault(
        &[
            "bench",
            "read",
            "--messages",
            "40",
            "--folder-size",
            "600",
            "--seconds",
            "0.2",
            "--json",
        ],
        Some(tmp.path()),
    );
    assert!(out.status.success(), "{}", text(&out));
    let r = json(&out);
    assert_eq!(number(&r, "folder_messages"), 600.0);
    assert!(number(&r, "ratio_cold_read_vs_raw") > 0.0);
    let pages = number(&r, "partial_fetch_pages");
    assert!(
        (1.0..=16.0).contains(&pages),
        "a 4 KiB partial fetch read {pages} pages"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the benches leave nothing behind"
    );
}
