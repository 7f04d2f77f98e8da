//! When schedules are due: fixed periods aligned to the epoch, and 5-field cron specs (UTC).
//!
//! Missed periods are skipped, not replayed: after an outage a schedule fires once for the
//! latest period that has passed.

/// How late after a boundary a schedule's very first firing may still happen.
const FIRST_WINDOW_MS: u64 = 1_000;

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

/// A parsed cron spec: allowed values per field.
#[derive(Clone, Debug, PartialEq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    /// Both day fields restricted: cron matches either (the classic rule).
    day_or: bool,
}

fn field(text: &str, lo: u32, hi: u32, name: &str) -> Result<Vec<bool>, String> {
    let mut allowed = vec![false; hi as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = a.parse::<u32>().map_err(|_| format!("{name}: {part:?}"))?;
            let b = b.parse::<u32>().map_err(|_| format!("{name}: {part:?}"))?;
            (a, b)
        } else {
            let a = range
                .parse::<u32>()
                .map_err(|_| format!("{name}: {part:?}"))?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{name}: {part:?} is outside {lo}-{hi}"));
        }
        for v in (a..=b).step_by(step as usize) {
            allowed[v as usize] = true;
        }
    }
    Ok(allowed)
}

impl Cron {
    /// Parses "minute hour day-of-month month day-of-week".
    pub fn parse(spec: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = spec.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "cron spec {spec:?} needs 5 fields (minute hour day month weekday), e.g. \"*/5 * * * *\""
            ));
        }
        let mut weekdays = field(parts[4], 0, 7, "weekday")?;
        if weekdays[7] {
            weekdays[0] = true;
        }
        Ok(Cron {
            minutes: field(parts[0], 0, 59, "minute")?,
            hours: field(parts[1], 0, 23, "hour")?,
            days: field(parts[2], 1, 31, "day")?,
            months: field(parts[3], 1, 12, "month")?,
            weekdays,
            day_or: parts[2] != "*" && parts[4] != "*",
        })
    }

    fn matches(&self, minute_index: u64) -> bool {
        let minute = (minute_index % 60) as usize;
        let hour = (minute_index / 60 % 24) as usize;
        let days = (minute_index / 1_440) as i64;
        let (_, month, day) = civil(days);
        let weekday = ((days + 4).rem_euclid(7)) as usize; // 1970-01-01 was a Thursday
        let day_ok = if self.day_or {
            self.days[day as usize] || self.weekdays[weekday]
        } else {
            self.days[day as usize] && self.weekdays[weekday]
        };
        self.minutes[minute] && self.hours[hour] && self.months[month as usize] && day_ok
    }

    /// The first matching minute strictly after `after_ms` (searching up to ~4 years).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let start = after_ms / 60_000 + 1;
        (start..start + 4 * 366 * 1_440)
            .find(|m| self.matches(*m))
            .map(|m| m * 60_000)
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
        // 2025-11-23 00:00 UTC, a Sunday:
        let sunday = 1_763_856_000_000u64;
        assert_eq!(civil((sunday / 86_400_000) as i64), (2025, 11, 23));
        let every5 = Cron::parse("*/5 * * * *").unwrap();
        assert_eq!(every5.next_after(sunday + 61_000), Some(sunday + 300_000));
        let weekday3am = Cron::parse("0 3 * * 1-5").unwrap();
        // 2025-11-23 was a Sunday: next weekday 03:00 is Monday 24th.
        assert_eq!(
            weekday3am.next_after(sunday),
            Some(sunday + 86_400_000 + 3 * 3_600_000)
        );
        assert!(Cron::parse("* * *").unwrap_err().contains("5 fields"));
        assert!(Cron::parse("61 * * * *").is_err());
        assert!(Cron::parse("*/0 * * * *").is_err());
    }
}
