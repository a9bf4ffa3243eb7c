//! The external sort behind a streamed `nudge import`.
//!
//! Rows parsed from a history file are buffered up to [`RUN_ROWS`], sorted by customer key (a stable
//! sort, so each customer's rows stay in file order) and written as a run to a temporary directory. Once
//! the file is read, the runs are merged back one customer at a time. The import thus holds one run while
//! it reads and one chunk of customers while it writes, never the whole file, and it writes the store in
//! key order: the transactions' primary key starts with the customer, and each customer's state is loaded
//! and written once.
//!
//! A run is a sequence of records, each a `u32` length followed by the fields in a fixed binary layout
//! (see [`encode`]). The files live only as long as the import; the directory is removed when dropped.

use crate::import::{HistoryFormat, HistoryRow};
use nudge_model::{Currency, CustomerId};
use rust_decimal::Decimal;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use time::{OffsetDateTime, UtcOffset};

/// Rows held in memory before they are sorted and written as one run.
pub const RUN_ROWS: usize = 250_000;

/// Bytes of encoded rows held in memory before they are written as one run, whatever their number.
const RUN_BYTES: usize = 64 << 20;

/// Sorted runs being written while a file is read.
pub struct Runs {
    dir: tempfile::TempDir,
    /// The rows of the current run, encoded back to back, each with its length in front.
    arena: Vec<u8>,
    /// Where each row of the current run starts in `arena`, in file order.
    starts: Vec<u32>,
    runs: Vec<PathBuf>,
}

impl Runs {
    /// Runs in a new temporary directory.
    pub fn new() -> io::Result<Self> {
        Ok(Runs {
            dir: tempfile::Builder::new().prefix("nudge-import-").tempdir()?,
            arena: Vec::new(),
            starts: Vec::new(),
            runs: Vec::new(),
        })
    }

    /// Adds a row; writes a run when the buffer is full.
    pub fn push(&mut self, row: HistoryRow) -> io::Result<()> {
        if self.starts.capacity() == 0 {
            self.starts.reserve_exact(RUN_ROWS);
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(&[0; 4]);
        encode(&row, &mut self.arena);
        let len = (self.arena.len() - start - 4) as u32;
        self.arena[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.starts.push(start as u32);
        if self.starts.len() >= RUN_ROWS || self.arena.len() >= RUN_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.starts.is_empty() {
            return Ok(());
        }
        let arena = &self.arena;
        let record = |start: u32| {
            let start = start as usize;
            let len = u32::from_le_bytes(arena[start..start + 4].try_into().expect("4 bytes")) as usize;
            &arena[start..start + 4 + len]
        };
        // By customer key (it comes first, after its length), then by position: rows of one customer
        // keep their file order.
        let key = |start: u32| {
            let r = &record(start)[4..];
            let len = u32::from_le_bytes(r[..4].try_into().expect("4 bytes")) as usize;
            &r[4..4 + len]
        };
        self.starts.sort_unstable_by(|&a, &b| key(a).cmp(key(b)).then(a.cmp(&b)));
        let path = self.dir.path().join(format!("run-{}", self.runs.len()));
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        for &start in &self.starts {
            w.write_all(record(start))?;
        }
        w.flush()?;
        self.runs.push(path);
        self.starts.clear();
        self.arena.clear();
        Ok(())
    }

    /// Writes what is left and starts merging the runs.
    pub fn into_merge(mut self) -> io::Result<Merge> {
        self.flush()?;
        self.arena = Vec::new();
        self.starts = Vec::new();
        let mut merge = Merge {
            _dir: self.dir,
            readers: Vec::with_capacity(self.runs.len()),
            pending: Vec::with_capacity(self.runs.len()),
            heap: BinaryHeap::with_capacity(self.runs.len()),
            scratch: Vec::with_capacity(256),
        };
        for (i, path) in self.runs.iter().enumerate() {
            // Many runs share the memory: a smaller buffer each when there are many.
            let capacity = ((8 << 20) / self.runs.len()).clamp(64 << 10, 1 << 20);
            merge.readers.push(BufReader::with_capacity(capacity, File::open(path)?));
            merge.pending.push(None);
            merge.advance(i)?;
        }
        Ok(merge)
    }
}

/// The runs merged back in customer key order.
pub struct Merge {
    _dir: tempfile::TempDir,
    readers: Vec<BufReader<File>>,
    /// The next row of each run, taken when its key is popped from the heap.
    pending: Vec<Option<HistoryRow>>,
    /// The next key of each run with rows left, with the run's index: ties go to the earlier run, which
    /// holds the earlier rows of the file.
    heap: BinaryHeap<Reverse<(String, usize)>>,
    scratch: Vec<u8>,
}

impl Merge {
    /// Reads the next row of run `i` into `pending` and the heap.
    fn advance(&mut self, i: usize) -> io::Result<()> {
        let mut len = [0u8; 4];
        match self.readers[i].read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        self.scratch.resize(u32::from_le_bytes(len) as usize, 0);
        self.readers[i].read_exact(&mut self.scratch)?;
        let (key, row) = decode(&self.scratch)?;
        self.pending[i] = Some(row);
        self.heap.push(Reverse((key, i)));
        Ok(())
    }

    /// The rows of the next customer in key order, in file order.
    pub fn next_customer(&mut self) -> io::Result<Option<Vec<HistoryRow>>> {
        let Some(Reverse((key, i))) = self.heap.pop() else { return Ok(None) };
        let mut rows = vec![self.pending[i].take().expect("a popped run has a pending row")];
        self.advance(i)?;
        while self.heap.peek().is_some_and(|Reverse((k, _))| *k == key) {
            let Some(Reverse((_, i))) = self.heap.pop() else { break };
            rows.push(self.pending[i].take().expect("a popped run has a pending row"));
            self.advance(i)?;
        }
        Ok(Some(rows))
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_bytes(out, s.as_bytes());
        }
        None => out.push(0),
    }
}

/// One row: customer key, line, order id, day, amount, currency, source, time, email, order name.
fn encode(row: &HistoryRow, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    write!(out, "{}", row.customer).expect("writing to memory");
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&row.line.to_le_bytes());
    put_bytes(out, row.order_id.as_bytes());
    out.extend_from_slice(&row.day.to_le_bytes());
    out.extend_from_slice(&row.amount.serialize());
    out.extend_from_slice(row.currency.as_str().as_bytes());
    out.push(match row.source {
        s if s == HistoryFormat::Cdnow.name() => 1,
        s if s == HistoryFormat::ShopifyOrders.name() => 2,
        _ => 0,
    });
    match row.at {
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.unix_timestamp_nanos().to_le_bytes());
            out.extend_from_slice(&t.offset().whole_seconds().to_le_bytes());
        }
        None => out.push(0),
    }
    put_opt(out, row.email.as_deref());
    put_opt(out, row.order_name.as_deref());
}

struct Cursor<'a>(&'a [u8]);

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "a temporary run file of the import is corrupt")
}

impl<'a> Cursor<'a> {
    fn take<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or_else(corrupt)?;
        self.0 = rest;
        Ok(*head)
    }

    fn str(&mut self) -> io::Result<&'a str> {
        let len = u32::from_le_bytes(self.take()?) as usize;
        if self.0.len() < len {
            return Err(corrupt());
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(s).map_err(|_| corrupt())
    }

    fn opt(&mut self) -> io::Result<Option<String>> {
        Ok(match self.take::<1>()?[0] {
            0 => None,
            _ => Some(self.str()?.to_string()),
        })
    }
}

fn decode(b: &[u8]) -> io::Result<(String, HistoryRow)> {
    let mut c = Cursor(b);
    let key = c.str()?.to_string();
    let customer: CustomerId = key.parse().map_err(|_| corrupt())?;
    let line = u64::from_le_bytes(c.take()?);
    let order_id = c.str()?.to_string();
    let day = i32::from_le_bytes(c.take()?);
    let amount = Decimal::deserialize(c.take()?);
    let currency = Currency::parse(std::str::from_utf8(&c.take::<3>()?).map_err(|_| corrupt())?)
        .map_err(|_| corrupt())?;
    let source = match c.take::<1>()?[0] {
        1 => HistoryFormat::Cdnow.name(),
        2 => HistoryFormat::ShopifyOrders.name(),
        _ => HistoryFormat::Csv.name(),
    };
    let at = match c.take::<1>()?[0] {
        0 => None,
        _ => {
            let nanos = i128::from_le_bytes(c.take()?);
            let offset =
                UtcOffset::from_whole_seconds(i32::from_le_bytes(c.take()?)).map_err(|_| corrupt())?;
            Some(OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| corrupt())?.to_offset(offset))
        }
    };
    let email = c.opt()?;
    let order_name = c.opt()?;
    Ok((key, HistoryRow { line, customer, email, order_id, order_name, day, at, amount, currency, source }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn row(customer: &str, line: u64) -> HistoryRow {
        HistoryRow {
            line,
            customer: customer.parse().unwrap(),
            email: line.is_multiple_of(2).then(|| format!("c{line}@example.com")),
            order_id: if line.is_multiple_of(3) { String::new() } else { format!("o{line}") },
            order_name: (line % 2 == 1).then(|| format!("#{line}")),
            day: line as i32,
            at: line.is_multiple_of(2).then(|| {
                time::macros::datetime!(2024-01-15 10:22:33.5 -05:00) + time::Duration::days(line as i64)
            }),
            amount: Decimal::from_str("12.50").unwrap() + Decimal::from(line),
            currency: Currency::parse(if line.is_multiple_of(2) { "EUR" } else { "USD" }).unwrap(),
            source: if line.is_multiple_of(2) { "shopify-orders" } else { "cdnow" },
        }
    }

    #[test]
    fn rows_come_back_whole_grouped_by_customer_in_file_order() {
        let customers = ["import:b", "import:a", "shopify:9", "import:a", "import:c", "import:b"];
        let mut runs = Runs::new().unwrap();
        let mut all = Vec::new();
        // More rows than one run holds would be slow in a unit test; push in three flushed runs instead.
        for (n, chunk) in (1..=30u64).collect::<Vec<_>>().chunks(10).enumerate() {
            for &line in chunk {
                let r = row(customers[(line as usize + n) % customers.len()], line);
                all.push(r.clone());
                runs.push(r).unwrap();
            }
            runs.flush().unwrap();
        }
        let mut merge = runs.into_merge().unwrap();
        let mut seen = Vec::new();
        while let Some(group) = merge.next_customer().unwrap() {
            let c = group[0].customer.clone();
            assert!(group.iter().all(|r| r.customer == c));
            assert!(group.windows(2).all(|w| w[0].line < w[1].line), "file order within a customer");
            seen.push(c.to_string());
            let expected: Vec<&HistoryRow> = all.iter().filter(|r| r.customer == c).collect();
            assert_eq!(group.iter().collect::<Vec<_>>(), expected);
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen, sorted, "each customer once, in key order");
    }
}
