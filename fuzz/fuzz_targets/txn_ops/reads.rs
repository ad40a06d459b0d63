//! Reading the whole database back, and the checks of what is read.

use super::*;

pub(super) fn value_bytes(
    v: Value,
    read_long: impl Fn(&mailvault::btree::LongValue, &mut [u8]) -> Result<usize, DbError>,
) -> Result<Vec<u8>, DbError> {
    match v {
        Value::Inline(b) => Ok(b),
        Value::Long(long) => {
            assert!(
                long.len() <= MAX_VALUE as u64,
                "a long value of {} bytes was never stored",
                long.len()
            );
            let mut buf = vec![0u8; long.len() as usize];
            let n = read_long(&long, &mut buf)?;
            assert_eq!(n, buf.len(), "read_long read {n} of {} bytes", buf.len());
            Ok(buf)
        }
    }
}

pub(super) fn scan<I>(
    mut range: I,
    dir: Dir,
    read: impl Fn(Value) -> Result<Vec<u8>, DbError>,
    limit: usize,
) -> Result<Scan, DbError>
where
    I: DoubleEndedIterator<Item = Result<(Vec<u8>, Value), DbError>>,
{
    let mut out = Scan::default();
    let mut turn = 0usize;
    loop {
        let back = match dir {
            Dir::Forward => false,
            Dir::Backward => true,
            Dir::Both => turn % 2 == 1,
        };
        turn += 1;
        let item = if back { range.next_back() } else { range.next() };
        let Some(item) = item else {
            return Ok(out);
        };
        let (k, v) = item?;
        let v = read(v)?;
        if back {
            out.back.push((k, v));
        } else {
            out.front.push((k, v));
        }
        assert!(
            out.front.len() + out.back.len() <= limit,
            "a scan yields more entries than stored"
        );
    }
}

/// Every table and entry of the database's visible state.
pub(super) fn read_all(db: &Database) -> Result<Model, DbError> {
    let rx = db.begin_read();
    let mut out = Model::new();
    for name in rx.list_tables()? {
        let t = rx.open_table(&name)?;
        let mut rows = Rows::new();
        for entry in rx.range(&t, Bound::Unbounded, Bound::Unbounded)? {
            let (k, v) = entry?;
            let v = value_bytes(v, |l, buf| rx.read_long(l, 0, buf))?;
            rows.insert(k, v);
        }
        out.insert(name, rows);
    }
    Ok(out)
}

pub(super) fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    b.as_ref().map(Vec::as_slice)
}

pub(super) fn describe(m: &Model) -> String {
    m.iter()
        .map(|(t, rows)| format!("{t}: {} rows", rows.len()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Verifies the visible state; `h`: the one state it must be, if known.
pub(super) fn check_verify(db: &Database, h: Option<&Model>) -> Result<(), DbError> {
    let rx = db.begin_read();
    let report = rx.verify()?;
    assert!(
        report.is_ok(),
        "verify: {:?}",
        &report.problems[..report.problems.len().min(8)]
    );
    if let Some(model) = h {
        let tables: Vec<(String, u64)> = model.iter().map(|(t, r)| (t.clone(), r.len() as u64)).collect();
        assert_eq!(report.tables, tables, "verify counts other tables or entries");
    }
    Ok(())
}

// ---------------------------------------------------------------- tracing
