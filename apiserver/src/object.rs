//! Small accessors over objects in their JSON form.

use serde_json::{Map, Value};

pub fn meta(o: &Value) -> Option<&Map<String, Value>> {
    o.get("metadata").and_then(Value::as_object)
}

pub fn meta_mut(o: &mut Value) -> &mut Map<String, Value> {
    if !o.get("metadata").is_some_and(Value::is_object) {
        o["metadata"] = Value::Object(Map::new());
    }
    match o.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

pub fn meta_str<'a>(o: &'a Value, field: &str) -> &'a str {
    meta(o).and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or("")
}

pub fn name(o: &Value) -> &str {
    meta_str(o, "name")
}

pub fn namespace(o: &Value) -> &str {
    meta_str(o, "namespace")
}

pub fn uid(o: &Value) -> &str {
    meta_str(o, "uid")
}

pub fn resource_version(o: &Value) -> &str {
    meta_str(o, "resourceVersion")
}

pub fn finalizers(o: &Value) -> Vec<String> {
    meta(o)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

pub fn is_deleting(o: &Value) -> bool {
    meta(o).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|v| !v.is_null()))
}

/// RFC 3339 at second precision, as metav1.Time serializes.
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// RFC 3339 with microseconds, as metav1.MicroTime serializes.
pub fn now_micro() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Selectable fields whose Go type is not a string: upstream's field sets
/// format them from the Go value, so an unset one is `false` or `0`, never
/// empty.
const BOOL_FIELDS: &[&str] = &["spec.unschedulable", "spec.hostNetwork"];
const INT_FIELDS: &[&str] = &["status.replicas", "status.successful"];

/// The value of a dotted field path (`spec.nodeName`) rendered as a field
/// selector sees it: strings as is, scalars as text; absent as the Go zero
/// value of the field (`""`, or `false`/`0` for the boolean and integer
/// fields above).
pub fn field_value(o: &Value, path: &str) -> String {
    let zero = || {
        if BOOL_FIELDS.contains(&path) {
            "false".to_string()
        } else if INT_FIELDS.contains(&path) {
            "0".to_string()
        } else {
            String::new()
        }
    };
    let mut cur = o;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) if !v.is_null() => cur = v,
            _ => return zero(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Paths (dotted) present in `input` but dropped by normalization: the
/// unknown fields of a typed object.
pub fn unknown_fields(input: &Value, normalized: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(input, normalized, String::new(), &mut out);
    out
}

fn walk_unknown(input: &Value, norm: &Value, path: String, out: &mut Vec<String>) {
    match (input, norm) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(nv) => walk_unknown(v, nv, p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, nv)) in a.iter().zip(b).enumerate() {
                walk_unknown(v, nv, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_found_by_path() {
        let input = json!({"spec": {"a": 1, "bogus": 2, "list": [{"x": 1, "y": 2}]}, "extra": null});
        let norm = json!({"spec": {"a": 1, "list": [{"x": 1}]}});
        assert_eq!(unknown_fields(&input, &norm), vec!["spec.bogus", "spec.list[0].y"]);
    }

    #[test]
    fn field_values_render_like_field_selectors() {
        let o = json!({"spec": {"nodeName": "n1", "hostNetwork": true}, "status": {}});
        assert_eq!(field_value(&o, "spec.nodeName"), "n1");
        assert_eq!(field_value(&o, "spec.hostNetwork"), "true");
        assert_eq!(field_value(&o, "status.phase"), "");
        // Unset non-string fields select as their Go zero values.
        let node = json!({"spec": {}});
        assert_eq!(field_value(&node, "spec.unschedulable"), "false");
        assert_eq!(
            field_value(&json!({"spec": {"unschedulable": true}}), "spec.unschedulable"),
            "true"
        );
        assert_eq!(field_value(&json!({}), "spec.hostNetwork"), "false");
        assert_eq!(field_value(&json!({"status": {}}), "status.replicas"), "0");
        assert_eq!(
            field_value(&json!({"status": {"successful": null}}), "status.successful"),
            "0"
        );
        assert_eq!(field_value(&json!({}), "status.podIP"), "");
    }
}
