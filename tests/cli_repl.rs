//! Replication as real processes on loopback: `serve` a store at rest,
//! `follow` into an empty directory (seeded, then the log), `status`,
//! `compare` (identical), and `check --acked` on the copy; a wrong key file
//! is refused.

#[path = "common/cli.rs"]
mod cli_util;

use cli_util::{json, mailvault, text};
use std::process::{Command, Stdio};

/// Starts `mailvault` with `args` in the background, output discarded.
fn background(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mailvault")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_follow_status_compare_check() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    std::fs::write(p("key"), "a cluster key for the cli test\n").unwrap();
    std::fs::write(p("wrong"), "some other key, not the cluster's\n").unwrap();
    let out = mailvault(
        &[
            "load",
            &p("a"),
            "--messages",
            "80",
            "--threads",
            "4",
            "--acked",
            &p("acked"),
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = background(&[
        "serve",
        &p("a"),
        "--listen",
        &addr,
        "--key-file",
        &p("key"),
        "--linger",
        "4",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let refused = mailvault(
        &[
            "follow",
            &p("x"),
            "--source",
            &addr,
            "--key-file",
            &p("wrong"),
            "--retry-for",
            "1",
        ],
        None,
    );
    assert!(!refused.status.success(), "a wrong key must fail: {}", text(&refused));
    assert!(
        !std::path::Path::new(&p("x")).join("data.mvdb").exists(),
        "nothing was sent"
    );
    let out = mailvault(
        &[
            "follow",
            &p("b"),
            "--source",
            &addr,
            "--key-file",
            &p("key"),
            "--retry-for",
            "5",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["state"], "Healthy");
    let out = mailvault(&["status", &p("b"), "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    let s = json(&out);
    assert_eq!(s["inspected"], s["replayed"]);
    assert!(server.wait().unwrap().success(), "serve exits cleanly after --linger");
    let out = mailvault(&["compare", &p("a"), &p("b"), "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["identical"], true);
    let out = mailvault(&["check", &p("b"), "--acked", &p("acked")], None);
    assert!(
        out.status.success(),
        "the copy holds every acknowledged message: {}",
        text(&out)
    );
    // A forced reseed of the same copy, from a second serving.
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = background(&[
        "serve",
        &p("a"),
        "--listen",
        &addr,
        "--key-file",
        &p("key"),
        "--linger",
        "2",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = mailvault(
        &[
            "seed",
            &p("b"),
            "--source",
            &addr,
            "--key-file",
            &p("key"),
            "--retry-for",
            "5",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(server.wait().unwrap().success());
    let out = mailvault(&["compare", &p("a"), &p("b")], None);
    assert!(text(&out).contains("identical"), "{}", text(&out));
}

/// UIDs of a folder on a store, through `ls --json`.
fn uids(dir: &str, mailbox: &str) -> Vec<u64> {
    let out = mailvault(&["ls", dir, mailbox, "INBOX", "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["uid"].as_u64().unwrap())
        .collect()
}

#[test]
fn load_serve_then_the_active_is_killed_and_the_copy_holds_a_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    std::fs::write(p("key"), "a cluster key for the cli test\n").unwrap();
    // First a clean run: load --serve lingers until the copy has it all.
    let addr = format!("127.0.0.1:{}", free_port());
    let load = background(&[
        "load",
        &p("a"),
        "--messages",
        "150",
        "--threads",
        "4",
        "--mailboxes",
        "3",
        "--serve",
        &addr,
        "--key-file",
        &p("key"),
        "--linger",
        "20",
        "--wait-copies",
        "1",
        "--json",
    ]);
    let out = mailvault(
        &[
            "follow",
            &p("b"),
            "--source",
            &addr,
            "--key-file",
            &p("key"),
            "--retry-for",
            "10",
        ],
        None,
    );
    let mut load = load;
    assert!(load.wait().unwrap().success());
    assert!(out.status.success(), "{}", text(&out));
    let out = mailvault(&["compare", &p("a"), &p("b")], None);
    assert!(out.status.success(), "{}", text(&out));

    // Then the active is killed with SIGKILL under load.
    let addr = format!("127.0.0.1:{}", free_port());
    let mut load = background(&[
        "load",
        &p("k"),
        "--messages",
        "100000",
        "--threads",
        "8",
        "--mailboxes",
        "3",
        "--serve",
        &addr,
        "--key-file",
        &p("key"),
        "--acked",
        &p("acked"),
        "--json",
    ]);
    // Start following once the active listens: `--retry-for` then only
    // counts the time after the kill.
    let listening = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(std::time::Instant::now() < listening, "the active never listened");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut follow = background(&[
        "follow",
        &p("c"),
        "--source",
        &addr,
        "--key-file",
        &p("key"),
        "--retry-for",
        "2",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let s = mailvault(&["status", &p("c"), "--json"], None);
        if s.status.success()
            && json(&s)["state"] != "Seeding"
            && json(&s)["replayed"].as_str().is_some_and(|r| r != "0:0x0")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the copy never got going");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(700));
    load.kill().unwrap();
    load.wait().unwrap();
    assert!(
        !follow.wait().unwrap().success(),
        "follow gives up once the active is gone"
    );
    let status = json(&mailvault(&["status", &p("c"), "--json"], None));
    assert!(status["replayed"].is_string(), "{status}");
    assert_eq!(status["state"], "Failed", "{status}");
    assert!(
        status["reason"].as_str().is_some_and(|r| r.contains("gave up")),
        "{status}"
    );
    // The copy is consistent, and each folder holds a prefix of the UIDs
    // the active handed out: no holes.
    let out = mailvault(&["check", &p("c")], None);
    assert!(out.status.success(), "{}", text(&out));
    let mut total = 0;
    let mut have = std::collections::HashMap::new();
    for m in ["user0000", "user0001", "user0002"] {
        let u = uids(&p("c"), m);
        assert_eq!(u, (1..=u.len() as u64).collect::<Vec<_>>(), "{m}: UIDs form a prefix");
        total += u.len();
        have.insert(m.to_string(), u.len() as u64);
    }
    assert!(total > 0, "the copy received some mail before the kill");
    // Every acknowledged message the copy holds is byte-exact: write the
    // acked lines that fall within the copy's UIDs, and check them.
    let acked = std::fs::read_to_string(p("acked")).unwrap_or_default();
    let held: Vec<&str> = acked
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let held = have.get(f[1]).copied().unwrap_or(0);
            f[3].parse::<u64>().is_ok_and(|uid| uid <= held)
        })
        .collect();
    assert!(!held.is_empty(), "some acknowledged mail reached the copy");
    std::fs::write(p("held"), held.join("\n") + "\n").unwrap();
    let out = mailvault(&["check", &p("c"), "--acked", &p("held")], None);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_following_copy_serves_another_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    std::fs::write(p("key"), "a cluster key for the cli test\n").unwrap();
    let out = mailvault(
        &[
            "load",
            &p("a"),
            "--messages",
            "60",
            "--threads",
            "2",
            "--acked",
            &p("acked"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let (active, relay) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut server = background(&[
        "serve",
        &p("a"),
        "--listen",
        &active,
        "--key-file",
        &p("key"),
        "--linger",
        "5",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // B follows the active and serves C; C may ask before B has a database
    // (it is told to try again) and then follows B until B stops.
    let mut b = background(&[
        "follow",
        &p("b"),
        "--source",
        &active,
        "--key-file",
        &p("key"),
        "--serve",
        &relay,
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = mailvault(
        &[
            "follow",
            &p("c"),
            "--source",
            &relay,
            "--key-file",
            &p("key"),
            "--retry-for",
            "10",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(server.wait().unwrap().success());
    assert!(b.wait().unwrap().success(), "B ends when the active does");
    for copy in ["b", "c"] {
        let out = mailvault(&["compare", &p("a"), &p(copy), "--json"], None);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(json(&out)["identical"], true, "{copy}: {}", text(&out));
    }
    let out = mailvault(&["check", &p("c"), "--acked", &p("acked")], None);
    assert!(out.status.success(), "{}", text(&out));
}
