//! The body codecs: packed base64 lines (`mailbox::base64_lines`), the
//! codec of attachment chunks, read back from a file that may hold anything.
//!
//! - `unpack` of any bytes into a buffer of any length returns an error or
//!   a length within the buffer; it never panics or writes past it.
//! - `pack` of any bytes unpacks to exactly those bytes, in a buffer of
//!   exactly their length, and is never more than 3 bytes per 65,535 longer.
//!
//! Input: one control byte, then the body. Bit 0 clear: the body is packed
//! bytes, unpacked into a buffer of `256 * (2nd byte) + 3rd byte` bytes (the
//! first two bytes of the body). Bit 0
//! set: the body is raw bytes, with every byte of value 0x80 and above first
//! turned into a base64 character and every 0x7f into a line end, so that
//! runs of base64 lines are common.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailvault::mailbox::fuzzing::{pack_base64_lines, unpack_base64_lines};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    if control & 1 == 0 {
        let (room, packed) = match body {
            [a, b, rest @ ..] => (usize::from(*a) * 256 + usize::from(*b), rest),
            _ => (0, body),
        };
        let mut out = vec![0u8; room];
        if let Ok(n) = unpack_base64_lines(packed, &mut out) {
            assert!(n <= room, "{n} bytes unpacked into {room}");
        }
        return;
    }
    let raw: Vec<u8> = body
        .iter()
        .flat_map(|b| match *b {
            0x7f => &b"\r\n"[..],
            0x80.. => std::slice::from_ref(&ALPHABET[usize::from(*b & 63)]),
            _ => std::slice::from_ref(b),
        })
        .copied()
        .collect();
    let mut packed = Vec::new();
    pack_base64_lines(&raw, &mut packed);
    assert!(packed.len() <= raw.len() + 3 * raw.len().div_ceil(65_535).max(1));
    let mut out = vec![0u8; raw.len()];
    assert_eq!(unpack_base64_lines(&packed, &mut out), Ok(raw.len()));
    assert_eq!(out, raw);
});
