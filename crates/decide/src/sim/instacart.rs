//! The Instacart file layout for next-basket data, written and read without touching files (the caller
//! opens them):
//!
//! - `orders.csv`: `order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order`,
//!   one row per order; `eval_set` is `prior`, `train` or `test`; `order_number` counts a user's orders from
//!   1; `days_since_prior_order` is empty for the first order (the public files cap it at 30).
//! - `order_products__prior.csv` and `order_products__train.csv`: `order_id,product_id,add_to_cart_order,
//!   reordered`, one row per product in an order.
//!
//! [`write`] puts each customer's last order in `train` and the others in `prior`. [`load`] reads the three
//! files (columns found by their header names, in any order) into a [`World`]: customers `u{user_id}` and
//! products `p{product_id}` sorted by number, every product available and untagged. The files carry no
//! dates, so each user's orders are placed on a time line from their gaps: the last order on the day before
//! [`super::baskets::NOW`], each earlier one `days_since_prior_order` days before the next, at its hour of
//! the day. Orders without products (`test` orders) are left out. Only differences of time within a customer
//! matter to the recommendation model, so a world written and read back evaluates the same when its times
//! are whole hours.

use super::baskets::{NOW, World};
use crate::DecideError;
use crate::recs::{Basket, Product};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::BufRead;

const DAY: i64 = 86_400;

/// The three files' contents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Files {
    pub orders: String,
    pub prior: String,
    pub train: String,
}

/// Writes a world (orders grouped by customer in time order) in the Instacart layout. User ids number the
/// customers in order of appearance from 0; product ids are positions in `world.products`, products the
/// catalogue does not list get the next numbers. Times are rounded down to the hour.
pub fn write(world: &World) -> Files {
    let mut product_id: HashMap<&str, usize> =
        world.products.iter().enumerate().map(|(i, p)| (p.id.as_str(), i)).collect();
    let mut f = Files {
        orders: "order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n"
            .into(),
        prior: "order_id,product_id,add_to_cart_order,reordered\n".into(),
        train: "order_id,product_id,add_to_cart_order,reordered\n".into(),
    };
    let mut user = 0usize;
    let mut i = 0;
    while i < world.orders.len() {
        let mut j = i;
        while j < world.orders.len() && world.orders[j].customer == world.orders[i].customer {
            j += 1;
        }
        let mut bought: std::collections::HashSet<usize> = std::collections::HashSet::new();
        let mut prev_day = None;
        for (n, o) in world.orders[i..j].iter().enumerate() {
            let order_id = i + n + 1;
            let day = o.at.div_euclid(DAY);
            let hour = o.at.rem_euclid(DAY) / 3_600;
            let set = if i + n + 1 == j { "train" } else { "prior" };
            let gap = prev_day.map(|p: i64| format!("{}.0", day - p)).unwrap_or_default();
            prev_day = Some(day);
            let _ =
                writeln!(f.orders, "{order_id},{user},{set},{},{},{hour},{gap}", n + 1, day.rem_euclid(7));
            let out = if set == "train" { &mut f.train } else { &mut f.prior };
            for (k, p) in o.products.iter().enumerate() {
                let next = product_id.len();
                let pid = *product_id.entry(p.as_str()).or_insert(next);
                let reordered = u8::from(!bought.insert(pid));
                let _ = writeln!(out, "{order_id},{pid},{},{reordered}", k + 1);
            }
        }
        user += 1;
        i = j;
    }
    f
}

/// Header positions of the named columns, or an error naming the file and the missing column.
fn columns(file: &str, header: &str, want: &[&str]) -> Result<Vec<usize>, DecideError> {
    let names: Vec<&str> = header.trim_end_matches(['\r', '\n']).split(',').map(str::trim).collect();
    want.iter()
        .map(|w| {
            names.iter().position(|n| n == w).ok_or_else(|| {
                DecideError::Input(format!("{file}: no column {w:?} in the header {:?}", names.join(",")))
            })
        })
        .collect()
}

fn lines(file: &str, r: impl BufRead) -> impl Iterator<Item = Result<(usize, String), DecideError>> {
    let file = file.to_string();
    r.lines().enumerate().map(move |(n, l)| {
        l.map(|l| (n + 1, l)).map_err(|e| DecideError::Input(format!("{file}: line {}: {e}", n + 1)))
    })
}

fn field<'a>(
    file: &str,
    line: usize,
    cells: &[&'a str],
    at: usize,
    name: &str,
) -> Result<&'a str, DecideError> {
    cells
        .get(at)
        .copied()
        .ok_or_else(|| DecideError::Input(format!("{file}: line {line}: no {name} (too few columns)")))
}

fn number<T: std::str::FromStr>(file: &str, line: usize, s: &str, name: &str) -> Result<T, DecideError> {
    s.trim()
        .parse()
        .map_err(|_| DecideError::Input(format!("{file}: line {line}: {name} {s:?} is not a number")))
}

/// Reads the products of one order-products file into `into` (order id → product ids).
fn read_products(file: &str, r: impl BufRead, into: &mut HashMap<u64, Vec<u64>>) -> Result<(), DecideError> {
    let mut it = lines(file, r);
    let header = match it.next() {
        Some(h) => h?.1,
        None => return Err(DecideError::Input(format!("{file}: empty (no header)"))),
    };
    let c = columns(file, &header, &["order_id", "product_id"])?;
    for l in it {
        let (n, l) = l?;
        if l.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = l.trim_end_matches('\r').split(',').collect();
        let order: u64 = number(file, n, field(file, n, &cells, c[0], "order_id")?, "order_id")?;
        let product: u64 = number(file, n, field(file, n, &cells, c[1], "product_id")?, "product_id")?;
        into.entry(order).or_default().push(product);
    }
    Ok(())
}

/// Reads the Instacart layout (see the module documentation). `train` may be absent (then only the prior
/// orders are read).
pub fn load(
    orders: impl BufRead,
    prior: impl BufRead,
    train: Option<impl BufRead>,
) -> Result<World, DecideError> {
    let mut products: HashMap<u64, Vec<u64>> = HashMap::new();
    read_products("order_products__prior.csv", prior, &mut products)?;
    if let Some(t) = train {
        read_products("order_products__train.csv", t, &mut products)?;
    }
    const F: &str = "orders.csv";
    let mut it = lines(F, orders);
    let header = match it.next() {
        Some(h) => h?.1,
        None => return Err(DecideError::Input(format!("{F}: empty (no header)"))),
    };
    let c = columns(
        F,
        &header,
        &["order_id", "user_id", "order_number", "order_hour_of_day", "days_since_prior_order"],
    )?;
    // (user, order_number, order_id, hour, days since prior)
    let mut rows: Vec<(u64, u32, u64, i64, f64)> = Vec::new();
    for l in it {
        let (n, l) = l?;
        if l.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = l.trim_end_matches('\r').split(',').collect();
        let order: u64 = number(F, n, field(F, n, &cells, c[0], "order_id")?, "order_id")?;
        let user: u64 = number(F, n, field(F, n, &cells, c[1], "user_id")?, "user_id")?;
        let number_in: u32 = number(F, n, field(F, n, &cells, c[2], "order_number")?, "order_number")?;
        let hour: i64 = number(F, n, field(F, n, &cells, c[3], "order_hour_of_day")?, "order_hour_of_day")?;
        if !(0..24).contains(&hour) {
            return Err(DecideError::Input(format!("{F}: line {n}: order_hour_of_day {hour} is not 0–23")));
        }
        let gap = field(F, n, &cells, c[4], "days_since_prior_order")?;
        let gap: f64 = if gap.trim().is_empty() { 0.0 } else { number(F, n, gap, "days_since_prior_order")? };
        if !(gap.is_finite() && gap >= 0.0) {
            return Err(DecideError::Input(format!(
                "{F}: line {n}: days_since_prior_order {gap} is not a number of days"
            )));
        }
        rows.push((user, number_in, order, hour, gap));
    }
    rows.sort_by_key(|r| (r.0, r.1));
    let mut out = Vec::new();
    let mut seen_products: Vec<u64> = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let mut j = i;
        while j < rows.len() && rows[j].0 == rows[i].0 {
            j += 1;
        }
        // Days from the user's first order; the last order lands on the day before NOW.
        let mut day = 0.0;
        let days: Vec<f64> = rows[i..j]
            .iter()
            .enumerate()
            .map(|(k, r)| {
                if k > 0 {
                    day += r.4;
                }
                day
            })
            .collect();
        let last = days.last().copied().unwrap_or(0.0);
        for (r, d) in rows[i..j].iter().zip(&days) {
            let Some(items) = products.get(&r.2) else { continue };
            let at = NOW - ((last - d + 1.0) * DAY as f64).round() as i64 + r.3 * 3_600;
            seen_products.extend_from_slice(items);
            out.push(Basket {
                customer: format!("u{}", r.0),
                at,
                products: items.iter().map(|p| format!("p{p}")).collect(),
            });
        }
        i = j;
    }
    if out.is_empty() {
        return Err(DecideError::Insufficient("the Instacart files hold no order with products".into()));
    }
    seen_products.sort_unstable();
    seen_products.dedup();
    let products = seen_products
        .into_iter()
        .map(|p| Product { id: format!("p{p}"), available: true, ..Product::default() })
        .collect();
    Ok(World { products, orders: out })
}
