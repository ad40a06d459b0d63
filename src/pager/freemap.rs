//! Free-space maps: bitmap pages, one bit per page, set when allocated.
//!
//! The first map is page 2 and covers pages `0..span`; the map of range k
//! (k ≥ 1) is the first page of that range, `k * span`, and covers
//! `k * span..(k + 1) * span`, where `span = (page_size - 32) * 8`. Map pages
//! change through the writer's private copies like any other page, so free
//! space is logged, replayed and replicated with the data it describes.

use super::page::{PAGE_HEADER_LEN, PageNo};

/// The first free-space map page.
pub const FIRST_MAP_PAGE: PageNo = 2;

/// Pages one map page covers.
pub fn span(page_size: usize) -> u32 {
    ((page_size - PAGE_HEADER_LEN) * 8) as u32
}

/// The map page covering `no`, and the bit index within it.
pub fn locate(no: PageNo, page_size: usize) -> (PageNo, usize) {
    let span = span(page_size);
    let range = no / span;
    let map = if range == 0 { FIRST_MAP_PAGE } else { range * span };
    (map, (no % span) as usize)
}

/// Whether `no` is a map page.
pub fn is_map_page(no: PageNo, page_size: usize) -> bool {
    no == FIRST_MAP_PAGE || (no != 0 && no.is_multiple_of(span(page_size)))
}

/// The bit of `index` in a map page's body.
pub fn get(page: &[u8], index: usize) -> bool {
    page[PAGE_HEADER_LEN + index / 8] & (1 << (index % 8)) != 0
}

/// Sets or clears the bit of `index`.
pub fn put(page: &mut [u8], index: usize, allocated: bool) {
    let byte = &mut page[PAGE_HEADER_LEN + index / 8];
    if allocated {
        *byte |= 1 << (index % 8);
    } else {
        *byte &= !(1 << (index % 8));
    }
}

/// The first clear bit at or after `from` and before `limit`. Whole words
/// of allocated pages are skipped eight bytes at a time: a full map is most
/// of what a search crosses.
pub fn find_free(page: &[u8], from: usize, limit: usize) -> Option<usize> {
    let body = &page[PAGE_HEADER_LEN..];
    let limit = limit.min(body.len() * 8);
    let mut i = from;
    while i < limit {
        let byte_at = i / 8;
        if i.is_multiple_of(64) && byte_at + 8 <= body.len() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&body[byte_at..byte_at + 8]);
            let word = u64::from_le_bytes(word);
            if word == u64::MAX {
                i += 64;
                continue;
            }
            let free = i + (!word).trailing_zeros() as usize;
            return (free < limit).then_some(free);
        }
        if body[byte_at] & (1 << (i % 8)) == 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Pages marked allocated in a map page, below `limit`.
pub fn count_allocated(page: &[u8], limit: usize) -> usize {
    (0..limit).filter(|&i| get(page, i)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_maps_and_bits() {
        let ps = 4096;
        let s = span(ps);
        assert_eq!(locate(0, ps), (FIRST_MAP_PAGE, 0));
        assert_eq!(locate(s - 1, ps), (FIRST_MAP_PAGE, s as usize - 1));
        assert_eq!(locate(s, ps), (s, 0));
        assert_eq!(locate(2 * s + 5, ps), (2 * s, 5));
        assert!(is_map_page(2, ps) && is_map_page(s, ps) && !is_map_page(3, ps) && !is_map_page(0, ps));
    }

    #[test]
    fn bits_and_search() {
        let mut page = vec![0u8; 4096];
        for i in 0..20 {
            put(&mut page, i, true);
        }
        put(&mut page, 7, false);
        assert_eq!(find_free(&page, 0, 100), Some(7));
        assert_eq!(find_free(&page, 8, 100), Some(20));
        assert_eq!(find_free(&page, 8, 20), None);
        assert_eq!(count_allocated(&page, 100), 19);
    }

    #[test]
    fn word_search_matches_bit_by_bit() {
        let naive = |page: &[u8], from: usize, limit: usize| (from..limit).find(|&i| !get(page, i));
        let mut page = vec![0u8; 4096];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let bits = span(4096) as usize;
        for round in 0..200 {
            // Mostly full maps, with a few holes, as a growing database has.
            for i in 0..bits {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                put(&mut page, i, state % 1000 >= round * 5);
            }
            for (from, limit) in [(0, bits), (3, bits), (64, 640), (65, 129), (bits - 70, bits), (100, 90)] {
                assert_eq!(
                    find_free(&page, from, limit),
                    naive(&page, from, limit),
                    "round {round} {from}..{limit}"
                );
            }
        }
        assert_eq!(find_free(&page, 0, bits + 1000), naive(&page, 0, bits));
    }
}
