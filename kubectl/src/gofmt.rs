//! Go's `fmt.Sprint` (`%v`) of decoded JSON values, which kubectl uses for
//! table cells and custom columns: `map[a:b c:d]`, `[x y]`, `<nil>`.

use serde_json::Value;

/// `fmt.Sprint(v)` for a value decoded from JSON.
pub fn sprint(v: &Value) -> String {
    let mut out = String::new();
    write(&mut out, v);
    out
}

fn write(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.push_str(&n.to_string());
            } else if let Some(f) = n.as_f64() {
                out.push_str(&format_float(f));
            }
        }
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("map[");
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write(out, item);
            }
            out.push(']');
        }
    }
}

/// `%v` of a float64: `strconv.FormatFloat(f, 'g', -1, 64)` with Go's
/// spelling of infinities.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    crate::goyaml::go_format_g(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sprint_values() {
        let cases = [
            (json!("s"), "s"),
            (json!(3), "3"),
            (json!(1.5), "1.5"),
            (json!(null), "<nil>"),
            (json!([1, "a"]), "[1 a]"),
            (json!({"b": 1, "a": {"c": [true]}}), "map[a:map[c:[true]] b:1]"),
        ];
        for (input, want) in cases {
            assert_eq!(sprint(&input), want);
        }
    }
}
