//! The mail workloads: realistic-mix ingest with 16 writers (2), the size
//! it leaves on disk (7), and a 10,000-message folder listed and fetched (5).

use super::timing::{all_done, for_seconds, micros_since, percentile};
use super::{Metrics, Params};
use crate::data::{Delivery, IngestStream, MessageRow, PlainStream, digest, flags_of, mailbox_name};
use crate::engines::{EngineKind, MailStore, row_of};
use crate::error::{BenchResult, check_failed};
use crate::sysinfo::disk_usage;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Writers of the ingest workload, each delivering to its own mailbox.
pub const INGEST_WRITERS: usize = 16;
/// Messages per transaction when filling the folders to list.
const FOLDER_LOAD_BATCH: usize = 500;

/// What a writer's messages are, to check them after the run without
/// keeping them: the row and a digest of the body, per UID.
fn expected_stream(seed: u64, writer: usize, count: u64) -> Vec<(MessageRow, u64)> {
    let mut stream = IngestStream::new(seed, writer);
    (0..count)
        .map(|_| {
            let d = stream.next_delivery();
            (row_of(&d), digest(&d.body))
        })
        .collect()
}

/// Checks a folder holds exactly the expected messages, in UID order,
/// reading back every body.
fn check_folder(store: &dyn MailStore, mailbox: &str, folder: &str, expected: &[(MessageRow, u64)]) -> BenchResult<()> {
    let rows = store.list(mailbox, folder)?;
    if rows.len() != expected.len() {
        return Err(check_failed(format!(
            "{mailbox}/{folder} lists {} messages, {} were delivered",
            rows.len(),
            expected.len()
        )));
    }
    for (row, (want, body_digest)) in rows.iter().zip(expected) {
        if row != want {
            return Err(check_failed(format!(
                "{mailbox}/{folder}: listed {row:?}, delivered {want:?}"
            )));
        }
        match store.body(mailbox, folder, row.uid)? {
            Some(body) if digest(&body) == *body_digest => {}
            Some(_) => {
                return Err(check_failed(format!(
                    "{mailbox}/{folder} UID {}: body differs",
                    row.uid
                )));
            }
            None => {
                return Err(check_failed(format!(
                    "{mailbox}/{folder} UID {}: body missing",
                    row.uid
                )));
            }
        }
    }
    Ok(())
}

/// Workload 2: 16 writers, each delivering its share of `ingest_messages`
/// messages of the realistic mix, one durable transaction per message; the
/// clock stops when the last delivery is durable. Then workload 7: the
/// store is checked, closed and measured on disk.
pub fn ingest(engine: EngineKind, dir: &Path, params: &Params) -> BenchResult<Metrics> {
    let per_writer = params.ingest_messages / INGEST_WRITERS as u64;
    let generate_start = Instant::now();
    let expected: Vec<Vec<(MessageRow, u64)>> = (0..INGEST_WRITERS)
        .map(|w| expected_stream(params.seed, w, per_writer))
        .collect();
    let generate_secs = generate_start.elapsed().as_secs_f64();
    let input_bytes: u64 = expected.iter().flatten().map(|(row, _)| row.size).sum();
    let store = engine.open_mail(dir, input_bytes)?;
    for writer in 0..INGEST_WRITERS {
        store.create_folder(&mailbox_name(writer), "INBOX")?;
    }
    let (latencies, elapsed) = all_done(INGEST_WRITERS, |writer| {
        let mut stream = IngestStream::new(params.seed, writer);
        let mut latencies = Vec::with_capacity(per_writer as usize);
        for _ in 0..per_writer {
            let delivery = stream.next_delivery();
            let start = Instant::now();
            store.deliver(delivery)?;
            latencies.push(micros_since(start));
        }
        Ok(latencies)
    })?;
    // The raw floor keeps no rows to check.
    if engine != EngineKind::Raw {
        for (writer, rows) in expected.iter().enumerate() {
            check_folder(store.as_ref(), &mailbox_name(writer), "INBOX", rows)?;
        }
    }
    store.close()?;
    let usage = disk_usage(dir)?;
    let messages = per_writer * INGEST_WRITERS as u64;
    let mut latencies: Vec<f64> = latencies.into_iter().flatten().collect();
    let mut metrics = Metrics::new();
    metrics.insert("messages".into(), messages as f64);
    metrics.insert("input_bytes".into(), input_bytes as f64);
    metrics.insert("messages_per_sec".into(), messages as f64 / elapsed);
    metrics.insert("mb_per_sec".into(), input_bytes as f64 / 1e6 / elapsed);
    metrics.insert("p50_ms".into(), percentile(&mut latencies, 50.0) / 1e3);
    metrics.insert("p99_ms".into(), percentile(&mut latencies, 99.0) / 1e3);
    metrics.insert("disk_allocated_bytes".into(), usage.allocated as f64);
    metrics.insert("disk_apparent_bytes".into(), usage.apparent as f64);
    metrics.insert("generator_mb_per_sec".into(), input_bytes as f64 / 1e6 / generate_secs);
    Ok(metrics)
}

/// Workload 5: a folder of `folder_messages` plain messages, interleaved
/// with as many in a second folder (one table holds both, as in a real
/// store). Half the time lists the folder's metadata over and over (median
/// time per listing), the other half fetches bodies by random UID.
pub fn folder(engine: EngineKind, dir: &Path, params: &Params) -> BenchResult<Metrics> {
    const MAILBOX: &str = "user00";
    let count = params.folder_messages;
    let store = engine.open_mail(dir, 0)?;
    store.create_folder(MAILBOX, "INBOX")?;
    store.create_folder(MAILBOX, "Archive")?;
    let mut bodies = PlainStream::new(params.seed);
    let mut expected = Vec::with_capacity(count as usize);
    let mut batch = Vec::with_capacity(FOLDER_LOAD_BATCH);
    for uid in 1..=count {
        for folder in ["INBOX", "Archive"] {
            let (body, internal_date) = bodies.next_body();
            let delivery = Delivery {
                mailbox: MAILBOX.into(),
                folder: folder.into(),
                uid,
                internal_date,
                flags: flags_of(uid),
                body,
            };
            if folder == "INBOX" {
                expected.push((row_of(&delivery), digest(&delivery.body)));
            }
            batch.push(delivery);
        }
        if batch.len() >= FOLDER_LOAD_BATCH || uid == count {
            store.deliver_batch(std::mem::take(&mut batch))?;
        }
    }
    check_folder(store.as_ref(), MAILBOX, "INBOX", &expected)?;
    let half = params.seconds / 2.0;
    let (listings, _) = for_seconds(1, half, |_, stop| {
        let mut times = Vec::new();
        // At least five listings, however long each takes.
        while times.len() < 5 || !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let rows = store.list(MAILBOX, "INBOX")?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            if rows.len() != count as usize {
                return Err(check_failed(format!("a listing of {} rows, not {count}", rows.len())));
            }
        }
        Ok(times)
    })?;
    let (fetches, fetch_secs) = for_seconds(1, half, |_, stop| {
        let mut state = params.seed;
        let (mut fetched, mut bytes) = (0u64, 0u64);
        while !stop.load(Ordering::Relaxed) {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let uid = (state >> 33) as u32 % count + 1;
            let body = store
                .body(MAILBOX, "INBOX", uid)?
                .ok_or_else(|| check_failed(format!("UID {uid}: body missing")))?;
            if digest(&body) != expected[uid as usize - 1].1 {
                return Err(check_failed(format!("UID {uid}: body differs")));
            }
            fetched += 1;
            bytes += body.len() as u64;
        }
        Ok((fetched, bytes))
    })?;
    store.close()?;
    let mut times: Vec<f64> = listings.into_iter().flatten().collect();
    let (fetched, bytes) = fetches.first().copied().unwrap_or_default();
    let mut metrics = Metrics::new();
    metrics.insert("list_ms".into(), percentile(&mut times, 50.0));
    metrics.insert("listings".into(), times.len() as f64);
    metrics.insert("bodies_per_sec".into(), fetched as f64 / fetch_secs);
    metrics.insert("body_mb_per_sec".into(), bytes as f64 / 1e6 / fetch_secs);
    Ok(metrics)
}
