//! managedFields and server-side apply.
//!
//! Field sets use upstream's FieldsV1 encoding (`f:<field>`, `k:{key}` for
//! list entries with a `name`, `.` for the entry itself). Apply merges the
//! applied configuration into the live object, records the applier's
//! field set, and reports a conflict (409) when a field another applier
//! owns would change value, unless `force` is set. Fields an applier stops
//! applying are removed from the object unless another manager owns them.
//! An update (PUT or a non-apply PATCH) gives its manager what it added or
//! changed and takes that from the other managers, as upstream's
//! structured-merge-diff `Updater.Update` ([`record_update`]).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use apimachinery::strategic::Schema;

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
/// `status_only`, otherwise everything but `status`). With the kind's
/// schema, lists follow their `x-kubernetes-list-type`: a `map` keys its
/// entries by the list-map keys, a `set` by value, anything else is atomic
/// (upstream's structured-merge-diff). Without one (a kind with no schema),
/// lists of named objects are keyed by name.
pub fn fields_of(obj: &Value, status_only: bool, schema: Option<&Schema>) -> Value {
    let mut out = Map::new();
    if let Some(o) = obj.as_object() {
        for (k, v) in o {
            if matches!(k.as_str(), "apiVersion" | "kind") {
                continue;
            }
            if (k == "status") != status_only {
                continue;
            }
            let child = schema.and_then(|s| s.field(k));
            if k == "metadata" {
                let mut m = Map::new();
                if let Some(mo) = v.as_object() {
                    for (mk, mv) in mo {
                        if !SERVER_META.contains(&mk.as_str()) {
                            let grandchild = child.as_ref().and_then(|c| c.field(mk));
                            m.insert(format!("f:{mk}"), set_of(mv, grandchild.as_ref(), schema.is_some()));
                        }
                    }
                }
                if !m.is_empty() {
                    out.insert("f:metadata".into(), Value::Object(m));
                }
                continue;
            }
            out.insert(format!("f:{k}"), set_of(v, child.as_ref(), schema.is_some()));
        }
    }
    Value::Object(out)
}

/// `typed`: the object has a schema (then a node without one is a value
/// the schema does not describe, whose lists are atomic).
fn set_of(v: &Value, schema: Option<&Schema>, typed: bool) -> Value {
    match v {
        Value::Object(o) => {
            let mut m = Map::new();
            for (k, v) in o {
                let child = schema.and_then(|s| s.value_schema(k));
                m.insert(format!("f:{k}"), set_of(v, child.as_ref(), typed));
            }
            Value::Object(m)
        }
        Value::Array(items) if !items.is_empty() => {
            let list_type = schema
                .and_then(|s| s.raw().get("x-kubernetes-list-type"))
                .and_then(Value::as_str);
            let keys: Vec<&str> = schema
                .and_then(|s| s.raw().get("x-kubernetes-list-map-keys"))
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let item_schema = schema.and_then(Schema::items);
            let keyed = match (list_type, typed) {
                (Some("map"), _) if !keys.is_empty() => keys,
                (Some("set"), _) => {
                    let mut m = Map::new();
                    for i in items {
                        m.insert(format!("v:{i}"), json!({}));
                    }
                    return Value::Object(m);
                }
                (None, false) if items.iter().all(|i| i.get("name").is_some_and(Value::is_string)) => vec!["name"],
                _ => return json!({}),
            };
            let mut m = Map::new();
            for i in items {
                let mut key = Map::new();
                for k in &keyed {
                    if let Some(v) = i.get(*k).cloned().or_else(|| key_default(k)) {
                        key.insert(k.to_string(), v);
                    }
                }
                let mut inner = match set_of(i, item_schema.as_ref(), typed) {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                inner.insert(".".into(), json!({}));
                m.insert(format!("k:{}", Value::Object(key)), Value::Object(inner));
            }
            Value::Object(m)
        }
        _ => json!({}),
    }
}

/// A path in a FieldsV1 set, segment by segment (`f:spec`, `k:{"name":"c"}`,
/// and `.` for a list entry as a whole). Segments, not one string: map keys
/// such as annotation names contain `/`.
type Path = Vec<String>;

/// Every path of a FieldsV1 set: its leaves, and the `.` marker of each
/// list entry it owns as a whole.
fn paths(set: &Value) -> BTreeSet<Path> {
    fn walk(set: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
        let Some(o) = set.as_object() else { return };
        if o.is_empty() {
            out.insert(prefix.clone());
            return;
        }
        for (k, v) in o {
            prefix.push(k.clone());
            if k == "." {
                out.insert(prefix.clone());
            } else {
                walk(v, prefix, out);
            }
            prefix.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(set, &mut Vec::new(), &mut out);
    out
}

/// The FieldsV1 set of `paths` (the inverse of [`paths`]).
fn set_of_paths<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for seg in p {
            cur = cur
                .entry(seg.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("sets hold objects");
        }
    }
    Value::Object(root)
}

/// The value at a FieldsV1 path in an object.
fn value_at<'a>(obj: &'a Value, path: &Path) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        if seg == "." {
            continue;
        } else if let Some(f) = seg.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = seg.strip_prefix("k:") {
            let Value::Object(key) = serde_json::from_str::<Value>(k).ok()? else {
                return None;
            };
            cur = cur.as_array()?.iter().find(|i| key_matches(i, &key))?;
        } else if let Some(v) = seg.strip_prefix("v:") {
            let v: Value = serde_json::from_str(v).ok()?;
            cur = cur.as_array()?.iter().find(|i| **i == v)?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// The default of a list-map key field: an entry that leaves the field out
/// has this key (upstream's schema defaults ports' `protocol`).
fn key_default(field: &str) -> Option<Value> {
    (field == "protocol").then(|| json!("TCP"))
}

/// Whether a list entry has the key of a `k:` segment.
fn key_matches(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter()
        .all(|(k, v)| item.get(k).cloned().or_else(|| key_default(k)).as_ref() == Some(v))
}

/// A path as upstream prints it in conflicts: `.spec.containers[name="c"].image`.
fn display(path: &Path) -> String {
    let mut out = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let fields: Vec<String> = match serde_json::from_str::<Value>(k) {
                Ok(Value::Object(m)) => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                _ => vec![k.to_string()],
            };
            out.push_str(&format!("[{}]", fields.join(",")));
        } else if let Some(v) = seg.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// Records an update (or, with `old` None, a create) by `manager` in
/// `new`'s managedFields, as upstream's `Updater.Update`: comparing the
/// field sets of `old` and `new`, the manager's Update entry gains what was
/// added or changed and loses what was removed; every other entry loses
/// what was changed or removed under it; entries left empty go. Entries are
/// kept in upstream's order (operation, time, manager).
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
    schema: Option<&Schema>,
) {
    let status_only = subresource == "status";
    let carries_entries = object::meta(new)
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .is_some_and(|l| !l.is_empty());
    if old.is_none() && !carries_entries {
        // A plain create (the common case, kept cheap): the creator owns
        // every field.
        let set = fields_of(new, status_only, schema);
        if set.as_object().is_some_and(|o| !o.is_empty()) {
            let entry = entry(manager, "Update", api_version, subresource, set);
            object::meta_mut(new).insert("managedFields".into(), json!([entry]));
        }
        return;
    }
    let old_paths = old
        .map(|o| paths(&fields_of(o, status_only, schema)))
        .unwrap_or_default();
    let new_paths = paths(&fields_of(new, status_only, schema));
    let removed: BTreeSet<&Path> = old_paths.difference(&new_paths).collect();
    let mut changed: BTreeSet<&Path> = new_paths.difference(&old_paths).collect();
    if let Some(old) = old {
        changed.extend(
            old_paths
                .intersection(&new_paths)
                .filter(|p| p.last().is_none_or(|s| s != ".") && value_at(old, p) != value_at(new, p)),
        );
    }
    // The entries the request carries, or (when it carries none, as a
    // client unaware of them sends) the live object's.
    let listed = |o: &Value| {
        object::meta(o)
            .and_then(|m| m.get("managedFields"))
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
            .cloned()
    };
    let entries: Vec<Value> = listed(new).or_else(|| old.and_then(listed)).unwrap_or_default();
    if changed.is_empty() && removed.is_empty() {
        // Nothing changed: no entry moves, no time is touched (upstream
        // keeps the old timestamps).
        object::meta_mut(new).insert("managedFields".into(), Value::Array(entries));
        return;
    }
    let is_mine = |e: &Value| {
        e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some("Update")
            && e.get("subresource").and_then(Value::as_str).unwrap_or("") == subresource
    };
    let mut mine: BTreeSet<Path> = BTreeSet::new();
    let mut kept = Vec::new();
    for mut e in entries {
        let owned = paths(e.get("fieldsV1").unwrap_or(&Value::Null));
        if is_mine(&e) {
            mine = owned;
            continue;
        }
        let left: BTreeSet<&Path> = owned
            .iter()
            .filter(|p| !removed.contains(p) && !changed.contains(p))
            .collect();
        if left.len() != owned.len() {
            if left.is_empty() {
                continue;
            }
            e["fieldsV1"] = set_of_paths(left);
        }
        kept.push(e);
    }
    mine.retain(|p| !removed.contains(p));
    mine.extend(changed.into_iter().cloned());
    if !mine.is_empty() {
        kept.push(entry(manager, "Update", api_version, subresource, set_of_paths(&mine)));
    }
    sort_entries(&mut kept);
    object::meta_mut(new).insert("managedFields".into(), Value::Array(kept));
}

/// [`record_update`] with the kind's schema.
pub fn record_update_for(ctx: &Ctx, old: Option<&Value>, new: &mut Value, subresource: &str) {
    let schemas = ctx.server.openapi.schemas();
    let schema = Schema::new(&schemas, &ctx.rt.schema_name);
    let manager = ctx.field_manager();
    record_update(old, new, &manager, &ctx.rt.api_version(), subresource, schema.as_ref());
}

/// managedFields of an object server-side apply creates: the applier's
/// Apply entry, owning exactly what it applied.
pub fn record_apply_create(ctx: &Ctx, applied: &Value, obj: &mut Value) {
    let schemas = ctx.server.openapi.schemas();
    let schema = Schema::new(&schemas, &ctx.rt.schema_name);
    let entry = entry(
        ctx.query.str("fieldManager"),
        "Apply",
        &ctx.rt.api_version(),
        "",
        fields_of(applied, false, schema.as_ref()),
    );
    object::meta_mut(obj).insert("managedFields".into(), json!([entry]));
}

/// One managedFields entry, stamped now.
fn entry(manager: &str, operation: &str, api_version: &str, subresource: &str, set: Value) -> Value {
    let mut e = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": object::now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": set,
    });
    if !subresource.is_empty() {
        e["subresource"] = json!(subresource);
    }
    e
}

/// Upstream's order of managedFields: by operation (Apply before Update),
/// then time, then manager.
fn sort_entries(entries: &mut [Value]) {
    let key = |e: &Value| {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        (s("operation"), s("time"), s("manager"), s("subresource"))
    };
    entries.sort_by_key(key);
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
    let schemas = ctx.server.openapi.schemas();
    let schema = Schema::new(&schemas, &ctx.rt.schema_name);
    let applied_set = fields_of(applied, status_only, schema.as_ref());
    let mine = paths(&applied_set);
    // Conflicts with other appliers.
    let managed = object::meta(current)
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut merged = if ctx.rt.is_custom() {
        let mut d = current.clone();
        json_patch::merge(&mut d, applied);
        d
    } else {
        apimachinery::strategic::apply(current, applied, schema.as_ref())
            .map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    // A field conflicts when the apply changes its value: compared with
    // the merged object as it will be stored (defaults filled in, so that
    // applying what defaulting already added is no change).
    let mut result = merged.clone();
    crate::strategy::default(&ctx.rt, &mut result);
    // (manager as upstream prints it, manager name, path)
    let mut conflicts: Vec<(String, String, Path)> = Vec::new();
    for entry in &managed {
        let s = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or("");
        let other = s("manager");
        if other == manager && s("operation") == "Apply" {
            continue;
        }
        let theirs = paths(entry.get("fieldsV1").unwrap_or(&Value::Null));
        for path in mine.intersection(&theirs) {
            if path.last().is_some_and(|s| s == ".") {
                continue;
            }
            // A field gone from the object (removed by an update) has no
            // owner any more.
            let live = value_at(current, path);
            if live.is_some() && live != value_at(&result, path) {
                conflicts.push((print_manager(entry), other.to_string(), path.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
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
                for (_, _, p) in conflicts.iter().filter(|(_, m, _)| *m == owner) {
                    remove_path(set, p);
                }
            }
        }
    }
    let subresource = if status_only { "status" } else { "" };
    entries.push(entry(
        &manager,
        "Apply",
        &ctx.rt.api_version(),
        subresource,
        applied_set,
    ));
    sort_entries(&mut entries);
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
            let matches = |i: &Value| key_matches(i, &key);
            if released && owned_whole {
                items.retain(|i| !matches(i));
            } else if let Some(child) = items.iter_mut().find(|i| matches(i)) {
                prune(child, prev_child, now_child, &other_children);
            }
        } else if let Some(value) = k.strip_prefix("v:") {
            // A set's member.
            let (Ok(value), Some(items)) = (serde_json::from_str::<Value>(value), obj.as_array_mut()) else {
                continue;
            };
            if released {
                items.retain(|i| *i != value);
            }
        }
    }
}

fn remove_path(set: &mut Value, path: &Path) {
    fn rec(v: &mut Value, segs: &[String]) {
        let Some((first, rest)) = segs.split_first() else {
            return;
        };
        if let Some(o) = v.as_object_mut() {
            if rest.is_empty() {
                o.remove(first);
            } else if let Some(child) = o.get_mut(first) {
                rec(child, rest);
            }
        }
    }
    rec(set, path);
}

/// A manager as upstream names it in conflicts: `"kubectl"`, with
/// `using apps/v1` for an updater and the subresource if any.
fn print_manager(entry: &Value) -> String {
    let s = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or("");
    let mut out = format!("{:?}", s("manager"));
    if !s("subresource").is_empty() {
        out.push_str(&format!(" with subresource {:?}", s("subresource")));
    }
    if s("operation") == "Update" {
        out.push_str(&format!(" using {}", s("apiVersion")));
    }
    out
}

/// Upstream's 409 for apply conflicts: one line for one conflict, else the
/// paths grouped by manager; a cause per conflict.
fn conflict_error(conflicts: &[(String, String, Path)]) -> ApiError {
    let message = if let [(who, _, path)] = conflicts {
        format!("Apply failed with 1 conflict: conflict with {who}: {}", display(path))
    } else {
        let mut by_manager: std::collections::BTreeMap<&str, Vec<&Path>> = Default::default();
        for (who, _, path) in conflicts {
            by_manager.entry(who).or_default().push(path);
        }
        let mut lines = Vec::new();
        for (who, paths) in by_manager {
            lines.push(format!("conflicts with {who}:"));
            lines.extend(paths.iter().map(|p| format!("- {}", display(p))));
        }
        format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
    };
    let causes = conflicts
        .iter()
        .map(|(who, _, path)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {who}"), "field": display(path)})
        })
        .collect();
    ApiError::ApplyConflict { message, causes }
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
        let set = fields_of(&obj, false, None);
        assert_eq!(
            set,
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}
            })
        );
        let image: Path = ["f:spec", "f:containers", "k:{\"name\":\"c\"}", "f:image"]
            .map(String::from)
            .to_vec();
        assert!(paths(&set).contains(&image));
        assert_eq!(value_at(&obj, &image), Some(&json!("i")));
        assert_eq!(display(&image), ".spec.containers[name=\"c\"].image");
        assert_eq!(set_of_paths(&paths(&set)), set);
        assert_eq!(fields_of(&obj, true, None), json!({"f:status": {"f:phase": {}}}));
    }

    #[test]
    fn lists_follow_their_list_type() {
        let schemas = json!({
            "Obj": {"properties": {
                "metadata": {"properties": {"finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}}},
                "spec": {"properties": {
                    "ports": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                              "items": {"properties": {"containerPort": {"type": "integer"}}}},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "named": {"type": "array", "items": {"properties": {"name": {"type": "string"}}}},
                }},
            }},
        });
        let schema = Schema::new(&schemas, "Obj");
        let obj = json!({
            "metadata": {"finalizers": ["a/b"]},
            "spec": {"ports": [{"containerPort": 80}], "args": ["x"], "named": [{"name": "n"}]},
        });
        let set = fields_of(&obj, false, schema.as_ref());
        assert_eq!(
            set,
            json!({
                "f:metadata": {"f:finalizers": {"v:\"a/b\"": {}}},
                "f:spec": {
                    // A key field left out takes its default.
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
                    "f:args": {},
                    // No list type: atomic, as upstream.
                    "f:named": {},
                },
            })
        );
        let port: Path = [
            "f:spec",
            "f:ports",
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}",
            "f:containerPort",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(value_at(&obj, &port), Some(&json!(80)));
        assert_eq!(
            display(&port),
            ".spec.ports[containerPort=80,protocol=\"TCP\"].containerPort"
        );
        let finalizer: Path = ["f:metadata", "f:finalizers", "v:\"a/b\""].map(String::from).to_vec();
        assert_eq!(value_at(&obj, &finalizer), Some(&json!("a/b")));
        assert_eq!(display(&finalizer), ".metadata.finalizers[=\"a/b\"]");
    }

    #[test]
    fn updates_take_only_what_they_change() {
        let mut obj = json!({
            "metadata": {"name": "d", "annotations": {"example.com/a": "1"}},
            "spec": {"replicas": 1, "containers": [{"name": "c", "image": "i:1"}]},
        });
        record_update(None, &mut obj, "creator", "v1", "", None);
        let created = obj.clone();
        let entries = |o: &Value| o["metadata"]["managedFields"].clone();
        assert_eq!(
            entries(&obj)[0]["fieldsV1"],
            json!({
                "f:metadata": {"f:annotations": {"f:example.com/a": {}}},
                "f:spec": {"f:replicas": {}, "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}, "f:image": {}}}},
            })
        );
        // Another manager changes the image and drops the annotation.
        obj["spec"]["containers"][0]["image"] = json!("i:2");
        obj["metadata"].as_object_mut().unwrap().remove("annotations");
        record_update(Some(&created), &mut obj, "setter", "v1", "", None);
        let e = entries(&obj);
        assert_eq!(e.as_array().unwrap().len(), 2);
        assert_eq!(e[0]["manager"], "creator");
        assert_eq!(
            e[0]["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}, "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}}}}})
        );
        assert_eq!(e[1]["manager"], "setter");
        assert_eq!(
            e[1]["fieldsV1"],
            json!({"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {"f:image": {}}}}})
        );
        // A request that carries no managedFields keeps the live ones; a
        // change of nothing adds no entry.
        let before = obj.clone();
        let mut same = before.clone();
        same["metadata"].as_object_mut().unwrap().remove("managedFields");
        record_update(Some(&before), &mut same, "noop", "v1", "", None);
        assert_eq!(entries(&same), entries(&before));
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
