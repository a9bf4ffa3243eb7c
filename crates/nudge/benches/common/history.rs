//! The order history the import and migration benchmarks write.

use std::io::Write;
use std::path::Path;

/// The history file of the import and migration benchmarks: `rows` orders (`customer_id,date,amount`, and
/// `order_id` when `order_ids`), two years of days in file order, customers drawn uniformly from
/// `customers`, amounts with cents; deterministic (a fixed xorshift seed), written as it is generated.
pub fn write_history_file(path: &Path, rows: u64, customers: u64, order_ids: bool) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    w.write_all(if order_ids {
        b"customer_id,date,amount,order_id\n"
    } else {
        b"customer_id,date,amount\n"
    })?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let start = time::macros::date!(2023 - 01 - 01);
    for i in 0..rows {
        let date = start + time::Duration::days((i * 730 / rows.max(1)) as i64);
        let customer = next() % customers.max(1);
        let cents = 100 + next() % 49_900;
        write!(w, "{customer},{date},{}.{:02}", cents / 100, cents % 100)?;
        if order_ids {
            write!(w, ",o{i}")?;
        }
        w.write_all(b"\n")?;
    }
    w.flush()
}
