//! Custom resources: CustomResourceDefinitions turned into served resource
//! types, and their objects pruned, defaulted and validated against the
//! CRD's structural schema.

use serde_json::{Map, Value, json};

use apimachinery::validation::FieldError;

use crate::registry::{Registry, ResourceType};

/// Normalizes an object of `rt`: built-ins through their typed form,
/// custom resources by pruning and defaulting per schema.
pub fn normalize(rt: &ResourceType, obj: Value) -> Result<Value, String> {
    if let Some(f) = rt.normalize {
        return f(obj).map_err(|e| e.to_string());
    }
    let mut obj = obj;
    if let Some(meta) = obj.get("metadata")
        && !meta.is_object()
    {
        return Err("metadata must be an object".into());
    }
    if let Some(schema) = &rt.crd_schema {
        prune_and_default(&mut obj, schema, true);
    }
    Ok(obj)
}

fn preserves(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

/// Drops fields the schema does not declare (unless it preserves unknown
/// fields) and fills `default`s, recursively.
fn prune_and_default(v: &mut Value, schema: &Value, root: bool) {
    match v {
        Value::Object(o) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if let Some(props) = props {
                for (k, ps) in props {
                    if !o.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        o.insert(k.clone(), d.clone());
                    }
                }
            }
            let keep_unknown = preserves(schema);
            let keys: Vec<String> = o.keys().cloned().collect();
            for k in keys {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&k)).or(additional);
                match sub {
                    Some(s) => {
                        if let Some(x) = o.get_mut(&k) {
                            prune_and_default(x, s, false);
                        }
                    }
                    None if keep_unknown => {}
                    None => {
                        o.remove(&k);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for i in items {
                    prune_and_default(i, s, false);
                }
            }
        }
        _ => {}
    }
}

/// Validates a custom object against its schema.
pub fn validate(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(schema) = &rt.crd_schema {
        let mut o = obj.clone();
        if let Some(m) = o.as_object_mut() {
            m.remove("metadata");
            m.remove("apiVersion");
            m.remove("kind");
        }
        let mut s = schema.clone();
        if let Some(p) = s.get_mut("properties").and_then(Value::as_object_mut) {
            p.remove("metadata");
            p.remove("apiVersion");
            p.remove("kind");
        }
        if let Some(r) = s.get_mut("required").and_then(Value::as_array_mut) {
            r.retain(|x| !matches!(x.as_str(), Some("metadata" | "apiVersion" | "kind")));
        }
        check(&o, &s, "", &mut errs);
    }
    errs
}

/// Upstream's `ValidateScaleSpec` (with `spec`) and `ValidateScaleStatus`:
/// the scale subresource's replica paths hold integers from 0 to 2^31-1,
/// and its label selector path a string.
pub fn validate_scale(rt: &ResourceType, obj: &Value, spec: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(scale) = &rt.scale_paths else {
        return errs;
    };
    let path_of = |key: &str| scale.get(key).and_then(Value::as_str);
    let mut replicas = vec![path_of("statusReplicasPath")];
    if spec {
        replicas.insert(0, path_of("specReplicasPath"));
    }
    for path in replicas.into_iter().flatten() {
        match nested(obj, path) {
            Ok(None) => {}
            Ok(Some(Value::Number(n))) if n.is_i64() => {
                let n = n.as_i64().unwrap_or(0);
                if n < 0 {
                    errs.push(FieldError::invalid(path, json!(n), "should be a non-negative integer"));
                } else if n > i64::from(i32::MAX) {
                    errs.push(FieldError::invalid(
                        path,
                        json!(n),
                        format!("should be less than or equal to {}", i32::MAX),
                    ));
                }
            }
            Ok(Some(other)) => errs.push(FieldError::invalid(
                path,
                json!(0),
                accessor_error(path, other, "int64"),
            )),
            Err(e) => errs.push(FieldError::invalid(path, json!(0), e)),
        }
    }
    if let Some(path) = path_of("labelSelectorPath") {
        match nested(obj, path) {
            Ok(None | Some(Value::String(_))) => {}
            Ok(Some(other)) => errs.push(FieldError::invalid(
                path,
                json!(""),
                accessor_error(path, other, "string"),
            )),
            Err(e) => errs.push(FieldError::invalid(path, json!(""), e)),
        }
    }
    errs
}

/// The value at a `.a.b.c` path (Go's `unstructured.NestedFieldNoCopy`):
/// `None` when absent, an error when a parent is not an object.
fn nested<'a>(obj: &'a Value, path: &str) -> Result<Option<&'a Value>, String> {
    let fields: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let mut cur = obj;
    for (i, f) in fields.iter().enumerate() {
        let Value::Object(m) = cur else {
            let parent = format!(".{}", fields[..i].join("."));
            return Err(accessor_error(&parent, cur, "map[string]interface{}"));
        };
        match m.get(*f) {
            Some(v) => cur = v,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// Go's `unstructured` accessor error: `.a.b accessor error: x is of the
/// type string, expected int64`.
fn accessor_error(path: &str, v: &Value, expected: &str) -> String {
    let (text, go_type) = match v {
        Value::Null => ("<nil>".to_string(), "<nil>"),
        Value::Bool(b) => (b.to_string(), "bool"),
        Value::Number(n) if n.is_i64() => (n.to_string(), "int64"),
        Value::Number(n) => (n.to_string(), "float64"),
        Value::String(s) => (s.clone(), "string"),
        Value::Array(_) => (v.to_string(), "[]interface {}"),
        Value::Object(_) => (v.to_string(), "map[string]interface {}"),
    };
    format!(
        ".{} accessor error: {text} is of the type {go_type}, expected {expected}",
        path.trim_start_matches('.')
    )
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn child(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn check(v: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let int_or_string = s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if v.is_null() {
        if s.get("nullable") != Some(&Value::Bool(true)) && s.get("type").is_some() {
            errs.push(FieldError::invalid(
                path,
                Value::Null,
                format!(
                    "{path} in body must be of type {}: \"null\"",
                    s["type"].as_str().unwrap_or("")
                ),
            ));
        }
        return;
    }
    if let Some(want) = s.get("type").and_then(Value::as_str) {
        let got = type_name(v);
        let ok = got == want
            || (want == "number" && got == "integer")
            || (int_or_string && matches!(got, "integer" | "string"));
        if !ok {
            errs.push(FieldError::invalid(
                path,
                v.clone(),
                format!("{path} in body must be of type {want}: \"{got}\""),
            ));
            return;
        }
    }
    if let Some(en) = s.get("enum").and_then(Value::as_array)
        && !en.contains(v)
    {
        let allowed: Vec<String> = en.iter().map(|x| x.to_string()).collect();
        errs.push(FieldError {
            kind: apimachinery::validation::ErrorType::NotSupported,
            field: path.to_string(),
            bad_value: Some(v.clone()),
            detail: format!("supported values: {}", allowed.join(", ")),
        });
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                errs.push(FieldError::invalid(
                    path,
                    v.clone(),
                    format!("{path} in body should be greater than or equal to {min}"),
                ));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                errs.push(FieldError::invalid(
                    path,
                    v.clone(),
                    format!("{path} in body should be less than or equal to {max}"),
                ));
            }
        }
        Value::String(st) => {
            let len = st.chars().count() as u64;
            if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                errs.push(FieldError::invalid(
                    path,
                    v.clone(),
                    format!("{path} in body should be at least {min} chars long"),
                ));
            }
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                errs.push(FieldError::too_long(path, v.clone(), max as usize));
            }
        }
        Value::Array(items) => {
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                errs.push(FieldError::too_many(path, Some(items.len()), Some(max as usize)));
            }
            if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                errs.push(FieldError::invalid(
                    path,
                    v.clone(),
                    format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(is) = s.get("items") {
                for (i, it) in items.iter().enumerate() {
                    check(it, is, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(o) => {
            if let Some(req) = s.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !o.contains_key(r) {
                        errs.push(FieldError::required(child(path, r), ""));
                    }
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, x) in o {
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    check(x, ps, &child(path, k), errs);
                } else if let Some(a) = s.get("additionalProperties").filter(|a| a.is_object()) {
                    check(x, a, &child(path, k), errs);
                }
            }
        }
        _ => {}
    }
}

/// Validates a CRD beyond its typed shape.
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("");
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("");
    let name = crate::object::name(crd);
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if crd
        .pointer("/spec/names/kind")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    if name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&Value::Bool(true)))
        .count();
    if !versions.is_empty() && storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if v.pointer("/schema/openAPIV3Schema").is_none() {
            errs.push(FieldError::required(
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            ));
        }
    }
    errs
}

/// The resource types a CRD serves.
pub fn resource_types(crd: &Value) -> Vec<ResourceType> {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let s = |k: &str| names.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let list = |k: &str| -> Vec<String> {
        names
            .get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default()
    };
    let kind = s("kind");
    let plural = s("plural");
    let singular = if s("singular").is_empty() {
        kind.to_lowercase()
    } else {
        s("singular")
    };
    let list_kind = if s("listKind").is_empty() {
        format!("{kind}List")
    } else {
        s("listKind")
    };
    let namespaced = crd.pointer("/spec/scope").and_then(Value::as_str) != Some("Cluster");
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served") != Some(&Value::Bool(false)))
        .map(|v| {
            let mut subs = Vec::new();
            if v.pointer("/subresources/status").is_some() {
                subs.push("status".to_string());
            }
            if v.pointer("/subresources/scale").is_some() {
                subs.push("scale".to_string());
            }
            ResourceType {
                group: group.clone(),
                version: v.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                kind: kind.clone(),
                list_kind: list_kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced,
                short_names: list("shortNames"),
                categories: list("categories"),
                subresources: subs,
                stored: true,
                verbs: vec![
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "create",
                    "update",
                    "watch",
                ],
                key_prefix: format!("/registry/{group}/{plural}/"),
                normalize: None,
                schema: None,
                schema_name: {
                    let mut parts: Vec<&str> = group.split('.').collect();
                    parts.reverse();
                    format!(
                        "{}.{}.{kind}",
                        parts.join("."),
                        v.get("name").and_then(Value::as_str).unwrap_or("")
                    )
                },
                crd_schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns: v.get("additionalPrinterColumns").cloned().or(Some(json!([]))),
                scale_paths: v.pointer("/subresources/scale").cloned(),
                return_deleted_object: false,
            }
        })
        .collect()
}

/// Registers (or unregisters, when `deleted`) a CRD's resources.
pub fn sync(registry: &Registry, crd: &Value, deleted: bool) {
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or("");
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("");
    if group.is_empty() || plural.is_empty() {
        return;
    }
    let types = if deleted { Vec::new() } else { resource_types(crd) };
    registry.set_custom(group, plural, types);
}

/// The status a CRD gets once its names are accepted.
pub fn established_status(crd: &Value) -> Value {
    let now = crate::object::now();
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut accepted = names.as_object().cloned().unwrap_or_else(Map::new);
    if !accepted.contains_key("singular")
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        accepted.insert("singular".into(), json!(k.to_lowercase()));
    }
    if !accepted.contains_key("listKind")
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        accepted.insert("listKind".into(), json!(format!("{k}List")));
    }
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage") == Some(&Value::Bool(true)))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "acceptedNames": accepted,
        "storedVersions": storage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "required": ["size"], "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                        }},
                        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
                    }}}}]}
        })
    }

    #[test]
    fn crd_objects_are_pruned_defaulted_and_validated() {
        let c = crd();
        assert!(validate_crd(&c).is_empty());
        let rts = resource_types(&c);
        assert_eq!(rts.len(), 1);
        let rt = &rts[0];
        assert!(rt.has_subresource("scale"));
        let obj = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
            "spec": {"size": 3, "bogus": 1, "free": {"x": 1}}, "top": 1});
        let n = normalize(rt, obj).expect("normalize");
        assert_eq!(n["spec"]["color"], "red");
        assert!(n["spec"].get("bogus").is_none());
        assert!(n.get("top").is_none());
        assert_eq!(n["spec"]["free"]["x"], 1);
        assert!(validate(rt, &n).is_empty());
        let bad = json!({"metadata": {"name": "a"}, "spec": {"size": 0, "color": "green"}});
        let errs = validate(rt, &bad);
        assert_eq!(errs.len(), 2, "{errs:?}");
        let missing = json!({"metadata": {"name": "a"}, "spec": {}});
        assert_eq!(validate(rt, &missing)[0].field, "spec.size");
        let wrong = json!({"metadata": {"name": "a"}, "spec": {"size": "big"}});
        assert!(validate(rt, &wrong)[0].message().contains("must be of type integer"));
    }

    #[test]
    fn scale_paths_hold_non_negative_integers() {
        let rt = &resource_types(&crd())[0];
        let messages = |obj: Value, spec: bool| -> Vec<String> {
            validate_scale(rt, &obj, spec).iter().map(FieldError::message).collect()
        };
        assert!(messages(json!({"spec": {"replicas": 2}, "status": {"replicas": 1}}), true).is_empty());
        assert!(messages(json!({"spec": {}}), true).is_empty(), "absent paths are zero");
        assert_eq!(
            messages(json!({"spec": {"replicas": -1}, "status": {"replicas": -2}}), true),
            [
                ".spec.replicas: Invalid value: -1: should be a non-negative integer",
                ".status.replicas: Invalid value: -2: should be a non-negative integer",
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"replicas": -1}, "status": {"replicas": "two"}}), false),
            [
                ".status.replicas: Invalid value: 0: .status.replicas accessor error: two is of the type string, expected int64"
            ],
            "a status write checks only the status path"
        );
    }
}
