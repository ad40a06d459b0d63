//! Base64 lines stored as the bytes they encode. Most of a mailbox's bytes
//! are MIME attachments: base64 of files that are already compressed, which
//! only entropy coding shrinks (to about 0.75 of the text) and at a few
//! hundred MB a second. Decoding the lines gives the same size or less (the
//! line ends go too) at memory speed (DESIGN.md, "Base64 lines").
//!
//! A packed chunk is a run of segments that together give back exactly the
//! chunk's bytes:
//! - `0, len: u16 LE`, then `len` bytes: literal bytes;
//! - `1, width: u8, eol: u8, lines: u16 LE`, then `lines * width / 4 * 3`
//!   bytes: `lines` lines of `width` base64 characters (`width` a non-zero
//!   multiple of 4, no padding), each followed by CRLF (`eol` 0) or LF (1).

const LITERAL: u8 = 0;
const LINES: u8 = 1;

/// Shorter lines are left literal: a segment's header would eat the gain.
const MIN_WIDTH: usize = 16;
const MAX_WIDTH: usize = 252;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The six bits of each base64 character; `NOT_BASE64` for any other byte.
const SEXTETS: [u8; 256] = {
    let mut table = [NOT_BASE64; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const NOT_BASE64: u8 = 0xff;

const EOLS: [&[u8]; 2] = [b"\r\n", b"\n"];

/// Packs `raw` into `out` (replacing what it held). The result is never
/// more than 3 bytes per 65,535 longer than `raw`; the caller keeps it only
/// if it is shorter than the other codecs' (DESIGN.md).
pub fn pack(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut literal_from = 0;
    let mut at = 0;
    while at < raw.len() {
        if let Some((width, eol)) = first_line(&raw[at..]) {
            let line_len = width + EOLS[eol].len();
            // A run takes at least two lines (one base64-looking line is as
            // likely a token): the second decides, so a run once begun never
            // ends short of it.
            if raw.get(at + line_len..).is_some_and(|next| same_line(next, width, eol)) {
                push_literal(out, &raw[literal_from..at]);
                at += push_lines(out, &raw[at..], width, eol);
                literal_from = at;
                continue;
            }
        }
        at = match raw[at..].iter().position(|&b| b == b'\n') {
            Some(i) => at + i + 1,
            None => raw.len(),
        };
    }
    push_literal(out, &raw[literal_from..]);
}

/// Appends a lines segment for the run of lines of `width` and `eol` that
/// `text` starts with (at least two of them). Returns the bytes
/// of `text` it covers.
fn push_lines(out: &mut Vec<u8>, text: &[u8], width: usize, eol: usize) -> usize {
    let line_len = width + EOLS[eol].len();
    let line_bytes = width / 4 * 3;
    let most = (text.len() / line_len).min(usize::from(u16::MAX));
    let header_at = out.len();
    // width <= MAX_WIDTH: it fits; the line count is patched in below.
    out.extend_from_slice(&[LINES, width as u8, eol as u8, 0, 0]);
    let body_at = out.len();
    out.resize(body_at + most * line_bytes, 0);
    let mut lines = 0;
    for (line, bytes) in text
        .chunks_exact(line_len)
        .take(most)
        .zip(out[body_at..].chunks_exact_mut(line_bytes))
    {
        if !is_eol(&line[width..], eol) || !decode_line(&line[..width], bytes) {
            break;
        }
        lines += 1;
    }
    out.truncate(body_at + lines * line_bytes);
    // lines <= most <= u16::MAX.
    out[header_at + 3..header_at + 5].copy_from_slice(&(lines as u16).to_le_bytes());
    lines * line_len
}

/// Writes the bytes `packed` stands for to the start of `out`. Returns how
/// many it wrote; an error (with the offset in `packed`) if it is malformed
/// or stands for more than `out` holds.
pub fn unpack(packed: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let mut at = 0;
    let mut done = 0;
    let short = |at: usize| format!("packed base64 segment at {at} runs past the chunk's end");
    let room = out.len();
    let over = |at: usize| format!("packed base64 segment at {at} gives more than the chunk's {room} bytes");
    while at < packed.len() {
        match packed[at] {
            LITERAL => {
                let len = usize::from(read_u16(packed, at + 1).ok_or_else(|| short(at))?);
                let bytes = packed.get(at + 3..at + 3 + len).ok_or_else(|| short(at))?;
                out.get_mut(done..done + len)
                    .ok_or_else(|| over(at))?
                    .copy_from_slice(bytes);
                done += len;
                at += 3 + len;
            }
            LINES => {
                let (Some(&width), Some(&eol), Some(lines)) =
                    (packed.get(at + 1), packed.get(at + 2), read_u16(packed, at + 3))
                else {
                    return Err(short(at));
                };
                let (width, lines) = (usize::from(width), usize::from(lines));
                if width == 0 || width % 4 != 0 {
                    return Err(format!("packed base64 segment at {at}: line width {width}"));
                }
                let Some(eol) = EOLS.get(usize::from(eol)) else {
                    return Err(format!("packed base64 segment at {at}: line end {eol}"));
                };
                let line_bytes = width / 4 * 3;
                let bytes = packed
                    .get(at + 5..at + 5 + lines * line_bytes)
                    .ok_or_else(|| short(at))?;
                let line_len = width + eol.len();
                let target = out.get_mut(done..done + lines * line_len).ok_or_else(|| over(at))?;
                for (line, text) in bytes.chunks_exact(line_bytes).zip(target.chunks_exact_mut(line_len)) {
                    encode_line(line, &mut text[..width]);
                    text[width..].copy_from_slice(eol);
                }
                done += lines * line_len;
                at += 5 + lines * line_bytes;
            }
            tag => return Err(format!("packed base64 segment at {at}: tag {tag}")),
        }
    }
    Ok(done)
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// The width and line end of a base64 line at the start of `text`.
fn first_line(text: &[u8]) -> Option<(usize, usize)> {
    let width = text
        .iter()
        .take(MAX_WIDTH + 1)
        .take_while(|&&b| SEXTETS[usize::from(b)] != NOT_BASE64)
        .count();
    if !(MIN_WIDTH..=MAX_WIDTH).contains(&width) || width % 4 != 0 {
        return None;
    }
    let rest = &text[width..];
    (0..EOLS.len())
        .find(|&eol| rest.get(..EOLS[eol].len()).is_some_and(|end| is_eol(end, eol)))
        .map(|eol| (width, eol))
}

/// Whether `end` is line end `eol` (matched byte by byte: a slice compare
/// of two bytes is a call to memcmp).
fn is_eol(end: &[u8], eol: usize) -> bool {
    match eol {
        0 => matches!(end, [b'\r', b'\n']),
        _ => matches!(end, [b'\n']),
    }
}

/// Whether `text` starts with a base64 line of `width` characters and line end `eol`.
fn same_line(text: &[u8], width: usize, eol: usize) -> bool {
    text.get(width..width + EOLS[eol].len())
        .is_some_and(|end| is_eol(end, eol))
        && text[..width].iter().all(|&b| SEXTETS[usize::from(b)] != NOT_BASE64)
}

/// Writes the bytes a line of base64 characters (a multiple of 4 long)
/// encodes to `bytes`. False if a character is not base64.
fn decode_line(chars: &[u8], bytes: &mut [u8]) -> bool {
    let mut seen = 0u32;
    for (group, out) in chars.chunks_exact(4).zip(bytes.chunks_exact_mut(3)) {
        let bits = AT_18[usize::from(group[0])]
            | AT_12[usize::from(group[1])]
            | AT_6[usize::from(group[2])]
            | AT_0[usize::from(group[3])];
        seen |= bits;
        out.copy_from_slice(&bits.to_be_bytes()[1..]);
    }
    seen & SHIFTED_NOT_BASE64 == 0
}

/// A character's six bits shifted into place in its group's 24, so that a
/// group decodes with four lookups and three ORs; `SHIFTED_NOT_BASE64`
/// (outside those 24 bits) for any other byte.
const fn shifted(shift: u32) -> [u32; 256] {
    let mut table = [SHIFTED_NOT_BASE64; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = (i as u32) << shift;
        i += 1;
    }
    table
}
const SHIFTED_NOT_BASE64: u32 = 1 << 31;
static AT_18: [u32; 256] = shifted(18);
static AT_12: [u32; 256] = shifted(12);
static AT_6: [u32; 256] = shifted(6);
static AT_0: [u32; 256] = shifted(0);

/// Writes the base64 characters of `bytes` (a multiple of 3 long) to `chars`.
fn encode_line(bytes: &[u8], chars: &mut [u8]) {
    for (group, text) in bytes.chunks_exact(3).zip(chars.chunks_exact_mut(4)) {
        let bits = u32::from_be_bytes([0, group[0], group[1], group[2]]);
        for (i, c) in text.iter_mut().enumerate() {
            *c = ALPHABET[((bits >> (18 - 6 * i)) & 63) as usize];
        }
    }
}

fn push_literal(out: &mut Vec<u8>, bytes: &[u8]) {
    for piece in bytes.chunks(usize::from(u16::MAX)) {
        out.push(LITERAL);
        // A piece is at most u16::MAX bytes.
        out.extend_from_slice(&(piece.len() as u16).to_le_bytes());
        out.extend_from_slice(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(raw: &[u8]) -> Vec<u8> {
        let mut packed = Vec::new();
        pack(raw, &mut packed);
        let mut out = vec![0u8; raw.len()];
        assert_eq!(unpack(&packed, &mut out), Ok(raw.len()));
        assert_eq!(out, raw);
        packed
    }

    fn base64_lines(seed: u64, lines: usize, width: usize, eol: &[u8]) -> Vec<u8> {
        let mut x = seed | 1;
        let mut text = Vec::new();
        for _ in 0..lines {
            for _ in 0..width {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push(ALPHABET[(x % 64) as usize]);
            }
            text.extend_from_slice(eol);
        }
        text
    }

    /// An attachment's lines shrink to their bytes (72 and 76 characters,
    /// CRLF or LF), with the MIME text around them literal; a last line with
    /// padding, odd widths and lone lines stay literal.
    #[test]
    fn attachments_pack_to_their_bytes_and_everything_round_trips() {
        for (width, eol) in [
            (72, &b"\r\n"[..]),
            (76, b"\r\n"),
            (76, b"\n"),
            (16, b"\r\n"),
            (252, b"\n"),
        ] {
            let mut raw = b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
            raw.extend(base64_lines(width as u64, 200, width, eol));
            raw.extend_from_slice(b"QUJD==\r\n--b--\r\n");
            let packed = round_trip(&raw);
            let ideal = 200 * width / 4 * 3;
            assert!(
                packed.len() < ideal + 80,
                "width {width}: {} bytes packed, {ideal} of base64 payload",
                packed.len()
            );
        }
        for raw in [
            base64_lines(1, 50, 74, b"\r\n"),  // not a multiple of 4
            base64_lines(2, 50, 12, b"\r\n"),  // too short to pay
            base64_lines(3, 1, 76, b"\r\n"),   // one line
            base64_lines(4, 50, 256, b"\r\n"), // too long
            base64_lines(5, 50, 76, b"\r"),    // not a line end
            b"word\r\n\r\n\n\n".repeat(50),
            Vec::new(),
        ] {
            let packed = round_trip(&raw);
            assert!(packed.len() <= raw.len() + 3 * raw.len().div_ceil(65_535));
        }
        // Runs of lines of mixed widths: each run is its own segment.
        let mut mixed = base64_lines(6, 30, 76, b"\r\n");
        mixed.extend(base64_lines(7, 30, 64, b"\r\n"));
        mixed.extend(base64_lines(8, 30, 76, b"\n"));
        assert!(round_trip(&mixed).len() < mixed.len() * 3 / 4);
        // A literal run longer than one segment holds.
        round_trip(&b"x".repeat(200_000));
    }

    /// Damage of every kind is an error naming the offset, never a panic or
    /// more bytes than the chunk holds.
    #[test]
    fn malformed_packings_are_refused() {
        let mut raw = b"head\r\n".to_vec();
        raw.extend(base64_lines(9, 10, 76, b"\r\n"));
        let mut packed = Vec::new();
        pack(&raw, &mut packed);
        let mut out = vec![0u8; raw.len()];
        let lines_at = 3 + 6;
        assert_eq!(packed[lines_at], LINES);
        for (at, byte, want) in [
            (lines_at, 9, "tag 9"),
            (lines_at + 1, 75, "line width 75"),
            (lines_at + 1, 0, "line width 0"),
            (lines_at + 2, 2, "line end 2"),
            (2, 0xff, "runs past"),
        ] {
            let mut bad = packed.clone();
            bad[at] = byte;
            let err = unpack(&bad, &mut out).unwrap_err();
            assert!(err.contains(want), "byte {at} = {byte}: {err}");
        }
        for cut in 1..packed.len() {
            match unpack(&packed[..cut], &mut out) {
                Err(e) => assert!(e.contains("runs past"), "cut at {cut}: {e}"),
                Ok(n) => assert!(n < raw.len(), "cut at {cut} gave all {n} bytes"),
            }
        }
        assert!(
            unpack(&packed, &mut out[..raw.len() - 1])
                .unwrap_err()
                .contains("more than")
        );
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(
            pieces in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..40),
                    (1u64.., 1usize..5, 4usize..20, any::<bool>()).prop_map(|(seed, lines, quads, lf)| {
                        base64_lines(seed, lines, quads * 4, if lf { b"\n" } else { b"\r\n" })
                    }),
                ],
                0..12,
            )
        ) {
            let raw = pieces.concat();
            let mut packed = Vec::new();
            pack(&raw, &mut packed);
            let mut out = vec![0u8; raw.len()];
            prop_assert_eq!(unpack(&packed, &mut out), Ok(raw.len()));
            prop_assert_eq!(out, raw);
        }
    }
}
