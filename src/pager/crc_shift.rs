//! Extending a crc32c across bytes whose own crc32c is known, without a
//! second pass over them: crc(A ‖ B) = shift(crc(A)) ^ crc(B), where shift
//! multiplies by x^(8·|B|) modulo the polynomial. The shift is linear, so it
//! is kept as its 32 columns for one length of B; applying it costs 32
//! masked XORs. The crc32c crate's `crc32c_combine` builds the operator
//! afresh on every call, which measured slower than checksumming a whole
//! 16 KiB page again (37 % of a copy's checkpoint thread in a profile).

/// The shift over a fixed number of bytes.
#[derive(Clone)]
pub(crate) struct CrcShift {
    columns: [u32; 32],
}

impl CrcShift {
    /// The shift across `len` bytes.
    pub fn new(len: usize) -> CrcShift {
        let mut columns = [0u32; 32];
        for (i, c) in columns.iter_mut().enumerate() {
            // Linear in its first argument: a column is the image of one bit.
            *c = crc32c::crc32c_combine(1 << i, 0, len);
        }
        CrcShift { columns }
    }

    /// crc(A ‖ B) from crc(A) and crc(B), B being `len` bytes long.
    pub fn combine(&self, crc_a: u32, crc_b: u32) -> u32 {
        let mut out = crc_b;
        for (i, c) in self.columns.iter().enumerate() {
            out ^= c & 0u32.wrapping_sub((crc_a >> i) & 1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::CrcShift;

    #[test]
    fn the_shift_gives_the_checksum_of_the_joined_bytes() {
        let mut state = 0x9e37_79b9_u32;
        let mut byte = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        };
        for (a_len, b_len) in [(4, 4092), (4, 16380), (0, 10), (100, 0), (7, 65532), (33, 1)] {
            let a: Vec<u8> = (0..a_len).map(|_| byte()).collect();
            let b: Vec<u8> = (0..b_len).map(|_| byte()).collect();
            let joined: Vec<u8> = a.iter().chain(&b).copied().collect();
            let shift = CrcShift::new(b_len);
            let combined = shift.combine(crc32c::crc32c(&a), crc32c::crc32c(&b));
            assert_eq!(combined, crc32c::crc32c(&joined), "{a_len} + {b_len} bytes");
            assert_eq!(
                combined,
                crc32c::crc32c_combine(crc32c::crc32c(&a), crc32c::crc32c(&b), b_len)
            );
        }
    }
}
