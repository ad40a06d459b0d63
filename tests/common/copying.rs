//! What the in-process replication tests share: a file's bytes on the
//! simulated disk, and shipping the active's durable frames to a replica.

#![allow(dead_code)]

use mailvault::log::{FrameSource, LogReplica, Lsn};
use mailvault::vfs::{OpenMode, SimVfs, Vfs};
use std::path::Path;

/// The whole file at `path` as the disk holds it now.
pub fn file_bytes(disk: &SimVfs, path: &Path) -> Vec<u8> {
    let f = disk.open(path, OpenMode::Existing).unwrap();
    let mut buf = vec![0u8; f.len().unwrap() as usize];
    f.read_exact_at(&mut buf, 0).unwrap();
    buf
}

/// Ships every frame up to `durable` in chunks of 64 KiB, then syncs.
pub fn ship(source: &FrameSource, replica: &mut LogReplica, durable: Lsn) {
    loop {
        let chunk = source.read(replica.next(), durable, 64 << 10).unwrap();
        if chunk.is_empty() {
            break;
        }
        replica.apply(&chunk).unwrap();
        if chunk.tail.is_some() {
            break;
        }
    }
    replica.sync().unwrap();
}
