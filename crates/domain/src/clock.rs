//! Time as Tether stores it (milliseconds since the Unix epoch, as in AWS IoT events) and as
//! the API shows it (RFC 3339 UTC).

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let now = OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 UTC text with millisecond precision, e.g. `2026-11-23T18:00:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(FORMAT).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
}

/// Parses RFC 3339 text back to epoch milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// How far ahead of Tether's clock an event's timestamp may be. AWS IoT's and Lambda's clocks
/// agree to well under a second; anything further ahead did not come from them and would, if
/// stored, outrank every genuine event that follows (the newest event wins).
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

/// Whether an event time is one Tether may order by: not before the epoch and not more than
/// [`MAX_FUTURE_SKEW_MS`] ahead of `now`.
pub fn plausible(at_ms: i64, now: i64) -> bool {
    at_ms >= 0 && at_ms <= now.saturating_add(MAX_FUTURE_SKEW_MS)
}

/// Text from outside (a device, an event, an AWS error) made safe for one log line: control
/// characters dropped, at most `max` characters, with `…` when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut kept = text.chars().filter(|c| !c.is_control());
    let mut out: String = kept.by_ref().take(max).collect();
    if kept.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_times_near_now_are_plausible() {
        let now = 1_795_456_800_000;
        assert!(plausible(now, now));
        assert!(plausible(now + MAX_FUTURE_SKEW_MS, now));
        assert!(plausible(0, now));
        assert!(!plausible(now + MAX_FUTURE_SKEW_MS + 1, now));
        assert!(!plausible(999_999_999_999_999, now));
        assert!(!plausible(-1, now));
    }

    #[test]
    fn excerpts_are_short_single_lines() {
        assert_eq!(excerpt("a\nb\u{7}c", 10), "abc");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(excerpt(&"é".repeat(1000), 5).chars().count(), 6);
    }

    #[test]
    fn rfc3339_always_shows_milliseconds_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_717_708_862_107), "2024-06-06T21:21:02.107Z");
        assert_eq!(rfc3339(1_717_708_862_000), "2024-06-06T21:21:02.000Z");
    }

    #[test]
    fn rfc3339_round_trips() {
        for ms in [0, 1, 999, 1_717_708_862_107, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
    }
}
