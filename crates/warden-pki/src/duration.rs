//! Certificate lifetimes written the way operators say them: `10y`, `5y`, `90d`, `72h`, `30m`,
//! `2s`, or a sum such as `1y30d`.
//!
//! `y` is 365 days and `m` is minutes (never months): certificate lifetimes must be exact and
//! calendar-free, so a "year" does not depend on leap days or on the day the CA was made.

use time::Duration;

use crate::error::{Error, Result};

const UNITS: &[(char, i64)] = &[
    ('y', 365 * 86_400),
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// Parses `10y`, `90d`, `72h`, `30m`, `2s` or a sum of them (`1d12h`). The result is positive.
pub fn parse_duration(input: &str) -> Result<Duration> {
    let bad = |reason| Error::BadDuration {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let (_, secs) = UNITS
            .iter()
            .find(|(u, _)| *u == c)
            .ok_or_else(|| bad("unknown unit (y, w, d, h, m, s)"))?;
        if digits.is_empty() {
            return Err(bad("a unit without a number"));
        }
        let n: i64 = digits.parse().map_err(|_| bad("number too large"))?;
        digits.clear();
        total = n
            .checked_mul(*secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("number too large"))?;
    }
    if !digits.is_empty() {
        return Err(bad("a number without a unit"));
    }
    if total == 0 {
        return Err(bad("it must be longer than zero"));
    }
    Ok(Duration::seconds(total))
}

/// Renders a duration with the largest units that divide it exactly (`3650d` → `10y`), so the
/// value a user typed reads back the same.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.whole_seconds();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    if secs < 0 {
        out.push('-');
        secs = -secs;
    }
    for (unit, size) in UNITS.iter().filter(|(u, _)| *u != 'w') {
        if secs >= *size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_sums() {
        assert_eq!(parse_duration("10y").unwrap(), Duration::days(3650));
        assert_eq!(parse_duration("5y").unwrap(), Duration::days(1825));
        assert_eq!(parse_duration("90d").unwrap(), Duration::days(90));
        assert_eq!(parse_duration("2w").unwrap(), Duration::days(14));
        assert_eq!(parse_duration("72h").unwrap(), Duration::hours(72));
        assert_eq!(parse_duration("30m").unwrap(), Duration::minutes(30));
        assert_eq!(parse_duration("2s").unwrap(), Duration::seconds(2));
        assert_eq!(parse_duration(" 1d12h ").unwrap(), Duration::hours(36));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "10",
            "y",
            "10x",
            "1.5d",
            "-1d",
            "0s",
            "99999999999999999999y",
            "10 y",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(matches!(err, Error::BadDuration { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_back() {
        for s in ["10y", "90d", "72h", "30m", "2s", "1y1d1h1m1s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{s}");
        }
        assert_eq!(format_duration(Duration::days(3650)), "10y");
        assert_eq!(format_duration(Duration::hours(36)), "1d12h");
    }
}
