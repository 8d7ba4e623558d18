//! secret volumes: a file per key (or per listed item), as upstream's
//! `secret.MakePayload` (`pkg/volume/secret/secret.go`). Only `data` counts:
//! `stringData` is folded into it by the apiserver.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{KeyToPath, Secret};

use super::atomic_writer::FileProjection;

/// The files of a secret volume or projection (see `configmap::make_payload`).
pub fn make_payload(
    items: &[KeyToPath],
    secret: &Secret,
    default_mode: u32,
    optional: bool,
) -> Result<BTreeMap<String, FileProjection>, String> {
    let data = secret.data.as_ref();
    let mut payload = BTreeMap::new();
    if items.is_empty() {
        for (name, value) in data.into_iter().flatten() {
            payload.insert(name.clone(), FileProjection::new(value.0.clone(), default_mode));
        }
        return Ok(payload);
    }
    for item in items {
        let Some(content) = data.and_then(|d| d.get(&item.key)) else {
            if optional {
                continue;
            }
            return Err(format!("references non-existent secret key: {}", item.key));
        };
        let mode = item.mode.map(|m| m as u32).unwrap_or(default_mode);
        payload.insert(item.path.clone(), FileProjection::new(content.0.clone(), mode));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret() -> Secret {
        serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "ns"},
            "data": {"user": "YWRtaW4=", "pass": "czNjcjN0"}
        }))
        .expect("secret")
    }

    #[test]
    fn payloads() {
        let items = |v: serde_json::Value| -> Vec<KeyToPath> { serde_json::from_value(v).expect("items") };
        let all = make_payload(&[], &secret(), 0o400, false).expect("all");
        assert_eq!(all.len(), 2);
        assert_eq!(all["user"].data, b"admin");
        assert_eq!(all["pass"].mode, 0o400);

        let some = make_payload(
            &items(json!([{"key": "pass", "path": "p/w", "mode": 0o440}])),
            &secret(),
            0o644,
            false,
        )
        .expect("items");
        assert_eq!(some.keys().collect::<Vec<_>>(), ["p/w"]);
        assert_eq!(some["p/w"].data, b"s3cr3t");
        assert_eq!(some["p/w"].mode, 0o440);

        let err = make_payload(&items(json!([{"key": "x", "path": "x"}])), &secret(), 0o644, false).unwrap_err();
        assert_eq!(err, "references non-existent secret key: x");
        let optional = make_payload(&items(json!([{"key": "x", "path": "x"}])), &secret(), 0o644, true).expect("opt");
        assert!(optional.is_empty());
    }
}
