//! Times as the API spells them: RFC 3339, written in Asia/Shanghai (UTC+8 all year, no daylight
//! saving since 1991).

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// UTC+8, China Standard Time.
pub const SHANGHAI: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(offset) => offset,
    Err(_) => panic!("+08:00 is a valid offset"),
};

/// The last second whose Shanghai date is still in year 9999 (`9999-12-31T23:59:59+08:00`).
const SHANGHAI_MAX_S: i64 = 253_402_300_799 - 8 * 3_600;

/// `time_s` in Asia/Shanghai. Instants outside years 1970–9999 there (a caller may send any
/// RFC 3339 time) are clamped, never a panic.
pub fn shanghai(time_s: i64) -> OffsetDateTime {
    let clamped = time_s.clamp(0, SHANGHAI_MAX_S);
    OffsetDateTime::from_unix_timestamp(clamped).unwrap_or(OffsetDateTime::UNIX_EPOCH).to_offset(SHANGHAI)
}

/// Reads an RFC 3339 time (any offset) as Unix seconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(OffsetDateTime::unix_timestamp)
}

/// Writes Unix seconds as RFC 3339 in Asia/Shanghai, `2026-03-01T10:00:00+08:00`.
pub fn format_timestamp(time_s: i64) -> String {
    shanghai(time_s).format(&Rfc3339).unwrap_or_else(|_| time_s.to_string())
}
