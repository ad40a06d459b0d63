//! Public value types of the mailbox API.

/// IMAP system flags, as a bit set. `\Recent` is gone from IMAP4rev2 and is
/// not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(u32);

impl Flags {
    /// No flag.
    pub const EMPTY: Flags = Flags(0);
    /// `\Seen`
    pub const SEEN: Flags = Flags(1);
    /// `\Answered`
    pub const ANSWERED: Flags = Flags(2);
    /// `\Flagged`
    pub const FLAGGED: Flags = Flags(4);
    /// `\Deleted`
    pub const DELETED: Flags = Flags(8);
    /// `\Draft`
    pub const DRAFT: Flags = Flags(16);
    /// Every flag, with its IMAP name.
    pub const ALL: [(Flags, &'static str); 5] = [
        (Flags::SEEN, "\\Seen"),
        (Flags::ANSWERED, "\\Answered"),
        (Flags::FLAGGED, "\\Flagged"),
        (Flags::DELETED, "\\Deleted"),
        (Flags::DRAFT, "\\Draft"),
    ];
    const MASK: u32 = 31;

    /// The raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// From raw bits; `None` if an unknown bit is set.
    pub fn from_bits(bits: u32) -> Option<Flags> {
        (bits & !Self::MASK == 0).then_some(Flags(bits))
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// These flags without those of `other`.
    pub fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// The flag named `name` (case-insensitive, with the backslash).
    pub fn parse(name: &str) -> Option<Flags> {
        Flags::ALL
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(f, _)| *f)
    }

    /// IMAP names of the flags set.
    pub fn names(self) -> Vec<&'static str> {
        Flags::ALL
            .iter()
            .filter(|(f, _)| self.contains(*f))
            .map(|(_, n)| *n)
            .collect()
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

/// A set of UIDs, as inclusive ranges (IMAP's `1:5,9,12:*`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UidSet {
    ranges: Vec<(u32, u32)>,
}

impl UidSet {
    /// Every UID.
    pub fn all() -> UidSet {
        UidSet::range(1, u32::MAX)
    }

    /// One UID.
    pub fn single(uid: u32) -> UidSet {
        UidSet::range(uid, uid)
    }

    /// `first..=last`, in either order.
    pub fn range(first: u32, last: u32) -> UidSet {
        UidSet {
            ranges: vec![(first.min(last), first.max(last))],
        }
    }

    /// These UIDs.
    pub fn of(uids: &[u32]) -> UidSet {
        let mut set = UidSet::default();
        for &u in uids {
            set.ranges.push((u, u));
        }
        set.normalise();
        set
    }

    /// Parses IMAP sequence-set syntax over UIDs: `1:5,9,12:*` (`*` is the
    /// largest UID).
    pub fn parse(text: &str) -> Option<UidSet> {
        let number = |s: &str| -> Option<u32> {
            if s == "*" {
                Some(u32::MAX)
            } else {
                s.parse::<u32>().ok().filter(|&n| n > 0)
            }
        };
        let mut set = UidSet::default();
        for part in text.split(',') {
            let (a, b) = match part.split_once(':') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => {
                    let n = number(part)?;
                    (n, n)
                }
            };
            set.ranges.push((a.min(b), a.max(b)));
        }
        set.normalise();
        Some(set)
    }

    fn normalise(&mut self) {
        self.ranges.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(self.ranges.len());
        for &(a, b) in &self.ranges {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        self.ranges = out;
    }

    /// The ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    /// Whether `uid` is in the set.
    pub fn contains(&self, uid: u32) -> bool {
        self.ranges.iter().any(|&(a, b)| a <= uid && uid <= b)
    }
}

/// What a caller delivers with a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOptions {
    /// Internal date, seconds since the Unix epoch (UTC).
    pub internal_date: i64,
    /// Initial flags.
    pub flags: Flags,
    /// Initial keywords.
    pub keywords: Vec<String>,
}

/// A message's metadata, as FETCH returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// Its UID in the folder.
    pub uid: u32,
    /// Its MODSEQ: the folder's mod-sequence of its last change.
    pub modseq: u64,
    /// Internal date, seconds since the Unix epoch.
    pub internal_date: i64,
    /// Size of the body in bytes (RFC822.SIZE).
    pub size: u64,
    /// System flags.
    pub flags: Flags,
    /// Keywords, sorted.
    pub keywords: Vec<String>,
    /// The stored body it shares with its copies.
    pub body_id: u64,
}

/// A folder's state, as SELECT and STATUS report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// Full hierarchical name.
    pub name: String,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// UIDNEXT.
    pub uid_next: u32,
    /// HIGHESTMODSEQ.
    pub highest_modseq: u64,
    /// Messages in the folder.
    pub messages: u64,
    /// Messages without `\Seen`.
    pub unseen: u64,
    /// Total size of the messages.
    pub bytes: u64,
    /// Subscribed (LSUB / LIST (SUBSCRIBED)).
    pub subscribed: bool,
}

/// A mailbox's quotas and usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Its name.
    pub name: String,
    /// Byte quota, if any.
    pub quota_bytes: Option<u64>,
    /// Message-count quota, if any.
    pub quota_messages: Option<u64>,
    /// Bytes used by its messages.
    pub used_bytes: u64,
    /// Messages in all its folders.
    pub used_messages: u64,
}

/// How STORE changes flags and keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// Replace them (FLAGS).
    Set,
    /// Add them (+FLAGS).
    Add,
    /// Remove them (-FLAGS).
    Remove,
}

/// The outcome of a STORE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreResult {
    /// Messages whose flags changed, with their new MODSEQ.
    pub changed: Vec<(u32, u64)>,
    /// Messages left alone because they changed after UNCHANGEDSINCE
    /// (CONDSTORE's MODIFIED response).
    pub modified: Vec<u32>,
}

/// What changed in a folder since a MODSEQ (CONDSTORE/QRESYNC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Appended after the MODSEQ and still there.
    pub new: Vec<u32>,
    /// Older messages whose flags changed after it.
    pub changed: Vec<u32>,
    /// Expunged after it (QRESYNC's VANISHED).
    pub expunged: Vec<u32>,
    /// The folder's HIGHESTMODSEQ at the time.
    pub highest_modseq: u64,
}

/// One condition of a SEARCH. A query is the conjunction of its criteria.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criterion {
    /// The flag is set.
    Flag(Flags),
    /// The flag is not set.
    NotFlag(Flags),
    /// The keyword is set.
    Keyword(String),
    /// The keyword is not set.
    NotKeyword(String),
    /// Internal date at or after (seconds; SINCE).
    Since(i64),
    /// Internal date before (BEFORE).
    Before(i64),
    /// Size larger than (LARGER).
    Larger(u64),
    /// Size smaller than (SMALLER).
    Smaller(u64),
    /// UID in the set.
    Uid(UidSet),
}

/// A typed property value, in the style of ESE columns.
#[derive(Debug, Clone, PartialEq)]
pub enum PropValue {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// Seconds since the Unix epoch.
    Time(i64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Binary(Vec<u8>),
}

/// What a property bag belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropOwner {
    /// The folder.
    Folder,
    /// One message of the folder.
    Message(u32),
}
