//! The keys `bench kv` writes and reads: mail-like, `mbox/<n>/<folder>/msg/<uid>`
//! (24 to 38 bytes), in a random mailbox with the next uid of that mailbox,
//! so that inserts land all over the tree while each mailbox only grows at
//! its end, as mail does. A key is never written twice.

use std::sync::atomic::{AtomicU64, Ordering};

/// Mailboxes per table.
pub const MAILBOXES: u32 = 1000;
const FOLDERS: [&str; 5] = ["INBOX", "Sent", "Drafts", "Archive/2025", "Lists/rust-users"];

/// A small, fast generator (xorshift64*), one per thread.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The key of message `uid` in mailbox `mailbox`, written into `out`.
pub fn key(mailbox: u32, uid: u64, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let folder = FOLDERS[mailbox as usize % FOLDERS.len()];
    // Writing to a Vec cannot fail.
    let _ = write!(out, "mbox/{mailbox}/{folder}/msg/{uid:08}");
}

/// The next uid of every mailbox of one table.
pub struct KeySpace {
    next: Vec<AtomicU64>,
}

impl Default for KeySpace {
    fn default() -> Self {
        KeySpace {
            next: (0..MAILBOXES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl KeySpace {
    /// A new key: a random mailbox and its next uid.
    pub fn allocate(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        let mailbox = rng.below(u64::from(MAILBOXES)) as u32;
        let uid = self.next[mailbox as usize].fetch_add(1, Ordering::Relaxed);
        key(mailbox, uid, out);
    }

    /// `n` new keys in a row: a random mailbox and its next `n` uids; returns
    /// the mailbox and the first uid.
    pub fn allocate_run(&self, rng: &mut Rng, n: u64) -> (u32, u64) {
        let mailbox = rng.below(u64::from(MAILBOXES)) as u32;
        (mailbox, self.next[mailbox as usize].fetch_add(n, Ordering::Relaxed))
    }

    /// The keys allocated so far. Call when no writer runs: every key whose
    /// put failed must have stopped the bench.
    pub fn existing(&self) -> Existing {
        let counts: Vec<u64> = self.next.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        let mut starts = Vec::with_capacity(counts.len());
        let mut total = 0;
        for c in &counts {
            starts.push(total);
            total += c;
        }
        Existing { starts, total }
    }
}

/// The keys of a table that exist, to pick uniformly from.
pub struct Existing {
    /// Index of each mailbox's first key in the order of mailboxes.
    starts: Vec<u64>,
    total: u64,
}

impl Existing {
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Key number `i` (0..total) into `out`.
    pub fn nth(&self, i: u64, out: &mut Vec<u8>) {
        let mailbox = self.starts.partition_point(|&s| s <= i) - 1;
        key(mailbox as u32, i - self.starts[mailbox], out);
    }

    /// A random existing key into `out` (there must be one).
    pub fn random(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        self.nth(rng.below(self.total), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_are_unique_mail_like_and_found_again() {
        let space = KeySpace::default();
        let mut rng = Rng::new(1);
        let mut seen = HashSet::new();
        let mut k = Vec::new();
        for _ in 0..5000 {
            space.allocate(&mut rng, &mut k);
            assert!((16..=40).contains(&k.len()), "{}", String::from_utf8_lossy(&k));
            assert!(k.starts_with(b"mbox/"));
            assert!(seen.insert(k.clone()), "duplicate key");
        }
        let existing = space.existing();
        assert_eq!(existing.total(), 5000);
        let all: HashSet<Vec<u8>> = (0..5000)
            .map(|i| {
                existing.nth(i, &mut k);
                k.clone()
            })
            .collect();
        assert_eq!(all, seen);
        existing.random(&mut rng, &mut k);
        assert!(seen.contains(&k));
        let (mailbox, first) = space.allocate_run(&mut rng, 10);
        key(mailbox, first + 9, &mut k);
        assert!(!seen.contains(&k));
        assert_eq!(space.existing().total(), 5010);
    }
}
