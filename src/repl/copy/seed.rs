//! A copy's side of seeding: the pages arrive into `data.mvdb.seeding`,
//! which is renamed into place once whole. Progress is saved as it goes
//! (`seed.state`: the seed's header and the next page wanted), so a seed
//! cut off part way resumes from there instead of from scratch.

use super::Follower;
use crate::log::Lsn;
use crate::pager::data_path;
use crate::pager::header::{DbHeader, read_best, salt_of};
use crate::repl::error::{ReplError, Result};
use crate::repl::wire::{self, Message};
use crate::vfs::{OpenMode, SharedVfs, VfsFile, uncached_aligned};
use parking_lot::Mutex;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};

/// Progress is saved after about this many bytes of pages, or this long.
const SAVE_EVERY: u64 = 32 << 20;
const SAVE_AFTER: std::time::Duration = std::time::Duration::from_millis(250);
const STATE_MAGIC: [u8; 4] = *b"MVSS";
const STATE_VERSION: u8 = 1;
/// Largest header page a state file may hold (the largest page size).
const MAX_HEADER: usize = 65536;
/// Bytes of a state file besides the header page.
const STATE_FIXED: usize = 28;

/// A seed received in part: its header and the next page it wants.
#[derive(Debug, Clone)]
pub(crate) struct PartialSeed {
    pub header_page: Vec<u8>,
    pub header: DbHeader,
    pub next: u32,
    /// The newest page LSN received so far: pages are read live, newer than
    /// the header, and the copy is consistent only once replay passes it.
    pub required: Lsn,
}

/// A disk error of the copy's own files, named with the file and offset
/// (not a connection error).
pub(super) fn disk(file: &Path, offset: u64, op: &'static str) -> impl FnOnce(std::io::Error) -> ReplError {
    let file = file.to_path_buf();
    move |e| ReplError::Db(crate::pager::DbError::io(file, offset, op, e))
}

/// Where a seed is written until it is whole.
pub(super) fn seeding_path(dir: &Path) -> PathBuf {
    dir.join("data.mvdb.seeding")
}

pub(super) fn state_path(dir: &Path) -> PathBuf {
    dir.join("seed.state")
}

/// `seed.state`: magic `MVSS` | version u8 | 3 zero bytes | next page u32 |
/// newest page LSN u64 | header length u32 | header page | crc32c u32 of
/// everything before.
pub(crate) fn encode_state(header_page: &[u8], next: u32, required: Lsn) -> Vec<u8> {
    let mut b = Vec::with_capacity(STATE_FIXED + header_page.len());
    b.extend_from_slice(&STATE_MAGIC);
    b.extend_from_slice(&[STATE_VERSION, 0, 0, 0]);
    b.extend_from_slice(&next.to_le_bytes());
    b.extend_from_slice(&required.0.to_le_bytes());
    b.extend_from_slice(&(header_page.len() as u32).to_le_bytes());
    b.extend_from_slice(header_page);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

pub(crate) fn decode_state(b: &[u8], path: &Path) -> std::result::Result<PartialSeed, String> {
    if b.len() < STATE_FIXED || b[..4] != STATE_MAGIC {
        return Err("not a seed state file".into());
    }
    if b[4] != STATE_VERSION {
        return Err(format!("seed state version {}", b[4]));
    }
    if b[5..8] != [0, 0, 0] {
        return Err("reserved bytes 5..8 are not zero".into());
    }
    let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let len = word(20) as usize;
    if len > MAX_HEADER || b.len() != STATE_FIXED + len {
        return Err(format!("{} bytes holding a header of {len}", b.len()));
    }
    let body = 24 + len;
    if crc32c::crc32c(&b[..body]) != word(body) {
        return Err("checksum mismatch".into());
    }
    let header_page = b[24..body].to_vec();
    let header = DbHeader::decode(&header_page, 0, path).map_err(|e| e.to_string())?;
    Ok(PartialSeed {
        header_page,
        header,
        next: word(8),
        required: Lsn(u64::from(word(12)) | (u64::from(word(16)) << 32)),
    })
}

/// The seed `dir` holds in part, if any: a damaged state file, or one
/// without its partial data file, counts as none (the next seed starts
/// over and removes both).
pub(super) fn load_partial(vfs: &SharedVfs, dir: &Path) -> Result<Option<PartialSeed>> {
    let path = state_path(dir);
    if !vfs.exists(&path)? || !vfs.exists(&seeding_path(dir))? {
        return Ok(None);
    }
    let file = vfs.open(&path, OpenMode::Existing).map_err(disk(&path, 0, "open"))?;
    let len = file.len().map_err(disk(&path, 0, "stat"))?;
    if len > (MAX_HEADER + STATE_FIXED) as u64 {
        tracing::warn!(file = %path.display(), len, "replication: ignoring an oversize seed state file");
        return Ok(None);
    }
    let mut b = vec![0u8; len as usize];
    file.read_exact_at(&mut b, 0).map_err(disk(&path, 0, "read"))?;
    match decode_state(&b, &path) {
        Ok(p) => Ok(Some(p)),
        Err(reason) => {
            tracing::warn!(file = %path.display(), offset = 0, %reason, "replication: ignoring a damaged seed state file");
            Ok(None)
        }
    }
}

/// Saves progress: written aside, synced, renamed over the old state.
fn save_partial(vfs: &SharedVfs, dir: &Path, seed: &PartialSeed) -> Result<()> {
    let tmp = dir.join("seed.state.tmp");
    let file = vfs
        .open(&tmp, OpenMode::CreateOrOpen)
        .map_err(disk(&tmp, 0, "create"))?;
    file.set_len(0).map_err(disk(&tmp, 0, "truncate"))?;
    file.write_at(&encode_state(&seed.header_page, seed.next, seed.required), 0)
        .map_err(disk(&tmp, 0, "write"))?;
    file.sync_data().map_err(disk(&tmp, 0, "sync"))?;
    drop(file);
    vfs.rename(&tmp, &state_path(dir)).map_err(disk(&tmp, 0, "rename"))?;
    vfs.sync_dir(dir).map_err(disk(dir, 0, "sync directory"))?;
    Ok(())
}

/// The file is reserved ahead of uncached writes by this much: writes into
/// reserved blocks ran at 2.0-2.1 GB/s here against 1.4-1.9 for writes
/// that allocate as they go (DESIGN.md, "Seeding").
const SEED_EXTENT: u64 = 64 << 20;

impl SeedFile<'_> {
    /// Writes seed pages, uncached when it can: a seed writes a whole file
    /// once, and through the page cache it runs at the speed of the kernel
    /// copying into new pages, several times below the disk's (DESIGN.md,
    /// "Seeding"). A file system that refuses the aligned write turns the
    /// uncached handle off.
    fn write_pages(&mut self, bytes: &[u8], at: u64) -> Result<()> {
        let path = self.path;
        if let Some(direct) = self.uncached.as_deref()
            && uncached_aligned(bytes, at)
        {
            let end = at + bytes.len() as u64;
            if end > self.reserved {
                // Past the pages sent, the file is cut to its length at the end.
                self.reserved = end.next_multiple_of(SEED_EXTENT);
                self.file.reserve(self.reserved).map_err(disk(path, end, "reserve"))?;
            }
            match direct.write_at(bytes, at) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                    tracing::warn!(file = %path.display(), offset = at, error = %e, "replication: uncached seed writes refused; writing through the cache");
                    self.uncached = None;
                }
                Err(e) => return Err(disk(path, at, "write")(e)),
            }
        }
        self.file.write_at(bytes, at).map_err(disk(path, at, "write"))
    }
}

/// Frames being received, queued or written at once: the receiver reads
/// the next frame while the writer writes the last.
const FRAMES_IN_FLIGHT: usize = 3;

/// A frame of checked seed pages handed to the writer, with the newest
/// page LSN received once they are written.
struct PagesToWrite {
    frame: wire::FrameReader,
    first: u32,
    required: Lsn,
}

/// Pages from `seed.next` to `SeedEnd`, each checked, handed to the writer
/// in the frame they arrived in: the writer only writes, which is the
/// seed's slowest step. Returns the next page wanted after the last, and
/// the seed's page count.
fn receive_loop(
    stream: &mut TcpStream,
    seed: &PartialSeed,
    write: &SyncSender<PagesToWrite>,
    written: &Receiver<wire::FrameReader>,
    path: &Path,
) -> Result<(u32, u32)> {
    let (mut next, mut required) = (seed.next, seed.required);
    let ps = seed.header.page_size as usize;
    let mut fresh = FRAMES_IN_FLIGHT;
    let pages = loop {
        let mut frame = match fresh.checked_sub(1) {
            Some(left) => {
                fresh = left;
                wire::FrameReader::default()
            }
            // The writer stopped: its error is returned by the caller.
            None => written.recv().map_err(|_| writer_stopped())?,
        };
        let payload = frame.read(stream)?;
        let Some(pages) = payload.seed_pages() else {
            match payload.message()? {
                Message::SeedEnd { pages } => break pages,
                Message::Refuse { code, reason } => return Err(ReplError::Refused { code, reason }),
                other => {
                    return Err(ReplError::Protocol(format!(
                        "unexpected {} during a seed",
                        other.name()
                    )));
                }
            }
        };
        let wire::SeedPagesRef {
            first,
            page_size,
            bytes,
        } = pages?;
        if page_size as usize != ps || first != next {
            return Err(ReplError::Protocol(format!(
                "seed pages from {first} of size {page_size}; expected page {next} of size {ps}"
            )));
        }
        next = u32::try_from(bytes.len() / ps)
            .ok()
            .and_then(|n| first.checked_add(n))
            .ok_or_else(|| ReplError::Protocol(format!("seed pages from {first} run past the last page number")))?;
        // Every page is checked before it is written.
        required = required.max(check_pages(seed, first, bytes, path)?);
        let job = PagesToWrite { frame, first, required };
        write.send(job).map_err(|_| writer_stopped())?;
    };
    if pages < next {
        return Err(ReplError::Protocol(format!(
            "the seed ends at {pages} pages, after page {} arrived",
            next - 1
        )));
    }
    Ok((next, pages))
}

fn writer_stopped() -> ReplError {
    ReplError::Protocol("writing the seed's pages or saving its progress failed".into())
}

/// Checks every page of a frame (a page of zeros was never written on the
/// active); returns the newest page LSN among them.
fn check_pages(seed: &PartialSeed, first: u32, bytes: &[u8], path: &Path) -> Result<Lsn> {
    let ps = seed.header.page_size as usize;
    let salt = salt_of(&seed.header.signature);
    let mut newest = Lsn::ZERO;
    // The caller checked that the frame's pages end by the last page number.
    for (no, page) in (first..).zip(bytes.chunks(ps)) {
        if page.iter().any(|&b| b != 0) {
            crate::pager::page::verify(page, no, salt, path, ps)?;
            newest = newest.max(crate::pager::page::page_lsn(page));
        }
    }
    Ok(newest)
}

/// The seed's data file, as the writer thread writes it.
struct SeedFile<'a> {
    file: &'a dyn VfsFile,
    uncached: Option<Arc<dyn VfsFile>>,
    /// The file's length as reserved for uncached writes.
    reserved: u64,
    path: &'a Path,
    /// The first error of the writer or the saver.
    failed: &'a Mutex<Option<ReplError>>,
}

/// Writes the frames the receiver hands over, in order, then gives them
/// back; asks for progress to be saved every `SAVE_EVERY` bytes or
/// `SAVE_AFTER`, never ahead of what was written. Returns the seed as
/// written.
fn write_loop(
    mut out: SeedFile<'_>,
    mut seed: PartialSeed,
    jobs: Receiver<PagesToWrite>,
    written: std::sync::mpsc::Sender<wire::FrameReader>,
    save: SyncSender<PartialSeed>,
) -> PartialSeed {
    let mut unsaved = 0u64;
    let mut saved_at = std::time::Instant::now();
    for job in jobs {
        if out.failed.lock().is_some() {
            break;
        }
        // The receiver hands over only frames of seed pages.
        let Some(Some(Ok(pages))) = job.frame.last().map(|p| p.seed_pages()) else {
            *out.failed.lock() = Some(ReplError::Protocol("a seed frame lost its pages".into()));
            break;
        };
        let at = u64::from(job.first) * u64::from(pages.page_size);
        if let Err(e) = out.write_pages(pages.bytes, at) {
            *out.failed.lock() = Some(e);
            break;
        }
        unsaved += pages.bytes.len() as u64;
        seed.next = job.first + (pages.bytes.len() / pages.page_size as usize) as u32;
        seed.required = job.required;
        // A saver still busy takes the next one instead.
        if (unsaved >= SAVE_EVERY || saved_at.elapsed() >= SAVE_AFTER) && save.try_send(seed.clone()).is_ok() {
            unsaved = 0;
            saved_at = std::time::Instant::now();
        }
        // The receiver may have stopped; the frame is no longer wanted then.
        let _ = written.send(job.frame);
    }
    seed
}

impl Follower {
    /// Receives a fresh seed: the old database and log go first, then the
    /// pages, then the header (written last).
    pub(super) fn seed(&mut self, stream: &mut TcpStream, header_page: &[u8]) -> Result<()> {
        self.reset()?;
        self.seeding = true;
        let header = DbHeader::decode(header_page, 0, &data_path(&self.dir))?;
        let partial = seeding_path(&self.dir);
        let file = self
            .vfs
            .open(&partial, OpenMode::CreateNew)
            .map_err(disk(&partial, 0, "create"))?;
        self.vfs
            .sync_dir(&self.dir)
            .map_err(disk(&self.dir, 0, "sync directory"))?;
        let seed = PartialSeed {
            header_page: header_page.to_vec(),
            header,
            next: 2,
            required: header.required_lsn,
        };
        save_partial(&self.vfs, &self.dir, &seed)?;
        self.partial_seed = Some(seed.clone());
        self.receive_pages(stream, file.as_ref(), seed)
    }

    /// Goes on with the seed held in part, from page `first`.
    pub(super) fn resume_seed(&mut self, stream: &mut TcpStream, first: u32) -> Result<()> {
        let Some(seed) = self.partial_seed.clone() else {
            return Err(ReplError::Protocol("SeedResumed, but this copy holds no seed".into()));
        };
        if first != seed.next {
            return Err(ReplError::Protocol(format!(
                "the seed resumes at page {first}; this copy asked for {}",
                seed.next
            )));
        }
        self.seeding = true;
        let partial = seeding_path(&self.dir);
        let file = self
            .vfs
            .open(&partial, OpenMode::Existing)
            .map_err(disk(&partial, 0, "open"))?;
        tracing::info!(from = first, "replication: resuming a seed");
        self.receive_pages(stream, file.as_ref(), seed)
    }

    /// Receives pages in order from `seed.next` to `SeedEnd`, saving
    /// progress as it goes, then writes the header and opens the replayer.
    fn receive_pages(&mut self, stream: &mut TcpStream, file: &dyn VfsFile, seed: PartialSeed) -> Result<()> {
        let began = std::time::Instant::now();
        let from = seed.next;
        // Three threads: this one receives and checks frames, a writer
        // writes them, and a saver syncs and saves progress, so that
        // receiving waits neither for writes nor for the disk's syncs.
        let saved: Mutex<Option<PartialSeed>> = Mutex::new(None);
        let failed: Mutex<Option<ReplError>> = Mutex::new(None);
        let (vfs, dir) = (self.vfs.clone(), self.dir.clone());
        let partial = seeding_path(&dir);
        let uncached = vfs.open_uncached(&partial).map_err(disk(&partial, 0, "open"))?;
        let received = std::thread::scope(|s| {
            let (save_tx, save_rx) = std::sync::mpsc::sync_channel::<PartialSeed>(1);
            let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<PagesToWrite>(1);
            let (written_tx, written_rx) = std::sync::mpsc::channel::<wire::FrameReader>();
            s.spawn(|| {
                for seed in save_rx {
                    // The pages first: the state never runs ahead of them.
                    let r = file
                        .sync_data()
                        .map_err(disk(&partial, 0, "sync"))
                        .and_then(|()| save_partial(&vfs, &dir, &seed));
                    match r {
                        Ok(()) => *saved.lock() = Some(seed),
                        Err(e) => {
                            *failed.lock() = Some(e);
                            break;
                        }
                    }
                }
            });
            let start = seed.clone();
            let out = SeedFile {
                file,
                uncached,
                reserved: 0,
                path: &partial,
                failed: &failed,
            };
            let writer = s.spawn(move || write_loop(out, seed, job_rx, written_tx, save_tx));
            let received = receive_loop(stream, &start, &job_tx, &written_rx, &partial);
            drop(job_tx);
            // The writer's seed is the one received once every frame is written.
            let seed = writer
                .join()
                .map_err(|_| ReplError::Protocol("the seed's writer panicked".into()))?;
            received.map(|(_, pages)| (seed, pages))
        });
        if let Some(p) = saved.into_inner() {
            self.partial_seed = Some(p);
        }
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }
        let (seed, pages) = received?;
        self.finish_seed(file, &seed, pages)?;
        let secs = began.elapsed().as_secs_f64();
        let bytes = u64::from(pages.saturating_sub(from)) * u64::from(seed.header.page_size);
        let mb_per_sec = bytes as f64 / secs.max(1e-9) / 1e6;
        tracing::info!(pages, secs, mb_per_sec, redo = %seed.header.redo_lsn, "replication: seed received");
        Ok(())
    }

    fn finish_seed(&mut self, file: &dyn VfsFile, seed: &PartialSeed, pages: u32) -> Result<()> {
        let ps = seed.header.page_size as usize;
        let partial = seeding_path(&self.dir);
        let len = u64::from(pages) * ps as u64;
        // Shorter: pages never written at the end; longer: reserved ahead.
        if file.len().map_err(disk(&partial, 0, "stat"))? != len {
            file.set_len(len).map_err(disk(&partial, len, "set length"))?;
        }
        file.sync_data().map_err(disk(&partial, 0, "sync"))?;
        // No snapshot or promotion before replay passes the newest page.
        let header = DbHeader {
            required_lsn: seed.required,
            ..seed.header
        };
        for slot in 0..2 {
            let at = u64::from(slot) * ps as u64;
            file.write_at(&header.encode(slot, ps), at)
                .map_err(disk(&partial, at, "write"))?;
        }
        file.sync_data().map_err(disk(&partial, 0, "sync"))?;
        // Checks what was written, as any open would.
        let read = self
            .vfs
            .open(&partial, OpenMode::Existing)
            .map_err(disk(&partial, 0, "open"))?;
        read_best(read.as_ref(), &partial)?;
        drop(read);
        let path = data_path(&self.dir);
        self.vfs.rename(&partial, &path).map_err(disk(&partial, 0, "rename"))?;
        // Renamed, there is no partial seed to resume: a failure below must
        // not send the next session after the file that was moved.
        self.partial_seed = None;
        self.vfs
            .sync_dir(&self.dir)
            .map_err(disk(&self.dir, 0, "sync directory"))?;
        // The state goes once the data file is in place; a crash between
        // leaves a state without its partial file, which counts as none.
        let state = state_path(&self.dir);
        self.vfs.remove(&state).map_err(disk(&state, 0, "remove"))?;
        self.replayer = Some(crate::pager::Replayer::open(
            self.vfs.clone(),
            &self.dir,
            self.cache_bytes,
        )?);
        self.database = seed.header.signature.0;
        self.seeding = false;
        self.publish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_state_files_are_refused_with_reasons() {
        let path = Path::new("seed.state");
        let good = encode_state(&[0u8; 4096], 9, Lsn::new(3, 4096));
        // A header page of zeros does not decode as a header.
        assert!(decode_state(&good, path).is_err());
        let mut b = good.clone();
        b[0] ^= 1;
        assert_eq!(decode_state(&b, path).unwrap_err(), "not a seed state file");
        let mut b = good.clone();
        b[9] ^= 1;
        assert_eq!(decode_state(&b, path).unwrap_err(), "checksum mismatch");
        assert!(decode_state(&good[..good.len() - 1], path).is_err());
        assert!(decode_state(&[], path).is_err());
        let mut huge = good.clone();
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_state(&huge, path).unwrap_err().contains("header of"));
    }
}
