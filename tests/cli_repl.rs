//! Replication as real processes on loopback: `serve` a store at rest,
//! `follow` into an empty directory (seeded, then the log), `status`,
//! `compare` (identical), and `check --acked` on the copy; a wrong key file
//! is refused.

#[path = "common/cli.rs"]
mod cli_util;

use cli_util::{json, mailvault, text};
use std::process::{Command, Stdio};

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
    let mut server = Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .args([
            "serve",
            &p("a"),
            "--listen",
            &addr,
            "--key-file",
            &p("key"),
            "--linger",
            "4",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    let mut server = Command::new(env!("CARGO_BIN_EXE_mailvault"))
        .args([
            "serve",
            &p("a"),
            "--listen",
            &addr,
            "--key-file",
            &p("key"),
            "--linger",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
