//! The fields upstream's serialization always writes.
//!
//! Upstream encodes objects from Go structs: a non-pointer struct field is
//! written even when empty (`omitempty` never drops a struct) and so is a
//! scalar without `omitempty`. Clients rely on them: the Python client's
//! `svc.status.load_balancer`, `node.spec.taints`, a container's
//! `resources`. k8s-openapi models them as `Option` and drops them, so every
//! built-in object the apiserver returns goes through [`fill`].
//!
//! The table, `data/always_fields.json`, is generated from upstream's Go
//! types of the release we serve by `scripts/gen-always-fields.py`. Per
//! OpenAPI definition it lists the always-written fields with their zero
//! values and where to descend into nested structs; `kinds` maps apiVersion
//! and kind to a definition. Fields Go writes as `null` (a zero `Time`,
//! `RawExtension`) are left out: clients read null and absent alike.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
struct Data {
    release: String,
    /// `"<apiVersion> <Kind>"` to definition name.
    kinds: HashMap<String, String>,
    types: HashMap<String, TypeFields>,
}

#[derive(Deserialize)]
struct TypeFields {
    #[serde(default)]
    always: Map<String, Value>,
    /// Field to (shape, definition).
    #[serde(default)]
    nested: HashMap<String, (Shape, String)>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Shape {
    One,
    List,
    Map,
}

static DATA: LazyLock<Data> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../data/always_fields.json")).expect("always_fields.json is valid")
});

/// The Kubernetes release the table was generated from.
pub fn release() -> &'static str {
    &DATA.release
}

/// The definition an object's apiVersion and kind name, if it is built in.
fn definition_of(obj: &Value) -> Option<&'static str> {
    let av = obj.get("apiVersion")?.as_str()?;
    let kind = obj.get("kind")?.as_str()?;
    DATA.kinds.get(&format!("{av} {kind}")).map(String::as_str)
}

/// Adds, where absent, the fields upstream always writes for `obj`'s kind
/// (found by its apiVersion and kind; other objects are left alone).
pub fn fill(obj: &mut Value) {
    if let Some(def) = definition_of(obj) {
        fill_as(def, obj);
    }
}

/// [`fill`] as definition `def`.
pub fn fill_as(def: &str, obj: &mut Value) {
    let Some(t) = DATA.types.get(def) else { return };
    let Value::Object(map) = obj else { return };
    for (field, zero) in &t.always {
        if !map.contains_key(field) {
            map.insert(field.clone(), zero.clone());
        }
    }
    for (field, (shape, child)) in &t.nested {
        match (shape, map.get_mut(field)) {
            (Shape::One, Some(v @ Value::Object(_))) => fill_as(child, v),
            (Shape::List, Some(Value::Array(items))) => items.iter_mut().for_each(|v| fill_as(child, v)),
            (Shape::Map, Some(Value::Object(m))) => m.values_mut().for_each(|v| fill_as(child, v)),
            _ => {}
        }
    }
}

/// Whether [`fill_as`] would add anything.
fn complete_as(def: &str, obj: &Value) -> bool {
    let Some(t) = DATA.types.get(def) else { return true };
    let Value::Object(map) = obj else { return true };
    t.always.keys().all(|f| map.contains_key(f))
        && t.nested
            .iter()
            .all(|(field, (shape, child))| match (shape, map.get(field)) {
                (Shape::One, Some(v @ Value::Object(_))) => complete_as(child, v),
                (Shape::List, Some(Value::Array(items))) => items.iter().all(|v| complete_as(child, v)),
                (Shape::Map, Some(Value::Object(m))) => m.values().all(|v| complete_as(child, v)),
                _ => true,
            })
}

/// `obj` as upstream would write it: borrowed when nothing is missing.
pub fn filled(obj: &Value) -> Cow<'_, Value> {
    match definition_of(obj) {
        Some(def) if !complete_as(def, obj) => {
            let mut owned = obj.clone();
            fill_as(def, &mut owned);
            Cow::Owned(owned)
        }
        _ => Cow::Borrowed(obj),
    }
}

/// Every built-in kind's definition, for tests.
pub fn kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    DATA.kinds.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// The always-written fields of definition `def` (name and zero value).
pub fn always(def: &str) -> impl Iterator<Item = (&'static str, &'static Value)> {
    DATA.types
        .get(def)
        .into_iter()
        .flat_map(|t| t.always.iter().map(|(k, v)| (k.as_str(), v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upstream_shapes_of_minimal_objects() {
        // What upstream 1.33 returns for these, field for field.
        let cases = [
            (
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                       "spec": {}, "status": {"loadBalancer": {}}}),
            ),
            (
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}),
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"},
                       "spec": {}, "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                                              "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "",
                                                           "kernelVersion": "", "osImage": "",
                                                           "containerRuntimeVersion": "", "kubeletVersion": "",
                                                           "kubeProxyVersion": "", "operatingSystem": "",
                                                           "architecture": ""}}}),
            ),
            (
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": [{"name": "c", "image": "i",
                                                "ports": [{"containerPort": 80}]}]}}),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": [{"name": "c", "image": "i", "resources": {},
                                                "ports": [{"containerPort": 80}]}]},
                       "status": {}}),
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
                       "spec": {"selector": {}}}),
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
                       "spec": {"selector": {}, "template": {"metadata": {}, "spec": {}}, "updateStrategy": {}},
                       "status": {"currentNumberScheduled": 0, "numberMisscheduled": 0,
                                  "desiredNumberScheduled": 0, "numberReady": 0}}),
            ),
            (
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                       "metadata": {"name": "r"}, "subjects": [{"kind": "User", "name": "u"}]}),
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                       "metadata": {"name": "r"}, "subjects": [{"kind": "User", "name": "u"}],
                       "roleRef": {"apiGroup": "", "kind": "", "name": ""}}),
            ),
            (
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}}),
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                       "involvedObject": {}, "source": {}, "reportingComponent": "",
                       "reportingInstance": ""}),
            ),
        ];
        for (input, want) in cases {
            let mut got = input.clone();
            fill(&mut got);
            assert_eq!(got, want, "{input}");
            assert_eq!(*filled(&input), want);
            assert!(
                matches!(filled(&want), Cow::Borrowed(_)),
                "complete objects are not copied"
            );
        }
    }

    #[test]
    fn nested_maps_lists_and_unknown_kinds() {
        // A ServicePort's targetPort is an IntOrString: Go writes 0.
        let mut svc = json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80}]}});
        fill(&mut svc);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 0);
        // Custom resources and unknown kinds are left alone.
        let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {}});
        let mut got = cr.clone();
        fill(&mut got);
        assert_eq!(got, cr);
        // Existing values are never replaced.
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running"}});
        fill(&mut pod);
        assert_eq!(pod["status"], json!({"phase": "Running"}));
        assert_eq!(release(), "v0.33.0");
    }
}
