//! The compact binary encoding of a [`CustomerState`], what the store keeps: [`CustomerState::encode`]
//! and [`CustomerState::decode`].
//!
//! # Format
//!
//! One leading format byte, then the payload:
//!
//! | first byte | payload |
//! | --- | --- |
//! | `0x01` | compact v1: the mirror structs below, in postcard (varints, length-prefixed sequences) |
//! | `0x81` | compact v1 compressed: LZ4 block with its uncompressed size prepended, holding the v1 payload |
//! | `{` (after optional ASCII whitespace) | legacy: the state as a JSON object, as stored before this encoding |
//!
//! The high bit of the format byte marks LZ4; the low seven bits are the version. Encoding compresses only
//! states whose payload is large ([`COMPRESS_FROM`] bytes or more) and only when that saves bytes: a
//! typical customer (a profile and a handful of orders) is a few hundred bytes that LZ4 cannot shrink,
//! while a state full of browse entries and engagement ids repeats itself and halves.
//!
//! Postcard is not self-describing, so nothing here relies on the serde attributes of the JSON form
//! (`skip_serializing_if`, defaults, `rfc3339`): the state is copied into dedicated mirror structs that
//! always write every field, in declaration order. Inside them:
//! - a timestamp is one signed varint holding a two-bit tag: whole UTC days since 1970, whole UTC seconds,
//!   or (for anything else) seconds, nanoseconds and the UTC offset together, so every instant reads back
//!   exactly, offset included. A second timestamp of the same record (an order's `updated_at`, an offer's
//!   `window_end`) is written as a difference from the first.
//! - a decimal is one unsigned varint: the 96-bit mantissa's magnitude, the scale (0..=28) and the sign,
//!   so `39.95` and `39.950` stay distinct, as in the JSON form.
//! - enums (source, consent, browse kind) are small integers from explicit tables below, never from the
//!   declaration order of the Rust enums.
//! - ids and tokens are written as a number when they are canonical decimal text (`7890123456`), as a
//!   prefix plus bytes when they end in a long run of lower-case hex (`h-3fa2…`, `email:9c1d…`), and as
//!   text otherwise. Each form reads back to the very same string.
//!
//! # Versioning
//!
//! The layout of a version never changes once released. Adding, removing or retyping a field of the
//! state means a new version byte (2, 3, …) with its own mirror structs, and [`CustomerState::decode`]
//! keeps decoding every older version (converting to the current state as the JSON form's serde defaults
//! do). A new variant of an enum written as an integer takes the next unused number, which older versions
//! never wrote, so it needs no new version. Encoding always writes the newest version.

use crate::offers::{Acquisition, OfferRecord};
use crate::signals::{BrowseEntry, BrowseKind, DayCounts, EngagementState, LoyaltyRecord, ReviewRecord};
use crate::{CheckoutRecord, CustomerState, ItemRecord, OrderRecord};
use nudge_model::{Currency, CustomerId, MarketingConsent, Money, Source, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// The version byte [`CustomerState::encode`] writes.
pub const COMPACT_VERSION: u8 = 1;
/// Set in the format byte when the payload is LZ4-compressed.
const LZ4_FLAG: u8 = 0x80;
/// Payloads at least this long are tried with LZ4.
pub const COMPRESS_FROM: usize = 512;

/// Why bytes could not be read as a customer state.
#[derive(Debug, thiserror::Error)]
pub enum StateDecodeError {
    #[error("empty state")]
    Empty,
    #[error("unknown state format byte {0:#04x}")]
    UnknownVersion(u8),
    #[error("legacy JSON state: {0}")]
    Json(#[from] serde_json::Error),
    #[error("compact state: {0}")]
    Compact(#[from] postcard::Error),
    #[error("compact state: {0} trailing bytes")]
    Trailing(usize),
    #[error("compressed state: {0}")]
    Lz4(#[from] lz4_flex::block::DecompressError),
    #[error("compact state: {0}")]
    Invalid(String),
}

fn invalid(what: impl Into<String>) -> StateDecodeError {
    StateDecodeError::Invalid(what.into())
}

/// Whether stored state bytes are the legacy JSON form (a JSON object, possibly after whitespace), which
/// a store migrates to the compact encoding.
pub fn is_legacy_json(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

impl CustomerState {
    /// The state in the compact encoding (see [the module docs](crate::compact)).
    pub fn encode(&self) -> Vec<u8> {
        let mirror = CState::from_state(self);
        let mut out = Vec::with_capacity(256);
        out.push(COMPACT_VERSION);
        let out = postcard::to_extend(&mirror, out).expect("writing to a Vec cannot fail");
        if out.len() > COMPRESS_FROM {
            let packed = lz4_flex::block::compress_prepend_size(&out[1..]);
            if packed.len() + 1 < out.len() {
                let mut z = Vec::with_capacity(packed.len() + 1);
                z.push(COMPACT_VERSION | LZ4_FLAG);
                z.extend_from_slice(&packed);
                return z;
            }
        }
        out
    }

    /// Reads a state in any encoding a store may hold: every compact version, compressed or not, and
    /// the legacy JSON form.
    pub fn decode(bytes: &[u8]) -> Result<CustomerState, StateDecodeError> {
        if is_legacy_json(bytes) {
            return Ok(serde_json::from_slice(bytes)?);
        }
        let payload = compact_payload(bytes)?;
        read_mirror(&payload)?.into_state()
    }

    /// [`CustomerState::purchase_days`] of stored state bytes, without building the state: what a model
    /// fit reads for every customer. The compact form is parsed in full (a malformed state is an error as
    /// with [`CustomerState::decode`]) but only the orders are converted, so none of the ids, texts, maps and
    /// other records a state holds are allocated. The legacy JSON form is decoded in full.
    ///
    /// The result is the same, bit for bit: the encoding writes the orders in the order of their keys, as
    /// the state's map holds them, so the valid orders sort by time, and each day's amounts add up, in the
    /// same order as in [`CustomerState::purchase_days`].
    pub fn decode_purchase_days(bytes: &[u8]) -> Result<Vec<(i32, f64)>, StateDecodeError> {
        if is_legacy_json(bytes) {
            return Ok(Self::decode(bytes)?.purchase_days());
        }
        let payload = compact_payload(bytes)?;
        let mirror = read_mirror(&payload)?;
        let mut valid = Vec::with_capacity(mirror.orders.len());
        for (_, o) in mirror.orders {
            if !o.cancelled {
                valid.push((ts_out(o.created_at, 0)?, o.total.into_money()?.to_f64()));
            }
        }
        // Stable, as `valid_orders`: orders at the same instant stay in key order.
        valid.sort_by_key(|(at, _)| *at);
        let mut days: Vec<(i32, f64)> = Vec::with_capacity(valid.len());
        for (at, amount) in valid {
            let day = crate::day_number(at);
            match days.last_mut() {
                Some((d, sum)) if *d == day => *sum += amount,
                _ => days.push((day, 0.0 + amount)),
            }
        }
        Ok(days)
    }
}

/// The payload of a compact state (after its version byte, decompressed when flagged), checked to be of a
/// version this build reads.
fn compact_payload(bytes: &[u8]) -> Result<Cow<'_, [u8]>, StateDecodeError> {
    let Some(&first) = bytes.first() else { return Err(StateDecodeError::Empty) };
    if first & !LZ4_FLAG != 1 {
        return Err(StateDecodeError::UnknownVersion(first));
    }
    Ok(if first & LZ4_FLAG != 0 {
        Cow::Owned(lz4_flex::block::decompress_size_prepended(&bytes[1..])?)
    } else {
        Cow::Borrowed(&bytes[1..])
    })
}

/// The version-1 mirror of a payload, which must be read to its end.
fn read_mirror(payload: &[u8]) -> Result<CState<'_>, StateDecodeError> {
    let (mirror, rest): (CState<'_>, &[u8]) = postcard::take_from_bytes(payload)?;
    if !rest.is_empty() {
        return Err(StateDecodeError::Trailing(rest.len()));
    }
    Ok(mirror)
}

// ---- Scalars ------------------------------------------------------------------------------------------

const SECS_PER_DAY: i64 = 86_400;
const TAG_SECS: i128 = 0;
const TAG_DAYS: i128 = 1;
const TAG_FULL: i128 = 2;

/// A timestamp as one integer, its seconds counted from `base` (see the module docs).
fn ts_in(t: Timestamp, base: i64) -> i128 {
    let secs = t.unix_timestamp() - base;
    let nanos = t.nanosecond();
    let offset = t.offset().whole_seconds();
    if nanos == 0 && offset == 0 {
        if secs % SECS_PER_DAY == 0 {
            ((secs / SECS_PER_DAY) as i128) << 2 | TAG_DAYS
        } else {
            (secs as i128) << 2 | TAG_SECS
        }
    } else {
        // Offsets are within ±25:59:59, so zigzagged they fit 18 bits; nanoseconds fit 30.
        let offset_zz = ((offset << 1) ^ (offset >> 31)) as u32 as i128;
        ((((secs as i128) << 30 | nanos as i128) << 18 | offset_zz) << 2) | TAG_FULL
    }
}

fn ts_out(v: i128, base: i64) -> Result<Timestamp, StateDecodeError> {
    let bad = || invalid(format!("timestamp {v} out of range"));
    let body = v >> 2;
    let (secs, nanos, offset) = match v & 3 {
        TAG_SECS => (body, 0, 0),
        TAG_DAYS => (body.checked_mul(SECS_PER_DAY as i128).ok_or_else(bad)?, 0, 0),
        TAG_FULL => {
            let offset_zz = (body & ((1 << 18) - 1)) as u32;
            let offset = ((offset_zz >> 1) as i32) ^ -((offset_zz & 1) as i32);
            let rest = body >> 18;
            (rest >> 30, (rest & ((1 << 30) - 1)) as u32, offset)
        }
        _ => return Err(bad()),
    };
    let secs = i64::try_from(secs).ok().and_then(|s| s.checked_add(base)).ok_or_else(bad)?;
    let nanos_total = (secs as i128) * 1_000_000_000 + nanos as i128;
    let utc = time::OffsetDateTime::from_unix_timestamp_nanos(nanos_total).map_err(|_| bad())?;
    let offset = time::UtcOffset::from_whole_seconds(offset).map_err(|_| bad())?;
    Ok(utc.to_offset(offset))
}

fn opt_ts_in(t: Option<Timestamp>) -> Option<i128> {
    t.map(|t| ts_in(t, 0))
}

fn opt_ts_out(v: Option<i128>) -> Result<Option<Timestamp>, StateDecodeError> {
    v.map(|v| ts_out(v, 0)).transpose()
}

/// A decimal as one integer: magnitude of the mantissa, then five bits of scale and one of sign.
fn dec_in(d: Decimal) -> u128 {
    (d.mantissa().unsigned_abs() << 6) | ((d.scale() as u128) << 1) | d.is_sign_negative() as u128
}

fn dec_out(v: u128) -> Result<Decimal, StateDecodeError> {
    let mantissa = i128::try_from(v >> 6).map_err(|_| invalid("decimal out of range"))?;
    let scale = ((v >> 1) & 0x1f) as u32;
    let mut d =
        Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|_| invalid("decimal out of range"))?;
    d.set_sign_negative(v & 1 == 1);
    Ok(d)
}

#[derive(Serialize, Deserialize)]
struct CMoney(u128, [u8; 3]);

impl CMoney {
    fn from_money(m: &Money) -> Self {
        let c = m.currency.as_str().as_bytes();
        CMoney(dec_in(m.amount), [c[0], c[1], c[2]])
    }

    fn into_money(self) -> Result<Money, StateDecodeError> {
        let code = std::str::from_utf8(&self.1).map_err(|_| invalid("currency is not text"))?;
        let currency = Currency::parse(code).map_err(|e| invalid(e.to_string()))?;
        Ok(Money::new(dec_out(self.0)?, currency))
    }
}

/// An id or token, in its smallest exact form.
#[derive(Serialize, Deserialize)]
enum Key<'a> {
    Text(Cow<'a, str>),
    /// Canonical decimal text (no sign, no leading zero unless it is `0`).
    Num(u64),
    /// A prefix, then lower-case hex digits written as the bytes they spell.
    Hex(Cow<'a, str>, Vec<u8>),
}

/// Hex runs shorter than this stay text (the prefix and length bytes would eat the gain).
const MIN_HEX_DIGITS: usize = 8;

impl<'a> Key<'a> {
    fn of(s: &'a str) -> Self {
        if let Ok(n) = s.parse::<u64>()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s.len() == 1 || !s.starts_with('0'))
        {
            return Key::Num(n);
        }
        let digits = s.bytes().rev().take_while(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')).count() & !1;
        if digits >= MIN_HEX_DIGITS {
            let (prefix, hex) = s.split_at(s.len() - digits);
            let bytes = hex.as_bytes().chunks(2).map(|p| (nibble(p[0]) << 4) | nibble(p[1])).collect();
            return Key::Hex(Cow::Borrowed(prefix), bytes);
        }
        Key::Text(Cow::Borrowed(s))
    }

    fn into_string(self) -> String {
        match self {
            Key::Text(s) => s.into_owned(),
            Key::Num(n) => n.to_string(),
            Key::Hex(prefix, bytes) => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                let mut s = String::with_capacity(prefix.len() + bytes.len() * 2);
                s.push_str(&prefix);
                for b in bytes {
                    s.push(DIGITS[(b >> 4) as usize] as char);
                    s.push(DIGITS[(b & 15) as usize] as char);
                }
                s
            }
        }
    }
}

fn nibble(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        _ => b - b'a' + 10,
    }
}

fn key_opt(s: &Option<String>) -> Option<Key<'_>> {
    s.as_deref().map(Key::of)
}

fn key_opt_out(k: Option<Key<'_>>) -> Option<String> {
    k.map(Key::into_string)
}

fn text(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

fn text_opt(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}

fn text_opt_out(s: Option<Cow<'_, str>>) -> Option<String> {
    s.map(Cow::into_owned)
}

// ---- Enum tables (stable numbers; new variants take new numbers) ----------------------------------------

fn source_in(s: Source) -> u8 {
    match s {
        Source::Shopify => 0,
        Source::BigCommerce => 1,
        Source::Adobe => 2,
        Source::Import => 3,
        Source::Segment => 4,
        Source::Anonymous => 5,
        Source::Email => 6,
        Source::Braze => 7,
    }
}

fn source_out(n: u8) -> Result<Source, StateDecodeError> {
    Ok(match n {
        0 => Source::Shopify,
        1 => Source::BigCommerce,
        2 => Source::Adobe,
        3 => Source::Import,
        4 => Source::Segment,
        5 => Source::Anonymous,
        6 => Source::Email,
        7 => Source::Braze,
        n => return Err(invalid(format!("unknown source {n}"))),
    })
}

fn consent_in(c: MarketingConsent) -> u8 {
    match c {
        MarketingConsent::Unknown => 0,
        MarketingConsent::Subscribed => 1,
        MarketingConsent::NotSubscribed => 2,
        MarketingConsent::Unsubscribed => 3,
        MarketingConsent::Pending => 4,
    }
}

fn consent_out(n: u8) -> Result<MarketingConsent, StateDecodeError> {
    Ok(match n {
        0 => MarketingConsent::Unknown,
        1 => MarketingConsent::Subscribed,
        2 => MarketingConsent::NotSubscribed,
        3 => MarketingConsent::Unsubscribed,
        4 => MarketingConsent::Pending,
        n => return Err(invalid(format!("unknown consent {n}"))),
    })
}

fn browse_kind_in(k: BrowseKind) -> u8 {
    match k {
        BrowseKind::Viewed => 0,
        BrowseKind::Added => 1,
        BrowseKind::Removed => 2,
        BrowseKind::CartViewed => 3,
        BrowseKind::Searched => 4,
        BrowseKind::Purchased => 5,
    }
}

fn browse_kind_out(n: u8) -> Result<BrowseKind, StateDecodeError> {
    Ok(match n {
        0 => BrowseKind::Viewed,
        1 => BrowseKind::Added,
        2 => BrowseKind::Removed,
        3 => BrowseKind::CartViewed,
        4 => BrowseKind::Searched,
        5 => BrowseKind::Purchased,
        n => return Err(invalid(format!("unknown browse kind {n}"))),
    })
}

// ---- Version 1 mirrors ----------------------------------------------------------------------------------
//
// Each conversion into a mirror destructures its source without `..`, so a field added to the state
// fails to compile here until it is given a place (and, per the versioning rule, a new version).

#[derive(Serialize, Deserialize)]
struct CState<'a> {
    v: u16,
    source: u8,
    local: Key<'a>,
    email: Option<Cow<'a, str>>,
    first_name: Option<Cow<'a, str>>,
    last_name: Option<Cow<'a, str>>,
    consent: u8,
    tags: Vec<Cow<'a, str>>,
    sms_consent: u8,
    profile_updated_at: Option<i128>,
    orders: Vec<(Key<'a>, COrder<'a>)>,
    open_checkouts: Vec<(Key<'a>, CCheckout<'a>)>,
    revision: u64,
    flow_history: Vec<(Cow<'a, str>, Vec<i64>)>,
    scores_fingerprint: Option<Cow<'a, str>>,
    phone: Option<Cow<'a, str>>,
    identified_at: Option<i128>,
    aliases: Vec<Key<'a>>,
    last_active_at: Option<i128>,
    browse: Vec<CBrowse<'a>>,
    reviews: Vec<(Key<'a>, CReview<'a>)>,
    loyalty: Option<CLoyalty<'a>>,
    /// `None` for the default (empty) engagement.
    engagement: Option<CEngagement<'a>>,
    offers: Vec<COffer<'a>>,
    acquisition: Option<CAcquisition<'a>>,
    utc_offset_minutes: Option<i16>,
}

impl<'a> CState<'a> {
    fn from_state(s: &'a CustomerState) -> Self {
        let CustomerState {
            v,
            customer,
            email,
            first_name,
            last_name,
            consent,
            tags,
            sms_consent,
            profile_updated_at,
            orders,
            open_checkouts,
            revision,
            flow_history,
            scores_fingerprint,
            phone,
            identified_at,
            aliases,
            last_active_at,
            browse,
            reviews,
            loyalty,
            engagement,
            offers,
            acquisition,
            utc_offset_minutes,
        } = s;
        CState {
            v: *v,
            source: source_in(customer.source()),
            local: Key::of(customer.local()),
            email: text_opt(email),
            first_name: text_opt(first_name),
            last_name: text_opt(last_name),
            consent: consent_in(*consent),
            tags: tags.iter().map(|t| text(t)).collect(),
            sms_consent: consent_in(*sms_consent),
            profile_updated_at: opt_ts_in(*profile_updated_at),
            orders: orders.iter().map(|(k, o)| (Key::of(k), COrder::from_record(o))).collect(),
            open_checkouts: open_checkouts
                .iter()
                .map(|(k, c)| (Key::of(k), CCheckout::from_record(c)))
                .collect(),
            revision: *revision,
            flow_history: flow_history.iter().map(|(k, v)| (text(k), v.clone())).collect(),
            scores_fingerprint: text_opt(scores_fingerprint),
            phone: text_opt(phone),
            identified_at: opt_ts_in(*identified_at),
            aliases: aliases.iter().map(|a| Key::of(a)).collect(),
            last_active_at: opt_ts_in(*last_active_at),
            browse: browse.iter().map(CBrowse::from_entry).collect(),
            reviews: reviews.iter().map(|(k, r)| (Key::of(k), CReview::from_record(r))).collect(),
            loyalty: loyalty.as_ref().map(CLoyalty::from_record),
            engagement: (*engagement != EngagementState::default())
                .then(|| CEngagement::from_state(engagement)),
            offers: offers.iter().map(COffer::from_record).collect(),
            acquisition: acquisition.as_ref().map(CAcquisition::from_record),
            utc_offset_minutes: *utc_offset_minutes,
        }
    }

    fn into_state(self) -> Result<CustomerState, StateDecodeError> {
        let customer = CustomerId::new(source_out(self.source)?, self.local.into_string())
            .map_err(|e| invalid(e.to_string()))?;
        let mut orders = BTreeMap::new();
        for (k, o) in self.orders {
            orders.insert(k.into_string(), o.into_record()?);
        }
        let mut open_checkouts = BTreeMap::new();
        for (k, c) in self.open_checkouts {
            open_checkouts.insert(k.into_string(), c.into_record()?);
        }
        let mut reviews = BTreeMap::new();
        for (k, r) in self.reviews {
            reviews.insert(k.into_string(), r.into_record()?);
        }
        Ok(CustomerState {
            v: self.v,
            customer,
            email: text_opt_out(self.email),
            first_name: text_opt_out(self.first_name),
            last_name: text_opt_out(self.last_name),
            consent: consent_out(self.consent)?,
            tags: self.tags.into_iter().map(Cow::into_owned).collect(),
            sms_consent: consent_out(self.sms_consent)?,
            profile_updated_at: opt_ts_out(self.profile_updated_at)?,
            orders,
            open_checkouts,
            revision: self.revision,
            flow_history: self.flow_history.into_iter().map(|(k, v)| (k.into_owned(), v)).collect(),
            scores_fingerprint: text_opt_out(self.scores_fingerprint),
            phone: text_opt_out(self.phone),
            identified_at: opt_ts_out(self.identified_at)?,
            aliases: self.aliases.into_iter().map(Key::into_string).collect::<BTreeSet<_>>(),
            last_active_at: opt_ts_out(self.last_active_at)?,
            browse: self.browse.into_iter().map(CBrowse::into_entry).collect::<Result<_, _>>()?,
            reviews,
            loyalty: self.loyalty.map(CLoyalty::into_record).transpose()?,
            engagement: match self.engagement {
                Some(e) => e.into_state()?,
                None => EngagementState::default(),
            },
            offers: self.offers.into_iter().map(COffer::into_record).collect::<Result<_, _>>()?,
            acquisition: self.acquisition.map(CAcquisition::into_record).transpose()?,
            utc_offset_minutes: self.utc_offset_minutes,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct COrder<'a> {
    created_at: i128,
    /// Seconds counted from `created_at`'s.
    updated_at: i128,
    total: CMoney,
    cancelled: bool,
    items: Vec<CItem<'a>>,
    checkout_token: Option<Key<'a>>,
    cart_token: Option<Key<'a>>,
}

impl<'a> COrder<'a> {
    fn from_record(o: &'a OrderRecord) -> Self {
        let OrderRecord { created_at, updated_at, total, cancelled, items, checkout_token, cart_token } = o;
        COrder {
            created_at: ts_in(*created_at, 0),
            updated_at: ts_in(*updated_at, created_at.unix_timestamp()),
            total: CMoney::from_money(total),
            cancelled: *cancelled,
            items: items.iter().map(CItem::from_record).collect(),
            checkout_token: key_opt(checkout_token),
            cart_token: key_opt(cart_token),
        }
    }

    fn into_record(self) -> Result<OrderRecord, StateDecodeError> {
        let created_at = ts_out(self.created_at, 0)?;
        Ok(OrderRecord {
            created_at,
            updated_at: ts_out(self.updated_at, created_at.unix_timestamp())?,
            total: self.total.into_money()?,
            cancelled: self.cancelled,
            items: self.items.into_iter().map(CItem::into_record).collect(),
            checkout_token: key_opt_out(self.checkout_token),
            cart_token: key_opt_out(self.cart_token),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct CItem<'a> {
    product_id: Option<Key<'a>>,
    title: Cow<'a, str>,
    quantity: u32,
}

impl<'a> CItem<'a> {
    fn from_record(i: &'a ItemRecord) -> Self {
        let ItemRecord { product_id, title, quantity } = i;
        CItem { product_id: key_opt(product_id), title: text(title), quantity: *quantity }
    }

    fn into_record(self) -> ItemRecord {
        ItemRecord {
            product_id: key_opt_out(self.product_id),
            title: self.title.into_owned(),
            quantity: self.quantity,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct CCheckout<'a> {
    cart_token: Option<Key<'a>>,
    updated_at: i128,
    total: CMoney,
    item_count: u32,
    recovery_url: Option<Cow<'a, str>>,
    abandoned: bool,
}

impl<'a> CCheckout<'a> {
    fn from_record(c: &'a CheckoutRecord) -> Self {
        let CheckoutRecord { cart_token, updated_at, total, item_count, recovery_url, abandoned } = c;
        CCheckout {
            cart_token: key_opt(cart_token),
            updated_at: ts_in(*updated_at, 0),
            total: CMoney::from_money(total),
            item_count: *item_count,
            recovery_url: text_opt(recovery_url),
            abandoned: *abandoned,
        }
    }

    fn into_record(self) -> Result<CheckoutRecord, StateDecodeError> {
        Ok(CheckoutRecord {
            cart_token: key_opt_out(self.cart_token),
            updated_at: ts_out(self.updated_at, 0)?,
            total: self.total.into_money()?,
            item_count: self.item_count,
            recovery_url: text_opt_out(self.recovery_url),
            abandoned: self.abandoned,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct CBrowse<'a> {
    kind: u8,
    at: i128,
    product_id: Option<Key<'a>>,
    query: Option<Cow<'a, str>>,
    category: Option<Cow<'a, str>>,
    key: Key<'a>,
}

impl<'a> CBrowse<'a> {
    fn from_entry(e: &'a BrowseEntry) -> Self {
        let BrowseEntry { kind, at, product_id, query, category, key } = e;
        CBrowse {
            kind: browse_kind_in(*kind),
            at: ts_in(*at, 0),
            product_id: key_opt(product_id),
            query: text_opt(query),
            category: text_opt(category),
            key: Key::of(key),
        }
    }

    fn into_entry(self) -> Result<BrowseEntry, StateDecodeError> {
        Ok(BrowseEntry {
            kind: browse_kind_out(self.kind)?,
            at: ts_out(self.at, 0)?,
            product_id: key_opt_out(self.product_id),
            query: text_opt_out(self.query),
            category: text_opt_out(self.category),
            key: self.key.into_string(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct CReview<'a> {
    product_id: Option<Key<'a>>,
    rating: Option<u8>,
    sentiment: Option<f64>,
    negative: bool,
    published: bool,
    created_at: i128,
    /// Seconds counted from `created_at`'s.
    updated_at: i128,
}

impl<'a> CReview<'a> {
    fn from_record(r: &'a ReviewRecord) -> Self {
        let ReviewRecord { product_id, rating, sentiment, negative, published, created_at, updated_at } = r;
        CReview {
            product_id: key_opt(product_id),
            rating: *rating,
            sentiment: *sentiment,
            negative: *negative,
            published: *published,
            created_at: ts_in(*created_at, 0),
            updated_at: ts_in(*updated_at, created_at.unix_timestamp()),
        }
    }

    fn into_record(self) -> Result<ReviewRecord, StateDecodeError> {
        let created_at = ts_out(self.created_at, 0)?;
        Ok(ReviewRecord {
            product_id: key_opt_out(self.product_id),
            rating: self.rating,
            sentiment: self.sentiment,
            negative: self.negative,
            published: self.published,
            created_at,
            updated_at: ts_out(self.updated_at, created_at.unix_timestamp())?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct CLoyalty<'a> {
    program: Cow<'a, str>,
    member_id: Key<'a>,
    points: Option<i64>,
    tier: Option<Cow<'a, str>>,
    state: Option<Cow<'a, str>>,
    updated_at: i128,
    last_points_change: Option<i64>,
}

impl<'a> CLoyalty<'a> {
    fn from_record(l: &'a LoyaltyRecord) -> Self {
        let LoyaltyRecord { program, member_id, points, tier, state, updated_at, last_points_change } = l;
        CLoyalty {
            program: text(program),
            member_id: Key::of(member_id),
            points: *points,
            tier: text_opt(tier),
            state: text_opt(state),
            updated_at: ts_in(*updated_at, 0),
            last_points_change: *last_points_change,
        }
    }

    fn into_record(self) -> Result<LoyaltyRecord, StateDecodeError> {
        Ok(LoyaltyRecord {
            program: self.program.into_owned(),
            member_id: self.member_id.into_string(),
            points: self.points,
            tier: text_opt_out(self.tier),
            state: text_opt_out(self.state),
            updated_at: ts_out(self.updated_at, 0)?,
            last_points_change: self.last_points_change,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct CEngagement<'a> {
    seen: Vec<Key<'a>>,
    /// Day number, then sent, delivered, opened, machine-opened, clicked, bounced.
    days: Vec<(i32, [u32; 6])>,
    open_hours: [u32; 24],
    channel_hours: Vec<(Cow<'a, str>, [u32; 24])>,
    last_engaged_at: Option<i128>,
    suppressed: bool,
    suppressed_reason: Option<Cow<'a, str>>,
    suppressed_at: Option<i128>,
}

impl<'a> CEngagement<'a> {
    fn from_state(e: &'a EngagementState) -> Self {
        let EngagementState {
            seen,
            days,
            open_hours,
            channel_hours,
            last_engaged_at,
            suppressed,
            suppressed_reason,
            suppressed_at,
        } = e;
        CEngagement {
            seen: seen.iter().map(|s| Key::of(s)).collect(),
            days: days
                .iter()
                .map(|(d, c)| {
                    let DayCounts { sent, delivered, opened, machine_opened, clicked, bounced } = *c;
                    (*d, [sent, delivered, opened, machine_opened, clicked, bounced])
                })
                .collect(),
            open_hours: *open_hours,
            channel_hours: channel_hours.iter().map(|(k, h)| (text(k), *h)).collect(),
            last_engaged_at: opt_ts_in(*last_engaged_at),
            suppressed: *suppressed,
            suppressed_reason: text_opt(suppressed_reason),
            suppressed_at: opt_ts_in(*suppressed_at),
        }
    }

    fn into_state(self) -> Result<EngagementState, StateDecodeError> {
        Ok(EngagementState {
            seen: self.seen.into_iter().map(Key::into_string).collect(),
            days: self
                .days
                .into_iter()
                .map(|(d, [sent, delivered, opened, machine_opened, clicked, bounced])| {
                    (d, DayCounts { sent, delivered, opened, machine_opened, clicked, bounced })
                })
                .collect(),
            open_hours: self.open_hours,
            channel_hours: self.channel_hours.into_iter().map(|(k, h)| (k.into_owned(), h)).collect(),
            last_engaged_at: opt_ts_out(self.last_engaged_at)?,
            suppressed: self.suppressed,
            suppressed_reason: text_opt_out(self.suppressed_reason),
            suppressed_at: opt_ts_out(self.suppressed_at)?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct COffer<'a> {
    flow: Cow<'a, str>,
    arm: Cow<'a, str>,
    decision_id: Key<'a>,
    decided_at: i128,
    /// Seconds counted from `decided_at`'s.
    window_end: i128,
    settled: bool,
}

impl<'a> COffer<'a> {
    fn from_record(o: &'a OfferRecord) -> Self {
        let OfferRecord { flow, arm, decision_id, decided_at, window_end, settled } = o;
        COffer {
            flow: text(flow),
            arm: text(arm),
            decision_id: Key::of(decision_id),
            decided_at: ts_in(*decided_at, 0),
            window_end: ts_in(*window_end, decided_at.unix_timestamp()),
            settled: *settled,
        }
    }

    fn into_record(self) -> Result<OfferRecord, StateDecodeError> {
        let decided_at = ts_out(self.decided_at, 0)?;
        Ok(OfferRecord {
            flow: self.flow.into_owned(),
            arm: self.arm.into_owned(),
            decision_id: self.decision_id.into_string(),
            decided_at,
            window_end: ts_out(self.window_end, decided_at.unix_timestamp())?,
            settled: self.settled,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct CAcquisition<'a> {
    source: Option<Cow<'a, str>>,
    first_category: Option<Cow<'a, str>>,
    country: Option<Cow<'a, str>>,
    device: Option<Cow<'a, str>>,
    first_seen_at: Option<i128>,
}

impl<'a> CAcquisition<'a> {
    fn from_record(a: &'a Acquisition) -> Self {
        let Acquisition { source, first_category, country, device, first_seen_at } = a;
        CAcquisition {
            source: text_opt(source),
            first_category: text_opt(first_category),
            country: text_opt(country),
            device: text_opt(device),
            first_seen_at: opt_ts_in(*first_seen_at),
        }
    }

    fn into_record(self) -> Result<Acquisition, StateDecodeError> {
        Ok(Acquisition {
            source: text_opt_out(self.source),
            first_category: text_opt_out(self.first_category),
            country: text_opt_out(self.country),
            device: text_opt_out(self.device),
            first_seen_at: opt_ts_out(self.first_seen_at)?,
        })
    }
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
