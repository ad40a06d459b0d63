//! Create a database, store messages in tables from several writers, read
//! them on a snapshot, crash-free reopen, and verify every page.
//!
//! cargo run --example db_quickstart

use mailvault::txn::{Database, DbOptions, Durability};
use mailvault::vfs::OsVfs;
use std::ops::Bound;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = Arc::new(Database::create(Arc::new(OsVfs), dir.path(), DbOptions::default())?);
    let mut tx = db.begin_write();
    tx.create_table("messages")?;
    tx.commit()?;

    // Four writers, one message per transaction. Two use `begin_write`: the
    // writer lock is released before each fsync, so their commits share
    // group-commit batches. Two use `write`: whoever holds the lock runs the
    // queued transactions back to back (each still its own commit).
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || -> mailvault::pager::Result<()> {
                for i in 0..100 {
                    let key = format!("inbox/{w}/{i:04}");
                    let body = format!("From: writer{w}\r\nSubject: message {i}\r\n\r\nHello.\r\n");
                    if w % 2 == 0 {
                        let mut tx = db.begin_write();
                        let t = tx.open_table("messages")?;
                        tx.put(&t, key.as_bytes(), body.as_bytes())?;
                        tx.commit()?;
                    } else {
                        db.write(Durability::Durable, move |tx| {
                            let t = tx.open_table("messages")?;
                            tx.put(&t, key.as_bytes(), body.as_bytes())
                        })?;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread")?;
    }

    let rx = db.begin_read();
    let t = rx.open_table("messages")?;
    let inbox_2 = rx
        .range(&t, Bound::Included(&b"inbox/2/"[..]), Bound::Excluded(&b"inbox/3"[..]))?
        .count();
    println!("writer 2 delivered {inbox_2} messages");
    let report = rx.verify()?;
    println!(
        "verified {} pages: {} problems, tables {:?}",
        report.pages_checked,
        report.problems.len(),
        report.tables
    );
    drop(rx);
    Arc::try_unwrap(db).map_err(|_| "database still shared")?.close()?;

    let db = Database::open(Arc::new(OsVfs), dir.path(), DbOptions::default())?;
    println!("reopened: recovery replayed {} records", db.recovery_stats().records);
    db.close()?;
    Ok(())
}
