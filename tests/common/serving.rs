//! An active that serves its copies over TCP, one connection at a time,
//! for the replication tests.

#![allow(dead_code)]

use mailvault::repl::{ClusterKey, CopyRegistry, ShipOptions, serve_copy};
use mailvault::txn::Database;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The cluster key every replication test shares.
pub const KEY: &[u8] = b"a cluster key for the tests, 32b";

pub fn key() -> ClusterKey {
    ClusterKey::new(KEY).unwrap()
}

/// Shipping with a 50 ms heartbeat, so quiet sessions notice a stop soon.
pub fn ship_options() -> ShipOptions {
    ShipOptions {
        heartbeat: Duration::from_millis(50),
        ..ShipOptions::default()
    }
}

/// Serves copies of `db` one connection at a time with `opts` and
/// `registry` until `stop`; returns each session's outcome.
pub fn serve_sessions(
    db: Arc<Database>,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    opts: ShipOptions,
    registry: Arc<CopyRegistry>,
) -> std::thread::JoinHandle<Vec<Result<(), String>>> {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut outcomes = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    let r = serve_copy(&*db, stream, &key(), &opts, &stop, &registry);
                    outcomes.push(r.map_err(|e| e.to_string()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        outcomes
    })
}
