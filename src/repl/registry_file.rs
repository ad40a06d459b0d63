//! The active's copy registry on disk (`copies.state` in the store's
//! directory), so that a restarted active holds the log its copies still
//! need instead of recycling it and telling them to reseed.
//!
//! Layout: magic `MVCR` | version u8 (1) | 3 zero bytes | count n u32 |
//! n × (copy id [16], held LSN u64) | crc32c u32 of everything before.
//! Written aside, synced, renamed over the old one, directory synced.

use crate::log::Lsn;
use crate::vfs::{OpenMode, SharedVfs};
use std::path::{Path, PathBuf};

const MAGIC: [u8; 4] = *b"MVCR";
const VERSION: u8 = 1;
/// More copies than this is not a registry this build wrote (15 copies are
/// the design's limit; room is left for copies that come and go).
const MAX_COPIES: usize = 1024;
const ENTRY: usize = 24;

/// Where a registry lives.
#[derive(Clone)]
pub(crate) struct RegistryFile {
    pub vfs: SharedVfs,
    pub path: PathBuf,
}

pub(crate) fn encode(copies: &[([u8; 16], Lsn)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(12 + copies.len() * ENTRY + 4);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&[VERSION, 0, 0, 0]);
    b.extend_from_slice(&(copies.len() as u32).to_le_bytes());
    for (id, held) in copies {
        b.extend_from_slice(id);
        b.extend_from_slice(&held.0.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

pub(crate) fn decode(b: &[u8]) -> Result<Vec<([u8; 16], Lsn)>, String> {
    if b.len() < 16 || b[..4] != MAGIC {
        return Err("not a copy registry".into());
    }
    if b[4] != VERSION {
        return Err(format!("registry version {}", b[4]));
    }
    if b[5..8] != [0, 0, 0] {
        return Err("reserved bytes 5..8 are not zero".into());
    }
    let n = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
    if n > MAX_COPIES || b.len() != 12 + n * ENTRY + 4 {
        return Err(format!("{} bytes holding {n} copies", b.len()));
    }
    let body = b.len() - 4;
    let crc = u32::from_le_bytes([b[body], b[body + 1], b[body + 2], b[body + 3]]);
    if crc32c::crc32c(&b[..body]) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(b[12..body]
        .chunks(ENTRY)
        .map(|e| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&e[..16]);
            let mut lsn = [0u8; 8];
            lsn.copy_from_slice(&e[16..24]);
            (id, Lsn(u64::from_le_bytes(lsn)))
        })
        .collect())
}

impl RegistryFile {
    /// Writes the registry; the old one stays whole until the rename.
    pub(crate) fn save(&self, copies: &[([u8; 16], Lsn)]) -> std::io::Result<()> {
        let tmp = self.path.with_extension("state.tmp");
        let file = self.vfs.open(&tmp, OpenMode::CreateOrOpen)?;
        file.set_len(0)?;
        file.write_at(&encode(copies), 0)?;
        file.sync_data()?;
        drop(file);
        self.vfs.rename(&tmp, &self.path)?;
        self.vfs.sync_dir(self.path.parent().unwrap_or(Path::new(".")))
    }

    /// The saved registry; none if there is no file, and none (with a
    /// warning naming the file) if it is damaged: its copies then resume if
    /// their log is still here, or are told to reseed.
    pub(crate) fn load(&self) -> Vec<([u8; 16], Lsn)> {
        let read = || -> std::io::Result<Option<Vec<u8>>> {
            if !self.vfs.exists(&self.path)? {
                return Ok(None);
            }
            let file = self.vfs.open(&self.path, OpenMode::Existing)?;
            let len = file.len()?;
            if len > (12 + MAX_COPIES * ENTRY + 4) as u64 {
                return Ok(Some(Vec::new()));
            }
            let mut b = vec![0u8; len as usize];
            file.read_exact_at(&mut b, 0)?;
            Ok(Some(b))
        };
        match read() {
            Ok(None) => Vec::new(),
            Ok(Some(b)) => decode(&b).unwrap_or_else(|reason| {
                tracing::warn!(file = %self.path.display(), offset = 0, %reason, "replication: ignoring a damaged copy registry");
                Vec::new()
            }),
            Err(e) => {
                tracing::warn!(file = %self.path.display(), offset = 0, error = %e, "replication: the copy registry could not be read");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_round_trip_and_damage_is_refused() {
        let copies = vec![([1u8; 16], Lsn::new(3, 0)), ([2u8; 16], Lsn::new(9, 0))];
        let b = encode(&copies);
        assert_eq!(decode(&b).unwrap(), copies);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "a flipped byte {i} decodes");
        }
        assert!(decode(&b[..b.len() - 1]).is_err());
        let mut huge = b.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
    }

    #[test]
    fn restore_keeps_a_hold_at_the_start_of_the_generation_after_the_durable_end() {
        use crate::repl::CopyRegistry;
        use crate::vfs::{OsVfs, SharedVfs};
        let tmp = tempfile::tempdir().unwrap();
        let vfs: SharedVfs = std::sync::Arc::new(OsVfs);
        let db = crate::txn::Database::create(vfs.clone(), tmp.path().join("db"), Default::default()).unwrap();
        let durable = db.pager().log().durable_lsn();
        assert!(durable.offset() > 0);
        let path = tmp.path().join("copies.state");
        let next = Lsn::new(durable.generation() + 1, 0);
        let beyond = Lsn::new(durable.generation() + 2, 0);
        let past_end = Lsn(durable.0 + 4096);
        let saved = [
            ([1u8; 16], durable),
            ([2; 16], next),
            ([3; 16], beyond),
            ([4; 16], past_end),
        ];
        RegistryFile {
            vfs: vfs.clone(),
            path: path.clone(),
        }
        .save(&saved)
        .unwrap();
        let registry = CopyRegistry::persistent(vfs, path, None);
        assert_eq!(registry.restore(&db), 2);
        assert!(registry.get(&[1; 16]).is_some());
        assert!(
            registry.get(&[2; 16]).is_some(),
            "a copy that received the seal keeps its hold"
        );
        assert!(registry.get(&[3; 16]).is_none());
        assert!(registry.get(&[4; 16]).is_none());
    }
}
