//! `check` of a mailbox store, after the database checks: every folder
//! counter, change-log and index entry, and body reference count, then every
//! acknowledged message byte for byte.

use crate::error::{Context, Result};
use mailvault::mailbox::{MailView, Store, StoreOptions, StoreReport};
use mailvault::vfs::OsVfs;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

/// Verifies the store in `dir`; adds problems; returns the report and the
/// number of acknowledged lines checked.
pub fn run(dir: &Path, acked: Option<&Path>, problems: &mut Vec<String>) -> Result<(Option<StoreReport>, u64)> {
    let store = match Store::open(Arc::new(OsVfs), dir, StoreOptions::default()) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("opening the mailbox store failed: {e}"));
            return Ok((None, 0));
        }
    };
    let report = match store.verify() {
        Ok(r) => {
            problems.extend(r.problems.iter().map(|p| format!("store: {p}")));
            Some(r)
        }
        Err(e) => {
            problems.push(format!("store verification failed: {e}"));
            None
        }
    };
    let checked = match acked {
        Some(path) => check_acked(&store, path, problems)?,
        None => 0,
    };
    if let Err(e) = store.close() {
        problems.push(format!("closing the store failed: {e}"));
    }
    Ok((report, checked))
}

/// Counts bytes and their crc32c as they stream past.
struct Crc {
    len: u64,
    crc: u32,
}

impl Write for Crc {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.len += buf.len() as u64;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn check_acked(store: &Store, path: &Path, problems: &mut Vec<String>) -> Result<u64> {
    let file = std::fs::File::open(path).context(|| format!("opening {}", path.display()))?;
    let rx = store.read();
    let mut lines = 0;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.context(|| format!("reading {}", path.display()))?;
        lines += 1;
        let at = format!("{} line {}", path.display(), i + 1);
        let fields: Vec<&str> = line.split('\t').collect();
        let parsed = match fields.as_slice() {
            ["mail", mailbox, folder, uid, validity, len, crc] => (|| {
                Some((
                    *mailbox,
                    *folder,
                    uid.parse::<u32>().ok()?,
                    validity.parse::<u32>().ok()?,
                    len.parse::<u64>().ok()?,
                    u32::from_str_radix(crc, 16).ok()?,
                ))
            })(),
            _ => None,
        };
        let Some((mailbox, folder, uid, validity, len, crc)) = parsed else {
            problems.push(format!(
                "{at}: malformed (expected mail, mailbox, folder, uid, uidvalidity, length, crc32c)"
            ));
            continue;
        };
        match rx.folder_info(mailbox, folder) {
            Ok(f) if f.uid_validity != validity => {
                problems.push(format!(
                    "{at}: {mailbox}/{folder} has UIDVALIDITY {}, acknowledged {validity}",
                    f.uid_validity
                ));
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                continue;
            }
        }
        let mut sum = Crc { len: 0, crc: 0 };
        match rx.read_body_range(mailbox, folder, uid, 0, u64::MAX, &mut sum) {
            Ok(_) if sum.len != len || sum.crc != crc => problems.push(format!(
                "{at}: {mailbox}/{folder} UID {uid} holds {} bytes with crc32c {:08x}, acknowledged {len} bytes {crc:08x}",
                sum.len, sum.crc
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("{at}: {mailbox}/{folder} UID {uid}: {e}")),
        }
    }
    Ok(lines)
}
