//! `resource.Quantity`: parsing (`100m`, `1.5Gi`, `2e3`), exact arithmetic,
//! `MilliValue`/`Value`, and the canonical string Go prints.
//!
//! A quantity is an exact decimal `mantissa × 10^scale` plus the format it
//! was written in, which decides how it prints (binary suffixes only for
//! binary-SI quantities whose value allows them).

use std::fmt;

/// How a quantity prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `Ki`, `Mi`, … (powers of 1024).
    BinarySI,
    /// `m`, `k`, `M`, … (powers of 1000).
    #[default]
    DecimalSI,
    /// `e3`, `E-3`.
    DecimalExponent,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quantity {
    /// The value is `mantissa × 10^scale`.
    mantissa: i128,
    scale: i32,
    pub format: Format,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
pub struct ParseError;

const BINARY: &[(&str, u32)] = &[("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40), ("Pi", 50), ("Ei", 60)];
const DECIMAL: &[(&str, i32)] = &[
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

impl Quantity {
    pub fn zero() -> Self {
        Self::default()
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(s.len());
        // An exponent suffix ("e3", "E-2") starts with e/E followed by a
        // signed integer; anything else after the number is an SI suffix.
        let (number, suffix) = s.split_at(split);
        if number.is_empty() {
            return Err(ParseError);
        }
        let (negative, digits) = match number.as_bytes()[0] {
            b'-' => (true, &number[1..]),
            b'+' => (false, &number[1..]),
            _ => (false, number),
        };
        if digits.is_empty() || digits.contains(['+', '-']) || digits.matches('.').count() > 1 {
            return Err(ParseError);
        }
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(ParseError);
        }
        let all: String = format!("{int}{frac}");
        let mut mantissa: i128 = all.parse().map_err(|_| ParseError)?;
        if negative {
            mantissa = -mantissa;
        }
        let mut scale = -(frac.len() as i32);
        let format = if let Some(exp) = suffix.strip_prefix(['e', 'E']).filter(|e| !e.is_empty()) {
            scale += exp.parse::<i32>().map_err(|_| ParseError)?;
            Format::DecimalExponent
        } else if let Some((_, pow)) = BINARY.iter().find(|(b, _)| *b == suffix) {
            mantissa = mantissa.checked_mul(1i128 << pow).ok_or(ParseError)?;
            Format::BinarySI
        } else if let Some((_, exp)) = DECIMAL.iter().find(|(d, _)| *d == suffix) {
            scale += exp;
            Format::DecimalSI
        } else {
            return Err(ParseError);
        };
        Ok(Self {
            mantissa,
            scale,
            format,
        }
        .normalized())
    }

    /// Strips trailing decimal zeros into the scale.
    fn normalized(mut self) -> Self {
        if self.mantissa == 0 {
            self.scale = 0;
            return self;
        }
        while self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.scale += 1;
        }
        self
    }

    /// The value × 10^`exp`, rounded up (Go's `ScaledValue` rounding).
    fn scaled_ceil(&self, exp: i32) -> i128 {
        let shift = self.scale + exp;
        if shift >= 0 {
            self.mantissa.saturating_mul(10i128.saturating_pow(shift as u32))
        } else {
            let div = 10i128.saturating_pow((-shift) as u32);
            let q = self.mantissa / div;
            if self.mantissa % div > 0 { q + 1 } else { q }
        }
    }

    /// Go's `MilliValue`: the value in thousandths, rounded up.
    pub fn milli_value(&self) -> i64 {
        self.scaled_ceil(3).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// Go's `Value`: the value rounded up to an integer.
    pub fn value(&self) -> i64 {
        self.scaled_ceil(0).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The sum; keeps `self`'s format unless `self` is zero (Go's `Add`).
    pub fn add(&self, other: &Quantity) -> Quantity {
        let format = if self.is_zero() && self.format == Format::default() {
            other.format
        } else {
            self.format
        };
        let scale = self.scale.min(other.scale);
        let up = |q: &Quantity| q.mantissa * 10i128.pow((q.scale - scale) as u32);
        Quantity {
            mantissa: up(self) + up(other),
            scale,
            format,
        }
        .normalized()
    }

    /// The difference; keeps `self`'s format (Go's `Sub`).
    pub fn sub(&self, other: &Quantity) -> Quantity {
        let negated = Quantity {
            mantissa: -other.mantissa,
            ..*other
        };
        let mut d = self.add(&negated);
        if !self.is_zero() {
            d.format = self.format;
        }
        d
    }

    /// Go's `Cmp`: compares the exact values.
    pub fn cmp_value(&self, other: &Quantity) -> std::cmp::Ordering {
        let scale = self.scale.min(other.scale);
        let up = |q: &Quantity| {
            q.mantissa
                .saturating_mul(10i128.saturating_pow((q.scale - scale) as u32))
        };
        up(self).cmp(&up(other))
    }

    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }
}

impl fmt::Display for Quantity {
    /// Go's canonical form: the largest suffix that keeps the number an
    /// integer (binary suffixes only for an integral binary-SI value).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mantissa == 0 {
            return f.write_str("0");
        }
        if self.format == Format::BinarySI && self.scale >= 0 {
            let value = self.mantissa * 10i128.pow(self.scale as u32);
            if value.unsigned_abs() >= 1024 {
                for (suffix, pow) in BINARY.iter().rev() {
                    let unit = 1i128 << pow;
                    if value % unit == 0 {
                        return write!(f, "{}{suffix}", value / unit);
                    }
                }
            }
            if self.scale <= 18 {
                return write!(f, "{value}");
            }
        }
        // Decimal: an exponent that is a multiple of 3, at least -9, as large
        // as the digits allow.
        let mut exp = self.scale.div_euclid(3) * 3;
        if exp < -9 {
            exp = -9;
        }
        let mantissa = if self.scale >= exp {
            self.mantissa * 10i128.pow((self.scale - exp) as u32)
        } else {
            // Finer than nano: round up to a whole nano, as Go does.
            let div = 10i128.pow((exp - self.scale) as u32);
            let q = self.mantissa / div;
            if self.mantissa % div > 0 { q + 1 } else { q }
        };
        if self.format == Format::DecimalExponent {
            return if exp == 0 {
                write!(f, "{mantissa}")
            } else {
                write!(f, "{mantissa}e{exp}")
            };
        }
        match DECIMAL.iter().find(|(_, e)| *e == exp) {
            Some((suffix, _)) => write!(f, "{mantissa}{suffix}"),
            None => write!(f, "{mantissa}e{exp}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn canonical_strings_match_go() {
        for (input, want) in [
            ("100m", "100m"),
            ("0.5", "500m"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("1.5", "1500m"),
            ("2", "2"),
            ("1k", "1k"),
            ("1000", "1k"),
            ("1200", "1200"),
            ("64Mi", "64Mi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("1000Ki", "1000Ki"),
            ("512", "512"),
            ("2e3", "2e3"),
            ("1E-3", "1e-3"),
            ("0", "0"),
            ("-100m", "-100m"),
            ("0.1n", "1n"),
            ("12345678901234", "12345678901234"),
        ] {
            assert_eq!(q(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn values_round_up() {
        assert_eq!(q("100m").milli_value(), 100);
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("0.1m").milli_value(), 1);
        assert_eq!(q("64Mi").value(), 64 * 1024 * 1024);
        assert_eq!(q("1.5").value(), 2);
        assert_eq!(q("1k").value(), 1000);
    }

    #[test]
    fn sums_keep_the_first_format() {
        assert_eq!(q("100m").add(&q("250m")).to_string(), "350m");
        assert_eq!(q("64Mi").add(&q("128Mi")).to_string(), "192Mi");
        assert_eq!(q("1").add(&q("500m")).to_string(), "1500m");
        assert_eq!(Quantity::zero().add(&q("128Mi")).to_string(), "128Mi");
        assert_eq!(q("512Mi").add(&q("512Mi")).to_string(), "1Gi");
    }

    #[test]
    fn bad_quantities_are_refused() {
        for bad in ["", "abc", "1.2.3", "1Qi", "--1", "1e", "m", ".", "1 k"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sub_and_compare() {
        let q = |s: &str| Quantity::parse(s).expect("quantity");
        assert_eq!(q("1").sub(&q("300m")).to_string(), "700m");
        assert_eq!(q("1Gi").sub(&q("512Mi")).to_string(), "512Mi");
        assert!(q("500m").sub(&q("1")).is_negative());
        assert_eq!(q("1").cmp_value(&q("1000m")), std::cmp::Ordering::Equal);
        assert_eq!(q("1Gi").cmp_value(&q("1G")), std::cmp::Ordering::Greater);
        assert_eq!(q("100m").cmp_value(&q("0.2")), std::cmp::Ordering::Less);
    }
}
