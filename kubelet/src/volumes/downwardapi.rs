//! The downward API: pod fields and container resources as text, shared by
//! downwardAPI volumes (and projections) and container environment
//! variables. Upstream: `pkg/volume/downwardapi`, `pkg/fieldpath`,
//! `pkg/api/v1/resource` (`ExtractContainerResourceValue`).

use std::collections::BTreeMap;

use apimachinery::quantity::Quantity as Q;
use apimachinery::validation::go_quote;
use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::atomic_writer::{FileProjection, clean_path};

/// Files of a downwardAPI volume or projection, keyed by their cleaned path
/// (upstream's `CollectData`): every item is tried, errors are collected
/// (an item that fails is left out), an item with neither ref is an empty file.
pub fn collect_data(
    items: &[DownwardAPIVolumeFile],
    pod: &Pod,
    node_allocatable: &BTreeMap<String, Quantity>,
    default_mode: u32,
) -> (BTreeMap<String, FileProjection>, Vec<String>) {
    let mut data = BTreeMap::new();
    let mut errors = Vec::new();
    for item in items {
        let mode = item.mode.map(|m| m as u32).unwrap_or(default_mode);
        let content = if let Some(fr) = &item.field_ref {
            match pod_field_value(pod, &fr.field_path) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
        } else if let Some(rr) = &item.resource_field_ref {
            let name = rr.container_name.as_deref().unwrap_or_default();
            match resource_value_by_container_name(rr, pod, name, node_allocatable) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
        } else {
            String::new()
        };
        data.insert(clean_path(&item.path), FileProjection::new(content.into_bytes(), mode));
    }
    (data, errors)
}

/// Upstream's `fieldpath.ExtractFieldPathAsString` for a pod: the metadata
/// fields a downwardAPI volume may name.
pub fn pod_field_value(pod: &Pod, field_path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    if let Some((path, key)) = split_subscripted(field_path) {
        return match path {
            "metadata.annotations" => Ok(meta
                .annotations
                .as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default()),
            "metadata.labels" => Ok(meta
                .labels
                .as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default()),
            _ => Err(format!("fieldPath {field_path:?} does not support subscript")),
        };
    }
    match field_path {
        "metadata.annotations" => Ok(format_map(meta.annotations.as_ref())),
        "metadata.labels" => Ok(format_map(meta.labels.as_ref())),
        "metadata.name" => Ok(meta.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(meta.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Ok(meta.uid.clone().unwrap_or_default()),
        _ => Err(format!("unsupported fieldPath: {field_path}")),
    }
}

/// `metadata.labels['key']` → (`metadata.labels`, `key`).
pub fn split_subscripted(field_path: &str) -> Option<(&str, &str)> {
    let inner = field_path.strip_suffix("']")?;
    let (path, key) = inner.split_once("['")?;
    if path.is_empty() {
        return None;
    }
    Some((path, key))
}

/// Labels or annotations as `key="value"` lines sorted by key, values
/// quoted as Go's `%q`, no trailing newline (upstream's `FormatMap`).
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A resource of the named container (regular or init), its unset cpu,
/// memory and ephemeral-storage limits taken from the node's allocatable
/// (upstream's `ExtractResourceValueByContainerNameAndNodeAllocatable`).
pub fn resource_value_by_container_name(
    selector: &ResourceFieldSelector,
    pod: &Pod,
    container_name: &str,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let spec = pod.spec.as_ref();
    let container = spec
        .into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .find(|c| c.name == container_name)
        .ok_or_else(|| format!("container {container_name} not found"))?;
    container_resource_value(selector, &with_allocatable_limits(container, node_allocatable))
}

/// The container with its unset (or zero) cpu, memory and ephemeral-storage
/// limits set to the node's allocatable (upstream's `MergeContainerResourceLimits`).
pub fn with_allocatable_limits(container: &Container, node_allocatable: &BTreeMap<String, Quantity>) -> Container {
    let mut c = container.clone();
    let resources = c.resources.get_or_insert_with(Default::default);
    let limits = resources.limits.get_or_insert_with(Default::default);
    for name in ["cpu", "memory", "ephemeral-storage"] {
        let unset = limits
            .get(name)
            .is_none_or(|q| Q::parse(&q.0).map(|q| q.is_zero()).unwrap_or(true));
        if unset && let Some(cap) = node_allocatable.get(name) {
            limits.insert(name.to_string(), cap.clone());
        }
    }
    c
}

/// Upstream's `ExtractContainerResourceValue`: `limits.<r>`/`requests.<r>`
/// for cpu (in units of the divisor's milli value), memory,
/// ephemeral-storage and hugepages-* (in units of the divisor), rounded up.
/// The divisor defaults to 1; an unset resource reads as 0.
pub fn container_resource_value(selector: &ResourceFieldSelector, container: &Container) -> Result<String, String> {
    let divisor = match selector.divisor.as_ref().map(|d| Q::parse(&d.0)) {
        None => Q::parse("1").map_err(|e| e.to_string())?,
        Some(Err(e)) => return Err(format!("invalid divisor: {e}")),
        Some(Ok(d)) if d.is_zero() => Q::parse("1").map_err(|e| e.to_string())?,
        Some(Ok(d)) => d,
    };
    let (kind, name) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", selector.resource))?;
    let resources = container.resources.as_ref();
    let list = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported container resource : {}", selector.resource)),
    };
    let value = |name: &str| -> Result<Q, String> {
        match list.and_then(|l| l.get(name)) {
            None => Ok(Q::zero()),
            Some(q) => Q::parse(&q.0).map_err(|e| format!("invalid quantity {:?} for {name}: {e}", q.0)),
        }
    };
    match name {
        "cpu" => Ok(ceil_div(value(name)?.milli_value(), divisor.milli_value()).to_string()),
        "memory" | "ephemeral-storage" => Ok(ceil_div(value(name)?.value(), divisor.value()).to_string()),
        n if n.starts_with("hugepages-") => Ok(ceil_div(value(name)?.value(), divisor.value()).to_string()),
        _ => Err(format!("unsupported container resource : {}", selector.resource)),
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    let q = a / b;
    if a % b != 0 && ((a < 0) == (b < 0)) { q + 1 } else { q }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"b": "2", "a": "one\"quoted\"", "c": "tab\there"},
                "annotations": {"k8s.io/x": "y"}},
            "spec": {"containers": [
                {"name": "c1", "resources": {
                    "limits": {"cpu": "1250m", "memory": "129Mi"},
                    "requests": {"cpu": "250m", "memory": "64Mi", "ephemeral-storage": "1Gi"}}},
                {"name": "c2"}],
                "initContainers": [{"name": "init", "resources": {"limits": {"hugepages-2Mi": "4Mi"}}}]}
        }))
        .expect("pod")
    }

    fn allocatable() -> BTreeMap<String, Quantity> {
        [("cpu", "4"), ("memory", "8Gi"), ("ephemeral-storage", "100Gi")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    }

    #[test]
    fn field_values() {
        let p = pod();
        let cases = [
            ("metadata.name", Ok("p")),
            ("metadata.namespace", Ok("ns")),
            ("metadata.uid", Ok("u-1")),
            (
                "metadata.labels",
                Ok("a=\"one\\\"quoted\\\"\"\nb=\"2\"\nc=\"tab\\there\""),
            ),
            ("metadata.annotations", Ok("k8s.io/x=\"y\"")),
            ("metadata.labels['b']", Ok("2")),
            ("metadata.annotations['k8s.io/x']", Ok("y")),
            ("metadata.labels['missing']", Ok("")),
            ("spec.nodeName", Err("unsupported fieldPath: spec.nodeName")),
        ];
        for (path, want) in cases {
            assert_eq!(
                pod_field_value(&p, path).as_deref(),
                want.map_err(|e: &str| e.to_string()).as_deref(),
                "{path}"
            );
        }
    }

    #[test]
    fn resource_values() {
        let p = pod();
        let cases = [
            ("c1", "limits.cpu", None, Ok("2")),
            ("c1", "limits.cpu", Some("1m"), Ok("1250")),
            ("c1", "requests.cpu", Some("100m"), Ok("3")),
            ("c1", "limits.memory", Some("1Mi"), Ok("129")),
            ("c1", "limits.memory", Some("1Gi"), Ok("1")),
            ("c1", "requests.memory", None, Ok("67108864")),
            ("c1", "requests.ephemeral-storage", Some("1Mi"), Ok("1024")),
            ("c1", "limits.ephemeral-storage", Some("1Gi"), Ok("100")),
            ("c2", "limits.cpu", None, Ok("4")),
            ("c2", "limits.memory", Some("1Gi"), Ok("8")),
            ("c2", "requests.cpu", None, Ok("0")),
            ("init", "limits.hugepages-2Mi", Some("1Mi"), Ok("4")),
            (
                "c1",
                "limits.gpu",
                None,
                Err("unsupported container resource : limits.gpu"),
            ),
            ("nope", "limits.cpu", None, Err("container nope not found")),
        ];
        for (container, resource, divisor, want) in cases {
            let selector = ResourceFieldSelector {
                container_name: Some(container.to_string()),
                resource: resource.to_string(),
                divisor: divisor.map(|d| Quantity(d.to_string())),
            };
            let got = resource_value_by_container_name(&selector, &p, container, &allocatable());
            assert_eq!(
                got.as_deref(),
                want.map_err(|e: &str| e.to_string()).as_deref(),
                "{container} {resource} {divisor:?}"
            );
        }
    }

    #[test]
    fn collect_data_items() {
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "./labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "dir//name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o400},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c1", "resource": "limits.cpu", "divisor": "1m"}},
            {"path": "bad", "fieldRef": {"fieldPath": "spec.nodeName"}},
            {"path": "empty"}
        ]))
        .expect("items");
        let (data, errors) = collect_data(&items, &pod(), &allocatable(), 0o644);
        let names: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(names, ["cpu", "dir/name", "empty", "labels"]);
        assert_eq!(data["dir/name"].data, b"p");
        assert_eq!(data["dir/name"].mode, 0o400);
        assert_eq!(data["labels"].mode, 0o644);
        assert_eq!(data["cpu"].data, b"1250");
        assert_eq!(data["empty"].data, b"");
        assert_eq!(errors, ["unsupported fieldPath: spec.nodeName"]);
    }
}
