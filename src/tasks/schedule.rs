//! When schedules are due: fixed periods aligned to the epoch, and 5-field cron specs (UTC)
//! with Vixie cron's rules.
//!
//! Missed periods are skipped, not replayed: after an outage a schedule fires once for the
//! latest period that has passed.

/// How late after a boundary a schedule's very first firing may still happen.
const FIRST_WINDOW_MS: u64 = 1_000;

/// How far a cron search looks, in days: a possible spec matches within 28 years (the
/// weekday cycle of a date), or 40 across a century that skips its leap day.
const SEARCH_DAYS: i64 = 60 * 366;

const MINUTE_MS: u64 = 60_000;
const DAY_MINUTES: u64 = 1_440;

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// The due time to fire next for a period of `every_ms`, given the last firing. A schedule
/// that never fired fires at the boundary just passed if that was under a second ago (the
/// leader ticks faster than that), else at the next one.
pub fn next_every(every_ms: u64, last_due: Option<u64>, now_ms: u64) -> u64 {
    let every = every_ms.max(1);
    let latest = now_ms / every * every;
    match last_due {
        None if now_ms - latest < FIRST_WINDOW_MS.min(every) => latest,
        None => latest + every,
        Some(last) if latest > last => latest,
        Some(last) => last + every,
    }
}

/// Why a cron spec was refused; each says what to write instead.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CronError {
    #[error(
        "cron spec {spec:?} needs 5 fields (minute hour day month weekday), e.g. \"*/5 * * * *\""
    )]
    FieldCount { spec: String },
    #[error("cron {field} field: bad step in {part:?}; write */N or A-B/N with N at least 1")]
    BadStep { field: &'static str, part: String },
    #[error(
        "cron {field} field: {part:?} is not a number{names}, a range A-B, * or a list of those"
    )]
    BadValue {
        field: &'static str,
        part: String,
        names: &'static str,
    },
    #[error("cron {field} field: {part:?} is outside {lo}-{hi}")]
    OutOfRange {
        field: &'static str,
        part: String,
        lo: u32,
        hi: u32,
    },
    #[error(
        "cron spec {spec:?} can never fire: no month it allows has the day of month it asks for"
    )]
    Impossible { spec: String },
}

/// A parsed cron spec: allowed values per field.
#[derive(Clone, Debug, PartialEq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    /// Neither day field starts with `*`: a day matches either (Vixie cron's rule); else both.
    day_or: bool,
}

/// One field's value: a number or (for months and weekdays) a three-letter name.
fn value(text: &str, names: &[&str], base: u32) -> Option<u32> {
    if let Ok(n) = text.parse::<u32>() {
        return Some(n);
    }
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
        .map(|i| i as u32 + base)
}

fn field(
    text: &str,
    lo: u32,
    hi: u32,
    name: &'static str,
    names: &[&str],
) -> Result<Vec<bool>, CronError> {
    let mut allowed = vec![false; hi as usize + 1];
    let bad = |part: &str| CronError::BadValue {
        field: name,
        part: part.to_string(),
        names: if names.is_empty() { "" } else { " or name" },
    };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| CronError::BadStep {
                        field: name,
                        part: part.to_string(),
                    })?,
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = value(a, names, lo).ok_or_else(|| bad(part))?;
            let b = value(b, names, lo).ok_or_else(|| bad(part))?;
            (a, b)
        } else {
            let a = value(range, names, lo).ok_or_else(|| bad(part))?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(CronError::OutOfRange {
                field: name,
                part: part.to_string(),
                lo,
                hi,
            });
        }
        for v in (a..=b).step_by(step as usize) {
            allowed[v as usize] = true;
        }
    }
    Ok(allowed)
}

/// The most days month `m` (1-12) ever has.
fn max_days(m: usize) -> usize {
    match m {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Cron {
    /// Parses "minute hour day-of-month month day-of-week". Months and weekdays take names
    /// too (`JAN`, `mon-fri`); a spec that can never fire (`0 0 30 2 *`) is refused.
    pub fn parse(spec: &str) -> Result<Cron, CronError> {
        let parts: Vec<&str> = spec.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(CronError::FieldCount { spec: spec.into() });
        }
        let mut weekdays = field(parts[4], 0, 7, "weekday", &WEEKDAY_NAMES)?;
        if weekdays[7] {
            weekdays[0] = true;
        }
        let cron = Cron {
            minutes: field(parts[0], 0, 59, "minute", &[])?,
            hours: field(parts[1], 0, 23, "hour", &[])?,
            days: field(parts[2], 1, 31, "day", &[])?,
            months: field(parts[3], 1, 12, "month", &MONTH_NAMES)?,
            weekdays,
            day_or: !parts[2].starts_with('*') && !parts[4].starts_with('*'),
        };
        // With OR any allowed weekday fires in any allowed month; otherwise some allowed
        // month must have an allowed day (every date falls on every weekday over the years).
        let possible = cron.day_or
            || (1..=12).any(|m| cron.months[m] && (1..=max_days(m)).any(|d| cron.days[d]));
        if !possible {
            return Err(CronError::Impossible { spec: spec.into() });
        }
        Ok(cron)
    }

    /// Whether the spec allows the day `days` after 1970-01-01.
    fn day_matches(&self, days: i64) -> bool {
        let (_, month, day) = civil(days);
        let weekday = ((days + 4).rem_euclid(7)) as usize; // 1970-01-01 was a Thursday
        let day_ok = if self.day_or {
            self.days[day as usize] || self.weekdays[weekday]
        } else {
            self.days[day as usize] && self.weekdays[weekday]
        };
        self.months[month as usize] && day_ok
    }

    /// Whether the spec allows minute `m` (0-1439) of a day.
    fn minute_matches(&self, m: u64) -> bool {
        self.hours[(m / 60) as usize] && self.minutes[(m % 60) as usize]
    }

    /// The first matching minute strictly after `after_ms`. Walks day by day, so it costs
    /// at most a few thousand steps whatever the spec.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let start = after_ms / MINUTE_MS + 1;
        let first_day = (start / DAY_MINUTES) as i64;
        (first_day..first_day + SEARCH_DAYS)
            .filter(|d| self.day_matches(*d))
            .find_map(|d| {
                let day_start = d as u64 * DAY_MINUTES;
                let from = start.saturating_sub(day_start);
                (from..DAY_MINUTES)
                    .find(|m| self.minute_matches(*m))
                    .map(|m| (day_start + m) * MINUTE_MS)
            })
    }

    /// The last matching minute at or before `at_ms` and strictly after `floor_ms`.
    fn latest_between(&self, floor_ms: u64, at_ms: u64) -> Option<u64> {
        let end = at_ms / MINUTE_MS;
        let floor = floor_ms / MINUTE_MS;
        let last_day = (end / DAY_MINUTES) as i64;
        let floor_day = (floor / DAY_MINUTES) as i64;
        (floor_day.max(last_day - SEARCH_DAYS)..=last_day)
            .rev()
            .filter(|d| self.day_matches(*d))
            .find_map(|d| {
                let day_start = d as u64 * DAY_MINUTES;
                (0..=(end - day_start).min(DAY_MINUTES - 1))
                    .rev()
                    .map(|m| day_start + m)
                    .take_while(|m| *m > floor)
                    .find(|m| self.minute_matches(m % DAY_MINUTES))
                    .map(|m| m * MINUTE_MS)
            })
    }

    /// The due time to fire next, given the last firing: the latest matching minute that has
    /// passed since then (missed ones are skipped, as for periods), else the next one to
    /// come. A schedule that never fired fires for a minute that passed under a minute ago.
    pub fn next_due(&self, last_due: Option<u64>, now_ms: u64) -> Option<u64> {
        match last_due {
            None => self.next_after(now_ms.saturating_sub(MINUTE_MS)),
            Some(last) => self
                .latest_between(last, now_ms)
                .or_else(|| self.next_after(last.max(now_ms))),
        }
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-11-23 00:00 UTC, a Sunday.
    const SUNDAY: u64 = 1_763_856_000_000;
    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 86_400_000;

    #[test]
    fn periods_align_and_skip_missed() {
        assert_eq!(next_every(5_000, None, 12_300), 15_000);
        assert_eq!(next_every(5_000, None, 15_200), 15_000);
        assert_eq!(next_every(5_000, Some(15_000), 16_000), 20_000);
        // Leader was away for a minute: fire once for the latest passed period.
        assert_eq!(next_every(5_000, Some(15_000), 77_000), 75_000);
    }

    #[test]
    fn cron_specs() {
        assert_eq!(civil((SUNDAY / DAY) as i64), (2025, 11, 23));
        let every5 = Cron::parse("*/5 * * * *").unwrap();
        assert_eq!(every5.next_after(SUNDAY + 61_000), Some(SUNDAY + 300_000));
        let weekday3am = Cron::parse("0 3 * * 1-5").unwrap();
        // 2025-11-23 was a Sunday: next weekday 03:00 is Monday 24th.
        assert_eq!(weekday3am.next_after(SUNDAY), Some(SUNDAY + DAY + 3 * HOUR));
        assert!(matches!(
            Cron::parse("* * *"),
            Err(CronError::FieldCount { .. })
        ));
        assert!(Cron::parse("* * *")
            .unwrap_err()
            .to_string()
            .contains("5 fields"));
        assert!(matches!(
            Cron::parse("61 * * * *"),
            Err(CronError::OutOfRange { .. })
        ));
        assert!(matches!(
            Cron::parse("*/0 * * * *"),
            Err(CronError::BadStep { .. })
        ));
        assert!(matches!(
            Cron::parse("0 0 * * funday"),
            Err(CronError::BadValue { .. })
        ));
    }

    #[test]
    fn an_hourly_spec_after_a_ten_hour_outage_fires_once_for_the_latest_hour() {
        let hourly = Cron::parse("0 * * * *").unwrap();
        let last = SUNDAY + HOUR; // fired at 01:00, then no leader until 11:00:30
        let now = SUNDAY + 11 * HOUR + 30_000;
        assert_eq!(hourly.next_due(Some(last), now), Some(SUNDAY + 11 * HOUR));
        // That firing recorded, nothing more is due until 12:00.
        let next = hourly.next_due(Some(SUNDAY + 11 * HOUR), now);
        assert_eq!(next, Some(SUNDAY + 12 * HOUR));
        // On time: the next minute to come.
        assert_eq!(
            hourly.next_due(Some(last), SUNDAY + HOUR + 5_000),
            Some(SUNDAY + 2 * HOUR)
        );
        // Never fired: a minute that passed under a minute ago, else the next one.
        assert_eq!(
            hourly.next_due(None, SUNDAY + 2 * HOUR + 20_000),
            Some(SUNDAY + 2 * HOUR)
        );
        assert_eq!(
            hourly.next_due(None, SUNDAY + 2 * HOUR + 90_000),
            Some(SUNDAY + 3 * HOUR)
        );
    }

    #[test]
    fn a_spec_that_can_never_fire_is_refused() {
        for spec in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 feb *"] {
            let e = Cron::parse(spec).unwrap_err();
            assert!(matches!(e, CronError::Impossible { .. }), "{spec}: {e:?}");
            assert!(e.to_string().contains("can never fire"), "{e}");
        }
        // Rare but possible: 29 February, every 4 years.
        let leap = Cron::parse("0 0 29 2 *").unwrap();
        // 2028-02-29 00:00 UTC.
        assert_eq!(leap.next_after(SUNDAY), Some(1_835_395_200_000));
        // 30 February OR any Monday can fire (Vixie's OR): Mondays in February.
        let or = Cron::parse("0 0 30 2 1").unwrap();
        // 2026-02-02 was a Monday.
        assert_eq!(or.next_after(SUNDAY), Some(1_769_990_400_000));
    }

    #[test]
    fn day_fields_or_only_when_neither_starts_with_a_star() {
        // `*/2` days AND Mondays (Vixie cron): odd days of the month that are Mondays.
        // From Sunday 2025-11-23, Mondays are 24th (even), 1 Dec (odd): the 1st.
        let and = Cron::parse("0 0 */2 * 1").unwrap();
        assert_eq!(and.next_after(SUNDAY), Some(SUNDAY + 8 * DAY));
        // Plain lists on both: OR, so Monday the 24th fires.
        let or = Cron::parse("0 0 1 * 1").unwrap();
        assert_eq!(or.next_after(SUNDAY), Some(SUNDAY + DAY));
        // `*` day of month: weekdays alone decide.
        let star = Cron::parse("0 0 * * 1").unwrap();
        assert_eq!(star.next_after(SUNDAY), Some(SUNDAY + DAY));
    }

    #[test]
    fn month_and_weekday_names() {
        let named = Cron::parse("0 3 * * mon-FRI").unwrap();
        assert_eq!(named, Cron::parse("0 3 * * 1-5").unwrap());
        assert_eq!(named.next_after(SUNDAY), Some(SUNDAY + DAY + 3 * HOUR));
        let jan = Cron::parse("0 0 1 JAN *").unwrap();
        assert_eq!(jan, Cron::parse("0 0 1 1 *").unwrap());
        // 2026-01-01 00:00 UTC.
        assert_eq!(jan.next_after(SUNDAY), Some(1_767_225_600_000));
        assert_eq!(
            Cron::parse("0 0 * jun-aug,dec sun,sat").unwrap(),
            Cron::parse("0 0 * 6-8,12 0,6").unwrap()
        );
    }
}
