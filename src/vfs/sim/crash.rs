//! The power cut: decides the fate of every unsynced operation, then resets
//! the written state to what survived.

use super::CrashMode;
use super::rng::SimRng;
use super::state::{Inode, Pending, State, apply_set_len, apply_write};

/// Sector size of the simulated disk: the unit a torn write is cut into.
pub const SECTOR_SIZE: u64 = 512;

/// What happens to one sector of a torn write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SectorFate {
    Kept,
    Dropped,
    Garbage,
}

impl State {
    /// Power cut now. Does nothing if already crashed (nothing is pending).
    pub(super) fn crash(&mut self) {
        if self.crashed {
            return;
        }
        // Inodes without a durable name are discarded below; their ops need
        // no fate. BTreeMap order keeps the RNG draws deterministic.
        for inode in self.inodes.values_mut() {
            if inode.durable_links > 0 {
                settle(inode, self.mode, &mut self.rng);
            }
        }
        self.inodes.retain(|_, inode| inode.durable_links > 0);
        for inode in self.inodes.values_mut() {
            inode.written.clone_from(&inode.durable);
            inode.pending.clear();
            inode.written_links = inode.durable_links;
            inode.handles = 0;
        }
        self.written_ns.clone_from(&self.durable_ns);
        self.locks.clear();
        self.epoch += 1;
        self.crashed = true;
    }
}

/// Applies to the durable image the part of each pending op that survives.
fn settle(inode: &mut Inode, mode: CrashMode, rng: &mut SimRng) {
    for op in std::mem::take(&mut inode.pending) {
        match (op, mode) {
            (_, CrashMode::DropAll) => {}
            (Pending::Write { offset, data }, CrashMode::KeepAll) => {
                apply_write(&mut inode.durable, offset, &data);
            }
            (Pending::SetLen(len), CrashMode::KeepAll) => apply_set_len(&mut inode.durable, len),
            (Pending::SetLen(len), CrashMode::Random) => {
                if rng.chance(1, 2) {
                    apply_set_len(&mut inode.durable, len);
                }
            }
            (Pending::Write { offset, data }, CrashMode::Random) => match rng.below(3) {
                0 => {}
                1 => apply_write(&mut inode.durable, offset, &data),
                _ => tear(&mut inode.durable, offset, data, rng),
            },
        }
    }
}

/// Applies a write sector by sector (sectors aligned to file offsets), each
/// independently kept, dropped or replaced by garbage.
fn tear(durable: &mut Vec<u8>, offset: u64, mut data: Vec<u8>, rng: &mut SimRng) {
    let mut start = 0usize;
    while start < data.len() {
        let at = offset + start as u64;
        let room = (SECTOR_SIZE - at % SECTOR_SIZE) as usize;
        let end = data.len().min(start + room);
        let piece = &mut data[start..end];
        let fate = match rng.below(3) {
            0 => SectorFate::Kept,
            1 => SectorFate::Dropped,
            _ => SectorFate::Garbage,
        };
        match fate {
            SectorFate::Kept => apply_write(durable, at, piece),
            SectorFate::Dropped => {}
            SectorFate::Garbage => {
                rng.fill(piece);
                apply_write(durable, at, piece);
            }
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tear_cuts_at_absolute_sector_boundaries() {
        // A write from 500 to 1100 touches three sectors: 500..512, 512..1024, 1024..1100.
        let pattern = vec![0xAB; 600];
        let mut seen_partial = false;
        for seed in 0..200 {
            let mut rng = SimRng::new(seed);
            let mut durable = vec![0x11; 2048];
            tear(&mut durable, 500, pattern.clone(), &mut rng);
            for (lo, hi) in [(500usize, 512usize), (512, 1024), (1024, 1100)] {
                let piece = &durable[lo..hi];
                let kept = piece.iter().all(|&b| b == 0xAB);
                let dropped = piece.iter().all(|&b| b == 0x11);
                if !kept && !dropped {
                    seen_partial = true;
                }
            }
            assert!(durable[..500].iter().all(|&b| b == 0x11));
            assert!(durable[1100..].iter().all(|&b| b == 0x11));
        }
        assert!(seen_partial, "garbage sectors never appeared");
    }

    #[test]
    fn tear_past_end_zero_fills_gap() {
        // Find a seed whose first sector is dropped and second is kept.
        for seed in 0..200 {
            let mut rng = SimRng::new(seed);
            let mut durable = Vec::new();
            tear(&mut durable, 0, vec![0xCD; 1024], &mut rng);
            let gap_zeroed = durable.len() == 1024 && durable[..512].iter().all(|&b| b == 0);
            if gap_zeroed && durable[512..].iter().all(|&b| b == 0xCD) {
                return;
            }
        }
        panic!("no seed dropped the first sector and kept the second");
    }
}
