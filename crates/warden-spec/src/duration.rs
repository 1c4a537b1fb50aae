//! Durations written the way operators say them, one grammar for every file and flag Warden
//! reads (`warden.toml`, `agent.toml`, `warden ca --validity`, ...): `10y`, `5y`, `90d`, `2w`,
//! `72h`, `30m`, `2s`, or a sum such as `1y30d`.
//!
//! `y` is 365 days and `m` is minutes (never months): certificate lifetimes and rotation
//! intervals must be exact and calendar-free, so a "year" does not depend on leap days or on the
//! day it was written.

use std::time::Duration;

/// Why a duration was refused; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason} (write it like 90d, 72h, 10y or 1y30d)")]
pub struct DurationError {
    /// What was written.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

const UNITS: &[(char, u64)] = &[
    ('y', 365 * 86_400),
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// Parses `10y`, `90d`, `72h`, `30m`, `2s` or a sum of them (`1d12h`). The result is positive.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let bad = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total: u64 = 0;
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
        let n: u64 = digits.parse().map_err(|_| bad("number too large"))?;
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
    Ok(Duration::from_secs(total))
}

/// Renders a duration in the same grammar, with the largest units first (`3650d` → `10y`,
/// `36h` → `1d12h`), so the value a user typed reads back the same. Sub-second parts are
/// dropped: nothing Warden schedules is finer than a second.
pub fn format_duration(d: Duration) -> String {
    format_units(d, usize::MAX)
}

/// The same grammar rounded down to its two largest units (`3d4h`, `5h12m`, `42s`), for ages
/// and time left in messages, where `3d4h17m9s` would be noise. Still parses back.
pub fn format_approx(d: Duration) -> String {
    format_units(d, 2)
}

fn format_units(d: Duration, most: usize) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut written = 0;
    for (unit, size) in UNITS.iter().filter(|(u, _)| *u != 'w') {
        if written == most {
            break;
        }
        if secs >= *size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
            written += 1;
        } else if written > 0 {
            // A zero between two units ends the approximation: `1d0h5m` reads as `1d`.
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_sums() {
        assert_eq!(
            parse_duration("10y").unwrap(),
            Duration::from_secs(3650 * 86_400)
        );
        assert_eq!(
            parse_duration("5y").unwrap(),
            Duration::from_secs(1825 * 86_400)
        );
        assert_eq!(
            parse_duration("90d").unwrap(),
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(
            parse_duration("2w").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(
            parse_duration("72h").unwrap(),
            Duration::from_secs(72 * 3600)
        );
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(30 * 60));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(
            parse_duration(" 1d12h ").unwrap(),
            Duration::from_secs(36 * 3600)
        );
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
            assert_eq!(err.input, bad, "{bad}: {err}");
        }
    }

    #[test]
    fn formats_back() {
        for s in ["10y", "90d", "72h", "30m", "2s", "1y1d1h1m1s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{s}");
        }
        assert_eq!(format_duration(Duration::from_secs(3650 * 86_400)), "10y");
        assert_eq!(format_duration(Duration::from_secs(36 * 3600)), "1d12h");
    }

    #[test]
    fn approximations_keep_two_units_and_parse_back() {
        let approx = |s: u64| format_approx(Duration::from_secs(s));
        assert_eq!(approx(0), "0s");
        assert_eq!(approx(42), "42s");
        assert_eq!(approx(61), "1m1s");
        assert_eq!(approx(3 * 86_400 + 3600 + 17), "3d1h");
        assert_eq!(approx(86_400 + 300), "1d");
        assert_eq!(approx(400 * 86_400), "1y35d");
        for s in [1, 59, 3601, 90_061, 31_536_001] {
            let d = parse_duration(&approx(s)).unwrap();
            assert!(d.as_secs() <= s, "{s}: {d:?}");
        }
    }
}
