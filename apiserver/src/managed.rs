//! managedFields and server-side apply.
//!
//! Field sets use upstream's FieldsV1 encoding (`f:<field>`, `k:{key}` for
//! list entries with a `name`, `.` for the entry itself). Apply merges the
//! applied configuration into the live object, records the applier's
//! field set, and reports a conflict (409) when a field another applier
//! owns would change value, unless `force` is set. Fields an applier stops
//! applying are removed from the object unless another manager owns them.

use serde_json::{Map, Value, json};

use crate::object;
use crate::rest::Ctx;
use crate::status::{ApiError, ApiResult};

/// Metadata fields that belong to the server, never to a manager.
const SERVER_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The FieldsV1 set of every leaf of `obj` (only `status` when
/// `status_only`, otherwise everything but `status`).
pub fn fields_of(obj: &Value, status_only: bool) -> Value {
    let mut out = Map::new();
    if let Some(o) = obj.as_object() {
        for (k, v) in o {
            if matches!(k.as_str(), "apiVersion" | "kind") {
                continue;
            }
            if (k == "status") != status_only {
                continue;
            }
            if k == "metadata" {
                let mut m = Map::new();
                if let Some(mo) = v.as_object() {
                    for (mk, mv) in mo {
                        if !SERVER_META.contains(&mk.as_str()) {
                            m.insert(format!("f:{mk}"), set_of(mv));
                        }
                    }
                }
                if !m.is_empty() {
                    out.insert("f:metadata".into(), Value::Object(m));
                }
                continue;
            }
            out.insert(format!("f:{k}"), set_of(v));
        }
    }
    Value::Object(out)
}

fn set_of(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut m = Map::new();
            for (k, v) in o {
                m.insert(format!("f:{k}"), set_of(v));
            }
            Value::Object(m)
        }
        Value::Array(items)
            if items.iter().all(|i| i.get("name").is_some_and(Value::is_string)) && !items.is_empty() =>
        {
            let mut m = Map::new();
            for i in items {
                let key = format!("k:{}", json!({"name": i["name"]}));
                let mut inner = match set_of(i) {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                inner.insert(".".into(), json!({}));
                m.insert(key, Value::Object(inner));
            }
            Value::Object(m)
        }
        _ => json!({}),
    }
}

/// Leaf paths of a FieldsV1 set.
fn leaves(set: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(o) = set.as_object() {
        if o.is_empty() {
            out.push(prefix.to_string());
            return;
        }
        for (k, v) in o {
            if k == "." {
                continue;
            }
            leaves(v, &format!("{prefix}/{k}"), out);
        }
    }
}

/// The value at a FieldsV1 path in an object.
fn value_at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if let Some(f) = seg.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = seg.strip_prefix("k:") {
            let key: Value = serde_json::from_str(k).ok()?;
            let name = key.get("name")?;
            cur = cur.as_array()?.iter().find(|i| i.get("name") == Some(name))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

pub fn server_side_apply(ctx: &Ctx, current: &Value, applied: &Value, force: bool) -> ApiResult<Value> {
    let manager = ctx.query.str("fieldManager").to_string();
    let av = applied.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = applied.get("kind").and_then(Value::as_str).unwrap_or("");
    if av.is_empty() || kind.is_empty() {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an apply configuration",
        ));
    }
    let status_only = ctx.info.subresource == "status";
    let applied_set = fields_of(applied, status_only);
    let mut mine = Vec::new();
    leaves(&applied_set, "", &mut mine);
    // Conflicts with other appliers.
    let managed = object::meta(current)
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut conflicts = Vec::new();
    for entry in &managed {
        let other = entry.get("manager").and_then(Value::as_str).unwrap_or("");
        if other == manager {
            continue;
        }
        let mut theirs = Vec::new();
        leaves(entry.get("fieldsV1").unwrap_or(&Value::Null), "", &mut theirs);
        for path in &mine {
            // A field gone from the object (removed by an update) has no
            // owner any more.
            let live = value_at(current, path);
            if theirs.contains(path) && live.is_some() && live != value_at(applied, path) {
                conflicts.push((other.to_string(), path.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let detail = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": {}", p.replace("/f:", ".").replace("f:", "")))
            .collect::<Vec<_>>()
            .join("\n- ");
        return Err(ApiError::Conflict {
            target: ctx.target(&ctx.info.name),
            message: format!(
                "Apply failed with {} conflict{}: {detail}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" }
            ),
        });
    }
    let schemas = ctx.server.openapi.schemas();
    let schema = apimachinery::strategic::Schema::new(&schemas, &ctx.rt.schema_name);
    let mut merged = if ctx.rt.is_custom() {
        let mut d = current.clone();
        json_patch::merge(&mut d, applied);
        d
    } else {
        apimachinery::strategic::apply(current, applied, schema.as_ref())
            .map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    // Fields this manager applied last time and no longer applies go,
    // unless another manager owns them.
    let previous = managed.iter().find(|e| {
        e.get("manager").and_then(Value::as_str) == Some(manager.as_str())
            && e.get("operation").and_then(Value::as_str) == Some("Apply")
            && (e.get("subresource").and_then(Value::as_str) == Some("status")) == status_only
    });
    if let Some(prev) = previous.and_then(|e| e.get("fieldsV1")) {
        let others: Vec<&Value> = managed
            .iter()
            .filter(|e| !std::ptr::eq(*e, previous.unwrap_or(&Value::Null)))
            .filter_map(|e| e.get("fieldsV1"))
            .collect();
        prune(&mut merged, prev, Some(&applied_set), &others);
    }
    // Record ownership: the applier owns what it applied; forced fields are
    // taken from their previous owners.
    let mut entries: Vec<Value> = managed
        .into_iter()
        .filter(|e| {
            e.get("manager").and_then(Value::as_str) != Some(manager.as_str())
                || e.get("operation").and_then(Value::as_str) != Some("Apply")
        })
        .collect();
    if force {
        for e in &mut entries {
            let owner = e.get("manager").and_then(Value::as_str).unwrap_or("").to_string();
            if let Some(set) = e.get_mut("fieldsV1") {
                for (_, p) in conflicts.iter().filter(|(m, _)| *m == owner) {
                    remove_path(set, p);
                }
            }
        }
    }
    let mut entry = json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": ctx.rt.api_version(),
        "time": object::now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": applied_set,
    });
    if status_only {
        entry["subresource"] = json!("status");
    }
    entries.push(entry);
    object::meta_mut(&mut merged).insert("managedFields".into(), Value::Array(entries));
    Ok(merged)
}

/// Removes from `obj` what the set `prev` names and neither `now` nor any
/// of `others` does (all FieldsV1 sets at the same level as `obj`). A
/// released leaf or list entry (`.`) goes whole; a released map or struct
/// loses only what was owned in it (and goes if that leaves it empty).
fn prune(obj: &mut Value, prev: &Value, now: Option<&Value>, others: &[&Value]) {
    let Some(prev) = prev.as_object() else { return };
    for (k, prev_child) in prev {
        if k == "." {
            continue;
        }
        let now_child = now.and_then(|n| n.get(k));
        let other_children: Vec<&Value> = others.iter().filter_map(|o| o.get(k)).collect();
        let released = now_child.is_none() && other_children.is_empty();
        let owned_whole = prev_child
            .as_object()
            .is_none_or(|c| c.is_empty() || c.contains_key("."));
        if let Some(field) = k.strip_prefix("f:") {
            let Some(o) = obj.as_object_mut() else { continue };
            if released && owned_whole {
                o.remove(field);
            } else if let Some(child) = o.get_mut(field) {
                prune(child, prev_child, now_child, &other_children);
                if released && field != "metadata" && child.as_object().is_some_and(Map::is_empty) {
                    o.remove(field);
                }
            }
        } else if let Some(key) = k.strip_prefix("k:") {
            let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
                continue;
            };
            let Some(items) = obj.as_array_mut() else { continue };
            let matches = |i: &Value| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv));
            if released && owned_whole {
                items.retain(|i| !matches(i));
            } else if let Some(child) = items.iter_mut().find(|i| matches(i)) {
                prune(child, prev_child, now_child, &other_children);
            }
        }
    }
}

fn remove_path(set: &mut Value, path: &str) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    fn rec(v: &mut Value, segs: &[&str]) {
        let Some((first, rest)) = segs.split_first() else {
            return;
        };
        if let Some(o) = v.as_object_mut() {
            if rest.is_empty() {
                o.remove(*first);
            } else if let Some(child) = o.get_mut(*first) {
                rec(child, rest);
            }
        }
    }
    rec(set, &segs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sets_use_fieldsv1_encoding() {
        let obj = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "labels": {"app": "x"}, "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Pending"}
        });
        let set = fields_of(&obj, false);
        assert_eq!(
            set,
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}
            })
        );
        let mut l = Vec::new();
        leaves(&set, "", &mut l);
        assert!(l.contains(&"/f:spec/f:containers/k:{\"name\":\"c\"}/f:image".to_string()));
        assert_eq!(
            value_at(&obj, "/f:spec/f:containers/k:{\"name\":\"c\"}/f:image"),
            Some(&json!("i"))
        );
        assert_eq!(fields_of(&obj, true), json!({"f:status": {"f:phase": {}}}));
    }

    #[test]
    fn released_fields_go_unless_another_manager_owns_them() {
        let mut obj = json!({
            "metadata": {"name": "n", "labels": {"a": "1", "b": "2", "c": "3"}, "annotations": {"x": "1"}},
            "spec": {"containers": [{"name": "x", "image": "i"}, {"name": "y", "image": "j"}]},
        });
        let prev = json!({
            "f:metadata": {"f:labels": {"f:a": {}, "f:b": {}, "f:c": {}}, "f:annotations": {"f:x": {}}},
            "f:spec": {"f:containers": {
                "k:{\"name\":\"x\"}": {".": {}, "f:name": {}, "f:image": {}},
                "k:{\"name\":\"y\"}": {".": {}, "f:name": {}, "f:image": {}},
            }},
        });
        let now = json!({
            "f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"x\"}": {".": {}, "f:name": {}, "f:image": {}}}},
        });
        let other = json!({"f:metadata": {"f:labels": {"f:c": {}}}});
        prune(&mut obj, &prev, Some(&now), &[&other]);
        assert_eq!(
            obj,
            json!({
                "metadata": {"name": "n", "labels": {"a": "1", "c": "3"}},
                "spec": {"containers": [{"name": "x", "image": "i"}]},
            })
        );
    }
}
