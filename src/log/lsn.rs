//! Log sequence numbers.

use std::fmt;

/// A position in the log: generation in the high 32 bits, byte offset within
/// that generation's file in the low 32 bits. Ordering the packed `u64` orders
/// positions.
///
/// ```
/// use mailvault::log::Lsn;
/// let a = Lsn::new(1, 0xfff0);
/// let b = Lsn::new(2, 0x3020);
/// assert!(a < b);
/// assert_eq!((b.generation(), b.offset()), (2, 0x3020));
/// assert_eq!(b.to_string(), "2:0x3020");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The position before everything.
    pub const ZERO: Lsn = Lsn(0);
    /// The position after everything.
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// Packs a generation and an offset.
    pub const fn new(generation: u32, offset: u32) -> Lsn {
        Lsn(((generation as u64) << 32) | offset as u64)
    }

    /// The generation number.
    pub const fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The byte offset within the generation file.
    pub const fn offset(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:#x}", self.generation(), self.offset())
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn packing_roundtrips_and_orders(g1: u32, o1: u32, g2: u32, o2: u32) {
            let a = Lsn::new(g1, o1);
            let b = Lsn::new(g2, o2);
            prop_assert_eq!(a.generation(), g1);
            prop_assert_eq!(a.offset(), o1);
            prop_assert_eq!(a.cmp(&b), (g1, o1).cmp(&(g2, o2)));
        }
    }

    #[test]
    fn display_names_generation_and_offset() {
        assert_eq!(Lsn::new(3, 0x3020).to_string(), "3:0x3020");
    }
}
