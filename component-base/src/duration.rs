//! The one parser of duration flags and of durations in component
//! configuration files: Go's `time.ParseDuration` syntax (`30s`, `1m30s`,
//! `1.5h`, `500ms`, `0`), as upstream's components read them.

use std::time::Duration;

pub use apimachinery::duration::{format, format_nanos};

const SYNTAX: &str = "Go syntax, e.g. 30s, 1m30s, 500ms";

/// Parses a non-negative duration; a clap `value_parser` for every
/// duration flag. Errors name the value and the syntax:
/// `invalid value "5x" for duration: time: unknown unit "x" in duration "5x" (Go syntax, e.g. 30s, 1m30s, 500ms)`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let nanos = parse_signed_nanos(s)?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("invalid value {s:?} for duration: must not be negative"))
}

/// Parses a duration that may be negative (where upstream gives negative
/// values a meaning, such as `kubectl wait --timeout=-1s`), in nanoseconds.
pub fn parse_signed_nanos(s: &str) -> Result<i64, String> {
    apimachinery::duration::parse_nanos(s).map_err(|e| format!("invalid value {s:?} for duration: {e} ({SYNTAX})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_gos_syntax_and_no_negatives() {
        let ok: &[(&str, Duration)] = &[
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            ("500ms", Duration::from_millis(500)),
            ("0", Duration::ZERO),
            ("300us", Duration::from_micros(300)),
            ("1µs", Duration::from_micros(1)),
        ];
        for (input, want) in ok {
            assert_eq!(parse(input), Ok(*want), "{input}");
        }
        for input in ["5", "1d", "1 h", "", "h", "10 minutes"] {
            let err = parse(input).expect_err(input);
            assert!(
                err.starts_with(&format!("invalid value {input:?} for duration: time: ")),
                "{err}"
            );
            assert!(err.ends_with("(Go syntax, e.g. 30s, 1m30s, 500ms)"), "{err}");
        }
        assert_eq!(
            parse("5x").unwrap_err(),
            r#"invalid value "5x" for duration: time: unknown unit "x" in duration "5x" (Go syntax, e.g. 30s, 1m30s, 500ms)"#
        );
        assert_eq!(
            parse("-1s").unwrap_err(),
            r#"invalid value "-1s" for duration: must not be negative"#
        );
        assert_eq!(parse_signed_nanos("-1s"), Ok(-1_000_000_000));
    }
}
