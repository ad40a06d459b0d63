//! Preparing generation files ahead of time, and recycling old ones.
//!
//! A background thread creates (or recycles) the file of the next generation,
//! sizes it with written zeros, stamps a reserved header and makes it and its
//! directory entry durable, so a commit never waits for a file to be created.

use super::files::{generation_name, recycle_name};
use super::format::{GenerationHeader, GenerationState, LogSignature};
use super::leader::{Counters, now_us};
use super::{LogError, Result};
use crate::vfs::{OpenMode, SharedVfs, VfsFile};
use parking_lot::{Condvar, Mutex};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A generation file ready to be activated.
pub(crate) struct Prepared {
    pub generation: u32,
    pub path: PathBuf,
    pub file: Arc<dyn VfsFile>,
}

#[derive(Default)]
struct PrepState {
    want: Option<u32>,
    busy: Option<u32>,
    ready: Option<Prepared>,
    error: Option<Arc<LogError>>,
    shutdown: bool,
    /// Generation numbers of recycled files, oldest first.
    pool: Vec<u32>,
}

pub(crate) struct Preparer {
    vfs: SharedVfs,
    dir: PathBuf,
    frame_size: u32,
    generation_size: u64,
    signature: LogSignature,
    pool_cap: usize,
    state: Mutex<PrepState>,
    cv: Condvar,
}

impl Preparer {
    pub fn new(
        vfs: SharedVfs,
        dir: PathBuf,
        frame_size: u32,
        generation_size: u64,
        signature: LogSignature,
        pool_cap: usize,
        pool: Vec<u32>,
    ) -> Arc<Self> {
        Arc::new(Preparer {
            vfs,
            dir,
            frame_size,
            generation_size,
            signature,
            pool_cap,
            state: Mutex::new(PrepState {
                pool,
                ..PrepState::default()
            }),
            cv: Condvar::new(),
        })
    }

    /// Starts the background thread.
    pub fn spawn(self: &Arc<Self>) -> Result<std::thread::JoinHandle<()>> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("mailvault-log-prepare".into())
            .spawn(move || me.run())
            .map_err(|e| LogError::io(&self.dir, 0, "spawn preparer", e))
    }

    /// Asks for `generation` to be prepared in the background.
    pub fn request(&self, generation: u32) {
        let mut st = self.state.lock();
        st.want = Some(generation);
        self.cv.notify_all();
    }

    pub fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.cv.notify_all();
    }

    /// Returns the prepared file for `generation`, waiting for the background
    /// thread if it is on it, or preparing it here (a stall) if not.
    pub fn take(&self, generation: u32, counters: &Counters) -> Result<Prepared> {
        let mut st = self.state.lock();
        loop {
            if st.ready.as_ref().is_some_and(|p| p.generation == generation) {
                let p = st.ready.take().expect("checked above");
                return Ok(p);
            }
            if st.busy.is_some() {
                self.cv.wait(&mut st);
                continue;
            }
            if let Some(err) = st.error.take() {
                return Err(LogError::Stopped { cause: err });
            }
            break;
        }
        // Prepare it here; the thread must not prepare the same file again.
        st.ready = None;
        if st.want == Some(generation) {
            st.want = None;
        }
        st.busy = Some(generation);
        drop(st);
        counters.preparation_stalls.fetch_add(1, Ordering::Relaxed);
        let result = self.prepare(generation);
        self.state.lock().busy = None;
        self.cv.notify_all();
        result
    }

    fn run(&self) {
        let mut st = self.state.lock();
        loop {
            if st.shutdown {
                return;
            }
            let job = st
                .want
                .filter(|g| st.ready.as_ref().is_none_or(|p| p.generation != *g) && st.error.is_none());
            let Some(generation) = job else {
                self.cv.wait(&mut st);
                continue;
            };
            st.want = None;
            st.busy = Some(generation);
            drop(st);
            let result = self.prepare(generation);
            st = self.state.lock();
            st.busy = None;
            match result {
                Ok(p) => st.ready = Some(p),
                Err(e) => st.error = Some(Arc::new(e)),
            }
            self.cv.notify_all();
        }
    }

    /// Creates or recycles the file of `generation` with a reserved header.
    pub fn prepare(&self, generation: u32) -> Result<Prepared> {
        let path = self.dir.join(generation_name(generation));
        let vfs = self.vfs.as_ref();
        let exists = vfs.exists(&path).map_err(|e| LogError::io(&path, 0, "stat", e))?;
        let recycled = if exists { None } else { self.state.lock().pool.pop() };
        let file = if exists {
            vfs.open(&path, OpenMode::Existing)
        } else if let Some(old) = recycled {
            let from = self.dir.join(recycle_name(old));
            vfs.rename(&from, &path)
                .map_err(|e| LogError::io(&from, 0, "rename", e))?;
            vfs.open(&path, OpenMode::Existing)
        } else {
            vfs.open(&path, OpenMode::CreateNew)
        }
        .map_err(|e| LogError::io(&path, 0, "open", e))?;
        let len = file.len().map_err(|e| LogError::io(&path, 0, "stat", e))?;
        if len > self.generation_size {
            file.set_len(self.generation_size)
                .map_err(|e| LogError::io(&path, self.generation_size, "truncate", e))?;
        }
        file.allocate(self.generation_size)
            .map_err(|e| LogError::io(&path, len, "allocate", e))?;
        let header = GenerationHeader {
            state: GenerationState::Reserved,
            frame_size: self.frame_size,
            generation,
            generation_size: self.generation_size,
            signature: self.signature,
            epoch: 0,
            created_us: now_us(),
            nonce: 0,
            prev_created_us: 0,
            prev_salt: 0,
            prev_chain: 0,
            max_write_span: 0,
        };
        let mut frame = vec![0u8; self.frame_size as usize];
        header.encode(&mut frame);
        file.write_at(&frame, 0)
            .map_err(|e| LogError::io(&path, 0, "write", e))?;
        file.sync_data().map_err(|e| LogError::io(&path, 0, "sync", e))?;
        vfs.sync_dir(&self.dir)
            .map_err(|e| LogError::io(&self.dir, 0, "sync directory", e))?;
        Ok(Prepared { generation, path, file })
    }

    /// Moves the file of an old generation into the recycle pool, or removes it
    /// when the pool is full. The directory is synced after each step so that
    /// the remaining generations always form one contiguous run.
    pub fn retire(&self, generation: u32) -> Result<()> {
        let vfs = self.vfs.as_ref();
        let path = self.dir.join(generation_name(generation));
        let mut st = self.state.lock();
        if st.pool.len() < self.pool_cap {
            let to = self.dir.join(recycle_name(generation));
            vfs.rename(&path, &to)
                .map_err(|e| LogError::io(&path, 0, "rename", e))?;
            st.pool.insert(0, generation);
        } else {
            drop(st);
            vfs.remove(&path).map_err(|e| LogError::io(&path, 0, "remove", e))?;
        }
        vfs.sync_dir(&self.dir)
            .map_err(|e| LogError::io(&self.dir, 0, "sync directory", e))
    }
}
