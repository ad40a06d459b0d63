//! Spare generation files on a copy: the generations replay no longer needs
//! are kept, up to [`REPLICA_POOL`], and the next generation shipped is
//! written into one instead of a new file. A new file's pages are new to the
//! page cache, and on the machine this was measured on the first write into
//! such a page cost about 20 µs per 4 KiB (130–265 MB/s), against gigabytes
//! a second into cached ones. The active recycles its own generations too
//! (DESIGN.md, "Recycling" and "Recycling on the copy").
//!
//! Crash safety: a spare's header is zeroed and synced before the spare is
//! renamed to a generation's name, so a crash before the new header is
//! written leaves a file whose header reads as never written, which the
//! replica asks for again. Stale frames inside fail the salt and LSN checks
//! of the new generation, as in the active's recycled files.

use super::files::{LogFileName, generation_name, parse_name, recycle_name};
use super::{LogError, Result};
use crate::vfs::{OpenMode, Vfs, VfsFile};
use std::path::Path;
use std::sync::Arc;

/// Spare generation files a copy keeps.
pub const REPLICA_POOL: usize = 2;

/// Held by each change to a replica's files: truncation (on the replay
/// thread) trims the spares while the receiving thread may be taking one,
/// and a spare removed between its choice and its rename failed the
/// switch to a new generation. One lock for the process: both are rare
/// and short.
static POOL_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pool_lock() -> std::sync::MutexGuard<'static, ()> {
    // The guarded state is on disk: a panic while holding it leaves nothing
    // in memory to distrust.
    POOL_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Retires the replica's generations before `before`: the newest become
/// spares (up to the pool's size), the rest are removed, then the directory
/// is synced. Returns how many generations were retired.
pub fn retire_generations(vfs: &dyn Vfs, dir: &Path, before: u32) -> Result<u32> {
    let _pool = pool_lock();
    let names = vfs.list(dir).map_err(|e| LogError::io(dir, 0, "list", e))?;
    let (mut old, mut spares) = (Vec::new(), Vec::new());
    for name in &names {
        match parse_name(name) {
            Some(LogFileName::Generation(g)) if g < before => old.push(g),
            Some(LogFileName::Recycled(g)) => spares.push(g),
            _ => {}
        }
    }
    if old.is_empty() {
        return Ok(0);
    }
    // Oldest first, so that the generations left always form one run.
    old.sort_unstable();
    for &g in &old {
        let path = dir.join(generation_name(g));
        let to = dir.join(recycle_name(g));
        vfs.rename(&path, &to)
            .map_err(|e| LogError::io(&path, 0, "rename", e))?;
        spares.push(g);
    }
    // The newest spares were written last: their pages are the likeliest
    // to be cached still.
    spares.sort_unstable();
    let extra = spares.len().saturating_sub(REPLICA_POOL);
    for &g in &spares[..extra] {
        let path = dir.join(recycle_name(g));
        vfs.remove(&path).map_err(|e| LogError::io(&path, 0, "remove", e))?;
    }
    vfs.sync_dir(dir)
        .map_err(|e| LogError::io(dir, 0, "sync directory", e))?;
    Ok(old.len() as u32)
}

/// Takes the newest spare, if any, as the file of `generation`: its header
/// zeroed and synced first, then renamed (the directory synced). The file
/// is at least `size` bytes long.
pub(super) fn take_spare(
    vfs: &dyn Vfs,
    dir: &Path,
    generation: u32,
    header_len: usize,
    size: u64,
) -> Result<Option<Arc<dyn VfsFile>>> {
    let _pool = pool_lock();
    let names = vfs.list(dir).map_err(|e| LogError::io(dir, 0, "list", e))?;
    let newest = names
        .iter()
        .filter_map(|n| match parse_name(n) {
            Some(LogFileName::Recycled(g)) => Some(g),
            _ => None,
        })
        .max();
    let Some(spare) = newest else {
        return Ok(None);
    };
    let from = dir.join(recycle_name(spare));
    let file = vfs
        .open(&from, OpenMode::Existing)
        .map_err(|e| LogError::io(&from, 0, "open", e))?;
    file.write_at(&vec![0u8; header_len], 0)
        .map_err(|e| LogError::io(&from, 0, "write", e))?;
    file.sync_data().map_err(|e| LogError::io(&from, 0, "sync", e))?;
    drop(file);
    let path = dir.join(generation_name(generation));
    vfs.rename(&from, &path)
        .map_err(|e| LogError::io(&from, 0, "rename", e))?;
    vfs.sync_dir(dir)
        .map_err(|e| LogError::io(dir, 0, "sync directory", e))?;
    let file = vfs
        .open(&path, OpenMode::Existing)
        .map_err(|e| LogError::io(&path, 0, "open", e))?;
    let len = file.len().map_err(|e| LogError::io(&path, 0, "stat", e))?;
    if len < size {
        file.reserve(size)
            .map_err(|e| LogError::io(&path, len, "allocate", e))?;
    } else if len > size {
        file.set_len(size)
            .map_err(|e| LogError::io(&path, size, "set length", e))?;
    }
    Ok(Some(file))
}
