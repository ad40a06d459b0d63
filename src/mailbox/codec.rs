//! Records of the mailbox tables and their keys (DESIGN.md, "Mailbox store
//! tables", gives every layout byte by byte). Integers in keys are
//! big-endian so that keys sort numerically; in values, little-endian.

use super::types::Flags;

/// A cursor over a record's bytes; every read is bounds-checked.
pub(crate) struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
}

pub(crate) type DecodeResult<T> = std::result::Result<T, String>;

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Decoder { bytes, at: 0 }
    }

    #[inline]
    pub fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let out = &self.bytes[self.at..end];
                self.at = end;
                Ok(out)
            }
            None => Err(self.short(n)),
        }
    }

    // Out of line: keeps the formatting out of every inlined read.
    #[cold]
    #[inline(never)]
    fn short(&self, n: usize) -> String {
        format!(
            "{n} bytes wanted at offset {} of a {}-byte record",
            self.at,
            self.bytes.len()
        )
    }

    #[inline]
    pub fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }

    #[inline]
    pub fn u16(&mut self) -> DecodeResult<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    #[inline]
    pub fn u32(&mut self) -> DecodeResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline]
    pub fn u64(&mut self) -> DecodeResult<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    #[inline]
    pub fn i64(&mut self) -> DecodeResult<i64> {
        Ok(self.u64()? as i64)
    }

    /// Fails if bytes are left over.
    pub fn finish(&self) -> DecodeResult<()> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.bytes.len() - self.at))
        }
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.at..];
        self.at = self.bytes.len();
        out
    }
}

/// Encoding version byte at the start of every record value.
const VERSION: u8 = 1;

fn version(d: &mut Decoder<'_>) -> DecodeResult<()> {
    match d.u8()? {
        VERSION => Ok(()),
        v => Err(format!("record version {v}, expected {VERSION}")),
    }
}

/// A mailbox (a user): its id, quotas and usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MailboxRecord {
    pub id: u64,
    /// u64::MAX means no limit.
    pub quota_bytes: u64,
    pub quota_messages: u64,
    pub used_bytes: u64,
    pub used_messages: u64,
}

impl MailboxRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(41);
        v.push(VERSION);
        for x in [
            self.id,
            self.quota_bytes,
            self.quota_messages,
            self.used_bytes,
            self.used_messages,
        ] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }

    pub fn decode(bytes: &[u8]) -> DecodeResult<Self> {
        let mut d = Decoder::new(bytes);
        version(&mut d)?;
        let r = MailboxRecord {
            id: d.u64()?,
            quota_bytes: d.u64()?,
            quota_messages: d.u64()?,
            used_bytes: d.u64()?,
            used_messages: d.u64()?,
        };
        d.finish()?;
        Ok(r)
    }
}

/// A folder: identity, IMAP counters, and the subscribed flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FolderRecord {
    pub id: u64,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    pub messages: u64,
    pub unseen: u64,
    pub bytes: u64,
    pub subscribed: bool,
}

impl FolderRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(50);
        v.push(VERSION);
        v.extend_from_slice(&self.id.to_le_bytes());
        v.extend_from_slice(&self.uid_validity.to_le_bytes());
        v.extend_from_slice(&self.uid_next.to_le_bytes());
        for x in [self.highest_modseq, self.messages, self.unseen, self.bytes] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.push(u8::from(self.subscribed));
        v
    }

    pub fn decode(bytes: &[u8]) -> DecodeResult<Self> {
        let mut d = Decoder::new(bytes);
        version(&mut d)?;
        let r = FolderRecord {
            id: d.u64()?,
            uid_validity: d.u32()?,
            uid_next: d.u32()?,
            highest_modseq: d.u64()?,
            messages: d.u64()?,
            unseen: d.u64()?,
            bytes: d.u64()?,
            subscribed: match d.u8()? {
                0 => false,
                1 => true,
                b => return Err(format!("subscribed byte {b}")),
            },
        };
        d.finish()?;
        if r.unseen > r.messages {
            return Err(format!("{} unseen of {} messages", r.unseen, r.messages));
        }
        Ok(r)
    }
}

/// A message in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageRecord {
    pub modseq: u64,
    pub append_modseq: u64,
    pub internal_date: i64,
    pub size: u64,
    pub flags: Flags,
    pub body: u64,
    pub keywords: Vec<String>,
}

impl MessageRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(48 + self.keywords.iter().map(|k| k.len() + 1).sum::<usize>());
        v.push(VERSION);
        v.extend_from_slice(&self.modseq.to_le_bytes());
        v.extend_from_slice(&self.append_modseq.to_le_bytes());
        v.extend_from_slice(&self.internal_date.to_le_bytes());
        v.extend_from_slice(&self.size.to_le_bytes());
        v.extend_from_slice(&self.flags.bits().to_le_bytes());
        v.extend_from_slice(&self.body.to_le_bytes());
        v.extend_from_slice(&(self.keywords.len() as u16).to_le_bytes());
        for k in &self.keywords {
            // Keywords are at most MAX_KEYWORD_LEN (< 256) bytes.
            v.push(k.len() as u8);
            v.extend_from_slice(k.as_bytes());
        }
        v
    }

    pub fn decode(bytes: &[u8]) -> DecodeResult<Self> {
        let mut d = Decoder::new(bytes);
        version(&mut d)?;
        let modseq = d.u64()?;
        let append_modseq = d.u64()?;
        let internal_date = d.i64()?;
        let size = d.u64()?;
        let flags = Flags::from_bits(d.u32()?).ok_or("unknown flag bits")?;
        let body = d.u64()?;
        let count = d.u16()? as usize;
        let mut keywords = Vec::with_capacity(count.min(bytes.len()));
        for _ in 0..count {
            let len = d.u8()? as usize;
            let k = std::str::from_utf8(d.take(len)?).map_err(|_| "keyword is not UTF-8")?;
            keywords.push(k.to_string());
        }
        d.finish()?;
        if append_modseq > modseq {
            return Err(format!("append modseq {append_modseq} after modseq {modseq}"));
        }
        Ok(MessageRecord {
            modseq,
            append_modseq,
            internal_date,
            size,
            flags,
            body,
            keywords,
        })
    }
}

/// An entry of the change log of a folder: which UID changed at a MODSEQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChangeEntry {
    pub uid: u32,
    pub expunged: bool,
    pub append_modseq: u64,
}

impl ChangeEntry {
    pub fn encode(&self) -> [u8; 13] {
        let mut v = [0u8; 13];
        v[..4].copy_from_slice(&self.uid.to_le_bytes());
        v[4] = u8::from(self.expunged);
        v[5..].copy_from_slice(&self.append_modseq.to_le_bytes());
        v
    }

    pub fn decode(bytes: &[u8]) -> DecodeResult<Self> {
        let mut d = Decoder::new(bytes);
        let uid = d.u32()?;
        let expunged = match d.u8()? {
            0 => false,
            1 => true,
            b => return Err(format!("change kind {b}")),
        };
        let append_modseq = d.u64()?;
        d.finish()?;
        Ok(ChangeEntry {
            uid,
            expunged,
            append_modseq,
        })
    }
}

/// Keys. A folder's keys start with its id, so a folder is one key range.
pub(crate) mod keys {
    pub fn folder(mailbox_id: u64, name: &str) -> Vec<u8> {
        let mut k = mailbox_id.to_be_bytes().to_vec();
        k.extend_from_slice(name.as_bytes());
        k
    }

    pub fn message(folder_id: u64, uid: u32) -> [u8; 12] {
        let mut k = [0u8; 12];
        k[..8].copy_from_slice(&folder_id.to_be_bytes());
        k[8..].copy_from_slice(&uid.to_be_bytes());
        k
    }

    pub fn change(folder_id: u64, modseq: u64) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&folder_id.to_be_bytes());
        k[8..].copy_from_slice(&modseq.to_be_bytes());
        k
    }

    /// Index kinds: the byte after the folder id.
    pub const INDEX_FLAG: u8 = 1;
    pub const INDEX_KEYWORD: u8 = 2;
    pub const INDEX_DATE: u8 = 3;
    pub const INDEX_SIZE: u8 = 4;

    /// folder id, kind, then the kind's own part: ends with the UID.
    pub fn index(folder_id: u64, kind: u8, part: &[u8], uid: u32) -> Vec<u8> {
        let mut k = index_prefix(folder_id, kind, part);
        k.extend_from_slice(&uid.to_be_bytes());
        k
    }

    pub fn index_prefix(folder_id: u64, kind: u8, part: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(13 + part.len() + 4);
        k.extend_from_slice(&folder_id.to_be_bytes());
        k.push(kind);
        k.extend_from_slice(part);
        k
    }

    /// Dates sort as unsigned: flip the sign bit.
    pub fn date_part(date: i64) -> [u8; 8] {
        ((date as u64) ^ (1 << 63)).to_be_bytes()
    }

    /// A keyword's part ends with a NUL, which keywords cannot contain, so
    /// one keyword's range never takes in a longer keyword.
    pub fn keyword_part(keyword: &str) -> Vec<u8> {
        let mut p = keyword.as_bytes().to_vec();
        p.push(0);
        p
    }

    pub fn body_meta(body: u64) -> [u8; 9] {
        body_key(body, 0)
    }

    pub fn body_data(body: u64) -> [u8; 9] {
        body_key(body, 1)
    }

    fn body_key(body: u64, part: u8) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[..8].copy_from_slice(&body.to_be_bytes());
        k[8] = part;
        k
    }

    /// The smallest key after every key that starts with `prefix`, if any.
    pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return Some(end);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncations_are_refused() {
        let m = MessageRecord {
            modseq: 9,
            append_modseq: 4,
            internal_date: -5,
            size: 1234,
            flags: Flags::SEEN | Flags::DRAFT,
            body: 77,
            keywords: vec!["$Junk".into(), "work".into()],
        };
        let bytes = m.encode();
        assert_eq!(MessageRecord::decode(&bytes).unwrap(), m);
        for cut in 0..bytes.len() {
            assert!(MessageRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let f = FolderRecord {
            id: 3,
            uid_validity: 7,
            uid_next: 10,
            highest_modseq: 12,
            messages: 5,
            unseen: 2,
            bytes: 999,
            subscribed: true,
        };
        assert_eq!(FolderRecord::decode(&f.encode()).unwrap(), f);
        let mut bad = f.encode();
        *bad.last_mut().unwrap() = 2;
        assert!(FolderRecord::decode(&bad).is_err());
    }

    #[test]
    fn dates_sort_in_order_as_keys() {
        let dates = [i64::MIN, -1, 0, 1, 1_700_000_000, i64::MAX];
        for w in dates.windows(2) {
            assert!(keys::date_part(w[0]) < keys::date_part(w[1]));
        }
        assert_eq!(keys::prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(keys::prefix_end(&[0xff, 0xff]), None);
    }
}
