//! The floor: what the disk gives with no engine at all. Each durable write
//! is one pwrite plus one fdatasync, overwriting a file written in full
//! beforehand (so no write allocates blocks or changes the file's size).
//! Records live in fixed slots (the slot is the index a key carries), a
//! batch is one sequential write and one fdatasync, and mail bodies are
//! appended one after another; there are no folders to list.

use super::{KvStore, MailStore};
use crate::data::{Delivery, MessageRow, key_index, record_key, record_value};
use crate::error::{BenchError, BenchResult};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

const NAME: &str = "raw";

/// Writes `len` zero bytes to a new file and syncs it.
fn preallocated(path: &Path, len: u64) -> BenchResult<File> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(file)
}

fn unsupported(workload: &str) -> BenchError {
    BenchError::Unsupported {
        engine: NAME,
        workload: workload.into(),
    }
}

/// Slot locks: a pwrite and a pread of the same range are not atomic, so
/// a read racing a write of its record could see parts of both (found by
/// the mixed workload's check, once in 186 runs). Striped, and held only
/// around the write or the read, not the fdatasync.
const SLOT_LOCKS: usize = 1024;

pub struct RawKv {
    file: File,
    slots: u64,
    slot_len: u64,
    locks: Vec<std::sync::RwLock<()>>,
}

impl RawKv {
    pub fn create(dir: &Path, capacity: u64, value_len: usize) -> BenchResult<RawKv> {
        let slots = capacity.max(1);
        let slot_len = value_len.max(crate::data::VALUE_HEADER) as u64;
        Ok(RawKv {
            file: preallocated(&dir.join("raw.dat"), slots * slot_len)?,
            slots,
            slot_len,
            locks: (0..SLOT_LOCKS).map(|_| std::sync::RwLock::new(())).collect(),
        })
    }

    fn lock_of(&self, offset: u64) -> &std::sync::RwLock<()> {
        &self.locks[(offset / self.slot_len) as usize % SLOT_LOCKS]
    }

    fn offset(&self, key: &[u8]) -> BenchResult<u64> {
        let index = key_index(key).ok_or_else(|| BenchError::Engine {
            engine: NAME,
            message: format!("a key of {} bytes, not a record key", key.len()),
        })?;
        Ok(index % self.slots * self.slot_len)
    }
}

impl KvStore for RawKv {
    fn put_durable(&self, key: &[u8], value: &[u8]) -> BenchResult<()> {
        let at = self.offset(key)?;
        {
            // A poisoned lock guards nothing but the slot's bytes: go on.
            let _slot = self.lock_of(at).write().unwrap_or_else(|e| e.into_inner());
            self.file.write_all_at(value, at)?;
        }
        self.file.sync_data()?;
        Ok(())
    }

    fn put_batch(&self, first: u64, count: u64, value_len: usize) -> BenchResult<()> {
        let mut chunk = Vec::with_capacity(1 << 20);
        let mut offset = self.offset(&record_key(first))?;
        for index in first..first + count {
            let value = record_value(index, 0, value_len);
            if chunk.len() + value.len() > chunk.capacity() || index % self.slots == 0 {
                self.file.write_all_at(&chunk, offset)?;
                offset = self.offset(&record_key(index))?;
                chunk.clear();
            }
            chunk.extend_from_slice(&value);
        }
        self.file.write_all_at(&chunk, offset)?;
        self.file.sync_data()?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<Vec<u8>>> {
        let mut value = vec![0u8; self.slot_len as usize];
        let at = self.offset(key)?;
        let _slot = self.lock_of(at).read().unwrap_or_else(|e| e.into_inner());
        self.file.read_exact_at(&mut value, at)?;
        Ok(Some(value))
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        Ok(())
    }
}

pub struct RawMail {
    file: File,
    capacity: u64,
    end: AtomicU64,
}

impl RawMail {
    pub fn create(dir: &Path, capacity_bytes: u64) -> BenchResult<RawMail> {
        Ok(RawMail {
            file: preallocated(&dir.join("raw.dat"), capacity_bytes)?,
            capacity: capacity_bytes,
            end: AtomicU64::new(0),
        })
    }
}

impl MailStore for RawMail {
    fn create_folder(&self, _mailbox: &str, _folder: &str) -> BenchResult<()> {
        Ok(())
    }

    fn deliver(&self, delivery: Delivery) -> BenchResult<()> {
        let len = delivery.body.len() as u64;
        let offset = self.end.fetch_add(len, Ordering::Relaxed);
        if offset + len > self.capacity {
            return Err(BenchError::Engine {
                engine: NAME,
                message: format!("{} bytes delivered, {} preallocated", offset + len, self.capacity),
            });
        }
        self.file.write_all_at(&delivery.body, offset)?;
        self.file.sync_data()?;
        Ok(())
    }

    fn deliver_batch(&self, _deliveries: Vec<Delivery>) -> BenchResult<()> {
        Err(unsupported("folder"))
    }

    fn list(&self, _mailbox: &str, _folder: &str) -> BenchResult<Vec<MessageRow>> {
        Err(unsupported("folder"))
    }

    fn body(&self, _mailbox: &str, _folder: &str, _uid: u32) -> BenchResult<Option<Vec<u8>>> {
        Err(unsupported("folder"))
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        Ok(())
    }
}
