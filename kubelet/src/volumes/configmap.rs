//! configMap volumes: a file per key (or per listed item), as upstream's
//! `configmap.MakePayload` (`pkg/volume/configmap/configmap.go`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath};

use super::atomic_writer::FileProjection;

/// The files of a configMap volume or projection. Without items every key of
/// `data` and `binaryData` is a file; with items only the listed keys, at
/// their paths and modes. A missing listed key is an error unless the source
/// is optional (an optional missing configMap arrives here as an empty one).
pub fn make_payload(
    items: &[KeyToPath],
    config_map: &ConfigMap,
    default_mode: u32,
    optional: bool,
) -> Result<BTreeMap<String, FileProjection>, String> {
    let data = config_map.data.as_ref();
    let binary = config_map.binary_data.as_ref();
    let mut payload = BTreeMap::new();
    if items.is_empty() {
        for (name, value) in data.into_iter().flatten() {
            payload.insert(
                name.clone(),
                FileProjection::new(value.clone().into_bytes(), default_mode),
            );
        }
        for (name, value) in binary.into_iter().flatten() {
            payload.insert(name.clone(), FileProjection::new(value.0.clone(), default_mode));
        }
        return Ok(payload);
    }
    for item in items {
        let content = match (
            data.and_then(|d| d.get(&item.key)),
            binary.and_then(|b| b.get(&item.key)),
        ) {
            (Some(s), _) => s.clone().into_bytes(),
            (None, Some(b)) => b.0.clone(),
            (None, None) if optional => continue,
            (None, None) => return Err(format!("configmap references non-existent config key: {}", item.key)),
        };
        let mode = item.mode.map(|m| m as u32).unwrap_or(default_mode);
        payload.insert(item.path.clone(), FileProjection::new(content, mode));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm() -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": "cfg", "namespace": "ns"},
            "data": {"a": "1", "b": "2"},
            "binaryData": {"bin": "AAEC"}
        }))
        .expect("configmap")
    }

    fn items(v: serde_json::Value) -> Vec<KeyToPath> {
        serde_json::from_value(v).expect("items")
    }

    /// (path, content, mode).
    type File = (&'static str, &'static [u8], u32);

    #[test]
    fn payloads() {
        struct Case {
            why: &'static str,
            items: serde_json::Value,
            optional: bool,
            want: Result<Vec<File>, &'static str>,
        }
        let cases = [
            Case {
                why: "no items: every key, binary too, default mode",
                items: json!([]),
                optional: false,
                want: Ok(vec![("a", b"1", 0o644), ("b", b"2", 0o644), ("bin", &[0, 1, 2], 0o644)]),
            },
            Case {
                why: "items: only those, at their paths, item mode over default",
                items: json!([{"key": "a", "path": "x/a.txt", "mode": 0o400}, {"key": "bin", "path": "b"}]),
                optional: false,
                want: Ok(vec![("b", &[0, 1, 2], 0o644), ("x/a.txt", b"1", 0o400)]),
            },
            Case {
                why: "missing key: upstream's error",
                items: json!([{"key": "nope", "path": "n"}]),
                optional: false,
                want: Err("configmap references non-existent config key: nope"),
            },
            Case {
                why: "missing key of an optional source: skipped",
                items: json!([{"key": "nope", "path": "n"}, {"key": "a", "path": "a"}]),
                optional: true,
                want: Ok(vec![("a", b"1", 0o644)]),
            },
        ];
        for c in cases {
            let got = make_payload(&items(c.items), &cm(), 0o644, c.optional);
            let got = got.map(|p| p.into_iter().map(|(k, v)| (k, v.data, v.mode)).collect::<Vec<_>>());
            let want = c.want.map(|v| {
                v.into_iter()
                    .map(|(k, d, m)| (k.to_string(), d.to_vec(), m))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want.map_err(str::to_string), "{}", c.why);
        }
    }

    #[test]
    fn optional_missing_configmap_is_empty() {
        let empty = ConfigMap::default();
        assert!(make_payload(&[], &empty, 0o644, true).expect("payload").is_empty());
    }
}
