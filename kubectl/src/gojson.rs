//! JSON text exactly as Go's `encoding/json` writes decoded objects: map keys
//! in byte order, `<`, `>` and `&` escaped as `\u003c`..., U+2028/U+2029
//! escaped, floats in Go's shortest form, `MarshalIndent` layout.

use serde_json::Value;

/// `json.Marshal`: compact.
pub fn to_compact(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, None, 0);
    out
}

/// `json.MarshalIndent(v, "", "    ")`, as kubectl's JSON printer uses.
pub fn to_pretty(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, Some("    "), 0);
    out
}

/// Field order of a typed Go struct, by the key that holds the object (the
/// root is `""`; array elements take their array's key).
pub type FieldOrder<'a> = &'a dyn Fn(&str) -> Option<&'static [&'static str]>;

/// `MarshalIndent` of a typed Go struct: keys in struct order (unlisted keys
/// after, sorted), with `unit` as the indent.
pub fn to_pretty_ordered(v: &Value, unit: &str, order: FieldOrder<'_>) -> String {
    let mut out = String::new();
    write_ordered(&mut out, v, unit, 0, "", order);
    out
}

fn write_ordered(out: &mut String, v: &Value, unit: &str, depth: usize, key: &str, order: FieldOrder<'_>) {
    match v {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, Some(unit), depth + 1);
                write_ordered(out, item, unit, depth + 1, key, order);
            }
            newline(out, Some(unit), depth);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            let listed = order(key).unwrap_or(&[]);
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| (listed.iter().position(|l| l == k).unwrap_or(usize::MAX), (*k).clone()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, Some(unit), depth + 1);
                write_string(out, k);
                out.push_str(": ");
                write_ordered(out, &map[k], unit, depth + 1, k, order);
            }
            newline(out, Some(unit), depth);
            out.push('}');
        }
        other => write_value(out, other, Some(unit), depth),
    }
}

fn newline(out: &mut String, indent: Option<&str>, depth: usize) {
    if let Some(unit) = indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(unit);
        }
    }
}

fn write_value(out: &mut String, v: &Value, indent: Option<&str>, depth: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&format_number(n)),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, depth + 1);
                write_value(out, item, indent, depth + 1);
            }
            newline(out, indent, depth);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, depth + 1);
                write_string(out, k);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write_value(out, item, indent, depth + 1);
            }
            newline(out, indent, depth);
            out.push('}');
        }
    }
}

/// A number as Go prints a decoded JSON number: integers as written, floats
/// in `strconv.FormatFloat(f, 'f' or 'e', -1, 64)` as `encoding/json` picks.
pub fn format_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        Some(f) => format_float(f),
        None => n.to_string(),
    }
}

/// `encoding/json`'s float format.
pub fn format_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Exponent form, Go style: at least two exponent digits.
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        let digits = if digits.len() < 2 {
            format!("0{digits}")
        } else {
            digits.to_string()
        };
        return format!("{mantissa}e{sign}{digits}");
    }
    format!("{f}")
}

/// A JSON string literal with Go's escaping (HTML-safe).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_and_pretty() {
        let cases = [
            (json!({"b": 1, "a": "<a&b>"}), r#"{"a":"\u003ca\u0026b\u003e","b":1}"#),
            (json!({"x": [], "y": {}}), r#"{"x":[],"y":{}}"#),
            (json!("line\nnext\ttab\u{1}"), r#""line\nnext\ttab\u0001""#),
            (json!(1.5), "1.5"),
            (json!(2.0), "2"),
            (json!(1e21), "1e+21"),
            (json!(1.5e-7), "1.5e-07"),
            (json!(null), "null"),
        ];
        for (input, want) in cases {
            assert_eq!(to_compact(&input), want, "{input}");
        }
        assert_eq!(
            to_pretty(&json!({"a": {"b": [1, 2]}, "c": {}})),
            "{\n    \"a\": {\n        \"b\": [\n            1,\n            2\n        ]\n    },\n    \"c\": {}\n}"
        );
    }
}
