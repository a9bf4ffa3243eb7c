//! Lenient ISO 8601 timestamps as analytics SDKs write them: an offset or `Z` (or none, read as UTC),
//! milli-, micro- or nanoseconds, and unpadded fields (`2015-2-02T00:30:08.276Z`).

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Parses `Y-M-D[(T| )h:m[:s[.fraction]]][Z|±hh[:mm]|±hhmm]`; `None` when it is not a date.
pub fn parse_lenient(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let mut parts = date.split('-');
    let year: i32 = number(parts.next()?, 4)?;
    let month: u8 = number(parts.next()?, 2)?;
    let day: u8 = number(parts.next()?, 2)?;
    if parts.next().is_some() {
        return None;
    }
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;

    // Split the offset off the time of day.
    let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, UtcOffset::UTC)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        (&rest[..i], offset(&rest[i..])?)
    } else {
        (rest, UtcOffset::UTC)
    };
    let time = if clock.is_empty() {
        Time::MIDNIGHT
    } else {
        let (hms, fraction) = match clock.split_once(['.', ',']) {
            Some((a, f)) => (a, Some(f)),
            None => (clock, None),
        };
        let mut t = hms.split(':');
        let h: u8 = number(t.next()?, 2)?;
        let m: u8 = number(t.next()?, 2)?;
        let sec: u8 = match t.next() {
            Some(x) => number(x, 2)?,
            None => 0,
        };
        if t.next().is_some() {
            return None;
        }
        let nanos = match fraction {
            None => 0,
            Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
                let digits: String = f.chars().take(9).collect();
                let n: u32 = digits.parse().ok()?;
                n * 10u32.pow(9 - digits.len() as u32)
            }
            Some(_) => return None,
        };
        Time::from_hms_nano(h, m, sec.min(59), nanos).ok()?
    };
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset).to_offset(UtcOffset::UTC))
}

/// Digits only, 1 to `max` of them (years up to 4).
fn number<T: std::str::FromStr>(s: &str, max: usize) -> Option<T> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `+hh:mm`, `+hhmm` or `+hh`.
fn offset(s: &str) -> Option<UtcOffset> {
    let sign: i8 = if s.starts_with('-') { -1 } else { 1 };
    let body = &s[1..];
    let (h, m) = match body.split_once(':') {
        Some((h, m)) => (h, m),
        None if body.len() == 4 => body.split_at(2),
        None => (body, "0"),
    };
    let h: i8 = number(h, 2)?;
    let m: i8 = number(m, 2)?;
    UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

/// RFC 3339 in UTC with milliseconds (`2026-05-01T10:00:00.512Z`).
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_forms_sdks_send_parse() {
        let cases = [
            ("2026-05-01T10:00:00.000+00:00", datetime!(2026-05-01 10:00 UTC)),
            ("2026-05-01T10:00:00.512344+00:00", datetime!(2026-05-01 10:00:00.512344 UTC)),
            ("2026-05-01T12:00:00+02:00", datetime!(2026-05-01 10:00 UTC)),
            ("2026-05-01T05:30:00-0430", datetime!(2026-05-01 10:00 UTC)),
            ("2026-05-01T10:00:00Z", datetime!(2026-05-01 10:00 UTC)),
            ("2015-2-02T00:30:08.276Z", datetime!(2015-02-02 00:30:08.276 UTC)),
            ("2026-05-01 10:00:00", datetime!(2026-05-01 10:00 UTC)),
            ("2026-05-01", datetime!(2026-05-01 0:00 UTC)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_lenient(text), Some(want), "{text}");
        }
    }

    #[test]
    fn what_is_not_a_date_is_none() {
        for text in ["", "yesterday", "2026-13-01T00:00:00Z", "2026-05-01T25:00:00Z", "1714557600", "2026-05"]
        {
            assert_eq!(parse_lenient(text), None, "{text}");
        }
    }

    #[test]
    fn formats_in_utc_with_milliseconds() {
        assert_eq!(format_rfc3339(datetime!(2026-05-01 12:00:00.5123 +02:00)), "2026-05-01T10:00:00.512Z");
    }
}
