//! Preparing generation files ahead of time, and recycling old ones.
//!
//! A background thread creates (or recycles) the file of the next generation,
//! sizes it, stamps a reserved header and makes it and its directory entry
//! durable, so a commit never waits for a file to be created. A new file is
//! then filled with written zeros, because commits into written blocks sync
//! faster (DESIGN.md), once the log is half way through the generation before
//! it (so a log that never gets that far writes none); if the log needs the
//! file before the fill is done, the fill stops where it is and the log
//! takes the file as it is, so a log that grows fast is never held up by zeros.

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

/// The zero fill of a ready file.
struct Fill {
    generation: u32,
    /// A chunk write is in progress.
    in_chunk: bool,
    /// The log has taken the file: write no more zeros.
    stop: bool,
}

#[derive(Default)]
struct PrepState {
    fill: Option<Fill>,
    want: Option<u32>,
    busy: Option<u32>,
    ready: Option<Prepared>,
    error: Option<Arc<LogError>>,
    shutdown: bool,
    /// Generation numbers of recycled files, oldest first.
    pool: Vec<u32>,
    /// Files of generations up to this one may be zero-filled.
    fill_allowed: u32,
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

    /// Lets the zero fill of the file of `generation` (and of every earlier
    /// one) run: the log's end is half way through the generation before it.
    pub fn allow_fill(&self, generation: u32) {
        let mut st = self.state.lock();
        st.fill_allowed = st.fill_allowed.max(generation);
        self.cv.notify_all();
    }

    /// Waits until the background thread has nothing left to do: no file
    /// wanted that is not ready, none being prepared, no zero fill running
    /// or allowed to run (a fill the log has not allowed yet is not waited for).
    pub fn wait_idle(&self) {
        let mut st = self.state.lock();
        loop {
            let wanted = st
                .want
                .is_some_and(|g| st.ready.as_ref().is_none_or(|p| p.generation != g) && st.error.is_none());
            let filling = st
                .fill
                .as_ref()
                .is_some_and(|f| !f.stop && f.generation <= st.fill_allowed);
            if st.shutdown || !(wanted || st.busy.is_some() || filling) {
                return;
            }
            self.cv.wait(&mut st);
        }
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
                // No zero may land once the log writes the file.
                if let Some(fill) = st.fill.as_mut().filter(|f| f.generation == generation) {
                    fill.stop = true;
                    // A fill still waiting to be allowed wakes up to end.
                    self.cv.notify_all();
                }
                while st
                    .fill
                    .as_ref()
                    .is_some_and(|f| f.generation == generation && f.in_chunk)
                {
                    self.cv.wait(&mut st);
                }
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
        let result = self.prepare(generation).map(|(p, _)| p);
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
                Ok((p, needs_fill)) => {
                    let file = p.file.clone();
                    let path = p.path.clone();
                    st.ready = Some(p);
                    if needs_fill {
                        st.fill = Some(Fill {
                            generation,
                            in_chunk: false,
                            stop: false,
                        });
                        self.cv.notify_all();
                        while !(st.shutdown
                            || st.fill_allowed >= generation
                            || st.fill.as_ref().is_some_and(|f| f.stop))
                        {
                            self.cv.wait(&mut st);
                        }
                        drop(st);
                        let filled = self.zero_fill(file.as_ref(), &path);
                        st = self.state.lock();
                        st.fill = None;
                        if let Err(e) = filled {
                            st.error = Some(Arc::new(e));
                        }
                    }
                }
                Err(e) => st.error = Some(Arc::new(e)),
            }
            self.cv.notify_all();
        }
    }

    /// Zero-fills a prepared file on the caller's thread (log creation).
    pub fn zero_fill_now(&self, p: &Prepared) -> Result<()> {
        self.state.lock().fill = Some(Fill {
            generation: p.generation,
            in_chunk: false,
            stop: false,
        });
        let result = self.zero_fill(p.file.as_ref(), &p.path);
        self.state.lock().fill = None;
        result
    }

    /// Writes zeros over a ready file after its header, chunk by chunk, until
    /// done (then syncs) or until the log takes the file.
    fn zero_fill(&self, file: &dyn VfsFile, path: &std::path::Path) -> Result<()> {
        const CHUNK: usize = 1 << 20;
        let zeros = vec![0u8; CHUNK];
        let mut at = u64::from(self.frame_size);
        while at < self.generation_size {
            {
                let mut st = self.state.lock();
                let shutdown = st.shutdown;
                match st.fill.as_mut() {
                    Some(f) if !f.stop && !shutdown => f.in_chunk = true,
                    _ => return Ok(()),
                }
            }
            let n = ((self.generation_size - at) as usize).min(CHUNK);
            let written = file.write_at(&zeros[..n], at);
            {
                let mut st = self.state.lock();
                if let Some(f) = st.fill.as_mut() {
                    f.in_chunk = false;
                }
                self.cv.notify_all();
            }
            written.map_err(|e| LogError::io(path, at, "write", e))?;
            at += n as u64;
        }
        if self.state.lock().fill.as_ref().is_some_and(|f| f.stop) {
            return Ok(());
        }
        // Blocks count as written only once the zeros reach the disk.
        file.sync_data().map_err(|e| LogError::io(path, 0, "sync", e))
    }

    /// Creates or recycles the file of `generation` with a reserved header.
    /// Returns whether it still needs its zero fill (any but a recycled file
    /// of full length).
    pub fn prepare(&self, generation: u32) -> Result<(Prepared, bool)> {
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
        if len != self.generation_size {
            file.set_len(self.generation_size)
                .map_err(|e| LogError::io(&path, self.generation_size, "set length", e))?;
        }
        // A recycled file was written through (unless it was shorter). A
        // file already there is a spare whose fill may have been cut short
        // (by a close, a crash, or a log that never got half way): it is
        // filled again.
        let needs_fill = recycled.is_none() || len < self.generation_size;
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
        Ok((Prepared { generation, path, file }, needs_fill))
    }

    /// Stops the background thread's work and removes the files it keeps
    /// ready: the prepared next generation and the recycled ones. Returns
    /// how many were removed. The log prepares files again (in place, a
    /// stall) if it is written after this.
    pub fn remove_spares(&self) -> Result<u32> {
        let mut st = self.state.lock();
        st.shutdown = true;
        self.cv.notify_all();
        while st.busy.is_some() || st.fill.is_some() {
            self.cv.wait(&mut st);
        }
        let mut paths: Vec<PathBuf> = st.pool.drain(..).map(|g| self.dir.join(recycle_name(g))).collect();
        if let Some(ready) = st.ready.take() {
            paths.push(ready.path);
        }
        drop(st);
        let vfs = self.vfs.as_ref();
        for path in &paths {
            vfs.remove(path).map_err(|e| LogError::io(path, 0, "remove", e))?;
        }
        if !paths.is_empty() {
            vfs.sync_dir(&self.dir)
                .map_err(|e| LogError::io(&self.dir, 0, "sync directory", e))?;
        }
        Ok(paths.len() as u32)
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
