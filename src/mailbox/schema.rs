//! The store's tables, its persistent settings, and name rules.

use super::codec::Decoder;
use super::error::{MailError, Result};
use crate::btree;
use crate::pager::PageRead;
use crate::txn::{Table, WriteTxn};
use std::path::PathBuf;

pub(crate) const META: &str = "mail.meta";
pub(crate) const MAILBOXES: &str = "mail.mailboxes";
pub(crate) const FOLDERS: &str = "mail.folders";
pub(crate) const MESSAGES: &str = "mail.messages";
pub(crate) const CHANGES: &str = "mail.changes";
pub(crate) const INDEX: &str = "mail.index";
pub(crate) const BODIES: &str = "mail.bodies";
pub(crate) const PROPS: &str = "mail.props";

const ALL: [&str; 8] = [META, MAILBOXES, FOLDERS, MESSAGES, CHANGES, INDEX, BODIES, PROPS];

/// Keys of the meta table.
pub(crate) const KEY_FORMAT: &[u8] = b"format";
pub(crate) const KEY_NEXT_ID: &[u8] = b"next_id";
pub(crate) const KEY_NEXT_UIDVALIDITY: &[u8] = b"next_uidvalidity";
pub(crate) const KEY_DELIMITER: &[u8] = b"delimiter";
pub(crate) const FORMAT: u32 = 1;

/// Longest mailbox name, in bytes.
pub const MAX_MAILBOX_NAME: usize = 255;
/// Longest full folder name, in bytes.
pub const MAX_FOLDER_NAME: usize = 512;
/// Longest keyword, in bytes.
pub const MAX_KEYWORD_LEN: usize = 64;
/// Most keywords on one message.
pub const MAX_KEYWORDS: usize = 64;
/// Longest property name, in bytes.
pub const MAX_PROP_NAME: usize = 255;
/// Largest property value, in bytes.
pub const MAX_PROP_VALUE: usize = 64 << 10;

/// Table handles (roots never move) and the settings every operation needs.
/// Public only so the [`super::MailView`] trait can name it; nothing of it is.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Schema {
    pub(crate) meta: Table,
    pub(crate) mailboxes: Table,
    pub(crate) folders: Table,
    pub(crate) messages: Table,
    pub(crate) changes: Table,
    pub(crate) index: Table,
    pub(crate) bodies: Table,
    pub(crate) props: Table,
    pub(crate) delimiter: char,
    pub(crate) max_body_bytes: u64,
    pub(crate) text: super::TextCompression,
    /// The database's, for bodies built ahead of their transaction.
    pub(crate) page_size: usize,
    pub(crate) file: PathBuf,
}

impl Schema {
    /// Creates the tables in a new database.
    pub fn create(tx: &mut WriteTxn<'_>, delimiter: char, first_uidvalidity: u32) -> Result<()> {
        for name in ALL {
            tx.create_table(name)?;
        }
        let meta = tx.open_table(META)?;
        tx.put(&meta, KEY_FORMAT, &FORMAT.to_le_bytes())?;
        tx.put(&meta, KEY_NEXT_ID, &1u64.to_le_bytes())?;
        tx.put(&meta, KEY_NEXT_UIDVALIDITY, &first_uidvalidity.max(1).to_le_bytes())?;
        tx.put(&meta, KEY_DELIMITER, delimiter.to_string().as_bytes())?;
        Ok(())
    }

    /// Opens the tables of an existing store, read through `pages` (a
    /// read transaction's snapshot, or a passive copy's).
    pub fn open<S: PageRead + ?Sized>(
        pages: &S,
        max_body_bytes: u64,
        text: super::TextCompression,
        file: PathBuf,
    ) -> Result<Schema> {
        let table = |name: &str| -> Result<Table> {
            crate::txn::lookup_table(pages, name).map_err(|e| match e {
                crate::pager::DbError::NoSuchTable { .. } => MailError::Corrupt {
                    file: file.clone(),
                    table: META,
                    key: name.to_string(),
                    reason: "not a mailbox store: the table is missing".into(),
                },
                e => e.into(),
            })
        };
        let meta = table(META)?;
        let corrupt = |key: &[u8], reason: String| MailError::Corrupt {
            file: file.clone(),
            table: META,
            key: String::from_utf8_lossy(key).into_owned(),
            reason,
        };
        let format =
            btree::get_bytes(pages, meta.root(), KEY_FORMAT)?.ok_or_else(|| corrupt(KEY_FORMAT, "missing".into()))?;
        let format = Decoder::new(&format).u32().map_err(|e| corrupt(KEY_FORMAT, e))?;
        if format != FORMAT {
            return Err(corrupt(
                KEY_FORMAT,
                format!("store format {format}, this build reads {FORMAT}"),
            ));
        }
        let delimiter = btree::get_bytes(pages, meta.root(), KEY_DELIMITER)?
            .ok_or_else(|| corrupt(KEY_DELIMITER, "missing".into()))?;
        let delimiter = std::str::from_utf8(&delimiter)
            .ok()
            .and_then(|s| {
                let mut chars = s.chars();
                chars.next().filter(|_| chars.next().is_none())
            })
            .ok_or_else(|| corrupt(KEY_DELIMITER, "not one character".into()))?;
        Ok(Schema {
            meta,
            mailboxes: table(MAILBOXES)?,
            folders: table(FOLDERS)?,
            messages: table(MESSAGES)?,
            changes: table(CHANGES)?,
            index: table(INDEX)?,
            bodies: table(BODIES)?,
            props: table(PROPS)?,
            delimiter,
            max_body_bytes,
            text,
            page_size: pages.page_size(),
            file,
        })
    }

    pub fn corrupt(&self, table: &'static str, key: &[u8], reason: String) -> MailError {
        MailError::Corrupt {
            file: self.file.clone(),
            table,
            key: super::error::hex(key),
            reason,
        }
    }

    /// Checks a full folder name and returns it canonical (INBOX in capitals).
    pub fn folder_name(&self, name: &str) -> Result<String> {
        check_text("folder", name, MAX_FOLDER_NAME)?;
        let d = self.delimiter;
        if name.split(d).any(str::is_empty) {
            return Err(MailError::invalid_name(
                "folder",
                name,
                format!("empty level (a leading, trailing or doubled {d:?})"),
            ));
        }
        if name.contains(['*', '%']) {
            return Err(MailError::invalid_name(
                "folder",
                name,
                "wildcards * and % are not allowed",
            ));
        }
        Ok(canonical_inbox(name, d))
    }
}

/// INBOX is case-insensitive, as is the INBOX level of its children.
fn canonical_inbox(name: &str, delimiter: char) -> String {
    let (first, rest) = match name.split_once(delimiter) {
        Some((f, r)) => (f, Some(r)),
        None => (name, None),
    };
    if first.eq_ignore_ascii_case("INBOX") {
        match rest {
            Some(r) => format!("INBOX{delimiter}{r}"),
            None => "INBOX".into(),
        }
    } else {
        name.to_string()
    }
}

/// Names are non-empty UTF-8 without control characters, up to `max` bytes.
pub(crate) fn check_text(what: &'static str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() || name.len() > max {
        return Err(MailError::invalid_name(
            what,
            name,
            format!("{} bytes, allowed 1 to {max}", name.len()),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(MailError::invalid_name(
            what,
            name,
            "control characters are not allowed",
        ));
    }
    Ok(())
}

/// A keyword is an IMAP atom that is not a system flag.
pub(crate) fn check_keyword(k: &str) -> Result<()> {
    if k.is_empty() || k.len() > MAX_KEYWORD_LEN {
        return Err(MailError::invalid_name(
            "keyword",
            k,
            format!("{} bytes, allowed 1 to {MAX_KEYWORD_LEN}", k.len()),
        ));
    }
    let bad = |c: u8| c <= b' ' || c >= 0x7f || b"(){%*\"\\]".contains(&c);
    if k.bytes().any(bad) {
        return Err(MailError::invalid_name("keyword", k, "not an IMAP atom"));
    }
    Ok(())
}
