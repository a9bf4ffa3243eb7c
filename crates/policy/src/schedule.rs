//! The cron schedule of a `schedule` flow: standard five-field cron (minute, hour, day of month, month,
//! day of week), always evaluated in UTC.
//!
//! The fields take numbers, `*`, lists (`1,15`), ranges (`1-5`), steps (`*/10`), month and weekday names
//! (`JAN`, `MON`; 0 and 7 are Sunday) and the nicknames `@hourly`, `@daily`, `@weekly`, `@monthly`,
//! `@yearly`; also `L` (last day of the month, or last such weekday: `5L`), `W` (nearest weekday) and `#`
//! (nth weekday of the month: `1#1`). When both the day of month and the day of week are restricted, a day
//! matching either fires (as in Vixie cron). No seconds field, no year field.
//!
//! Pure: instants in, instants out; the caller says what time it is.

use nudge_model::Timestamp;
use std::fmt;

/// How far ahead [`Schedule::parse`] looks for an occurrence before calling a schedule one that never
/// fires: two leap-year cycles, so that the 29th of February is found.
const NEVER_FIRES_YEARS: i32 = 8;

/// The field names, in order, for error messages.
const FIELDS: [&str; 5] = ["minute", "hour", "day of month", "month", "day of week"];

/// A checked cron schedule, evaluated in UTC.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    cron: croner::Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.expr).finish()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

fn parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
}

fn to_chrono(t: Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    // Whole seconds: occurrences fall on them, and a fraction would make "after" ambiguous.
    chrono::DateTime::from_timestamp(t.unix_timestamp(), 0)
}

fn from_chrono(t: chrono::DateTime<chrono::Utc>) -> Option<Timestamp> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()
}

impl Schedule {
    /// Parses and checks a cron expression. The error says which field is wrong and why, or that the
    /// schedule never fires (no occurrence in eight years, such as `0 0 30 2 *`).
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let trimmed = expr.trim();
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let nickname = fields.len() == 1 && trimmed.starts_with('@');
        if !nickname && fields.len() != 5 {
            return Err(format!(
                "`{expr}` has {} field(s); a schedule has five: minute hour day-of-month month day-of-week \
                 (UTC), such as \"0 9 * * 1\" for Mondays at 09:00",
                fields.len()
            ));
        }
        let cron = match parser().parse(trimmed) {
            Ok(c) => c,
            Err(e) if nickname => return Err(format!("`{expr}`: {e}")),
            Err(e) => {
                // Which field: each one alone, with every other field `*`.
                let culprit = (0..5).find(|&i| {
                    let probe: Vec<&str> = (0..5).map(|j| if j == i { fields[i] } else { "*" }).collect();
                    parser().parse(&probe.join(" ")).is_err()
                });
                return Err(match culprit {
                    Some(i) => {
                        format!("`{expr}`: field {} ({}) `{}` is not valid: {e}", i + 1, FIELDS[i], fields[i])
                    }
                    None => format!("`{expr}` is not a cron expression: {e}"),
                });
            }
        };
        let schedule = Schedule { expr: expr.to_string(), cron };
        // The reference is fixed, so the check (and a flow set's validity) does not depend on the clock.
        let from = time::macros::datetime!(2024-01-01 00:00 UTC);
        let horizon = from.replace_year(from.year() + NEVER_FIRES_YEARS).expect("a valid year");
        match schedule.next_after(from) {
            Some(t) if t <= horizon => Ok(schedule),
            _ => Err(format!(
                "`{expr}` never fires: no time in {NEVER_FIRES_YEARS} years matches it (is the day of month \
                 in the month?)"
            )),
        }
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let next = self.cron.find_next_occurrence(&to_chrono(t)?, false).ok()?;
        from_chrono(next)
    }

    /// The latest occurrence at or before `now`, if it is after `after`: the firing due at `now` for a
    /// schedule that last fired at `after`. However many occurrences passed since (nudge was down), only
    /// the latest is due.
    pub fn due(&self, after: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let latest = self.cron.find_previous_occurrence(&to_chrono(now)?, true).ok()?;
        from_chrono(latest).filter(|&t| t > after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn next_occurrences_are_in_utc_and_strictly_after() {
        let s = Schedule::parse("0 9 * * 1").unwrap();
        // 2026-05-04 is a Monday.
        assert_eq!(s.next_after(datetime!(2026-05-01 12:00 UTC)), Some(datetime!(2026-05-04 09:00 UTC)));
        assert_eq!(s.next_after(datetime!(2026-05-04 09:00 UTC)), Some(datetime!(2026-05-11 09:00 UTC)));
        // An instant given in another offset is the same instant.
        assert_eq!(
            s.next_after(datetime!(2026-05-04 10:30 +02:00)),
            Some(datetime!(2026-05-04 09:00 UTC)),
            "08:30 UTC is before 09:00 UTC"
        );
        let every = Schedule::parse("* * * * *").unwrap();
        assert_eq!(
            every.next_after(datetime!(2026-05-04 09:00:30.5 UTC)),
            Some(datetime!(2026-05-04 09:01 UTC))
        );
        let leap = Schedule::parse("0 0 29 2 *").unwrap();
        assert_eq!(leap.next_after(datetime!(2026-03-01 0:00 UTC)), Some(datetime!(2028-02-29 0:00 UTC)));
        assert_eq!(
            Schedule::parse("@daily").unwrap().next_after(datetime!(2026-05-04 09:00 UTC)),
            Some(datetime!(2026-05-05 0:00 UTC))
        );
    }

    #[test]
    fn only_the_latest_missed_occurrence_is_due() {
        let s = Schedule::parse("0 * * * *").unwrap();
        let last = datetime!(2026-05-04 09:00 UTC);
        assert_eq!(s.due(last, datetime!(2026-05-04 09:59:59 UTC)), None);
        assert_eq!(s.due(last, datetime!(2026-05-04 10:00 UTC)), Some(datetime!(2026-05-04 10:00 UTC)));
        // Down for three days: one firing, at the latest hour.
        assert_eq!(s.due(last, datetime!(2026-05-07 13:20 UTC)), Some(datetime!(2026-05-07 13:00 UTC)));
    }

    #[test]
    fn bad_expressions_say_which_field_and_never_firing_ones_are_refused() {
        let e = Schedule::parse("0 9 * *").unwrap_err();
        assert!(e.contains("4 field(s)") && e.contains("five"), "{e}");
        let e = Schedule::parse("0 25 * * *").unwrap_err();
        assert!(e.contains("field 2 (hour) `25`"), "{e}");
        let e = Schedule::parse("0 9 * * MOX").unwrap_err();
        assert!(e.contains("field 5 (day of week)"), "{e}");
        let e = Schedule::parse("0 0 9 * * *").unwrap_err();
        assert!(e.contains("6 field(s)"), "{e}");
        for never in ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"] {
            let e = Schedule::parse(never).unwrap_err();
            assert!(e.contains("never fires"), "{never}: {e}");
        }
        assert!(Schedule::parse("*/15 8-18 * * MON-FRI").is_ok());
        assert!(Schedule::parse("0 0 L * *").is_ok());
    }
}
