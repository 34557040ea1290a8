//! Calendar rules in the programmes' time zone, Asia/Shanghai (UTC+8 all year, no daylight
//! saving), and the one spelling of timestamps the service reads and writes (RFC 3339).

use time::{Date, Month};

/// UTC+8, `time_s` in Asia/Shanghai, and RFC 3339 read and written: one definition, shared with
/// connectors through `suanli-wire`.
pub use suanli_wire::{SHANGHAI, format_timestamp, parse_timestamp, shanghai};

/// A calendar month in Asia/Shanghai, ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    pub year: i32,
    pub month: u8,
}

impl YearMonth {
    pub fn of(time_s: i64) -> YearMonth {
        let date = shanghai(time_s).date();
        YearMonth { year: date.year(), month: date.month() as u8 }
    }

    /// Parses `2026-10`.
    pub fn parse(text: &str) -> Option<YearMonth> {
        let (year, month) = text.split_once('-')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let year: i32 = year.parse().ok()?;
        let month: u8 = month.parse().ok()?;
        (1..=12).contains(&month).then_some(YearMonth { year, month })
    }

    /// Where the month begins and where the next begins, in seconds.
    pub fn bounds_s(self) -> (i64, i64) {
        let next = match self.month {
            12 => (self.year + 1, 1),
            m => (self.year, m + 1),
        };
        let start = shanghai_midnight(self.year, self.month, 1).unwrap_or(0);
        (start, shanghai_midnight(next.0, next.1, 1).unwrap_or(i64::MAX))
    }
}

impl std::fmt::Display for YearMonth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The calendar year in Asia/Shanghai, for annual caps.
pub fn shanghai_year(time_s: i64) -> i32 {
    shanghai(time_s).year()
}

/// Midnight at the start of `year-month-day` in Asia/Shanghai, as Unix seconds.
pub fn shanghai_midnight(year: i32, month: u8, day: u8) -> Option<i64> {
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
    Some(date.midnight().assume_offset(SHANGHAI).unix_timestamp())
}

/// Writes the Shanghai calendar date of a timestamp, `2026-10-01`.
pub fn format_date(time_s: i64) -> String {
    let date = shanghai(time_s).date();
    format!("{:04}-{:02}-{:02}", date.year(), date.month() as u8, date.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_parsed_instant_formats_without_a_panic() {
        for text in ["9999-12-31T20:00:00Z", "9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00+23:59"] {
            let time_s = parse_timestamp(text).unwrap();
            assert!(!format_timestamp(time_s).is_empty());
            assert!(!format_date(time_s).is_empty());
            let _ = shanghai_year(time_s);
        }
    }

    #[test]
    fn shanghai_dates_and_months() {
        let new_year = shanghai_midnight(2026, 1, 1).unwrap();
        assert_eq!(format_timestamp(new_year), "2026-01-01T00:00:00+08:00");
        assert_eq!(shanghai_year(new_year), 2026);
        // One second earlier is still 2025 in Shanghai, though it is 16:00 on 31 December UTC.
        assert_eq!(shanghai_year(new_year - 1), 2025);
        assert_eq!(YearMonth::of(new_year - 1), YearMonth { year: 2025, month: 12 });
        assert_eq!(parse_timestamp("2026-01-01T00:00:00+08:00"), Some(new_year));
        assert_eq!(parse_timestamp("2025-12-31T16:00:00Z"), Some(new_year));
        assert_eq!(parse_timestamp("2026-01-01"), None);
        assert_eq!(YearMonth::parse("2026-10").unwrap().to_string(), "2026-10");
        assert_eq!(YearMonth::parse("2026-13"), None);
        assert_eq!(shanghai_midnight(2026, 2, 30), None);
    }
}
