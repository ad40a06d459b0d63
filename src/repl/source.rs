//! What a copy can be served from: the active's database, or a passive
//! copy that serves others (seeding them from its own data file and
//! shipping its own log, which is the active's log frame for frame).

use super::error::Result;
use super::wire::Identity;
use crate::log::Lsn;
use crate::pager::header::DbHeader;
use crate::txn::Database;
use crate::vfs::SharedVfs;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Holds a source's log from truncation from an LSN on, until dropped.
pub trait LogHold: Send + Sync {
    /// Moves the hold forward.
    fn advance(&self, lsn: Lsn);
}

/// A replication source.
pub trait ShipSource: Send + Sync {
    /// The database and log signatures, epoch, and durable end (copy id zero).
    fn identity(&self) -> Identity;
    /// The end of the log that may ship (durable here).
    fn durable(&self) -> Lsn;
    /// The oldest generation the log directory holds.
    fn first_generation(&self) -> u32;
    fn generation_size(&self) -> u64;
    fn vfs(&self) -> SharedVfs;
    fn log_dir(&self) -> PathBuf;
    /// Holds the log from `lsn`.
    fn hold(&self, lsn: Lsn) -> Box<dyn LogHold>;
    /// The header of the last completed checkpoint: a seed starts there
    /// (`None`: no database yet).
    fn seed_header(&self) -> Option<DbHeader>;
    fn page_size(&self) -> usize;
    /// Pages to seed (the file may grow while it is read).
    fn page_count(&self) -> Result<u32>;
    /// Pages `first..` as the data file holds them now, into `out` (whole
    /// pages; a page never written is left zero).
    fn read_pages(&self, first: u32, out: &mut [u8]) -> Result<()>;
}

impl LogHold for crate::txn::LogPin {
    fn advance(&self, lsn: Lsn) {
        crate::txn::LogPin::advance(self, lsn);
    }
}

impl ShipSource for Database {
    fn identity(&self) -> Identity {
        let pager = self.pager();
        Identity {
            copy: [0; 16],
            database: pager.signature().0,
            log: pager.log().signature().0,
            epoch: pager.epoch(),
            position: pager.log().durable_lsn(),
        }
    }

    fn durable(&self) -> Lsn {
        self.pager().log().durable_lsn()
    }

    fn first_generation(&self) -> u32 {
        self.pager().log().first_generation()
    }

    fn generation_size(&self) -> u64 {
        self.pager().options().log.generation_size
    }

    fn vfs(&self) -> SharedVfs {
        self.pager().vfs().clone()
    }

    fn log_dir(&self) -> PathBuf {
        self.pager().log().dir().to_path_buf()
    }

    fn hold(&self, lsn: Lsn) -> Box<dyn LogHold> {
        Box::new(self.pin_log(lsn))
    }

    fn seed_header(&self) -> Option<DbHeader> {
        Some(self.pager().checkpoint_header())
    }

    fn page_size(&self) -> usize {
        self.pager().page_size()
    }

    fn page_count(&self) -> Result<u32> {
        Ok(self.pager().page_count())
    }

    fn read_pages(&self, first: u32, out: &mut [u8]) -> Result<()> {
        Ok(self.pager().read_file_pages(first, out)?)
    }
}

/// A passive copy as a source for other copies. Its `Follower` keeps it up
/// to date (synced log end, last checkpoint) and truncates its own log no
/// further than the holds placed here allow.
pub struct PassiveSource {
    vfs: SharedVfs,
    dir: PathBuf,
    state: Arc<Mutex<PassiveState>>,
    /// The data file, opened for seeds on first use.
    pages: Mutex<Option<Arc<crate::pager::SeedPages>>>,
}

#[derive(Default)]
struct PassiveState {
    header: Option<DbHeader>,
    durable: Lsn,
    first_generation: u32,
    generation_size: u64,
    holds: BTreeMap<u64, Lsn>,
    next_hold: u64,
}

struct PassiveHold {
    state: Arc<Mutex<PassiveState>>,
    id: u64,
}

impl LogHold for PassiveHold {
    fn advance(&self, lsn: Lsn) {
        if let Some(h) = self.state.lock().holds.get_mut(&self.id) {
            *h = lsn;
        }
    }
}

impl Drop for PassiveHold {
    fn drop(&mut self) {
        self.state.lock().holds.remove(&self.id);
    }
}

impl PassiveSource {
    pub(crate) fn new(vfs: SharedVfs, dir: PathBuf) -> Arc<PassiveSource> {
        Arc::new(PassiveSource {
            vfs,
            dir,
            state: Arc::default(),
            pages: Mutex::new(None),
        })
    }

    /// The copy's state after a sync or a checkpoint.
    pub(crate) fn update(&self, header: Option<DbHeader>, durable: Lsn, first_generation: u32, generation_size: u64) {
        let mut st = self.state.lock();
        if header.is_none() {
            // No database (a reseed): the old file's pages are gone.
            *self.pages.lock() = None;
        }
        st.header = header;
        st.durable = durable;
        st.first_generation = first_generation;
        st.generation_size = generation_size;
    }

    /// The copy's last checkpoint, and where its log starts now.
    pub(crate) fn update_header(&self, header: Option<DbHeader>, first_generation: u32) {
        let mut st = self.state.lock();
        st.header = header;
        st.first_generation = first_generation;
    }

    /// The copy's log is synced to `durable`.
    pub(crate) fn update_durable(&self, durable: Lsn) {
        self.state.lock().durable = durable;
    }

    /// The oldest LSN a copy served from here still needs.
    pub(crate) fn oldest_hold(&self) -> Option<Lsn> {
        self.state.lock().holds.values().copied().min()
    }

    /// Whether the copy has a database to serve yet.
    pub fn ready(&self) -> bool {
        self.state.lock().header.is_some()
    }

    fn pages(&self) -> Result<Arc<crate::pager::SeedPages>> {
        let mut slot = self.pages.lock();
        if let Some(p) = &*slot {
            return Ok(p.clone());
        }
        let p = Arc::new(crate::pager::SeedPages::open(
            &self.vfs,
            &crate::pager::data_path(&self.dir),
        )?);
        *slot = Some(p.clone());
        Ok(p)
    }
}

impl ShipSource for PassiveSource {
    fn identity(&self) -> Identity {
        let st = self.state.lock();
        let h = st.header.as_ref();
        Identity {
            copy: [0; 16],
            database: h.map_or([0; 16], |h| h.signature.0),
            log: h.map_or([0; 16], |h| h.log_signature.0),
            epoch: h.map_or(0, |h| h.epoch),
            position: st.durable,
        }
    }

    fn durable(&self) -> Lsn {
        self.state.lock().durable
    }

    fn first_generation(&self) -> u32 {
        self.state.lock().first_generation
    }

    fn generation_size(&self) -> u64 {
        self.state.lock().generation_size
    }

    fn vfs(&self) -> SharedVfs {
        self.vfs.clone()
    }

    fn log_dir(&self) -> PathBuf {
        crate::pager::log_dir(&self.dir)
    }

    fn hold(&self, lsn: Lsn) -> Box<dyn LogHold> {
        let mut st = self.state.lock();
        let id = st.next_hold;
        st.next_hold += 1;
        st.holds.insert(id, lsn);
        Box::new(PassiveHold {
            state: self.state.clone(),
            id,
        })
    }

    fn seed_header(&self) -> Option<DbHeader> {
        self.state.lock().header
    }

    fn page_size(&self) -> usize {
        self.state.lock().header.map_or(0, |h| h.page_size as usize)
    }

    fn page_count(&self) -> Result<u32> {
        Ok(self.pages()?.page_count()?)
    }

    fn read_pages(&self, first: u32, out: &mut [u8]) -> Result<()> {
        Ok(self.pages()?.read(first, out)?)
    }
}

/// A mailbox store serves as its database does.
impl ShipSource for crate::mailbox::Store {
    fn identity(&self) -> Identity {
        self.database().identity()
    }

    fn durable(&self) -> Lsn {
        self.database().durable()
    }

    fn first_generation(&self) -> u32 {
        ShipSource::first_generation(self.database())
    }

    fn generation_size(&self) -> u64 {
        self.database().generation_size()
    }

    fn vfs(&self) -> SharedVfs {
        ShipSource::vfs(self.database())
    }

    fn log_dir(&self) -> PathBuf {
        self.database().log_dir()
    }

    fn hold(&self, lsn: Lsn) -> Box<dyn LogHold> {
        self.database().hold(lsn)
    }

    fn seed_header(&self) -> Option<DbHeader> {
        self.database().seed_header()
    }

    fn page_size(&self) -> usize {
        ShipSource::page_size(self.database())
    }

    fn page_count(&self) -> Result<u32> {
        ShipSource::page_count(self.database())
    }

    fn read_pages(&self, first: u32, out: &mut [u8]) -> Result<()> {
        self.database().read_pages(first, out)
    }
}
