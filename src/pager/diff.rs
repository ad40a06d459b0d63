//! Finding what a transaction changed in a page, and writing it as a
//! change: byte ranges against the page it started from, or an image of
//! the page's nonzero runs. The commit path and the record encoder share it.

use super::page::{self, PageNo};
use super::redo::LOGGED_FROM;
use crate::log::Lsn;

/// Equal bytes shorter than this between two changed ranges are sent along
/// rather than starting a new range (a range costs 8 bytes of header).
const MERGE_GAP: usize = 16;

/// Computes the ranges that turn `old` into `new` (equal-length pages).
pub fn diff(old: &[u8], new: &[u8]) -> Vec<(u32, Vec<u8>)> {
    changed_runs(old, new, LOGGED_FROM)
        .map(|(at, bytes)| (at as u32, bytes.to_vec()))
        .collect()
}

/// The runs of bytes where `new` differs from `old`, from offset `from` on,
/// as (offset, bytes of `new`). Equal stretches shorter than `MERGE_GAP`
/// inside a run are kept in it. Pages are compared eight bytes at a time
/// (a leaf's diff scans the whole page once per commit).
fn changed_runs<'a>(old: &'a [u8], new: &'a [u8], from: usize) -> impl Iterator<Item = (usize, &'a [u8])> + 'a {
    let n = new.len().min(old.len());
    let mut i = from;
    std::iter::from_fn(move || {
        let start = first_difference(old, new, i, n)?;
        let end = run_end(old, new, start, n);
        i = end;
        Some((start, &new[start..end]))
    })
}

/// The first offset in `from..to` where the pages differ.
fn first_difference(old: &[u8], new: &[u8], from: usize, to: usize) -> Option<usize> {
    let (a, b) = (&old[from..to], &new[from..to]);
    // Equal stretches 128 bytes at a time, folded with XOR and OR: the
    // compiler makes vector code of it, with no call and no bounds checks.
    let (a_blocks, _) = a.as_chunks::<128>();
    let (b_blocks, _) = b.as_chunks::<128>();
    let equal = |(x, y): &(&[u8; 128], &[u8; 128])| x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q)) == 0;
    let equal_blocks = a_blocks.iter().zip(b_blocks).take_while(equal).count();
    let mut i = equal_blocks * 128;
    let (a_words, _) = a[i..].as_chunks::<8>();
    let (b_words, _) = b[i..].as_chunks::<8>();
    for (x, y) in a_words.iter().zip(b_words) {
        let x = u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
        if x != 0 {
            return Some(from + i + (x.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    (i..a.len()).find(|&j| a[j] != b[j]).map(|j| from + j)
}

/// The end of the run that starts with a difference at `start`: the run
/// grows, a word at a time, while the next difference lies less than
/// `MERGE_GAP` bytes past its end.
fn run_end(old: &[u8], new: &[u8], start: usize, n: usize) -> usize {
    let mut end = start + 1;
    let mut j = end;
    while j + 8 <= n && j < end + MERGE_GAP {
        let (Some(x), Some(y)) = (old[j..].first_chunk::<8>(), new[j..].first_chunk::<8>()) else {
            break;
        };
        let x = u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
        if x != 0 {
            let first = j + (x.trailing_zeros() / 8) as usize;
            if first >= end + MERGE_GAP {
                return end;
            }
            end = j + 8 - (x.leading_zeros() / 8) as usize;
        }
        j += 8;
    }
    // The last few bytes of the page, one at a time.
    while j < n && j < end + MERGE_GAP {
        if old[j] != new[j] {
            end = j + 1;
        }
        j += 1;
    }
    end
}

/// Blocks an image is scanned in for its nonzero runs.
const IMAGE_BLOCK: usize = 64;

/// The nonzero runs of `image` as (start, end): runs of blocks that are not
/// all zeros, trimmed of zero bytes at both ends. A block compare against
/// zeros is a vector compare, so this reads an image at memory speed.
fn nonzero_runs(image: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    const ZEROS: [u8; IMAGE_BLOCK] = [0; IMAGE_BLOCK];
    let is_zero = |block: &[u8]| block == &ZEROS[..block.len()];
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < image.len() && is_zero(&image[at..(at + IMAGE_BLOCK).min(image.len())]) {
            at += IMAGE_BLOCK;
        }
        if at >= image.len() {
            return None;
        }
        let mut end = at;
        while end < image.len() && !is_zero(&image[end..(end + IMAGE_BLOCK).min(image.len())]) {
            end = (end + IMAGE_BLOCK).min(image.len());
        }
        let run = &image[at..end];
        // Both ends hold a nonzero byte: the first and last blocks are not all zeros.
        let first = run.iter().position(|&b| b != 0).unwrap_or(0);
        let last = run.iter().rposition(|&b| b != 0).map_or(run.len(), |i| i + 1);
        let found = (at + first, at + last);
        at = end;
        Some(found)
    })
}

/// Appends `image` (a page from byte 16) as a change: kind `4`, its nonzero
/// runs, when that is shorter, else kind `1`, the bytes whole. A new node
/// page after a split is about half free space, all zeros.
pub(super) fn encode_image(out: &mut Vec<u8>, image: &[u8]) {
    let whole_len = 4 + image.len();
    let begin = out.len();
    out.push(4);
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut count = 0u32;
    for (start, end) in nonzero_runs(image) {
        if out.len() - begin - 1 + 8 + (end - start) >= whole_len {
            // Not shorter: the whole form instead.
            out.truncate(begin);
            out.push(1);
            out.extend_from_slice(&(image.len() as u32).to_le_bytes());
            out.extend_from_slice(image);
            return;
        }
        out.extend_from_slice(&((start + LOGGED_FROM) as u32).to_le_bytes());
        out.extend_from_slice(&((end - start) as u32).to_le_bytes());
        out.extend_from_slice(&image[start..end]);
        count += 1;
    }
    out[begin + 1..begin + 5].copy_from_slice(&count.to_le_bytes());
}

/// Appends page `no`'s change from `base` (the committed version it started
/// from; `None` for a new page) to `new`, in the record encoding: byte
/// ranges over the base when its LSN is at or after `redo_point`, else
/// the image (a torn write of the page during the next checkpoint is then
/// repairable from the log). Ranges longer than the image give way to it,
/// so a change never takes more than a page and 9 bytes. Returns false,
/// appending nothing, for a page equal to its base.
pub fn encode_page_change(out: &mut Vec<u8>, no: PageNo, base: Option<&[u8]>, new: &[u8], redo_point: Lsn) -> bool {
    let begin = out.len();
    out.extend_from_slice(&no.to_le_bytes());
    let image = &new[LOGGED_FROM..];
    match base {
        Some(base) if base == new => {
            out.truncate(begin);
            return false;
        }
        Some(base) if page::page_lsn(base) >= redo_point => {
            out.push(2);
            out.extend_from_slice(&page::page_lsn(base).0.to_le_bytes());
            let count_at = out.len();
            out.extend_from_slice(&0u32.to_le_bytes());
            let mut count = 0u32;
            for (at, bytes) in changed_runs(base, new, LOGGED_FROM) {
                out.extend_from_slice(&(at as u32).to_le_bytes());
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(bytes);
                count += 1;
                if out.len() - begin > 9 + image.len() {
                    // Longer than the image would be.
                    out.truncate(begin + 4);
                    encode_image(out, image);
                    return true;
                }
            }
            out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
        }
        _ => encode_image(out, image),
    }
    true
}
