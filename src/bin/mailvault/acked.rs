//! The acknowledged-commits file: one line per commit that returned Ok,
//! written by `bench log --acked` or `bench kv --acked` and checked by
//! `check --acked`. For a log (`bench log`):
//!
//! `<id> <lsn as u64> <len> <crc32c of the body, 8 hex digits>`
//!
//! For a database (`bench kv`), one line per key put:
//!
//! `<table> <key in hex> <value len> <crc32c of the value, 8 hex digits>`

use crate::error::{Context, Result};
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Buffered lines reach the file at least this often, so that a bench killed
/// in a crash test leaves all but the most recent acknowledgements behind.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// One acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckedLine {
    /// The id the bench stored in the first 8 bytes (little-endian).
    pub id: u64,
    pub lsn: u64,
    pub len: u32,
    pub crc: u32,
}

impl fmt::Display for AckedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {:08x}", self.id, self.lsn, self.len, self.crc)
    }
}

impl AckedLine {
    /// Parses one line; the error says what is wrong with it.
    pub fn parse(line: &str) -> Result<AckedLine, String> {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let [id, lsn, len, crc] = fields[..] else {
            return Err(format!(
                "expected 4 fields `<id> <lsn> <len> <crc32c>`, found {}",
                fields.len()
            ));
        };
        let num = |name: &str, s: &str| s.parse::<u64>().map_err(|e| format!("{name} {s:?}: {e}"));
        let crc = parse_crc(crc)?;
        Ok(AckedLine {
            id: num("id", id)?,
            lsn: num("lsn", lsn)?,
            len: len.parse().map_err(|e| format!("len {len:?}: {e}"))?,
            crc,
        })
    }
}

/// One acknowledged put of a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvAckedLine {
    pub table: String,
    pub key: Vec<u8>,
    pub len: u32,
    pub crc: u32,
}

impl fmt::Display for KvAckedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.table)?;
        for b in &self.key {
            write!(f, "{b:02x}")?;
        }
        write!(f, " {} {:08x}", self.len, self.crc)
    }
}

impl KvAckedLine {
    /// Parses one line; the error says what is wrong with it.
    pub fn parse(line: &str) -> Result<KvAckedLine, String> {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let [table, key, len, crc] = fields[..] else {
            return Err(format!(
                "expected 4 fields `<table> <key hex> <value len> <crc32c>`, found {}",
                fields.len()
            ));
        };
        if key.len() % 2 != 0 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("key {key:?}: expected an even number of hex digits"));
        }
        let key = (0..key.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&key[i..i + 2], 16).map_err(|e| format!("key: {e}")))
            .collect::<Result<Vec<u8>, String>>()?;
        Ok(KvAckedLine {
            table: table.to_string(),
            key,
            len: len.parse().map_err(|e| format!("len {len:?}: {e}"))?,
            crc: parse_crc(crc)?,
        })
    }
}

fn parse_crc(crc: &str) -> Result<u32, String> {
    if crc.len() != 8 {
        return Err(format!("crc32c {crc:?}: expected 8 hex digits"));
    }
    u32::from_str_radix(crc, 16).map_err(|e| format!("crc32c {crc:?}: {e}"))
}

/// Writes acknowledged lines. Each line is written whole, so a flush (or a
/// kill) never leaves half a line in the file.
pub struct AckedWriter {
    out: BufWriter<File>,
    path: PathBuf,
    last_flush: Instant,
    text: String,
}

impl AckedWriter {
    pub fn create(path: &Path) -> Result<AckedWriter> {
        let file = File::create(path).context(|| format!("creating {}", path.display()))?;
        Ok(AckedWriter {
            out: BufWriter::with_capacity(256 << 10, file),
            path: path.to_path_buf(),
            last_flush: Instant::now(),
            text: String::new(),
        })
    }

    /// Call only after the commit of `line`'s record returned Ok.
    pub fn write(&mut self, line: &impl fmt::Display) -> Result<()> {
        use std::fmt::Write as _;
        self.text.clear();
        let _ = writeln!(self.text, "{line}"); // writing to a String cannot fail
        self.out
            .write_all(self.text.as_bytes())
            .context(|| format!("writing {}", self.path.display()))?;
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.out
                .flush()
                .context(|| format!("writing {}", self.path.display()))?;
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    /// Flushes the rest and makes the file durable.
    pub fn finish(self) -> Result<()> {
        let path = self.path;
        let file = self.out.into_inner().map_err(|e| e.into_error());
        file.and_then(|f| f.sync_all())
            .context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `line` prints as `text`, parses back, and every one of `bad` is refused.
    fn roundtrip<T: fmt::Display + fmt::Debug + PartialEq + Clone>(
        line: &T,
        text: &str,
        parse: fn(&str) -> Result<T, String>,
        bad: &[&str],
    ) {
        assert_eq!(line.to_string(), text);
        assert_eq!(parse(text), Ok(line.clone()));
        for b in bad {
            assert!(parse(b).is_err(), "{b:?} accepted");
        }
    }

    #[test]
    fn log_lines_roundtrip_and_reject() {
        let line = AckedLine {
            id: 1 << 40,
            lsn: 0x1_0000_3020,
            len: 4096,
            crc: 0xab,
        };
        let bad = [
            "",
            "1 2 3",
            "1 2 3 4 5",
            "x 2 3 0000000a",
            "1 2 -3 0000000a",
            "1 2 3 abc",
            "1 2 3 zzzzzzzz",
        ];
        roundtrip(&line, "1099511627776 4294979616 4096 000000ab", AckedLine::parse, &bad);
    }

    #[test]
    fn kv_lines_roundtrip_and_reject() {
        let line = KvAckedLine {
            table: "messages".into(),
            key: b"mbox/7/msg/1".to_vec(),
            len: 200,
            crc: 0xdead_beef,
        };
        let text = "messages 6d626f782f372f6d73672f31 200 deadbeef";
        let bad = [
            "",
            "t 00 1",
            "t 0 1 00000000",
            "t zz 1 00000000",
            "t 00 -1 00000000",
            "t 00 1 0000000",
            "t 00 1 00000000 x",
        ];
        roundtrip(&line, text, KvAckedLine::parse, &bad);
    }
}
