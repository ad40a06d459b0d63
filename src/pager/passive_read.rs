//! Readable passive copies: read-only snapshots of a copy's database at its
//! replay point, while replay goes on (DESIGN.md, "Readable copies").
//!
//! A snapshot reads page `n` from, in order:
//! 1. the overlay: the redo pass's in-memory pages as captured (shared and
//!    copied on write, so replay never changes a version a snapshot holds);
//! 2. the kept pages: the file image of `n` as it was just before a later
//!    checkpoint overwrote it;
//! 3. the data file.
//!
//! Invariant: a page in neither 1 nor 2 still has, in the file, its image as
//! of the capture, because every checkpoint moves the image it is about to
//! overwrite into 2 first. Readers hold the state lock shared from the
//! lookup to the end of the file read; a checkpoint adds kept pages (or
//! expires the snapshot) under it exclusively, before it writes. So no read
//! of the file overlaps a write of a page the snapshot takes from the file.

use super::file::DbFile;
use super::header::{DbHeader, read_full};
use super::page::{self, PageBuf, PageNo, PageRef};
use super::store::PageRead;
use super::{DbError, Result};
use crate::log::Lsn;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// Pages 0 and 1 are the header copies, never written by a page write.
const FIRST_PAGE: PageNo = 2;

/// Bounds on what open snapshots of a copy may hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLimits {
    /// Bytes of kept pages (old images of pages replay's checkpoints
    /// overwrote) for all open snapshots together. Past it, the oldest
    /// snapshots expire first until the rest fits.
    pub keep_bytes: u64,
    /// Snapshots at distinct positions open at once; taking one more
    /// expires the oldest. Each also pins at most the replay budget of
    /// overlay pages.
    pub max_open: usize,
}

impl Default for SnapshotLimits {
    fn default() -> Self {
        SnapshotLimits {
            keep_bytes: 64 << 20,
            max_open: 8,
        }
    }
}

/// A consistent, read-only view of a passive copy: the committed state at
/// its replay position. Cheap to clone; `Send + Sync`. Reads fail with
/// [`DbError::SnapshotTooOld`] once it expires.
#[derive(Clone)]
pub struct PassiveSnapshot {
    inner: Arc<Shared>,
}

struct Shared {
    /// A read-only handle on the copy's data file (no double-write area).
    file: DbFile,
    position: Lsn,
    page_count: u32,
    header: DbHeader,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    overlay: HashMap<PageNo, PageRef>,
    /// Raw file images, verified when read (as a file read would be).
    kept: HashMap<PageNo, PageRef>,
    kept_bytes: u64,
    expired: Option<String>,
}

impl State {
    /// Expires the snapshot and frees what it held.
    fn expire(&mut self, reason: String) {
        if self.expired.is_none() {
            self.expired = Some(reason);
        }
        self.overlay = HashMap::new();
        self.kept = HashMap::new();
        self.kept_bytes = 0;
    }
}

impl std::fmt::Debug for PassiveSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassiveSnapshot")
            .field("file", &self.inner.file.path)
            .field("position", &self.inner.position)
            .field("page_count", &self.inner.page_count)
            .finish_non_exhaustive()
    }
}

impl PassiveSnapshot {
    /// The replay position it reads at: the end of the last record applied.
    pub fn position(&self) -> Lsn {
        self.inner.position
    }

    /// Pages in the database at that position.
    pub fn page_count(&self) -> u32 {
        self.inner.page_count
    }

    /// The copy's database header as of its last checkpoint before the capture.
    pub fn header(&self) -> &DbHeader {
        &self.inner.header
    }

    /// Whether it expired (every read then fails with `SnapshotTooOld`).
    pub fn is_expired(&self) -> bool {
        self.inner.state.read().expired.is_some()
    }

    /// Bytes of old page images it keeps.
    pub fn kept_bytes(&self) -> u64 {
        self.inner.state.read().kept_bytes
    }

    fn too_old(&self, reason: &str) -> DbError {
        DbError::SnapshotTooOld {
            file: self.inner.file.path.clone(),
            position: self.inner.position,
            reason: reason.to_string(),
        }
    }
}

impl PageRead for PassiveSnapshot {
    fn page_size(&self) -> usize {
        self.inner.file.page_size
    }

    fn file_path(&self) -> &Path {
        &self.inner.file.path
    }

    fn page(&self, no: PageNo) -> Result<PageRef> {
        let s = &self.inner;
        if no >= s.page_count {
            return Err(DbError::corrupt_page(
                &s.file.path,
                no,
                s.file.offset(no),
                format!(
                    "page number beyond the {} pages of the snapshot at {}",
                    s.page_count, s.position
                ),
            ));
        }
        let st = s.state.read();
        if let Some(reason) = &st.expired {
            return Err(self.too_old(reason));
        }
        if no < FIRST_PAGE {
            // The header copies change at every checkpoint: the captured one.
            return Ok(Arc::new(PageBuf::from_vec(s.header.encode(no, s.file.page_size))));
        }
        if let Some(p) = st.overlay.get(&no) {
            return Ok(p.clone());
        }
        if let Some(p) = st.kept.get(&no) {
            page::verify(p, no, s.file.salt, &s.file.path, s.file.page_size)?;
            return Ok(p.clone());
        }
        // Under the shared lock: no checkpoint writes this page meanwhile.
        let p = s.file.read_page(no)?;
        drop(st);
        Ok(Arc::new(p))
    }
}

/// Where the replayer leaves its latest snapshot for other threads.
struct Hub {
    path: PathBuf,
    state: Mutex<HubState>,
    /// A reader asked: the next replay call publishes a newer snapshot.
    wanted: AtomicBool,
}

struct HubState {
    latest: Option<PassiveSnapshot>,
    /// (position, required) while the copy is not yet consistent.
    pending: (Lsn, Lsn),
    closed: bool,
}

/// A handle other threads use to read a copy while its replay runs
/// (`Send + Sync`, cheap to clone).
#[derive(Clone)]
pub struct SnapshotSource {
    hub: Arc<Hub>,
}

impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotSource")
            .field("file", &self.hub.path)
            .finish_non_exhaustive()
    }
}

impl SnapshotSource {
    /// The newest snapshot replay published. It is at most one replay call
    /// behind the previous call of `latest` (asking makes the next replay
    /// call publish a newer one). Fails with `SnapshotTooOld` once the
    /// replayer closed (a reseed or reopen: ask the follower again), and
    /// with `NotYetConsistent` until the copy has a whole state.
    pub fn latest(&self) -> Result<PassiveSnapshot> {
        self.hub.wanted.store(true, Ordering::Release);
        let st = self.hub.state.lock();
        if st.closed {
            return Err(DbError::SnapshotTooOld {
                file: self.hub.path.clone(),
                position: st.latest.as_ref().map_or(Lsn::ZERO, PassiveSnapshot::position),
                reason: "the copy's replay closed (a reseed or a reopen)".into(),
            });
        }
        match &st.latest {
            Some(s) => match &s.inner.state.read().expired {
                None => Ok(s.clone()),
                Some(reason) => Err(s.too_old(reason)),
            },
            None => Err(DbError::NotYetConsistent {
                file: self.hub.path.clone(),
                position: st.pending.0,
                required: st.pending.1,
            }),
        }
    }
}

/// The replayer's register of open snapshots (held weakly, oldest first).
pub(super) struct Snapshots {
    open: Vec<Weak<Shared>>,
    limits: SnapshotLimits,
    hub: Arc<Hub>,
}

impl Snapshots {
    pub fn new(path: PathBuf) -> Snapshots {
        Snapshots {
            open: Vec::new(),
            limits: SnapshotLimits::default(),
            hub: Arc::new(Hub {
                path,
                state: Mutex::new(HubState {
                    latest: None,
                    pending: (Lsn::ZERO, Lsn::ZERO),
                    closed: false,
                }),
                wanted: AtomicBool::new(true),
            }),
        }
    }

    pub fn set_limits(&mut self, limits: SnapshotLimits) {
        self.limits = SnapshotLimits {
            keep_bytes: limits.keep_bytes,
            max_open: limits.max_open.max(1),
        };
    }

    pub fn source(&self) -> SnapshotSource {
        SnapshotSource { hub: self.hub.clone() }
    }

    /// Whether a reader asked for a snapshot newer than the one published.
    pub fn wanted(&self, position: Lsn) -> bool {
        if !self.hub.wanted.load(Ordering::Acquire) {
            return false;
        }
        let st = self.hub.state.lock();
        st.latest
            .as_ref()
            .is_none_or(|s| s.position() < position || s.is_expired())
    }

    /// Notes that the copy is not consistent yet (for `SnapshotSource::latest`).
    pub fn set_pending(&self, position: Lsn, required: Lsn) {
        self.hub.state.lock().pending = (position, required);
    }

    /// A snapshot over `file` at `position` (the caller guarantees the
    /// overlay plus the file are the committed state there). Published for
    /// [`SnapshotSource`]; the oldest open snapshots past `max_open` expire.
    pub fn capture(
        &mut self,
        file: &DbFile,
        header: &DbHeader,
        position: Lsn,
        page_count: u32,
        overlay: impl FnOnce() -> HashMap<PageNo, PageRef>,
    ) -> PassiveSnapshot {
        let mut hub = self.hub.state.lock();
        if let Some(s) = &hub.latest
            && s.position() == position
            && !s.is_expired()
        {
            self.hub.wanted.store(false, Ordering::Release);
            return s.clone();
        }
        let snapshot = PassiveSnapshot {
            inner: Arc::new(Shared {
                file: DbFile {
                    path: file.path.clone(),
                    file: file.file.clone(),
                    page_size: file.page_size,
                    salt: file.salt,
                    double_write: None,
                    known_len: Default::default(),
                },
                position,
                page_count,
                header: *header,
                state: RwLock::new(State {
                    overlay: overlay(),
                    ..State::default()
                }),
            }),
        };
        self.open.retain(|w| w.strong_count() > 0);
        self.open.push(Arc::downgrade(&snapshot.inner));
        let live: Vec<Arc<Shared>> = self
            .open
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| s.state.read().expired.is_none())
            .collect();
        let excess = live.len().saturating_sub(self.limits.max_open);
        for s in &live[..excess] {
            s.state.write().expire(format!(
                "more than {} snapshots of the copy were open; the oldest expire first",
                self.limits.max_open
            ));
        }
        hub.latest = Some(snapshot.clone());
        self.hub.wanted.store(false, Ordering::Release);
        snapshot
    }

    /// Called before a checkpoint writes `pages`: every open snapshot keeps
    /// the file image of each page it would otherwise read from the file,
    /// or, past the limit, expires (oldest first). Never fails: a snapshot
    /// that cannot keep an image expires, and replay goes on.
    pub fn before_write(&mut self, file: &DbFile, pages: &[(PageNo, PageRef)]) {
        self.open.retain(|w| w.strong_count() > 0);
        let ps = file.page_size as u64;
        let mut plans: Vec<(Arc<Shared>, Vec<PageNo>, u64)> = Vec::new();
        for s in self.open.iter().filter_map(Weak::upgrade) {
            let st = s.state.read();
            if st.expired.is_some() {
                continue;
            }
            let need: Vec<PageNo> = pages
                .iter()
                .map(|(no, _)| *no)
                .filter(|no| {
                    (FIRST_PAGE..s.page_count).contains(no) && !st.overlay.contains_key(no) && !st.kept.contains_key(no)
                })
                .collect();
            let held = st.kept_bytes;
            drop(st);
            plans.push((s, need, held));
        }
        let bytes = |need: &[PageNo], held: u64| held.saturating_add(need.len() as u64 * ps);
        let mut total: u64 = plans.iter().map(|(_, need, held)| bytes(need, *held)).sum();
        let mut first = 0;
        while total > self.limits.keep_bytes && first < plans.len() {
            let (s, need, held) = &plans[first];
            let reason = format!(
                "replay's checkpoints overwrote pages it reads, and keeping their old images would take {total} bytes for the open snapshots, past the limit of {} (the oldest expire first)",
                self.limits.keep_bytes
            );
            total -= bytes(need, *held);
            s.state.write().expire(reason);
            first += 1;
        }
        // Each old image is read once and shared by the snapshots keeping it.
        let mut images: HashMap<PageNo, PageRef> = HashMap::new();
        for (s, need, _) in &plans[first..] {
            let mut got = Vec::with_capacity(need.len());
            let mut failed = None;
            for &no in need {
                let image = match images.get(&no) {
                    Some(image) => image.clone(),
                    None => match read_raw(file, no) {
                        Ok(image) => images.entry(no).or_insert(image).clone(),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    },
                };
                got.push((no, image));
            }
            let mut st = s.state.write();
            if let Some(e) = failed {
                st.expire(format!("keeping the old image of a page failed: {e}"));
                continue;
            }
            for (no, image) in got {
                st.kept.insert(no, image);
                st.kept_bytes += ps;
            }
        }
    }
}

impl Drop for Snapshots {
    /// Another replayer may open the file next and write without knowing
    /// the snapshots: they expire with this one.
    fn drop(&mut self) {
        for s in self.open.iter().filter_map(Weak::upgrade) {
            s.state
                .write()
                .expire("the copy's replay closed (a reseed or a reopen)".into());
        }
        self.hub.state.lock().closed = true;
    }
}

/// Page `no` as the file holds it, unverified (short reads leave zeros).
fn read_raw(file: &DbFile, no: PageNo) -> Result<PageRef> {
    let mut buf = PageBuf::zeroed(file.page_size);
    read_full(file.file.as_ref(), &mut buf, file.offset(no), &file.path)?;
    Ok(Arc::new(buf))
}
