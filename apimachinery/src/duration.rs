//! Durations as Go writes and reads them (`time.Duration`): what flags,
//! component configuration files and API fields such as `metav1.Duration`
//! carry.
//!
//! Parsing is Go's `time.ParseDuration` (through the `go-duration` crate):
//! an optional sign, then one or more decimal numbers, each with an
//! optional fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`,
//! `h`), without spaces: `1h30m`, `1.5h`, `500ms`; `0` alone needs no unit.
//! Formatting is Go's `Duration.String()`: `1h30m0s`, `1m0s`, `500ms`, `0s`.

use std::fmt;
use std::time::Duration;

use go_duration::GoDurationParseError;

/// Why a string is not a Go duration, worded as Go's `time.ParseDuration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    input: String,
    reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reason {
    Invalid,
    MissingUnit,
    UnknownUnit(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = &self.input;
        match &self.reason {
            Reason::Invalid => write!(f, "time: invalid duration {input:?}"),
            Reason::MissingUnit => write!(f, "time: missing unit in duration {input:?}"),
            Reason::UnknownUnit(unit) => write!(f, "time: unknown unit {unit:?} in duration {input:?}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses `s` as Go's `time.ParseDuration` does, into nanoseconds (which
/// may be negative).
pub fn parse_nanos(s: &str) -> Result<i64, ParseError> {
    // Go's one special case: a lone zero needs no unit.
    if matches!(s, "0" | "+0" | "-0") {
        return Ok(0);
    }
    go_duration::parse_go_duration(s)
        .map(|d| d.nanoseconds())
        .map_err(|e| ParseError {
            input: s.to_string(),
            reason: match e {
                GoDurationParseError::InvalidDuration => Reason::Invalid,
                GoDurationParseError::MissingUnit => Reason::MissingUnit,
                GoDurationParseError::UnknownUnit(unit) => Reason::UnknownUnit(unit),
            },
        })
}

/// Go's `Duration.String()` of a number of nanoseconds: "1h0m0s", "1.5s",
/// "300ms", "0s".
pub fn format_nanos(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    /// `value / 10^digits`, and the fraction as ".ddd" without trailing zeros.
    fn split(value: u64, digits: u32) -> (u64, String) {
        let scale = 10_u64.pow(digits);
        let fraction = value % scale;
        if fraction == 0 {
            return (value / scale, String::new());
        }
        let text = format!("{fraction:0width$}", width = digits as usize);
        (value / scale, format!(".{}", text.trim_end_matches('0')))
    }
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        let (whole, fraction) = split(n, 3);
        return format!("{sign}{whole}{fraction}µs");
    }
    if n < 1_000_000_000 {
        let (whole, fraction) = split(n, 6);
        return format!("{sign}{whole}{fraction}ms");
    }
    let (seconds, fraction) = split(n, 9);
    let (minutes, hours) = (seconds / 60, seconds / 3600);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}{fraction}s"),
        (0, _) => format!("{sign}{minutes}m{}{fraction}s", seconds % 60),
        _ => format!("{sign}{hours}h{}m{}{fraction}s", minutes % 60, seconds % 60),
    }
}

/// Go's `Duration.String()` of a (non-negative) [`Duration`]; durations
/// beyond Go's range (about 292 years) saturate.
pub fn format(d: Duration) -> String {
    format_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    #[test]
    fn parses_what_go_parses() {
        let cases: &[(&str, i64, &str)] = &[
            ("0", 0, "a lone zero needs no unit"),
            ("-0", 0, "signed zero"),
            ("0s", 0, "zero with a unit"),
            ("1h30m", 5400 * SECOND, "several units"),
            ("1.5h", 5400 * SECOND, "a fraction of an hour"),
            ("2m3.5s", 123 * SECOND + SECOND / 2, "a fraction in the last unit"),
            ("1.5h30m", 7200 * SECOND, "a fraction in any unit"),
            ("500ms", SECOND / 2, "milliseconds"),
            ("300us", 300_000, "microseconds, ASCII"),
            ("1µs", 1_000, "microseconds, micro sign"),
            ("1μs", 1_000, "microseconds, Greek mu"),
            ("10ns", 10, "nanoseconds"),
            ("+5s", 5 * SECOND, "a plus sign"),
            ("-1m30s", -90 * SECOND, "a minus sign covers every unit"),
            (".5s", SECOND / 2, "no integer part"),
            ("1.s", SECOND, "no fraction digits"),
            ("9223372036854775807ns", i64::MAX, "the largest duration"),
        ];
        for (input, want, why) in cases {
            assert_eq!(parse_nanos(input), Ok(*want), "{input}: {why}");
        }
    }

    #[test]
    fn rejects_what_go_rejects_with_gos_words() {
        let cases: &[(&str, &str, &str)] = &[
            ("5", r#"time: missing unit in duration "5""#, "a number needs a unit"),
            ("1d", r#"time: unknown unit "d" in duration "1d""#, "no days"),
            ("1 h", r#"time: unknown unit " h" in duration "1 h""#, "no spaces"),
            (
                "1h ",
                r#"time: unknown unit "h " in duration "1h ""#,
                "no trailing space",
            ),
            (" 1h", r#"time: invalid duration " 1h""#, "no leading space"),
            ("", r#"time: invalid duration """#, "empty"),
            ("h", r#"time: invalid duration "h""#, "a unit needs a number"),
            (
                "1min",
                r#"time: unknown unit "min" in duration "1min""#,
                "humantime's words",
            ),
            ("-", r#"time: invalid duration "-""#, "a sign alone"),
            (
                "1m-30s",
                r#"time: unknown unit "m-" in duration "1m-30s""#,
                "one sign only",
            ),
            (
                "9223372036854775808ns",
                r#"time: invalid duration "9223372036854775808ns""#,
                "overflow",
            ),
        ];
        for (input, want, why) in cases {
            let got = parse_nanos(input).map_err(|e| e.to_string());
            assert_eq!(got, Err((*want).to_string()), "{input:?}: {why}");
        }
    }

    #[test]
    fn formats_as_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_500_000, "2.5ms"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (5_400_000_000_000, "1h30m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-1_500_000_000, "-1.5s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(format_nanos(nanos), want, "{nanos}ns");
        }
        assert_eq!(format(Duration::from_millis(500)), "500ms");
        for text in ["1h30m0s", "1m0s", "500ms", "2m3.5s", "1.1µs"] {
            let nanos = parse_nanos(text).expect(text);
            assert_eq!(format_nanos(nanos), text, "round trip");
        }
    }
}
