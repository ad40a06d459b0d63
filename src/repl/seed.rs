//! The active's side of seeding: a copy with no database receives the
//! pages of the live file and the log from the last checkpoint's redo
//! point; a copy whose seed was cut off resumes from the page it reached.
//! Seeds may be paced to a byte rate.

use super::active::{CopyRegistry, ShipOptions, refuse};
use super::auth::codes;
use super::error::Result;
use super::source::ShipSource;
use super::wire::{self, Identity, Message};
use crate::log::Lsn;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Keeps a stream's average rate since its start at or under a limit.
pub(crate) struct Pace {
    rate: Option<u64>,
    start: Instant,
    sent: u64,
}

impl Pace {
    /// `rate` in bytes per second; `None` does not pace.
    pub(crate) fn new(rate: Option<u64>) -> Pace {
        Pace {
            rate: rate.filter(|&r| r > 0),
            start: Instant::now(),
            sent: 0,
        }
    }

    /// Counts `n` bytes about to go out, sleeping first if they would
    /// run ahead of the rate.
    pub(crate) fn take(&mut self, n: usize) {
        let Some(rate) = self.rate else {
            return;
        };
        let due = Duration::from_secs_f64(self.sent as f64 / rate as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
        self.sent += n as u64;
    }
}

/// Streams a fresh seed: the header of the last completed checkpoint, then
/// every page as the file holds it, while writes go on. The log from the
/// checkpoint's redo point is pinned first; replaying it over the pages
/// brings them to one consistent state, since redo is idempotent by page
/// LSN and every page already holds the checkpoint's state or newer.
/// Returns where shipping starts.
pub(crate) fn send_seed(
    source: &dyn ShipSource,
    stream: &mut TcpStream,
    registry: &CopyRegistry,
    copy: [u8; 16],
    opts: &ShipOptions,
) -> Result<Lsn> {
    let Some(header) = source.seed_header() else {
        return Err(refuse(stream, codes::NOT_READY, "no database to seed from yet".into()));
    };
    // The file read live is whole only once replay has passed the log that
    // existed when the seed began (pages the active never wrote yet are
    // rebuilt from it); the copy raises this to its newest page.
    let header = crate::pager::header::DbHeader {
        required_lsn: header.required_lsn.max(source.durable()),
        ..header
    };
    let start = Lsn::new(header.redo_lsn.generation(), 0);
    // An earlier registration is forgotten: the copy starts over.
    registry.forget(&copy);
    registry.register(source, copy, start);
    wire::write_message(
        stream,
        &Message::SeedBegin {
            header: header.encode(0, source.page_size()),
        },
        None,
    )?;
    send_pages(source, stream, 2, opts)?;
    tracing::info!(redo = %header.redo_lsn, "replication: seed sent");
    Ok(start)
}

/// Goes on with a seed the copy holds part of, if this active can: the
/// log from the seed's redo point (the identity's `position`) must still be
/// here, so that it is pinned again before anything is sent. Returns where
/// shipping starts, or `None` when the copy must be seeded from scratch.
pub(crate) fn resume_seed(
    source: &dyn ShipSource,
    stream: &mut TcpStream,
    registry: &CopyRegistry,
    copy: &Identity,
    next_page: u32,
    opts: &ShipOptions,
) -> Result<Option<Lsn>> {
    let redo = copy.position;
    if copy.database != source.identity().database || redo == Lsn::ZERO || redo > source.durable() || next_page < 2 {
        return Ok(None);
    }
    if next_page > source.page_count()? {
        return Err(refuse(
            stream,
            codes::PROTOCOL,
            format!("a seed resumed at page {next_page}, past the file's end"),
        ));
    }
    let start = Lsn::new(redo.generation(), 0);
    registry.forget(&copy.copy);
    registry.register(source, copy.copy, start);
    // Pinned first, checked after: a truncation racing the pin either left
    // the generation (and now cannot remove it) or is seen here.
    if source.first_generation() > start.generation() {
        registry.forget(&copy.copy);
        return Ok(None);
    }
    wire::write_message(stream, &Message::SeedResumed { first: next_page }, None)?;
    send_pages(source, stream, next_page, opts)?;
    tracing::info!(from = next_page, %redo, "replication: seed resumed and sent");
    Ok(Some(start))
}

/// Sends the file's pages from `next` to its end (it may grow meanwhile),
/// then `SeedEnd`.
fn send_pages(source: &dyn ShipSource, stream: &mut TcpStream, mut next: u32, opts: &ShipOptions) -> Result<()> {
    let ps = source.page_size();
    let per_message = (opts.max_chunk / ps).max(1) as u32;
    let mut pace = Pace::new(opts.seed_rate);
    // One buffer for every frame: the pages are read into it in place.
    let mut frame = Vec::new();
    loop {
        let count = source.page_count()?;
        if next >= count {
            break;
        }
        let n = per_message.min(count - next);
        wire::seed_pages_frame(&mut frame, next, ps as u32, n, opts.compress, |out| {
            source.read_pages(next, out)
        })?;
        pace.take(frame.len());
        stream.write_all(&frame)?;
        next += n;
    }
    wire::write_message(stream, &Message::SeedEnd { pages: next }, None)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Pace;
    use std::time::{Duration, Instant};

    #[test]
    fn pacing_holds_the_average_rate_and_no_limit_never_sleeps() {
        let start = Instant::now();
        let mut pace = Pace::new(Some(1 << 20));
        for _ in 0..5 {
            pace.take(128 << 10);
        }
        // The fifth chunk waits until 512 KiB could have gone at 1 MiB/s.
        assert!(start.elapsed() >= Duration::from_millis(490), "{:?}", start.elapsed());
        let start = Instant::now();
        let mut free = Pace::new(None);
        for _ in 0..1000 {
            free.take(1 << 30);
        }
        assert!(start.elapsed() < Duration::from_millis(400), "{:?}", start.elapsed());
    }
}
